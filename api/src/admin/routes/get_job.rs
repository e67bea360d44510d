//! `GET /api/v1/jobs/{id}`: state, progress and result of a job.

use actix_web::{HttpResponse, web};
use outpost_db::{JobId, jobs};
use serde_json::json;

use super::READERS;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Shows a job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Job id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub async fn get_job(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<JobId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let job = jobs::find(&mut conn, *id).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("job")
        } else {
            e.into()
        }
    })?;
    // An account's job is seen by whoever sees the account; system jobs by system roles.
    let visible = match job.account_id {
        Some(account) => principal.can_see(account),
        None => principal.has_system_role(READERS),
    };
    if !visible {
        return Err(ApiError::not_found("job"));
    }
    Ok(HttpResponse::Ok().json(json!({
        "id": job.id,
        "kind": job.kind,
        "account_id": job.account_id,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at,
        "progress": job.progress,
        "result": job.result,
        "last_error": job.last_error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    })))
}
