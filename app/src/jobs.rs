//! Work the front doors hand to the worker: "Synchronize now with Cisco" and "Synchronise now
//! with the device". Each is queued once (a second request returns the queued job) and is an
//! event of the account.

use chrono::{DateTime, Duration, Utc};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::{self, JobPayload, catalog::CssmSync, catalog::DevicePull};
use outpost_db::{AccountId, AsyncPgConnection, JobId, ProductInstanceId, accounts, pull};
use serde_json::json;

use crate::accounts::require_active;
use crate::error::{AppError, AppResult, OrNotFound};

/// A queued job: its id, and whether this request queued it (else it was queued already).
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// The job.
    #[schema(value_type = uuid::Uuid)]
    pub job_id: JobId,
    /// It was queued before this request.
    pub already_queued: bool,
}

/// Queues a CSSM sync of an active account.
pub async fn request_sync(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    actor: &str,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> AppResult<Queued> {
    let account = accounts::find_account(conn, account)
        .await
        .or_not_found("account")?;
    require_active(&account)?;
    let job = CssmSync {
        account_id: account.id,
    };
    let (job_id, created) = jobs::enqueue(conn, &job.job(now, max_attempts), now).await?;
    let queued = Queued {
        job_id,
        already_queued: !created,
    };
    let event = NewEvent::account(
        account.id,
        actor,
        "cssm.sync_requested",
        EventResult::Ok,
        json!({ "job_id": job_id, "already_queued": !created }),
        now,
    );
    events::record(conn, &event).await?;
    Ok(queued)
}

/// A queued pull from devices.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct QueuedPull {
    /// The job.
    #[schema(value_type = uuid::Uuid)]
    pub job_id: JobId,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// Devices it pulls from (those behind NAT are counted, then skipped).
    pub devices: usize,
    /// It was queued before this request.
    pub already_queued: bool,
}

/// Queues a pull from an active account's devices (`only` these, each pulled from), starting
/// `delay` from now.
pub async fn request_pull(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    only: Option<Vec<ProductInstanceId>>,
    delay: Duration,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<QueuedPull> {
    let account = accounts::find_account(conn, account)
        .await
        .or_not_found("account")?;
    require_active(&account)?;
    if only.as_ref().is_some_and(Vec::is_empty) {
        return Err(AppError::invalid(
            "product_instance_ids is empty; leave it out to pull from every device",
        ));
    }
    let found = pull::targets(conn, account.id, only.as_deref()).await?;
    if let Some(missing) = only
        .iter()
        .flatten()
        .find(|id| !found.iter().any(|t| t.id == **id))
    {
        // Another tenant's id, or a device that pushes: the same answer as for reading.
        return Err(AppError::not_found(format!(
            "product instance {missing} pulled from"
        )));
    }
    let starts_at = now + delay;
    let job = DevicePull {
        account_id: account.id,
        product_instance_ids: only,
    };
    // One attempt: a pull that failed is a fresh pull later, not a retry of stale targets.
    let (job_id, created) = jobs::enqueue(conn, &job.job(starts_at, 1), now).await?;
    let queued = QueuedPull {
        job_id,
        starts_at,
        devices: found.len(),
        already_queued: !created,
    };
    let event = NewEvent::account(
        account.id,
        actor,
        "device.pull_requested",
        EventResult::Ok,
        serde_json::to_value(queued).unwrap_or_default(),
        now,
    );
    events::record(conn, &event).await?;
    Ok(queued)
}
