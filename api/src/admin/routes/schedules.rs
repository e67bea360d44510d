//! `GET, PUT /api/v1/accounts/{id}/schedules/cssm-sync`: "Synchronization schedule with Cisco";
//! `.../schedules/device-pull`: "Synchronisation pull schedule with the devices". Each runs every
//! N days at HH:MM in its own time zone; the schedule leader enqueues the job when it is due.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_core::schedule::Schedule;
use outpost_db::AccountId;
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::schedules::{self, ScheduleRow, kinds};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// A schedule as the API shows it; one never set is off and every other key is `null`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Whether it runs.
    pub enabled: bool,
    /// Every N days.
    pub every_days: Option<i32>,
    /// Local hour.
    pub hour: Option<i32>,
    /// Local minute.
    pub minute: Option<i32>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Next run.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Last time a job was enqueued for it.
    pub last_enqueued_at: Option<DateTime<Utc>>,
}

impl From<&ScheduleRow> for ScheduleView {
    fn from(row: &ScheduleRow) -> Self {
        Self {
            enabled: row.enabled,
            every_days: Some(row.every_days),
            hour: Some(row.hour),
            minute: Some(row.minute),
            time_zone: Some(row.time_zone.clone()),
            next_run_at: Some(row.next_run_at),
            last_enqueued_at: row.last_enqueued_at,
        }
    }
}

async fn get_schedule(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
    kind: &str,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(state, principal, id).await?;
    let mut conn = state.pool.get().await?;
    let view = match schedules::get(&mut conn, account.id, kind).await? {
        Some(row) => ScheduleView::from(&row),
        // Never set: it does not run.
        None => ScheduleView::default(),
    };
    Ok(HttpResponse::Ok().json(view))
}

async fn put_schedule(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
    kind: &str,
    body: &PutSchedule,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(state, principal, id).await?;
    let rule = Schedule::new(body.every_days, body.hour, body.minute, &body.time_zone)
        .map_err(ApiError::invalid)?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let row = schedules::put(&mut conn, account.id, kind, body.enabled, &rule, now).await?;
    let view = ScheduleView::from(&row);
    let detail = serde_json::to_value(&view).map_err(ApiError::internal)?;
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            principal.actor(),
            &format!("schedule.{kind}.update"),
            EventResult::Ok,
            detail,
            now,
        ),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A new schedule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    /// Whether it runs.
    enabled: bool,
    /// Every N days (1 to 365).
    every_days: u16,
    /// Local hour, 0 to 23.
    hour: u8,
    /// Local minute, 0 to 59.
    minute: u8,
    /// IANA time zone.
    time_zone: String,
}

/// Shows the CSSM synchronisation schedule.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/schedules/cssm-sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, body = ScheduleView), (status = 404)))]
pub async fn get_cssm_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    get_schedule(&state, &principal, *id, kinds::CSSM_SYNC).await
}

/// Replaces the CSSM synchronisation schedule; the next run is recomputed.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/schedules/cssm-sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body = PutSchedule, responses((status = 200, body = ScheduleView), (status = 404), (status = 422)))]
pub async fn put_cssm_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<PutSchedule>,
) -> Result<HttpResponse, ApiError> {
    put_schedule(&state, &principal, *id, kinds::CSSM_SYNC, &body).await
}

/// Shows the schedule that pulls from the account's devices.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/schedules/device-pull", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, body = ScheduleView), (status = 404)))]
pub async fn get_device_pull_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    get_schedule(&state, &principal, *id, kinds::DEVICE_PULL).await
}

/// Replaces the device pull schedule; the next run is recomputed.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/schedules/device-pull", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body = PutSchedule, responses((status = 200, body = ScheduleView), (status = 404), (status = 422)))]
pub async fn put_device_pull_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<PutSchedule>,
) -> Result<HttpResponse, ApiError> {
    put_schedule(&state, &principal, *id, kinds::DEVICE_PULL, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule never set answers as it did when it was written by hand: off, every other
    /// key present and `null`.
    #[test]
    fn a_schedule_never_set_is_off_with_every_key_null() {
        assert_eq!(
            serde_json::to_value(ScheduleView::default()).unwrap(),
            serde_json::json!({ "enabled": false, "every_days": null, "hour": null,
                "minute": null, "time_zone": null, "next_run_at": null, "last_enqueued_at": null })
        );
    }
}
