//! `GET /api/v1/accounts/{id}/events`: the audit trail, newest first.

use actix_web::{HttpResponse, web};
use outpost_db::AccountId;
use outpost_db::events::{self, Event};

use super::{Items, Limit, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists events.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/events", tag = "status", params(("id" = uuid::Uuid, Path, description = "Account id"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")), responses((status = 200, body = Items<Event>), (status = 404)))]
pub async fn list_events(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    limit: web::Query<Limit>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = events::list(&mut conn, account.id, limit.value()?).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}
