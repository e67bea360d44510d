//! Embedded diesel migrations, run by `outpost migrate`, at start-up of `serve`, and of `api`
//! and `worker` with `--migrate`. Other commands only check the schema is current
//! ([`pending`], which writes nothing).

use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connector::PgConnector;

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

/// How long the migration connection may take to open (the URL's `connect_timeout` wins).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs diesel's (synchronous) migration harness on a blocking thread, over a connection
/// opened like every other (TLS as `url` says).
async fn with_connection<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut SyncConnection) -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, MigrationError> {
    let connector = PgConnector::new(url).map_err(|e| MigrationError(e.to_string()))?;
    let async_conn = crate::pool::establish_with(&connector, CONNECT_TIMEOUT)
        .await
        .map_err(|e| MigrationError(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        // The wrapper drives the async connection from this blocking thread through the
        // runtime it was opened on.
        let mut conn = SyncConnection::from(async_conn);
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

/// Names of the migrations not yet applied, oldest first. Reads only: unlike diesel's
/// harness it creates no bookkeeping table, so commands that must not change the schema can ask.
pub async fn pending(url: &str) -> Result<Vec<String>, MigrationError> {
    let connector = PgConnector::new(url).map_err(|e| MigrationError(e.to_string()))?;
    let client = connector
        .client(Some(CONNECT_TIMEOUT))
        .await
        .map_err(MigrationError)?;
    let table = client
        .query_one(
            "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| MigrationError(e.to_string()))?;
    let applied: Vec<String> = if table.get::<_, bool>(0) {
        client
            .query("SELECT version FROM __diesel_schema_migrations", &[])
            .await
            .map_err(|e| MigrationError(e.to_string()))?
            .iter()
            .map(|row| row.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let mut names: Vec<String> = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| MigrationError(e.to_string()))?
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .map(|m| m.name().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// How many migrations this binary carries.
pub fn known() -> usize {
    MigrationSource::<Pg>::migrations(&MIGRATIONS).map_or(0, |list| list.len())
}
