//! The file-based paths to CSSM for air-gapped sites (`PROTOCOL.md` section 7): usage export,
//! ACK import, offline registration, and device files for product instances that cannot reach
//! Outpost either. The admin API and the `outpost admin` commands share these functions.

pub mod device_files;
pub mod export;
pub mod import;
pub mod registration;

use std::io::{self, Read, Write};

use actix_web::http::StatusCode;
use outpost_db::DbError;
use outpost_db::accounts::LocalAccount;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Why a file operation did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The file was refused; the message names the file (and member) and the reason.
    #[error("{0}")]
    Rejected(String),
    /// The account is not in a state for this (not registered, nothing to export, ...).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Reading or writing a file failed on Outpost's side.
    #[error("{0}")]
    Io(String),
}

/// Lets a file operation run in a database transaction (`AsyncConnection::transaction`).
impl From<outpost_db::QueryError> for OfflineError {
    fn from(e: outpost_db::QueryError) -> Self {
        OfflineError::Db(e.into())
    }
}

impl From<OfflineError> for ApiError {
    fn from(e: OfflineError) -> Self {
        match e {
            OfflineError::Rejected(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "file_rejected", message)
            }
            OfflineError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            OfflineError::Db(e) => e.into(),
            OfflineError::Io(message) => ApiError::internal(message),
        }
    }
}

/// Refuses accounts that cannot exchange with CSSM yet.
fn require_registered(account: &LocalAccount) -> Result<(&str, &str), OfflineError> {
    match (
        &account.cssm_smart_account_id,
        &account.cssm_virtual_account_id,
    ) {
        (Some(sa), Some(va)) => Ok((sa, va)),
        _ => Err(OfflineError::Conflict(format!(
            "local account '{}' is not registered with CSSM: register it online or with a registration file first",
            account.name
        ))),
    }
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
