//! License pools per LVA: purchased (synced from CSSM), in use (from RUM usage), shortfall;
//! and transfers of purchased quantity between LVAs of one account.

use actix_web::{HttpResponse, web};
use outpost_db::AccountId;
use outpost_db::licenses::{self, Position, TransferRefusal};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::virtual_accounts::find_lva;
use super::{Items, audit, check_text, licensing_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists the license positions of an account per LVA and entitlement.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/licenses", tag = "licenses",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = Items<Position>), (status = 404)))]
pub async fn list_licenses(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = licenses::positions(&mut conn, account.id).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// A quantity to move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseTransfer {
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// Source LVA number.
    pub from_lva: i32,
    /// Target LVA number.
    pub to_lva: i32,
    /// How many, at least 1.
    pub quantity: i64,
}

/// What a transfer moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transferred {
    /// The quantity moved.
    pub transferred: i64,
}

/// Moves purchased quantity between two LVAs of the account; never below zero.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/licenses/transfer", tag = "licenses",
    request_body = LicenseTransfer, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = Transferred), (status = 404),
        (status = 409, description = "Not enough quantity, or the account is not registered"), (status = 422)))]
pub async fn transfer_licenses(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<LicenseTransfer>,
) -> Result<HttpResponse, ApiError> {
    let account = licensing_account(&state, &principal, *id).await?;
    check_text("entitlement_tag", &body.entitlement_tag, 200).map_err(ApiError::invalid)?;
    if body.quantity < 1 {
        return Err(ApiError::invalid("quantity must be at least 1"));
    }
    if body.from_lva == body.to_lva {
        return Err(ApiError::invalid("from_lva and to_lva are the same"));
    }
    let from = find_lva(&state, account.id, body.from_lva).await?;
    let to = find_lva(&state, account.id, body.to_lva).await?;
    let mut conn = state.pool.get().await?;
    let refused = licenses::transfer(
        &mut conn,
        account.id,
        &body.entitlement_tag,
        from.id,
        to.id,
        body.quantity,
    )
    .await?;
    match refused {
        Ok(()) => {}
        Err(TransferRefusal::NotHeld) => {
            return Err(ApiError::conflict(
                "insufficient_quantity",
                format!(
                    "local virtual account {} holds no {}",
                    body.from_lva, body.entitlement_tag
                ),
            ));
        }
        Err(TransferRefusal::Insufficient { available }) => {
            return Err(ApiError::conflict(
                "insufficient_quantity",
                format!(
                    "local virtual account {} holds {available} of {} free to transfer (not held by authorization codes), fewer than {}",
                    body.from_lva, body.entitlement_tag, body.quantity
                ),
            ));
        }
    }
    let now = state.clock.now();
    audit(&mut conn, &principal, account.id, "license.transfer",
        json!({ "entitlement_tag": body.entitlement_tag, "from_lva": body.from_lva, "to_lva": body.to_lva, "quantity": body.quantity }), now).await?;
    Ok(HttpResponse::Ok().json(Transferred {
        transferred: body.quantity,
    }))
}
