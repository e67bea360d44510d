//! `POST /api/v1/accounts/{id}/sync`: "Synchronize now with Cisco". Enqueues the sync job
//! (or returns the one already queued) for the worker tier.

use actix_web::{HttpResponse, web};
use outpost_db::AccountId;
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::{self, catalog::CssmSync};
use serde_json::json;

use super::licensing_account;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Enqueues a CSSM sync of the account.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 202, description = "`{job_id}`", body = serde_json::Value), (status = 404), (status = 409)))]
pub async fn create_sync(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = licensing_account(&state, &principal, *id).await?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let job = CssmSync {
        account_id: account.id,
    }
    .job(now, state.settings.worker.max_attempts);
    let (job_id, created) = jobs::enqueue(&mut conn, &job, now).await?;
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            principal.actor(),
            "cssm.sync_requested",
            EventResult::Ok,
            json!({ "job_id": job_id, "already_queued": !created }),
            now,
        ),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({ "job_id": job_id, "already_queued": !created })))
}
