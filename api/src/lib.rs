//! Outpost's API tier: the device listener (`/cslu/v1/pi/{tenant}`, HTTPS and optional HTTP)
//! and the admin listener (`/api/v1`, `/ui`, `/healthz`, `/readyz`, HTTPS). Stateless: any
//! number of nodes can run against the same database.

pub mod admin;
pub mod device;
pub mod error;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use outpost_core::clock::SharedClock;
use outpost_core::settings::Settings;
use outpost_db::DbPool;
use tokio::sync::Semaphore;

use crate::admin::auth::JwtKeys;
use crate::state::AppState;
use crate::tls::TlsMaterial;

/// Why the API tier could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {key} = {addr}: {source}{hint}")]
    Bind {
        /// The settings key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
        /// Advice for common causes.
        hint: &'static str,
    },
    /// The TLS material was refused.
    #[error("TLS: {0}")]
    Tls(#[from] outpost_core::tls::TlsError),
    /// The token keys could not be loaded.
    #[error("loading the access token key: {0}")]
    Auth(#[from] error::ApiError),
    /// The CSSM signing certificate could not be read.
    #[error("cssm.signing_certificate_file {0}")]
    SigningCertificate(String),
    /// The key that seals device credentials could not be loaded.
    #[error("auth.credentials_key_file: {0}")]
    CredentialsKey(#[from] outpost_core::secrets::SecretError),
}

fn bind_error(key: &'static str, addr: SocketAddr, source: std::io::Error) -> StartError {
    let hint = match source.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another port)"
        }
        std::io::ErrorKind::AddrInUse => {
            " (another program uses this port; stop it or choose another port)"
        }
        _ => "",
    };
    StartError::Bind {
        key,
        addr,
        source,
        hint,
    }
}

/// Worker threads of each listener: one per core.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
}

/// The device listener (`/cslu/v1/pi`, pull-drop URLs): HTTPS, and plain HTTP when enabled.
/// Returns the server and its bound HTTPS and HTTP addresses.
fn device_listener(
    settings: &Settings,
    state: web::Data<AppState>,
    server_tls: rustls::ServerConfig,
) -> Result<(Server, SocketAddr, Option<SocketAddr>), StartError> {
    let mut device = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::Logger::new("device %a \"%r\" %s %b %Dms"))
            .configure(device::configure)
    })
    .workers(workers())
    .disable_signals()
    // Answers go out as several TLS records: with Nagle's algorithm on, the last one waits
    // for the client's delayed ACK, adding 40 ms to about one exchange in ten.
    .tcp_nodelay(true)
    .bind_rustls_0_23(settings.device.https_listen, server_tls)
    .map_err(|e| bind_error("device.https_listen", settings.device.https_listen, e))?;
    let https = device.addrs()[0];
    let mut http = None;
    if let Some(addr) = settings.device.http_listen {
        device = device
            .bind(addr)
            .map_err(|e| bind_error("device.http_listen", addr, e))?;
        http = device.addrs().into_iter().find(|a| *a != https);
    }
    Ok((device.shutdown_timeout(10).run(), https, http))
}

/// The admin listener (`/api/v1`, `/ui`, health): HTTPS. Returns the server and its address.
fn admin_listener(
    settings: &Settings,
    state: web::Data<AppState>,
    server_tls: rustls::ServerConfig,
) -> Result<(Server, SocketAddr), StartError> {
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(error::json_config())
            .app_data(error::path_config())
            .app_data(error::query_config())
            .wrap(middleware::Logger::new("admin %a \"%r\" %s %b %Dms"))
            .configure(admin::configure)
    })
    .workers(workers())
    // Each open connection holds TLS and HTTP buffers: a flood of them (a thousand logins at
    // once) waits in the kernel's accept queue instead of in memory.
    .max_connections(settings.admin.max_connections)
    .disable_signals()
    .tcp_nodelay(true)
    .bind_rustls_0_23(settings.admin.https_listen, server_tls)
    .map_err(|e| bind_error("admin.https_listen", settings.admin.https_listen, e))?;
    let addr = admin.addrs()[0];
    Ok((admin.shutdown_timeout(10).run(), addr))
}

/// The running listeners.
pub struct Application {
    device_https: SocketAddr,
    device_http: Option<SocketAddr>,
    admin: SocketAddr,
    servers: Vec<Server>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("device_https", &self.device_https)
            .field("device_http", &self.device_http)
            .field("admin", &self.admin)
            .finish()
    }
}

impl Application {
    /// Binds every listener (port 0 picks a free port; the bound addresses are reported), so a
    /// bind failure is known before anything runs.
    pub async fn build(
        settings: Arc<Settings>,
        pool: DbPool,
        clock: SharedClock,
        tls: &TlsMaterial,
    ) -> Result<Self, StartError> {
        let credentials =
            outpost_core::secrets::CredentialKey::load_or_create(&settings.credentials_key_path())?;
        let jwt = JwtKeys::load(
            &pool,
            &credentials,
            settings.auth.jwt_secret.expose(),
            settings.auth.token_lifetime_secs,
        )
        .await?;
        let cssm_verifier =
            outpost_core::crypto::load_verifier(&settings.cssm.signing_certificate_file)
                .map_err(StartError::SigningCertificate)?
                .map(Arc::new);
        let state = web::Data::new(AppState {
            credentials: Arc::new(credentials),
            login_limiter: Arc::new(admin::auth::LoginLimiter::default()),
            login_slots: Arc::new(Semaphore::new(settings.auth.login_concurrency)),
            cssm_verifier,
            pool,
            settings: settings.clone(),
            clock,
            device_slots: Arc::new(Semaphore::new(settings.device.max_in_flight)),
            jwt: Arc::new(jwt),
        });
        let server_tls = outpost_core::tls::server_config(&tls.cert_pem, &tls.key_pem)?;
        let (device, device_https, device_http) =
            device_listener(&settings, state.clone(), server_tls.clone())?;
        let (admin, admin_addr) = admin_listener(&settings, state, server_tls)?;
        Ok(Self {
            device_https,
            device_http,
            admin: admin_addr,
            servers: vec![device, admin],
        })
    }

    /// Bound address of the device HTTPS listener.
    pub fn device_https_addr(&self) -> SocketAddr {
        self.device_https
    }

    /// Bound address of the device HTTP listener, if enabled.
    pub fn device_http_addr(&self) -> Option<SocketAddr> {
        self.device_http
    }

    /// Bound address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Handles that stop the listeners (gracefully: requests in flight finish).
    pub fn handles(&self) -> Vec<ServerHandle> {
        self.servers.iter().map(Server::handle).collect()
    }

    /// Serves until the listeners are stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let results = futures_util::future::join_all(self.servers).await;
        results.into_iter().collect()
    }
}
