//! Talking to a device Outpost pulls from, over HTTPS with HTTP Basic auth: the IOS-XE native
//! REST API (`docs/protocol.md` section 4.1: `close-reports` then `all-reports` to collect the
//! signed RUM reports, `import` to install an ACK) or RESTCONF (section 4.2: the `cisco-smart-license`
//! RPCs, with the file moving through a one-time Outpost URL).
//!
//! Devices carry self-signed certificates, so a CA cannot vouch for them: the certificate's
//! SHA-256 is recorded on first contact and must match on every later one (trust on first use,
//! as SSH does with host keys). The check runs in the TLS handshake, before the credentials are
//! sent. A device an admin marked `plain_http` is reached over HTTP, with nothing to pin.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outpost_core::device_rpc::{self, Rpc};
use outpost_core::rum::RumEnvelope;
use outpost_core::secrets::Credentials;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

/// Largest answer Outpost reads from a device: `all-reports` of a device that has not been
/// pulled for a long time is the largest, at a few KiB per report.
const MAX_ANSWER: usize = 32 << 20;

/// Why a device could not be pulled from; the text goes on its "Pull failed" alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// No connection (refused, no route, name unknown, timed out).
    #[error("unreachable ({0})")]
    Unreachable(String),
    /// The device refused the credentials.
    #[error("authentication failed ({0})")]
    AuthFailed(String),
    /// The device answered something Outpost cannot use.
    #[error("bad response ({0})")]
    BadResponse(String),
    /// The device presented another certificate than on first contact.
    #[error("certificate changed: {0}")]
    CertificateChanged(String),
    /// The device presented another SSH host key than on first contact.
    #[error("host key changed: {0}")]
    HostKeyChanged(String),
    /// Outpost lacks what it needs to pull (host, credentials).
    #[error("not configured ({0})")]
    NotConfigured(String),
}

/// Accepts the certificate seen on first contact, and only that one afterwards.
#[derive(Debug)]
struct Pinned {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = outpost_core::crypto::sha256_hex(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint.clone());
        match &self.expected {
            Some(expected) if *expected != fingerprint => Err(rustls::Error::General(format!(
                "the device presented certificate {fingerprint}, not {expected} seen on first contact"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A session with one device's REST or RESTCONF server.
pub struct RestDevice {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    seen: Arc<Mutex<Option<String>>>,
    timeout: Duration,
}

impl std::fmt::Debug for RestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestDevice")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AllReports {
    #[serde(default)]
    usage: Vec<RumEnvelope>,
}

/// The rustls error behind `cause`, which hyper wraps in `io::Error`s (whose `source` skips
/// what they wrap).
fn tls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = cause;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// What went wrong, said for a network admin: the innermost cause of a connection failure
/// ("Connection refused"), not reqwest's chain.
fn describe(error: &reqwest::Error, timeout: Duration) -> PullError {
    let chain = crate::cssm_client::describe(error);
    if chain.contains("first contact") {
        let start = chain.find("the device presented").unwrap_or(0);
        return PullError::CertificateChanged(chain[start..].to_owned());
    }
    if error.is_timeout() {
        return PullError::Unreachable(format!(
            "no complete answer within {} s",
            timeout.as_secs()
        ));
    }
    let mut innermost = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // The device answered, but not with TLS Outpost accepts (an HTTP-only server, say):
        // that is no reachability problem.
        if let Some(tls) = tls_error(cause) {
            return PullError::BadResponse(format!("TLS handshake failed: {tls}"));
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    if error.is_connect() {
        PullError::Unreachable(innermost)
    } else {
        PullError::BadResponse(chain)
    }
}

impl RestDevice {
    /// A session with the device at `host:port` (443 when `None`, or 80 over `plain_http`),
    /// trusting only the certificate `pinned` if one was recorded.
    pub fn new(
        host: &str,
        port: Option<i32>,
        plain_http: bool,
        credentials: Credentials,
        pinned: Option<String>,
        timeout: Duration,
    ) -> Result<Self, PullError> {
        let seen = Arc::new(Mutex::new(None));
        let provider = outpost_core::tls::provider();
        let verifier = Pinned {
            expected: pinned,
            seen: seen.clone(),
            provider: provider.clone(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PullError::NotConfigured(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Outpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PullError::NotConfigured(e.to_string()))?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Self {
            http,
            base: if plain_http {
                format!("http://{host}:{}", port.unwrap_or(80))
            } else {
                format!("https://{host}:{}", port.unwrap_or(443))
            },
            credentials,
            seen,
            timeout,
        })
    }

    /// The SHA-256 of the certificate the device presented, once connected.
    pub fn fingerprint(&self) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<String, PullError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
            .header("Accept", "application/yang-data+json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/yang-data+json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(PullError::AuthFailed(format!("HTTP {status} from {path}")));
        }
        let body = self.read_capped(response, path).await?;
        if !status.is_success() {
            // An error page in some other charset still says what went wrong.
            let text = String::from_utf8_lossy(&body);
            let excerpt: String = text.chars().take(200).collect();
            return Err(PullError::BadResponse(format!(
                "HTTP {status} from {path}: {excerpt}"
            )));
        }
        String::from_utf8(body)
            .map_err(|_| PullError::BadResponse(format!("{path} answered text that is not UTF-8")))
    }

    /// Reads an answer of at most [`MAX_ANSWER`] bytes: a device (or anyone on the path of a
    /// plain HTTP one) sending without end must not fill Outpost's memory.
    async fn read_capped(
        &self,
        mut response: reqwest::Response,
        path: &str,
    ) -> Result<Vec<u8>, PullError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| describe(&e, self.timeout))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(PullError::BadResponse(format!(
                    "{path} answered more than {} MiB",
                    MAX_ANSWER >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Installs a file (an ACK) on the device.
    pub async fn import(&self, file: &str) -> Result<(), PullError> {
        self.call(
            reqwest::Method::POST,
            "/smartlic-service/import",
            Some(file.to_owned()),
        )
        .await
        .map(|_| ())
    }

    /// Closes the open reports and collects every signed report the device holds.
    pub async fn collect(&self) -> Result<Vec<RumEnvelope>, PullError> {
        self.call(
            reqwest::Method::POST,
            "/smartlic-service/close-reports",
            Some("{}".into()),
        )
        .await?;
        let text = self
            .call(reqwest::Method::GET, "/smartlic-service/all-reports", None)
            .await?;
        // Bounded by what it builds, not only by its size: a wide document is refused first.
        outpost_core::json::check(text.as_bytes())
            .map_err(|e| PullError::BadResponse(format!("all-reports: {e}")))?;
        let all: AllReports = serde_json::from_str(&text).map_err(|e| {
            PullError::BadResponse(format!("all-reports is not the usage list: {e}"))
        })?;
        if all.usage.len() > outpost_core::device::MAX_REPORTS {
            return Err(PullError::BadResponse(format!(
                "all-reports holds {} reports, more than {} at once",
                all.usage.len(),
                outpost_core::device::MAX_REPORTS
            )));
        }
        Ok(all.usage)
    }

    /// Calls a `cisco-smart-license` RPC over RESTCONF; the device's `return-code` must say
    /// success.
    pub async fn rpc(&self, rpc: &Rpc) -> Result<(), PullError> {
        let body = rpc
            .restconf_body()
            .map_err(|e| PullError::NotConfigured(e.to_string()))?;
        let text = self
            .call(
                reqwest::Method::POST,
                &rpc.restconf_path(),
                Some(body.to_string()),
            )
            .await?;
        if text.trim().is_empty() {
            return Ok(());
        }
        outpost_core::json::check(text.as_bytes())
            .map_err(|e| PullError::BadResponse(format!("{} answered: {e}", rpc.name())))?;
        let answer: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| PullError::BadResponse(format!("{} answered no JSON: {e}", rpc.name())))?;
        match answer[format!("{}:output", device_rpc::MODULE)]["return-code"].as_str() {
            None | Some("success") => Ok(()),
            Some(code) => Err(PullError::BadResponse(format!(
                "{} answered return-code {code}",
                rpc.name()
            ))),
        }
    }
}
