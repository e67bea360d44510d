//! Device files, for product instances that cannot reach Outpost either: a RUM file written by
//! `license smart save usage` is stored as if the device had pushed it, and the ACK for a device
//! is handed out as a file to install with `license smart import`.

use chrono::{DateTime, Utc};
use outpost_core::device::{DeviceRequest, DeviceResponse};
use outpost_core::offline_file;
use outpost_db::accounts::{self, Tenant};
use outpost_db::enums::{EventResult, ReportSource};
use outpost_db::events::{self, NewEvent};
use outpost_db::{AccountId, DbPool, ProductInstanceId, acks, product_instances};
use serde_json::json;

use super::{OfflineError, file_safe};
use crate::device::exchange::{self, ExchangeError};

/// Stores the reports of a RUM file for its device in local virtual account `lva`.
pub async fn upload_usage_file(
    pool: &DbPool,
    account_id: AccountId,
    lva: i32,
    text: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<DeviceResponse, OfflineError> {
    let mut conn = pool.get().await?;
    let account = accounts::find_account(&mut conn, account_id).await?;
    let lva = accounts::find_lva(&mut conn, account.id, lva)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                OfflineError::Rejected(format!(
                    "local account '{}' has no local virtual account {lva}",
                    account.name
                ))
            } else {
                e.into()
            }
        })?;
    let file = offline_file::parse(text)
        .map_err(|e| OfflineError::Rejected(format!("the RUM file is not valid: {e}")))?;
    let request =
        DeviceRequest::from_offline_file(file).map_err(|e| OfflineError::Rejected(e.0))?;
    let tenant = Tenant { account, lva };
    let response = exchange::run(
        &mut conn,
        &tenant,
        request,
        ReportSource::File,
        "file upload",
        now,
    )
    .await
    .map_err(|e| match e {
        ExchangeError::Refused { message, .. } => OfflineError::Rejected(message),
        ExchangeError::Db(e) => OfflineError::Db(e),
    })?;
    let detail = json!({ "message": response.message, "poll_id": response.poll_id });
    events::record(
        &mut conn,
        &NewEvent::account(
            tenant.account.id,
            actor,
            "device.usage_file",
            EventResult::Ok,
            detail,
            now,
        ),
    )
    .await?;
    Ok(response)
}

/// The latest ACK of a device as a file: (file name, content). Marked delivered.
pub async fn ack_file(
    pool: &DbPool,
    account_id: AccountId,
    pi_id: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<(String, String), OfflineError> {
    let mut conn = pool.get().await?;
    let pi = product_instances::find(&mut conn, account_id, pi_id).await?;
    let latest = acks::list_for_pi(&mut conn, account_id, pi.id)
        .await?
        .pop()
        .ok_or_else(|| OfflineError::Conflict(format!("no ACK for {} yet", pi.label())))?;
    acks::mark_delivered(&mut conn, latest.0, now).await?;
    Ok((
        format!(
            "ACK_{}_{}.txt",
            file_safe(pi.udi_pid.as_deref().unwrap_or_default()),
            file_safe(pi.udi_serial_number.as_deref().unwrap_or_default())
        ),
        latest.1,
    ))
}
