//! Users and roles (system admins only): create users, set their system role and their roles
//! on single accounts, disable them.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_db::enums::{AccountRole, EventResult, Role};
use outpost_db::events::{self, NewEvent};
use outpost_db::users::{self, AccountGrant, User};
use outpost_db::{AccountId, AsyncConnection, UserId, accounts};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{ADMINS, Items};
use outpost_app::users::hash_password;

use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// Shortest password accepted.
const MIN_PASSWORD_LEN: usize = 12;

/// A user as the API shows it (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// System role (`null`: none).
    pub system_role: Option<Role>,
    /// Roles on single accounts.
    pub account_roles: Vec<AccountGrant>,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

fn render(user: &User, grants: &[AccountGrant]) -> UserView {
    UserView {
        id: user.id,
        username: user.username.clone(),
        system_role: user.role,
        account_roles: grants.to_vec(),
        disabled: user.disabled,
        created_at: user.created_at,
    }
}

async fn system_event(
    state: &AppState,
    principal: &Principal,
    action: &str,
    detail: Value,
) -> Result<(), ApiError> {
    let mut conn = state.pool.get().await?;
    let event = NewEvent {
        account_id: None,
        pi_id: None,
        actor: principal.actor(),
        action: action.into(),
        result: EventResult::Ok,
        detail,
        created_at: state.clock.now(),
    };
    events::record(&mut conn, &event).await?;
    Ok(())
}

/// Lists users with their roles.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Items<UserView>), (status = 403)))]
pub async fn list_users(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require(ADMINS)?;
    let mut conn = state.pool.get().await?;
    let mut items = Vec::new();
    for user in users::list(&mut conn).await? {
        let grants = users::grants(&mut conn, user.id).await?;
        items.push(render(&user, &grants));
    }
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// A role on one account.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The account.
    pub account_id: uuid::Uuid,
    /// `account_admin` or `account_user`.
    #[schema(value_type = String)]
    pub role: AccountRole,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Login name.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// `system_admin`, `system_operator`, `system_user`, or none.
    #[schema(value_type = Option<String>)]
    pub system_role: Option<Role>,
    /// Roles on single accounts.
    #[serde(default)]
    pub account_roles: Vec<GrantBody>,
}

/// Roles to change; an absent key keeps what the user has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    /// System role (`null`: none).
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<String>)]
    pub system_role: Option<Option<Role>>,
    /// Roles on single accounts, replacing the current ones.
    pub account_roles: Option<Vec<GrantBody>>,
    /// Disable (or enable) the user.
    pub disabled: Option<bool>,
}

async fn grants_of(
    conn: &mut outpost_db::AsyncPgConnection,
    bodies: &[GrantBody],
) -> Result<Vec<AccountGrant>, ApiError> {
    let mut grants = Vec::with_capacity(bodies.len());
    for g in bodies {
        let account_id = AccountId(g.account_id);
        accounts::find_account(conn, account_id)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    ApiError::invalid(format!(
                        "account_roles: account {} does not exist",
                        g.account_id
                    ))
                } else {
                    e.into()
                }
            })?;
        grants.push(AccountGrant {
            account_id,
            role: g.role,
        });
    }
    Ok(grants)
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserBody,
    responses((status = 201, body = UserView), (status = 403), (status = 409), (status = 422)))]
pub async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    body: Body<UserBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(ADMINS)?;
    let body = body.into_inner();
    let username = body.username.trim().to_owned();
    if username.is_empty()
        || username.chars().count() > 64
        || !username
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
    {
        return Err(ApiError::invalid(
            "username: 1 to 64 letters, digits, '.', '-', '_' or '@'",
        ));
    }
    if body.password.chars().count() < MIN_PASSWORD_LEN || body.password.len() > 1024 {
        return Err(ApiError::invalid(format!(
            "password: at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let grants = grants_of(&mut *state.pool.get().await?, &body.account_roles).await?;
    let user = User {
        id: UserId::new(),
        username: username.clone(),
        password_hash: hash_password(body.password).await?,
        role: body.system_role,
        disabled: false,
        created_at: Utc::now(),
    };
    let mut conn = state.pool.get().await?;
    let inserted = conn
        .transaction::<_, outpost_db::DbError, _>(async |conn| {
            users::insert(conn, &user).await?;
            users::set_roles(conn, user.id, user.role, &grants).await
        })
        .await;
    inserted.map_err(|e| {
        if e.is_unique_violation() {
            ApiError::conflict(
                "username_taken",
                format!("a user '{username}' exists already"),
            )
        } else {
            e.into()
        }
    })?;
    drop(conn);
    system_event(
        &state,
        &principal,
        "user.create",
        json!({ "username": username, "system_role": user.role, "account_roles": grants }),
    )
    .await?;
    Ok(HttpResponse::Created().json(render(&user, &grants)))
}

/// Sets a user's system role and account roles (and disables or enables it).
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", tag = "users", request_body = RolesBody,
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn put_user_roles(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UserId>,
    body: Body<RolesBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(ADMINS)?;
    let mut conn = state.pool.get().await?;
    let user = users::find(&mut conn, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let role = body.system_role.unwrap_or(user.role);
    let disabled = body.disabled.unwrap_or(user.disabled);
    // An admin cannot lock itself out (and with it, possibly, everyone).
    if user.id == principal.user.id && (role != Some(Role::SystemAdmin) || disabled) {
        return Err(ApiError::conflict(
            "self_lockout",
            "you cannot take the system admin role from yourself or disable yourself",
        ));
    }
    let grants = match &body.account_roles {
        Some(bodies) => grants_of(&mut conn, bodies).await?,
        None => users::grants(&mut conn, user.id).await?,
    };
    let changed = conn
        .transaction::<_, outpost_db::DbError, _>(async |conn| {
            users::set_roles(conn, user.id, role, &grants).await?;
            users::set_disabled(conn, user.id, disabled).await
        })
        .await;
    changed?;
    let user = users::find(&mut conn, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    drop(conn);
    system_event(&state, &principal, "user.roles",
        json!({ "username": user.username, "system_role": user.role, "account_roles": grants, "disabled": user.disabled })).await?;
    Ok(HttpResponse::Ok().json(render(&user, &grants)))
}
