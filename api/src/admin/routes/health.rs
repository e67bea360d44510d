//! `GET /healthz` (the process answers) and `GET /readyz` (the database is reachable and
//! writable: a standby after failover is not ready).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up")))]
pub async fn get_healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers and is the primary.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The database is reachable and writable"), (status = 503)))]
pub async fn get_readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = async {
        let mut conn = state.pool.get().await?;
        outpost_db::system::is_writable(&mut conn).await
    };
    match check.await {
        Ok(true) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Ok(false) => HttpResponse::ServiceUnavailable().json(
            json!({ "status": "not_ready", "reason": "the database is read-only (standby)" }),
        ),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reason": format!("database: {e}") })),
    }
}
