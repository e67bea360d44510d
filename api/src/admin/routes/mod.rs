//! Admin handlers: one file per resource, handlers named `<verb>_<resource>`.

pub mod accounts;
pub mod authorizations;
pub mod create_login;
pub mod create_pull;
pub mod create_sync;
pub mod device_answer;
pub mod get_job;
pub mod health;
pub mod licenses;
pub mod list_alerts;
pub mod list_events;
pub mod list_sync_runs;
pub mod offline_files;
pub mod product_instances;
pub mod schedules;
pub mod settings;
pub mod ui;
pub mod users;
pub mod virtual_accounts;
pub mod webhooks;

use outpost_db::AccountId;
use outpost_db::accounts::LocalAccount;
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};

use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

pub use crate::admin::auth::{ADMINS, OPERATORS, READERS};
pub use outpost_app::input::check_text;

/// The account `id` if the caller may see it; another tenant's account is a plain 404.
pub async fn visible_account(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
) -> Result<LocalAccount, ApiError> {
    if !principal.can_see(id) {
        return Err(ApiError::not_found("account"));
    }
    let mut conn = state.pool.get().await?;
    outpost_db::accounts::find_account(&mut conn, id)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::not_found("account")
            } else {
                e.into()
            }
        })
}

/// The account `id` if the caller may act on it (an operator or its account admin): 404 first,
/// as for reading, then 403 for a reader.
pub async fn operable_account(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
) -> Result<LocalAccount, ApiError> {
    let account = visible_account(state, principal, id).await?;
    if !principal.can_operate(id) {
        return Err(ApiError::forbidden(
            "this needs a system operator or an account admin of this account",
        ));
    }
    Ok(account)
}

/// For `Option<Option<T>>` fields: a key that is present (even as `null`) becomes `Some`; an
/// absent one stays `None` (with `#[serde(default)]`), so "leave it" and "clear it" differ.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// The account `id` if the caller may act on it and its licensing functions work: it is active
/// (approved and registered with CSSM); else `409 account_not_registered`.
pub async fn licensing_account(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
) -> Result<LocalAccount, ApiError> {
    let account = operable_account(state, principal, id).await?;
    outpost_app::accounts::require_active(&account)?;
    Ok(account)
}

/// Records an admin action in the account's event log.
pub async fn audit(
    conn: &mut outpost_db::AsyncPgConnection,
    principal: &Principal,
    account: AccountId,
    action: &str,
    detail: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let event = NewEvent::account(
        account,
        principal.actor(),
        action,
        EventResult::Ok,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    Ok(())
}

/// A list answer: `{"items": [...]}` (the lists that page say so in their own type).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    /// The entries.
    pub items: Vec<T>,
}

impl<T> From<Vec<T>> for Items<T> {
    fn from(items: Vec<T>) -> Self {
        Self { items }
    }
}

/// `?limit=` with a default and a ceiling.
#[derive(Debug, serde::Deserialize)]
pub struct Limit {
    limit: Option<i64>,
}

impl Limit {
    /// The limit, 1 to 1000, default 100; anything else is refused.
    pub fn value(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(100) {
            limit @ 1..=1000 => Ok(limit),
            other => Err(ApiError::invalid(format!(
                "limit must be 1 to 1000, not {other}"
            ))),
        }
    }
}
