//! Authorization codes (SLAC) of an account: the list, and the import of the SLAC CSV that
//! CSSM produces for air-gapped sites. An imported code waits for its device and is handed over
//! with the device's next answer (or at once to its `authorization_request`).
//!
//! CSV [ours]: header `udi_pid,udi_serial_number,entitlement_tag,count,authorization_code`, one
//! row per device and entitlement; `authorization_code` is the signed SLAC file
//! (`<smartLicenseAuthorization>...`) as CSSM issued it.

use actix_web::{HttpResponse, web};
use outpost_app::slac::{self, SlacImported};
use outpost_db::AccountId;
use outpost_db::authorizations::{self, Authorization};
use serde::Deserialize;

use super::offline_files::verifier;
use super::{Items, Limit, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::uploads::spool_file;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists the account's authorization codes, newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/authorizations", tag = "licenses",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, body = Items<Authorization>), (status = 404)))]
pub async fn list_authorizations(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    limit: web::Query<Limit>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = authorizations::list(&mut conn, account.id, None, limit.value()?).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// `?lva=` of an import.
#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    /// LVA whose pools codes of devices not in the inventory draw on; default 1.
    lva: Option<i32>,
}

/// Imports a SLAC CSV: every code is verified against the CSSM signing certificate and must
/// fit its LVA's pool; one bad row and nothing is imported (`error.details.rows`).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/slac-import", tag = "licenses",
    params(("id" = uuid::Uuid, Path, description = "Account id"),
        ("lva" = Option<i32>, Query, description = "LVA for codes of devices not in the inventory; default 1")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = SlacImported),
        (status = 404), (status = 409, description = "The account is not registered"),
        (status = 422, description = "`error.details.rows`: `[{line, reason}]`")))]
pub async fn import_authorizations(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let verifier = verifier(&state)?;
    let file = spool_file(payload, &state).await?;
    let mut conn = state.pool.get().await?;
    let lva = query.lva.unwrap_or(1);
    let imported: SlacImported = slac::import_csv(
        &mut conn,
        verifier,
        account.id,
        lva,
        file,
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(imported))
}
