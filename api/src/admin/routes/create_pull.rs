//! `POST /api/v1/accounts/{id}/pull`: "Synchronise now with the device", for every device the
//! account pulls from or for some. The pull starts after a delay (`pull.start_delay_secs`, 60 s
//! by default, as SSM On-Prem does) unless the request names another; the job shows progress.

use actix_web::{HttpResponse, web};
use outpost_app::jobs::{self, QueuedPull};
use outpost_db::{AccountId, ProductInstanceId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::operable_account;
use crate::admin::auth::Principal;
use crate::admin::body::OptionalBody;
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
    responses((status = 202, body = QueuedPull), (status = 404), (status = 409), (status = 422)))]
pub async fn create_pull(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: OptionalBody<PullRequest>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let body = body.into_inner();
    let delay = match body.delay_secs {
        Some(secs) if secs > 3600 => {
            return Err(ApiError::invalid("delay_secs must be between 0 and 3600"));
        }
        Some(secs) => u64::from(secs),
        None => state.settings.pull.start_delay_secs,
    };
    let delay = chrono::Duration::seconds(i64::try_from(delay).unwrap_or(60));
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let queued = jobs::request_pull(
        &mut conn,
        account.id,
        body.product_instance_ids,
        delay,
        &principal.actor(),
        now,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(queued))
}
