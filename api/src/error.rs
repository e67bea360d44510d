//! The admin API's error envelope, `{"error": {"code": "...", "message": "..."}}`, and the one
//! place where lower-layer errors become HTTP statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use outpost_app::{AppError, Code};
use outpost_db::DbError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every refusal of the admin API: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The inside of the error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code (`not_found`, `invalid_value`, `name_taken`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Machine-readable particulars of some refusals (e.g. `rows` of a refused import); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// An admin API error with a stable snake_case code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    /// An error whose envelope carries machine-readable `details` (e.g. the bad rows).
    pub fn with_details(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            details: Some(details),
            ..Self::new(status, code, message)
        }
    }

    /// 429 with a `Retry-After` header.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// 409: the request is valid but the current state does not allow it.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed, but a value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
    }

    /// 404: absent, or another tenant's (callers cannot tell the two apart).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: authenticated, but the role does not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 with a generic body; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error in the admin API");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; see Outpost's log",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header(("Retry-After", secs.to_string()));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "5"));
        }
        response.json(ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_not_found() {
            ApiError::not_found("resource")
        } else if e.is_unique_violation() {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "a resource with the same key already exists",
            )
        } else if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; retry shortly",
            )
        } else {
            ApiError::internal(e)
        }
    }
}

/// The HTTP status of each refusal of a use case.
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::Malformed => StatusCode::BAD_REQUEST,
        Code::Invalid
        | Code::InvalidRows
        | Code::FileRejected
        | Code::NotAuthorizable
        | Code::AuthorizationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Conflict
        | Code::NameTaken
        | Code::InvalidState
        | Code::AlreadyRegistered
        | Code::NotRegistered
        | Code::NotEmpty
        | Code::DefaultVirtualAccount
        | Code::UnacknowledgedReports
        | Code::NotConfigured
        | Code::InsufficientLicenses
        | Code::RequestPending => StatusCode::CONFLICT,
        Code::UnknownTenant | Code::UnknownPollId | Code::UnknownAuthorization => {
            StatusCode::NOT_FOUND
        }
        Code::TenantInactive | Code::DeviceNotAllowed => StatusCode::FORBIDDEN,
    }
}

/// The one mapping of a use case's error to the admin API's answer.
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Refused {
                code,
                message,
                details,
            } => Self {
                status: status_of(code),
                code: code.as_str(),
                message,
                retry_after: None,
                details,
            },
            AppError::NotFound(what) => ApiError::not_found(&what),
            AppError::Db(e) => e.into(),
            AppError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

/// Routes actix's own extractor errors (bad JSON, bad path, oversize body) through the envelope.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(1024 * 1024)
        .error_handler(|err, _req| ApiError::bad_request(format!("request body: {err}")).into())
}

/// Path extractor errors as 404 (a malformed id names nothing).
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|_err, _req| ApiError::not_found("resource").into())
}

/// Query string errors as 400.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::bad_request(format!("query string: {err}")).into())
}
