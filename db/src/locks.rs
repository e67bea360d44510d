//! Session-level advisory locks, held on a dedicated connection (never a pooled one: a lock
//! must end with its holder, and a pooled connection outlives the task that used it).

use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::pool::DbError;

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Tries to take the lock named `key` for this session; `false` when another session holds it.
pub async fn try_lock(conn: &mut AsyncPgConnection, key: &str) -> Result<bool, DbError> {
    let row: Locked =
        diesel::sql_query("SELECT pg_try_advisory_lock(hashtext($1)::bigint) AS locked")
            .bind::<Text, _>(key)
            .get_result(conn)
            .await?;
    Ok(row.locked)
}

/// Releases a lock this session holds.
pub async fn unlock(conn: &mut AsyncPgConnection, key: &str) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_unlock(hashtext($1)::bigint) AS locked")
        .bind::<Text, _>(key)
        .get_result::<Locked>(conn)
        .await?;
    Ok(())
}
