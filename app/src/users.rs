//! People who administer Outpost: their passwords (argon2 hashes, slow and memory-hungry on
//! purpose, computed on threads of their own) and the first admin of a new installation.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use outpost_db::enums::Role;
use outpost_db::users::{self, User};
use outpost_db::{AsyncPgConnection, UserId};

use crate::error::{AppError, AppResult};

/// Password work for the hasher threads.
type PasswordJob = Box<dyn FnOnce() + Send>;

/// Runs argon2 on a few threads of its own. Each check takes about 19 MiB; on the blocking
/// pool every thread that ever ran one kept its memory in its allocator arena, so a login
/// flood left hundreds of MiB behind. Two threads reuse theirs.
fn on_hasher_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = AppResult<T>> {
    static QUEUE: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<PasswordJob>>> =
        std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<PasswordJob>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..2 {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("outpost-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hasher thread");
            }
        }
        std::sync::Mutex::new(sender)
    });
    let (done, result) = tokio::sync::oneshot::channel();
    let sent = queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(Box::new(move || {
            let _ = done.send(work());
        }));
    async move {
        sent.map_err(|_| AppError::internal("the password hasher threads are gone"))?;
        result
            .await
            .map_err(|_| AppError::internal("a password hasher thread stopped"))
    }
}

/// Hashes a password with argon2.
pub async fn hash_password(password: String) -> AppResult<String> {
    on_hasher_thread(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await?
    .map_err(AppError::internal)
}

/// Checks a password against a stored argon2 hash.
pub async fn verify_password(password: String, hash: String) -> AppResult<bool> {
    on_hasher_thread(move || {
        PasswordHash::new(&hash).map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await?
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
