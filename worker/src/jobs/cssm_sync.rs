//! "Synchronize with Cisco" for one local account: upload unsent reports in batches per SA/VA
//! pair, poll the ACKs, verify and store them, sync the license list down, and write a ledger
//! row. Safe to run twice and to crash anywhere:
//!
//! - a batch is recorded (`cssm_uploads`, state `sending`) and its reports tagged *before* the
//!   call, so an interrupted call is resent as the very same batch (same nonce) on the next run;
//! - once CSSM gives a poll id the batch is `polling` and is never sent again;
//! - ACKs are stored idempotently (by device and file hash) together with the report marks;
//! - one sync per account at a time, by a session advisory lock on a dedicated connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::NaiveDate;
use outpost_core::Sudi;
use outpost_core::crypto::{random_alphanumeric, sha256_hex};
use outpost_core::cssm::{
    AckEntry, DeviceUsage, PollData, ReportUsageData, ReportUsageRequest, STATUS_COMPLETE,
    UsageItem,
};
use outpost_core::signed_file::verify_ack;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::{
    AckSource, EventResult, Severity, SyncChannel, SyncDirection, SyncState, UploadState,
};
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::catalog::CssmSync;
use outpost_db::licenses::{self, License};
use outpost_db::sync_runs::{self, SyncRunOutcome};
use outpost_db::uploads::{self, OutgoingReport, Upload};
use outpost_db::{
    AccountId, AckId, AsyncConnection, AsyncPgConnection, ProductInstanceId, acks, locks,
    product_instances, reports,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{JobContext, JobError, RunJob};
use crate::cssm_client::{AccountScope, CssmClient, CssmError};

impl From<CssmError> for JobError {
    fn from(e: CssmError) -> Self {
        if e.is_retryable() {
            JobError::Retry(e.to_string())
        } else {
            JobError::Fatal(e.to_string())
        }
    }
}

/// Figures of one sync, for the ledger and the job result.
#[derive(Debug, Default)]
struct Figures {
    uploads: i32,
    reports_sent: i32,
    duplicates: i32,
    acks_received: i32,
    reports_acked: i32,
    licenses_synced: i32,
    bytes_sent: i64,
    bytes_received: i64,
    still_pending: usize,
    /// Reports a completed batch's ACKs did not cover, put back to be sent again.
    released: i32,
    hasher: Sha256,
}

impl RunJob for CssmSync {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let worker = &ctx.worker;
        let started = Instant::now();
        let mut conn = worker.pool.get().await?;
        let account = accounts::find_account(&mut conn, self.account_id)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    JobError::Fatal("the account no longer exists".into())
                } else {
                    e.into()
                }
            })?;

        // One sync per account at a time; the lock dies with its connection if we crash.
        let lock_key = format!("cssm_sync:{}", account.id);
        let mut lock_conn = outpost_db::pool::establish(
            &worker.database_url,
            Duration::from_secs(worker.settings.database.connect_timeout_secs),
        )
        .await
        .map_err(|e| JobError::Retry(format!("database: {e}")))?;
        if !locks::try_lock(&mut lock_conn, &lock_key).await? {
            return Err(JobError::Retry(format!(
                "another sync of account '{}' is running",
                account.name
            )));
        }

        let now = worker.clock.now();
        sync_runs::mark_interrupted(&mut conn, account.id, now).await?;
        let run_id = sync_runs::start(
            &mut conn,
            account.id,
            Some(ctx.job.id),
            SyncChannel::Online,
            SyncDirection::Both,
            now,
        )
        .await?;

        let mut figures = Figures::default();
        let result = synchronise(ctx, &mut conn, &account, &mut figures).await;

        let finished = worker.clock.now();
        let state = record_outcome(
            &mut conn,
            &account,
            run_id,
            started,
            &mut figures,
            &result,
            finished,
        )
        .await?;

        if result.is_ok() && (figures.still_pending > 0 || figures.released > 0) {
            let follow_up = finished
                + chrono::Duration::seconds(
                    i64::try_from(worker.settings.cssm.follow_up_secs).unwrap_or(900),
                );
            outpost_db::jobs::enqueue(
                &mut conn,
                &self.job(follow_up, worker.settings.worker.max_attempts),
                finished,
            )
            .await?;
        }
        // Unlocking is tidiness: closing the connection would release it too.
        let _unlocked = locks::unlock(&mut lock_conn, &lock_key).await;
        result?;
        Ok(json!({
            "sync_run": run_id,
            "state": state,
            "reports_sent": figures.reports_sent,
            "duplicates": figures.duplicates,
            "acks_received": figures.acks_received,
            "reports_acked": figures.reports_acked,
            "pending_batches": figures.still_pending,
            "licenses_synced": figures.licenses_synced,
        }))
    }
}

impl Figures {
    /// The ledger state and summary of a finished sync.
    fn outcome(&self, result: &Result<(), JobError>) -> (SyncState, String) {
        match result {
            Ok(()) if self.still_pending == 0 && self.released > 0 => (
                SyncState::Pending,
                format!(
                    "{} reports sent, {} ACKs stored; CSSM's ACKs left {} reports unacknowledged, a follow-up sync sends them again",
                    self.reports_sent, self.acks_received, self.released
                ),
            ),
            Ok(()) if self.still_pending == 0 => (
                SyncState::Succeeded,
                format!(
                    "{} reports sent in {} batches ({} already known to CSSM), {} ACKs stored, {} licenses synced",
                    self.reports_sent,
                    self.uploads,
                    self.duplicates,
                    self.acks_received,
                    self.licenses_synced
                ),
            ),
            Ok(()) => (
                SyncState::Pending,
                format!(
                    "{} reports sent; ACKs of {} batches still pending at CSSM, a follow-up sync will poll again",
                    self.reports_sent, self.still_pending
                ),
            ),
            Err(e) => (SyncState::Failed, e.to_string()),
        }
    }
}

/// Writes the ledger row, the account's sync alert and the event of a finished sync; returns
/// the ledger state.
async fn record_outcome(
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    run_id: outpost_db::SyncRunId,
    started: Instant,
    figures: &mut Figures,
    result: &Result<(), JobError>,
    finished: chrono::DateTime<chrono::Utc>,
) -> Result<SyncState, JobError> {
    let (state, message) = figures.outcome(result);
    let hash = hex::encode(std::mem::take(&mut figures.hasher).finalize());
    sync_runs::finish(
        conn,
        run_id,
        &SyncRunOutcome {
            state: Some(state),
            finished_at: Some(finished),
            duration_ms: Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)),
            reports_sent: Some(figures.reports_sent),
            reports_duplicate: Some(figures.duplicates),
            acks_received: Some(figures.acks_received),
            reports_acked: Some(figures.reports_acked),
            licenses_synced: Some(figures.licenses_synced),
            bytes_sent: Some(figures.bytes_sent),
            bytes_received: Some(figures.bytes_received),
            sha256: (figures.bytes_sent > 0).then_some(hash),
            message: Some(message.clone()),
        },
    )
    .await?;

    match result {
        Ok(()) => alerts::clear(conn, account.id, None, kinds::SYNC_FAILED, finished).await?,
        Err(e) => {
            let text = format!("Synchronization with Cisco failed: {e}");
            alerts::raise(
                conn,
                account.id,
                None,
                kinds::SYNC_FAILED,
                Severity::Error,
                &text,
                finished,
            )
            .await?;
        }
    }
    events::record(
        conn,
        &NewEvent::account(
            account.id,
            "system",
            "cssm.sync",
            if result.is_ok() {
                EventResult::Ok
            } else {
                EventResult::Failed
            },
            json!({ "sync_run": run_id, "state": state, "message": message }),
            finished,
        ),
    )
    .await?;
    Ok(state)
}

/// Resolves SA/VA names to CSSM ids, asking CSSM only for pairs other than the account's own.
struct Scopes<'a> {
    cssm: &'a CssmClient,
    token: &'a str,
    account: &'a LocalAccount,
    requesting_system: String,
    known: HashMap<(String, String), AccountScope>,
}

impl<'a> Scopes<'a> {
    fn new(
        cssm: &'a CssmClient,
        token: &'a str,
        account: &'a LocalAccount,
    ) -> Result<Self, JobError> {
        let (Some(sa_id), Some(va_id)) = (
            &account.cssm_smart_account_id,
            &account.cssm_virtual_account_id,
        ) else {
            return Err(JobError::Fatal(format!(
                "account '{}' is not registered with CSSM",
                account.name
            )));
        };
        let requesting_system = json!({
            "udi_pid": "OUTPOST",
            "udi_serial_number": account.cssm_registration_id.clone().unwrap_or_default(),
        })
        .to_string();
        let own = AccountScope {
            smart_account_id: sa_id.clone(),
            virtual_account_id: va_id.clone(),
            requesting_system: requesting_system.clone(),
        };
        let known = HashMap::from([(
            (
                account.smart_account.clone(),
                account.virtual_account.clone(),
            ),
            own,
        )]);
        Ok(Self {
            cssm,
            token,
            account,
            requesting_system,
            known,
        })
    }

    async fn scope(
        &mut self,
        smart_account: &str,
        virtual_account: &str,
    ) -> Result<AccountScope, JobError> {
        let key = (smart_account.to_owned(), virtual_account.to_owned());
        if let Some(scope) = self.known.get(&key) {
            return Ok(scope.clone());
        }
        let found = self.cssm.accounts(self.token).await?;
        let pair = found
            .accounts
            .iter()
            .filter(|sa| sa.name == smart_account)
            .find_map(|sa| {
                let va = sa
                    .virtual_accounts
                    .iter()
                    .find(|va| va.name == virtual_account)?;
                Some(AccountScope {
                    smart_account_id: sa.account_id.clone(),
                    virtual_account_id: va.virtual_account_id.clone(),
                    requesting_system: self.requesting_system.clone(),
                })
            });
        if let Some(scope) = pair {
            self.known.insert(key, scope.clone());
            return Ok(scope);
        }
        Err(JobError::Fatal(format!(
            "account '{}' maps usage to Smart Account '{smart_account}' / Virtual Account '{virtual_account}', which CSSM does not know",
            self.account.name
        )))
    }
}

async fn synchronise(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    figures: &mut Figures,
) -> Result<(), JobError> {
    let worker = &ctx.worker;
    let Some(verifier) = &worker.ack_verifier else {
        return Err(JobError::Fatal(
            "cssm.signing_certificate_file is not set: Outpost cannot verify ACKs, so it does not synchronise".into(),
        ));
    };
    let (Some(client_id), Some(client_secret)) =
        (&account.cssm_client_id, &account.cssm_client_secret)
    else {
        return Err(JobError::Fatal(format!(
            "account '{}' is not registered with CSSM",
            account.name
        )));
    };
    let token = worker.cssm.token(client_id, client_secret).await?;
    let mut scopes = Scopes::new(&worker.cssm, &token, account)?;
    // Problems confined to one batch are noted and the sync goes on with the others, so one bad
    // batch never holds back the rest; they are reported (and retried) at the end.
    let mut skipped: Vec<String> = Vec::new();

    // 1. Batches recorded but not confirmed sent (a crash or failure mid-call): resend as is.
    for upload in uploads::open_uploads(conn, account.id).await? {
        if upload.state == UploadState::Sending {
            let outgoing = uploads::upload_reports(conn, account.id, upload.id).await?;
            let sent = async {
                let scope = scopes
                    .scope(&upload.smart_account, &upload.virtual_account)
                    .await?;
                send(ctx, conn, &token, &scope, &upload, &outgoing, figures).await
            };
            note(sent.await, &mut skipped)?;
        }
    }

    // 2. New batches, per SA/VA pair, until every stored report is in one.
    let batch = i64::try_from(worker.settings.cssm.batch_size).unwrap_or(500);
    let mut after = 0;
    loop {
        let page = uploads::unsent_reports(conn, account.id, after, batch).await?;
        let Some(last) = page.last() else { break };
        after = last.row_id;
        let mut pairs: Vec<((String, String), Vec<OutgoingReport>)> = Vec::new();
        for report in page {
            let pair = (
                report
                    .lva_smart_account
                    .clone()
                    .unwrap_or_else(|| account.smart_account.clone()),
                report
                    .lva_virtual_account
                    .clone()
                    .unwrap_or_else(|| account.virtual_account.clone()),
            );
            match pairs.iter_mut().find(|(p, _)| *p == pair) {
                Some((_, reports)) => reports.push(report),
                None => pairs.push((pair, vec![report])),
            }
        }
        for ((smart_account, virtual_account), outgoing) in pairs {
            let sent = async {
                let scope = scopes.scope(&smart_account, &virtual_account).await?;
                let row_ids: Vec<i64> = outgoing.iter().map(|r| r.row_id).collect();
                let nonce = random_alphanumeric(16);
                let now = worker.clock.now();
                let (upload, tagged) = uploads::create_upload(
                    conn,
                    account.id,
                    &smart_account,
                    &virtual_account,
                    &nonce,
                    &row_ids,
                    now,
                )
                .await?;
                // Send exactly the reports this batch tagged, none another sync holds.
                let outgoing: Vec<OutgoingReport> = outgoing
                    .into_iter()
                    .filter(|r| tagged.contains(&r.row_id))
                    .collect();
                send(ctx, conn, &token, &scope, &upload, &outgoing, figures).await
            };
            note(sent.await, &mut skipped)?;
        }
    }

    // 3. Poll every batch CSSM holds until its ACKs arrive, a few times within this run.
    let attempts = worker.settings.cssm.poll_attempts.max(1);
    for attempt in 0..attempts {
        let polling: Vec<Upload> = uploads::open_uploads(conn, account.id)
            .await?
            .into_iter()
            .filter(|u| u.state == UploadState::Polling)
            .collect();
        figures.still_pending = polling.len();
        if polling.is_empty() {
            break;
        }
        for upload in polling {
            let polled = async {
                let scope = scopes
                    .scope(&upload.smart_account, &upload.virtual_account)
                    .await?;
                poll_once(
                    ctx, conn, &token, &scope, account.id, &upload, verifier, figures,
                )
                .await
            };
            match polled.await {
                Ok(true) => figures.still_pending -= 1,
                outcome => note(outcome.map(|_| ()), &mut skipped)?,
            }
        }
        if figures.still_pending > 0 && attempt + 1 < attempts {
            ctx.progress(
                u64::from(attempt) + 1,
                Some(attempts.into()),
                "waiting for ACKs from CSSM",
            );
            tokio::time::sleep(Duration::from_secs(worker.settings.cssm.poll_interval_secs)).await;
        }
    }
    if !skipped.is_empty() {
        // Licenses are still synced below only when every batch went through; report first.
        return Err(JobError::Retry(format!(
            "{} batch problem(s): {}",
            skipped.len(),
            skipped.join("; ")
        )));
    }

    // 4. Purchased licenses down into the default LVA.
    if let Some(registration_id) = &account.cssm_registration_id {
        let entries = worker.cssm.licenses(&token, registration_id).await?;
        let lvas = accounts::list_lvas(conn, account.id).await?;
        if let Some(default_lva) = lvas.iter().find(|l| l.number == 1) {
            let now = worker.clock.now();
            let mut rows: Vec<License> = Vec::with_capacity(entries.len());
            for license in entries.iter().map(|e| License {
                account_id: account.id,
                lva_id: default_lva.id,
                entitlement_tag: e.entitlement_tag.clone(),
                name: e.name.clone(),
                quantity: e.quantity.max(0),
                enforcement: e.enforcement.as_str().into(),
                term: e.term.as_str().into(),
                end_date: e
                    .end_date
                    .as_deref()
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                synced_at: now,
            }) {
                // One pool per entitlement: CSSM may list a tag twice (e.g. two terms); add them up.
                match rows
                    .iter_mut()
                    .find(|r| r.entitlement_tag == license.entitlement_tag)
                {
                    Some(row) => row.quantity = row.quantity.saturating_add(license.quantity),
                    None => rows.push(license),
                }
            }
            licenses::replace_for_lva(conn, account.id, default_lva.id, &rows).await?;
            figures.licenses_synced = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        }
    }
    Ok(())
}

/// How one batch failed.
enum BatchFailure {
    /// CSSM or the database is unreachable: stop the whole sync, retry it later.
    Stop(JobError),
    /// Only this batch is affected: note it and carry on with the others.
    Skip(String),
}

impl From<CssmError> for BatchFailure {
    fn from(e: CssmError) -> Self {
        if e.is_retryable() {
            BatchFailure::Stop(e.into())
        } else {
            BatchFailure::Skip(e.to_string())
        }
    }
}

impl From<outpost_db::DbError> for BatchFailure {
    fn from(e: outpost_db::DbError) -> Self {
        BatchFailure::Stop(e.into())
    }
}

impl From<JobError> for BatchFailure {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Retry(message) | JobError::Fatal(message) => BatchFailure::Skip(message),
        }
    }
}

/// Keeps going after a batch-only failure; stops the sync on anything wider.
fn note(outcome: Result<(), BatchFailure>, skipped: &mut Vec<String>) -> Result<(), JobError> {
    match outcome {
        Ok(()) => Ok(()),
        Err(BatchFailure::Skip(message)) => {
            tracing::warn!(error = %message, "a batch failed; the sync goes on with the others");
            skipped.push(message);
            Ok(())
        }
        Err(BatchFailure::Stop(e)) => Err(e),
    }
}

/// Polls one batch once; `true` when its ACKs arrived and are stored.
#[expect(
    clippy::too_many_arguments,
    reason = "the sync's state, passed explicitly"
)]
async fn poll_once(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    token: &str,
    scope: &AccountScope,
    account: AccountId,
    upload: &Upload,
    verifier: &outpost_core::crypto::SignatureVerifier,
    figures: &mut Figures,
) -> Result<bool, BatchFailure> {
    let Some(poll_id) = upload.poll_id.clone() else {
        return Ok(false);
    };
    let now = ctx.worker.clock.now();
    let data = PollData {
        timestamp: now.timestamp_millis(),
        nonce: random_alphanumeric(16),
        poll_id,
        action: "acknowledgements".into(),
    };
    let answer = match ctx.worker.cssm.poll_acks(token, scope, data).await {
        Ok(answer) => answer,
        Err(CssmError::Status {
            status: 404,
            message,
            ..
        }) => {
            // CSSM no longer knows the poll id (expired, or CSSM lost it): send the batch again;
            // CSSM recognises the reports it already has.
            uploads::reset_for_resend(conn, upload.id).await?;
            return Err(BatchFailure::Skip(format!(
                "CSSM does not know the poll id of a batch ({message}); it will be sent again"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if answer.status != STATUS_COMPLETE {
        return Ok(false);
    }
    store_acks(
        ctx,
        conn,
        account,
        upload,
        &answer.data.acknowledgements,
        verifier,
        figures,
    )
    .await?;
    Ok(true)
}

/// Sends one recorded batch and records CSSM's poll id.
async fn send(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    token: &str,
    scope: &AccountScope,
    upload: &Upload,
    outgoing: &[OutgoingReport],
    figures: &mut Figures,
) -> Result<(), BatchFailure> {
    if outgoing.is_empty() {
        // Every report of the batch was deleted with its device; nothing left to send.
        uploads::mark_complete(conn, upload.id, ctx.worker.clock.now()).await?;
        return Ok(());
    }
    let mut devices: Vec<DeviceUsage> = Vec::new();
    let mut index: HashMap<ProductInstanceId, usize> = HashMap::new();
    for report in outgoing {
        let slot = *index.entry(report.pi_id).or_insert_with(|| {
            let sudi = serde_json::from_value::<Sudi>(report.sudi.clone())
                .unwrap_or_else(|_| Sudi::new("", ""));
            devices.push(DeviceUsage {
                sudi,
                hostname: report.hostname.clone(),
                software_tag_identifier: report.software_tag.clone(),
                trust_requests: Vec::new(),
                usage: Vec::new(),
            });
            devices.len() - 1
        });
        devices[slot].usage.push(UsageItem {
            payload: report.payload.clone(),
            signature: report.signature.clone(),
        });
    }
    let now = ctx.worker.clock.now();
    let body = ReportUsageRequest {
        data: ReportUsageData {
            timestamp: now.timestamp_millis(),
            nonce: upload.nonce.clone(),
            reports: devices,
        },
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| BatchFailure::Skip(format!("encoding the upload: {e}")))?;
    let bytes = i64::try_from(body.len()).unwrap_or(i64::MAX);
    figures.hasher.update(&body);
    let answer = ctx.worker.cssm.report_usage(token, scope, body).await?;
    let duplicates = i32::try_from(answer.duplicates.len()).unwrap_or(i32::MAX);
    uploads::mark_sent(
        conn,
        upload.id,
        &answer.poll_id,
        duplicates,
        bytes,
        ctx.worker.clock.now(),
    )
    .await?;
    figures.uploads += 1;
    figures.reports_sent += i32::try_from(outgoing.len()).unwrap_or(i32::MAX);
    figures.duplicates += duplicates;
    figures.bytes_sent += bytes;
    ctx.progress(
        u64::try_from(figures.reports_sent).unwrap_or(0),
        None,
        "reports sent to CSSM",
    );
    Ok(())
}

/// A verified ACK ready to store.
struct CheckedAck {
    sudi: Sudi,
    file: String,
    report_ids: Vec<i64>,
    has_policy: bool,
}

/// Verifies every ACK of a batch, then stores them all with the report marks in one transaction.
async fn store_acks(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    account: AccountId,
    upload: &Upload,
    entries: &[AckEntry],
    verifier: &outpost_core::crypto::SignatureVerifier,
    figures: &mut Figures,
) -> Result<(), BatchFailure> {
    let now = ctx.worker.clock.now();
    let mut checked = Vec::with_capacity(entries.len());
    for entry in entries {
        let file = STANDARD
            .decode(&entry.smart_license)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                BatchFailure::Skip(format!(
                    "the ACK for {} is not base64 UTF-8 text",
                    entry.sudi
                ))
            })?;
        // A bad signature is refused outright: it stays unstored and the batch keeps polling, so
        // fixing cssm.signing_certificate_file and syncing again recovers it.
        let verified = verify_ack(&file, verifier, now).map_err(|e| {
            BatchFailure::Skip(format!("the ACK for {} was refused: {e}", entry.sudi))
        })?;
        if !verified.ack.sudi.same_device(&entry.sudi) {
            return Err(BatchFailure::Skip(format!(
                "the ACK listed for {} is signed for {}",
                entry.sudi, verified.ack.sudi
            )));
        }
        figures.bytes_received += i64::try_from(file.len()).unwrap_or(i64::MAX);
        checked.push(CheckedAck {
            sudi: entry.sudi.clone(),
            file,
            report_ids: verified.ack.acked_report_ids,
            has_policy: verified.policy.is_some(),
        });
    }

    let (stored, acked, released) = conn
        .transaction::<_, outpost_db::DbError, _>(async |conn| {
            let mut stored = 0;
            let mut acked = 0;
            for ack in &checked {
                let key = product_instances::UdiKey { account_id: account, pid: &ack.sudi.udi_pid, serial: &ack.sudi.udi_serial_number };
                let Some(pi) = product_instances::find_by_udi(conn, key).await? else {
                    tracing::warn!(pi.udi = %ack.sudi, "ACK for a device no longer in the inventory; not stored");
                    continue;
                };
                let (ack_id, new) = acks::insert_ack(
                    conn,
                    &acks::NewAck {
                        id: AckId::new(),
                        account_id: account,
                        pi_id: pi.id,
                        smart_license: ack.file.clone(),
                        sha256: sha256_hex(ack.file.as_bytes()),
                        acked_report_ids: ack.report_ids.clone(),
                        has_policy: ack.has_policy,
                        source: AckSource::CssmSync,
                        upload_id: Some(upload.id),
                        received_at: now,
                    },
                )
                .await?;
                let marked = acks::mark_reports_acked(conn, pi.id, &ack.report_ids, ack_id, now).await?;
                stored += i32::from(new);
                acked += i32::try_from(marked).unwrap_or(i32::MAX);
                alerts::raise(conn, account, Some(pi.id), kinds::ACK_RECEIVED, Severity::Info, "Acknowledgement received from CSSM", now).await?;
                if reports::count_unacknowledged_of_pi(conn, pi.id).await? == 0 {
                    alerts::clear(conn, account, Some(pi.id), kinds::USAGE_REPORT, now).await?;
                }
                events::record(
                    conn,
                    &NewEvent {
                        account_id: Some(account),
                        pi_id: Some(pi.id),
                        actor: "system".into(),
                        action: "cssm.ack_received".into(),
                        result: EventResult::Ok,
                        detail: json!({ "report_ids": ack.report_ids, "new": new, "policy": ack.has_policy }),
                        created_at: now,
                    },
                )
                .await?;
            }
            uploads::mark_complete(conn, upload.id, now).await?;
            // Reports CSSM's ACKs did not cover go back to the unsent pool for the next sync,
            // instead of waiting forever in a completed batch.
            let released = uploads::release_unacknowledged(conn, upload.id).await?;
            Ok((stored, acked, released))
        })
        .await?;
    figures.acks_received += stored;
    figures.reports_acked += acked;
    if released > 0 {
        tracing::warn!(
            reports = released,
            "CSSM's ACKs left reports of a batch unacknowledged; they will be sent again"
        );
        figures.released += i32::try_from(released).unwrap_or(i32::MAX);
    }
    Ok(())
}
