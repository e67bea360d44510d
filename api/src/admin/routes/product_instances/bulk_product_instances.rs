//! Moving and removing product instances: `POST .../product-instances/transfer` (to another
//! LVA), `POST .../product-instances/remove` and `DELETE .../product-instances/{pi}`; all or
//! none.

use actix_web::{HttpResponse, web};
use outpost_db::accounts::LocalAccount;
use outpost_db::inventory::{self, Removal};
use outpost_db::{AccountId, ProductInstanceId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::super::virtual_accounts::find_lva;
use super::super::{audit, operable_account};
use super::find_pi;
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// Most PIs in one transfer or removal.
const MAX_BULK: usize = 10_000;

/// PIs to move or remove.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// The product instances.
    pub product_instance_ids: Vec<uuid::Uuid>,
    /// Target LVA number (transfer only).
    pub to_lva: Option<i32>,
    /// Remove even with reports CSSM has not acknowledged yet (removal only).
    #[serde(default)]
    pub force: bool,
}

fn bulk_ids(body: &BulkBody) -> Result<Vec<ProductInstanceId>, ApiError> {
    if body.product_instance_ids.is_empty() || body.product_instance_ids.len() > MAX_BULK {
        return Err(ApiError::invalid(format!(
            "product_instance_ids must hold 1 to {MAX_BULK} ids"
        )));
    }
    let mut ids: Vec<ProductInstanceId> = body
        .product_instance_ids
        .iter()
        .map(|u| ProductInstanceId(*u))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// What a transfer moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovedProductInstances {
    /// How many product instances moved.
    pub moved: usize,
    /// The LVA they are in now (its number).
    pub to_lva: i32,
}

/// What a removal removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovedProductInstances {
    /// How many product instances went, with their reports and ACKs.
    pub removed: usize,
}

/// Moves product instances to another LVA of the account, all or none.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/transfer", tag = "inventory",
    request_body = BulkBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = MovedProductInstances), (status = 404), (status = 422)))]
pub async fn transfer_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let ids = bulk_ids(&body)?;
    let number = body
        .to_lva
        .ok_or_else(|| ApiError::invalid("to_lva: required"))?;
    let lva = find_lva(&state, account.id, number).await?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let missing = inventory::transfer(&mut conn, account.id, &ids, lva.id, now).await?;
    if !missing.is_empty() {
        return Err(ApiError::not_found(&format!(
            "product instance(s) {}; nothing was moved",
            missing
                .iter()
                .take(10)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    audit(&mut conn, &principal, account.id, "product_instance.transfer",
        json!({ "count": ids.len(), "to_lva": number, "ids": ids.iter().take(100).collect::<Vec<_>>() }), now).await?;
    Ok(HttpResponse::Ok().json(MovedProductInstances {
        moved: ids.len(),
        to_lva: number,
    }))
}

/// `?force=true` removes a PI whose reports CSSM has not acknowledged yet.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Remove even with unacknowledged reports.
    #[serde(default)]
    force: bool,
}

async fn remove(
    state: &AppState,
    principal: &Principal,
    account: &LocalAccount,
    ids: &[ProductInstanceId],
    force: bool,
) -> Result<usize, ApiError> {
    let mut conn = state.pool.get().await?;
    let (removed, dropped) = match inventory::remove(&mut conn, account.id, ids, force).await? {
        Removal::Removed(removed, dropped) => (removed, dropped),
        Removal::Unacknowledged(pending) => {
            return Err(ApiError::conflict(
                "unacknowledged_reports",
                format!(
                    "{pending} report(s) of these product instances are not acknowledged by CSSM yet; sync first, or remove with force"
                ),
            ));
        }
    };
    let now = state.clock.now();
    audit(&mut conn, principal, account.id, "product_instance.remove",
        json!({ "removed": removed, "forced": force, "unacknowledged_reports_dropped": dropped, "ids": ids.iter().take(100).collect::<Vec<_>>() }), now).await?;
    Ok(removed)
}

/// Removes one product instance with its reports and ACKs.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/product-instances/{pi}", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("pi" = uuid::Uuid, Path, description = "Product instance id"), ForceQuery),
    responses((status = 204), (status = 404), (status = 409, description = "Unacknowledged reports")))]
pub async fn delete_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, ProductInstanceId)>,
    query: web::Query<ForceQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, pi_id) = path.into_inner();
    let account = operable_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    find_pi(&mut conn, account.id, pi_id).await?;
    drop(conn);
    remove(&state, &principal, &account, &[pi_id], query.force).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes several product instances, all or none.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/remove", tag = "inventory",
    request_body = BulkBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = RemovedProductInstances), (status = 404), (status = 409)))]
pub async fn remove_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let ids = bulk_ids(&body)?;
    let mut conn = state.pool.get().await?;
    let found = inventory::count_existing(&mut conn, account.id, &ids).await?;
    drop(conn);
    if found != ids.len() as i64 {
        return Err(ApiError::not_found(
            "product instance(s); nothing was removed",
        ));
    }
    let removed = remove(&state, &principal, &account, &ids, body.force).await?;
    Ok(HttpResponse::Ok().json(RemovedProductInstances { removed }))
}
