//! The inventory CSV: `GET .../product-instances/template.csv` (the header row) and `POST
//! .../product-instances/import` (all or nothing, every bad row named; the rules are
//! `outpost_app::inventory`'s).

use actix_web::{HttpResponse, web};
use outpost_app::inventory::{self, CSV_COLUMNS};
use outpost_db::AccountId;
use serde::Serialize;
use utoipa::ToSchema;

use super::super::{operable_account, visible_account};
use super::attachment;
use crate::admin::auth::Principal;
use crate::admin::uploads::spool_file;
use crate::error::ApiError;
use crate::state::AppState;

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedProductInstances {
    /// Product instances created.
    pub created: usize,
    /// Existing ones updated.
    pub updated: usize,
}

/// Imports product instances from CSV (the template's columns): every row is checked first;
/// one bad row and nothing is imported, and the answer lists each bad row with its reason.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/import", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportedProductInstances),
        (status = 404), (status = 422, description = "`error.details.rows`: `[{line, reason}]`")))]
pub async fn import_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let file = spool_file(payload, &state).await?;
    let mut conn = state.pool.get().await?;
    let applied = inventory::import_csv(
        &mut conn,
        &state.credentials,
        account.id,
        file,
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ImportedProductInstances {
        created: applied.created,
        updated: applied.updated,
    }))
}

/// The CSV template: the header row of an import file.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/template.csv", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)))]
pub async fn get_import_template(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    visible_account(&state, &principal, *id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(attachment("product-instances-template.csv"))
        .body(format!("{}\n", CSV_COLUMNS.join(","))))
}
