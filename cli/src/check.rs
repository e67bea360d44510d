//! `outpost check-config`: what would stop Outpost from starting, found before it starts. One
//! line per check (`ok`, `warn` or `FAIL`); exit code 1 when a check fails, 2 when the settings
//! themselves do not load (`main`). It starts nothing and changes nothing: the embedded
//! PostgreSQL is only looked at, the schema is read, the listeners are bound and released.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use outpost_core::settings::Settings;
use outpost_db::connector::{PgConnector, SslMode};
use outpost_db::embedded::{EmbeddedPostgres, PgBinaries};
use outpost_db::preflight::{self, ServerInfo};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl std::fmt::Display) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed += 1;
                "FAIL"
            }
        };
        println!("{tag}  {what}: {detail}");
    }
}

/// Runs every check and prints them.
pub fn run(settings: &Settings, file: Option<&Path>) -> ExitCode {
    let mut report = Report::default();
    let source = file.map_or_else(
        || "defaults and OUTPOST_* variables".to_owned(),
        |f| format!("{} and OUTPOST_* variables", f.display()),
    );
    report.line(
        Level::Ok,
        "settings",
        format!("settings are valid ({source})"),
    );
    data_dir(&mut report, settings);
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(database(&mut report, settings)),
        Err(e) => report.line(Level::Fail, "database", format!("no async runtime: {e}")),
    }
    tls(&mut report, settings);
    cssm(&mut report, settings);
    let listeners = [
        ("device.https_listen", Some(settings.device.https_listen)),
        ("device.http_listen", settings.device.http_listen),
        ("admin.https_listen", Some(settings.admin.https_listen)),
    ];
    for (key, addr) in listeners {
        if let Some(addr) = addr {
            listener(&mut report, key, addr);
        }
    }
    if report.failed > 0 {
        println!("{} check(s) failed", report.failed);
        ExitCode::FAILURE
    } else {
        println!("every check passed");
        ExitCode::SUCCESS
    }
}

fn data_dir(report: &mut Report, settings: &Settings) {
    let dir = &settings.data_dir;
    if !dir.exists() {
        report.line(
            Level::Ok,
            "data_dir",
            format!(
                "{} does not exist yet (created on first start)",
                dir.display()
            ),
        );
        return;
    }
    // An unnamed temporary file: writable or not, nothing is left behind.
    match tempfile::tempfile_in(dir) {
        Ok(_) => report.line(
            Level::Ok,
            "data_dir",
            format!("{} is writable", dir.display()),
        ),
        Err(e) => report.line(
            Level::Fail,
            "data_dir",
            format!("{} is not writable by this user: {e}", dir.display()),
        ),
    }
}

async fn database(report: &mut Report, settings: &Settings) {
    let timeout = Duration::from_secs(settings.database.connect_timeout_secs);
    if settings.database.url.is_empty() {
        return embedded(report, settings, timeout).await;
    }
    let url = settings.database.url.expose();
    let connector = match PgConnector::new(url) {
        Ok(connector) => connector,
        Err(e) => return report.line(Level::Fail, "database", e),
    };
    let mode = connector.ssl_mode();
    let remote = !connector.hosts().split(", ").all(is_local_host);
    match mode {
        SslMode::VerifyFull => {}
        SslMode::Disable if remote => report.line(
            Level::Warn,
            "database TLS",
            "sslmode=disable: passwords and data cross the network in clear; use \
             sslmode=verify-full with sslrootcert",
        ),
        _ if remote => report.line(
            Level::Warn,
            "database TLS",
            format!(
                "sslmode={mode} does not authenticate the server (no protection against an \
                 attacker in the middle); use sslmode=verify-full with sslrootcert"
            ),
        ),
        _ => {}
    }
    let target = format!(
        "{} (database {}, user {}, sslmode={mode})",
        connector.hosts(),
        connector.dbname().unwrap_or("?"),
        connector.user().unwrap_or("?"),
    );
    server(report, url, &target, timeout).await;
}

async fn embedded(report: &mut Report, settings: &Settings, timeout: Duration) {
    let root = settings.data_dir.join("postgres");
    let cluster_dir = root.join("cluster");
    let binaries = match PgBinaries::locate_for(&settings.embedded_postgres.bin_dir, &cluster_dir) {
        Ok(binaries) => binaries,
        Err(e) => return report.line(Level::Fail, "embedded PostgreSQL", e),
    };
    match binaries.version() {
        Ok(version) if major(&version) >= 15 => report.line(
            Level::Ok,
            "embedded PostgreSQL",
            format!(
                "server programs {version} ({})",
                binaries.program("pg_ctl").display()
            ),
        ),
        Ok(version) => report.line(
            Level::Fail,
            "embedded PostgreSQL",
            format!(
                "the server programs ({}) are PostgreSQL {version}; Outpost needs 15 or later",
                binaries.program("pg_ctl").display()
            ),
        ),
        Err(e) => report.line(Level::Fail, "embedded PostgreSQL", e),
    }
    let version_file = cluster_dir.join("PG_VERSION");
    let Ok(cluster_version) = std::fs::read_to_string(&version_file) else {
        return report.line(
            Level::Ok,
            "embedded PostgreSQL",
            format!(
                "no cluster yet: `outpost serve` creates it in {} on first start",
                cluster_dir.display()
            ),
        );
    };
    // The cluster exists, so opening creates no directory.
    let cluster = match EmbeddedPostgres::open(
        &settings.embedded_postgres.bin_dir,
        &root,
        &settings.embedded_postgres.run_as_user,
        true,
    ) {
        Ok(cluster) => cluster,
        Err(e) => return report.line(Level::Fail, "embedded PostgreSQL", e),
    };
    let described = format!(
        "cluster {} (PostgreSQL {})",
        cluster_dir.display(),
        cluster_version.trim()
    );
    match cluster.is_running().await {
        Ok(true) => {
            report.line(
                Level::Ok,
                "embedded PostgreSQL",
                format!("{described} is running"),
            );
            server(
                report,
                &cluster.connection_string("outpost"),
                "the embedded PostgreSQL",
                timeout,
            )
            .await;
        }
        Ok(false) => report.line(
            Level::Ok,
            "embedded PostgreSQL",
            format!(
                "{described} exists, not running (`outpost serve` starts it; this check does not)"
            ),
        ),
        Err(e) => report.line(Level::Fail, "embedded PostgreSQL", e),
    }
}

/// Reaches a server: version, TLS, extensions, schema.
async fn server(report: &mut Report, url: &str, target: &str, timeout: Duration) {
    let info: ServerInfo = match preflight::check(url, timeout).await {
        Ok(info) => info,
        Err(e) => return report.line(Level::Fail, "database", format!("{target}: {e}")),
    };
    let tls = match &info.tls {
        Some(protocol) => format!("encrypted ({protocol})"),
        None => "not encrypted".to_owned(),
    };
    report.line(
        Level::Ok,
        "database",
        format!("reached {target}: PostgreSQL {}, {tls}", info.version),
    );
    let extensions: Vec<String> = info
        .extensions
        .iter()
        .map(|(name, state)| format!("{name} {state}"))
        .collect();
    report.line(Level::Ok, "database extensions", extensions.join(", "));
    match outpost_db::migrations::pending(url).await {
        Ok(pending) if pending.is_empty() => report.line(
            Level::Ok,
            "database schema",
            format!(
                "up to date ({} migrations)",
                outpost_db::migrations::known()
            ),
        ),
        Ok(pending) => report.line(
            Level::Warn,
            "database schema",
            format!(
                "{} migration(s) to apply ({}): `outpost migrate` or `outpost serve` applies them",
                pending.len(),
                pending.join(", ")
            ),
        ),
        Err(e) => report.line(Level::Fail, "database schema", e),
    }
}

fn major(version: &str) -> u32 {
    version
        .split(['.', ' '])
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

fn is_local_host(host: &str) -> bool {
    host.ends_with("(Unix socket)")
        || ["localhost:", "127.", "[::1]:", "::1:"]
            .iter()
            .any(|prefix| host.starts_with(prefix))
}

fn tls(report: &mut Report, settings: &Settings) {
    let generated = settings.tls.cert_file.is_empty();
    let (cert, key) = if generated {
        let dir = settings.data_dir.join("tls");
        let pair = (dir.join("server.crt"), dir.join("server.key"));
        if !pair.0.is_file() {
            return report.line(
                Level::Ok,
                "tls",
                format!(
                    "a private CA and a certificate for {} are created in {} on first start",
                    settings.tls.hostnames.join(", "),
                    dir.display()
                ),
            );
        }
        pair
    } else {
        (
            Path::new(&settings.tls.cert_file).to_path_buf(),
            Path::new(&settings.tls.key_file).to_path_buf(),
        )
    };
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))
    };
    let summary = read(&cert).and_then(|cert_pem| {
        let key_pem = read(&key)?;
        outpost_core::tls::check_server_pair(&cert_pem, &key_pem).map_err(|e| e.to_string())
    });
    let files = format!("{} and {}", cert.display(), key.display());
    match summary {
        Err(e) => report.line(Level::Fail, "tls", format!("{files}: {e}")),
        Ok(summary) => {
            let now = chrono::Utc::now();
            let detail = format!(
                "{files} match; names {}; valid until {}{}",
                summary.names.join(", "),
                summary.not_after.format("%Y-%m-%d"),
                if generated {
                    " (generated by Outpost)"
                } else {
                    ""
                },
            );
            let level = if summary.not_after < now {
                Level::Fail
            } else if summary.not_after < now + chrono::Duration::days(30) {
                Level::Warn
            } else {
                Level::Ok
            };
            report.line(level, "tls", detail);
        }
    }
}

fn cssm(report: &mut Report, settings: &Settings) {
    let path = &settings.cssm.signing_certificate_file;
    match outpost_core::crypto::load_verifier(path) {
        Ok(Some(verifier)) => report.line(
            Level::Ok,
            "cssm.signing_certificate_file",
            format!("{path} ({})", verifier.subject()),
        ),
        Ok(None) => report.line(
            Level::Warn,
            "cssm.signing_certificate_file",
            "not set: ACKs cannot be verified, so syncs with CSSM fail until it is",
        ),
        Err(e) => report.line(Level::Fail, "cssm.signing_certificate_file", e),
    }
}

fn listener(report: &mut Report, key: &str, addr: SocketAddr) {
    if addr.port() == 0 {
        return report.line(
            Level::Ok,
            key,
            format!("{addr}: a free port is picked at start"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(_) => report.line(Level::Ok, key, format!("{addr} can be bound")),
        Err(e) => match e.kind() {
            std::io::ErrorKind::AddrInUse => report.line(
                Level::Warn,
                key,
                format!("{addr} is in use (by a running Outpost? then all is well)"),
            ),
            std::io::ErrorKind::PermissionDenied => report.line(
                Level::Warn,
                key,
                format!(
                    "{addr}: port {} needs root or CAP_NET_BIND_SERVICE, which the packaged \
                     systemd units grant but this shell does not have",
                    addr.port()
                ),
            ),
            _ => report.line(Level::Fail, key, format!("{addr} cannot be bound: {e}")),
        },
    }
}
