//! Admin users and their roles. Passwords are stored as argon2 hashes (computed by the API
//! tier). A user has at most one system role and any number of roles on single accounts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::enums::{AccountRole, Role};
use crate::ids::{AccountId, UserId};
use crate::pool::DbError;
use crate::schema::{user_account_roles, users};

/// A user row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// System-wide role, if any.
    pub role: Option<Role>,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A role on one account.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Queryable,
    Selectable,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[diesel(table_name = user_account_roles, check_for_backend(diesel::pg::Pg))]
pub struct AccountGrant {
    /// The account.
    pub account_id: AccountId,
    /// The role on it.
    pub role: AccountRole,
}

/// Inserts a user.
pub async fn insert(conn: &mut AsyncPgConnection, user: &User) -> Result<(), DbError> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// A user by login name.
pub async fn find_by_username(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> Result<Option<User>, DbError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every user, by name.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<User>, DbError> {
    Ok(users::table
        .order(users::username)
        .select(User::as_select())
        .load(conn)
        .await?)
}

/// How many users exist (the first admin is created when none does).
pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn).await?)
}

/// The account roles of a user.
pub async fn grants(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Vec<AccountGrant>, DbError> {
    Ok(user_account_roles::table
        .filter(user_account_roles::user_id.eq(user))
        .select(AccountGrant::as_select())
        .load(conn)
        .await?)
}

/// Grants (or changes) one account role.
pub async fn grant(
    conn: &mut AsyncPgConnection,
    user: UserId,
    grant: AccountGrant,
) -> Result<(), DbError> {
    diesel::insert_into(user_account_roles::table)
        .values((
            user_account_roles::user_id.eq(user),
            user_account_roles::account_id.eq(grant.account_id),
            user_account_roles::role.eq(grant.role),
        ))
        .on_conflict((user_account_roles::user_id, user_account_roles::account_id))
        .do_update()
        .set(user_account_roles::role.eq(grant.role))
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces a user's system role and account roles in one transaction.
pub async fn set_roles(
    conn: &mut AsyncPgConnection,
    user: UserId,
    role: Option<Role>,
    grants: &[AccountGrant],
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::update(users::table.find(user))
            .set(users::role.eq(role))
            .execute(conn)
            .await?;
        diesel::delete(user_account_roles::table.filter(user_account_roles::user_id.eq(user)))
            .execute(conn)
            .await?;
        for g in grants {
            grant(conn, user, *g).await?;
        }
        Ok(())
    })
    .await
}

/// Disables or enables a user (disabled users keep their history but cannot log in).
pub async fn set_disabled(
    conn: &mut AsyncPgConnection,
    user: UserId,
    disabled: bool,
) -> Result<(), DbError> {
    diesel::update(users::table.find(user))
        .set(users::disabled.eq(disabled))
        .execute(conn)
        .await?;
    Ok(())
}
