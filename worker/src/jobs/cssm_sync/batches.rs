//! One batch at a time: send it, poll it, store its ACKs; a failure stays with its batch.

use std::collections::HashMap;

use outpost_core::Sudi;
use outpost_core::crypto::random_alphanumeric;
use outpost_core::cssm::{
    AckEntry, DeviceUsage, PollData, ReportUsageData, ReportUsageRequest, STATUS_COMPLETE,
    UsageItem,
};
use outpost_core::signed_file::verify_ack;
use outpost_db::enums::AckSource;
use outpost_db::uploads::{self, OutgoingReport, Upload};
use outpost_db::{
    AccountId, AsyncConnection, AsyncPgConnection, ProductInstanceId, acks, product_instances,
};
use sha2::Digest;

use super::{Figures, JobContext, JobError};
use crate::cssm_client::{AccountScope, CssmError};

/// How one batch failed.
pub(super) enum BatchFailure {
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
pub(super) fn note(
    outcome: Result<(), BatchFailure>,
    skipped: &mut Vec<String>,
) -> Result<(), JobError> {
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
pub(super) async fn poll_once(
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
pub(super) async fn send(
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
    // Trust requests ride with their device's reports.
    let pis: Vec<ProductInstanceId> = index.keys().copied().collect();
    let trust = product_instances::pending_trust_requests(conn, &pis).await?;
    for (pi, requests) in &trust {
        if let (Some(slot), serde_json::Value::Array(items)) = (index.get(pi), requests) {
            devices[*slot].trust_requests.clone_from(items);
        }
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
    product_instances::mark_trust_forwarded(conn, &trust, ctx.worker.clock.now()).await?;
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
    verified: outpost_core::signed_file::VerifiedAck,
}

/// Verifies one ACK a poll returned: base64 text, CSSM's signature, and the device it names.
/// A bad signature is refused outright: it stays unstored and the batch keeps polling, so fixing
/// cssm.signing_certificate_file and syncing again recovers it.
fn check_ack(
    entry: &AckEntry,
    verifier: &outpost_core::crypto::SignatureVerifier,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<CheckedAck, BatchFailure> {
    let file = crate::cssm_client::decode_file(&entry.smart_license).ok_or_else(|| {
        BatchFailure::Skip(format!(
            "the ACK for {} is not base64 UTF-8 text",
            entry.sudi
        ))
    })?;
    let verified = verify_ack(&file, verifier, now)
        .map_err(|e| BatchFailure::Skip(format!("the ACK for {} was refused: {e}", entry.sudi)))?;
    if !verified.ack.sudi.same_device(&entry.sudi) {
        return Err(BatchFailure::Skip(format!(
            "the ACK listed for {} is signed for {}",
            entry.sudi, verified.ack.sudi
        )));
    }
    Ok(CheckedAck {
        sudi: entry.sudi.clone(),
        file,
        verified,
    })
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
        let ack = check_ack(entry, verifier, now)?;
        figures.bytes_received += i64::try_from(ack.file.len()).unwrap_or(i64::MAX);
        checked.push(ack);
    }
    // Devices are looked up first; an ACK for a device deleted meanwhile is skipped.
    let mut verified = Vec::with_capacity(checked.len());
    for ack in checked {
        let key = product_instances::UdiKey {
            account_id: account,
            pid: &ack.sudi.udi_pid,
            serial: &ack.sudi.udi_serial_number,
        };
        match product_instances::find_by_udi(conn, key).await? {
            Some(pi) => verified.push(acks::VerifiedAck::new(pi.id, ack.file, ack.verified)),
            None => {
                tracing::warn!(pi.udi = %ack.sudi, "ACK for a device no longer in the inventory; not stored")
            }
        }
    }
    let (stored, acked, released) = conn
        .transaction::<_, outpost_db::DbError, _>(async |conn| {
            let (mut stored, mut acked) = (0, 0);
            for ack in &verified {
                let source = AckSource::CssmSync;
                let (new, marked) =
                    acks::store_verified(conn, account, ack, source, Some(upload.id), now).await?;
                stored += i32::from(new);
                acked += i32::try_from(marked).unwrap_or(i32::MAX);
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
