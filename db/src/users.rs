//! Admin users. Passwords are stored as argon2 hashes (computed by the API tier).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::enums::Role;
use crate::ids::UserId;
use crate::pool::DbError;
use crate::schema::users;

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
    /// System-wide role.
    pub role: Role,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
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

/// How many users exist (the first admin is created when none does).
pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn).await?)
}
