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
use outpost_db::{AccountId, AsyncConnection, AsyncPgConnection, SyncRunId, accounts, reports};
use serde::Serialize;
use serde_json::json;

use super::{Hashing, rejected, require_registered};
use crate::error::{AppError, AppResult, OrNotFound};

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = Option<uuid::Uuid>)]
    pub sync_run: Option<SyncRunId>,
}

/// Which bundle to import into which account, and how.
#[derive(Debug, Clone, Copy)]
pub struct ImportRequest<'a> {
    /// The local account.
    pub account: AccountId,
    /// The bundle's name, for messages and the ledger.
    pub file_name: &'a str,
    /// Check and count only; write nothing.
    pub dry_run: bool,
    /// The import's time.
    pub now: DateTime<Utc>,
    /// Who asked, for the audit trail.
    pub actor: &'a str,
    /// What the bundle may hold (decompressed bytes, files).
    pub limits: bundle::Limits,
}

/// Imports an ACK bundle read from `reader`. `progress(done, total)` follows the ACK files as
/// they are checked. A refused bundle writes a `failed` ledger row and nothing else.
pub async fn import_ack_bundle<R: Read + Send + 'static>(
    conn: &mut AsyncPgConnection,
    verifier: &SignatureVerifier,
    request: &ImportRequest<'_>,
    reader: R,
    progress: impl Fn(u64, u64) + Send,
) -> AppResult<ImportSummary> {
    let account = accounts::find_account(conn, request.account)
        .await
        .or_not_found("account")?;
    require_registered(&account)?;
    let name = request.file_name.to_owned();
    let limits = request.limits;
    let (members, bytes, sha256) = tokio::task::spawn_blocking(move || {
        let mut hashing = Hashing::new(reader);
        let members = bundle::read_ack_bundle_within(&mut hashing, &name, limits);
        // Drain what follows the archive so the hash covers the whole file.
        let _rest = std::io::copy(&mut hashing, &mut std::io::sink());
        let (_, bytes, sha256) = hashing.finish();
        (members, bytes, sha256)
    })
    .await
    .map_err(|e| AppError::internal(format!("reading the bundle: {e}")))?;
    let file = (request.file_name, sha256.as_str(), bytes);
    let checked = match members {
        Ok(members) => check(conn, verifier, &account, request, &members, &progress).await,
        Err(e) => Err(rejected(e.to_string())),
    };
    let checked = match checked {
        Err(AppError::Refused { message, .. }) if !request.dry_run => {
            return Err(record_refusal(conn, &account, request, file, message).await?);
        }
        other => other?,
    };
    let mut summary = ImportSummary {
        file_name: request.file_name.to_owned(),
        sha256: sha256.clone(),
        bytes,
        dry_run: request.dry_run,
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
    if request.dry_run {
        count_changes(conn, &checked, &mut summary).await?;
    } else {
        apply(conn, &account, request, &checked, &mut summary).await?;
    }
    Ok(summary)
}

/// A refused import is a ledger row and an event too; returns the refusal to answer with.
async fn record_refusal(
    conn: &mut AsyncPgConnection,
    account: &accounts::LocalAccount,
    request: &ImportRequest<'_>,
    (file_name, sha256, bytes): (&str, &str, u64),
    message: String,
) -> AppResult<AppError> {
    let now = request.now;
    let entry = Ledger {
        file_name,
        sha256,
        bytes,
        state: SyncState::Failed,
        message: &message,
        acks: 0,
        reports: 0,
    };
    ledger(conn, account.id, &entry, now).await?;
    let detail = json!({ "file_name": file_name, "sha256": sha256, "error": message });
    let event = NewEvent::account(
        account.id,
        request.actor,
        "cssm.import",
        EventResult::Rejected,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    Ok(rejected(message))
}

/// A dry run: what the import would change.
async fn count_changes(
    conn: &mut AsyncPgConnection,
    checked: &[VerifiedAck],
    summary: &mut ImportSummary,
) -> AppResult<()> {
    for ack in checked {
        if !acks::exists(conn, ack.pi_id, &sha256_hex(ack.file.as_bytes())).await? {
            summary.acks_new += 1;
        }
        let waiting = reports::count_unacknowledged(conn, ack.pi_id, &ack.report_ids).await?;
        summary.reports_newly_acknowledged += usize::try_from(waiting).unwrap_or(0);
    }
    Ok(())
}

/// Stores every ACK through the same path as the online sync; the ACKs, the ledger row and the
/// event commit together.
async fn apply(
    conn: &mut AsyncPgConnection,
    account: &accounts::LocalAccount,
    request: &ImportRequest<'_>,
    checked: &[VerifiedAck],
    summary: &mut ImportSummary,
) -> AppResult<()> {
    let now = request.now;
    conn.transaction::<_, AppError, _>(async |conn| {
        let (mut new, mut marked) = (0, 0);
        for ack in checked {
            let (is_new, count) =
                acks::store_verified(conn, account.id, ack, AckSource::FileImport, None, now)
                    .await?;
            new += usize::from(is_new);
            marked += count;
        }
        summary.acks_new = new;
        summary.reports_newly_acknowledged = marked;
        let file_name = request.file_name;
        let message = if new == 0 {
            format!("{file_name}: nothing new; every ACK in it was imported before")
        } else {
            format!(
                "{file_name}: {new} ACKs for {} devices, {marked} reports acknowledged",
                summary.devices
            )
        };
        let entry = Ledger {
            file_name,
            sha256: &summary.sha256,
            bytes: summary.bytes,
            state: SyncState::Succeeded,
            message: &message,
            acks: new,
            reports: marked,
        };
        summary.sync_run = Some(ledger(conn, account.id, &entry, now).await?);
        let detail = serde_json::to_value(&*summary).unwrap_or_default();
        let event = NewEvent::account(
            account.id,
            request.actor,
            "cssm.import",
            EventResult::Ok,
            detail,
            now,
        );
        events::record(conn, &event).await?;
        Ok(())
    })
    .await
}

/// Verifies every ACK and matches it to the account and one of its devices; the first problem
/// refuses the whole bundle with the file's name.
async fn check(
    conn: &mut AsyncPgConnection,
    verifier: &SignatureVerifier,
    account: &accounts::LocalAccount,
    request: &ImportRequest<'_>,
    members: &[bundle::TextMember],
    progress: &(impl Fn(u64, u64) + Send),
) -> AppResult<Vec<VerifiedAck>> {
    let (file_name, now) = (request.file_name, request.now);
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
            .map_err(|e| rejected(format!("{where_}: {e}")))?;
        let ack = &verified.ack;
        if !pairs.contains(&(ack.smart_account.clone(), ack.virtual_account.clone())) {
            return Err(rejected(format!(
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
                        rejected(format!(
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

/// One file import's ledger row.
struct Ledger<'a> {
    file_name: &'a str,
    sha256: &'a str,
    bytes: u64,
    state: SyncState,
    message: &'a str,
    acks: usize,
    reports: usize,
}

async fn ledger(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    entry: &Ledger<'_>,
    now: DateTime<Utc>,
) -> AppResult<SyncRunId> {
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
        state: Some(entry.state),
        finished_at: Some(Utc::now()),
        duration_ms: Some((Utc::now() - now).num_milliseconds().max(0)),
        acks_received: Some(i32::try_from(entry.acks).unwrap_or(i32::MAX)),
        reports_acked: Some(i32::try_from(entry.reports).unwrap_or(i32::MAX)),
        bytes_received: Some(i64::try_from(entry.bytes).unwrap_or(i64::MAX)),
        sha256: Some(entry.sha256.to_owned()),
        file_name: Some(entry.file_name.to_owned()),
        message: Some(entry.message.to_owned()),
        ..SyncRunOutcome::default()
    };
    sync_runs::finish(conn, run, &outcome).await?;
    Ok(run)
}
