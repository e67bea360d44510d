//! The file operations of air-gapped sites (`outpost_app::offline` and `registration`): usage
//! export download, ACK bundle upload, offline registration files, device RUM and ACK files.

use std::io::Seek;

use actix_web::http::StatusCode;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use outpost_app::offline::import::ImportSummary;
use outpost_app::offline::{self, device_files, export, import};
use outpost_app::registration;
use outpost_core::device::DeviceResponse;
use outpost_db::{AccountId, ProductInstanceId};
use serde::Deserialize;

use super::accounts::AccountView;
use super::device_answer::DeviceAnswer;
use super::operable_account;
use crate::admin::auth::Principal;
use crate::admin::uploads::{spool_file, spool_text};
use crate::error::ApiError;
use crate::state::AppState;

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    }
}

pub(super) fn verifier(
    state: &AppState,
) -> Result<&outpost_core::crypto::SignatureVerifier, ApiError> {
    state.cssm_verifier.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            "cssm.signing_certificate_file is not set: Outpost cannot verify files signed by CSSM",
        )
    })
}

/// `?days=N`: every report of the last N days instead of the unsent ones.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    days: Option<u32>,
}

/// `GET /accounts/{id}/usage-export`: "Export Usage to Cisco", a `UD_SA_<ts>.tar.gz` download.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/usage-export", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id"), ("days" = Option<u32>, Query, description = "Every report of the last N days instead of the unsent ones")), responses((status = 200, content_type = "application/gzip", body = Vec<u8>), (status = 404), (status = 409)))]
pub async fn get_usage_export(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let now = state.clock.now();
    let selection = export::selection(query.days, now)?;
    let file = tempfile::tempfile().map_err(ApiError::internal)?;
    let actor = principal.actor();
    let request = export::ExportRequest {
        account: account.id,
        selection,
        now,
        actor: &actor,
    };
    // The bundle is downloaded from a temporary file. Its reports count as exported once the
    // download starts; a lost download is exported again with `?days=N`.
    let mut conn = state.pool.get().await?;
    let (mut file, summary) =
        export::export_usage(&mut conn, &request, file, Ok, |_, _| {}).await?;
    drop(conn);
    file.rewind().map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok(HttpResponse::Ok()
        .content_type("application/gzip")
        .insert_header(attachment(&summary.file_name))
        .insert_header(("X-Outpost-Reports", summary.reports.to_string()))
        .insert_header(("X-Outpost-Device-Files", summary.device_files.to_string()))
        .insert_header(("X-Outpost-Sha256", summary.sha256.clone()))
        .streaming(stream))
}

/// `?dry_run=true&file_name=...`.
#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
    file_name: Option<String>,
}

/// `POST /accounts/{id}/ack-import`: "Import From Cisco" (body: the ACK bundle).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/ack-import", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body(content = Vec<u8>, content_type = "application/gzip"), responses((status = 200, body = ImportSummary), (status = 404), (status = 422)))]
pub async fn create_ack_import(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let verifier = verifier(&state)?;
    let file = spool_file(payload, &state).await?;
    let name = query
        .file_name
        .clone()
        .unwrap_or_else(|| "upload.tar.gz".into());
    let actor = principal.actor();
    let file_name = offline::file_safe(&name);
    let request = import::ImportRequest {
        account: account.id,
        file_name: &file_name,
        dry_run: query.dry_run,
        now: state.clock.now(),
        actor: &actor,
        limits: state.settings.admin.bundle_limits(),
    };
    let mut conn = state.pool.get().await?;
    let summary: ImportSummary =
        import::import_ack_bundle(&mut conn, verifier, &request, file, |_, _| {}).await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// `GET /accounts/{id}/registration-request`: the signed request file to carry to CSSM.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/registration-request", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id")), responses((status = 200, content_type = "text/plain", body = String), (status = 404), (status = 409)))]
pub async fn get_registration_request(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let (name, text) = registration::request_file(
        &mut conn,
        &state.credentials,
        account.id,
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(attachment(&name))
        .body(text))
}

/// `POST /accounts/{id}/registration-response`: registers the account from CSSM's response file.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/registration-response", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body(content = String, content_type = "text/plain"), responses((status = 200, body = AccountView), (status = 404), (status = 422)))]
pub async fn create_registration_response(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let verifier = verifier(&state)?;
    let text = spool_text(payload, &state).await?;
    let mut conn = state.pool.get().await?;
    let account = registration::response_file(
        &mut conn,
        &state.credentials,
        verifier,
        account.id,
        &text,
        &principal.actor(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&account)))
}

/// `?lva=N` (default 1).
#[derive(Debug, Deserialize)]
pub struct UsageFileQuery {
    lva: Option<i32>,
}

/// `POST /accounts/{id}/usage-files`: a RUM file written by `license smart save usage`.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/usage-files", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id")), request_body(content = String, content_type = "text/plain"), responses((status = 200, description = "The answer a device would get for the file", body = DeviceAnswer), (status = 404), (status = 422)))]
pub async fn create_usage_file(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<UsageFileQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let text = spool_text(payload, &state).await?;
    let mut conn = state.pool.get().await?;
    let response: DeviceResponse = device_files::upload_usage_file(
        &mut conn,
        account.id,
        query.lva.unwrap_or(1),
        &text,
        state.clock.now(),
        &principal.actor(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(response))
}

/// `GET /accounts/{id}/product-instances/{pi}/ack-file`: the device's latest ACK, for
/// `license smart import`.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/{pi}/ack-file", tag = "air-gapped", params(("id" = uuid::Uuid, Path, description = "Account id"), ("pi" = uuid::Uuid, Path, description = "Product instance id")), responses((status = 200, content_type = "text/plain", body = String), (status = 404), (status = 409)))]
pub async fn get_ack_file(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, ProductInstanceId)>,
) -> Result<HttpResponse, ApiError> {
    let (account, pi) = path.into_inner();
    let account = operable_account(&state, &principal, account).await?;
    let mut conn = state.pool.get().await?;
    let (name, text) = device_files::ack_file(&mut conn, account.id, pi, state.clock.now()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(attachment(&name))
        .body(text))
}
