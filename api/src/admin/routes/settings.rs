//! Device switches: global (`/settings`, system admins) and per tenant
//! (`/accounts/{id}/settings`, overriding the global value; `null` follows it again).

use actix_web::{HttpResponse, web};
use outpost_app::settings::{self as switches, DeviceSwitches};
use outpost_db::AccountId;
use outpost_db::accounts::{self, AccountChanges};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{ADMINS, READERS, audit, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// Shows the global device switches.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = DeviceSwitches), (status = 403)))]
pub async fn get_settings(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require(READERS)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(switches::switches(&mut conn).await?))
}

/// Global switches to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Refuse reports from PIs not already in the tenant's inventory.
    pub validate_device: Option<bool>,
    /// PIs are identified by UDI only and never pulled.
    pub nat_support: Option<bool>,
}

/// Changes the global device switches.
#[utoipa::path(put, path = "/api/v1/settings", tag = "settings", request_body = SettingsBody,
    responses((status = 200, body = DeviceSwitches), (status = 403)))]
pub async fn put_settings(
    state: web::Data<AppState>,
    principal: Principal,
    body: Body<SettingsBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(ADMINS)?;
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let (validate, nat) = (body.validate_device, body.nat_support);
    let updated: DeviceSwitches =
        switches::set_switches(&mut conn, validate, nat, &principal.actor(), now).await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// A tenant's switches: its overrides (`null`: follows the global setting) and what is in
/// effect.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSettings {
    /// Device validation override.
    pub validate_device: Option<bool>,
    /// NAT support override.
    pub nat_support: Option<bool>,
    /// Report at least every this many days (`null`: the policy's intervals only).
    pub reporting_interval_days: Option<i32>,
    /// The switches in effect: the overrides, else the global values.
    pub effective: DeviceSwitches,
}

/// Shows a tenant's switches: its overrides and what is in effect.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/settings", tag = "settings",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountSettings), (status = 404)))]
pub async fn get_account_settings(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let global = switches::switches(&mut conn).await?;
    Ok(HttpResponse::Ok().json(AccountSettings {
        validate_device: account.validate_device,
        nat_support: account.nat_support,
        reporting_interval_days: account.reporting_interval_days,
        effective: DeviceSwitches {
            validate_device: account.validate_device.unwrap_or(global.validate_device),
            nat_support: account.nat_support.unwrap_or(global.nat_support),
        },
    }))
}

/// A tenant's overrides: `true`/`false`, or `null` to follow the global setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSettingsBody {
    /// Device validation override.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<bool>)]
    pub validate_device: Option<Option<bool>>,
    /// NAT support override.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<bool>)]
    pub nat_support: Option<Option<bool>>,
    /// Report at least every this many days (1 to 365), narrower than the policy's; `null`:
    /// the policy's intervals only.
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<i32>)]
    pub reporting_interval_days: Option<Option<i32>>,
}

/// Sets a tenant's overrides of the device switches.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/settings", tag = "settings",
    request_body = AccountSettingsBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountSettings), (status = 404)))]
pub async fn put_account_settings(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<AccountSettingsBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    if let Some(Some(days)) = body.reporting_interval_days
        && !(1..=365).contains(&days)
    {
        return Err(ApiError::invalid(
            "reporting_interval_days must be 1 to 365 (or null)",
        ));
    }
    let changes = AccountChanges {
        validate_device: body.validate_device,
        nat_support: body.nat_support,
        reporting_interval_days: body.reporting_interval_days,
        ..AccountChanges::default()
    };
    if changes.validate_device.is_some()
        || changes.nat_support.is_some()
        || changes.reporting_interval_days.is_some()
    {
        accounts::update(&mut conn, account.id, &changes, now).await?;
    }
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.settings",
        json!({ "validate_device": body.validate_device, "nat_support": body.nat_support, "reporting_interval_days": body.reporting_interval_days }),
        now,
    )
    .await?;
    drop(conn);
    get_account_settings(state, principal, id).await
}
