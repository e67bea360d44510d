//! Local accounts (tenants) and their local virtual accounts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::enums::AccountStatus;
use crate::ids::{AccountId, LvaId, UserId};
use crate::pool::DbError;
use crate::schema::{
    account_former_names, local_accounts, local_virtual_accounts, product_instances,
};

/// A local account row. Holds CSSM client credentials: never serialise it as is (its `Debug`
/// leaves the secret out).
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = local_accounts, check_for_backend(diesel::pg::Pg))]
pub struct LocalAccount {
    /// Id.
    pub id: AccountId,
    /// Unique name; part of every tenant id.
    pub name: String,
    /// Smart Account it rolls up to.
    pub smart_account: String,
    /// Virtual Account it rolls up to.
    pub virtual_account: String,
    /// Notification address.
    pub email: String,
    /// Lifecycle state.
    pub status: AccountStatus,
    /// Why it was deactivated, if it was.
    pub status_reason: Option<String>,
    /// Time zone of its schedules.
    pub time_zone: String,
    /// CSSM's id of its registration.
    pub cssm_registration_id: Option<String>,
    /// OAuth client id from registration.
    pub cssm_client_id: Option<String>,
    /// OAuth client secret from registration.
    pub cssm_client_secret: Option<String>,
    /// Smart Account id in CSSM.
    pub cssm_smart_account_id: Option<String>,
    /// Virtual Account id in CSSM.
    pub cssm_virtual_account_id: Option<String>,
    /// When registration completed.
    pub registered_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Who asked for it.
    pub requested_by: Option<UserId>,
    /// Device validation for this tenant; `None` follows the global setting.
    pub validate_device: Option<bool>,
    /// NAT support for this tenant; `None` follows the global setting.
    pub nat_support: Option<bool>,
    /// Reporting interval narrower than the policy's, in days; `None`: the policy's.
    pub reporting_interval_days: Option<i32>,
}

impl LocalAccount {
    /// The tenant's reporting interval as the deadline rules take it.
    pub fn reporting_interval(&self) -> Option<u32> {
        self.reporting_interval_days
            .and_then(|d| u32::try_from(d).ok())
    }
}

impl std::fmt::Debug for LocalAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("smart_account", &self.smart_account)
            .field("virtual_account", &self.virtual_account)
            .field("status", &self.status)
            .field("cssm_client_id", &self.cssm_client_id)
            .finish_non_exhaustive()
    }
}

/// A new local account.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = local_accounts)]
pub struct NewLocalAccount {
    /// Id.
    pub id: AccountId,
    /// Unique name.
    pub name: String,
    /// Smart Account.
    pub smart_account: String,
    /// Virtual Account.
    pub virtual_account: String,
    /// Notification address.
    pub email: String,
    /// Initial state.
    pub status: AccountStatus,
    /// Time zone of its schedules.
    pub time_zone: String,
    /// Who asked for it.
    pub requested_by: Option<UserId>,
}

/// What CSSM returned when the account registered.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = local_accounts)]
pub struct Registration {
    /// CSSM's registration id.
    pub cssm_registration_id: Option<String>,
    /// OAuth client id.
    pub cssm_client_id: Option<String>,
    /// OAuth client secret.
    pub cssm_client_secret: Option<String>,
    /// Smart Account id.
    pub cssm_smart_account_id: Option<String>,
    /// Virtual Account id.
    pub cssm_virtual_account_id: Option<String>,
    /// When.
    pub registered_at: Option<DateTime<Utc>>,
    /// Becomes active.
    pub status: AccountStatus,
    /// Stamp.
    pub updated_at: DateTime<Utc>,
}

impl Registration {
    /// The registration CSSM answered (online, or in a response file): active from `now`.
    pub fn active(answer: outpost_core::cssm::RegistrationResponse, now: DateTime<Utc>) -> Self {
        Self {
            cssm_registration_id: Some(answer.registration_id),
            cssm_client_id: Some(answer.client_id),
            cssm_client_secret: Some(answer.client_secret),
            cssm_smart_account_id: Some(answer.smart_account_id),
            cssm_virtual_account_id: Some(answer.virtual_account_id),
            registered_at: Some(now),
            status: AccountStatus::Active,
            updated_at: now,
        }
    }
}

/// A local virtual account row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = local_virtual_accounts, check_for_backend(diesel::pg::Pg))]
pub struct LocalVirtualAccount {
    /// Id.
    pub id: LvaId,
    /// Owning account.
    pub account_id: AccountId,
    /// Number within the account; 1 is the default.
    pub number: i32,
    /// Display name.
    pub name: String,
    /// Last segment of the transport URL.
    pub tenant_id: String,
    /// SA its usage goes to, when not the account's.
    pub smart_account: Option<String>,
    /// VA its usage goes to, when not the account's.
    pub virtual_account: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A new local virtual account.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = local_virtual_accounts)]
pub struct NewLocalVirtualAccount {
    /// Id.
    pub id: LvaId,
    /// Owning account.
    pub account_id: AccountId,
    /// Number within the account.
    pub number: i32,
    /// Display name.
    pub name: String,
    /// Tenant id (`<account name>-<number>`).
    pub tenant_id: String,
}

/// Inserts an account.
pub async fn insert_account(
    conn: &mut AsyncPgConnection,
    new: &NewLocalAccount,
) -> Result<LocalAccount, DbError> {
    Ok(diesel::insert_into(local_accounts::table)
        .values(new)
        .returning(LocalAccount::as_returning())
        .get_result(conn)
        .await?)
}

/// Inserts a local virtual account.
pub async fn insert_lva(
    conn: &mut AsyncPgConnection,
    new: &NewLocalVirtualAccount,
) -> Result<LocalVirtualAccount, DbError> {
    Ok(diesel::insert_into(local_virtual_accounts::table)
        .values(new)
        .returning(LocalVirtualAccount::as_returning())
        .get_result(conn)
        .await?)
}

/// Reads an account and locks its row until the transaction ends, so a lifecycle change is
/// decided on the state it changes (two approvals, or an approval and a deactivation, cannot
/// both pass).
pub async fn lock_account(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<LocalAccount, DbError> {
    Ok(local_accounts::table
        .find(id)
        .for_update()
        .select(LocalAccount::as_select())
        .first(conn)
        .await?)
}

/// Every stored CSSM client secret, with its account.
pub async fn client_secrets(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(AccountId, String)>, DbError> {
    Ok(local_accounts::table
        .filter(local_accounts::cssm_client_secret.is_not_null())
        .select((
            local_accounts::id,
            local_accounts::cssm_client_secret.assume_not_null(),
        ))
        .load(conn)
        .await?)
}

/// Replaces an account's stored CSSM client secret, only if it still is `old`.
pub async fn replace_client_secret(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    old: &str,
    new: &str,
) -> Result<(), DbError> {
    diesel::update(
        local_accounts::table
            .find(id)
            .filter(local_accounts::cssm_client_secret.eq(old)),
    )
    .set(local_accounts::cssm_client_secret.eq(new))
    .execute(conn)
    .await?;
    Ok(())
}

/// An account by id.
pub async fn find_account(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<LocalAccount, DbError> {
    Ok(local_accounts::table
        .find(id)
        .select(LocalAccount::as_select())
        .first(conn)
        .await?)
}

/// An account by its unique name.
pub async fn find_account_by_name(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> Result<LocalAccount, DbError> {
    Ok(local_accounts::table
        .filter(local_accounts::name.eq(name))
        .select(LocalAccount::as_select())
        .first(conn)
        .await?)
}

/// Every account, by name.
pub async fn list_accounts(conn: &mut AsyncPgConnection) -> Result<Vec<LocalAccount>, DbError> {
    Ok(local_accounts::table
        .order(local_accounts::name)
        .select(LocalAccount::as_select())
        .load(conn)
        .await?)
}

/// Records a completed CSSM registration; the account becomes active.
pub async fn record_registration(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    registration: &Registration,
) -> Result<LocalAccount, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let before: AccountStatus = local_accounts::table
            .find(id)
            .for_update()
            .select(local_accounts::status)
            .first(conn)
            .await?;
        let account = diesel::update(local_accounts::table.find(id))
            .set(registration)
            .returning(LocalAccount::as_returning())
            .get_result(conn)
            .await?;
        if before != AccountStatus::Inactive {
            return Ok(account);
        }
        // Deactivated while CSSM answered: keep the credentials, stay inactive (reactivation
        // then makes it active).
        Ok(diesel::update(local_accounts::table.find(id))
            .set(local_accounts::status.eq(AccountStatus::Inactive))
            .returning(LocalAccount::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}

/// Remembers (or forgets, with `None`) the nonce of the account's offline registration request.
pub async fn set_registration_nonce(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    nonce: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(local_accounts::table.find(id))
        .set(local_accounts::registration_request_nonce.eq(nonce))
        .execute(conn)
        .await?;
    Ok(())
}

/// The nonce of the account's pending offline registration request.
pub async fn registration_nonce(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<Option<String>, DbError> {
    Ok(local_accounts::table
        .find(id)
        .select(local_accounts::registration_request_nonce)
        .first(conn)
        .await?)
}

/// The local virtual account `number` of an account.
pub async fn find_lva(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    number: i32,
) -> Result<LocalVirtualAccount, DbError> {
    Ok(local_virtual_accounts::table
        .filter(local_virtual_accounts::account_id.eq(account))
        .filter(local_virtual_accounts::number.eq(number))
        .select(LocalVirtualAccount::as_select())
        .first(conn)
        .await?)
}

/// The local virtual accounts of an account, by number.
pub async fn list_lvas(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<LocalVirtualAccount>, DbError> {
    Ok(local_virtual_accounts::table
        .filter(local_virtual_accounts::account_id.eq(account))
        .order(local_virtual_accounts::number)
        .select(LocalVirtualAccount::as_select())
        .load(conn)
        .await?)
}

/// A tenant as the device endpoint sees it: the LVA a transport URL names and its account.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The local account.
    pub account: LocalAccount,
    /// The local virtual account.
    pub lva: LocalVirtualAccount,
}

/// Looks up a tenant id (URL-decoded, case-sensitive).
pub async fn find_tenant(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
) -> Result<Option<Tenant>, DbError> {
    let found = local_virtual_accounts::table
        .inner_join(
            local_accounts::table.on(local_accounts::id.eq(local_virtual_accounts::account_id)),
        )
        .filter(local_virtual_accounts::tenant_id.eq(tenant_id))
        .select((LocalAccount::as_select(), LocalVirtualAccount::as_select()))
        .first::<(LocalAccount, LocalVirtualAccount)>(conn)
        .await
        .optional()?;
    if let Some((account, lva)) = found {
        return Ok(Some(Tenant { account, lva }));
    }
    // A device still configured with a name the account had before a rename.
    let Some((former_name, number)) = outpost_core::tenant::split_tenant_id(tenant_id) else {
        return Ok(None);
    };
    let found = account_former_names::table
        .inner_join(
            local_virtual_accounts::table
                .on(local_virtual_accounts::account_id.eq(account_former_names::account_id)),
        )
        .inner_join(
            local_accounts::table.on(local_accounts::id.eq(local_virtual_accounts::account_id)),
        )
        .filter(account_former_names::name.eq(former_name))
        .filter(local_virtual_accounts::number.eq(number))
        .select((LocalAccount::as_select(), LocalVirtualAccount::as_select()))
        .first::<(LocalAccount, LocalVirtualAccount)>(conn)
        .await
        .optional()?;
    Ok(found.map(|(account, lva)| Tenant { account, lva }))
}

/// Serialises changes of account names until the transaction ends: current and former names
/// live in two tables, so their uniqueness together is checked under this lock.
pub async fn lock_names(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('outpost:account-names'))")
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether `name` is taken: another account bears it now, or bore it before a rename (its
/// devices may still report to `<name>-<n>`).
pub async fn name_taken(
    conn: &mut AsyncPgConnection,
    name: &str,
    except: Option<AccountId>,
) -> Result<bool, DbError> {
    let except = except.unwrap_or(AccountId(uuid::Uuid::nil()));
    let current: i64 = local_accounts::table
        .filter(local_accounts::name.eq(name))
        .filter(local_accounts::id.ne(except))
        .count()
        .get_result(conn)
        .await?;
    let former: i64 = account_former_names::table
        .filter(account_former_names::name.eq(name))
        .filter(account_former_names::account_id.ne(except))
        .count()
        .get_result(conn)
        .await?;
    Ok(current + former > 0)
}

/// Renames an account: its LVAs get tenant ids under the new name and the old name is kept
/// as a former name, so devices configured with the old transport URLs keep reporting.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    new_name: &str,
    now: DateTime<Utc>,
) -> Result<LocalAccount, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let account: LocalAccount = local_accounts::table
            .find(id)
            .for_update()
            .select(LocalAccount::as_select())
            .first(conn)
            .await?;
        if account.name == new_name {
            return Ok(account);
        }
        diesel::insert_into(account_former_names::table)
            .values((
                account_former_names::name.eq(&account.name),
                account_former_names::account_id.eq(id),
                account_former_names::renamed_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        // Renaming back to a former name makes it current again.
        diesel::delete(
            account_former_names::table
                .filter(account_former_names::name.eq(new_name))
                .filter(account_former_names::account_id.eq(id)),
        )
        .execute(conn)
        .await?;
        let account = diesel::update(local_accounts::table.find(id))
            .set((
                local_accounts::name.eq(new_name),
                local_accounts::updated_at.eq(now),
            ))
            .returning(LocalAccount::as_returning())
            .get_result(conn)
            .await?;
        for lva in list_lvas(conn, id).await? {
            diesel::update(local_virtual_accounts::table.find(lva.id))
                .set(
                    local_virtual_accounts::tenant_id
                        .eq(outpost_core::tenant::tenant_id(new_name, lva.number)),
                )
                .execute(conn)
                .await?;
        }
        Ok(account)
    })
    .await
}

/// The former names of an account, oldest first.
pub async fn former_names(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<Vec<String>, DbError> {
    Ok(account_former_names::table
        .filter(account_former_names::account_id.eq(id))
        .order(account_former_names::renamed_at)
        .select(account_former_names::name)
        .load(conn)
        .await?)
}

/// What an administrator may change on an account besides its name.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = local_accounts)]
pub struct AccountChanges {
    /// Notification address.
    pub email: Option<String>,
    /// Time zone of its schedules.
    pub time_zone: Option<String>,
    /// Device validation override (`Some(None)` follows the global setting again).
    pub validate_device: Option<Option<bool>>,
    /// NAT support override.
    pub nat_support: Option<Option<bool>>,
    /// Reporting interval narrower than the policy's (`Some(None)`: the policy's).
    pub reporting_interval_days: Option<Option<i32>>,
}

/// Applies changes to an account.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    changes: &AccountChanges,
    now: DateTime<Utc>,
) -> Result<LocalAccount, DbError> {
    Ok(diesel::update(local_accounts::table.find(id))
        .set((changes, local_accounts::updated_at.eq(now)))
        .returning(LocalAccount::as_returning())
        .get_result(conn)
        .await?)
}

/// Moves an account to `status` with an optional reason.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    status: AccountStatus,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LocalAccount, DbError> {
    Ok(diesel::update(local_accounts::table.find(id))
        .set((
            local_accounts::status.eq(status),
            local_accounts::status_reason.eq(reason),
            local_accounts::updated_at.eq(now),
        ))
        .returning(LocalAccount::as_returning())
        .get_result(conn)
        .await?)
}

/// How many product instances an account holds.
pub async fn count_product_instances(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<i64, DbError> {
    Ok(product_instances::table
        .filter(product_instances::account_id.eq(id))
        .count()
        .get_result(conn)
        .await?)
}

/// Deletes an account and everything it owns (its events stay: the audit trail outlives it).
pub async fn delete(conn: &mut AsyncPgConnection, id: AccountId) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        // The PIs first: they refer to the LVAs, which the account's cascade removes too.
        diesel::delete(product_instances::table.filter(product_instances::account_id.eq(id)))
            .execute(conn)
            .await?;
        diesel::delete(local_accounts::table.find(id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Creates the next local virtual account of an account, with its own SA/VA pair if given.
/// Numbers are never reused while the account lives: devices may still be configured with a
/// deleted LVA's URL, and must not land in a new one.
pub async fn create_lva(
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    name: &str,
    mapping: Option<(String, String)>,
) -> Result<LocalVirtualAccount, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        // The row lock serialises LVA creation per account.
        // The name as of now: a rename may have committed since the caller read the account.
        let (number, name_now): (i32, String) =
            diesel::update(local_accounts::table.find(account.id))
                .set(local_accounts::last_lva_number.eq(local_accounts::last_lva_number + 1))
                .returning((local_accounts::last_lva_number, local_accounts::name))
                .get_result(conn)
                .await?;
        let (smart_account, virtual_account) = mapping.unzip();
        Ok(diesel::insert_into(local_virtual_accounts::table)
            .values((
                local_virtual_accounts::id.eq(LvaId::new()),
                local_virtual_accounts::account_id.eq(account.id),
                local_virtual_accounts::number.eq(number),
                local_virtual_accounts::name.eq(name),
                local_virtual_accounts::tenant_id
                    .eq(outpost_core::tenant::tenant_id(&name_now, number)),
                local_virtual_accounts::smart_account.eq(smart_account),
                local_virtual_accounts::virtual_account.eq(virtual_account),
            ))
            .returning(LocalVirtualAccount::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}

/// What may change on an LVA.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = local_virtual_accounts)]
pub struct LvaChanges {
    /// Display name.
    pub name: Option<String>,
    /// SA its usage goes to (`Some(None)`: the account's).
    pub smart_account: Option<Option<String>>,
    /// VA its usage goes to.
    pub virtual_account: Option<Option<String>>,
}

/// Applies changes to an LVA.
pub async fn update_lva(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    number: i32,
    changes: &LvaChanges,
) -> Result<LocalVirtualAccount, DbError> {
    Ok(diesel::update(
        local_virtual_accounts::table
            .filter(local_virtual_accounts::account_id.eq(account))
            .filter(local_virtual_accounts::number.eq(number)),
    )
    .set(changes)
    .returning(LocalVirtualAccount::as_returning())
    .get_result(conn)
    .await?)
}

/// Deletes an LVA. Its PIs' foreign key refuses the delete while it holds any.
pub async fn delete_lva(conn: &mut AsyncPgConnection, lva: LvaId) -> Result<(), DbError> {
    diesel::delete(local_virtual_accounts::table.find(lva))
        .execute(conn)
        .await?;
    Ok(())
}

/// What onboarding needs to create an account.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// Unique name (validated by the caller).
    pub name: String,
    /// Smart Account.
    pub smart_account: String,
    /// Virtual Account.
    pub virtual_account: String,
    /// Notification address.
    pub email: String,
    /// Time zone of its schedules.
    pub time_zone: String,
    /// Initial state.
    pub status: AccountStatus,
    /// Who asked for it (`None` from the command line).
    pub requested_by: Option<UserId>,
}

/// Creates an account with its default local virtual account (number 1) and a daily CSSM sync
/// schedule, in one transaction.
pub async fn create_with_default_lva(
    conn: &mut AsyncPgConnection,
    request: &AccountRequest,
    sync_schedule: &outpost_core::schedule::Schedule,
    now: DateTime<Utc>,
) -> Result<(LocalAccount, LocalVirtualAccount), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let account = insert_account(
            conn,
            &NewLocalAccount {
                id: AccountId::new(),
                name: request.name.clone(),
                smart_account: request.smart_account.clone(),
                virtual_account: request.virtual_account.clone(),
                email: request.email.clone(),
                status: request.status,
                time_zone: request.time_zone.clone(),
                requested_by: request.requested_by,
            },
        )
        .await?;
        let lva = insert_lva(
            conn,
            &NewLocalVirtualAccount {
                id: LvaId::new(),
                account_id: account.id,
                number: 1,
                name: "Default".into(),
                tenant_id: outpost_core::tenant::tenant_id(&account.name, 1),
            },
        )
        .await?;
        crate::schedules::put(
            conn,
            account.id,
            crate::schedules::kinds::CSSM_SYNC,
            true,
            sync_schedule,
            now,
        )
        .await?;
        Ok((account, lva))
    })
    .await
}
