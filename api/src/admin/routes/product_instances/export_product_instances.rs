//! `GET .../product-instances/export.csv`: the inventory as CSV (the template's columns plus
//! last contact; never credentials), streamed page by page so memory stays flat at any size.

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use outpost_app::inventory::{CSV_COLUMNS, CSV_INFORMATIONAL};
use outpost_db::inventory::{self, Cursor, InventoryQuery, SortKey};
use outpost_db::{AccountId, DbPool};

use super::super::visible_account;
use super::attachment;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Exports the inventory as CSV (the template's columns plus last contact; never credentials),
/// streamed page by page so memory stays flat at any size.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/export.csv", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)))]
pub async fn export_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut header = CSV_COLUMNS.to_vec();
    header.extend_from_slice(CSV_INFORMATIONAL);
    let first = format!("{}\n", header.join(","));
    let pool = state.pool.clone();
    let stream = futures_util::stream::unfold(ExportState::Start(first), move |step| {
        export_step(pool.clone(), account.id, step)
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(attachment("product-instances.csv"))
        .streaming(stream.boxed_local()))
}

enum ExportState {
    Start(String),
    After(Option<Cursor>),
    Done,
}

async fn export_step(
    pool: DbPool,
    account: AccountId,
    step: ExportState,
) -> Option<(Result<web::Bytes, ApiError>, ExportState)> {
    let cursor = match step {
        ExportState::Done => return None,
        ExportState::Start(header) => {
            return Some((Ok(web::Bytes::from(header)), ExportState::After(None)));
        }
        ExportState::After(cursor) => cursor,
    };
    let query = InventoryQuery {
        cursor,
        limit: 2000,
        ..InventoryQuery::default()
    };
    let page = async {
        let mut conn = pool.get().await?;
        inventory::list(&mut conn, account, &query).await
    }
    .await;
    let page = match page {
        Ok(page) => page,
        // The header is sent: a failure can only end the stream early (the client sees a cut
        // download) and is logged.
        Err(e) => return Some((Err(ApiError::from(e)), ExportState::Done)),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in &page.items {
        let port = row.port.map(|p| p.to_string()).unwrap_or_default();
        let lva = row.lva_number.to_string();
        let contact = row
            .last_contact_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let record = [
            row.udi_pid.as_deref().unwrap_or_default(),
            row.udi_serial_number.as_deref().unwrap_or_default(),
            row.hostname.as_deref().unwrap_or_default(),
            row.host.as_deref().unwrap_or_default(),
            &port,
            row.connect_method.as_str(),
            "",
            "",
            &lva,
            row.smart_account.as_deref().unwrap_or_default(),
            row.virtual_account.as_deref().unwrap_or_default(),
            if row.behind_nat { "true" } else { "false" },
            if row.plain_http { "true" } else { "false" },
            &contact,
            row.software_version.as_deref().unwrap_or_default(),
        ];
        if let Err(e) = writer.write_record(record) {
            return Some((Err(ApiError::internal(e)), ExportState::Done));
        }
    }
    let bytes = match writer.into_inner() {
        Ok(bytes) => bytes,
        Err(e) => return Some((Err(ApiError::internal(e)), ExportState::Done)),
    };
    let next = match page.next_cursor.as_deref() {
        Some(text) => ExportState::After(Cursor::decode(text, SortKey::Udi)),
        None => ExportState::Done,
    };
    Some((Ok(web::Bytes::from(bytes)), next))
}
