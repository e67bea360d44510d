//! Per-test databases (feature `testing`).
//!
//! With `OUTPOST_TEST_DATABASE_URL` set (a maintenance database on any server the tests may
//! create databases on), tests use that server. Without it, the first test of a process starts
//! a throwaway cluster with the embedded-PostgreSQL code (fsync off) and a detached watchdog that
//! stops and deletes it when the process ends. The schema is migrated once into a template
//! database named after the migrations' hash; each test gets its own database cloned from it
//! (`CREATE DATABASE ... TEMPLATE`), dropped when the test's handle is dropped. Tests therefore
//! run in parallel with no shared state and no cleanup code.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::embedded::{
    EmbeddedPostgres, PgBinaries, describe_pg_error, maintenance_client, quote_ident,
};
use crate::migrations::{self, MIGRATIONS_HASH};

/// Environment variable naming an existing server's maintenance database.
pub const TEST_DATABASE_URL_VAR: &str = "OUTPOST_TEST_DATABASE_URL";

/// Advisory lock serialising template creation across concurrent test processes.
const TEMPLATE_LOCK: i64 = 0x0075_7470_6f73_7402;

#[derive(Debug)]
struct TestServer {
    maintenance: String,
    template: String,
    binaries: Option<PgBinaries>,
}

static SERVER: OnceCell<Result<TestServer, String>> = OnceCell::const_new();

/// Replaces the database name of a URL (`postgres://.../db?x`) or key/value string.
pub fn with_dbname(conn: &str, dbname: &str) -> String {
    if let Some(scheme_end) = conn.find("://") {
        let after = scheme_end + 3;
        let query_start = conn[after..]
            .find('?')
            .map(|i| after + i)
            .unwrap_or(conn.len());
        let path_start = conn[after..query_start]
            .find('/')
            .map(|i| after + i)
            .unwrap_or(query_start);
        format!("{}/{}{}", &conn[..path_start], dbname, &conn[query_start..])
    } else {
        // In key/value strings a later key wins; values may be quoted, so do not split them.
        format!("{conn} dbname={dbname}")
    }
}

async fn start_server() -> Result<TestServer, String> {
    let template = format!("outpost_template_{MIGRATIONS_HASH}");
    let (maintenance, binaries) = match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => (url, PgBinaries::locate("").ok()),
        _ => {
            let binaries = PgBinaries::locate("").map_err(|e| e.to_string())?;
            let dir = std::env::temp_dir().join(format!(
                "outpost-test-pg-{}-{}",
                std::process::id(),
                crate::short_hash(uuid::Uuid::new_v4().as_bytes())
            ));
            let cluster = EmbeddedPostgres::new(binaries.clone(), &dir, "postgres", false)
                .map_err(|e| e.to_string())?;
            cluster
                .start()
                .await
                .map_err(|e| format!("starting the test cluster: {e}"))?;
            cluster
                .watchdog_command(std::process::id(), &dir)
                .spawn()
                .map_err(|e| format!("starting the test cluster's watchdog (setsid): {e}"))?;
            (cluster.connection_string("postgres"), Some(binaries))
        }
    };
    build_template(&maintenance, &template).await?;
    Ok(TestServer {
        maintenance,
        template,
        binaries,
    })
}

async fn build_template(maintenance: &str, template: &str) -> Result<(), String> {
    let client = maintenance_client(maintenance)
        .await
        .map_err(|e| format!("connecting to the test server ({TEST_DATABASE_URL_VAR}): {e}"))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| describe_pg_error(&e))?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .map_err(|e| describe_pg_error(&e))?
        .is_some();
    if !exists {
        // Build under another name and rename, so a half-built template is never used.
        let building = format!("{template}_building");
        // Separate statements: DROP/CREATE DATABASE refuse to run in one implicit transaction.
        for sql in [
            format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&building)
            ),
            format!("CREATE DATABASE {}", quote_ident(&building)),
        ] {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| describe_pg_error(&e))?;
        }
        migrations::run_pending(&with_dbname(maintenance, &building))
            .await
            .map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&building),
                quote_ident(template)
            ))
            .await
            .map_err(|e| describe_pg_error(&e))?;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| describe_pg_error(&e))?;
    Ok(())
}

/// A database of one's own, migrated, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    maintenance: String,
}

impl TestDatabase {
    /// Clones the migrated template into a fresh database.
    pub async fn create() -> Result<Self, String> {
        let server = SERVER
            .get_or_init(start_server)
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        Self::clone_from(server, &server.template).await
    }

    /// An empty database (no schema), for migration tests.
    pub async fn create_empty() -> Result<Self, String> {
        let server = SERVER
            .get_or_init(start_server)
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        Self::clone_from(server, "template0").await
    }

    async fn clone_from(server: &TestServer, template: &str) -> Result<Self, String> {
        let name = format!("outpost_test_{}", uuid::Uuid::new_v4().simple());
        let client = maintenance_client(&server.maintenance).await?;
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(&name),
            quote_ident(template)
        );
        // A test process that just built the template may still be disconnecting from it.
        let mut attempt = 0;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 20
                        && describe_pg_error(&e).contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("creating test database: {}", describe_pg_error(&e))),
            }
        }
        Ok(Self {
            url: with_dbname(&server.maintenance, &name),
            name,
            maintenance: server.maintenance.clone(),
        })
    }

    /// Connection string of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server programs (`pg_dump`, ...), when installed here.
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        SERVER
            .get()
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.binaries.as_ref())
            .map(|b| b.program(name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let maintenance = self.maintenance.clone();
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the DROP without stalling it.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = maintenance_client(&maintenance).await {
                    let _dropped = client.batch_execute(&sql).await;
                }
            });
        });
        let _joined = dropper.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_dbname("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_dbname("host='/tmp/a b' port=5432 dbname=postgres", "x"),
            "host='/tmp/a b' port=5432 dbname=postgres dbname=x"
        );
    }
}
