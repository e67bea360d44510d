//! Report intake, the one path for every report Outpost receives: pushed by a device, uploaded
//! as a RUM file, or pulled over REST, RESTCONF or NETCONF. Every report is read before
//! anything is written (one bad report refuses them all), stored idempotently by (PI, report
//! id), and the PI's usage, its "Usage report from product instance" alert and its
//! authorization-code alert follow. Call inside a transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::rum::RumEnvelope;
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::{ReportSource, Severity};
use outpost_db::reports::{self, NewRumReport, UsageSample};
use outpost_db::{AccountId, AsyncPgConnection, ProductInstanceId, authorizations, pull};

use crate::error::{AppError, AppResult, Code};

/// A report read and ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    row: NewRumReport,
    /// (end of the latest measurement, its count), for usage tracking.
    latest: Option<(DateTime<Utc>, i64)>,
}

/// Reads every report of `sender`; the refusal (`bad_request`) names the first bad one
/// (`usage[i]: ...`).
pub fn prepare(
    account: AccountId,
    sender: &Sudi,
    envelopes: &[RumEnvelope],
    source: ReportSource,
    now: DateTime<Utc>,
) -> AppResult<Vec<Prepared>> {
    envelopes
        .iter()
        .enumerate()
        .map(|(i, envelope)| prepare_one(account, sender, i, envelope, source, now))
        .collect()
}

fn prepare_one(
    account: AccountId,
    sender: &Sudi,
    i: usize,
    envelope: &RumEnvelope,
    source: ReportSource,
    now: DateTime<Utc>,
) -> AppResult<Prepared> {
    let facts = envelope
        .facts()
        .map_err(|e| AppError::malformed(format!("usage[{i}]: {e}")))?;
    if !facts.instance.same_device(sender) {
        return Err(AppError::malformed(format!(
            "usage[{i}]: report {} was written by {}, not by the sender {sender}",
            facts.report_id, facts.instance
        )));
    }
    let latest = facts
        .latest_measurement()
        .filter(|_| !facts.telemetry)
        .and_then(|m| DateTime::from_timestamp(m.end_time, 0).map(|end| (end, m.count)));
    Ok(Prepared {
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
    })
}

/// What `store` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
) -> AppResult<Stored> {
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
    authorizations::check_alert(conn, account, pi, now).await?;
    Ok(Stored {
        reports: rows.len(),
        new: new_ids.len(),
        report_ids,
    })
}

/// A pulled device's product instance: its id, and its UDI when Outpost knows it (a PI added
/// by host learns its UDI from its first reports).
#[derive(Debug, Clone, Copy)]
pub struct PulledPi<'a> {
    /// The account.
    pub account: AccountId,
    /// The product instance.
    pub id: ProductInstanceId,
    /// Its UDI product id, if known.
    pub udi_pid: Option<&'a str>,
    /// Its UDI serial number, if known.
    pub udi_serial_number: Option<&'a str>,
}

/// Stores the reports Outpost collected from a pulled device (the native REST API's
/// `all-reports`, or a RUM file uploaded to a one-time URL). The device is the PI's UDI, else
/// whoever `named` (the file's system info) or the reports say; it must not be another PI of
/// the account. `None` when neither the PI nor the reports name a device (nothing to store).
pub async fn store_collected(
    conn: &mut AsyncPgConnection,
    pi: PulledPi<'_>,
    reports: &[RumEnvelope],
    named: Option<Sudi>,
    now: DateTime<Utc>,
) -> AppResult<Option<Stored>> {
    let sender = match (pi.udi_pid, pi.udi_serial_number) {
        (Some(p), Some(s)) => Sudi::new(p.to_owned(), s.to_owned()),
        _ => match named.or_else(|| reports.first().and_then(|r| Some(r.facts().ok()?.instance))) {
            Some(sudi) => sudi,
            None => return Ok(None),
        },
    };
    let prepared = prepare(pi.account, &sender, reports, ReportSource::Pull, now)?;
    if !pull::identify(conn, pi.account, pi.id, &sender).await? {
        return Err(AppError::refused(
            Code::Conflict,
            format!(
                "the reports are from {sender}, which is already another product instance of this account"
            ),
        ));
    }
    if prepared.is_empty() {
        return Ok(Some(Stored::default()));
    }
    Ok(Some(store(conn, pi.account, pi.id, prepared, now).await?))
}
