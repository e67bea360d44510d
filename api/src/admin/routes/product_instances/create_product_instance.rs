//! `POST /accounts/{id}/product-instances`: adds one product instance (or updates the one with
//! its UDI or host); the rules are `outpost_app::inventory`'s.

use actix_web::{HttpResponse, web};
use outpost_app::inventory::{self, PiInput};
use outpost_db::{AccountId, ProductInstanceId};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::operable_account;
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// The product instance added or updated.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddedProductInstance {
    /// Its id.
    pub id: Option<ProductInstanceId>,
    /// It is new (else an existing one with its UDI or host was updated).
    pub created: bool,
}

/// Adds one product instance (or updates the one with its UDI or host).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances", tag = "inventory",
    request_body = PiInput, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 201, body = AddedProductInstance), (status = 404), (status = 422)))]
pub async fn create_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<PiInput>,
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
    Ok(HttpResponse::Created().json(AddedProductInstance {
        id: applied.ids.first().copied(),
        created: applied.created == 1,
    }))
}
