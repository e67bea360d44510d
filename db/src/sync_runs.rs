//! The synchronisation ledger: one row per sync with CSSM, online or by file.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::enums::{SyncChannel, SyncDirection, SyncState};
use crate::ids::{AccountId, JobId, SyncRunId};
use crate::pool::DbError;
use crate::schema::sync_runs;

/// A ledger row.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = sync_runs, check_for_backend(diesel::pg::Pg))]
pub struct SyncRun {
    /// Id.
    pub id: SyncRunId,
    /// Account.
    pub account_id: AccountId,
    /// The job that ran it.
    pub job_id: Option<JobId>,
    /// Online or file.
    pub channel: SyncChannel,
    /// Which way.
    pub direction: SyncDirection,
    /// Result.
    pub state: SyncState,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Reports sent (or exported).
    pub reports_sent: i32,
    /// Reports CSSM already had.
    pub reports_duplicate: i32,
    /// ACK files received.
    pub acks_received: i32,
    /// Reports newly acknowledged.
    pub reports_acked: i32,
    /// License entries synced down.
    pub licenses_synced: i32,
    /// Bytes sent.
    pub bytes_sent: i64,
    /// Bytes received.
    pub bytes_received: i64,
    /// SHA-256 of everything sent (online) or of the file.
    pub sha256: Option<String>,
    /// File name, for file syncs.
    pub file_name: Option<String>,
    /// Summary or error.
    pub message: Option<String>,
}

/// The figures a sync ends with.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = sync_runs)]
pub struct SyncRunOutcome {
    /// Result.
    pub state: Option<SyncState>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Reports sent.
    pub reports_sent: Option<i32>,
    /// Duplicates.
    pub reports_duplicate: Option<i32>,
    /// ACK files.
    pub acks_received: Option<i32>,
    /// Reports acknowledged.
    pub reports_acked: Option<i32>,
    /// Licenses synced.
    pub licenses_synced: Option<i32>,
    /// Bytes sent.
    pub bytes_sent: Option<i64>,
    /// Bytes received.
    pub bytes_received: Option<i64>,
    /// Hash.
    pub sha256: Option<String>,
    /// File name, for file syncs.
    pub file_name: Option<String>,
    /// Summary or error.
    pub message: Option<String>,
}

/// Opens a ledger row in state `running`.
pub async fn start(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    job: Option<JobId>,
    channel: SyncChannel,
    direction: SyncDirection,
    now: DateTime<Utc>,
) -> Result<SyncRunId, DbError> {
    let id = SyncRunId::new();
    diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::id.eq(id),
            sync_runs::account_id.eq(account),
            sync_runs::job_id.eq(job),
            sync_runs::channel.eq(channel),
            sync_runs::direction.eq(direction),
            sync_runs::state.eq(SyncState::Running),
            sync_runs::started_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Closes a ledger row.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: SyncRunId,
    outcome: &SyncRunOutcome,
) -> Result<(), DbError> {
    diesel::update(sync_runs::table.find(id))
        .set(outcome)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks rows still `running` for an online sync as interrupted (their process died); the sync
/// starting now resumes their work.
pub async fn mark_interrupted(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        sync_runs::table
            .filter(sync_runs::account_id.eq(account))
            .filter(sync_runs::channel.eq(SyncChannel::Online))
            .filter(sync_runs::state.eq(SyncState::Running)),
    )
    .set((
        sync_runs::state.eq(SyncState::Interrupted),
        sync_runs::finished_at.eq(now),
        sync_runs::message
            .eq("the process stopped before this sync finished; the next sync resumed it"),
    ))
    .execute(conn)
    .await?)
}

/// The latest ledger rows of an account, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    limit: i64,
) -> Result<Vec<SyncRun>, DbError> {
    Ok(sync_runs::table
        .filter(sync_runs::account_id.eq(account))
        .order(sync_runs::started_at.desc())
        .limit(limit)
        .select(SyncRun::as_select())
        .load(conn)
        .await?)
}
