//! Device files, for product instances that cannot reach Outpost either: a RUM file written by
//! `license smart save usage` is stored as if the device had pushed it, and the ACK for a device
//! is handed out as a file to install with `license smart import`.

use chrono::{DateTime, Utc};
use outpost_core::device::{DeviceRequest, DeviceResponse};
use outpost_core::offline_file;
use outpost_db::accounts::{self, Tenant};
use outpost_db::enums::{EventResult, ReportSource};
use outpost_db::events::{self, NewEvent};
use outpost_db::{AccountId, AsyncPgConnection, ProductInstanceId, acks, product_instances};
use serde_json::json;

use super::{file_safe, rejected};
use crate::device::{self, Origin};
use crate::error::{AppError, AppResult, Code, OrNotFound};

/// Stores the reports of a RUM file for its device in local virtual account `lva`; the file
/// goes through the device exchange like a push (same checks, idempotent).
pub async fn upload_usage_file(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    lva: i32,
    text: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> AppResult<DeviceResponse> {
    let account = accounts::find_account(conn, account_id)
        .await
        .or_not_found("account")?;
    let lva = accounts::find_lva(conn, account.id, lva)
        .await
        .map_err(|e| match AppError::or_not_found(e, "lva") {
            AppError::NotFound(_) => rejected(format!(
                "local account '{}' has no local virtual account {lva}",
                account.name
            )),
            other => other,
        })?;
    let file = offline_file::parse(text)
        .map_err(|e| rejected(format!("the RUM file is not valid: {e}")))?;
    let request = DeviceRequest::from_offline_file(file).map_err(|e| rejected(e.0))?;
    let tenant = Tenant { account, lva };
    let origin = Origin {
        tenant: &tenant,
        source: ReportSource::File,
        source_address: "file upload",
    };
    let response = device::run(conn, origin, request, now)
        .await
        .map_err(|e| match e {
            // A file is refused as a file (what the device would have been told, said).
            AppError::Refused { message, .. } => rejected(message),
            other => other,
        })?;
    let detail = json!({ "message": response.message, "poll_id": response.poll_id });
    let event = NewEvent::account(
        tenant.account.id,
        actor,
        "device.usage_file",
        EventResult::Ok,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    Ok(response)
}

/// The latest ACK of a device as a file: (file name, content). Marked delivered.
pub async fn ack_file(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    pi_id: ProductInstanceId,
    now: DateTime<Utc>,
) -> AppResult<(String, String)> {
    let pi = product_instances::find(conn, account_id, pi_id)
        .await
        .or_not_found("product instance")?;
    let latest = acks::list_for_pi(conn, account_id, pi.id)
        .await?
        .pop()
        .ok_or_else(|| {
            AppError::refused(Code::Conflict, format!("no ACK for {} yet", pi.label()))
        })?;
    acks::mark_delivered(conn, latest.0, now).await?;
    Ok((
        format!(
            "ACK_{}_{}.txt",
            file_safe(pi.udi_pid.as_deref().unwrap_or_default()),
            file_safe(pi.udi_serial_number.as_deref().unwrap_or_default())
        ),
        latest.1,
    ))
}
