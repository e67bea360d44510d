//! `POST /accounts/{id}/product-instances`: adds one product instance (or updates the one with
//! its UDI or host); the rules are `outpost_app::inventory`'s.

use actix_web::{HttpResponse, web};
use outpost_app::inventory::{self, PiInput};
use outpost_db::AccountId;
use serde_json::json;

use super::super::operable_account;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Adds one product instance (or updates the one with its UDI or host).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances", tag = "inventory",
    request_body = PiInput, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 201, body = serde_json::Value), (status = 404), (status = 422)))]
pub async fn create_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<PiInput>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let applied = inventory::add(
        &mut conn,
        &state.credentials,
        account.id,
        &body,
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Created()
        .json(json!({ "id": applied.ids.first(), "created": applied.created == 1 })))
}
