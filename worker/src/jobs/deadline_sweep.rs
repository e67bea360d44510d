//! The `deadline_sweep` job: for every active account, computes each product instance's
//! reporting and ACK deadlines (`outpost_core::deadlines`) and raises or clears its alerts
//! ("Reporting due in N days", "Reporting overdue", "ACK overdue"), plus a summary alert on the
//! account. It also fails authorization requests CSSM left unanswered for a day. The scheduler
//! enqueues it every few minutes; the clock is the worker's (injectable).

use outpost_core::deadlines::{self, Standing};
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::{AccountStatus, Severity};
use outpost_db::jobs::catalog::DeadlineSweep;
use outpost_db::{AccountId, ProductInstanceId};
use serde_json::{Value, json};

use super::{JobContext, JobError, RunJob};

/// Days ahead a report deadline is announced.
pub const WARN_DAYS: i64 = 14;
/// PIs read per query.
const PAGE: i64 = 1000;

impl RunJob for DeadlineSweep {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let worker = &ctx.worker;
        let mut conn = worker.pool.get().await?;
        let mut swept = 0u64;
        let mut overdue_total = 0u64;
        for account in accounts::list_accounts(&mut conn).await? {
            if account.status != AccountStatus::Active {
                continue;
            }
            let (pis, overdue) = sweep_account(ctx, &mut conn, &account).await?;
            swept += pis;
            overdue_total += overdue;
        }
        // Authorization requests CSSM never answered must not hold licenses forever.
        let expired =
            outpost_db::authorizations::expire_stale(&mut conn, worker.clock.now()).await?;
        // One-time pull URLs are kept a day past their expiry, for the record, then dropped.
        outpost_db::pull::purge_drops(&mut conn, worker.clock.now()).await?;
        Ok(json!({
            "product_instances": swept,
            "overdue": overdue_total,
            "authorization_codes_expired": expired,
            "message": format!("{swept} product instances checked, {overdue_total} overdue"),
        }))
    }
}

/// Sweeps one account; returns (PIs checked, PIs overdue).
async fn sweep_account(
    ctx: &JobContext,
    conn: &mut outpost_db::AsyncPgConnection,
    account: &LocalAccount,
) -> Result<(u64, u64), JobError> {
    use outpost_db::deadlines as db;
    let now = ctx.worker.clock.now();
    let narrowing = account.reporting_interval();
    let account = account.id;
    let license_kinds = db::license_kinds(conn, account).await?;
    let (mut checked, mut overdue) = (0u64, 0u64);
    let mut after = ProductInstanceId(uuid::Uuid::nil());
    loop {
        let page = db::histories(conn, account, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for pi in &page {
            let due = deadlines::deadlines(&pi.policy(), narrowing, &pi.usage(&license_kinds));
            let report = due
                .report_due
                .map(|(at, _)| deadlines::standing(at, now, WARN_DAYS));
            let ack = due.ack_due.map(|at| deadlines::standing(at, now, 0));
            let late = apply(conn, account, pi.id, report, ack, now).await?;
            checked += 1;
            overdue += u64::from(late);
        }
    }
    if overdue > 0 {
        alerts::raise(
            conn,
            account,
            None,
            kinds::ACCOUNT_OVERDUE,
            Severity::Error,
            &format!("{overdue} product instance(s) overdue for reporting or ACK"),
            now,
        )
        .await?;
    } else {
        alerts::clear(conn, account, None, kinds::ACCOUNT_OVERDUE, now).await?;
    }
    Ok((checked, overdue))
}

/// Raises the alerts a PI's standings call for and clears the others; true when it is late.
async fn apply(
    conn: &mut outpost_db::AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    report: Option<Standing>,
    ack: Option<Standing>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, JobError> {
    let pi = Some(pi);
    let (due, overdue) = match report {
        Some(Standing::DueIn(days)) => (Some(format!("Reporting due in {days} days")), None),
        Some(Standing::Overdue(days)) => (None, Some(format!("Reporting overdue ({days} days)"))),
        Some(Standing::OnTime) | None => (None, None),
    };
    let ack_late = match ack {
        Some(Standing::Overdue(days)) => Some(format!("ACK overdue ({days} days)")),
        _ => None,
    };
    for (kind, severity, message) in [
        (kinds::REPORTING_DUE, Severity::Warning, &due),
        (kinds::REPORTING_OVERDUE, Severity::Error, &overdue),
        (kinds::ACK_OVERDUE, Severity::Error, &ack_late),
    ] {
        match message {
            Some(message) => alerts::raise(conn, account, pi, kind, severity, message, now).await?,
            None => alerts::clear(conn, account, pi, kind, now).await?,
        }
    }
    Ok(overdue.is_some() || ack_late.is_some())
}
