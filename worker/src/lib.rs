//! Outpost's worker tier: the durable job runner, the cron schedules that enqueue jobs, the
//! jobs themselves (one file each under `jobs/`), the CSSM client and the clients of the
//! devices Outpost pulls from (`devices/`). Jobs call the use cases of `outpost_app`.
//!
//! Cron only enqueues; any worker runs any job; every job is idempotent, so a crash at any
//! point is repaired by running it again.

pub mod cssm_client;
pub mod devices;
pub mod jobs;
pub mod registration;
pub mod runner;
pub mod scheduler;

use std::sync::Arc;

use outpost_core::clock::SharedClock;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::settings::Settings;
use outpost_db::DbPool;

use crate::cssm_client::CssmClient;

/// What jobs need, built once per process.
pub struct WorkerContext {
    /// The pool.
    pub pool: DbPool,
    /// The database URL, for dedicated (lock-holding) connections.
    pub database_url: String,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The clock.
    pub clock: SharedClock,
    /// CSSM.
    pub cssm: CssmClient,
    /// Verifies ACKs and policies; `None` until `cssm.signing_certificate_file` is set.
    pub ack_verifier: Option<SignatureVerifier>,
    /// Sends webhook deliveries (no redirects followed: an endpoint is called where it was
    /// registered, nowhere else).
    pub webhooks: reqwest::Client,
    /// Opens the credentials of devices Outpost pulls from.
    pub credentials: Arc<outpost_core::secrets::CredentialKey>,
}

/// Why the worker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CSSM client could not be built.
    #[error(transparent)]
    Cssm(#[from] cssm_client::CssmError),
    /// The credentials key could not be read or created.
    #[error("auth.credentials_key_file: {0}")]
    Credentials(String),
    /// The webhook client could not be built.
    #[error("webhooks: {0}")]
    Webhooks(String),
    /// The signing certificate could not be read.
    #[error("cssm.signing_certificate_file {path}: {message}")]
    SigningCertificate {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl std::fmt::Debug for WorkerContext {
    // The database URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl WorkerContext {
    /// Reads the CA and signing certificate files named in the settings.
    pub fn new(
        pool: DbPool,
        database_url: String,
        settings: Arc<Settings>,
        clock: SharedClock,
    ) -> Result<Self, SetupError> {
        let cssm = CssmClient::new(&settings.cssm)?;
        let path = &settings.cssm.signing_certificate_file;
        let ack_verifier = if path.is_empty() {
            None
        } else {
            let error = |message: String| SetupError::SigningCertificate {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
            Some(SignatureVerifier::from_certificate_pem(&pem).map_err(|e| error(e.to_string()))?)
        };
        let webhooks = webhook_client(&settings.webhooks)?;
        let credentials =
            outpost_core::secrets::CredentialKey::load_or_create(&settings.credentials_key_path())
                .map_err(|e| SetupError::Credentials(e.to_string()))?;
        Ok(Self {
            pool,
            database_url,
            settings,
            clock,
            cssm,
            ack_verifier,
            webhooks,
            credentials: Arc::new(credentials),
        })
    }
}

fn webhook_client(
    settings: &outpost_core::settings::WebhookSettings,
) -> Result<reqwest::Client, SetupError> {
    let mut extra_roots = Vec::new();
    if !settings.ca_file.is_empty() {
        let pem = std::fs::read_to_string(&settings.ca_file).map_err(|e| {
            SetupError::Webhooks(format!("webhooks.ca_file {}: {e}", settings.ca_file))
        })?;
        extra_roots.push(pem);
    }
    let tls = outpost_core::tls::client_config(&extra_roots, true)
        .map_err(|e| SetupError::Webhooks(format!("webhooks.ca_file: {e}")))?;
    let timeout = std::time::Duration::from_secs(settings.timeout_secs);
    let mut builder = reqwest::Client::builder();
    if !settings.allow_private_addresses {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment: a proxy would resolve and reach hosts the public-only
        // check never saw.
        .no_proxy()
        .user_agent(concat!("Outpost-Webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SetupError::Webhooks(e.to_string()))
}

/// Resolves webhook host names to public addresses only, checked when connecting, so a name
/// that points (or is re-pointed) at a private address is not reached.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| outpost_core::net::is_public_ip(a.ip()))
                .collect();
            if public.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves to no public address (webhooks.allow_private_addresses is off)"
                )
                .into();
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}
