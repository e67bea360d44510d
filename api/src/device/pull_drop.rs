//! One-time URLs of a pull over RESTCONF or NETCONF (`docs/protocol.md` section 4.2), on the device
//! listener: `PUT` or `POST /pull-drop/{token}/{name}` takes the offline RUM file a device
//! writes when Outpost calls `rum-save-usage-*` with that URL; `GET` serves the file (an ACK) a
//! device reads for `import-file`. Each token is single-use, bound to one PI, and expires; an
//! unknown, used or expired token is a 404 and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use outpost_app::intake::{self, PulledPi};
use outpost_app::{AppError, AppResult};
use outpost_core::offline_file;
use outpost_db::{AsyncConnection, product_instances, pull};

use super::PULL_DROP_LIMIT;
use crate::state::AppState;

fn plain(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text.into())
}

fn gone() -> HttpResponse {
    plain(StatusCode::NOT_FOUND, "unknown, used or expired URL")
}

/// Reads the body up to the limit, once the token is known to be good.
async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            plain(
                StatusCode::BAD_REQUEST,
                format!("the upload could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > PULL_DROP_LIMIT {
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the RUM file is larger than {PULL_DROP_LIMIT} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `PUT|POST /pull-drop/{token}/{name}`: a device's RUM file.
pub async fn upload(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (token, _name) = path.into_inner();
    let now = state.clock.now();
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // An unknown, used or expired URL says so whatever was sent to it, before reading it.
    match pull::drop_state(&mut conn, &token).await {
        Ok(Some(drop)) if drop.purpose == "upload" && drop.used_at.is_none() => {}
        Ok(_) => return gone(),
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the RUM file is not UTF-8 text");
    };
    let file = match offline_file::parse(text) {
        Ok(file) => file,
        // A device with nothing unreported writes a file without reports.
        Err(_) if offline_file::holds_no_reports(text) => offline_file::OfflineRumFile {
            system_info: None,
            reports: Vec::new(),
        },
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("the RUM file cannot be read: {e}"),
            );
        }
    };
    let stored = conn
        .transaction::<_, AppError, _>(async |conn| store(conn, &token, &file, now).await)
        .await;
    match stored {
        Ok(Some((reports, new))) => plain(
            StatusCode::CREATED,
            format!("stored {reports} reports ({new} new)"),
        ),
        Ok(None) => gone(),
        Err(AppError::Refused { message, .. }) => plain(StatusCode::BAD_REQUEST, message),
        Err(e) => {
            tracing::error!(error = %e, "storing a pulled RUM file failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Outpost cannot store the file now",
            )
        }
    }
}

/// Takes the token and stores the file's reports through report intake: (reports, new), or
/// `None` when the token was taken meanwhile.
async fn store(
    conn: &mut outpost_db::AsyncPgConnection,
    token: &str,
    file: &offline_file::OfflineRumFile,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Option<(usize, usize)>> {
    let Some(drop) = pull::take_drop(conn, token, "upload", now).await? else {
        return Ok(None);
    };
    let pi = product_instances::find(conn, drop.account_id, drop.pi_id).await?;
    let pulled = PulledPi {
        account: drop.account_id,
        id: pi.id,
        udi_pid: pi.udi_pid.as_deref(),
        udi_serial_number: pi.udi_serial_number.as_deref(),
    };
    let stored = intake::store_collected(conn, pulled, &file.reports, file.device(), now)
        .await?
        .unwrap_or_default();
    pull::record_upload(conn, token, stored.reports, stored.new).await?;
    Ok(Some((stored.reports, stored.new)))
}

/// `GET /pull-drop/{token}/{name}`: the file handed to a device.
pub async fn download(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (token, _name) = path.into_inner();
    let now = state.clock.now();
    let taken = match state.pool.get().await {
        Ok(mut conn) => pull::take_drop(&mut conn, &token, "download", now).await,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match taken {
        Ok(Some(drop)) => HttpResponse::Ok()
            .content_type("application/xml")
            .body(drop.file.unwrap_or_default()),
        Ok(None) => gone(),
        Err(e) => {
            tracing::error!(error = %e, "serving a pull file failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Outpost cannot serve the file now",
            )
        }
    }
}
