//! Embedded PostgreSQL: with no `database.url`, Outpost creates (first run) and starts a private
//! cluster under its data directory with the system's `initdb` and `pg_ctl`, and stops it on
//! exit. The test suite uses the same code for its throwaway cluster.
//!
//! The cluster listens on a Unix socket in a private directory only (no TCP port to collide
//! with or expose), with `trust` authentication: only its owner (and root) can reach the socket.
//! PostgreSQL refuses to run as root, so when Outpost runs as root the cluster runs as an
//! unprivileged user (`embedded_postgres.run_as_user`) that owns its directory.

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::unistd::{Gid, Uid, User};

/// Superuser created by `initdb`; Outpost connects as this role.
pub const SUPERUSER: &str = "outpost";
/// Port number; it only names the socket file, nothing listens on TCP.
pub const PORT: u16 = 5432;
/// The data directory (`PGDATA`) inside a cluster's root.
const CLUSTER_DIR: &str = "cluster";
/// Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why the embedded PostgreSQL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No `initdb`/`pg_ctl` anywhere we looked.
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl) were not found in {searched}. Install the \
         Debian package `postgresql` (apt-get install postgresql), set \
         embedded_postgres.bin_dir, or set database.url to an existing server"
    )]
    NotInstalled {
        /// Where we looked.
        searched: String,
    },
    /// Running as root and the unprivileged user does not exist.
    #[error(
        "PostgreSQL refuses to run as root and the user `{0}` it should run as does not exist: \
         create it (adduser --system {0}) or set embedded_postgres.run_as_user"
    )]
    NoUser(String),
    /// The cluster user cannot reach the data directory.
    #[error(
        "the PostgreSQL user `{user}` cannot reach {path}: {blocker} is not searchable by it. \
         Choose a data_dir it can reach (e.g. under /var/lib) or run chmod o+x {blocker}"
    )]
    Unreachable {
        /// The cluster user.
        user: String,
        /// The cluster directory.
        path: String,
        /// The first directory on the way it cannot enter.
        blocker: String,
    },
    /// A directory is in the way.
    #[error(
        "{0} exists but is not a PostgreSQL data directory; move it away or choose another data_dir"
    )]
    NotACluster(String),
    /// Something else sits where the socket directory goes.
    #[error(
        "{0} exists but is not a private directory of the cluster's user (a symlink, a file, or \
         another user's); remove it"
    )]
    UnsafeSocketDir(String),
    /// A path PostgreSQL's option syntax cannot carry.
    #[error("path {0} contains a quote or backslash; choose another data_dir")]
    BadPath(String),
    /// A command failed.
    #[error("{step} failed: {detail}")]
    Command {
        /// What we were doing.
        step: &'static str,
        /// Its output.
        detail: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the PostgreSQL server programs are.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds `initdb` and `pg_ctl`: in `configured` if set, else on the PATH, else in the
    /// newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them off the PATH).
    pub fn locate(configured: &str) -> Result<Self, EmbeddedError> {
        let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if !configured.is_empty() {
            let dir = PathBuf::from(configured);
            return if has_tools(&dir) {
                Ok(Self { dir })
            } else {
                Err(EmbeddedError::NotInstalled {
                    searched: configured.to_owned(),
                })
            };
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path_var) {
            if has_tools(&dir) {
                // Resolve symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin) so the
                // sibling programs (postgres, pg_dump) are found next to them.
                let real = std::fs::canonicalize(dir.join("pg_ctl"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_tools(d))
                    .unwrap_or(dir);
                return Ok(Self { dir: real });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_tools(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Ok(Self { dir }),
            None => Err(EmbeddedError::NotInstalled {
                searched: "the PATH and /usr/lib/postgresql/*/bin".into(),
            }),
        }
    }

    /// Like [`PgBinaries::locate`], but when `cluster_dir` already holds a cluster, prefers the
    /// installed version that created it (a newer major version cannot start an older cluster).
    pub fn locate_for(configured: &str, cluster_dir: &Path) -> Result<Self, EmbeddedError> {
        if configured.is_empty() {
            let version =
                std::fs::read_to_string(cluster_dir.join("PG_VERSION")).unwrap_or_default();
            let version = version.trim();
            if !version.is_empty() {
                let dir = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
                if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                    return Ok(Self { dir });
                }
            }
        }
        Self::locate(configured)
    }

    /// Path of a server program (`initdb`, `pg_ctl`, `pg_dump`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The version of these programs as `pg_ctl --version` prints it (`15.14`), for
    /// `outpost check-config`.
    pub fn version(&self) -> Result<String, EmbeddedError> {
        let output = Command::new(self.program("pg_ctl"))
            .arg("--version")
            .env("LC_ALL", "C")
            .output()
            .map_err(io_error(&self.dir))?;
        // "pg_ctl (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .ok_or_else(|| EmbeddedError::Command {
                step: "pg_ctl --version",
                detail: text.trim().to_owned(),
            })
    }
}

/// Result of [`EmbeddedPostgres::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartOutcome {
    /// `initdb` ran: this is the first start.
    pub initialised: bool,
    /// A server was already running on this cluster (e.g. left by a killed process) and is
    /// reused.
    pub already_running: bool,
}

/// A private PostgreSQL cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    binaries: PgBinaries,
    root: PathBuf,
    cluster: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    run_as: Option<(Uid, Gid, String)>,
    durable: bool,
    extra_options: String,
}

impl EmbeddedPostgres {
    /// A cluster under `root` with the server programs that suit it: those in `bin_dir` when
    /// set, else the installed version that created the cluster, else the newest installed.
    pub fn open(
        bin_dir: &str,
        root: &Path,
        run_as_user: &str,
        durable: bool,
    ) -> Result<Self, EmbeddedError> {
        let binaries = PgBinaries::locate_for(bin_dir, &root.join(CLUSTER_DIR))?;
        Self::new(binaries, root, run_as_user, durable)
    }

    /// Prepares (but does not start) a cluster under `root`. `durable: false` turns off fsync,
    /// for throwaway test clusters only.
    pub fn new(
        binaries: PgBinaries,
        root: &Path,
        run_as_user: &str,
        durable: bool,
    ) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(root).map_err(io_error(root))?;
        let root = std::fs::canonicalize(root).map_err(io_error(root))?;
        let text = root.display().to_string();
        if text.contains(['\'', '"', '\\']) {
            return Err(EmbeddedError::BadPath(text));
        }

        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(run_as_user)
                .ok()
                .flatten()
                .ok_or_else(|| EmbeddedError::NoUser(run_as_user.to_owned()))?;
            Some((user.uid, user.gid, user.name))
        } else {
            None
        };

        let local_socket = root.join("run");
        let socket_dir = if local_socket.as_os_str().len() + 20 < MAX_SOCKET_PATH {
            local_socket
        } else {
            // Deep data directories do not fit a socket path; use a short private one.
            let digest = crate::short_hash(text.as_bytes());
            std::env::temp_dir().join(format!("outpost-pg-{digest}"))
        };

        Ok(Self {
            binaries,
            cluster: root.join(CLUSTER_DIR),
            log_file: root.join("postgres.log"),
            root,
            socket_dir,
            run_as,
            durable,
            extra_options: String::new(),
        })
    }

    /// Server options (`-c name=value ...`) given after Outpost's own, which they override:
    /// tests use it for a TCP listener with TLS. Values are read by a shell (`pg_ctl -o`), so
    /// quote paths with single quotes.
    pub fn with_server_options(mut self, options: &str) -> Self {
        self.extra_options = options.to_owned();
        self
    }

    /// The data directory (`PGDATA`).
    pub fn cluster_dir(&self) -> &Path {
        &self.cluster
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server programs in use.
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// A key/value connection string for `dbname` over the private socket.
    pub fn connection_string(&self, dbname: &str) -> String {
        // Quoted: a data directory may contain spaces (never quotes: see `BadPath`).
        format!(
            "host='{}' port={PORT} user={SUPERUSER} dbname={dbname}",
            self.socket_dir.display()
        )
    }

    /// Builds a command that runs as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.binaries.program(program));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        // Messages in English and a predictable locale, whatever the operator's shell has.
        cmd.env("LC_ALL", "C").env("LANG", "C");
        if let Some((uid, gid, _)) = &self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// Hands a directory to the cluster user, private to it.
    fn own_private_dir(&self, dir: &Path) -> Result<(), EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        if let Some((uid, gid, _)) = &self.run_as {
            chown(dir, Some(uid.as_raw()), Some(gid.as_raw())).map_err(io_error(dir))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
    }

    /// Creates the socket directory, or checks the existing one is a real directory of the
    /// cluster's user. The fallback under /tmp has a predictable name: a symlink planted there
    /// must never make Outpost chown or chmod what it points at.
    fn prepare_socket_dir(&self) -> Result<(), EmbeddedError> {
        use std::os::unix::fs::MetadataExt;
        let dir = &self.socket_dir;
        let unsafe_dir = || EmbeddedError::UnsafeSocketDir(dir.display().to_string());
        let owner = self
            .run_as
            .as_ref()
            .map(|(uid, _, _)| *uid)
            .unwrap_or_else(Uid::effective);
        match std::fs::symlink_metadata(dir) {
            Ok(meta) => {
                if meta.file_type().is_symlink() || !meta.is_dir() || meta.uid() != owner.as_raw() {
                    return Err(unsafe_dir());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // create_dir, not create_dir_all: it fails if the name appeared meanwhile.
                std::fs::create_dir(dir).map_err(io_error(dir))?;
                if let Some((uid, gid, _)) = &self.run_as {
                    std::os::unix::fs::lchown(dir, Some(uid.as_raw()), Some(gid.as_raw()))
                        .map_err(io_error(dir))?;
                }
            }
            Err(e) => return Err(io_error(dir)(e)),
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
    }

    /// When running as root, checks the cluster user can walk down to the cluster directory.
    fn check_reachable(&self) -> Result<(), EmbeddedError> {
        let Some((uid, gid, user)) = &self.run_as else {
            return Ok(());
        };
        for ancestor in self.root.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(ancestor) else {
                continue;
            };
            let mode = meta.permissions().mode();
            use std::os::unix::fs::MetadataExt;
            let searchable = if meta.uid() == uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(EmbeddedError::Unreachable {
                    user: user.clone(),
                    path: self.root.display().to_string(),
                    blocker: ancestor.display().to_string(),
                });
            }
        }
        Ok(())
    }

    async fn run(&self, step: &'static str, mut cmd: Command) -> Result<Output, EmbeddedError> {
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| EmbeddedError::Command {
                step,
                detail: e.to_string(),
            })?
            .map_err(|e| EmbeddedError::Command {
                step,
                detail: e.to_string(),
            })?;
        Ok(output)
    }

    fn failure(&self, step: &'static str, output: &Output) -> EmbeddedError {
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        // The server log usually says why a start failed.
        if let Ok(log) = std::fs::read_to_string(&self.log_file) {
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            if !tail.is_empty() {
                detail.push_str("\nlast lines of ");
                detail.push_str(&self.log_file.display().to_string());
                detail.push_str(":\n");
                detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
        EmbeddedError::Command { step, detail }
    }

    /// Whether a server is running on this cluster.
    pub async fn is_running(&self) -> Result<bool, EmbeddedError> {
        if !self.cluster.join("PG_VERSION").is_file() {
            return Ok(false);
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.cluster);
        let output = self.run("pg_ctl status", cmd).await?;
        Ok(output.status.success())
    }

    /// Creates the cluster on first use and starts it unless it is already running.
    pub async fn start(&self) -> Result<StartOutcome, EmbeddedError> {
        self.own_private_dir(&self.root)?;
        self.check_reachable()?;
        self.prepare_socket_dir()?;
        let mut initialised = false;
        if !self.cluster.join("PG_VERSION").is_file() {
            let occupied = std::fs::read_dir(&self.cluster)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if occupied {
                return Err(EmbeddedError::NotACluster(
                    self.cluster.display().to_string(),
                ));
            }
            let mut cmd = self.command("initdb");
            cmd.arg("-D").arg(&self.cluster).args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]);
            let output = self.run("initdb", cmd).await?;
            if !output.status.success() {
                return Err(self.failure("initdb", &output));
            }
            initialised = true;
        }

        if self.is_running().await? {
            return Ok(StartOutcome {
                initialised,
                already_running: true,
            });
        }

        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT} -c max_connections=200",
            self.socket_dir.display()
        );
        if !self.durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if !self.extra_options.is_empty() {
            options.push(' ');
            options.push_str(&self.extra_options);
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.cluster)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-s", "-o", &options]);
        let output = self.run("starting PostgreSQL (pg_ctl start)", cmd).await?;
        if !output.status.success() {
            return Err(self.failure("starting PostgreSQL (pg_ctl start)", &output));
        }
        Ok(StartOutcome {
            initialised,
            already_running: false,
        })
    }

    /// Stops the server (fast shutdown: open sessions are ended, committed data is kept).
    pub async fn stop(&self) -> Result<(), EmbeddedError> {
        if !self.is_running().await? {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.cluster)
            .args(["-m", "fast", "-w", "-t", "60", "-s"]);
        let output = self.run("stopping PostgreSQL (pg_ctl stop)", cmd).await?;
        if !output.status.success() {
            return Err(self.failure("stopping PostgreSQL (pg_ctl stop)", &output));
        }
        Ok(())
    }

    /// Creates database `name` unless it exists.
    pub async fn ensure_database(&self, name: &str) -> Result<(), EmbeddedError> {
        create_database_if_missing(&self.connection_string("postgres"), name)
            .await
            .map_err(|detail| EmbeddedError::Command {
                step: "creating the database",
                detail,
            })
    }

    /// A shell line that stops this cluster when process `pid` is gone and deletes `remove`;
    /// the test helper runs it detached so a throwaway cluster never outlives its tests.
    pub fn watchdog_command(&self, pid: u32, remove: &Path) -> Command {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; '{}' stop -D '{}' -m immediate -s; rm -rf '{}' '{}'",
            self.binaries.program("pg_ctl").display(),
            self.cluster.display(),
            remove.display(),
            self.socket_dir.display(),
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", &script])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid, _)) = &self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// The user the cluster runs as when Outpost runs as root.
    pub fn run_as(&self) -> Option<(Uid, Gid)> {
        self.run_as.as_ref().map(|(uid, gid, _)| (*uid, *gid))
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Describes a tokio-postgres error with the server's own message, or the cause of a client
/// side failure (a refused connection, a refused certificate), both of which `Display` omits.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Connects to a maintenance database with tokio-postgres (no diesel needed for DDL), with the
/// TLS the URL asks for.
pub async fn maintenance_client(conn_str: &str) -> Result<tokio_postgres::Client, String> {
    crate::connector::PgConnector::new(conn_str)
        .map_err(|e| e.to_string())?
        .client(None)
        .await
}

/// `CREATE DATABASE name` unless it exists, through the maintenance connection `conn_str`.
pub async fn create_database_if_missing(conn_str: &str, name: &str) -> Result<(), String> {
    let client = maintenance_client(conn_str).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| describe_pg_error(&e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .map_err(|e| describe_pg_error(&e))?;
    }
    Ok(())
}
