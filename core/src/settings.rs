//! Typed settings: one TOML file overlaid by `OUTPOST_`-prefixed environment variables
//! (`OUTPOST_DEVICE__HTTPS_LISTEN=0.0.0.0:8443` sets `device.https_listen`), validated at
//! start-up with messages that name the bad key. `deploy/config.example.toml` documents every
//! key; a test keeps it in step with [`Settings::default`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret that never prints (logs, `Debug`, error messages).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(unset)"
        } else {
            "Secret([redacted])"
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything Outpost can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where Outpost keeps its files: the embedded PostgreSQL cluster, generated TLS material.
    pub data_dir: PathBuf,
    /// Base URL devices and admins reach Outpost at, e.g. `https://outpost.example.com`;
    /// empty: derived from `tls.hostnames` and `device.https_listen`.
    pub public_url: String,
    /// Logging.
    pub log: LogSettings,
    /// PostgreSQL connection.
    pub database: DatabaseSettings,
    /// The embedded PostgreSQL used when `database.url` is empty.
    pub embedded_postgres: EmbeddedPostgresSettings,
    /// The device-facing listener.
    pub device: DeviceSettings,
    /// The admin listener (API, web UI, health).
    pub admin: AdminSettings,
    /// TLS material of both listeners.
    pub tls: TlsSettings,
    /// Admin API authentication.
    pub auth: AuthSettings,
    /// CSSM (Cisco's cloud) connection.
    pub cssm: CssmSettings,
    /// The job runner and schedules.
    pub worker: WorkerSettings,
    /// Outgoing webhooks (alerts sent to an account's HTTPS endpoints).
    pub webhooks: WebhookSettings,
    /// Pulling usage from devices that do not push.
    pub pull: PullSettings,
}

/// Pulling usage from devices (REST, RESTCONF, NETCONF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullSettings {
    /// Devices one pull job talks to at once.
    pub concurrency: usize,
    /// Seconds one device has for a whole pull (connect, collect, install ACKs).
    pub device_timeout_secs: u64,
    /// Seconds "Synchronise now with the device" waits before it starts, as SSM On-Prem does.
    pub start_delay_secs: u64,
}

impl Default for PullSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            device_timeout_secs: 60,
            start_delay_secs: 60,
        }
    }
}

/// Outgoing webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Extra CA certificates (PEM) to trust for webhook endpoints, besides the system's.
    pub ca_file: String,
    /// Seconds an endpoint has to answer one delivery attempt.
    pub timeout_secs: u64,
    /// Let webhooks reach loopback, private and link-local addresses (off: an account admin
    /// cannot point Outpost at its own network).
    pub allow_private_addresses: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            ca_file: String::new(),
            timeout_secs: 10,
            allow_private_addresses: false,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `outpost_worker=debug,info`.
    pub filter: String,
}

/// PostgreSQL connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// libpq-style URL or key/value string; empty: run the embedded PostgreSQL. For HA give
    /// every node: `postgres://outpost@db1,db2/outpost?target_session_attrs=read-write`. TLS
    /// as in libpq: `sslmode` (`disable`, `prefer` by default, `require`, `verify-ca`,
    /// `verify-full`) and `sslrootcert` (a CA file, or `system`); see
    /// `outpost_db::connector`.
    pub url: Secret,
    /// Connections in the pool of each process.
    pub pool_size: u32,
    /// Seconds to wait for a new connection.
    pub connect_timeout_secs: u64,
    /// Milliseconds a request waits for a pooled connection before answering "try again".
    pub acquire_timeout_ms: u64,
}

/// The embedded PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedPostgresSettings {
    /// Directory holding `initdb` and `pg_ctl`; empty: search the PATH and
    /// `/usr/lib/postgresql/<version>/bin`.
    pub bin_dir: String,
    /// PostgreSQL refuses to run as root: when Outpost runs as root, the cluster runs as this
    /// unprivileged user.
    pub run_as_user: String,
}

/// The device-facing listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSettings {
    /// HTTPS address devices push to.
    pub https_listen: SocketAddr,
    /// Optional plain-HTTP address (many devices are configured with `http://`); empty: off.
    #[serde(with = "optional_addr")]
    pub http_listen: Option<SocketAddr>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a device may take to send its body; a slower one is cut off so it cannot hold a
    /// slot of `max_in_flight` forever.
    pub body_timeout_secs: u64,
    /// Device requests handled at once; more are answered `OK_TRY_AGAIN`.
    pub max_in_flight: usize,
    /// Seconds a device is told to wait in an `OK_TRY_AGAIN`.
    pub retry_after_secs: u64,
    /// Tenant id that `POST /cslu/v1/pi` (no tenant) goes to; empty: such requests get 404.
    pub default_tenant: String,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// HTTPS address of the admin API, web UI and health endpoints.
    pub https_listen: SocketAddr,
    /// Largest file an upload that is spooled to disk accepts (ACK bundle, CSV file), in bytes.
    pub max_upload_bytes: u64,
    /// Largest upload read whole into memory (a device's RUM file, a registration response),
    /// in bytes.
    pub max_text_upload_bytes: u64,
    /// Seconds an upload may take to arrive; a slower one is refused (a trickling sender
    /// cannot hold a request open for ever).
    pub upload_timeout_secs: u64,
    /// Decompressed bytes an ACK bundle may hold, outer and inner archives together.
    pub max_bundle_bytes: u64,
    /// Files an ACK bundle may hold, across its archives.
    pub max_bundle_members: u64,
    /// Connections the admin listener serves at once per worker thread; more wait to be
    /// accepted (each open one holds TLS and HTTP buffers).
    pub max_connections: usize,
}

/// TLS material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; empty: Outpost creates a private CA and a certificate under
    /// `<data_dir>/tls` on first start.
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
    /// Names and addresses the generated certificate is valid for.
    pub hostnames: Vec<String>,
}

/// Admin API authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key of access tokens; empty: generated once and kept in the database, so every
    /// API node shares it.
    pub jwt_secret: Secret,
    /// Lifetime of an access token, in seconds.
    pub token_lifetime_secs: u64,
    /// Password of the first admin, created when no user exists; empty: generated and
    /// printed once.
    pub initial_admin_password: Secret,
    /// File holding the key that seals the secrets kept in the database (device credentials,
    /// CSSM client secrets, webhook secrets, the token key); empty: `<data_dir>/credentials.key`,
    /// created on first start. Every node of a cluster needs the same file.
    pub credentials_key_file: String,
    /// Password checks (argon2, slow and memory-hungry on purpose) run at once per API
    /// process; more logins wait their turn.
    pub login_concurrency: usize,
    /// Milliseconds a login waits for its turn before it is told to try again (503).
    pub login_wait_ms: u64,
}

/// CSSM connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CssmSettings {
    /// Base URL of the Smart Accounts and Licensing API host.
    pub api_url: String,
    /// Base URL of the OAuth token host.
    pub token_url: String,
    /// Extra CA certificates (PEM) to trust for CSSM, besides the system's.
    pub ca_file: String,
    /// Certificate (PEM) whose key signs ACKs and policies; needed to verify them.
    pub signing_certificate_file: String,
    /// Token CSSM requires to register an on-prem instance, if any.
    pub registration_token: Secret,
    /// Seconds before a CSSM call is abandoned.
    pub request_timeout_secs: u64,
    /// Reports per `reportusage` call.
    pub batch_size: usize,
    /// Seconds between ACK polls within one sync.
    pub poll_interval_secs: u64,
    /// ACK polls within one sync before it leaves the rest to a follow-up sync.
    pub poll_attempts: u32,
    /// Seconds before a follow-up sync polls again for ACKs still pending.
    pub follow_up_secs: u64,
}

/// The job runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs run at once by one worker process.
    pub concurrency: usize,
    /// Milliseconds between looks at the job table when idle.
    pub poll_interval_ms: u64,
    /// Seconds a claimed job may go without a heartbeat before another worker takes it over.
    pub lease_secs: u64,
    /// Attempts before a job is marked failed.
    pub max_attempts: i32,
    /// Seconds before the first retry; doubles with each attempt.
    pub backoff_base_secs: u64,
    /// Longest wait between retries, in seconds.
    pub backoff_max_secs: u64,
    /// Whether this process enqueues scheduled jobs (one leader does, elected in PostgreSQL).
    pub schedules: bool,
    /// Seconds a stopping worker lets running jobs finish before stopping them and handing
    /// them back to the queue.
    pub shutdown_grace_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./outpost-data"),
            public_url: String::new(),
            log: LogSettings::default(),
            database: DatabaseSettings::default(),
            embedded_postgres: EmbeddedPostgresSettings::default(),
            device: DeviceSettings::default(),
            admin: AdminSettings::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            cssm: CssmSettings::default(),
            worker: WorkerSettings::default(),
            webhooks: WebhookSettings::default(),
            pull: PullSettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            pool_size: 16,
            connect_timeout_secs: 5,
            acquire_timeout_ms: 2000,
        }
    }
}

impl Default for EmbeddedPostgresSettings {
    fn default() -> Self {
        Self {
            bin_dir: String::new(),
            run_as_user: "postgres".into(),
        }
    }
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            https_listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            http_listen: None,
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout_secs: 30,
            max_in_flight: 256,
            retry_after_secs: 60,
            default_tenant: String::new(),
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            https_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            max_upload_bytes: 512 * 1024 * 1024,
            max_text_upload_bytes: 16 * 1024 * 1024,
            upload_timeout_secs: 300,
            max_bundle_bytes: 128 * 1024 * 1024,
            max_bundle_members: 100_000,
            max_connections: 256,
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            hostnames: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

impl AdminSettings {
    /// What an uploaded ACK bundle may hold.
    pub fn bundle_limits(&self) -> crate::bundle::Limits {
        crate::bundle::Limits {
            max_decompressed_bytes: self.max_bundle_bytes,
            max_members: self.max_bundle_members,
            ..crate::bundle::Limits::default()
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            token_lifetime_secs: 900,
            initial_admin_password: Secret::default(),
            credentials_key_file: String::new(),
            login_concurrency: 1,
            login_wait_ms: 2000,
        }
    }
}

impl Default for CssmSettings {
    fn default() -> Self {
        Self {
            api_url: "https://swapi.cisco.com".into(),
            token_url: "https://cloudsso.cisco.com".into(),
            ca_file: String::new(),
            signing_certificate_file: String::new(),
            registration_token: Secret::default(),
            request_timeout_secs: 30,
            batch_size: 500,
            poll_interval_secs: 10,
            poll_attempts: 6,
            follow_up_secs: 900,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval_ms: 1000,
            lease_secs: 60,
            max_attempts: 8,
            backoff_base_secs: 15,
            backoff_max_secs: 3600,
            schedules: true,
            shutdown_grace_secs: 10,
        }
    }
}

/// Why the settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// The file named on the command line does not exist.
    #[error("settings file {0} does not exist")]
    MissingFile(String),
    /// A key could not be read (wrong type, unknown key, bad syntax).
    #[error("settings key `{key}`: {message}")]
    Parse {
        /// Dotted key, e.g. `device.https_listen`.
        key: String,
        /// What is wrong, and where the value came from.
        message: String,
    },
    /// A value was read but is not acceptable.
    #[error("settings key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads defaults, then the file (if given), then `OUTPOST_*` variables, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, Env::prefixed("OUTPOST_"))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(SettingsError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // OUTPOST_CONFIG names the file itself (the CLI reads it); OUTPOST_TEST_* belong to the
        // test suite. Neither is a setting.
        let env = env
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                key != "config" && !key.starts_with("test_")
            })
            .split("__");
        figment = figment.merge(env);
        let settings: Settings = figment.extract().map_err(parse_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads settings from TOML text alone (tests and `check-config`).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(parse_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values the types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &'static str, message: &str| {
            Err(SettingsError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if !self.public_url.is_empty() && !is_http_url(&self.public_url) {
            return invalid("public_url", "must start with https:// or http://");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        if self.device.max_body_bytes < 1024 {
            return invalid("device.max_body_bytes", "must be at least 1024");
        }
        if self.device.body_timeout_secs == 0 {
            return invalid("device.body_timeout_secs", "must be at least 1");
        }
        if self.device.max_in_flight == 0 {
            return invalid("device.max_in_flight", "must be at least 1");
        }
        if self.auth.login_concurrency == 0 {
            return invalid("auth.login_concurrency", "must be at least 1");
        }
        if self.admin.max_connections == 0 {
            return invalid("admin.max_connections", "must be at least 1");
        }
        if self.admin.upload_timeout_secs == 0 {
            return invalid("admin.upload_timeout_secs", "must be at least 1");
        }
        // Port 0 (pick a free port) may repeat; fixed addresses may not.
        let clash = |a: SocketAddr, b: SocketAddr| a == b && a.port() != 0;
        if self
            .device
            .http_listen
            .is_some_and(|http| clash(http, self.device.https_listen))
        {
            return invalid("device.http_listen", "must differ from device.https_listen");
        }
        if clash(self.admin.https_listen, self.device.https_listen) {
            return invalid("admin.https_listen", "must differ from device.https_listen");
        }
        if self.cert_file_pair_incomplete() {
            return invalid(
                "tls.key_file",
                "tls.cert_file and tls.key_file are set together or not at all",
            );
        }
        if self.tls.cert_file.is_empty() && self.tls.hostnames.is_empty() {
            return invalid(
                "tls.hostnames",
                "needs at least one name for the generated certificate",
            );
        }
        if !is_http_url(&self.cssm.api_url) {
            return invalid("cssm.api_url", "must start with https:// or http://");
        }
        if !is_http_url(&self.cssm.token_url) {
            return invalid("cssm.token_url", "must start with https:// or http://");
        }
        for (key, path) in [
            ("cssm.ca_file", &self.cssm.ca_file),
            ("webhooks.ca_file", &self.webhooks.ca_file),
            (
                "cssm.signing_certificate_file",
                &self.cssm.signing_certificate_file,
            ),
            ("tls.cert_file", &self.tls.cert_file),
            ("tls.key_file", &self.tls.key_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return Err(SettingsError::Invalid {
                    key,
                    message: format!("file {path} does not exist"),
                });
            }
        }
        if self.pull.concurrency == 0 {
            return invalid("pull.concurrency", "must be at least 1");
        }
        if self.pull.device_timeout_secs == 0 {
            return invalid("pull.device_timeout_secs", "must be at least 1");
        }
        if self.webhooks.timeout_secs == 0 {
            return invalid("webhooks.timeout_secs", "must be at least 1");
        }
        if self.cssm.batch_size == 0 {
            return invalid("cssm.batch_size", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.lease_secs < 2 {
            return invalid("worker.lease_secs", "must be at least 2");
        }
        if self.worker.max_attempts < 1 {
            return invalid("worker.max_attempts", "must be at least 1");
        }
        if self.auth.token_lifetime_secs < 60 {
            return invalid("auth.token_lifetime_secs", "must be at least 60");
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.expose().len() < 32 {
            return invalid("auth.jwt_secret", "must be at least 32 characters");
        }
        Ok(())
    }

    fn cert_file_pair_incomplete(&self) -> bool {
        self.tls.cert_file.is_empty() != self.tls.key_file.is_empty()
    }

    /// The file of the key that seals device credentials.
    pub fn credentials_key_path(&self) -> PathBuf {
        if self.auth.credentials_key_file.is_empty() {
            self.data_dir.join("credentials.key")
        } else {
            PathBuf::from(&self.auth.credentials_key_file)
        }
    }

    /// The base URL shown in transport URLs.
    pub fn public_base_url(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let host = self
            .tls
            .hostnames
            .first()
            .map(String::as_str)
            .unwrap_or("localhost");
        match self.device.https_listen.port() {
            443 => format!("https://{host}"),
            port => format!("https://{host}:{port}"),
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(host) if !host.is_empty() && !host.starts_with('/'))
}

fn parse_error(error: figment::Error) -> SettingsError {
    let key = error.path.join(".");
    let profile = error.profile.clone().unwrap_or_default();
    // Say where the bad value came from: the file, or the exact environment variable.
    let source = match &error.metadata {
        Some(m) => match &m.source {
            Some(source) => format!(" (from {source})"),
            None if m.name.contains("environment") => {
                let var = m
                    .interpolate(&profile, &error.path)
                    .replace('.', "__")
                    .to_uppercase();
                format!(" (from environment variable OUTPOST_{var})")
            }
            None => format!(" (from {})", m.name),
        },
        None => String::new(),
    };
    SettingsError::Parse {
        key: if key.is_empty() { "<root>".into() } else { key },
        message: format!("{}{source}", error.kind),
    }
}

/// Serialises `None` as `""` so every key shows in the example file and an empty environment
/// variable turns the listener off.
mod optional_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.serialize_str(&addr.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim()
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/config.example.toml");

    /// Every key of the example file matches the defaults, and every default key is in it.
    #[test]
    fn example_config_is_in_step_with_defaults() {
        let example: toml::Value = toml::from_str(EXAMPLE).unwrap();
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        assert_eq!(
            example, defaults,
            "deploy/config.example.toml differs from Settings::default()"
        );
        assert_eq!(Settings::from_toml(EXAMPLE).unwrap(), Settings::default());
    }

    /// The Debian package's /etc/outpost/outpost.toml loads and keeps its state where the
    /// package and the units put it.
    #[test]
    fn packaged_config_loads() {
        let packaged = include_str!("../../deploy/debian/outpost.toml");
        let s = Settings::from_toml(packaged).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/outpost"));
        assert_eq!(s.embedded_postgres.run_as_user, "outpost");
        assert_eq!(s.device.https_listen, "0.0.0.0:443".parse().unwrap());
        assert_eq!(s.admin.https_listen, "0.0.0.0:8443".parse().unwrap());
        assert!(s.database.url.is_empty());
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let err = Settings::from_toml("[device]\nhttps_lisen = \"0.0.0.0:1\"").unwrap_err();
        assert!(err.to_string().contains("https_lisen"), "{err}");
        let err = Settings::from_toml("[device]\nhttps_listen = \"nowhere\"").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("settings key `device.https_listen`"),
            "{err}"
        );
        let err = Settings::from_toml("[database]\npool_size = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "settings key `database.pool_size`: must be at least 1"
        );
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail's closures return figment::Error"
    )]
    fn environment_overrides_file_and_names_its_source() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "outpost.toml",
                "[device]\nhttps_listen = \"127.0.0.1:9443\"\n",
            )?;
            jail.set_env("OUTPOST_DEVICE__HTTP_LISTEN", "127.0.0.1:9080");
            jail.set_env("OUTPOST_WORKER__CONCURRENCY", "2");
            jail.set_env("OUTPOST_TEST_DATABASE_URL", "ignored");
            jail.set_env("OUTPOST_CONFIG", "outpost.toml");
            let s = Settings::load(Some(Path::new("outpost.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.device.https_listen, "127.0.0.1:9443".parse().unwrap());
            assert_eq!(
                s.device.http_listen,
                Some("127.0.0.1:9080".parse().unwrap())
            );
            assert_eq!(s.worker.concurrency, 2);

            jail.set_env("OUTPOST_WORKER__CONCURRENCY", "many");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("settings key `worker.concurrency`"),
                "{err}"
            );
            assert!(err.contains("OUTPOST_WORKER__CONCURRENCY"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let mut s = Settings::default();
        s.database.url = Secret::new("postgres://u:hunter2@db/outpost");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
