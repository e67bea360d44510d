//! `POST /api/v1/auth/login`: username and password for a short-lived access token.

use actix_web::{HttpResponse, web};
use outpost_db::users;
use serde::Deserialize;
use serde_json::json;

use crate::admin::auth::{hash_password, verify_password};
use crate::error::ApiError;
use crate::state::AppState;

/// Login body.
#[derive(Debug, Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// A hash of a random password, made once, checked against for unknown users.
async fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_password(outpost_core::crypto::random_alphanumeric(24)))
        .await
        .cloned()
}

/// Issues an access token.
pub async fn create_login(
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let mut conn = state.pool.get().await?;
    let user = users::find_by_username(&mut conn, &username).await?;
    drop(conn);
    // The same answer whether the user is unknown or the password wrong.
    let refused = || {
        ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        )
    };
    // An unknown user costs the same argon2 check as a wrong password, so the answer's timing
    // does not tell which user names exist.
    let Some(user) = user.filter(|u| !u.disabled) else {
        verify_password(password, dummy_hash().await?).await?;
        return Err(refused());
    };
    if !verify_password(password, user.password_hash.clone()).await? {
        return Err(refused());
    }
    let token = state.jwt.issue(user.id)?;
    Ok(HttpResponse::Ok().json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.jwt.lifetime_secs(),
    })))
}
