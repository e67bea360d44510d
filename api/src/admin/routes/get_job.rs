//! `GET /api/v1/jobs/{id}`: state, progress and result of a job.

use actix_web::{HttpResponse, web};
use outpost_db::{JobId, jobs};
use serde_json::json;

use super::READERS;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Shows a job.
pub async fn get_job(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<JobId>,
) -> Result<HttpResponse, ApiError> {
    principal.require(READERS)?;
    let mut conn = state.pool.get().await?;
    let job = jobs::find(&mut conn, *id).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("job")
        } else {
            e.into()
        }
    })?;
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
