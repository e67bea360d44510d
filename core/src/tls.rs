//! rustls configurations built from PEM, always with the aws-lc-rs provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key could not be read.
    #[error("{what}: {message}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// The parser's complaint.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider of the tree.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// A server configuration from a certificate chain and its private key (PEM).
pub fn server_config(cert_chain_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
    let chain = certificates(cert_chain_pem, "server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "server private key",
        message: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(config)
}

/// A client configuration trusting `extra_roots_pem` and, when asked, the system's roots.
pub fn client_config(
    extra_roots_pem: &[String],
    system_roots: bool,
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if system_roots {
        // Unreadable system certificates are skipped; the extra roots still apply.
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ignored = roots.add(cert);
        }
    }
    for pem in extra_roots_pem {
        for cert in certificates(pem, "CA certificate")? {
            roots.add(cert)?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// What `outpost check-config` says about a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// DNS names and IP addresses of the subject alternative name extension.
    pub names: Vec<String>,
    /// End of validity.
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// Checks a certificate chain and key would be accepted by the listeners (parseable, the key
/// matches the first certificate) and describes the first certificate.
pub fn check_server_pair(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<CertificateSummary, TlsError> {
    // The listeners' own construction, so what passes here passes at start.
    server_config(cert_chain_pem, key_pem)?;
    let leaf = certificates(cert_chain_pem, "server certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Pem {
            what: "server certificate",
            message: "no certificate found".into(),
        })?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TlsError::Pem {
            what: "server certificate",
            message: e.to_string(),
        })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        _ => None,
                    };
                    names.extend(ip);
                }
                _ => {}
            }
        }
    }
    let not_after = chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    Ok(CertificateSummary { names, not_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_pair_is_described_and_a_wrong_key_refused() {
        let ca = crate::crypto::generate_ca("Test CA").unwrap();
        let leaf = crate::crypto::issue_server_certificate(
            &ca,
            &["outpost.example.com".into(), "192.0.2.7".into()],
        )
        .unwrap();
        let summary = check_server_pair(&leaf.cert_pem, &leaf.key_pem).unwrap();
        assert_eq!(summary.names, ["outpost.example.com", "192.0.2.7"]);
        assert!(summary.not_after > chrono::Utc::now());
        let err = check_server_pair(&leaf.cert_pem, &ca.key_pem).unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
