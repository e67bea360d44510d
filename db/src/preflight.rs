//! What Outpost needs of its PostgreSQL server, checked when a command opens the database and
//! by `outpost check-config`, so an unsuitable server is a clear message at start rather than
//! a failed migration or query later.
//!
//! - PostgreSQL 15 or later (`server_version_num >= 150000`): the schema uses a unique index
//!   `NULLS NOT DISTINCT` (new in 15; `alerts_open`), and 15 is what the deployment is tested
//!   on (Debian bookworm ships it).
//! - The extensions the migrations create (`CREATE EXTENSION` in `migrations/`): today only
//!   `pg_trgm` (inventory search). Each must be installed in the database already, or
//!   available on the server and creatable by Outpost's role (a superuser, or any role with
//!   `CREATE` on the database for a trusted extension such as `pg_trgm`).

use std::time::Duration;

use crate::connector::PgConnector;
use crate::embedded::describe_pg_error;

/// Oldest server version Outpost runs on, as `server_version_num`.
pub const MIN_SERVER_VERSION_NUM: i32 = 150_000;

/// Extensions the migrations create (keep in step with `CREATE EXTENSION` in `migrations/`).
pub const REQUIRED_EXTENSIONS: &[&str] = &["pg_trgm"];

/// What the server said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    pub version: String,
    /// `server_version_num`, e.g. `150014`.
    pub version_num: i32,
    /// The TLS protocol of this connection (`TLSv1.3`), `None` when unencrypted.
    pub tls: Option<String>,
    /// The role Outpost is connected as.
    pub user: String,
    /// The database.
    pub database: String,
    /// Required extensions, each with its state (`installed 1.6` or `can be created`).
    pub extensions: Vec<(String, String)>,
}

/// Why the server will not do.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Not reached at all.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// Older than [`MIN_SERVER_VERSION_NUM`].
    #[error(
        "PostgreSQL {found} found; Outpost needs PostgreSQL 15 or later (upgrade the server, \
         e.g. with pg_upgradecluster on Debian)"
    )]
    TooOld {
        /// `server_version` of the server.
        found: String,
    },
    /// A required extension is neither installed nor creatable.
    #[error("{0}")]
    Extension(String),
    /// A query of the check failed.
    #[error("checking the database server: {0}")]
    Query(String),
}

/// Connects with the TLS `url` asks for and checks the server.
pub async fn check(url: &str, connect_timeout: Duration) -> Result<ServerInfo, PreflightError> {
    let connector = PgConnector::new(url).map_err(|e| PreflightError::Connect(e.to_string()))?;
    let client = connector
        .client(Some(connect_timeout))
        .await
        .map_err(PreflightError::Connect)?;
    check_client(&client).await
}

/// Checks the server behind an open connection.
pub async fn check_client(client: &tokio_postgres::Client) -> Result<ServerInfo, PreflightError> {
    let query = |e: tokio_postgres::Error| PreflightError::Query(describe_pg_error(&e));
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    current_setting('server_version_num')::int, \
                    (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl), \
                    current_user::text, current_database()::text",
            &[],
        )
        .await
        .map_err(query)?;
    let mut info = ServerInfo {
        version: row.get(0),
        version_num: row.get(1),
        tls: row.get(2),
        user: row.get(3),
        database: row.get(4),
        extensions: Vec::new(),
    };
    if info.version_num < MIN_SERVER_VERSION_NUM {
        return Err(PreflightError::TooOld {
            found: info.version,
        });
    }
    for name in REQUIRED_EXTENSIONS {
        let row = client
            .query_one(
                "SELECT (SELECT extversion FROM pg_extension WHERE extname = $1), \
                        EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1), \
                        COALESCE((SELECT v.trusted FROM pg_available_extensions a \
                                  JOIN pg_available_extension_versions v \
                                    ON v.name = a.name AND v.version = a.default_version \
                                  WHERE a.name = $1), false), \
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                        has_database_privilege(current_database(), 'CREATE')",
                &[name],
            )
            .await
            .map_err(query)?;
        let installed: Option<String> = row.get(0);
        let (available, trusted, superuser, can_create): (bool, bool, bool, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        let state = match installed {
            Some(version) => format!("installed {version}"),
            None if !available => {
                return Err(PreflightError::Extension(format!(
                    "the PostgreSQL extension {name} is not available on the server: install \
                     the server's contrib modules (part of Debian's postgresql-15 package; \
                     postgresql15-contrib on other systems)"
                )));
            }
            None if superuser || (trusted && can_create) => "can be created".to_owned(),
            None => {
                return Err(PreflightError::Extension(format!(
                    "the role {} may not create the extension {name} in database {}: have an \
                     administrator run `CREATE EXTENSION {name};` in it once, or grant the role \
                     CREATE on the database",
                    info.user, info.database
                )));
            }
        };
        info.extensions.push(((*name).to_owned(), state));
    }
    Ok(info)
}
