//! The job runner: claims jobs from the durable table, runs them with a heartbeat, and records
//! the outcome: success, a retry after exponential backoff, or failure when attempts run out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_db::enums::JobState;
use outpost_db::jobs::{self, Job};
use outpost_db::{DbError, JobId};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use crate::WorkerContext;
use crate::jobs::{JobContext, JobError, dispatch};

/// A worker process's runner.
#[derive(Debug, Clone)]
pub struct Runner {
    ctx: Arc<WorkerContext>,
    worker_id: String,
    /// Jobs this worker runs, with the handle that stops their code (graceful shutdown).
    held: Arc<Mutex<HashMap<JobId, AbortHandle>>>,
}

impl Runner {
    /// A runner with a unique worker id (host, process, random suffix).
    pub fn new(ctx: Arc<WorkerContext>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let worker_id = format!(
            "{}:{}:{}",
            host.trim(),
            std::process::id(),
            outpost_core::crypto::random_alphanumeric(6)
        );
        Self {
            ctx,
            worker_id,
            held: Arc::default(),
        }
    }

    /// This worker's id, as written in `jobs.locked_by`.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.ctx.settings.worker.lease_secs).unwrap_or(60))
    }

    async fn claim(&self) -> Result<Option<Job>, DbError> {
        let mut conn = self.ctx.pool.get().await?;
        jobs::claim_next(
            &mut conn,
            &self.worker_id,
            self.ctx.clock.now(),
            self.lease(),
        )
        .await
    }

    /// Runs jobs until `shutdown` turns true, `worker.concurrency` at a time.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.ctx.settings.worker.poll_interval_ms);
        let slots = Arc::new(Semaphore::new(self.ctx.settings.worker.concurrency));
        let mut running = JoinSet::new();
        tracing::info!(worker.id = %self.worker_id, "job runner started");
        loop {
            while running.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit,
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = permit else { break };
            match self.claim().await {
                Ok(Some(job)) => {
                    let runner = self.clone();
                    running.spawn(async move {
                        runner.execute(job).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "cannot read the job table; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }

        // Let running jobs finish. Those that do not are stopped, and only once their code has
        // stopped does each go back to the queue (by `execute`), so it never runs twice at once.
        let grace = Duration::from_secs(self.ctx.settings.worker.shutdown_grace_secs);
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            let handles: Vec<AbortHandle> = self
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned()
                .collect();
            for handle in handles {
                handle.abort();
            }
            while running.join_next().await.is_some() {}
        }
        tracing::info!(worker.id = %self.worker_id, "job runner stopped");
    }

    /// Claims and runs one job; `None` when nothing is runnable.
    pub async fn run_one(&self) -> Result<Option<(JobId, JobState)>, DbError> {
        let Some(job) = self.claim().await? else {
            return Ok(None);
        };
        let id = job.id;
        Ok(Some((id, self.execute(job).await)))
    }

    /// Runs jobs one at a time until none is runnable (tests drive the worker step by step).
    pub async fn run_until_idle(&self) -> Result<Vec<(JobId, JobState)>, DbError> {
        let mut ran = Vec::new();
        while let Some(outcome) = self.run_one().await? {
            ran.push(outcome);
        }
        Ok(ran)
    }

    fn backoff(&self, attempts: i32) -> chrono::Duration {
        let settings = &self.ctx.settings.worker;
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
        let secs = settings
            .backoff_base_secs
            .saturating_mul(1u64 << exponent)
            .min(settings.backoff_max_secs);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// Runs a claimed job to its end and records the outcome. Every log line of the job, its
    /// code's included, carries the job's span (`job.id`, `job.kind`, `job.attempt`).
    async fn execute(&self, job: Job) -> JobState {
        let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
        self.supervise(job).instrument(span).await
    }

    async fn supervise(&self, job: Job) -> JobState {
        let id = job.id;
        if job.attempts > job.max_attempts {
            let message = format!(
                "gave up after {} attempts: its workers stopped responding",
                job.max_attempts
            );
            let now = self.ctx.clock.now();
            return self.record(&job, Err(JobError::Fatal(message)), now).await;
        }
        tracing::info!("job started");
        let progress = Arc::new(Mutex::new(None::<Value>));
        let ctx = JobContext::new(self.ctx.clone(), job.clone(), progress.clone());
        let mut task = tokio::spawn(dispatch(ctx).in_current_span());
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, task.abort_handle());
        let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<()>();
        let heartbeat = tokio::spawn(
            self.clone()
                .heartbeat(id, progress, lost_tx)
                .in_current_span(),
        );
        let outcome = tokio::select! {
            joined = &mut task => match joined {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(JobError::Retry("the job panicked (a bug; see the log)".into())),
                Err(_) => {
                    heartbeat.abort();
                    return self.hand_back(id).await;
                }
            },
            _ = &mut lost_rx => {
                task.abort();
                heartbeat.abort();
                self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                tracing::warn!("lost the job to another worker (missed heartbeats); stopped it");
                return JobState::Running;
            }
        };
        heartbeat.abort();
        let state = self.record(&job, outcome, self.ctx.clock.now()).await;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        state
    }

    /// A job stopped by a shutdown: its code no longer runs, so it goes back to the queue as
    /// it is, its attempt not counted.
    async fn hand_back(&self, id: JobId) -> JobState {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let released = async {
            let mut conn = self.ctx.pool.get().await?;
            jobs::release(&mut conn, id, &self.worker_id, self.ctx.clock.now()).await
        };
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "could not hand the job back; it is retried after its lease");
        }
        tracing::info!("job stopped by shutdown and handed back to the queue");
        JobState::Queued
    }

    async fn heartbeat(
        self,
        id: JobId,
        progress: Arc<Mutex<Option<Value>>>,
        lost: tokio::sync::oneshot::Sender<()>,
    ) {
        let every = Duration::from_secs((self.ctx.settings.worker.lease_secs / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            let snapshot = progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let beat = async {
                let mut conn = self.ctx.pool.get().await?;
                jobs::heartbeat(
                    &mut conn,
                    id,
                    &self.worker_id,
                    snapshot.as_ref(),
                    self.ctx.clock.now(),
                )
                .await
            };
            match beat.await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = lost.send(());
                    return;
                }
                Err(e) => tracing::warn!(job.id = %id, error = %e, "heartbeat failed; retrying"),
            }
        }
    }

    /// Writes the outcome of a run; errors are logged here, once.
    async fn record(
        &self,
        job: &Job,
        outcome: Result<Value, JobError>,
        now: DateTime<Utc>,
    ) -> JobState {
        let written = async {
            let mut conn = self.ctx.pool.get().await?;
            match &outcome {
                Ok(result) => {
                    jobs::succeed(&mut conn, job.id, &self.worker_id, result, now).await?;
                    Ok::<_, DbError>(JobState::Succeeded)
                }
                Err(JobError::Retry(message)) => {
                    let retry_at = now + self.backoff(job.attempts);
                    jobs::fail(
                        &mut conn,
                        job,
                        &self.worker_id,
                        message,
                        Some(retry_at),
                        now,
                    )
                    .await
                }
                Err(JobError::Fatal(message)) => {
                    jobs::fail(&mut conn, job, &self.worker_id, message, None, now).await
                }
            }
        };
        match written.await {
            Ok(state) => {
                match (&outcome, state) {
                    (Ok(_), _) => tracing::info!("job succeeded"),
                    (Err(e), JobState::Queued) => {
                        tracing::warn!(error = %e, "job failed; it will be retried")
                    }
                    (Err(e), _) => tracing::error!(error = %e, job.state = %state, "job failed"),
                }
                state
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the job's outcome; it is retried after its lease");
                JobState::Running
            }
        }
    }
}
