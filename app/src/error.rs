//! The one error of every use case: refused (a rule said no, with a stable code and a message
//! for people), not found, the database, or an internal fault. Nothing was changed in any case.
//! The front doors map it once each: `api` to an HTTP status and the admin error envelope, and
//! to the device protocol's `message_code`; the CLI prints the message.

use outpost_db::{DbError, QueryError};

/// Why a refusal happened: a stable, snake_case code (the admin API's `error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The input cannot be read (bad JSON or XML, a missing field).
    Malformed,
    /// The input is readable but a value is not acceptable.
    Invalid,
    /// Rows of an imported file are refused (`details.rows` names each).
    InvalidRows,
    /// An uploaded file was refused (signature, format, wrong account).
    FileRejected,
    /// An upload is larger than its limit.
    TooLarge,
    /// The state of something does not allow the request (generic).
    Conflict,
    /// Another local account bears the name, or bore it before a rename.
    NameTaken,
    /// The account's lifecycle state does not allow the request.
    InvalidState,
    /// The account is registered with CSSM already.
    AlreadyRegistered,
    /// Licensing functions need an active account registered with CSSM.
    NotRegistered,
    /// The account still holds what the request would remove.
    NotEmpty,
    /// Local virtual account 1 cannot be removed.
    DefaultVirtualAccount,
    /// Reports of the product instances are not acknowledged by CSSM yet.
    UnacknowledgedReports,
    /// Outpost lacks a setting the request needs (e.g. the CSSM signing certificate).
    NotConfigured,
    /// No local virtual account has the tenant id a device used.
    UnknownTenant,
    /// The tenant is deactivated or not registered yet.
    TenantInactive,
    /// Device validation is on and the device is not in the inventory.
    DeviceNotAllowed,
    /// A device polled with a poll id it was never given.
    UnknownPollId,
    /// No authorization code of the device matches.
    UnknownAuthorization,
    /// The license pool cannot cover an authorization request.
    InsufficientLicenses,
    /// An earlier authorization request for the same device and entitlement still waits.
    RequestPending,
    /// The entitlement needs no authorization code, or the account holds none of it.
    NotAuthorizable,
    /// CSSM refused to issue authorization codes.
    AuthorizationFailed,
}

impl Code {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Malformed => "bad_request",
            Code::Invalid => "invalid_value",
            Code::InvalidRows => "invalid_rows",
            Code::FileRejected => "file_rejected",
            Code::TooLarge => "too_large",
            Code::Conflict => "conflict",
            Code::NameTaken => "name_taken",
            Code::InvalidState => "invalid_state",
            Code::AlreadyRegistered => "already_registered",
            Code::NotRegistered => "account_not_registered",
            Code::NotEmpty => "not_empty",
            Code::DefaultVirtualAccount => "default_virtual_account",
            Code::UnacknowledgedReports => "unacknowledged_reports",
            Code::NotConfigured => "not_configured",
            Code::UnknownTenant => "unknown_tenant",
            Code::TenantInactive => "tenant_inactive",
            Code::DeviceNotAllowed => "device_not_allowed",
            Code::UnknownPollId => "unknown_poll_id",
            Code::UnknownAuthorization => "unknown_authorization",
            Code::InsufficientLicenses => "insufficient_licenses",
            Code::RequestPending => "request_pending",
            Code::NotAuthorizable => "not_authorizable",
            Code::AuthorizationFailed => "authorization_failed",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A use case that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A rule refused the request.
    #[error("{message}")]
    Refused {
        /// What kind of refusal.
        code: Code,
        /// For people: names the value or state at fault.
        message: String,
        /// Machine-readable detail (e.g. the refused rows of an import).
        details: Option<serde_json::Value>,
    },
    /// The request names something that does not exist, or is another tenant's.
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A fault of Outpost's own (a file it could not write, a key it could not use); the
    /// detail is for the log, not for the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every use case's result.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// A refusal with a code and a message.
    pub fn refused(code: Code, message: impl Into<String>) -> Self {
        AppError::Refused {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A value is not acceptable (`invalid_value`).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::refused(Code::Invalid, message)
    }

    /// The input cannot be read (`bad_request`).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::refused(Code::Malformed, message)
    }

    /// `what` does not exist (or is another tenant's).
    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound(what.into())
    }

    /// Outpost's own fault; the detail goes to the log.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        AppError::Internal(detail.to_string())
    }

    /// The refusal's code, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            AppError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Turns a database "no row" into a not-found naming `what`.
    pub fn or_not_found(e: DbError, what: impl Into<String>) -> Self {
        if e.is_not_found() {
            AppError::NotFound(what.into())
        } else {
            AppError::Db(e)
        }
    }
}

/// Lets a use case run in a database transaction (`AsyncConnection::transaction`): a refusal
/// found inside it rolls everything back.
impl From<QueryError> for AppError {
    fn from(e: QueryError) -> Self {
        AppError::Db(e.into())
    }
}

/// Maps a database "no row" into a not-found naming the thing looked for.
pub trait OrNotFound<T> {
    /// `Err(NotFound(what))` when the row is missing; other errors unchanged.
    fn or_not_found(self, what: &str) -> AppResult<T>;
}

impl<T> OrNotFound<T> for Result<T, DbError> {
    fn or_not_found(self, what: &str) -> AppResult<T> {
        self.map_err(|e| AppError::or_not_found(e, what))
    }
}
