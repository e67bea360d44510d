//! `POST /api/v1/accounts/{id}/sync`: "Synchronize now with Cisco". Enqueues the sync job
//! (or returns the one already queued) for the worker tier.

use actix_web::{HttpResponse, web};
use outpost_app::jobs::{self, Queued};
use outpost_db::AccountId;

use super::operable_account;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Enqueues a CSSM sync of the account.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 202, body = Queued), (status = 404), (status = 409)))]
pub async fn create_sync(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let attempts = state.settings.worker.max_attempts;
    let now = state.clock.now();
    let queued =
        jobs::request_sync(&mut conn, account.id, &principal.actor(), attempts, now).await?;
    Ok(HttpResponse::Accepted().json(queued))
}
