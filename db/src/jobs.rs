//! The durable job table. Workers claim with `FOR UPDATE SKIP LOCKED`, keep a heartbeat while
//! they run, and retry with backoff. A job whose heartbeat is older than the lease (its worker
//! died) is taken over by another. Enqueueing is deduplicated: at most one queued job per key.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::enums::JobState;
use crate::ids::{AccountId, JobId};
use crate::pool::DbError;
use crate::schema::jobs;

/// A job row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Which job (`cssm_sync`, ...).
    pub kind: String,
    /// The account it works for, if any.
    pub account_id: Option<AccountId>,
    /// Its serialised arguments.
    pub payload: Value,
    /// Deduplication key.
    pub dedup_key: Option<String>,
    /// Where it stands.
    pub state: JobState,
    /// Runs started so far.
    pub attempts: i32,
    /// Runs allowed.
    pub max_attempts: i32,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Worker holding it.
    pub locked_by: Option<String>,
    /// Last sign of life of that worker.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Progress reported by the job.
    pub progress: Option<Value>,
    /// Result when done.
    pub result: Option<Value>,
    /// Error of the last failed run.
    pub last_error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// First run.
    pub started_at: Option<DateTime<Utc>>,
    /// Done.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Which job.
    pub kind: String,
    /// Account it works for.
    pub account_id: Option<AccountId>,
    /// Arguments.
    pub payload: Value,
    /// At most one queued job per key.
    pub dedup_key: Option<String>,
    /// Runs allowed.
    pub max_attempts: i32,
    /// Not before.
    pub run_at: DateTime<Utc>,
}

/// Enqueues a job, or returns the queued job with the same dedup key. `true` when created.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<(JobId, bool), DbError> {
    // A queued duplicate can be claimed between our insert and our look-up; a few rounds settle it.
    for _ in 0..5 {
        let id = JobId::new();
        let inserted: Option<JobId> = diesel::sql_query(
            "INSERT INTO jobs (id, kind, account_id, payload, dedup_key, state, max_attempts, run_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)
             ON CONFLICT (dedup_key) WHERE state = 'queued' DO NOTHING
             RETURNING id",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(&job.kind)
        .bind::<Nullable<SqlUuid>, _>(job.account_id)
        .bind::<Jsonb, _>(&job.payload)
        .bind::<Nullable<Text>, _>(job.dedup_key.as_deref())
        .bind::<Integer, _>(job.max_attempts)
        .bind::<Timestamptz, _>(job.run_at)
        .bind::<Timestamptz, _>(now)
        .get_result::<IdRow>(conn)
        .await
        .optional()?
        .map(|row| row.id);
        if let Some(id) = inserted {
            return Ok((id, true));
        }
        let existing = jobs::table
            .filter(jobs::dedup_key.eq(job.dedup_key.as_deref()))
            .filter(jobs::state.eq(JobState::Queued))
            .select(jobs::id)
            .first(conn)
            .await
            .optional()?;
        if let Some(id) = existing {
            return Ok((id, false));
        }
    }
    Err(DbError::Unavailable(
        "could not enqueue: the queued duplicate kept changing".into(),
    ))
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: JobId,
}

/// Claims the next runnable job: a queued one whose time has come, or a running one whose
/// worker stopped sending heartbeats.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Job>, DbError> {
    Ok(diesel::sql_query(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1,
                heartbeat_at = $2, started_at = COALESCE(started_at, $2)
         WHERE id = (
             SELECT id FROM jobs
             WHERE (state = 'queued' AND run_at <= $2)
                OR (state = 'running' AND heartbeat_at < $3 AND locked_by IS DISTINCT FROM $1)
             ORDER BY run_at
             FOR UPDATE SKIP LOCKED
             LIMIT 1)
         RETURNING *",
    )
    .bind::<Text, _>(worker)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(now - lease)
    .get_result::<Job>(conn)
    .await
    .optional()?)
}

/// Refreshes the heartbeat (and progress) of a job this worker holds. `false` when the job
/// was taken over: the worker must stop.
pub async fn heartbeat(
    conn: &mut AsyncPgConnection,
    id: JobId,
    worker: &str,
    progress: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let held = jobs::table
        .filter(jobs::id.eq(id))
        .filter(jobs::locked_by.eq(worker))
        .filter(jobs::state.eq(JobState::Running));
    let updated = match progress {
        Some(progress) => {
            diesel::update(held)
                .set((jobs::heartbeat_at.eq(now), jobs::progress.eq(progress)))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(held)
                .set(jobs::heartbeat_at.eq(now))
                .execute(conn)
                .await?
        }
    };
    Ok(updated == 1)
}

/// Marks a job this worker holds as done.
pub async fn succeed(
    conn: &mut AsyncPgConnection,
    id: JobId,
    worker: &str,
    result: &Value,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let updated = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::locked_by.eq(worker))
            .filter(jobs::state.eq(JobState::Running)),
    )
    .set((
        jobs::state.eq(JobState::Succeeded),
        jobs::result.eq(result),
        jobs::finished_at.eq(now),
        jobs::locked_by.eq(None::<String>),
        jobs::last_error.eq(None::<String>),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Records a failed run: requeued for `retry_at` while attempts remain, else failed. A retry
/// that would duplicate a newer queued job is cancelled instead. Returns the new state.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    job: &Job,
    worker: &str,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<JobState, DbError> {
    let held = || {
        jobs::table
            .filter(jobs::id.eq(job.id))
            .filter(jobs::locked_by.eq(worker))
            .filter(jobs::state.eq(JobState::Running))
    };
    if let Some(retry_at) = retry_at.filter(|_| job.attempts < job.max_attempts) {
        let requeued = diesel::update(held())
            .set((
                jobs::state.eq(JobState::Queued),
                jobs::run_at.eq(retry_at),
                jobs::last_error.eq(error),
                jobs::locked_by.eq(None::<String>),
                jobs::heartbeat_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)
            .await;
        match requeued.map_err(DbError::from) {
            Ok(_) => return Ok(JobState::Queued),
            Err(e) if e.is_unique_violation() => {
                let message =
                    format!("{error}; retry cancelled: a newer queued job does the same work");
                diesel::update(held())
                    .set((
                        jobs::state.eq(JobState::Cancelled),
                        jobs::last_error.eq(message),
                        jobs::finished_at.eq(now),
                        jobs::locked_by.eq(None::<String>),
                    ))
                    .execute(conn)
                    .await?;
                return Ok(JobState::Cancelled);
            }
            Err(e) => return Err(e),
        }
    }
    diesel::update(held())
        .set((
            jobs::state.eq(JobState::Failed),
            jobs::last_error.eq(error),
            jobs::finished_at.eq(now),
            jobs::locked_by.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(JobState::Failed)
}

/// Puts a job this worker holds back in the queue without counting the run (graceful shutdown).
pub async fn release(
    conn: &mut AsyncPgConnection,
    id: JobId,
    worker: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::locked_by.eq(worker))
            .filter(jobs::state.eq(JobState::Running)),
    )
    .set((
        jobs::state.eq(JobState::Queued),
        jobs::run_at.eq(now),
        jobs::attempts.eq(jobs::attempts - 1),
        jobs::locked_by.eq(None::<String>),
        jobs::heartbeat_at.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// A job by id.
pub async fn find(conn: &mut AsyncPgConnection, id: JobId) -> Result<Job, DbError> {
    Ok(jobs::table
        .find(id)
        .select(Job::as_select())
        .first(conn)
        .await?)
}

/// Jobs in a state, oldest first (the test harness checks none failed).
pub async fn in_state(conn: &mut AsyncPgConnection, state: JobState) -> Result<Vec<Job>, DbError> {
    Ok(jobs::table
        .filter(jobs::state.eq(state))
        .order(jobs::created_at)
        .select(Job::as_select())
        .load(conn)
        .await?)
}

/// A job's payload: its kind, the account it works for and how it is deduplicated. The job
/// row is made from it (`job`), and the worker reads it back by its `KIND`.
pub trait JobPayload: serde::Serialize + serde::de::DeserializeOwned + Send {
    /// The job kind, as stored in `jobs.kind`.
    const KIND: &'static str;

    /// The account the job works for, if any.
    fn account_id(&self) -> Option<AccountId>;

    /// At most one queued job per key; `None`: every job is its own. By default one queued job
    /// per kind and account.
    fn dedup_key(&self) -> Option<String> {
        Some(match self.account_id() {
            Some(account) => format!("{}:{account}", Self::KIND),
            None => Self::KIND.to_owned(),
        })
    }

    /// The job row to enqueue.
    fn job(&self, run_at: DateTime<Utc>, max_attempts: i32) -> NewJob {
        NewJob {
            kind: Self::KIND.into(),
            account_id: self.account_id(),
            // Plain structs of ids and strings: serialising them cannot fail.
            payload: serde_json::to_value(self).unwrap_or_default(),
            dedup_key: self.dedup_key(),
            max_attempts,
            run_at,
        }
    }
}

/// The jobs the API, the CLI and the device exchange enqueue and the worker runs, shared here
/// because the API and the worker meet only at the job table.
pub mod catalog {
    use serde::{Deserialize, Serialize};

    use super::JobPayload;
    use crate::ids::{AccountId, DeliveryId, ProductInstanceId};

    /// Computes every PI's reporting deadlines and raises or clears its deadline alerts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct DeadlineSweep {}

    impl JobPayload for DeadlineSweep {
        const KIND: &'static str = "deadline_sweep";
        fn account_id(&self) -> Option<AccountId> {
            None
        }
    }

    /// Online registration of an approved local account with CSSM.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AccountRegistration {
        /// The account to register.
        pub account_id: AccountId,
        /// Who asked, for the event log.
        pub actor: String,
    }

    impl JobPayload for AccountRegistration {
        const KIND: &'static str = "account_registration";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
    }

    /// Sends one webhook delivery (an alert as signed JSON); retried with backoff.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct WebhookDelivery {
        /// The account whose alert it is.
        pub account_id: AccountId,
        /// The delivery.
        pub delivery_id: DeliveryId,
    }

    impl JobPayload for WebhookDelivery {
        const KIND: &'static str = "webhook_delivery";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
        /// One job per delivery.
        fn dedup_key(&self) -> Option<String> {
            Some(format!("{}:{}", Self::KIND, self.delivery_id))
        }
    }

    /// Asks CSSM for the authorization codes of one device request (`devices/authrequest`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AuthorizationRequest {
        /// The account.
        pub account_id: AccountId,
        /// The device request (its codes share this id).
        pub request_id: uuid::Uuid,
    }

    impl JobPayload for AuthorizationRequest {
        const KIND: &'static str = "authorization_request";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
        /// One job per request.
        fn dedup_key(&self) -> Option<String> {
            Some(format!("{}:{}", Self::KIND, self.request_id))
        }
    }

    /// Forwards the authorization returns of an account to CSSM; one queued per account, it
    /// forwards every return waiting.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AuthorizationReturn {
        /// The account.
        pub account_id: AccountId,
    }

    impl JobPayload for AuthorizationReturn {
        const KIND: &'static str = "authorization_return";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
    }

    /// "Synchronise now with the device": pulls usage from an account's devices (all that are
    /// pulled from, or some) and installs the ACKs waiting for them.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct DevicePull {
        /// The account.
        pub account_id: AccountId,
        /// Only these PIs; `None`: every PI pulled from.
        #[serde(default)]
        pub product_instance_ids: Option<Vec<ProductInstanceId>>,
    }

    impl JobPayload for DevicePull {
        const KIND: &'static str = "device_pull";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
        /// One queued pull of all devices per account at a time; pulls of chosen devices are
        /// each their own.
        fn dedup_key(&self) -> Option<String> {
            self.product_instance_ids
                .is_none()
                .then(|| format!("{}:{}", Self::KIND, self.account_id))
        }
    }

    /// "Synchronize now with Cisco" for one local account; one queued per account.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CssmSync {
        /// The account to synchronise.
        pub account_id: AccountId,
    }

    impl JobPayload for CssmSync {
        const KIND: &'static str = "cssm_sync";
        fn account_id(&self) -> Option<AccountId> {
            Some(self.account_id)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn job_rows_carry_the_payload_and_dedup_key() {
            let account = AccountId(uuid::Uuid::nil());
            let now = chrono::Utc::now();
            let sync = CssmSync {
                account_id: account,
            }
            .job(now, 3);
            assert_eq!(sync.kind, "cssm_sync");
            assert_eq!(
                sync.dedup_key.as_deref(),
                Some(&*format!("cssm_sync:{account}"))
            );
            assert_eq!(sync.payload, serde_json::json!({ "account_id": account }));
            assert_eq!(
                DeadlineSweep {}.job(now, 1).dedup_key.as_deref(),
                Some("deadline_sweep")
            );
            let some = DevicePull {
                account_id: account,
                product_instance_ids: Some(vec![]),
            };
            assert_eq!(some.job(now, 1).dedup_key, None);
            let back: DevicePull = serde_json::from_value(some.job(now, 1).payload).unwrap();
            assert_eq!(back, some);
        }
    }
}
