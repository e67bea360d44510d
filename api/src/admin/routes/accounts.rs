//! Local accounts and their lifecycle: request -> approve (system admin) -> register with
//! CSSM (online here, or by files in `offline_files`) -> active; deactivate, reactivate,
//! rename, delete. Every change lands in the account's event log.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_core::schedule::Schedule;
use outpost_db::accounts::{self, AccountChanges, AccountRequest, LocalAccount};
use outpost_db::enums::{AccountRole, AccountStatus};
use outpost_db::jobs::{self, catalog::AccountRegistration};
use outpost_db::users::{self, AccountGrant};
use outpost_db::{AccountId, AsyncConnection, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{ADMINS, OPERATORS, audit, check_text, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// A local account as the API shows it (CSSM client credentials never leave the server).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: AccountId,
    /// Unique name; the first part of its tenant ids.
    pub name: String,
    /// Smart Account it rolls up to.
    pub smart_account: String,
    /// Virtual Account it rolls up to.
    pub virtual_account: String,
    /// Notification address.
    pub email: String,
    /// `requested`, `approved`, `active` or `inactive`.
    #[schema(value_type = String)]
    pub status: AccountStatus,
    /// Why it was deactivated.
    pub status_reason: Option<String>,
    /// Time zone of its schedules.
    pub time_zone: String,
    /// When CSSM registration completed.
    pub registered_at: Option<DateTime<Utc>>,
    /// Who asked for it.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub requested_by: Option<UserId>,
    /// Device validation override (`null`: the global setting).
    pub validate_device: Option<bool>,
    /// NAT support override (`null`: the global setting).
    pub nat_support: Option<bool>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<&LocalAccount> for AccountView {
    fn from(a: &LocalAccount) -> Self {
        Self {
            id: a.id,
            name: a.name.clone(),
            smart_account: a.smart_account.clone(),
            virtual_account: a.virtual_account.clone(),
            email: a.email.clone(),
            status: a.status,
            status_reason: a.status_reason.clone(),
            time_zone: a.time_zone.clone(),
            registered_at: a.registered_at,
            requested_by: a.requested_by,
            validate_device: a.validate_device,
            nat_support: a.nat_support,
            created_at: a.created_at,
        }
    }
}

fn not_found_as_account(e: outpost_db::DbError) -> ApiError {
    if e.is_not_found() {
        ApiError::not_found("account")
    } else {
        e.into()
    }
}

/// Lists the local accounts the caller may see.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, description = "`{items: [Account]}`", body = serde_json::Value)))]
pub async fn list_accounts(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let items: Vec<AccountView> = accounts::list_accounts(&mut conn)
        .await?
        .iter()
        .filter(|a| principal.can_see(a.id))
        .map(AccountView::from)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// Shows one account with its former names (still accepted in transport URLs).
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = serde_json::Value), (status = 404, description = "No such account")))]
pub async fn get_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let former_names = accounts::former_names(&mut conn, account.id).await?;
    let product_instances = accounts::count_product_instances(&mut conn, account.id).await?;
    let mut body = serde_json::to_value(AccountView::from(&account)).map_err(ApiError::internal)?;
    body["former_names"] = json!(former_names);
    body["product_instances"] = json!(product_instances);
    body["your_role"] = json!(principal.account_role(account.id));
    Ok(HttpResponse::Ok().json(body))
}

/// Body of an account request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequestBody {
    /// Unique name (becomes part of the transport URLs).
    pub name: String,
    /// Smart Account in CSSM.
    pub smart_account: String,
    /// Virtual Account in CSSM.
    pub virtual_account: String,
    /// Notification address.
    #[serde(default)]
    pub email: String,
    /// Time zone of its schedules (IANA name), default UTC.
    pub time_zone: Option<String>,
}

fn check_name(state_name: &str) -> Result<(), ApiError> {
    outpost_core::tenant::validate_account_name(state_name)
        .map_err(|e| ApiError::invalid(format!("name: {e}")))
}

fn check_time_zone(tz: &str) -> Result<(), ApiError> {
    Schedule::new(1, 0, 0, tz)
        .map(|_| ())
        .map_err(ApiError::invalid)
}

fn check_email(email: &str) -> Result<(), ApiError> {
    check_text("email", email, 254).map_err(ApiError::invalid)?;
    if email.is_empty() || (email.contains('@') && !email.contains(char::is_whitespace)) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "email: '{email}' is not an address"
        )))
    }
}

fn check_required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field}: required")));
    }
    check_text(field, value, 200).map_err(ApiError::invalid)
}

/// Requests a local account; any signed-in user may. A system admin approves it, and the
/// requester becomes its account admin.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = AccountRequestBody,
    responses((status = 201, body = AccountView), (status = 409, description = "Name taken"),
        (status = 422, description = "Invalid value")))]
pub async fn create_account(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<AccountRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_name(&body.name)?;
    check_required("smart_account", &body.smart_account)?;
    check_required("virtual_account", &body.virtual_account)?;
    check_email(&body.email)?;
    let time_zone = body.time_zone.unwrap_or_else(|| "UTC".into());
    check_time_zone(&time_zone)?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let request = AccountRequest {
        name: body.name,
        smart_account: body.smart_account,
        virtual_account: body.virtual_account,
        email: body.email,
        time_zone: time_zone.clone(),
        status: AccountStatus::Requested,
        requested_by: Some(principal.user.id),
    };
    // A daily sync with CSSM at 02:00 local time until someone changes it.
    let schedule = Schedule::new(1, 2, 0, &time_zone).map_err(ApiError::invalid)?;
    let created = conn
        .transaction::<_, NameTx, _>(async |conn| {
            accounts::lock_names(conn).await?;
            if accounts::name_taken(conn, &request.name, None).await? {
                return Err(NameTx::Taken);
            }
            Ok(accounts::create_with_default_lva(conn, &request, &schedule, now).await?)
        })
        .await;
    let account = match created {
        Ok((account, _)) => account,
        Err(NameTx::Taken) => return Err(name_taken(&request.name)),
        Err(NameTx::Db(e)) if e.is_unique_violation() => return Err(name_taken(&request.name)),
        Err(NameTx::Db(e)) => return Err(e.into()),
    };
    // The requester follows its request (read-only) until approval makes it account admin.
    let grant = AccountGrant {
        account_id: account.id,
        role: AccountRole::AccountUser,
    };
    users::grant(&mut conn, principal.user.id, grant).await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.request",
        json!({ "name": account.name }),
        now,
    )
    .await?;
    Ok(HttpResponse::Created().json(AccountView::from(&account)))
}

/// How a transaction that claims an account name ends badly.
enum NameTx {
    /// Another account bears the name, or bore it.
    Taken,
    /// The database failed.
    Db(outpost_db::DbError),
}

impl From<outpost_db::DbError> for NameTx {
    fn from(e: outpost_db::DbError) -> Self {
        NameTx::Db(e)
    }
}

impl From<outpost_db::QueryError> for NameTx {
    fn from(e: outpost_db::QueryError) -> Self {
        NameTx::Db(e.into())
    }
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(
        "name_taken",
        format!("the name '{name}' is used by another local account (now or before a rename)"),
    )
}

/// Changes to an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// New name; the old one keeps working in devices' transport URLs.
    pub name: Option<String>,
    /// Notification address.
    pub email: Option<String>,
}

/// Renames an account or changes its email. (Each schedule carries its own time zone, set
/// with the schedule.)
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", request_body = AccountPatch,
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 404), (status = 409, description = "Name taken")))]
pub async fn update_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<AccountPatch>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let body = body.into_inner();
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(email) = &body.email {
        check_email(email)?;
    }
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let new_name = body.name.clone().filter(|n| *n != account.name);
    let changes = AccountChanges {
        email: body.email.clone(),
        ..AccountChanges::default()
    };
    // One transaction: a refused change leaves nothing half done, and the name lock keeps two
    // renames (or a rename and a request) from taking the same name.
    let outcome = conn
        .transaction::<_, NameTx, _>(async |conn| {
            accounts::lock_names(conn).await?;
            let mut updated = account.clone();
            if let Some(name) = &new_name {
                if accounts::name_taken(conn, name, Some(account.id)).await? {
                    return Err(NameTx::Taken);
                }
                updated = accounts::rename(conn, account.id, name, now).await?;
            }
            if changes.email.is_some() {
                updated = accounts::update(conn, account.id, &changes, now).await?;
            }
            Ok(updated)
        })
        .await;
    let updated = match outcome {
        Ok(updated) => updated,
        Err(NameTx::Taken) => return Err(name_taken(new_name.as_deref().unwrap_or_default())),
        Err(NameTx::Db(e)) if e.is_unique_violation() => {
            return Err(name_taken(new_name.as_deref().unwrap_or_default()));
        }
        Err(NameTx::Db(e)) => return Err(e.into()),
    };
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.update",
        json!({ "old_name": account.name, "name": updated.name, "email": body.email }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}

fn wrong_state(account: &LocalAccount, action: &str) -> ApiError {
    ApiError::conflict(
        "invalid_state",
        format!(
            "local account '{}' is {}; it cannot be {action}",
            account.name, account.status
        ),
    )
}

/// Approves a requested account (system admins only); its requester becomes account admin.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/approve", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 403), (status = 404), (status = 409)))]
pub async fn approve_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(ADMINS)?;
    if account.status != AccountStatus::Requested {
        return Err(wrong_state(&account, "approved"));
    }
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let approved =
        accounts::set_status(&mut conn, account.id, AccountStatus::Approved, None, now).await?;
    if let Some(requester) = account.requested_by {
        let grant = AccountGrant {
            account_id: account.id,
            role: AccountRole::AccountAdmin,
        };
        users::grant(&mut conn, requester, grant).await?;
    }
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.approve",
        json!({ "requested_by": account.requested_by }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&approved)))
}

/// Registers an approved account with CSSM online; the worker does it (`{job_id}`).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/register", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 202, description = "`{job_id}`", body = serde_json::Value), (status = 404), (status = 409)))]
pub async fn register_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    if account.cssm_client_id.is_some() {
        return Err(ApiError::conflict(
            "already_registered",
            format!(
                "local account '{}' is already registered with CSSM",
                account.name
            ),
        ));
    }
    if account.status != AccountStatus::Approved {
        return Err(wrong_state(
            &account,
            "registered until a system admin approves it",
        ));
    }
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let job = AccountRegistration {
        account_id: account.id,
        actor: principal.actor(),
    }
    .job(now, state.settings.worker.max_attempts.min(3));
    let (job_id, created) = jobs::enqueue(&mut conn, &job, now).await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.register_requested",
        json!({ "job_id": job_id }),
        now,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({ "job_id": job_id, "already_queued": !created })))
}

/// Why an account is deactivated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateBody {
    /// Shown to administrators and, in `TENANT_INACTIVE` answers, to devices.
    pub reason: String,
}

/// Deactivates an account: its devices are answered `TENANT_INACTIVE` until reactivated.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/deactivate", tag = "accounts", request_body = DeactivateBody,
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 403), (status = 404), (status = 409)))]
pub async fn deactivate_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<DeactivateBody>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(OPERATORS)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason: required"));
    }
    check_text("reason", reason, 500).map_err(ApiError::invalid)?;
    if !matches!(
        account.status,
        AccountStatus::Approved | AccountStatus::Active
    ) {
        return Err(wrong_state(&account, "deactivated"));
    }
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let updated = accounts::set_status(
        &mut conn,
        account.id,
        AccountStatus::Inactive,
        Some(reason),
        now,
    )
    .await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.deactivate",
        json!({ "reason": reason, "previous_status": account.status }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}

/// Reactivates an account: active again if registered, else back to approved.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/reactivate", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 403), (status = 404), (status = 409)))]
pub async fn reactivate_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(OPERATORS)?;
    if account.status != AccountStatus::Inactive {
        return Err(wrong_state(&account, "reactivated"));
    }
    let status = if account.cssm_client_id.is_some() {
        AccountStatus::Active
    } else {
        AccountStatus::Approved
    };
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let updated = accounts::set_status(&mut conn, account.id, status, None, now).await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.reactivate",
        json!({ "status": status }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
}

/// `?force=true` deletes an account that still holds product instances.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete even with product instances (their reports and ACKs go too).
    #[serde(default)]
    force: bool,
}

/// Deletes an account (system admins only); refused while it holds product instances unless
/// forced. The event log keeps what went.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id"), DeleteQuery),
    responses((status = 200, body = serde_json::Value), (status = 403), (status = 404),
        (status = 409, description = "Holds product instances")))]
pub async fn delete_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(ADMINS)?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let pis = accounts::count_product_instances(&mut conn, account.id).await?;
    if pis > 0 && !query.force {
        return Err(ApiError::conflict(
            "not_empty",
            format!(
                "local account '{}' still holds {pis} product instance(s); remove them or delete with ?force=true",
                account.name
            ),
        ));
    }
    let lvas = accounts::list_lvas(&mut conn, account.id).await?.len();
    accounts::delete(&mut conn, account.id)
        .await
        .map_err(not_found_as_account)?;
    let detail = json!({
        "name": account.name,
        "smart_account": account.smart_account,
        "virtual_account": account.virtual_account,
        "product_instances_removed": pis,
        "virtual_accounts_removed": lvas,
        "forced": query.force,
    });
    audit(
        &mut conn,
        &principal,
        account.id,
        "account.delete",
        detail.clone(),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(detail))
}
