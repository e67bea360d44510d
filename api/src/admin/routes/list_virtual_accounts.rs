//! `GET /api/v1/accounts/{id}/virtual-accounts`: each LVA with its transport URL and the
//! IOS-XE lines a network admin pastes.

use actix_web::{HttpResponse, web};
use outpost_core::tenant::transport_url;
use outpost_db::{AccountId, accounts};
use serde_json::json;

use super::visible_account;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists an account's local virtual accounts.
pub async fn list_virtual_accounts(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let base = state.settings.public_base_url();
    let items: Vec<_> = accounts::list_lvas(&mut conn, account.id)
        .await?
        .iter()
        .map(|lva| {
            let url = transport_url(&base, &lva.tenant_id);
            json!({
                "id": lva.id,
                "number": lva.number,
                "name": lva.name,
                "tenant_id": lva.tenant_id,
                "transport_url": url,
                "smart_account": lva.smart_account.as_deref().unwrap_or(&account.smart_account),
                "virtual_account": lva.virtual_account.as_deref().unwrap_or(&account.virtual_account),
                "device_configuration": ["license smart transport cslu", format!("license smart url cslu {url}")],
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
