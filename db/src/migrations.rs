//! Embedded diesel migrations, run by `outpost migrate` and at start-up of `serve`.

use diesel::RunQueryDsl;
use diesel::connection::Connection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Every migration of `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Fingerprint of the migration files (names the test template database).
pub const MIGRATIONS_HASH: &str = env!("OUTPOST_MIGRATIONS_HASH");

/// Advisory lock key held while migrating, so nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x0075_7470_6f73_7401;

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
#[error("database migration failed: {0}")]
pub struct MigrationError(String);

type SyncConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// Runs diesel's (synchronous) migration harness on a blocking thread.
async fn with_connection<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut SyncConnection) -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, MigrationError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            SyncConnection::establish(&url).map_err(|e| MigrationError(e.to_string()))?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut conn)
            .map_err(|e| MigrationError(e.to_string()))?;
        let result = work(&mut conn);
        // The lock also ends with the session; unlocking is for tidiness.
        let _unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut conn);
        result
    })
    .await
    .map_err(|e| MigrationError(e.to_string()))?
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_pending(url: &str) -> Result<Vec<String>, MigrationError> {
    with_connection(url, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.into_iter().map(|v| v.to_string()).collect())
            .map_err(|e| MigrationError(e.to_string()))
    })
    .await
}

/// Reverts every applied migration, newest first (tests prove each `down.sql` this way).
pub async fn revert_all(url: &str) -> Result<Vec<String>, MigrationError> {
    with_connection(url, |conn| {
        conn.revert_all_migrations(MIGRATIONS)
            .map(|versions| versions.into_iter().map(|v| v.to_string()).collect())
            .map_err(|e| MigrationError(e.to_string()))
    })
    .await
}

/// Versions of migrations not yet applied.
pub async fn pending(url: &str) -> Result<Vec<String>, MigrationError> {
    with_connection(url, |conn| {
        conn.pending_migrations(MIGRATIONS)
            .map(|list| list.iter().map(|m| m.name().to_string()).collect())
            .map_err(|e| MigrationError(e.to_string()))
    })
    .await
}
