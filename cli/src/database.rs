//! Where the database is: `database.url`, or the embedded PostgreSQL under the data directory,
//! started on demand. Every command checks the server (version, extensions); only `migrate`,
//! `serve` and `api`/`worker --migrate` migrate it (under an advisory lock), the others refuse
//! an outdated schema.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use outpost_core::settings::Settings;
use outpost_db::DbPool;
use outpost_db::embedded::EmbeddedPostgres;

/// The embedded database is named like this inside its cluster.
const EMBEDDED_DATABASE: &str = "outpost";

/// An open database.
pub struct Database {
    /// Connection string.
    pub url: String,
    /// The embedded cluster, if Outpost runs one.
    pub embedded: Option<EmbeddedPostgres>,
    /// This process started the embedded cluster (no `outpost serve` was running).
    pub started_here: bool,
    /// The pool.
    pub pool: DbPool,
}

/// Finds or starts the database, checks the server, migrates it when `migrate` (else checks
/// its schema is current) and opens a pool.
pub async fn open(settings: &Arc<Settings>, migrate: bool) -> anyhow::Result<Database> {
    let (url, embedded, started_here) = if settings.database.url.is_empty() {
        let cluster = EmbeddedPostgres::open(
            &settings.embedded_postgres.bin_dir,
            &settings.data_dir.join("postgres"),
            &settings.embedded_postgres.run_as_user,
            true,
        )?;
        let outcome = cluster.start().await?;
        if outcome.initialised {
            tracing::info!(path = %cluster.cluster_dir().display(), "created the embedded PostgreSQL cluster");
        }
        if outcome.already_running {
            tracing::info!("the embedded PostgreSQL was already running; using it");
        } else {
            tracing::info!(path = %cluster.cluster_dir().display(), "started the embedded PostgreSQL");
        }
        cluster.ensure_database(EMBEDDED_DATABASE).await?;
        (
            cluster.connection_string(EMBEDDED_DATABASE),
            Some(cluster),
            !outcome.already_running,
        )
    } else {
        (settings.database.url.expose().to_owned(), None, false)
    };

    let prepared = prepare(settings, &url, migrate).await;
    if let (Err(_), Some(cluster), true) = (&prepared, &embedded, started_here) {
        // Leave no cluster behind that this command started for nothing.
        let _stopped = cluster.stop().await;
    }
    let pool = prepared?;
    Ok(Database {
        url,
        embedded,
        started_here,
        pool,
    })
}

/// Checks the server and the schema (migrating it when asked) and opens the pool.
async fn prepare(settings: &Settings, url: &str, migrate: bool) -> anyhow::Result<DbPool> {
    let connect_timeout = Duration::from_secs(settings.database.connect_timeout_secs);
    let server = outpost_db::preflight::check(url, connect_timeout).await?;
    tracing::info!(
        version = %server.version,
        tls = server.tls.as_deref().unwrap_or("none"),
        "database server checked"
    );
    if migrate {
        let applied = outpost_db::migrations::run_pending(url)
            .await
            .context("migrating the database")?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
    } else {
        let pending = outpost_db::migrations::pending(url)
            .await
            .context("reading the database schema version")?;
        if !pending.is_empty() {
            anyhow::bail!(
                "the database schema is older than this Outpost ({} migration(s) pending: {}): \
                 run `outpost migrate` first (`outpost serve`, and `outpost api`/`outpost worker` \
                 with --migrate, also apply them)",
                pending.len(),
                pending.join(", ")
            );
        }
    }
    let pool = DbPool::new(
        url,
        usize::try_from(settings.database.pool_size).unwrap_or(16),
        Duration::from_secs(settings.database.connect_timeout_secs),
        Duration::from_millis(settings.database.acquire_timeout_ms),
    )?;
    // Fail now, with the real reason, rather than at the first request.
    let mut conn = pool.get().await.context("connecting to the database")?;
    outpost_db::ping(&mut conn)
        .await
        .context("connecting to the database")?;
    // A node whose credentials key does not open the database's secrets stops here, saying
    // which file to copy; secrets stored in clear by an older Outpost are sealed.
    let key_file = settings.credentials_key_path();
    let key = outpost_core::secrets::CredentialKey::load_or_create(&key_file)?;
    outpost_app::secrets::check_and_seal(&mut conn, &key, &key_file).await?;
    drop(conn);
    Ok(pool)
}

impl Database {
    /// Stops the embedded cluster (when `always`, or when this process started it).
    pub async fn close(self, always: bool) {
        if let Some(cluster) = self.embedded.filter(|_| always || self.started_here) {
            match cluster.stop().await {
                Ok(()) => tracing::info!("stopped the embedded PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "could not stop the embedded PostgreSQL"),
            }
        }
    }
}
