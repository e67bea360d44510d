//! People who administer Outpost: their passwords (argon2 hashes, computed on the blocking pool
//! because they are slow on purpose) and the first admin of a new installation.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use outpost_db::enums::Role;
use outpost_db::users::{self, User};
use outpost_db::{AsyncPgConnection, UserId};

use crate::error::{AppError, AppResult};

/// Hashes a password with argon2.
pub async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)
}

/// Checks a password against a stored argon2 hash.
pub async fn verify_password(password: String, hash: String) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)
}

/// Creates the first admin (`admin`, system admin) when no user exists, with
/// `configured_password` or, when that is empty, a generated one. Returns the password when it
/// was generated, for the caller to hand over once.
pub async fn ensure_first_admin(
    conn: &mut AsyncPgConnection,
    configured_password: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<String>> {
    if users::count(conn).await? > 0 {
        return Ok(None);
    }
    let generated = configured_password.is_empty();
    let password = if generated {
        outpost_core::crypto::random_alphanumeric(20)
    } else {
        configured_password.to_owned()
    };
    let user = User {
        id: UserId::new(),
        username: "admin".into(),
        password_hash: hash_password(password.clone()).await?,
        role: Some(Role::SystemAdmin),
        disabled: false,
        created_at: now,
    };
    match users::insert(conn, &user).await {
        Ok(()) => Ok(generated.then_some(password)),
        // Another node created it at the same moment.
        Err(e) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
