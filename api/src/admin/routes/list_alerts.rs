//! `GET /api/v1/accounts/{id}/alerts`: open alerts, newest first.

use actix_web::{HttpResponse, web};
use outpost_db::AccountId;
use outpost_db::alerts::{self, Alert};

use super::{Items, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists open alerts.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/alerts", tag = "status", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, body = Items<Alert>), (status = 404)))]
pub async fn list_alerts(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = alerts::list_open(&mut conn, account.id).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}
