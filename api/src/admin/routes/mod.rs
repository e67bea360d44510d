//! Admin handlers, one per file, named `<verb>_<resource>`.

pub mod create_login;
pub mod create_sync;
pub mod cssm_schedule;
pub mod get_job;
pub mod health;
pub mod list_accounts;
pub mod list_alerts;
pub mod list_events;
pub mod list_sync_runs;
pub mod list_virtual_accounts;
pub mod offline_files;
pub mod ui;

use outpost_db::AccountId;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::enums::Role;

use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Roles that may read every account.
pub const READERS: &[Role] = &[Role::SystemAdmin, Role::SystemOperator, Role::SystemUser];
/// Roles that may act on every account.
pub const OPERATORS: &[Role] = &[Role::SystemAdmin, Role::SystemOperator];

/// The account `id` if the caller may see it; another tenant's account is a plain 404.
pub async fn visible_account(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
) -> Result<LocalAccount, ApiError> {
    principal.require(READERS)?;
    let mut conn = state.pool.get().await?;
    accounts::find_account(&mut conn, id).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("account")
        } else {
            e.into()
        }
    })
}

/// The account `id` if the caller may act on it (an operator): 404 first, as for reading, then
/// 403 for a reader.
pub async fn operable_account(
    state: &AppState,
    principal: &Principal,
    id: AccountId,
) -> Result<LocalAccount, ApiError> {
    let account = visible_account(state, principal, id).await?;
    principal.require(OPERATORS)?;
    Ok(account)
}

/// `?limit=` with a default and a ceiling.
#[derive(Debug, serde::Deserialize)]
pub struct Limit {
    limit: Option<i64>,
}

impl Limit {
    /// The limit, 1 to 1000, default 100.
    pub fn value(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}
