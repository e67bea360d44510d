//! One-time URLs of a pull over RESTCONF or NETCONF (`PROTOCOL.md` section 4.2), on the device
//! listener: `PUT` or `POST /pull-drop/{token}/{name}` takes the offline RUM file a device
//! writes when Outpost calls `rum-save-usage-*` with that URL; `GET` serves the file (an ACK) a
//! device reads for `import-file`. Each token is single-use, bound to one PI, and expires; an
//! unknown, used or expired token is a 404 and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use outpost_core::Sudi;
use outpost_core::offline_file;
use outpost_db::enums::ReportSource;
use outpost_db::{AsyncConnection, DbError, intake, product_instances, pull};

use crate::state::AppState;

fn plain(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text.into())
}

enum Refusal {
    Gone,
    Bad(String),
    Db(DbError),
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Db(e)
    }
}

impl From<outpost_db::QueryError> for Refusal {
    fn from(e: outpost_db::QueryError) -> Self {
        Refusal::Db(e.into())
    }
}

/// `PUT|POST /pull-drop/{token}/{name}`: a device's RUM file.
pub async fn upload(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (token, _name) = path.into_inner();
    let now = state.clock.now();
    let mut conn = match state.pool.get().await {
        Ok(conn) => conn,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // An unknown, used or expired URL says so whatever was sent to it.
    match pull::drop_state(&mut conn, &token).await {
        Ok(Some(drop)) if drop.purpose == "upload" && drop.used_at.is_none() => {}
        Ok(_) => return plain(StatusCode::NOT_FOUND, "unknown, used or expired URL"),
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
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
    let outcome = conn
        .transaction::<_, Refusal, _>(async |conn| {
            let Some(drop) = pull::take_drop(conn, &token, "upload", now).await? else {
                return Err(Refusal::Gone);
            };
            let pi = product_instances::find(conn, drop.account_id, drop.pi_id).await?;
            let sender = match (&pi.udi_pid, &pi.udi_serial_number) {
                (Some(pid), Some(serial)) => Sudi::new(pid.clone(), serial.clone()),
                _ => file
                    .device()
                    .ok_or_else(|| Refusal::Bad("the RUM file names no device".into()))?,
            };
            if !pull::identify(conn, drop.account_id, pi.id, &sender).await? {
                return Err(Refusal::Bad(format!(
                    "the reports are from {sender}, another product instance of this account"
                )));
            }
            let prepared = intake::prepare(
                drop.account_id,
                &sender,
                &file.reports,
                ReportSource::Pull,
                now,
            )
            .map_err(Refusal::Bad)?;
            let (reports, new) = if prepared.is_empty() {
                (0, 0)
            } else {
                let stored = intake::store(conn, drop.account_id, pi.id, prepared, now).await?;
                (stored.reports, stored.new)
            };
            pull::record_upload(conn, &token, reports, new).await?;
            Ok((reports, new))
        })
        .await;
    match outcome {
        Ok((reports, new)) => plain(
            StatusCode::CREATED,
            format!("stored {reports} reports ({new} new)"),
        ),
        Err(Refusal::Gone) => plain(StatusCode::NOT_FOUND, "unknown, used or expired URL"),
        Err(Refusal::Bad(message)) => plain(StatusCode::BAD_REQUEST, message),
        Err(Refusal::Db(e)) => {
            tracing::error!(error = %e, "storing a pulled RUM file failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Outpost cannot store the file now",
            )
        }
    }
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
        Ok(None) => plain(StatusCode::NOT_FOUND, "unknown, used or expired URL"),
        Err(e) => {
            tracing::error!(error = %e, "serving a pull file failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Outpost cannot serve the file now",
            )
        }
    }
}
