//! "Synchronize with Cisco" for one local account: upload unsent reports in batches per SA/VA
//! pair, poll the ACKs, verify and store them, sync the license list down, and write a ledger
//! row. Safe to run twice and to crash anywhere:
//!
//! - a batch is recorded (`cssm_uploads`, state `sending`) and its reports tagged *before* the
//!   call, so an interrupted call is resent as the very same batch (same nonce) on the next run;
//! - once CSSM gives a poll id the batch is `polling` and is never sent again;
//! - ACKs are stored idempotently (by device and file hash) together with the report marks;
//! - one sync per account at a time, by a session advisory lock on a dedicated connection;
//! - a failure confined to one batch (CSSM refusing it, an ACK that does not verify, a poll id
//!   CSSM forgot) is noted and the sync goes on with the other batches (`batches.rs`).

mod batches;
mod scopes;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use outpost_core::crypto::random_alphanumeric;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::{
    EventResult, Severity, SyncChannel, SyncDirection, SyncState, UploadState,
};
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::JobPayload;
use outpost_db::jobs::catalog::CssmSync;
use outpost_db::licenses::{self, License};
use outpost_db::sync_runs::{self, SyncRunOutcome};
use outpost_db::uploads::{self, OutgoingReport, Upload};
use outpost_db::{AsyncPgConnection, locks};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{JobContext, JobError, RunJob};
use crate::cssm_client::CssmError;

use self::batches::{BatchFailure, note, poll_once, send};
pub(crate) use self::scopes::Scopes;

/// A CSSM bearer token for a registered account's client credentials.
pub(crate) async fn account_token(
    worker: &crate::WorkerContext,
    account: &LocalAccount,
) -> Result<String, JobError> {
    let (Some(client_id), Some(client_secret)) =
        (&account.cssm_client_id, &account.cssm_client_secret)
    else {
        return Err(JobError::Fatal(format!(
            "account '{}' is not registered with CSSM",
            account.name
        )));
    };
    let client_secret =
        outpost_app::secrets::open_client_secret(&worker.credentials, account.id, client_secret)?;
    Ok(worker.cssm.token(client_id, &client_secret).await?)
}

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
pub(super) struct Figures {
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

        let (mut lock_conn, lock_key) = lock_account_sync(worker, &account).await?;
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
            // ACKs still out, or reports to send again: another sync comes back for them.
            let wait = i64::try_from(worker.settings.cssm.follow_up_secs).unwrap_or(900);
            let follow_up = finished + chrono::Duration::seconds(wait);
            let job = self.job(follow_up, worker.settings.worker.max_attempts);
            outpost_db::jobs::enqueue(&mut conn, &job, finished).await?;
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

/// One sync per account at a time: a session advisory lock on a dedicated connection, so the
/// lock dies with its connection if the worker crashes. Returns the connection and the key.
async fn lock_account_sync(
    worker: &crate::WorkerContext,
    account: &LocalAccount,
) -> Result<(AsyncPgConnection, String), JobError> {
    let lock_key = format!("cssm_sync:{}", account.id);
    let timeout = Duration::from_secs(worker.settings.database.connect_timeout_secs);
    let mut lock_conn = outpost_db::pool::establish(&worker.database_url, timeout)
        .await
        .map_err(|e| JobError::Retry(format!("database: {e}")))?;
    if !locks::try_lock(&mut lock_conn, &lock_key).await? {
        return Err(JobError::Retry(format!(
            "another sync of account '{}' is running",
            account.name
        )));
    }
    Ok((lock_conn, lock_key))
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
            file_name: None,
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

/// Steps 1 to 4 of a sync: resend, send, poll, licenses.
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
    let token = account_token(worker, account).await?;
    let mut session = Session {
        ctx,
        account,
        token: &token,
        scopes: Scopes::new(&worker.cssm, &token, account)?,
        skipped: Vec::new(),
    };
    session.resend(conn, figures).await?;
    session.send_new(conn, figures).await?;
    session.poll(conn, verifier, figures).await?;
    if !session.skipped.is_empty() {
        // Licenses are still synced below only when every batch went through; report first.
        return Err(JobError::Retry(format!(
            "{} batch problem(s): {}",
            session.skipped.len(),
            session.skipped.join("; ")
        )));
    }
    sync_licenses(ctx, conn, account, &token, figures).await
}

/// One sync's dealings with CSSM. Problems confined to one batch are noted in `skipped` and the
/// sync goes on with the others, so one bad batch never holds back the rest; they are reported
/// (and retried) at the end.
struct Session<'a> {
    ctx: &'a JobContext,
    account: &'a LocalAccount,
    token: &'a str,
    scopes: Scopes<'a>,
    skipped: Vec<String>,
}

impl Session<'_> {
    /// Step 1: batches recorded but not confirmed sent (a crash or failure mid-call): resend as is.
    async fn resend(
        &mut self,
        conn: &mut AsyncPgConnection,
        figures: &mut Figures,
    ) -> Result<(), JobError> {
        for upload in uploads::open_uploads(conn, self.account.id).await? {
            if upload.state != UploadState::Sending {
                continue;
            }
            let outgoing = uploads::upload_reports(conn, self.account.id, upload.id).await?;
            let sent = async {
                let scope = self
                    .scopes
                    .scope(&upload.smart_account, &upload.virtual_account)
                    .await?;
                send(
                    self.ctx, conn, self.token, &scope, &upload, &outgoing, figures,
                )
                .await
            };
            note(sent.await, &mut self.skipped)?;
        }
        Ok(())
    }

    /// Step 2: new batches, per SA/VA pair, until every stored report is in one.
    async fn send_new(
        &mut self,
        conn: &mut AsyncPgConnection,
        figures: &mut Figures,
    ) -> Result<(), JobError> {
        let account = self.account;
        let batch = i64::try_from(self.ctx.worker.settings.cssm.batch_size).unwrap_or(500);
        let mut after = 0;
        loop {
            let page = uploads::unsent_reports(conn, account.id, after, batch).await?;
            let Some(last) = page.last() else { break };
            after = last.row_id;
            let mut pairs: Vec<((String, String), Vec<OutgoingReport>)> = Vec::new();
            for report in page {
                let pair = report.destination((&account.smart_account, &account.virtual_account));
                match pairs.iter_mut().find(|(p, _)| *p == pair) {
                    Some((_, reports)) => reports.push(report),
                    None => pairs.push((pair, vec![report])),
                }
            }
            for (pair, outgoing) in pairs {
                let sent = self.send_batch(conn, &pair, outgoing, figures).await;
                note(sent, &mut self.skipped)?;
            }
        }
        Ok(())
    }

    /// Records a new batch of `outgoing` for the pair (tagging its reports) and sends it.
    async fn send_batch(
        &mut self,
        conn: &mut AsyncPgConnection,
        (smart_account, virtual_account): &(String, String),
        outgoing: Vec<OutgoingReport>,
        figures: &mut Figures,
    ) -> Result<(), BatchFailure> {
        let scope = self.scopes.scope(smart_account, virtual_account).await?;
        let row_ids: Vec<i64> = outgoing.iter().map(|r| r.row_id).collect();
        let nonce = random_alphanumeric(16);
        let now = self.ctx.worker.clock.now();
        let (upload, tagged) = uploads::create_upload(
            conn,
            self.account.id,
            smart_account,
            virtual_account,
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
        send(
            self.ctx, conn, self.token, &scope, &upload, &outgoing, figures,
        )
        .await
    }

    /// Step 3: polls every batch CSSM holds until its ACKs arrive, a few times within this run.
    async fn poll(
        &mut self,
        conn: &mut AsyncPgConnection,
        verifier: &outpost_core::crypto::SignatureVerifier,
        figures: &mut Figures,
    ) -> Result<(), JobError> {
        let worker = &self.ctx.worker;
        let attempts = worker.settings.cssm.poll_attempts.max(1);
        for attempt in 0..attempts {
            let polling: Vec<Upload> = uploads::open_uploads(conn, self.account.id)
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
                    let (sa, va) = (&upload.smart_account, &upload.virtual_account);
                    let scope = self.scopes.scope(sa, va).await?;
                    let account = self.account.id;
                    poll_once(
                        self.ctx, conn, self.token, &scope, account, &upload, verifier, figures,
                    )
                    .await
                };
                match polled.await {
                    Ok(true) => figures.still_pending -= 1,
                    outcome => note(outcome.map(|_| ()), &mut self.skipped)?,
                }
            }
            if figures.still_pending > 0 && attempt + 1 < attempts {
                let (done, total) = (u64::from(attempt) + 1, Some(attempts.into()));
                self.ctx.progress(done, total, "waiting for ACKs from CSSM");
                let wait = Duration::from_secs(worker.settings.cssm.poll_interval_secs);
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

/// Step 4: purchased licenses down into the default LVA. Quantities transferred to other LVAs
/// stay there; the default LVA holds the rest.
async fn sync_licenses(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    token: &str,
    figures: &mut Figures,
) -> Result<(), JobError> {
    let worker = &ctx.worker;
    let Some(registration_id) = &account.cssm_registration_id else {
        return Ok(());
    };
    let entries = worker.cssm.licenses(token, registration_id).await?;
    let lvas = accounts::list_lvas(conn, account.id).await?;
    let Some(default_lva) = lvas.iter().find(|l| l.number == 1) else {
        return Ok(());
    };
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
    licenses::apply_cssm_totals(conn, account.id, default_lva.id, &rows).await?;
    figures.licenses_synced = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    Ok(())
}
