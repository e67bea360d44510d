//! `POST /api/v1/accounts/{id}/pull`: "Synchronise now with the device", for every device the
//! account pulls from or for some. The pull starts after a delay (`pull.start_delay_secs`, 60 s
//! by default, as SSM On-Prem does) unless the request names another; the job shows progress.

use actix_web::{HttpResponse, web};
use outpost_db::jobs::{self, catalog::DevicePull};
use outpost_db::{AccountId, ProductInstanceId, pull};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{audit, licensing_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Which devices, and when.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Only these product instances (they must be pulled from); left out: all of them.
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub product_instance_ids: Option<Vec<ProductInstanceId>>,
    /// Seconds before the pull starts (0 to 3600); left out: `pull.start_delay_secs`.
    pub delay_secs: Option<u32>,
}

/// Enqueues a pull from the account's devices.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/pull", tag = "sync",
    params(("id" = uuid::Uuid, Path, description = "Account id")), request_body = PullRequest,
    responses((status = 202, description = "`{job_id, starts_at, devices}`", body = serde_json::Value),
        (status = 404), (status = 409), (status = 422)))]
pub async fn create_pull(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Option<web::Json<PullRequest>>,
) -> Result<HttpResponse, ApiError> {
    let account = licensing_account(&state, &principal, *id).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let delay = match body.delay_secs {
        Some(secs) if secs > 3600 => {
            return Err(ApiError::invalid("delay_secs must be between 0 and 3600"));
        }
        Some(secs) => u64::from(secs),
        None => state.settings.pull.start_delay_secs,
    };
    let mut conn = state.pool.get().await?;
    let devices = match &body.product_instance_ids {
        Some(ids) => {
            if ids.is_empty() {
                return Err(ApiError::invalid(
                    "product_instance_ids is empty; leave it out to pull from every device",
                ));
            }
            let found = pull::targets(&mut conn, account.id, Some(ids)).await?;
            if let Some(missing) = ids.iter().find(|id| !found.iter().any(|t| t.id == **id)) {
                // Another tenant's id, or a device that pushes: the same answer as for reading.
                return Err(ApiError::not_found(&format!(
                    "product instance {missing} pulled from"
                )));
            }
            found.len()
        }
        None => pull::targets(&mut conn, account.id, None).await?.len(),
    };
    let now = state.clock.now();
    let starts_at = now + chrono::Duration::seconds(i64::try_from(delay).unwrap_or(60));
    let job = DevicePull {
        account_id: account.id,
        product_instance_ids: body.product_instance_ids.clone(),
    }
    .job(starts_at, 1);
    let (job_id, created) = jobs::enqueue(&mut conn, &job, now).await?;
    audit(&mut conn, &principal, account.id, "device.pull_requested",
        json!({ "job_id": job_id, "devices": devices, "starts_at": starts_at, "already_queued": !created }), now).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "job_id": job_id,
        "starts_at": starts_at,
        "devices": devices,
        "already_queued": !created,
    })))
}
