//! The device listener: `POST /cslu/v1/pi/{tenant}` and `POST /cslu/v1/pi` (`PROTOCOL.md`
//! section 3). Every answer, errors included, is the protocol's JSON with the request's nonce.

mod authorization;
pub(crate) mod exchange;
mod post_cslu;
mod pull_drop;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use outpost_core::device::{DeviceResponse, MessageCode};
use outpost_core::tenant::PUSH_PATH;

/// Largest RUM file a pulled device may upload (a device's unreported reports).
const PULL_DROP_LIMIT: usize = 64 * 1024 * 1024;

/// Registers the device routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A tenant segment that is not valid UTF-8 after percent-decoding names no tenant.
    let path_errors = web::PathConfig::default().error_handler(|_, _| {
        actix_web::error::InternalError::from_response(
            "bad tenant",
            respond(
                StatusCode::NOT_FOUND,
                DeviceResponse::failed(
                    None,
                    MessageCode::UnknownTenant,
                    "the tenant id in the URL is not valid",
                ),
            ),
        )
        .into()
    });
    cfg.app_data(path_errors)
        .route(PUSH_PATH, web::post().to(post_cslu::post_cslu_default))
        .route(
            &format!("{PUSH_PATH}/{{tenant}}"),
            web::post().to(post_cslu::post_cslu),
        )
        .service(
            web::resource("/pull-drop/{token}/{name}")
                .app_data(web::PayloadConfig::new(PULL_DROP_LIMIT))
                .route(web::put().to(pull_drop::upload))
                .route(web::post().to(pull_drop::upload))
                .route(web::get().to(pull_drop::download)),
        )
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        DeviceResponse::failed(
            None,
            MessageCode::UnknownTenant,
            format!("no device endpoint here; devices post to {PUSH_PATH}/<tenant>"),
        ),
    )
}

/// The HTTP status each failure code is sent with.
pub(crate) fn status_for(code: MessageCode) -> StatusCode {
    match code {
        MessageCode::MalformedRequest => StatusCode::BAD_REQUEST,
        MessageCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        MessageCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        MessageCode::UnknownTenant
        | MessageCode::UnknownPollId
        | MessageCode::UnknownAuthorization => StatusCode::NOT_FOUND,
        MessageCode::InsufficientLicenses | MessageCode::RequestPending => StatusCode::CONFLICT,
        MessageCode::NotAuthorizable | MessageCode::AuthorizationFailed => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        MessageCode::TenantInactive | MessageCode::DeviceNotAllowed => StatusCode::FORBIDDEN,
        MessageCode::NotSupported => StatusCode::UNPROCESSABLE_ENTITY,
        MessageCode::TryAgain => StatusCode::SERVICE_UNAVAILABLE,
        MessageCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        MessageCode::HelloOk
        | MessageCode::UsageAccepted
        | MessageCode::NoReports
        | MessageCode::PollPending
        | MessageCode::PollComplete
        | MessageCode::TrustSynced
        | MessageCode::AuthorizationPending
        | MessageCode::AuthorizationIssued
        | MessageCode::AuthorizationConfirmed
        | MessageCode::AuthorizationReturned => StatusCode::OK,
    }
}

/// Sends a protocol answer; `OK_TRY_AGAIN` also carries `Retry-After`.
pub(crate) fn respond(status: StatusCode, body: DeviceResponse) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = body.retry_after {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    response.json(body)
}
