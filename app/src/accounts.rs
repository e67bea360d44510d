//! The lifecycle of a local account: requested (by a user) or created (by an administrator at
//! the command line) -> approved -> registered with CSSM (online or by files, see
//! `registration.rs`) -> active; deactivated and reactivated; renamed; deleted. Every change
//! is decided on the account's locked row and lands in its event log.
//!
//! Names are one namespace with the names accounts bore before a rename: devices may still
//! report to `<former name>-<n>`, so a new account must never take such a name.

use chrono::{DateTime, Utc};
use outpost_core::schedule::Schedule;
use outpost_core::tenant::validate_account_name;
use outpost_db::accounts::{self, AccountChanges, AccountRequest, LocalAccount};
use outpost_db::enums::{AccountRole, AccountStatus, EventResult};
use outpost_db::events::{self, NewEvent};
use outpost_db::users::{self, AccountGrant};
use outpost_db::{AccountId, AsyncConnection, AsyncPgConnection, UserId};
use serde_json::{Value, json};

use crate::error::{AppError, AppResult, Code, OrNotFound};
use crate::input::{check_email, check_required, check_time_zone};

/// A local account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Unique name; the first part of its tenant ids.
    pub name: String,
    /// Smart Account in CSSM.
    pub smart_account: String,
    /// Virtual Account in CSSM.
    pub virtual_account: String,
    /// Notification address (may be empty).
    pub email: String,
    /// Time zone of its schedules (IANA name).
    pub time_zone: String,
    /// Its CSSM sync schedule: every `.0` days at `.1`:`.2` local time.
    pub sync: (u16, u8, u8),
}

impl NewAccount {
    /// A new account with a daily sync at 02:00 local time, the default.
    pub fn new(name: &str, smart_account: &str, virtual_account: &str) -> Self {
        Self {
            name: name.to_owned(),
            smart_account: smart_account.to_owned(),
            virtual_account: virtual_account.to_owned(),
            email: String::new(),
            time_zone: "UTC".into(),
            sync: (1, 2, 0),
        }
    }

    /// Checks every value; the refusal names the field.
    pub fn check(&self) -> AppResult<Schedule> {
        check_name(&self.name)?;
        check_required("smart_account", &self.smart_account, 200)?;
        check_required("virtual_account", &self.virtual_account, 200)?;
        check_email(&self.email)?;
        check_time_zone(&self.time_zone)?;
        let (every_days, hour, minute) = self.sync;
        Schedule::new(every_days, hour, minute, &self.time_zone)
            .map_err(|e| AppError::invalid(format!("sync schedule: {e}")))
    }
}

/// An account name as transport URLs carry it.
pub fn check_name(name: &str) -> AppResult<()> {
    validate_account_name(name).map_err(|e| AppError::invalid(format!("name: {e}")))
}

fn name_taken(name: &str) -> AppError {
    AppError::refused(
        Code::NameTaken,
        format!("the name '{name}' is used by another local account (now or before a rename)"),
    )
}

/// Refuses a name another account bears or bore; call under `accounts::lock_names`.
async fn claim_name(
    conn: &mut AsyncPgConnection,
    name: &str,
    except: Option<AccountId>,
) -> AppResult<()> {
    if accounts::name_taken(conn, name, except).await? {
        return Err(name_taken(name));
    }
    Ok(())
}

/// A unique violation on the name (a race the lock did not cover) is the same refusal.
fn name_clash(e: AppError, name: &str) -> AppError {
    match e {
        AppError::Db(db) if db.is_unique_violation() => name_taken(name),
        other => other,
    }
}

/// Records an event of the account.
async fn record(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    actor: &str,
    action: &str,
    detail: Value,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let event = NewEvent::account(account, actor, action, EventResult::Ok, detail, now);
    events::record(conn, &event).await?;
    Ok(())
}

/// Creates an account with its default local virtual account and sync schedule. A user's
/// request (`requester`) waits for a system admin's approval and gives the requester read
/// access; an administrator's (the command line, `None`) is approved at once.
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewAccount,
    requester: Option<UserId>,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    let schedule = new.check()?;
    let request = AccountRequest {
        name: new.name.clone(),
        smart_account: new.smart_account.trim().to_owned(),
        virtual_account: new.virtual_account.trim().to_owned(),
        email: new.email.clone(),
        time_zone: new.time_zone.clone(),
        status: match requester {
            Some(_) => AccountStatus::Requested,
            None => AccountStatus::Approved,
        },
        requested_by: requester,
    };
    conn.transaction::<_, AppError, _>(async |conn| {
        accounts::lock_names(conn).await?;
        claim_name(conn, &request.name, None).await?;
        let (account, _) =
            accounts::create_with_default_lva(conn, &request, &schedule, now).await?;
        if let Some(user) = requester {
            // The requester follows its request (read-only) until approval makes it admin.
            let grant = AccountGrant {
                account_id: account.id,
                role: AccountRole::AccountUser,
            };
            users::grant(conn, user, grant).await?;
        }
        let action = match requester {
            Some(_) => "account.request",
            None => "account.create",
        };
        record(
            conn,
            account.id,
            actor,
            action,
            json!({ "name": account.name }),
            now,
        )
        .await?;
        Ok(account)
    })
    .await
    .map_err(|e| name_clash(e, &new.name))
}

fn wrong_state(account: &LocalAccount, action: &str) -> AppError {
    AppError::refused(
        Code::InvalidState,
        format!(
            "local account '{}' is {}; it cannot be {action}",
            account.name, account.status
        ),
    )
}

/// The account's row, locked until the transaction ends: a lifecycle change is decided on the
/// state it changes.
async fn locked(conn: &mut AsyncPgConnection, id: AccountId) -> AppResult<LocalAccount> {
    accounts::lock_account(conn, id)
        .await
        .or_not_found("account")
}

/// Approves a requested account; its requester becomes its account admin.
pub async fn approve(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = locked(conn, id).await?;
        if account.status != AccountStatus::Requested {
            return Err(wrong_state(&account, "approved"));
        }
        let approved =
            accounts::set_status(conn, account.id, AccountStatus::Approved, None, now).await?;
        if let Some(requester) = account.requested_by {
            let grant = AccountGrant {
                account_id: account.id,
                role: AccountRole::AccountAdmin,
            };
            users::grant(conn, requester, grant).await?;
        }
        let detail = json!({ "requested_by": account.requested_by });
        record(conn, account.id, actor, "account.approve", detail, now).await?;
        Ok(approved)
    })
    .await
}

/// Only an approved account that is not registered yet registers, online or by files.
pub fn may_register(account: &LocalAccount) -> AppResult<()> {
    if account.cssm_client_id.is_some() || account.status == AccountStatus::Active {
        return Err(AppError::refused(
            Code::AlreadyRegistered,
            format!(
                "local account '{}' is already registered with CSSM",
                account.name
            ),
        ));
    }
    let why = match account.status {
        AccountStatus::Approved => return Ok(()),
        AccountStatus::Requested => {
            "is not approved yet: a system admin approves it before it registers"
        }
        _ => "is inactive: only an approved account registers (reactivate it first)",
    };
    Err(AppError::refused(
        Code::InvalidState,
        format!("local account '{}' {why}", account.name),
    ))
}

/// Licensing functions (sync, pull, SLAC import) need an active account, registered with
/// CSSM.
pub fn require_active(account: &LocalAccount) -> AppResult<()> {
    if account.status == AccountStatus::Active {
        return Ok(());
    }
    Err(AppError::refused(
        Code::NotRegistered,
        format!(
            "local account '{}' is {}: licensing functions need an active account registered with CSSM",
            account.name, account.status
        ),
    ))
}

/// Deactivates an approved or active account: its devices are answered `TENANT_INACTIVE`
/// with `reason` until it is reactivated.
pub async fn deactivate(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    let reason = reason.trim();
    check_required("reason", reason, 500)?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = locked(conn, id).await?;
        if !matches!(
            account.status,
            AccountStatus::Approved | AccountStatus::Active
        ) {
            return Err(wrong_state(&account, "deactivated"));
        }
        let updated =
            accounts::set_status(conn, account.id, AccountStatus::Inactive, Some(reason), now)
                .await?;
        let detail = json!({ "reason": reason, "previous_status": account.status });
        record(conn, account.id, actor, "account.deactivate", detail, now).await?;
        Ok(updated)
    })
    .await
}

/// Reactivates an inactive account: active again if registered, else back to approved.
pub async fn reactivate(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = locked(conn, id).await?;
        if account.status != AccountStatus::Inactive {
            return Err(wrong_state(&account, "reactivated"));
        }
        let status = if account.cssm_client_id.is_some() {
            AccountStatus::Active
        } else {
            AccountStatus::Approved
        };
        let updated = accounts::set_status(conn, account.id, status, None, now).await?;
        record(
            conn,
            account.id,
            actor,
            "account.reactivate",
            json!({ "status": status }),
            now,
        )
        .await?;
        Ok(updated)
    })
    .await
}

/// Changes to an account's name or notification address.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    /// New name; the old one keeps working in devices' transport URLs.
    pub name: Option<String>,
    /// Notification address.
    pub email: Option<String>,
}

/// Renames an account or changes its email. A new name must be free of current and former
/// names; the old one becomes a former name, so devices keep reporting with their URLs.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    update: &AccountUpdate,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    if let Some(name) = &update.name {
        check_name(name)?;
    }
    if let Some(email) = &update.email {
        check_email(email)?;
    }
    let wanted = update.name.clone().unwrap_or_default();
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = locked(conn, id).await?;
        // The name lock keeps two renames (or a rename and a request) from taking one name.
        accounts::lock_names(conn).await?;
        let mut updated = account.clone();
        let new_name = update.name.as_ref().filter(|n| **n != account.name);
        if let Some(name) = new_name {
            claim_name(conn, name, Some(account.id)).await?;
            updated = accounts::rename(conn, account.id, name, now).await?;
        }
        if update.email.is_some() {
            let changes = AccountChanges {
                email: update.email.clone(),
                ..AccountChanges::default()
            };
            updated = accounts::update(conn, account.id, &changes, now).await?;
        }
        let detail =
            json!({ "old_name": account.name, "name": updated.name, "email": update.email });
        record(conn, account.id, actor, "account.update", detail, now).await?;
        Ok(updated)
    })
    .await
    .map_err(|e| name_clash(e, &wanted))
}

/// What a deletion removed (also its event's detail).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The account's name.
    pub name: String,
    /// Its Smart Account.
    pub smart_account: String,
    /// Its Virtual Account.
    pub virtual_account: String,
    /// Product instances removed with it.
    pub product_instances_removed: i64,
    /// Local virtual accounts removed with it.
    pub virtual_accounts_removed: usize,
    /// Deleted although it held product instances.
    pub forced: bool,
}

/// Deletes an account; refused while it holds product instances unless `force`. The event
/// log keeps what went.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    force: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<Deleted> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = locked(conn, id).await?;
        let pis = accounts::count_product_instances(conn, account.id).await?;
        if pis > 0 && !force {
            return Err(AppError::refused(
                Code::NotEmpty,
                format!(
                    "local account '{}' still holds {pis} product instance(s); remove them or delete with force",
                    account.name
                ),
            ));
        }
        let lvas = accounts::list_lvas(conn, account.id).await?.len();
        accounts::delete(conn, account.id).await?;
        let deleted = Deleted {
            name: account.name,
            smart_account: account.smart_account,
            virtual_account: account.virtual_account,
            product_instances_removed: pis,
            virtual_accounts_removed: lvas,
            forced: force,
        };
        let detail = serde_json::to_value(&deleted).unwrap_or_default();
        record(conn, account.id, actor, "account.delete", detail, now).await?;
        Ok(deleted)
    })
    .await
}

/// An account by id, or by its current name (the command line takes either).
pub async fn find(conn: &mut AsyncPgConnection, key: &str) -> AppResult<LocalAccount> {
    let found = match key.parse::<AccountId>() {
        Ok(id) => accounts::find_account(conn, id).await,
        Err(_) => accounts::find_account_by_name(conn, key).await,
    };
    found.or_not_found(&format!("local account '{key}'"))
}
