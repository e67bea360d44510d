//! `POST /cslu/v1/pi/{tenant}`: reads the body within the size and time limits, then hands it
//! to the device exchange (`outpost_app::device`), which parses it, finds the tenant and runs
//! the message.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use outpost_app::device::{self, Origin};
use outpost_core::device::MessageCode;

use super::{busy, failed, failure, respond, status_for};
use crate::state::AppState;

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
        return busy(StatusCode::TOO_MANY_REQUESTS, None, retry_after);
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
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (request, source) = match device::parse(content_type, &body) {
        Ok(parsed) => parsed,
        Err(e) => return failure(None, retry_after, e),
    };
    let nonce = request.data.nonce.clone();
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no database connection for a device request");
            return busy(StatusCode::SERVICE_UNAVAILABLE, nonce, retry_after);
        }
    };
    let default_tenant = &state.settings.device.default_tenant;
    let tenant = match device::find_tenant(&mut conn, tenant.as_deref(), default_tenant).await {
        Ok(tenant) => tenant,
        Err(e) => return failure(nonce, retry_after, e),
    };
    let source_address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let origin = Origin {
        tenant: &tenant,
        source,
        source_address: &source_address,
    };
    match device::run(&mut conn, origin, request, state.clock.now()).await {
        Ok(response) => respond(status_for(response.message_code), response),
        Err(e) => failure(nonce, retry_after, e),
    }
}
