//! TLS material of the listeners: the configured files, or on first start a private CA and a
//! server certificate under `<data_dir>/tls` (give `ca.crt` to devices and API clients).

use std::path::{Path, PathBuf};

use outpost_core::crypto::{self, CertifiedKey};
use outpost_core::settings::Settings;

/// Certificate chain and key the listeners serve.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// PEM chain.
    pub cert_pem: String,
    /// PEM key.
    pub key_pem: String,
    /// The generated CA certificate, when Outpost made its own.
    pub ca_file: Option<PathBuf>,
}

/// Why the TLS material could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Generation failed.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

fn read(path: &Path) -> Result<String, TlsSetupError> {
    std::fs::read_to_string(path).map_err(|source| TlsSetupError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsSetupError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| TlsSetupError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // `mode` applies only to a new file: an existing one is narrowed too.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsSetupError> {
    Ok(CertifiedKey {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

/// The configured certificate, or the generated one (created or refreshed when the
/// configured host names change).
pub fn load_or_create(settings: &Settings) -> Result<TlsMaterial, TlsSetupError> {
    if !settings.tls.cert_file.is_empty() {
        return Ok(TlsMaterial {
            cert_pem: read(Path::new(&settings.tls.cert_file))?,
            key_pem: read(Path::new(&settings.tls.key_file))?,
            ca_file: None,
        });
    }
    let dir = settings.data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsSetupError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca = if ca_cert.is_file() && ca_key.is_file() {
        load_pair(&ca_cert, &ca_key)?
    } else {
        let ca = crypto::generate_ca("Outpost private CA")?;
        write_private(&ca_key, &ca.key_pem)?;
        std::fs::write(&ca_cert, &ca.cert_pem).map_err(|source| TlsSetupError::Io {
            path: ca_cert.display().to_string(),
            source,
        })?;
        ca
    };
    let (cert, key, names) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.names"),
    );
    let wanted = settings.tls.hostnames.join("\n");
    let leaf =
        if cert.is_file() && key.is_file() && read(&names).ok().as_deref() == Some(wanted.as_str())
        {
            load_pair(&cert, &key)?
        } else {
            let leaf = crypto::issue_server_certificate(&ca, &settings.tls.hostnames)?;
            write_private(&key, &leaf.key_pem)?;
            std::fs::write(&cert, &leaf.cert_pem).map_err(|source| TlsSetupError::Io {
                path: cert.display().to_string(),
                source,
            })?;
            std::fs::write(&names, &wanted).map_err(|source| TlsSetupError::Io {
                path: names.display().to_string(),
                source,
            })?;
            leaf
        };
    Ok(TlsMaterial {
        cert_pem: format!("{}{}", leaf.cert_pem, ca.cert_pem),
        key_pem: leaf.key_pem,
        ca_file: Some(ca_cert),
    })
}
