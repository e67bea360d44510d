//! The file-based paths to CSSM for air-gapped sites (`docs/protocol.md` section 7): usage export,
//! ACK import, offline registration, and device files for product instances that cannot reach
//! Outpost either. The admin API and the `outpost admin` commands both call these.

pub mod device_files;
pub mod export;
pub mod import;

use std::io::{self, Read, Write};

use outpost_db::accounts::LocalAccount;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult, Code};

/// The account's CSSM Smart and Virtual Account ids; refused until it is registered.
fn require_registered(account: &LocalAccount) -> AppResult<(&str, &str)> {
    match (
        &account.cssm_smart_account_id,
        &account.cssm_virtual_account_id,
    ) {
        (Some(sa), Some(va)) => Ok((sa, va)),
        _ => Err(AppError::refused(
            Code::NotRegistered,
            format!(
                "local account '{}' is not registered with CSSM: register it online or with a registration file first",
                account.name
            ),
        )),
    }
}

/// A refused file: the message names the file (and member) and the reason.
pub(crate) fn rejected(message: impl Into<String>) -> AppError {
    AppError::refused(Code::FileRejected, message)
}

/// Counts and hashes what goes through it (ledger: bytes and SHA-256 of the file).
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    /// Wraps a reader or writer.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// (the inner value, bytes, lower-case hex SHA-256).
    pub fn finish(self) -> (T, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A name safe for a download: letters, digits, `.`, `-` and `_`; the rest becomes `_`.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
