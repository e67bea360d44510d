//! "Export Usage to Cisco": one `UD_SA_<ts>.tar.gz` per local account, one `UD_VA_...` per
//! SA/VA pair, one device file per product instance. Reports are read in pages and written by a
//! blocking task through a small channel, so memory stays flat whatever their number.

use std::io::Write;

use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::bundle::{self, UsageBundleWriter};
use outpost_core::offline_file::{self, SystemInfo};
use outpost_core::rum::RumEnvelope;
use outpost_db::enums::{EventResult, SyncChannel, SyncDirection, SyncState};
use outpost_db::events::{self, NewEvent};
use outpost_db::exports::{self, ExportRow, Selection};
use outpost_db::sync_runs::{self, SyncRunOutcome};
use outpost_db::{
    AccountId, AsyncConnection, AsyncPgConnection, ProductInstanceId, SyncRunId, accounts,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Hashing, require_registered};
use crate::error::{AppError, AppResult, Code, OrNotFound};

/// Reports read per query.
const PAGE: i64 = 1000;

/// What an export wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportSummary {
    /// `UD_SA_<ts>.tar.gz`.
    pub file_name: String,
    /// Device files (one per product instance).
    pub device_files: u64,
    /// Reports in them.
    pub reports: u64,
    /// `UD_VA_...` archives (SA/VA pairs).
    pub virtual_accounts: u64,
    /// Size of the bundle.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// The ledger row.
    #[schema(value_type = uuid::Uuid)]
    pub sync_run: SyncRunId,
}

/// The bundle's file name for an export started at `now`.
pub fn file_name(now: DateTime<Utc>) -> String {
    format!("UD_SA_{}.tar.gz", bundle::timestamp(now))
}

/// Most days an export may reach back (a hundred years: every report there is).
pub const MAX_DAYS: u32 = 36_500;

/// What an export takes: the unsent reports, or (`days`) every report received in the last
/// `days` days, 1 to [`MAX_DAYS`].
pub fn selection(days: Option<u32>, now: DateTime<Utc>) -> AppResult<Selection> {
    match days {
        None => Ok(Selection::Unsent),
        Some(days @ 1..=MAX_DAYS) => Ok(Selection::Since(
            now - chrono::Duration::days(i64::from(days)),
        )),
        Some(days) => Err(AppError::invalid(format!(
            "days must be 1 to {MAX_DAYS}, not {days}"
        ))),
    }
}

/// What to export, when and for whom.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest<'a> {
    /// The local account.
    pub account: AccountId,
    /// Unsent reports, or all of the last N days.
    pub selection: Selection,
    /// The export's time: the bundle's name and the reports' `exported_at`.
    pub now: DateTime<Utc>,
    /// Who asked, for the audit trail.
    pub actor: &'a str,
}

/// One device file on its way to the writer.
struct DeviceFile {
    smart_account: (String, String),
    virtual_account: (String, String),
    device_id: String,
    text: String,
}

/// What the writer made: the output, its size and SHA-256, device files and VA archives.
type Written<R> = (R, u64, String, u64, u64);

/// Exports an account's reports to `out`; `progress(done, total)` follows the reports.
///
/// Everything happens in one transaction: reports are marked exported page by page as they are
/// written, so no list of them is kept, and the marks (with the ledger row) commit only once the
/// whole bundle is written and `finish` has accepted it (a file sink makes the file durable and
/// gives it its name there). A failed export leaves every report as it was.
pub async fn export_usage<W, R>(
    conn: &mut AsyncPgConnection,
    request: &ExportRequest<'_>,
    out: W,
    finish: impl FnOnce(W) -> std::io::Result<R> + Send + 'static,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> AppResult<(R, ExportSummary)>
where
    W: Write + Send + 'static,
    R: Send + 'static,
{
    let account = accounts::find_account(conn, request.account)
        .await
        .or_not_found("account")?;
    let (sa_id, va_id) = require_registered(&account)?;
    let ids = (sa_id.to_owned(), va_id.to_owned());
    conn.transaction::<_, AppError, _>(async |conn| {
        let total =
            u64::try_from(exports::count(conn, account.id, request.selection).await?).unwrap_or(0);
        if total == 0 {
            return Err(nothing_to_export(&account, request.selection));
        }
        // The writer owns the bundle on a blocking thread; a small channel keeps memory flat.
        let (sender, receiver) = mpsc::channel::<DeviceFile>(8);
        let own_sa = (account.smart_account.clone(), ids.0.clone());
        let now = request.now;
        let writer = tokio::task::spawn_blocking(move || {
            let (out, bytes, sha256, files, archives) = write_bundle(out, own_sa, receiver, now)?;
            Ok::<_, std::io::Error>((finish(out)?, bytes, sha256, files, archives))
        });
        let reports = feed(conn, &account, &ids, request, sender, |done| {
            progress(done, total)
        })
        .await?;
        let written = writer
            .await
            .map_err(|e| AppError::internal(format!("the export writer stopped: {e}")))?
            .map_err(|e| AppError::internal(format!("writing the export: {e}")))?;
        record(conn, &account, request, reports, written).await
    })
    .await
}

fn nothing_to_export(account: &accounts::LocalAccount, selection: Selection) -> AppError {
    AppError::refused(
        Code::Conflict,
        match selection {
            Selection::Unsent => format!(
                "local account '{}' has no report that was not already sent, exported or acknowledged; export the last N days to send some again",
                account.name
            ),
            Selection::Since(since) => format!(
                "local account '{}' has no report received since {since}",
                account.name
            ),
        },
    )
}

/// Reads the selected reports page by page, marks them exported and sends one device file per
/// product instance to the writer; returns how many reports went.
async fn feed(
    conn: &mut AsyncPgConnection,
    account: &accounts::LocalAccount,
    (sa_id, va_id): &(String, String),
    request: &ExportRequest<'_>,
    sender: mpsc::Sender<DeviceFile>,
    progress: impl Fn(u64),
) -> AppResult<u64> {
    let now = request.now;
    let mut reports = 0u64;
    let mut current: Vec<ExportRow> = Vec::new();
    let mut after = (ProductInstanceId(uuid::Uuid::nil()), 0);
    loop {
        let page = exports::page(conn, account.id, request.selection, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = (last.pi_id, last.id);
        let ids: Vec<i64> = page.iter().map(|row| row.id).collect();
        exports::mark_exported(conn, account.id, &ids, now).await?;
        reports += ids.len() as u64;
        for row in page {
            if current
                .first()
                .is_some_and(|first| first.pi_id != row.pi_id)
            {
                let rows = std::mem::take(&mut current);
                // A closed channel means the writer failed; its error is reported by the caller.
                if sender
                    .send(device_file(account, sa_id, va_id, rows, now))
                    .await
                    .is_err()
                {
                    return Ok(reports);
                }
            }
            current.push(row);
        }
        progress(reports);
    }
    if !current.is_empty() {
        let _ = sender
            .send(device_file(account, sa_id, va_id, current, now))
            .await;
    }
    Ok(reports)
}

/// The export's ledger row and event; the summary.
async fn record<R>(
    conn: &mut AsyncPgConnection,
    account: &accounts::LocalAccount,
    request: &ExportRequest<'_>,
    reports: u64,
    (out, bytes, sha256, files, archives): Written<R>,
) -> AppResult<(R, ExportSummary)> {
    let now = request.now;
    let file_name = file_name(now);
    let run = sync_runs::start(
        conn,
        account.id,
        None,
        SyncChannel::File,
        SyncDirection::Outbound,
        now,
    )
    .await?;
    let message = format!("exported {reports} reports of {files} devices to {file_name}");
    let outcome = SyncRunOutcome {
        state: Some(SyncState::Succeeded),
        finished_at: Some(now),
        duration_ms: Some((Utc::now() - now).num_milliseconds().max(0)),
        reports_sent: Some(i32::try_from(reports).unwrap_or(i32::MAX)),
        bytes_sent: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
        sha256: Some(sha256.clone()),
        file_name: Some(file_name.clone()),
        message: Some(message),
        ..SyncRunOutcome::default()
    };
    sync_runs::finish(conn, run, &outcome).await?;
    let detail = json!({ "file_name": file_name, "reports": reports, "devices": files, "bytes": bytes, "sha256": sha256 });
    let event = NewEvent::account(
        account.id,
        request.actor,
        "cssm.export",
        EventResult::Ok,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    let summary = ExportSummary {
        file_name,
        device_files: files,
        reports,
        virtual_accounts: archives,
        bytes,
        sha256,
        sync_run: run,
    };
    Ok((out, summary))
}

/// The blocking side of an export: writes the device files it receives into the bundle and
/// returns the output, its size and SHA-256, and the numbers of device files and VA archives.
fn write_bundle<W: Write>(
    out: W,
    own_sa: (String, String),
    mut receiver: mpsc::Receiver<DeviceFile>,
    now: DateTime<Utc>,
) -> std::io::Result<(W, u64, String, u64, u64)> {
    let mut bundle = UsageBundleWriter::new(
        Hashing::new(out),
        (&own_sa.0, &own_sa.1),
        &uuid::Uuid::new_v4().to_string(),
        now,
    );
    let mut files = 0;
    while let Some(file) = receiver.blocking_recv() {
        let sa = (file.smart_account.0.as_str(), file.smart_account.1.as_str());
        let va = (
            file.virtual_account.0.as_str(),
            file.virtual_account.1.as_str(),
        );
        let archive = bundle.virtual_account(sa, va)?;
        bundle.add_device_file(archive, &file.device_id, &file.text)?;
        files += 1;
    }
    let archives = bundle.archive_count();
    let (mut out, bytes, sha256) = bundle.finish()?.finish();
    out.flush()?;
    Ok((out, bytes, sha256, files, archives))
}

/// The offline RUM file of one device's reports, with the SA/VA it goes to.
fn device_file(
    account: &accounts::LocalAccount,
    sa_id: &str,
    va_id: &str,
    rows: Vec<ExportRow>,
    now: DateTime<Utc>,
) -> DeviceFile {
    let first = &rows[0];
    let sudi: Option<Sudi> = serde_json::from_value(first.sudi.clone()).ok();
    let smart_account = match &first.mapped_smart_account {
        Some(sa) if *sa != account.smart_account => (sa.clone(), String::new()),
        _ => (account.smart_account.clone(), sa_id.to_owned()),
    };
    // A VA id is only known for the account's own pair; CSSM finds the others by name.
    let virtual_account = match &first.mapped_virtual_account {
        Some(va) if *va != account.virtual_account || smart_account.0 != account.smart_account => {
            (va.clone(), String::new())
        }
        _ => (account.virtual_account.clone(), va_id.to_owned()),
    };
    let info = SystemInfo {
        sudi,
        timestamp: Some(now.timestamp_millis()),
        nonce: Some(outpost_core::crypto::random_alphanumeric(16)),
        hostname: first.hostname.clone(),
        software_tag_identifier: first.software_tag.clone(),
    };
    let device_id = first.pi_id.0.simple().to_string();
    let reports: Vec<RumEnvelope> = rows
        .into_iter()
        .map(|row| RumEnvelope {
            payload: row.payload,
            header: row.header,
            signature: row.signature,
        })
        .collect();
    DeviceFile {
        smart_account,
        virtual_account,
        device_id,
        text: offline_file::write(Some(&info), &reports),
    }
}
