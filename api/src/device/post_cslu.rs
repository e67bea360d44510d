//! `POST /cslu/v1/pi/{tenant}`: reads the body within the size limit, parses it (JSON, or an
//! offline RUM file as XML), finds the tenant and hands the exchange to [`super::exchange`].

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use outpost_core::device::{DeviceRequest, DeviceResponse, MessageCode};
use outpost_core::offline_file;
use outpost_db::accounts;
use outpost_db::enums::{AccountStatus, ReportSource};

use super::exchange::{self, ExchangeError};
use super::{respond, status_for};
use crate::state::AppState;

/// The body is one of the two forms the protocol accepts.
enum Body {
    Json(Vec<u8>),
    Xml(Vec<u8>),
}

/// Reads the body up to the limit; `None` when it is larger.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Option<Vec<u8>>, actix_web::error::PayloadError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Picks the parser: by Content-Type when it says JSON or XML, else by the first character
/// (devices and proxies are not always careful with the header).
fn classify(req: &HttpRequest, body: Vec<u8>) -> Body {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("xml") {
        return Body::Xml(body);
    }
    if content_type.contains("json") {
        return Body::Json(body);
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Body::Xml(body),
        _ => Body::Json(body),
    }
}

fn parse(body: Body) -> Result<(DeviceRequest, ReportSource), String> {
    match body {
        Body::Json(bytes) => DeviceRequest::from_json(&bytes)
            .map(|r| (r, ReportSource::Push))
            .map_err(|e| e.0),
        Body::Xml(bytes) => {
            let text =
                std::str::from_utf8(&bytes).map_err(|_| "the XML body is not UTF-8".to_owned())?;
            let file =
                offline_file::parse(text).map_err(|e| format!("the RUM file is not valid: {e}"))?;
            DeviceRequest::from_offline_file(file)
                .map(|r| (r, ReportSource::PushXml))
                .map_err(|e| e.0)
        }
    }
}

fn failed(nonce: Option<String>, code: MessageCode, message: impl Into<String>) -> HttpResponse {
    respond(
        status_for(code),
        DeviceResponse::failed(nonce, code, message),
    )
}

/// `POST /cslu/v1/pi/{tenant}`.
pub async fn post_cslu(
    req: HttpRequest,
    tenant: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, Some(tenant.into_inner()), payload, state).await
}

/// `POST /cslu/v1/pi`: the configured default tenant (CSLU-compatible single-tenant mode).
pub async fn post_cslu_default(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, None, payload, state).await
}

async fn handle(
    req: HttpRequest,
    tenant: Option<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let retry_after = state.settings.device.retry_after_secs;
    // Bounded concurrency: under a retry storm devices are told to come back, memory stays flat.
    let Ok(_slot) = state.device_slots.clone().try_acquire_owned() else {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            DeviceResponse::try_again(None, retry_after, "Outpost is busy; retry later"),
        );
    };

    let limit = state.settings.device.max_body_bytes;
    let patience = Duration::from_secs(state.settings.device.body_timeout_secs);
    let body = match tokio::time::timeout(patience, read_body(payload, limit)).await {
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => {
            let message = format!("the body is larger than {limit} bytes");
            return failed(None, MessageCode::BodyTooLarge, message);
        }
        Ok(Err(e)) => {
            let message = format!("the body could not be read: {e}");
            return failed(None, MessageCode::MalformedRequest, message);
        }
        Err(_) => {
            let message = format!("the body did not arrive within {} s", patience.as_secs());
            return failed(None, MessageCode::RequestTimeout, message);
        }
    };
    let (request, source) = match parse(classify(&req, body)) {
        Ok(parsed) => parsed,
        Err(message) => return failed(None, MessageCode::MalformedRequest, message),
    };
    let nonce = request.data.nonce.clone();

    let tenant_id = match tenant {
        Some(id) => id,
        None if !state.settings.device.default_tenant.is_empty() => {
            state.settings.device.default_tenant.clone()
        }
        None => {
            return failed(
                nonce,
                MessageCode::UnknownTenant,
                "no tenant in the URL and no default tenant is configured",
            );
        }
    };
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no database connection for a device request");
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                DeviceResponse::try_again(nonce, retry_after, "Outpost is busy; retry later"),
            );
        }
    };
    let tenant = match accounts::find_tenant(&mut conn, &tenant_id).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            return failed(
                nonce,
                MessageCode::UnknownTenant,
                format!("unknown tenant '{tenant_id}'"),
            );
        }
        Err(e) => return exchange_failure(nonce, retry_after, ExchangeError::Db(e)),
    };
    match tenant.account.status {
        AccountStatus::Active => {}
        AccountStatus::Inactive => {
            let reason = tenant
                .account
                .status_reason
                .as_deref()
                .unwrap_or("deactivated by an administrator");
            return failed(
                nonce,
                MessageCode::TenantInactive,
                format!(
                    "local account '{}' is inactive: {reason}",
                    tenant.account.name
                ),
            );
        }
        AccountStatus::Requested | AccountStatus::Approved => {
            return failed(
                nonce,
                MessageCode::TenantInactive,
                format!(
                    "local account '{}' is not registered with CSSM yet",
                    tenant.account.name
                ),
            );
        }
    }

    let source_address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let now = state.clock.now();
    match exchange::run(&mut conn, &tenant, request, source, &source_address, now).await {
        Ok(response) => respond(status_for(response.message_code), response),
        Err(e) => exchange_failure(nonce, retry_after, e),
    }
}

fn exchange_failure(nonce: Option<String>, retry_after: u64, error: ExchangeError) -> HttpResponse {
    match error {
        ExchangeError::Refused { code, message } => failed(nonce, code, message),
        ExchangeError::Db(e) if e.is_transient() => {
            tracing::warn!(error = %e, "database unavailable during a device exchange");
            respond(
                StatusCode::SERVICE_UNAVAILABLE,
                DeviceResponse::try_again(nonce, retry_after, "Outpost is busy; retry later"),
            )
        }
        ExchangeError::Db(e) => {
            tracing::error!(error = %e, "device exchange failed");
            failed(
                nonce,
                MessageCode::InternalError,
                "an internal error occurred; nothing was stored",
            )
        }
    }
}
