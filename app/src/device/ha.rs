//! The HA set a device reports (`ha_udi`): new members join it and the sender takes the
//! reporting role. A PI of the account named as a member stops counting: only the active's
//! usage is counted. A switchover (the reporting role moving from one PI to another) and new
//! members are events; a unit that reports usage for itself alone counts again.

use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{DeviceRequest, MessageType};
use outpost_db::accounts::Tenant;
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::product_instances::{self, HaMemberRow};
use outpost_db::{AccountId, AsyncPgConnection, ProductInstanceId};
use serde_json::{Value, json};

use crate::error::AppResult;

/// The device's HA set after this exchange.
#[derive(Debug, Default)]
pub(crate) struct HaSet {
    /// Every UDI of the set (the PI's own first), as (PID, serial).
    pub udis: Vec<(String, String)>,
}

impl HaSet {
    /// The UDI of a listed device, if it is the sender or a member of its set; the refusal
    /// names `field`.
    pub fn member(&self, sudi: &Sudi, field: &str) -> AppResult<(String, String)> {
        let udi = (sudi.udi_pid.clone(), sudi.udi_serial_number.clone());
        if self.udis.contains(&udi) {
            Ok(udi)
        } else {
            Err(crate::AppError::malformed(format!(
                "{field} {sudi} is neither this device nor a member of its HA set"
            )))
        }
    }
}

/// Records an event of the exchange's PI.
async fn record(
    conn: &mut AsyncPgConnection,
    (account, pi): (AccountId, ProductInstanceId),
    actor: &str,
    action: &str,
    detail: Value,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let event = NewEvent {
        account_id: Some(account),
        pi_id: Some(pi),
        actor: actor.to_owned(),
        action: action.to_owned(),
        result: EventResult::Ok,
        detail,
        created_at: now,
    };
    events::record(conn, &event).await?;
    Ok(())
}

/// Keeps the HA set the request names (or the stored one when it names none).
pub(super) async fn update(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    sender: &Sudi,
    request: &DeviceRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<HaSet> {
    let account = tenant.account.id;
    let before = product_instances::ha_members(conn, account, pi).await?;
    let own = (sender.udi_pid.clone(), sender.udi_serial_number.clone());
    let mut udis = vec![own.clone()];
    if request.data.ha_udi.is_empty() {
        // Only the active reports usage: a unit that reports for itself alone counts again.
        if request.message_type == MessageType::UsageReport
            && product_instances::report_alone(conn, pi).await?
        {
            let detail = json!({ "reporting": sender.to_string() });
            record(
                conn,
                (account, pi),
                actor,
                "ha.reporting_alone",
                detail,
                now,
            )
            .await?;
        }
        udis.extend(
            before
                .iter()
                .map(|m| (m.udi_pid.clone(), m.udi_serial_number.clone()))
                .filter(|udi| *udi != own),
        );
        return Ok(HaSet { udis });
    }
    let members: Vec<HaMemberRow> = request
        .data
        .ha_udi
        .iter()
        .map(|m| HaMemberRow {
            account_id: account,
            pi_id: pi,
            role: m.role.as_str().into(),
            udi_pid: m.sudi.udi_pid.clone(),
            udi_serial_number: m.sudi.udi_serial_number.clone(),
            updated_at: now,
        })
        .collect();
    product_instances::replace_ha_members(conn, account, pi, &members).await?;
    for m in &members {
        let udi = (m.udi_pid.clone(), m.udi_serial_number.clone());
        if !udis.contains(&udi) {
            udis.push(udi);
        }
    }
    let added = newcomers(sender, &before, &members);
    if !added.is_empty() && !before.is_empty() {
        let detail = json!({ "members": added });
        record(conn, (account, pi), actor, "ha.member_added", detail, now).await?;
    }
    take_role(conn, (account, pi), sender, &udis[1..], actor, now).await?;
    Ok(HaSet { udis })
}

/// Members the set did not have before, as `PID:..,SN:.. (role)`.
fn newcomers(sender: &Sudi, before: &[HaMemberRow], members: &[HaMemberRow]) -> Vec<String> {
    members
        .iter()
        .filter(|m| {
            !(m.udi_pid == sender.udi_pid && m.udi_serial_number == sender.udi_serial_number)
        })
        .filter(|m| {
            !before
                .iter()
                .any(|b| b.udi_pid == m.udi_pid && b.udi_serial_number == m.udi_serial_number)
        })
        .map(|m| format!("PID:{},SN:{} ({})", m.udi_pid, m.udi_serial_number, m.role))
        .collect()
}

/// The sender takes the reporting role from the other members; a handover is an event.
async fn take_role(
    conn: &mut AsyncPgConnection,
    (account, pi): (AccountId, ProductInstanceId),
    sender: &Sudi,
    others: &[(String, String)],
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let (joined, took_over) =
        product_instances::take_reporting_role(conn, account, pi, others).await?;
    let handed_over: Vec<ProductInstanceId> = joined
        .iter()
        .filter(|j| j.was_reporting)
        .map(|j| j.id)
        .collect();
    for member in &handed_over {
        // Its deadlines are the set's now, and the set reports through the sender.
        for kind in [
            kinds::REPORTING_DUE,
            kinds::REPORTING_OVERDUE,
            kinds::ACK_OVERDUE,
        ] {
            alerts::clear(conn, account, Some(*member), kind, now).await?;
        }
    }
    if took_over || !handed_over.is_empty() {
        let detail =
            json!({ "reporting": sender.to_string(), "from_product_instances": handed_over });
        record(conn, (account, pi), actor, "ha.switchover", detail, now).await?;
    }
    Ok(())
}
