//! `GET /healthz` (the process answers) and `GET /readyz` (the database is reachable and
//! writable: a standby after failover is not ready).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`), `ready` or `not_ready` (`/readyz`).
    pub status: &'static str,
    /// Why it is not ready; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Health {
    fn is(status: &'static str) -> Self {
        Self {
            status,
            reason: None,
        }
    }

    fn not_ready(reason: String) -> Self {
        Self {
            status: "not_ready",
            reason: Some(reason),
        }
    }
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn get_healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health::is("ok"))
}

/// The database answers and is the primary.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The database is reachable and writable", body = Health), (status = 503, description = "Not ready, and why", body = Health)))]
pub async fn get_readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = async {
        let mut conn = state.pool.get().await?;
        outpost_db::system::is_writable(&mut conn).await
    };
    match check.await {
        Ok(true) => HttpResponse::Ok().json(Health::is("ready")),
        Ok(false) => HttpResponse::ServiceUnavailable().json(Health::not_ready(
            "the database is read-only (standby)".into(),
        )),
        Err(e) => {
            HttpResponse::ServiceUnavailable().json(Health::not_ready(format!("database: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reason` appears only when not ready.
    #[test]
    fn the_answers_keep_their_shape() {
        assert_eq!(
            serde_json::to_value(Health::is("ok")).unwrap(),
            serde_json::json!({ "status": "ok" })
        );
        assert_eq!(
            serde_json::to_value(Health::not_ready("database: down".into())).unwrap(),
            serde_json::json!({ "status": "not_ready", "reason": "database: down" })
        );
    }
}
