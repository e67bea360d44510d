//! Admin authentication: argon2 password hashes, short-lived HS256 access tokens with a fixed
//! algorithm, issuer and audience, and the [`Principal`] extractor every admin handler takes.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use outpost_core::secrets::CredentialKey;
use outpost_db::enums::{AccountRole, Role};
use outpost_db::users::{self, AccountGrant, User};
use outpost_db::{AccountId, DbPool, UserId};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// Issuer of every access token.
pub const ISSUER: &str = "outpost";
/// Audience of admin API access tokens.
pub const AUDIENCE: &str = "outpost-admin-api";

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
}

/// Keys and rules for access tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_secs: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8], lifetime_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(900),
        }
    }

    /// The configured secret, or the one kept (sealed) in the database, made by the first node.
    pub async fn load(
        pool: &DbPool,
        key: &CredentialKey,
        configured: &str,
        lifetime_secs: u64,
    ) -> Result<Self, ApiError> {
        if !configured.is_empty() {
            return Ok(Self::new(configured.as_bytes(), lifetime_secs));
        }
        let mut conn = pool.get().await?;
        let secret = outpost_app::secrets::jwt_secret(&mut conn, key).await?;
        Ok(Self::new(secret.as_bytes(), lifetime_secs))
    }

    /// Token lifetime in seconds.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// Issues a token for a user.
    pub fn issue(&self, user: UserId) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            exp: now + self.lifetime_secs,
            nbf: now,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// Checks a token and returns its user id.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::unauthorized(format!("invalid access token: {e}")))?;
        data.claims
            .sub
            .parse()
            .map_err(|_| ApiError::unauthorized("invalid access token: bad subject"))
    }
}

/// The authenticated caller: the user, its system role and its roles on single accounts.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// Its roles on single accounts.
    pub grants: Vec<AccountGrant>,
}

impl Principal {
    /// How the caller appears in event logs.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.username)
    }

    /// Whether the caller's system role is among `roles`.
    pub fn has_system_role(&self, roles: &[Role]) -> bool {
        self.user.role.is_some_and(|r| roles.contains(&r))
    }

    /// Refuses callers whose system role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.has_system_role(roles) {
            return Ok(());
        }
        Err(ApiError::forbidden(match self.user.role {
            Some(role) => format!("role {role} may not do this"),
            None => "this needs a system role".to_owned(),
        }))
    }

    /// The caller's role on one account, if it has one.
    pub fn account_role(&self, account: AccountId) -> Option<AccountRole> {
        self.grants
            .iter()
            .find(|g| g.account_id == account)
            .map(|g| g.role)
    }

    /// Whether the caller may see the account at all (a system role, or any role on it).
    pub fn can_see(&self, account: AccountId) -> bool {
        self.has_system_role(READERS) || self.account_role(account).is_some()
    }

    /// Whether the caller may change the account's inventory, LVAs, licenses and schedules.
    pub fn can_operate(&self, account: AccountId) -> bool {
        self.has_system_role(OPERATORS)
            || self.account_role(account) == Some(AccountRole::AccountAdmin)
    }
}

/// System roles that may read every account.
pub const READERS: &[Role] = &[Role::SystemAdmin, Role::SystemOperator, Role::SystemUser];
/// System roles that may act on every account.
pub const OPERATORS: &[Role] = &[Role::SystemAdmin, Role::SystemOperator];
/// The system role that manages users, settings and account approval.
pub const ADMINS: &[Role] = &[Role::SystemAdmin];

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let token = header
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError::unauthorized("an Authorization: Bearer <token> header is required")
                })?;
            let user_id = state.jwt.verify(token)?;
            let mut conn = state.pool.get().await?;
            match users::find(&mut conn, user_id).await? {
                Some(user) if !user.disabled => {
                    let grants = users::grants(&mut conn, user.id).await?;
                    Ok(Principal { user, grants })
                }
                _ => Err(ApiError::unauthorized(
                    "the user of this token no longer exists or is disabled",
                )),
            }
        })
    }
}

/// Failed logins allowed per (address, username) within [`LoginLimiter::WINDOW`].
const MAX_FAILURES: usize = 5;

/// Counts login attempts per client address and username, in memory: each attempt is counted
/// as a failure before the password is checked (so parallel guesses cannot all slip in before
/// the first failure is recorded) and forgotten when it succeeds. After [`MAX_FAILURES`] within
/// the window, attempts are refused until the oldest leaves it. Per API process; enough to make
/// guessing slow, and nothing to clean up on restart.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    attempts:
        std::sync::Mutex<std::collections::HashMap<(String, String), Vec<std::time::Instant>>>,
}

impl LoginLimiter {
    /// How long a failure counts.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
    /// Most distinct (address, username) keys kept; beyond that the stalest is forgotten.
    const MAX_KEYS: usize = 100_000;

    fn key(address: &str, username: &str) -> (String, String) {
        // Bounded: a megabyte of user name must not become a megabyte of key.
        (
            address.to_owned(),
            username
                .chars()
                .take(128)
                .collect::<String>()
                .to_lowercase(),
        )
    }

    /// Counts an attempt of `(address, username)`, or refuses it with the seconds to wait.
    pub fn begin(&self, address: &str, username: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::key(address, username);
        if !map.contains_key(&key) && map.len() >= Self::MAX_KEYS {
            map.retain(|_, list| {
                list.last()
                    .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
            });
            if map.len() >= Self::MAX_KEYS {
                let stalest = map
                    .iter()
                    .min_by_key(|(_, list)| list.last().copied())
                    .map(|(k, _)| k.clone());
                if let Some(stalest) = stalest {
                    map.remove(&stalest);
                }
            }
        }
        let list = map.entry(key).or_default();
        list.retain(|t| now.duration_since(*t) < Self::WINDOW);
        if list.len() >= MAX_FAILURES {
            let oldest = list.first().copied().unwrap_or(now);
            return Err(Self::WINDOW
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1));
        }
        list.push(now);
        Ok(())
    }

    /// Forgets the attempts of a key after a successful login.
    pub fn succeeded(&self, address: &str, username: &str) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&Self::key(address, username));
    }
}
