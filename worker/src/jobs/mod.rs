//! The jobs, one file each, and the dispatch from a job row to its code: each payload type
//! (`outpost_db::jobs::catalog`) names its kind, and [`HANDLERS`] lists the payloads this
//! worker runs.

pub mod authorizations;
pub mod cssm_sync;
pub mod deadline_sweep;
pub mod device_pull;
pub mod registration;
pub mod webhook_delivery;

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use outpost_app::AppError;
use outpost_db::DbError;
use outpost_db::jobs::catalog::{
    AccountRegistration, AuthorizationRequest, AuthorizationReturn, CssmSync, DeadlineSweep,
    DevicePull, WebhookDelivery,
};
use outpost_db::jobs::{Job, JobPayload};
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

/// A use case that failed: the database (or a fault of Outpost's) is worth another attempt; a
/// refusal will say the same next time.
impl From<AppError> for JobError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Db(e) => e.into(),
            AppError::Internal(detail) => JobError::Retry(detail),
            refused => JobError::Fatal(refused.to_string()),
        }
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
pub trait RunJob: JobPayload {
    /// Runs the job.
    fn run(self, ctx: &JobContext) -> impl Future<Output = Result<Value, JobError>> + Send;
}

/// A job's result, on its way.
pub type Running = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send>>;

/// Reads a claimed job's payload as `T` and runs it.
fn handle<T: RunJob + 'static>(ctx: JobContext) -> Running {
    Box::pin(async move {
        let job: T = serde_json::from_value(ctx.job.payload.clone()).map_err(|e| {
            JobError::Fatal(format!("{} job payload is unreadable: {e}", ctx.job.kind))
        })?;
        job.run(&ctx).await
    })
}

/// A job kind's code, started with the claimed job.
pub type Handler = fn(JobContext) -> Running;

/// Every job kind this worker runs, with its code.
pub const HANDLERS: [(&str, Handler); 7] = [
    (CssmSync::KIND, handle::<CssmSync>),
    (AccountRegistration::KIND, handle::<AccountRegistration>),
    (DeadlineSweep::KIND, handle::<DeadlineSweep>),
    (WebhookDelivery::KIND, handle::<WebhookDelivery>),
    (DevicePull::KIND, handle::<DevicePull>),
    (AuthorizationRequest::KIND, handle::<AuthorizationRequest>),
    (AuthorizationReturn::KIND, handle::<AuthorizationReturn>),
];

/// Runs the code of a claimed job.
pub async fn dispatch(ctx: JobContext) -> Result<Value, JobError> {
    match HANDLERS.iter().find(|(kind, _)| *kind == ctx.job.kind) {
        Some((_, handler)) => handler(ctx).await,
        None => Err(JobError::Fatal(format!(
            "no worker code for job kind '{}'",
            ctx.job.kind
        ))),
    }
}
