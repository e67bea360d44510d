//! Storing RUM reports, the one path for reports a device pushed and reports Outpost pulled:
//! every report is read before anything is written (one bad report refuses them all), stored
//! idempotently by (PI, report id), and the PI's usage, its "Usage report from product
//! instance" alert and its authorization-code alert follow. Call inside a transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use outpost_core::Sudi;
use outpost_core::rum::RumEnvelope;

use crate::alerts::{self, kinds};
use crate::enums::{ReportSource, Severity};
use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;
use crate::reports::{self, NewRumReport, UsageSample};

/// A report read and ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    row: NewRumReport,
    /// (end of the latest measurement, its count), for usage tracking.
    latest: Option<(DateTime<Utc>, i64)>,
}

/// Reads every report of `sender`; the error names the first bad one (`usage[i]: ...`).
pub fn prepare(
    account: AccountId,
    sender: &Sudi,
    envelopes: &[RumEnvelope],
    source: ReportSource,
    now: DateTime<Utc>,
) -> Result<Vec<Prepared>, String> {
    let mut prepared = Vec::with_capacity(envelopes.len());
    for (i, envelope) in envelopes.iter().enumerate() {
        let facts = envelope.facts().map_err(|e| format!("usage[{i}]: {e}"))?;
        if !facts.instance.same_device(sender) {
            return Err(format!(
                "usage[{i}]: report {} was written by {}, not by the sender {sender}",
                facts.report_id, facts.instance
            ));
        }
        let latest = facts
            .latest_measurement()
            .filter(|_| !facts.telemetry)
            .and_then(|m| DateTime::from_timestamp(m.end_time, 0).map(|end| (end, m.count)));
        prepared.push(Prepared {
            row: NewRumReport {
                account_id: account,
                // Set by `store`.
                pi_id: ProductInstanceId(uuid::Uuid::nil()),
                report_id: facts.report_id,
                payload: envelope.payload.clone(),
                signature: envelope.signature.clone(),
                header: envelope.header.clone(),
                entitlement_tag: facts.entitlement_tag.clone(),
                telemetry: facts.telemetry,
                source,
                received_at: now,
            },
            latest,
        });
    }
    Ok(prepared)
}

/// What `store` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Reports in the batch.
    pub reports: usize,
    /// Reports not stored before.
    pub new: usize,
    /// The batch's report ids, sorted, each once.
    pub report_ids: Vec<i64>,
}

/// Stores prepared reports of PI `pi` and what follows from them.
pub async fn store(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    prepared: Vec<Prepared>,
    now: DateTime<Utc>,
) -> Result<Stored, DbError> {
    let mut latest: BTreeMap<String, (DateTime<Utc>, i64)> = BTreeMap::new();
    let mut rows = Vec::with_capacity(prepared.len());
    for mut report in prepared {
        report.row.pi_id = pi;
        if let (Some(tag), Some((end, count))) = (&report.row.entitlement_tag, report.latest) {
            let entry = latest.entry(tag.clone()).or_insert((end, count));
            if end >= entry.0 {
                *entry = (end, count);
            }
        }
        rows.push(report.row);
    }
    let new_ids = reports::insert_reports(conn, &rows).await?;
    for (tag, (end, count)) in latest {
        let sample = UsageSample {
            account_id: account,
            pi_id: pi,
            entitlement_tag: tag,
            count,
            measured_until: end,
        };
        reports::record_usage(conn, &sample, now).await?;
    }
    let mut report_ids: Vec<i64> = rows.iter().map(|r| r.report_id).collect();
    report_ids.sort_unstable();
    report_ids.dedup();
    // The status line says a report awaits CSSM; reports resent after their ACK change nothing.
    if reports::count_unacknowledged_of_pi(conn, pi).await? > 0 {
        let message = "Usage report from product instance";
        alerts::raise(
            conn,
            account,
            Some(pi),
            kinds::USAGE_REPORT,
            Severity::Info,
            message,
            now,
        )
        .await?;
    }
    // Enforced and export-controlled licenses need an installed authorization code.
    crate::authorizations::check_alert(conn, account, pi, now).await?;
    Ok(Stored {
        reports: rows.len(),
        new: new_ids.len(),
        report_ids,
    })
}
