//! Reading the files admins upload. Uploads of any size go to an anonymous temporary file as
//! they arrive (never whole into memory), within a size limit and a time limit, and before the
//! handler takes a database connection, so a slow or endless upload holds neither memory nor
//! a connection. Text that must be parsed whole (a device's RUM file, a registration response)
//! has its own, smaller limit.

use std::io::{Seek, Write};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web;
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::state::AppState;

/// Reads the body into a temporary file: at most `limit` bytes (`setting` names the limit in
/// the refusal), within `admin.upload_timeout_secs`.
async fn spool(
    mut payload: web::Payload,
    state: &AppState,
    limit: u64,
    setting: &str,
) -> Result<std::fs::File, ApiError> {
    let mut file = tempfile::tempfile().map_err(ApiError::internal)?;
    let patience = Duration::from_secs(state.settings.admin.upload_timeout_secs);
    let arrived = tokio::time::timeout(patience, async {
        let mut size = 0u64;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("the upload could not be read: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the upload is larger than {limit} bytes ({setting})"),
                ));
            }
            file.write_all(&chunk).map_err(ApiError::internal)?;
        }
        Ok(())
    })
    .await;
    match arrived {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the upload did not arrive within {} s (admin.upload_timeout_secs)",
                    patience.as_secs()
                ),
            ));
        }
    }
    file.rewind().map_err(ApiError::internal)?;
    Ok(file)
}

/// A file upload (an ACK bundle, a CSV file), up to `admin.max_upload_bytes`, read back from
/// disk by its consumer.
pub async fn spool_file(
    payload: web::Payload,
    state: &AppState,
) -> Result<std::fs::File, ApiError> {
    let limit = state.settings.admin.max_upload_bytes;
    spool(payload, state, limit, "admin.max_upload_bytes").await
}

/// A text upload parsed whole (a device's RUM file, a registration response), up to
/// `admin.max_text_upload_bytes`.
pub async fn spool_text(payload: web::Payload, state: &AppState) -> Result<String, ApiError> {
    let limit = state.settings.admin.max_text_upload_bytes;
    let mut file = spool(payload, state, limit, "admin.max_text_upload_bytes").await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)
        .map_err(|_| ApiError::bad_request("the upload is not UTF-8 text"))?;
    Ok(text)
}
