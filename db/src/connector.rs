//! How Outpost reaches PostgreSQL: `database.url` read once into a [`PgConnector`] that every
//! connection uses (the pool, the migrations, the worker's advisory-lock connections and the
//! maintenance connections), with TLS through rustls, the tree's one TLS stack.
//!
//! libpq's `sslmode` and `sslrootcert` keep their meaning, since operators copy URLs from
//! `psql`. tokio-postgres itself knows only `disable`, `prefer` and `require` and refuses
//! other options, so both keys are taken out of the URL here and the rest is handed over
//! unchanged (multi-host lists and `target_session_attrs` included):
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default, as in libpq) | if the server offers it, else plain | not checked |
//! | `require` | always | not checked (checked against `sslrootcert` when one is given, as libpq does) |
//! | `verify-ca` | always | issued by a CA of `sslrootcert` |
//! | `verify-full` | always | issued by a CA of `sslrootcert` and naming the host connected to |
//!
//! `prefer` and `require` encrypt but cannot tell the server from an active attacker in the
//! middle; only `verify-full` does (recommended whenever the database is on another machine).
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's trust store
//! (then only with `verify-full`, as in libpq: any public CA could issue a certificate that
//! `verify-ca` would accept). The `verify-*` modes need it: a service has no `~/.postgresql/
//! root.crt` to fall back on. A Unix-socket host never uses TLS (PostgreSQL offers none there).
//!
//! SCRAM channel binding (`tls-server-end-point`) is offered over TLS, so with a password a
//! man in the middle is detected by the server even in `require` mode.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Connection, Socket};

/// `sslmode` of a database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plain; no certificate check.
    Prefer,
    /// Always TLS; no certificate check unless `sslrootcert` is given.
    Require,
    /// Always TLS; the certificate chains to `sslrootcert`.
    VerifyCa,
    /// Always TLS; the certificate chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, UrlError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's `allow` tries plain first: nothing a server of ours needs.
            other => {
                return Err(UrlError(format!(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full, not \
                     '{other}'"
                )));
            }
        })
    }

    /// Whether this mode tells the server from an active attacker in the middle.
    pub fn authenticates_server(self) -> bool {
        self == Self::VerifyFull
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// A `database.url` Outpost cannot use; the message says which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database.url: {0}")]
pub struct UrlError(String);

/// TLS options of libpq that Outpost does not implement; named so the refusal is clear rather
/// than tokio-postgres's "unknown option".
const UNSUPPORTED_TLS_KEYS: &[&str] = &[
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
    "gssencmode",
];

/// The parsed `database.url`: where to connect and how to secure it. Cheap to clone.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: MakeRustls,
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PgConnector")
            .field("config", &self.config)
            .field("sslmode", &self.tls.mode)
            .field("sslrootcert", &self.tls.root_name)
            .finish()
    }
}

impl FromStr for PgConnector {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::new(url)
    }
}

impl PgConnector {
    /// Reads a libpq URL (`postgres://...`) or key/value string (`host=... dbname=...`),
    /// with its TLS settings, and loads `sslrootcert`.
    pub fn new(url: &str) -> Result<Self, UrlError> {
        let (rest, options) = split_tls_options(url)?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| UrlError(e.to_string().replace("invalid configuration: ", "")))?;
        let mode = match options.sslmode.as_deref() {
            Some(value) => SslMode::parse(value)?,
            None => SslMode::Prefer,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustls::new(mode, options.sslrootcert.as_deref())?;
        Ok(Self { config, tls })
    }

    /// The `sslmode` in force (`prefer` when the URL names none).
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The hosts of the URL, for messages (`db1:5432, db2:5432` or a socket directory).
    pub fn hosts(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    tokio_postgres::config::Host::Unix(path) => {
                        format!("{} (Unix socket)", path.display())
                    }
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The database name of the URL, if it names one.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The user of the URL, if it names one.
    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// Opens a connection. `connect_timeout` applies unless the URL sets `connect_timeout`.
    /// The caller drives the returned [`Connection`] (spawn it).
    pub async fn connect(
        &self,
        connect_timeout: Option<Duration>,
    ) -> Result<(Client, Connection<Socket, RustlsStream>), tokio_postgres::Error> {
        let mut config = self.config.clone();
        if let Some(timeout) = connect_timeout
            && config.get_connect_timeout().is_none()
        {
            config.connect_timeout(timeout);
        }
        config.connect(self.tls.clone()).await
    }

    /// Opens a connection and drives it on the runtime; the connection ends with the client.
    pub async fn client(&self, connect_timeout: Option<Duration>) -> Result<Client, String> {
        let (client, connection) = self
            .connect(connect_timeout)
            .await
            .map_err(|e| crate::embedded::describe_pg_error(&e))?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped; an error then is expected.
            let _ended = connection.await;
        });
        Ok(client)
    }
}

#[derive(Default)]
struct TlsOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsOptions {
    /// Takes `key` if it is one of ours; refuses the TLS keys Outpost does not implement.
    fn take(&mut self, key: &str, value: String) -> Result<bool, UrlError> {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            key if UNSUPPORTED_TLS_KEYS.contains(&key) => {
                return Err(UrlError(format!(
                    "option `{key}` is not supported (Outpost's TLS options are sslmode and \
                     sslrootcert; client certificates are not implemented)"
                )));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits `sslmode`/`sslrootcert` off a URL or key/value string; returns the rest unchanged in
/// meaning.
fn split_tls_options(url: &str) -> Result<(String, TlsOptions), UrlError> {
    let mut options = TlsOptions::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), options));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| UrlError(format!("option `{key}` is not valid UTF-8")))
            };
            if !options.take(&decode(key)?, decode(value)?)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, options));
    }
    let mut kept = Vec::new();
    for (key, value) in parse_key_values(url)? {
        if !options.take(&key, value.clone())? {
            kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), options))
}

/// libpq's key/value syntax: `key = value` pairs separated by spaces, values optionally in
/// single quotes, backslash escaping the next character.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(UrlError(format!("expected `=` after `{key}`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(UrlError(format!("unterminated quote in `{key}`"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Where the trust anchors of `verify-*` come from, for messages.
#[derive(Debug, Clone)]
enum RootSource {
    File(String),
    System,
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "sslrootcert {path}"),
            Self::System => f.write_str("the system's trust store (sslrootcert=system)"),
        }
    }
}

/// tokio-postgres's [`MakeTlsConnect`] over tokio-rustls, aws-lc-rs provider.
#[derive(Clone)]
struct MakeRustls {
    mode: SslMode,
    config: Option<Arc<ClientConfig>>,
    root_name: Option<RootSource>,
}

impl MakeRustls {
    fn new(mode: SslMode, sslrootcert: Option<&str>) -> Result<Self, UrlError> {
        let provider = outpost_core::tls::provider();
        let root_source = match sslrootcert {
            None | Some("") => None,
            Some("system") => Some(RootSource::System),
            Some(path) => Some(RootSource::File(path.to_owned())),
        };
        if matches!(root_source, Some(RootSource::System)) && mode != SslMode::VerifyFull {
            return Err(UrlError(format!(
                "sslrootcert=system needs sslmode=verify-full (not {mode}): any public CA could \
                 issue a certificate that a weaker mode would accept"
            )));
        }
        let roots = match &root_source {
            None => None,
            Some(RootSource::System) => {
                let mut roots = RootCertStore::empty();
                // Unreadable system certificates are skipped, as everywhere else in Outpost.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ignored = roots.add(cert);
                }
                Some(roots)
            }
            Some(RootSource::File(path)) => Some(load_roots(path)?),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::Disable, _) => {
                return Ok(Self {
                    mode,
                    config: None,
                    root_name: root_source,
                });
            }
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(UrlError(format!(
                    "sslmode={mode} needs sslrootcert: the CA certificate (PEM file) that issued \
                     the server's certificate, or sslrootcert=system to trust the system's CAs \
                     (verify-full only)"
                )));
            }
            (SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(AnyServerCertificate(provider.clone()))
            }
            (SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull, Some(roots)) => {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| UrlError(format!("sslrootcert: {e}")))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UrlError(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            mode,
            config: Some(Arc::new(config)),
            root_name: root_source,
        })
    }
}

fn load_roots(path: &str) -> Result<RootCertStore, UrlError> {
    let pem = std::fs::read(path)
        .map_err(|e| UrlError(format!("sslrootcert {path} cannot be read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| UrlError(format!("sslrootcert {path}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| UrlError(format!("sslrootcert {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(UrlError(format!(
            "sslrootcert {path} holds no PEM certificate"
        )));
    }
    Ok(roots)
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, io::Error> {
        // Unix sockets come with an empty host and never reach the handshake (the server
        // offers no TLS there). A name rustls cannot carry only matters to verify-full.
        let server_name = ServerName::try_from(host.to_owned()).or_else(|e| {
            if self.mode == SslMode::VerifyFull && !host.is_empty() {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "host '{host}' is not a DNS name or IP address verify-full can check: {e}"
                    ),
                ))
            } else {
                Ok(ServerName::try_from("postgresql").map_err(io::Error::other)?)
            }
        })?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            server_name,
            host: host.to_owned(),
            mode: self.mode,
            roots: self.root_name.clone(),
        })
    }
}

/// One handshake to come.
pub struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
    host: String,
    mode: SslMode,
    roots: Option<RootSource>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, io::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let Some(config) = self.config else {
                // sslmode=disable never asks for TLS, so tokio-postgres never gets here.
                return Err(io::Error::other("TLS is disabled (sslmode=disable)"));
            };
            tokio_rustls::TlsConnector::from(config)
                .connect(self.server_name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
                .map_err(|e| explain_handshake_error(e, &self.host, self.mode, self.roots.as_ref()))
        })
    }
}

/// Turns rustls's certificate complaints into what an operator has to fix.
fn explain_handshake_error(
    error: io::Error,
    host: &str,
    mode: SslMode,
    roots: Option<&RootSource>,
) -> io::Error {
    let Some(rustls::Error::InvalidCertificate(problem)) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return error;
    };
    let roots = roots.map_or_else(|| "sslrootcert".to_owned(), ToString::to_string);
    let message = match problem {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate of {host} is not issued by a CA in {roots} (sslmode={mode}); give \
             the CA that issued the server's certificate"
        ),
        CertificateError::NotValidForName => format!(
            "the certificate of {host} does not name the host '{host}' (sslmode=verify-full \
             checks the host name): connect with a name the certificate holds"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the certificate of {host} does not name the host '{host}' (it names {}; \
             sslmode=verify-full checks the host name): connect with a name the certificate holds",
            presented
                .iter()
                .map(|name| plain_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the certificate of {host} has expired ({problem})")
        }
        other => format!("the certificate of {host} was refused: {other}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// webpki lists a certificate's names in their `Debug` form (`DnsName("db1")`,
/// `IpAddress(10.0.0.5)`); an operator wants the names.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

/// A TLS session to PostgreSQL.
pub struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| tls_server_end_point(leaf))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the leaf certificate hashed with its signature's hash,
/// SHA-256 for MD5 and SHA-1. Signatures without one hash (Ed25519, RSA-PSS) have no binding
/// (the server then does not offer SCRAM-SHA-256-PLUS either).
fn tls_server_end_point(leaf: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use sha2::Digest;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    Some(match oid.as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA, ecdsa-with-SHA1, ecdsa-with-SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => sha2::Sha256::digest(leaf.as_ref()).to_vec(),
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => {
            sha2::Sha384::digest(leaf.as_ref()).to_vec()
        }
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => {
            sha2::Sha512::digest(leaf.as_ref()).to_vec()
        }
        _ => return None,
    })
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// `verify-ca` (and `require` with `sslrootcert`): the chain must lead to a trusted CA, the
/// name is not checked. webpki checks the chain before the name, so a name error means the
/// chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encryption only, as libpq does. The handshake
/// signature is still checked, so the session is bound to the key of the certificate shown
/// (what SCRAM channel binding relies on).
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>, Option<String>) {
        let (rest, options) = split_tls_options(url).unwrap();
        (rest, options.sslmode, options.sslrootcert)
    }

    #[test]
    fn tls_options_are_taken_out_of_urls_and_the_rest_kept() {
        assert_eq!(
            split(
                "postgres://u:p@db1:5432,db2:5433/outpost?sslmode=verify-full&target_session_attrs=read-write&sslrootcert=%2Fetc%2Fca%20x.crt"
            ),
            (
                "postgres://u:p@db1:5432,db2:5433/outpost?target_session_attrs=read-write".into(),
                Some("verify-full".into()),
                Some("/etc/ca x.crt".into())
            )
        );
        assert_eq!(
            split("postgresql://db/outpost?sslmode=disable"),
            (
                "postgresql://db/outpost".into(),
                Some("disable".into()),
                None
            )
        );
        assert_eq!(
            split("postgres://db/outpost"),
            ("postgres://db/outpost".into(), None, None)
        );
    }

    #[test]
    fn tls_options_are_taken_out_of_key_value_strings() {
        let (rest, mode, root) = split(
            "host='/tmp/a b' port=5432 sslmode = require sslrootcert='/etc/it\\'s.crt' dbname=x",
        );
        assert_eq!(rest, "host='/tmp/a b' port='5432' dbname='x'");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root.as_deref(), Some("/etc/it's.crt"));
        let config = tokio_postgres::Config::from_str(&rest).unwrap();
        assert_eq!(config.get_dbname(), Some("x"));
    }

    #[test]
    fn certificate_names_read_plainly() {
        assert_eq!(
            plain_name("DnsName(\"db1.example.com\")"),
            "db1.example.com"
        );
        assert_eq!(plain_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(plain_name("Unsupported(0x86)"), "Unsupported(0x86)");
    }

    #[test]
    fn modes_and_their_needs_are_checked() {
        let err = PgConnector::new("postgres://db/x?sslmode=verify-full").unwrap_err();
        assert!(
            err.to_string()
                .contains("sslmode=verify-full needs sslrootcert"),
            "{err}"
        );
        let err = PgConnector::new("postgres://db/x?sslmode=allow").unwrap_err();
        assert!(
            err.to_string().contains("sslmode must be disable, prefer"),
            "{err}"
        );
        let err =
            PgConnector::new("postgres://db/x?sslmode=verify-ca&sslrootcert=system").unwrap_err();
        assert!(
            err.to_string().contains("needs sslmode=verify-full"),
            "{err}"
        );
        let err = PgConnector::new("postgres://db/x?sslcert=/a.crt").unwrap_err();
        assert!(
            err.to_string().contains("`sslcert` is not supported"),
            "{err}"
        );
        let err =
            PgConnector::new("postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent.crt")
                .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent.crt cannot be read"),
            "{err}"
        );

        let default =
            PgConnector::new("postgres://u@db1,db2/x?target_session_attrs=read-write").unwrap();
        assert_eq!(default.ssl_mode(), SslMode::Prefer);
        assert_eq!(default.hosts(), "db1:5432, db2:5432");
        assert!(PgConnector::new("postgres://db/x?sslmode=verify-full&sslrootcert=system").is_ok());
    }
}
