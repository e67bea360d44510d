//! Local accounts and their lifecycle: request -> approve (system admin) -> register with
//! CSSM (online here, or by files in `offline_files`) -> active; deactivate, reactivate,
//! rename, delete. Every change lands in the account's event log.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_app::accounts::{self as lifecycle, AccountUpdate, Deleted, NewAccount};
use outpost_app::registration;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::enums::{AccountRole, AccountStatus};
use outpost_db::{AccountId, JobId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ADMINS, Items, OPERATORS, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
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

/// One account with what only its detail shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDetail {
    /// The account.
    #[serde(flatten)]
    pub account: AccountView,
    /// Its former names (still accepted in transport URLs).
    pub former_names: Vec<String>,
    /// How many product instances it holds.
    pub product_instances: i64,
    /// The caller's role on this account (`null`: none, it sees it by a system role).
    pub your_role: Option<AccountRole>,
}

/// Lists the local accounts the caller may see.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, body = Items<AccountView>)))]
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
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// Shows one account with its former names (still accepted in transport URLs).
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountDetail), (status = 404, description = "No such account")))]
pub async fn get_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let former_names = accounts::former_names(&mut conn, account.id).await?;
    let product_instances = accounts::count_product_instances(&mut conn, account.id).await?;
    Ok(HttpResponse::Ok().json(AccountDetail {
        account: AccountView::from(&account),
        former_names,
        product_instances,
        your_role: principal.account_role(account.id),
    }))
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

/// Requests a local account; any signed-in user may. A system admin approves it, and the
/// requester becomes its account admin.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = AccountRequestBody,
    responses((status = 201, body = AccountView), (status = 409, description = "Name taken"),
        (status = 422, description = "Invalid value")))]
pub async fn create_account(
    state: web::Data<AppState>,
    principal: Principal,
    body: Body<AccountRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = NewAccount {
        email: body.email,
        time_zone: body.time_zone.unwrap_or_else(|| "UTC".into()),
        ..NewAccount::new(&body.name, &body.smart_account, &body.virtual_account)
    };
    let mut conn = state.pool.get().await?;
    let account = lifecycle::create(
        &mut conn,
        &new,
        Some(principal.user.id),
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Created().json(AccountView::from(&account)))
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
    body: Body<AccountPatch>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let body = body.into_inner();
    let update = AccountUpdate {
        name: body.name,
        email: body.email,
    };
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let updated =
        lifecycle::update(&mut conn, account.id, &update, &principal.actor(), now).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&updated)))
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
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let approved = lifecycle::approve(&mut conn, account.id, &principal.actor(), now).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&approved)))
}

/// Registers an approved account with CSSM online; the worker does it (`{job_id}`).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/register", tag = "accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 202, body = JobQueued), (status = 404), (status = 409)))]
pub async fn register_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let attempts = state.settings.worker.max_attempts.min(3);
    let now = state.clock.now();
    let (job_id, created) =
        registration::queue_online(&mut conn, account.id, &principal.actor(), attempts, now)
            .await?;
    Ok(HttpResponse::Accepted().json(JobQueued {
        job_id,
        already_queued: !created,
    }))
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
    body: Body<DeactivateBody>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(OPERATORS)?;
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let updated =
        lifecycle::deactivate(&mut conn, account.id, &body.reason, &principal.actor(), now).await?;
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
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let updated = lifecycle::reactivate(&mut conn, account.id, &principal.actor(), now).await?;
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
    responses((status = 200, body = Deleted), (status = 403), (status = 404),
        (status = 409, description = "Holds product instances")))]
pub async fn delete_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    principal.require(ADMINS)?;
    let mut conn = state.pool.get().await?;
    let now = state.clock.now();
    let deleted: Deleted =
        lifecycle::delete(&mut conn, account.id, query.force, &principal.actor(), now).await?;
    Ok(HttpResponse::Ok().json(deleted))
}

/// A job queued for the worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobQueued {
    /// The job (`GET /api/v1/jobs/{id}` shows its progress and outcome).
    #[schema(value_type = uuid::Uuid)]
    pub job_id: JobId,
    /// It was queued already (by an earlier request).
    pub already_queued: bool,
}
