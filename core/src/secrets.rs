//! Sealing secrets at rest with AES-256-GCM: the pull credentials of product instances, the CSSM
//! client secrets, webhook secrets, the access-token key and the instance's private key. The
//! key lives in a file outside the database, so a database dump alone reveals none of them.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Version byte in front of every sealed value, so the format can change later.
const VERSION: u8 = 1;

/// How a sealed text value begins (then the base64 of the sealed bytes), so a value stored
/// before secrets were sealed is told apart and sealed once.
const SEALED_PREFIX: &str = "sealed:1:";

/// Whether a stored text value is sealed (as [`CredentialKey::seal_text`] writes it).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("credentials key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The sealed value is damaged, or was sealed with another key or for another account.
    #[error("stored credentials cannot be opened (wrong key or damaged)")]
    Open,
    /// Encryption failed.
    #[error("credentials could not be sealed")]
    Seal,
}

/// Username and password a puller logs in with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The AES-256 key that seals credentials.
pub struct CredentialKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SecretError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecretError::Seal)?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Reads the key (64 hex characters) from `path`, creating the file (mode 0600) with a
    /// fresh random key when it does not exist. Every node of a cluster needs the same file.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let fail = |message: String| SecretError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|_| fail("is not 64 hexadecimal characters".into()))?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| fail("is not 64 hexadecimal characters".into()))?;
                Self::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let dir = dir.unwrap_or_else(|| Path::new("."));
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
                // Written whole to a temporary file, then moved into place unless one exists: another process
                // starting at the same moment never reads a half-written key, and a crash never
                // leaves an empty one.
                let mut temp =
                    tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    temp.as_file()
                        .set_permissions(std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| fail(e.to_string()))?;
                }
                temp.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
                    .and_then(|()| temp.as_file().sync_all())
                    .map_err(|e| fail(e.to_string()))?;
                match temp.persist_noclobber(path).map_err(|e| e.error) {
                    Ok(_) => {
                        // The new name must survive a power loss with the rows sealed under it.
                        std::fs::File::open(dir)
                            .and_then(|d| d.sync_all())
                            .map_err(|e| fail(e.to_string()))?;
                        Self::from_bytes(&bytes)
                    }
                    // Another process linked its key first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(fail(e.to_string())),
                }
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Seals bytes; `context` (e.g. the owning account's id) is authenticated with them, so a
    /// sealed value copied to another row does not open there.
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut data = plain.to_vec();
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context),
                &mut data,
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Opens what [`seal_bytes`](Self::seal_bytes) produced with the same `context`.
    pub fn open_bytes(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let Some((&VERSION, rest)) = sealed.split_first() else {
            return Err(SecretError::Open);
        };
        if rest.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, cipher) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut buffer = cipher.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }

    /// Seals credentials for the account `context` names.
    pub fn seal(&self, credentials: &Credentials, context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let data = serde_json::to_vec(credentials).map_err(|_| SecretError::Seal)?;
        self.seal_bytes(&data, context)
    }

    /// Opens what [`seal`](Self::seal) produced with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Credentials, SecretError> {
        let plain = self.open_bytes(sealed, context)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Open)
    }

    /// Seals a text secret into text (`sealed:1:<base64>`), for a text column.
    pub fn seal_text(&self, plain: &str, context: &[u8]) -> Result<String, SecretError> {
        let sealed = self.seal_bytes(plain.as_bytes(), context)?;
        Ok(format!("{SEALED_PREFIX}{}", BASE64.encode(sealed)))
    }

    /// Opens what [`seal_text`](Self::seal_text) produced with the same `context`; a value
    /// that is not sealed text does not open.
    pub fn open_text(&self, stored: &str, context: &[u8]) -> Result<String, SecretError> {
        let encoded = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::Open)?;
        let sealed = BASE64.decode(encoded).map_err(|_| SecretError::Open)?;
        let plain = self.open_bytes(&sealed, context)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            username: "netops".into(),
            password: "s3cret-pass".into(),
        }
    }

    #[test]
    fn sealed_credentials_open_with_the_same_key_and_context_only() -> Result<(), SecretError> {
        let key = CredentialKey::from_bytes(&[7; 32])?;
        let sealed = key.seal(&credentials(), b"account-a")?;
        assert!(
            !sealed.windows(8).any(|w| w == b"s3cret-p"),
            "plaintext leaked"
        );
        assert_eq!(key.open(&sealed, b"account-a")?, credentials());
        assert!(key.open(&sealed, b"account-b").is_err());
        let other = CredentialKey::from_bytes(&[8; 32])?;
        assert!(other.open(&sealed, b"account-a").is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(key.open(&tampered, b"account-a").is_err());
        assert!(key.open(&[], b"account-a").is_err());
        Ok(())
    }

    #[test]
    fn sealed_text_opens_with_its_key_and_context_only() -> Result<(), SecretError> {
        let key = CredentialKey::from_bytes(&[7; 32])?;
        let sealed = key.seal_text("cssm-client-secret", b"account-a")?;
        assert!(
            is_sealed(&sealed) && !sealed.contains("cssm-client"),
            "{sealed}"
        );
        assert_eq!(key.open_text(&sealed, b"account-a")?, "cssm-client-secret");
        assert!(key.open_text(&sealed, b"account-b").is_err());
        assert!(
            CredentialKey::from_bytes(&[8; 32])?
                .open_text(&sealed, b"account-a")
                .is_err()
        );
        assert!(!is_sealed("cssm-client-secret"));
        assert!(key.open_text("cssm-client-secret", b"account-a").is_err());
        assert!(key.open_text("sealed:1:!!", b"account-a").is_err());
        Ok(())
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keys/credentials.key");
        let first = CredentialKey::load_or_create(&path)?;
        let sealed = first.seal(&credentials(), b"x")?;
        let again = CredentialKey::load_or_create(&path)?;
        assert_eq!(again.open(&sealed, b"x")?, credentials());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "not hex")?;
        assert!(CredentialKey::load_or_create(&path).is_err());
        Ok(())
    }
}
