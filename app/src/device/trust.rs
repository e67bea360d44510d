//! `trust_sync`: the device has installed the trust codes it was handed.

use chrono::{DateTime, Utc};
use outpost_core::device::{MessageCode, Status};
use outpost_db::{AsyncPgConnection, ProductInstanceId, pi_files};
use serde_json::json;

use super::Reply;
use crate::error::AppResult;

/// Records the trust codes handed over to the device as installed.
pub(super) async fn trust_sync(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> AppResult<Reply> {
    let installed = pi_files::mark_trust_installed(conn, pi, now).await?;
    let message = if installed == 0 {
        "trust synchronised; no new trust code to record".to_owned()
    } else {
        format!("trust code installed ({installed} recorded)")
    };
    Ok(Reply::new(
        Status::Ok,
        MessageCode::TrustSynced,
        message,
        None,
        json!({ "trust_codes_installed": installed }),
    ))
}
