//! `POST /api/v1/auth/login`: username and password for a short-lived access token.

use actix_web::{HttpRequest, HttpResponse, web};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::users;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;
use outpost_app::users::{hash_password, verify_password};

/// Login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    /// User name.
    username: String,
    /// Password.
    password: String,
}

/// A signed-in session's token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessToken {
    /// The JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Longest password a user can have (`POST /users` refuses longer ones).
const MAX_PASSWORD: usize = 1024;

/// A hash of a random password, made once, checked against for unknown users.
async fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_password(outpost_core::crypto::random_alphanumeric(24)))
        .await
        .cloned()
        .map_err(ApiError::from)
}

/// Issues an access token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login, security(()), responses((status = 200, body = AccessToken), (status = 401), (status = 429)))]
pub async fn create_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    // A name or password no user can have is refused at once: nothing is looked up or hashed
    // (PostgreSQL refuses NUL in text; argon2 is what a flood would make Outpost spend).
    if super::check_text("username", &username, 128).is_err() || password.len() > MAX_PASSWORD {
        return Err(failed(&state, &address, &username).await);
    }
    if let Err(secs) = state.login_limiter.begin(&address, &username) {
        return Err(ApiError::too_many_requests(
            format!(
                "too many failed logins for '{username}' from {address}; try again in {secs} s"
            ),
            secs,
        ));
    }
    // Password checks take their turn: a flood of logins costs a few argon2 checks at a time,
    // not one each (each takes about 19 MiB and a core for tens of milliseconds).
    let wait = std::time::Duration::from_millis(state.settings.auth.login_wait_ms);
    let Ok(Ok(_turn)) = tokio::time::timeout(wait, state.login_slots.clone().acquire_owned()).await
    else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many sign-ins at once; try again in a few seconds",
        ));
    };
    let user = {
        let mut conn = state.pool.get().await?;
        users::find_by_username(&mut conn, &username).await?
    };
    // An unknown user costs the same argon2 check as a wrong password, so the answer's timing
    // does not tell which user names exist.
    let Some(user) = user.filter(|u| !u.disabled) else {
        verify_password(password, dummy_hash().await?).await?;
        return Err(failed(&state, &address, &username).await);
    };
    if !verify_password(password, user.password_hash.clone()).await? {
        return Err(failed(&state, &address, &username).await);
    }
    state.login_limiter.succeeded(&address, &username);
    let token = state.jwt.issue(user.id)?;
    Ok(HttpResponse::Ok().json(AccessToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: state.jwt.lifetime_secs(),
    }))
}

/// Records a failed login (already counted by the limiter) in the system event log and gives
/// the answer: the same whether the user is unknown or the password wrong.
async fn failed(state: &AppState, address: &str, username: &str) -> ApiError {
    let event = NewEvent {
        account_id: None,
        pi_id: None,
        actor: format!("address:{address}"),
        action: "auth.login".into(),
        result: EventResult::Rejected,
        // Bounded: what an anonymous caller sends must not grow the event log at will.
        detail: json!({ "username": username.chars().take(128).collect::<String>() }),
        created_at: state.clock.now(),
    };
    if let Ok(mut conn) = state.pool.get().await {
        // The refusal matters more than its record; a failed insert is only logged.
        if let Err(e) = events::record(&mut conn, &event).await {
            tracing::warn!(error = %e, "could not record a failed login");
        }
    }
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}
