//! `GET /api/v1/jobs/{id}`: state, progress and result of a job.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_db::enums::JobState;
use outpost_db::jobs::{self, Job};
use outpost_db::{AccountId, JobId};
use serde::Serialize;
use utoipa::ToSchema;

use super::READERS;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// A job as the API shows it (not its payload or its worker's lock).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Id.
    pub id: JobId,
    /// Which job (`cssm_sync`, `device_pull`, ...).
    pub kind: String,
    /// The account it works for (`null`: a system job).
    pub account_id: Option<AccountId>,
    /// Where it stands.
    pub state: JobState,
    /// Runs started so far.
    pub attempts: i32,
    /// Runs allowed.
    pub max_attempts: i32,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Progress the job reports (free-form, by job kind).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
    /// Its result once done (free-form, by job kind).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error of the last failed run.
    pub last_error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// First run.
    pub started_at: Option<DateTime<Utc>>,
    /// Done.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            account_id: job.account_id,
            state: job.state,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            progress: job.progress,
            result: job.result,
            last_error: job.last_error,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// Shows a job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Job id")), responses((status = 200, body = JobView), (status = 404)))]
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
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}
