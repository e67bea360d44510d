//! The device listener: `POST /cslu/v1/pi/{tenant}` and `POST /cslu/v1/pi` (`docs/protocol.md`
//! section 3). Every answer, errors included, is the protocol's JSON with the request's nonce.

mod post_cslu;
mod pull_drop;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use outpost_app::{AppError, Code};
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

/// The device protocol's code for each refusal of a use case. Refusals of the admin side
/// (names, lifecycle, files) cannot come out of a device exchange; should one, it is a fault
/// of Outpost's and answered as such.
pub(crate) fn message_code_of(code: Code) -> MessageCode {
    match code {
        Code::Malformed | Code::Invalid | Code::InvalidRows | Code::FileRejected => {
            MessageCode::MalformedRequest
        }
        Code::TooLarge => MessageCode::BodyTooLarge,
        Code::UnknownTenant => MessageCode::UnknownTenant,
        Code::TenantInactive | Code::NotRegistered => MessageCode::TenantInactive,
        Code::DeviceNotAllowed => MessageCode::DeviceNotAllowed,
        Code::UnknownPollId => MessageCode::UnknownPollId,
        Code::UnknownAuthorization => MessageCode::UnknownAuthorization,
        Code::InsufficientLicenses => MessageCode::InsufficientLicenses,
        Code::RequestPending => MessageCode::RequestPending,
        Code::NotAuthorizable => MessageCode::NotAuthorizable,
        Code::AuthorizationFailed => MessageCode::AuthorizationFailed,
        Code::Conflict
        | Code::NameTaken
        | Code::InvalidState
        | Code::AlreadyRegistered
        | Code::NotEmpty
        | Code::DefaultVirtualAccount
        | Code::UnacknowledgedReports
        | Code::NotConfigured => MessageCode::InternalError,
    }
}

/// A `FAILED` answer with the status its code goes with.
pub(crate) fn failed(
    nonce: Option<String>,
    code: MessageCode,
    message: impl Into<String>,
) -> HttpResponse {
    respond(
        status_for(code),
        DeviceResponse::failed(nonce, code, message),
    )
}

/// "Busy, retry later": `OK_TRY_AGAIN` with `Retry-After` (429 when Outpost sheds load, 503
/// when the database is unavailable).
pub(crate) fn busy(status: StatusCode, nonce: Option<String>, retry_after: u64) -> HttpResponse {
    respond(
        status,
        DeviceResponse::try_again(nonce, retry_after, "Outpost is busy; retry later"),
    )
}

/// The one mapping of a use case's error to a device's answer: a refusal with its protocol
/// code, a database that is unavailable (failover, overload) as `OK_TRY_AGAIN`, anything else
/// a 500 whose detail goes to the log only.
pub(crate) fn failure(nonce: Option<String>, retry_after: u64, error: AppError) -> HttpResponse {
    match error {
        AppError::Refused { code, message, .. } => failed(nonce, message_code_of(code), message),
        AppError::Db(e) if e.is_transient() => {
            tracing::warn!(error = %e, "database unavailable during a device exchange");
            busy(StatusCode::SERVICE_UNAVAILABLE, nonce, retry_after)
        }
        other => {
            tracing::error!(error = %other, "device exchange failed");
            failed(
                nonce,
                MessageCode::InternalError,
                "an internal error occurred; nothing was stored",
            )
        }
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
