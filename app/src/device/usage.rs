//! `usage_report`: the reports are stored (idempotently, committed before the answer) and the
//! device gets a poll id for their ACK; trust code requests wait for the next CSSM sync.

use chrono::{DateTime, Utc};
use outpost_core::device::{MessageCode, Status};
use outpost_db::accounts::Tenant;
use outpost_db::{AsyncPgConnection, ProductInstanceId, product_instances, reports};
use serde_json::{Value, json};

use super::Reply;
use crate::error::AppResult;
use crate::intake::{self, Prepared};

/// Stores the reports of a `usage_report` (read before the transaction began).
pub(super) async fn usage_report(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    prepared: Vec<Prepared>,
    trust_requests: &[Value],
    now: DateTime<Utc>,
) -> AppResult<Reply> {
    if !trust_requests.is_empty() {
        // Forwarded with the device's reports by the next CSSM sync.
        product_instances::set_trust_requests(conn, pi, trust_requests).await?;
    }
    if prepared.is_empty() {
        return Ok(Reply::new(
            Status::Ok,
            MessageCode::NoReports,
            "the request holds no reports",
            None,
            json!({ "reports": 0 }),
        ));
    }
    let account = tenant.account.id;
    let stored = intake::store(conn, account, pi, prepared, now).await?;
    let poll = reports::create_device_poll(conn, account, pi, &stored.report_ids, now).await?;
    let known = stored.reports - stored.new;
    let mut message = format!(
        "usage accepted: {} reports ({known} already known)",
        stored.reports
    );
    if !trust_requests.is_empty() {
        message.push_str(&format!(
            "; {} trust code request(s) go to CSSM with them",
            trust_requests.len()
        ));
    }
    let detail = json!({
        "reports": stored.reports,
        "new": stored.new,
        "already_known": known,
        "poll_id": poll,
        "trust_requests": trust_requests.len(),
    });
    Ok(Reply::new(
        Status::OkPoll,
        MessageCode::UsageAccepted,
        message,
        Some(poll.to_string()),
        detail,
    ))
}
