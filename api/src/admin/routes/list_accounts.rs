//! `GET /api/v1/accounts`.

use actix_web::{HttpResponse, web};
use outpost_db::accounts;
use serde_json::json;

use super::READERS;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists the local accounts the caller may see.
pub async fn list_accounts(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require(READERS)?;
    let mut conn = state.pool.get().await?;
    let list = accounts::list_accounts(&mut conn).await?;
    let items: Vec<_> = list
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "smart_account": a.smart_account,
                "virtual_account": a.virtual_account,
                "email": a.email,
                "status": a.status,
                "registered_at": a.registered_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
