//! `GET, PUT /api/v1/accounts/{id}/schedules/cssm-sync`: "Synchronization schedule with Cisco";
//! `.../schedules/device-pull`: "Synchronisation pull schedule with the devices". Each runs every
//! N days at HH:MM in its own time zone; the schedule leader enqueues the job when it is due.

use actix_web::{HttpResponse, web};
use outpost_core::schedule::Schedule;
use outpost_db::AccountId;
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::schedules::{self, ScheduleRow, kinds};
use serde::Deserialize;
use serde_json::json;

use super::{operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

fn render(row: &ScheduleRow) -> serde_json::Value {
    json!({
        "enabled": row.enabled,
        "every_days": row.every_days,
        "hour": row.hour,
        "minute": row.minute,
        "time_zone": row.time_zone,
        "next_run_at": row.next_run_at,
        "last_enqueued_at": row.last_enqueued_at,
    })
}

async fn get_schedule(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
    kind: &str,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(state, principal, id).await?;
    let mut conn = state.pool.get().await?;
    Ok(match schedules::get(&mut conn, account.id, kind).await? {
        Some(row) => HttpResponse::Ok().json(render(&row)),
        // Never set: it does not run.
        None => HttpResponse::Ok()
            .json(json!({ "enabled": false, "every_days": null, "hour": null,
            "minute": null, "time_zone": null, "next_run_at": null, "last_enqueued_at": null })),
    })
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
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            principal.actor(),
            &format!("schedule.{kind}.update"),
            EventResult::Ok,
            render(&row),
            now,
        ),
    )
    .await?;
    Ok(HttpResponse::Ok().json(render(&row)))
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
#[utoipa::path(get, path = "/api/v1/accounts/{id}/schedules/cssm-sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub async fn get_cssm_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    get_schedule(&state, &principal, *id, kinds::CSSM_SYNC).await
}

/// Replaces the CSSM synchronisation schedule; the next run is recomputed.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/schedules/cssm-sync", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body = PutSchedule, responses((status = 200, body = serde_json::Value), (status = 404), (status = 422)))]
pub async fn put_cssm_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<PutSchedule>,
) -> Result<HttpResponse, ApiError> {
    put_schedule(&state, &principal, *id, kinds::CSSM_SYNC, &body).await
}

/// Shows the schedule that pulls from the account's devices.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/schedules/device-pull", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub async fn get_device_pull_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    get_schedule(&state, &principal, *id, kinds::DEVICE_PULL).await
}

/// Replaces the device pull schedule; the next run is recomputed.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/schedules/device-pull", tag = "sync", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body = PutSchedule, responses((status = 200, body = serde_json::Value), (status = 404), (status = 422)))]
pub async fn put_device_pull_schedule(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<PutSchedule>,
) -> Result<HttpResponse, ApiError> {
    put_schedule(&state, &principal, *id, kinds::DEVICE_PULL, &body).await
}
