//! "Import From Cisco": the ACK bundle is read and every ACK verified against the CSSM
//! certificate and checked against the account before anything is written; then all of it is
//! applied in one transaction (or, in a dry run, only counted). The same bundle twice changes
//! nothing the second time.

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use outpost_core::bundle;
use outpost_core::crypto::{SignatureVerifier, sha256_hex};
use outpost_core::signed_file::verify_ack;
use outpost_db::acks::{self, VerifiedAck};
use outpost_db::enums::{AckSource, EventResult, SyncChannel, SyncDirection, SyncState};
use outpost_db::events::{self, NewEvent};
use outpost_db::product_instances::{self, UdiKey};
use outpost_db::sync_runs::{self, SyncRunOutcome};
use outpost_db::{AccountId, AsyncConnection, DbPool, SyncRunId, accounts, reports};
use serde::Serialize;
use serde_json::json;

use super::{Hashing, OfflineError, require_registered};

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// The bundle's name.
    pub file_name: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// ACK files in the bundle.
    pub ack_files: usize,
    /// Devices they are for.
    pub devices: usize,
    /// ACKs not stored before.
    pub acks_new: usize,
    /// Reports they acknowledge for the first time.
    pub reports_newly_acknowledged: usize,
    /// ACKs that carry a policy.
    pub policies: usize,
    /// The ledger row (not for a dry run).
    pub sync_run: Option<SyncRunId>,
}

/// Imports an ACK bundle read from `reader`; `file_name` names it in messages and the ledger.
/// `progress(done, total)` follows the ACK files as they are checked.
#[expect(
    clippy::too_many_arguments,
    reason = "the import's inputs, passed explicitly"
)]
pub async fn import_ack_bundle<R: Read + Send + 'static>(
    pool: &DbPool,
    verifier: &SignatureVerifier,
    account_id: AccountId,
    file_name: &str,
    reader: R,
    dry_run: bool,
    now: DateTime<Utc>,
    actor: &str,
    progress: impl Fn(u64, u64) + Send,
) -> Result<ImportSummary, OfflineError> {
    let mut conn = pool.get().await?;
    let account = accounts::find_account(&mut conn, account_id).await?;
    require_registered(&account)?;
    let name = file_name.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let mut hashing = Hashing::new(reader);
        let members = bundle::read_ack_bundle(&mut hashing, &name);
        // Drain what follows the archive so the hash covers the whole file.
        let _rest = std::io::copy(&mut hashing, &mut std::io::sink());
        let (_, bytes, sha256) = hashing.finish();
        (members, bytes, sha256)
    })
    .await
    .map_err(|e| OfflineError::Io(format!("reading the bundle: {e}")))?;
    let (members, bytes, sha256) = read;

    let checked = match members {
        Ok(members) => {
            check(
                &mut conn, verifier, &account, file_name, &members, now, &progress,
            )
            .await
        }
        Err(e) => Err(OfflineError::Rejected(e.to_string())),
    };
    let checked = match checked {
        Ok(checked) => checked,
        Err(OfflineError::Rejected(message)) if !dry_run => {
            // A refused import is a ledger row too; nothing else was written.
            ledger(
                &mut conn,
                account.id,
                file_name,
                &sha256,
                bytes,
                SyncState::Failed,
                &message,
                (0, 0),
                now,
            )
            .await?;
            let detail = json!({ "file_name": file_name, "sha256": sha256, "error": message });
            events::record(
                &mut conn,
                &NewEvent::account(
                    account.id,
                    actor,
                    "cssm.import",
                    EventResult::Rejected,
                    detail,
                    now,
                ),
            )
            .await?;
            return Err(OfflineError::Rejected(message));
        }
        Err(e) => return Err(e),
    };

    let mut summary = ImportSummary {
        file_name: file_name.to_owned(),
        sha256: sha256.clone(),
        bytes,
        dry_run,
        ack_files: checked.len(),
        devices: checked
            .iter()
            .map(|a| a.pi_id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        acks_new: 0,
        reports_newly_acknowledged: 0,
        policies: checked.iter().filter(|a| a.policy.is_some()).count(),
        sync_run: None,
    };
    if dry_run {
        for ack in &checked {
            if !acks::exists(&mut conn, ack.pi_id, &sha256_hex(ack.file.as_bytes())).await? {
                summary.acks_new += 1;
            }
            summary.reports_newly_acknowledged += usize::try_from(
                reports::count_unacknowledged(&mut conn, ack.pi_id, &ack.report_ids).await?,
            )
            .unwrap_or(0);
        }
        return Ok(summary);
    }

    // The ACKs, the ledger row and the event commit together.
    conn.transaction::<_, OfflineError, _>(async |conn| {
        let (mut new, mut marked) = (0, 0);
        for ack in &checked {
            let (is_new, count) =
                acks::store_verified(conn, account.id, ack, AckSource::FileImport, None, now)
                    .await?;
            new += usize::from(is_new);
            marked += count;
        }
        summary.acks_new = new;
        summary.reports_newly_acknowledged = marked;
        let message = if new == 0 {
            format!("{file_name}: nothing new; every ACK in it was imported before")
        } else {
            format!(
                "{file_name}: {new} ACKs for {} devices, {marked} reports acknowledged",
                summary.devices
            )
        };
        let run = ledger(
            conn,
            account.id,
            file_name,
            &sha256,
            bytes,
            SyncState::Succeeded,
            &message,
            (new, marked),
            now,
        )
        .await?;
        summary.sync_run = Some(run);
        let detail = serde_json::to_value(&summary).unwrap_or_default();
        events::record(
            conn,
            &NewEvent::account(
                account.id,
                actor,
                "cssm.import",
                EventResult::Ok,
                detail,
                now,
            ),
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(summary)
}

/// Verifies every ACK and matches it to the account and one of its devices; the first problem
/// refuses the whole bundle with the file's name.
async fn check(
    conn: &mut outpost_db::AsyncPgConnection,
    verifier: &SignatureVerifier,
    account: &accounts::LocalAccount,
    file_name: &str,
    members: &[bundle::TextMember],
    now: DateTime<Utc>,
    progress: &(impl Fn(u64, u64) + Send),
) -> Result<Vec<VerifiedAck>, OfflineError> {
    let mut pairs = vec![(
        account.smart_account.clone(),
        account.virtual_account.clone(),
    )];
    for lva in accounts::list_lvas(conn, account.id).await? {
        pairs.push((
            lva.smart_account
                .unwrap_or_else(|| account.smart_account.clone()),
            lva.virtual_account
                .unwrap_or_else(|| account.virtual_account.clone()),
        ));
    }
    let mut devices = HashMap::new();
    let mut checked = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let where_ = format!("{file_name}: {}/{}", member.archive, member.name);
        let verified = verify_ack(&member.text, verifier, now)
            .map_err(|e| OfflineError::Rejected(format!("{where_}: {e}")))?;
        let ack = &verified.ack;
        if !pairs.contains(&(ack.smart_account.clone(), ack.virtual_account.clone())) {
            return Err(OfflineError::Rejected(format!(
                "{where_}: the ACK is for Smart Account '{}' / Virtual Account '{}', not for local account '{}'",
                ack.smart_account, ack.virtual_account, account.name
            )));
        }
        let key = (ack.sudi.udi_pid.clone(), ack.sudi.udi_serial_number.clone());
        let pi = match devices.get(&key) {
            Some(pi) => *pi,
            None => {
                let udi = UdiKey {
                    account_id: account.id,
                    pid: &key.0,
                    serial: &key.1,
                };
                let pi = product_instances::find_by_udi(conn, udi)
                    .await?
                    .ok_or_else(|| {
                        OfflineError::Rejected(format!(
                            "{where_}: device {} is not in local account '{}'",
                            ack.sudi, account.name
                        ))
                    })?;
                devices.insert(key, pi.id);
                pi.id
            }
        };
        checked.push(VerifiedAck::new(pi, member.text.clone(), verified));
        progress(i as u64 + 1, members.len() as u64);
    }
    Ok(checked)
}

#[expect(clippy::too_many_arguments, reason = "every column of the ledger row")]
async fn ledger(
    conn: &mut outpost_db::AsyncPgConnection,
    account: AccountId,
    file_name: &str,
    sha256: &str,
    bytes: u64,
    state: SyncState,
    message: &str,
    (acks, reports): (usize, usize),
    now: DateTime<Utc>,
) -> Result<SyncRunId, OfflineError> {
    let run = sync_runs::start(
        conn,
        account,
        None,
        SyncChannel::File,
        SyncDirection::Inbound,
        now,
    )
    .await?;
    let outcome = SyncRunOutcome {
        state: Some(state),
        finished_at: Some(Utc::now()),
        duration_ms: Some((Utc::now() - now).num_milliseconds().max(0)),
        acks_received: Some(i32::try_from(acks).unwrap_or(i32::MAX)),
        reports_acked: Some(i32::try_from(reports).unwrap_or(i32::MAX)),
        bytes_received: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
        sha256: Some(sha256.to_owned()),
        file_name: Some(file_name.to_owned()),
        message: Some(message.to_owned()),
        ..SyncRunOutcome::default()
    };
    sync_runs::finish(conn, run, &outcome).await?;
    Ok(run)
}
