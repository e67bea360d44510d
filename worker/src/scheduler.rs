//! Schedules: a tokio-cron-scheduler job ticks every minute and, on the one worker that holds
//! the leader lock, enqueues the jobs of every schedule that is due. Cron never runs work
//! itself; the durable job table does.

use std::sync::Arc;
use std::time::Duration;

use outpost_db::accounts;
use outpost_db::enums::AccountStatus;
use outpost_db::jobs::{
    self, JobPayload, catalog::CssmSync, catalog::DeadlineSweep, catalog::DevicePull,
};
use outpost_db::schedules::{self, kinds};
use outpost_db::{AsyncConnection, AsyncPgConnection, DbError, locks};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler, JobSchedulerError};

use crate::WorkerContext;

/// Minutes between two deadline sweeps.
const DEADLINE_SWEEP_MINUTES: i64 = 15;

/// Advisory lock naming the schedule leader.
const LEADER_LOCK: &str = "outpost:schedule-leader";

/// Enqueues scheduled jobs.
pub struct Scheduler {
    ctx: Arc<WorkerContext>,
    /// A dedicated connection holding the leader lock while this process leads.
    leader: Mutex<Option<AsyncPgConnection>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

impl Scheduler {
    /// A scheduler; nothing runs until [`Scheduler::start`].
    pub fn new(ctx: Arc<WorkerContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            leader: Mutex::new(None),
        })
    }

    /// Enqueues a job for every due schedule and moves each to its next run, and keeps one
    /// deadline sweep queued. Returns how many schedule jobs it enqueued. Safe with several callers: due rows are locked with SKIP LOCKED.
    pub async fn tick(&self) -> Result<usize, DbError> {
        let now = self.ctx.clock.now();
        let max_attempts = self.ctx.settings.worker.max_attempts;
        let mut conn = self.ctx.pool.get().await?;
        conn.transaction::<_, DbError, _>(async |conn| {
            let mut enqueued = 0;
            for row in schedules::lock_due(conn, now).await? {
                let Some(rule) = row.rule() else {
                    tracing::warn!(account.id = %row.account_id, schedule.kind = %row.kind, "schedule holds invalid values; skipped");
                    continue;
                };
                match row.kind.as_str() {
                    kinds::CSSM_SYNC => {
                        // Until an account is registered (or while it is deactivated) there is
                        // nothing to synchronise; the schedule just moves on.
                        let account = accounts::find_account(conn, row.account_id).await?;
                        if account.status == AccountStatus::Active {
                            jobs::enqueue(conn, &CssmSync { account_id: row.account_id }.job(now, max_attempts), now).await?;
                            enqueued += 1;
                        }
                    }
                    kinds::DEVICE_PULL => {
                        let account = accounts::find_account(conn, row.account_id).await?;
                        if account.status == AccountStatus::Active {
                            let pull = DevicePull { account_id: row.account_id, product_instance_ids: None };
                            jobs::enqueue(conn, &pull.job(now, 1), now).await?;
                            enqueued += 1;
                        }
                    }
                    other => tracing::warn!(account.id = %row.account_id, schedule.kind = other, "no job for this schedule kind yet"),
                }
                                schedules::advance(conn, &row, rule.next_run_after(row.next_run_at, now), now).await?;
            }
            // The deadline sweep: one queued at a time, a quarter of an hour after the last.
            let sweep = DeadlineSweep {}.job(now + chrono::Duration::minutes(DEADLINE_SWEEP_MINUTES), max_attempts);
                        jobs::enqueue(conn, &sweep, now).await?;
            Ok(enqueued)
        })
        .await
    }

    /// Whether this process holds (or just took) the leader lock; only the leader enqueues.
    pub async fn lead(&self) -> bool {
        let mut leader = self.leader.lock().await;
        if let Some(conn) = leader.as_mut() {
            // Still connected? A lost connection means a lost lock.
            if outpost_db::ping(conn).await.is_ok() {
                return true;
            }
            tracing::warn!("lost the schedule leader connection");
            *leader = None;
        }
        let timeout = Duration::from_secs(self.ctx.settings.database.connect_timeout_secs);
        let Ok(mut conn) = outpost_db::pool::establish(&self.ctx.database_url, timeout).await
        else {
            return false;
        };
        match locks::try_lock(&mut conn, LEADER_LOCK).await {
            Ok(true) => {
                tracing::info!("this worker now enqueues scheduled jobs (schedule leader)");
                *leader = Some(conn);
                true
            }
            _ => false,
        }
    }

    async fn leader_tick(&self) {
        if !self.lead().await {
            return;
        }
        match self.tick().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "enqueued scheduled jobs"),
            Err(e) => {
                tracing::warn!(error = %e, "could not enqueue scheduled jobs; next minute retries")
            }
        }
    }

    /// Starts the minute tick; keep the returned scheduler and shut it down on exit.
    pub async fn start(self: Arc<Self>) -> Result<JobScheduler, JobSchedulerError> {
        let scheduler = JobScheduler::new().await?;
        let this = self.clone();
        scheduler
            .add(CronJob::new_async("0 * * * * *", move |_, _| {
                let this = this.clone();
                Box::pin(async move { this.leader_tick().await })
            })?)
            .await?;
        scheduler.start().await?;
        // Do not wait up to a minute for schedules that fell due while we were down.
        tokio::spawn(async move { self.leader_tick().await });
        Ok(scheduler)
    }
}
