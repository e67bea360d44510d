//! The jobs, one file each, and the dispatch from a job row to its code.

pub mod authorizations;
pub mod cssm_sync;
pub mod deadline_sweep;
pub mod device_pull;
pub mod registration;
pub mod webhook_delivery;

use std::sync::{Arc, Mutex, PoisonError};

use outpost_db::DbError;
use outpost_db::jobs::Job;
use outpost_db::jobs::catalog::{
    AccountRegistration, AuthorizationRequest, AuthorizationReturn, CssmSync, DeadlineSweep,
    DevicePull, WebhookDelivery,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::WorkerContext;

/// How a job run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after a backoff (network, CSSM or database trouble).
    #[error("{0}")]
    Retry(String),
    /// Will not get better by retrying (bad data, missing configuration).
    #[error("{0}")]
    Fatal(String),
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Retry(format!("database: {e}"))
    }
}

/// What a running job can see and report.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Process-wide context.
    pub worker: Arc<WorkerContext>,
    /// The job row as claimed.
    pub job: Job,
    progress: Arc<Mutex<Option<Value>>>,
}

impl JobContext {
    /// A context for a claimed job; `progress` is shared with the heartbeat that stores it.
    pub fn new(worker: Arc<WorkerContext>, job: Job, progress: Arc<Mutex<Option<Value>>>) -> Self {
        Self {
            worker,
            job,
            progress,
        }
    }

    /// Reports progress; stored with the next heartbeat and shown by `GET /jobs/{id}`.
    pub fn progress(&self, done: u64, total: Option<u64>, message: &str) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(json!({ "done": done, "total": total, "message": message }));
    }
}

/// A job's code: read from its payload, run idempotently, return a JSON result.
pub trait RunJob: DeserializeOwned + Send {
    /// Runs the job.
    fn run(self, ctx: &JobContext) -> impl Future<Output = Result<Value, JobError>> + Send;
}

fn payload<T: DeserializeOwned>(job: &Job) -> Result<T, JobError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Fatal(format!("{} job payload is unreadable: {e}", job.kind)))
}

/// Runs the code of a claimed job.
pub async fn dispatch(ctx: JobContext) -> Result<Value, JobError> {
    match ctx.job.kind.as_str() {
        CssmSync::KIND => payload::<CssmSync>(&ctx.job)?.run(&ctx).await,
        AccountRegistration::KIND => payload::<AccountRegistration>(&ctx.job)?.run(&ctx).await,
        DeadlineSweep::KIND => payload::<DeadlineSweep>(&ctx.job)?.run(&ctx).await,
        WebhookDelivery::KIND => payload::<WebhookDelivery>(&ctx.job)?.run(&ctx).await,
        DevicePull::KIND => payload::<DevicePull>(&ctx.job)?.run(&ctx).await,
        AuthorizationRequest::KIND => payload::<AuthorizationRequest>(&ctx.job)?.run(&ctx).await,
        AuthorizationReturn::KIND => payload::<AuthorizationReturn>(&ctx.job)?.run(&ctx).await,
        other => Err(JobError::Fatal(format!(
            "no worker code for job kind '{other}'"
        ))),
    }
}
