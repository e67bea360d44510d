//! Per-account schedules ("every N days at HH:MM"): the leader's cron tick enqueues the jobs of
//! those that are due and moves them to their next run.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use outpost_core::schedule::Schedule;
use serde::Serialize;

use crate::ids::AccountId;
use crate::pool::DbError;
use crate::schema::schedules;

/// Schedule kinds.
pub mod kinds {
    /// "Synchronization schedule with Cisco".
    pub const CSSM_SYNC: &str = "cssm_sync";
    /// "Synchronisation pull schedule with the devices".
    pub const DEVICE_PULL: &str = "device_pull";
}

/// A schedule row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = schedules, check_for_backend(diesel::pg::Pg))]
pub struct ScheduleRow {
    /// Account.
    pub account_id: AccountId,
    /// Kind (see [`kinds`]).
    pub kind: String,
    /// Off schedules never run.
    pub enabled: bool,
    /// Days between runs.
    pub every_days: i32,
    /// Local hour.
    pub hour: i32,
    /// Local minute.
    pub minute: i32,
    /// IANA time zone.
    pub time_zone: String,
    /// Next run.
    pub next_run_at: DateTime<Utc>,
    /// Last time a job was enqueued for it.
    pub last_enqueued_at: Option<DateTime<Utc>>,
}

impl ScheduleRow {
    /// The schedule rule; `None` if the row holds values the rule refuses.
    pub fn rule(&self) -> Option<Schedule> {
        Schedule::new(
            u16::try_from(self.every_days).ok()?,
            u8::try_from(self.hour).ok()?,
            u8::try_from(self.minute).ok()?,
            &self.time_zone,
        )
        .ok()
    }
}

/// Creates or replaces a schedule; the next run is recomputed from `now`.
pub async fn put(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    kind: &str,
    enabled: bool,
    rule: &Schedule,
    now: DateTime<Utc>,
) -> Result<ScheduleRow, DbError> {
    let row = ScheduleRow {
        account_id: account,
        kind: kind.to_owned(),
        enabled,
        every_days: rule.every_days.into(),
        hour: rule.hour.into(),
        minute: rule.minute.into(),
        time_zone: rule.time_zone.name().to_owned(),
        next_run_at: rule.first_run_after(now),
        last_enqueued_at: None,
    };
    Ok(diesel::insert_into(schedules::table)
        .values(&row)
        .on_conflict((schedules::account_id, schedules::kind))
        .do_update()
        .set((
            schedules::enabled.eq(row.enabled),
            schedules::every_days.eq(row.every_days),
            schedules::hour.eq(row.hour),
            schedules::minute.eq(row.minute),
            schedules::time_zone.eq(&row.time_zone),
            schedules::next_run_at.eq(row.next_run_at),
        ))
        .returning(ScheduleRow::as_returning())
        .get_result(conn)
        .await?)
}

/// A schedule of an account.
pub async fn get(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    kind: &str,
) -> Result<Option<ScheduleRow>, DbError> {
    Ok(schedules::table
        .find((account, kind))
        .select(ScheduleRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Locks and returns the enabled schedules due at `now` (skipping rows another leader holds).
/// Call inside a transaction, then [`advance`] each.
pub async fn lock_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<ScheduleRow>, DbError> {
    Ok(schedules::table
        .filter(schedules::enabled.eq(true))
        .filter(schedules::next_run_at.le(now))
        .order(schedules::next_run_at)
        .for_update()
        .skip_locked()
        .select(ScheduleRow::as_select())
        .load(conn)
        .await?)
}

/// Moves a schedule past a run enqueued at `now`.
pub async fn advance(
    conn: &mut AsyncPgConnection,
    row: &ScheduleRow,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(schedules::table.find((row.account_id, &row.kind)))
        .set((
            schedules::next_run_at.eq(next_run_at),
            schedules::last_enqueued_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
