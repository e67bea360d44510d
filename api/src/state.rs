//! State shared by every request of both listeners.

use std::sync::Arc;

use outpost_core::clock::SharedClock;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::secrets::CredentialKey;
use outpost_core::settings::Settings;
use outpost_db::DbPool;
use tokio::sync::Semaphore;

use crate::admin::auth::{JwtKeys, LoginLimiter};

/// Shared state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The pool.
    pub pool: DbPool,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The clock.
    pub clock: SharedClock,
    /// Bounds device requests in flight; more are told to try again (memory stays flat under
    /// a retry storm instead of queueing without limit).
    pub device_slots: Arc<Semaphore>,
    /// Signs and checks admin access tokens.
    pub jwt: Arc<JwtKeys>,
    /// Verifies files signed by CSSM (ACK bundles, registration responses); `None` until
    /// `cssm.signing_certificate_file` is set.
    pub cssm_verifier: Option<Arc<SignatureVerifier>>,
    /// Seals device credentials before they are stored.
    pub credentials: Arc<CredentialKey>,
    /// Slows down password guessing on `POST /auth/login`.
    pub login_limiter: Arc<LoginLimiter>,
    /// Turns of the password checks of `POST /auth/login` (`auth.login_concurrency`).
    pub login_slots: Arc<Semaphore>,
}
