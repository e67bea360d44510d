//! Authorization codes (SLAC) of an account: the list, and the import of the SLAC CSV that
//! CSSM produces for air-gapped sites. An imported code waits for its device and is handed over
//! with the device's next answer (or at once to its `authorization_request`).
//!
//! CSV [ours]: header `udi_pid,udi_serial_number,entitlement_tag,count,authorization_code`, one
//! row per device and entitlement; `authorization_code` is the signed SLAC file
//! (`<smartLicenseAuthorization>...`) as CSSM issued it.

use actix_web::{HttpResponse, web};
use outpost_core::signed_file::verify_authorization;
use outpost_db::authorizations::{self, ImportRow, Issued};
use outpost_db::inventory::RowError;
use outpost_db::product_instances::{self, UdiKey};
use outpost_db::{AccountId, AsyncConnection, accounts};
use serde::Deserialize;
use serde_json::json;

use super::offline_files::spool_text;
use super::product_instances::rows_refused;
use super::{Limit, audit, licensing_account, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Columns of the SLAC CSV.
pub const SLAC_COLUMNS: [&str; 5] = [
    "udi_pid",
    "udi_serial_number",
    "entitlement_tag",
    "count",
    "authorization_code",
];
/// Rows one import may hold.
const MAX_ROWS: usize = 10_000;

/// Lists the account's authorization codes, newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/authorizations", tag = "licenses",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "`{items: [{id, pi_id, udi_pid, udi_serial_number, entitlement_tag, count, state, source, requested_at, issued_at, delivered_at, confirmed_at, returned_at, return_forwarded_at, error}]}`", body = serde_json::Value), (status = 404)))]
pub async fn list_authorizations(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    limit: web::Query<Limit>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = authorizations::list(&mut conn, account.id, None, limit.value()).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
struct SlacRow {
    udi_pid: String,
    udi_serial_number: String,
    entitlement_tag: String,
    count: String,
    authorization_code: String,
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
    responses((status = 200, description = "`{imported, already_imported}`", body = serde_json::Value),
        (status = 404), (status = 409, description = "The account is not registered"),
        (status = 422, description = "`error.details.rows`: `[{line, reason}]`")))]
pub async fn import_authorizations(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = licensing_account(&state, &principal, *id).await?;
    let Some(verifier) = state.cssm_verifier.clone() else {
        return Err(ApiError::conflict(
            "no_signing_certificate",
            "cssm.signing_certificate_file is not set: Outpost cannot verify authorization codes",
        ));
    };
    let mut conn = state.pool.get().await?;
    let lvas = accounts::list_lvas(&mut conn, account.id).await?;
    let default_number = query.lva.unwrap_or(1);
    let Some(default_lva) = lvas.iter().find(|l| l.number == default_number) else {
        return Err(ApiError::invalid(format!(
            "local virtual account {default_number} does not exist"
        )));
    };
    let text = spool_text(payload, state.settings.admin.max_upload_bytes).await?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::invalid(format!("the CSV header cannot be read: {e}")))?
        .clone();
    if headers.iter().collect::<Vec<_>>() != SLAC_COLUMNS {
        return Err(ApiError::invalid(format!(
            "the CSV header must be: {}",
            SLAC_COLUMNS.join(",")
        )));
    }
    let now = state.clock.now();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        if index >= MAX_ROWS {
            return Err(ApiError::invalid(format!(
                "the file has more than {MAX_ROWS} rows; split it"
            )));
        }
        let row = match record
            .map_err(|e| format!("unreadable CSV: {e}"))
            .and_then(|r| {
                r.deserialize::<SlacRow>(Some(&headers))
                    .map_err(|e| format!("unreadable row: {e}"))
            }) {
            Ok(row) => row,
            Err(reason) => {
                errors.push(RowError { line, reason });
                continue;
            }
        };
        let checked = (|| {
            let count: u32 = row
                .count
                .parse()
                .ok()
                .filter(|c| (1..=10_000).contains(c))
                .ok_or_else(|| format!("count '{}' is not a number from 1 to 10000", row.count))?;
            let code = verify_authorization(&row.authorization_code, &verifier, now)
                .map_err(|e| format!("authorization_code: {e}"))?;
            if code.sudi.udi_pid != row.udi_pid
                || code.sudi.udi_serial_number != row.udi_serial_number
            {
                return Err(format!(
                    "the code is for {}, not for PID:{},SN:{}",
                    code.sudi, row.udi_pid, row.udi_serial_number
                ));
            }
            let Some(entitlement) = code
                .data
                .entitlements
                .iter()
                .find(|e| e.tag == row.entitlement_tag)
            else {
                return Err(format!(
                    "the code does not authorize {}",
                    row.entitlement_tag
                ));
            };
            if entitlement.count != count {
                return Err(format!(
                    "the code authorizes {} of {}, the row says {count}",
                    entitlement.count, row.entitlement_tag
                ));
            }
            Ok((count, code))
        })();
        match checked {
            Ok((count, code)) => {
                let key = UdiKey {
                    account_id: account.id,
                    pid: &row.udi_pid,
                    serial: &row.udi_serial_number,
                };
                let pi = product_instances::find_by_udi(&mut conn, key).await?;
                let lva = pi
                    .as_ref()
                    .and_then(|p| lvas.iter().find(|l| l.id == p.lva_id))
                    .unwrap_or(default_lva);
                rows.push(ImportRow {
                    line,
                    lva: (lva.id, lva.number),
                    pi: pi.map(|p| p.id),
                    code: Issued {
                        udi_pid: row.udi_pid,
                        udi_serial_number: row.udi_serial_number,
                        entitlement_tag: row.entitlement_tag,
                        file: row.authorization_code,
                        confirm_code: code.data.confirm_code,
                    },
                    count: i32::try_from(count).unwrap_or(i32::MAX),
                });
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if !errors.is_empty() {
        return Err(rows_refused(errors));
    }
    if rows.is_empty() {
        return Err(ApiError::invalid("the file has no rows below its header"));
    }
    // A refused row rolls the whole import back.
    let imported = conn
        .transaction::<_, ImportFailure, _>(async |conn| {
            authorizations::import(conn, account.id, &rows, now)
                .await?
                .map_err(ImportFailure::Rows)
        })
        .await;
    let imported = match imported {
        Ok(imported) => imported,
        Err(ImportFailure::Rows(errors)) => return Err(rows_refused(errors)),
        Err(ImportFailure::Db(e)) => return Err(e.into()),
    };
    let already = rows.len() - imported;
    audit(
        &mut conn,
        &principal,
        account.id,
        "authorization.import",
        json!({ "rows": rows.len(), "imported": imported, "already_imported": already }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "imported": imported, "already_imported": already })))
}

enum ImportFailure {
    Rows(Vec<RowError>),
    Db(outpost_db::DbError),
}

impl From<outpost_db::DbError> for ImportFailure {
    fn from(e: outpost_db::DbError) -> Self {
        ImportFailure::Db(e)
    }
}

impl From<outpost_db::QueryError> for ImportFailure {
    fn from(e: outpost_db::QueryError) -> Self {
        ImportFailure::Db(e.into())
    }
}
