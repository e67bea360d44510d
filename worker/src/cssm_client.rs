//! The HTTPS client for CSSM's API (`docs/protocol.md` section 5). Certificates are always
//! verified: against the system's roots plus `cssm.ca_file`.

use std::time::Duration;

use outpost_core::cssm::{
    API_BASE, AccountsSearchResponse, AuthRequest, AuthRequestResponse, ErrorResponse,
    HEADER_REQUESTING_SYSTEM, HEADER_SMART_ACCOUNT, HEADER_VIRTUAL_ACCOUNT, LicenseEntry, PollData,
    PollRequest, PollResponse, RegistrationRequest, RegistrationResponse, ReportUsageResponse,
    TOKEN_PATH, TokenResponse,
};
use outpost_core::settings::CssmSettings;
use serde::de::DeserializeOwned;

/// A failed CSSM call.
#[derive(Debug, thiserror::Error)]
pub enum CssmError {
    /// The client could not be built (bad CA file).
    #[error("CSSM client configuration: {0}")]
    Config(String),
    /// No answer: connection refused, TLS failure, timeout.
    #[error("CSSM unreachable at {url}: {message}")]
    Transport {
        /// The URL called.
        url: String,
        /// What happened.
        message: String,
    },
    /// CSSM answered with an error status.
    #[error("CSSM answered {status} to {url}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// CSSM's message.
        message: String,
    },
    /// CSSM answered something unreadable.
    #[error("CSSM answer from {url} is not understood: {message}")]
    Decode {
        /// The URL called.
        url: String,
        /// The parser's complaint.
        message: String,
    },
}

impl CssmError {
    /// Worth retrying later (network trouble, CSSM overloaded); 4xx answers are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            CssmError::Transport { .. } => true,
            CssmError::Status { status, .. } => *status >= 500 || *status == 429,
            CssmError::Config(_) | CssmError::Decode { .. } => false,
        }
    }
}

/// The (SA id, VA id, requesting system) headers of a device-scoped call.
#[derive(Debug, Clone)]
pub struct AccountScope {
    /// `X-CSW-SMART-ACCOUNT-ID`.
    pub smart_account_id: String,
    /// `X-CSW-VIRTUAL-ACCOUNT-ID`.
    pub virtual_account_id: String,
    /// `X-CSW-REQUESTING-SYSTEM` (a JSON `sudi`).
    pub requesting_system: String,
}

/// The CSSM client of a process.
#[derive(Debug, Clone)]
pub struct CssmClient {
    http: reqwest::Client,
    api_url: String,
    token_url: String,
}

impl CssmClient {
    /// Builds the client from the settings; the CA file is read now.
    pub fn new(settings: &CssmSettings) -> Result<Self, CssmError> {
        let mut extra_roots = Vec::new();
        if !settings.ca_file.is_empty() {
            let pem = std::fs::read_to_string(&settings.ca_file).map_err(|e| {
                CssmError::Config(format!("cssm.ca_file {}: {e}", settings.ca_file))
            })?;
            extra_roots.push(pem);
        }
        let tls = outpost_core::tls::client_config(&extra_roots, true)
            .map_err(|e| CssmError::Config(format!("cssm.ca_file: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.request_timeout_secs.min(10)))
            .user_agent(concat!("Outpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CssmError::Config(e.to_string()))?;
        Ok(Self {
            http,
            api_url: format!("{}{API_BASE}", settings.api_url.trim_end_matches('/')),
            token_url: format!("{}{TOKEN_PATH}", settings.token_url.trim_end_matches('/')),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: String,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CssmError> {
        let response = request.send().await.map_err(|e| CssmError::Transport {
            url: url.clone(),
            message: describe(&e),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| CssmError::Transport {
            url: url.clone(),
            message: describe(&e),
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(CssmError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| CssmError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// Registers an on-prem instance [ours].
    pub async fn register(
        &self,
        request: &RegistrationRequest,
        registration_token: Option<&str>,
    ) -> Result<RegistrationResponse, CssmError> {
        let url = format!("{}/v1/onprem/registrations", self.api_url);
        let mut builder = self.http.post(&url).json(request);
        if let Some(token) = registration_token {
            builder = builder.bearer_auth(token);
        }
        self.send(url, builder).await
    }

    /// An access token for the client credentials of a registration.
    pub async fn token(&self, client_id: &str, client_secret: &str) -> Result<String, CssmError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        let response: TokenResponse = self
            .send(
                self.token_url.clone(),
                self.http.post(&self.token_url).form(&form),
            )
            .await?;
        Ok(response.access_token)
    }

    /// The Smart Accounts (and their Virtual Accounts) the token can see.
    pub async fn accounts(&self, token: &str) -> Result<AccountsSearchResponse, CssmError> {
        let url = format!("{}/v2/accounts/search", self.api_url);
        let builder = self.http.get(&url).bearer_auth(token);
        self.send(url, builder).await
    }

    /// The licenses of a registration's Virtual Account [ours].
    pub async fn licenses(
        &self,
        token: &str,
        registration_id: &str,
    ) -> Result<Vec<LicenseEntry>, CssmError> {
        let url = format!(
            "{}/v1/onprem/registrations/{registration_id}/licenses",
            self.api_url
        );
        let builder = self.http.get(&url).bearer_auth(token);
        self.send(url, builder).await
    }

    fn scoped(
        &self,
        builder: reqwest::RequestBuilder,
        token: &str,
        scope: &AccountScope,
    ) -> reqwest::RequestBuilder {
        builder
            .bearer_auth(token)
            .header(HEADER_SMART_ACCOUNT, &scope.smart_account_id)
            .header(HEADER_VIRTUAL_ACCOUNT, &scope.virtual_account_id)
            .header(HEADER_REQUESTING_SYSTEM, &scope.requesting_system)
    }

    /// Uploads one batch; `body` is the serialised `ReportUsageRequest` (sent as is, so its
    /// size and hash in the ledger are exactly what went out).
    pub async fn report_usage(
        &self,
        token: &str,
        scope: &AccountScope,
        body: Vec<u8>,
    ) -> Result<ReportUsageResponse, CssmError> {
        let url = format!("{}/v2/devices/reportusage", self.api_url);
        let builder = self
            .scoped(self.http.post(&url), token, scope)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(url, builder).await
    }

    /// Asks for authorization codes, or returns them (`devices/authrequest`).
    pub async fn auth_request(
        &self,
        token: &str,
        scope: &AccountScope,
        request: &AuthRequest,
    ) -> Result<AuthRequestResponse, CssmError> {
        let url = format!("{}/v2/devices/authrequest", self.api_url);
        let builder = self
            .scoped(self.http.post(&url), token, scope)
            .json(request);
        self.send(url, builder).await
    }

    /// Polls for the ACKs of an upload (action `acknowledgements`) or for authorization codes
    /// (action `authorizations`).
    pub async fn poll_acks(
        &self,
        token: &str,
        scope: &AccountScope,
        data: PollData,
    ) -> Result<PollResponse, CssmError> {
        let url = format!("{}/v2/accounts/poll", self.api_url);
        let builder = self
            .scoped(self.http.post(&url), token, scope)
            .json(&PollRequest { data });
        self.send(url, builder).await
    }
}

/// The text of a signed file CSSM sends base64-encoded (ACK, SLAC); `None` unless it is base64
/// of UTF-8 text.
pub(crate) fn decode_file(smart_license: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(smart_license)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// reqwest's `Display` hides the cause (e.g. the certificate error); include the chain.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        text.push_str(" (timed out; see cssm.request_timeout_secs)");
    }
    text
}
