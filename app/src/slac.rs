//! The SLAC CSV that CSSM produces for air-gapped sites [ours]: header
//! `udi_pid,udi_serial_number,entitlement_tag,count,authorization_code`, one row per device and
//! entitlement, `authorization_code` the signed SLAC file as CSSM issued it. Every code is
//! verified against the CSSM signing certificate, must name the row's device, entitlement and
//! count, and must fit its LVA's pool; one bad row and nothing is imported. An imported code
//! waits for its device and is handed over with the device's next answer.

use std::io::Read;

use chrono::{DateTime, Utc};
use outpost_core::crypto::SignatureVerifier;
use outpost_core::signed_file::{AuthorizationData, BoundFile, verify_authorization};
use outpost_db::accounts::{self, LocalVirtualAccount};
use outpost_db::authorizations::{self, ImportRow, Issued};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::inventory::RowError;
use outpost_db::product_instances::{self, UdiKey};
use outpost_db::{AccountId, AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use serde_json::json;

use crate::error::{AppError, AppResult, OrNotFound};
use crate::input::{CsvRow, csv_rows};
use crate::inventory::rows_refused;

/// Columns of the SLAC CSV.
pub const SLAC_COLUMNS: [&str; 5] = [
    "udi_pid",
    "udi_serial_number",
    "entitlement_tag",
    "count",
    "authorization_code",
];
/// Rows one import may hold.
const MAX_ROWS: usize = 10_000;

#[derive(Debug, Deserialize)]
struct SlacRow {
    udi_pid: String,
    udi_serial_number: String,
    entitlement_tag: String,
    count: String,
    authorization_code: String,
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SlacImported {
    /// Codes new to Outpost.
    pub imported: usize,
    /// Codes of this file imported before.
    pub already_imported: usize,
}

/// Checks one row's code: its signature, device, entitlement and count.
fn check_row(
    row: &SlacRow,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<(u32, BoundFile<AuthorizationData>), String> {
    let count: u32 = row
        .count
        .parse()
        .ok()
        .filter(|c| (1..=10_000).contains(c))
        .ok_or_else(|| format!("count '{}' is not a number from 1 to 10000", row.count))?;
    let code = verify_authorization(&row.authorization_code, verifier, now)
        .map_err(|e| format!("authorization_code: {e}"))?;
    if code.sudi.udi_pid != row.udi_pid || code.sudi.udi_serial_number != row.udi_serial_number {
        return Err(format!(
            "the code is for {}, not for PID:{},SN:{}",
            code.sudi, row.udi_pid, row.udi_serial_number
        ));
    }
    let Some(entitlement) = code
        .data
        .entitlements
        .iter()
        .find(|e| e.tag == row.entitlement_tag)
    else {
        return Err(format!(
            "the code does not authorize {}",
            row.entitlement_tag
        ));
    };
    if entitlement.count != count {
        return Err(format!(
            "the code authorizes {} of {}, the row says {count}",
            entitlement.count, row.entitlement_tag
        ));
    }
    Ok((count, code))
}

/// A row whose code checked: the row, its count and the code's confirmation code.
type CheckedRow = (SlacRow, u32, String);

/// Reads the file's rows; a row that cannot be read or whose code does not check is an error
/// naming its line.
fn read_rows(
    file: impl Read,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> AppResult<Vec<CsvRow<CheckedRow>>> {
    let rows = csv_rows::<SlacRow>(file, MAX_ROWS, |headers| {
        if headers.iter().collect::<Vec<_>>() == SLAC_COLUMNS {
            return Ok(());
        }
        Err(AppError::invalid(format!(
            "the CSV header must be: {}",
            SLAC_COLUMNS.join(",")
        )))
    })?;
    Ok(rows
        .into_iter()
        .map(|(line, row)| {
            let checked = row.and_then(|row| {
                let (count, code) = check_row(&row, verifier, now)?;
                Ok((row, count, code.data.confirm_code))
            });
            (line, checked)
        })
        .collect())
}

/// Imports a SLAC CSV into `account`: codes of devices not in the inventory draw on LVA
/// `default_lva`'s pools.
pub async fn import_csv(
    conn: &mut AsyncPgConnection,
    verifier: &SignatureVerifier,
    account: AccountId,
    default_lva: i32,
    file: impl Read,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<SlacImported> {
    let account = accounts::find_account(conn, account)
        .await
        .or_not_found("account")?;
    crate::accounts::require_active(&account)?;
    let lvas = accounts::list_lvas(conn, account.id).await?;
    let Some(fallback) = lvas.iter().find(|l| l.number == default_lva) else {
        return Err(AppError::invalid(format!(
            "local virtual account {default_lva} does not exist"
        )));
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (line, row) in read_rows(file, verifier, now)? {
        match row {
            Ok(row) => rows.push(import_row(conn, account.id, &lvas, fallback, line, row).await?),
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if !errors.is_empty() {
        return Err(rows_refused(errors));
    }
    if rows.is_empty() {
        return Err(AppError::invalid("the file has no rows below its header"));
    }
    // A refused row rolls the whole import back.
    let imported = conn
        .transaction::<_, AppError, _>(async |conn| {
            authorizations::import(conn, account.id, &rows, now)
                .await?
                .map_err(rows_refused)
        })
        .await?;
    let already = rows.len() - imported;
    let detail = json!({ "rows": rows.len(), "imported": imported, "already_imported": already });
    let event = NewEvent::account(
        account.id,
        actor,
        "authorization.import",
        EventResult::Ok,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    Ok(SlacImported {
        imported,
        already_imported: already,
    })
}

/// A checked row, with the pool it draws on: its device's LVA, or the fallback for a device
/// not in the inventory yet.
async fn import_row(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    lvas: &[LocalVirtualAccount],
    fallback: &LocalVirtualAccount,
    line: usize,
    (row, count, confirm_code): CheckedRow,
) -> AppResult<ImportRow> {
    let key = UdiKey {
        account_id: account,
        pid: &row.udi_pid,
        serial: &row.udi_serial_number,
    };
    let pi = product_instances::find_by_udi(conn, key).await?;
    let lva = pi
        .as_ref()
        .and_then(|p| lvas.iter().find(|l| l.id == p.lva_id))
        .unwrap_or(fallback);
    Ok(ImportRow {
        line,
        lva: (lva.id, lva.number),
        pi: pi.map(|p| p.id),
        code: Issued {
            udi_pid: row.udi_pid,
            udi_serial_number: row.udi_serial_number,
            entitlement_tag: row.entitlement_tag,
            file: row.authorization_code,
            confirm_code,
        },
        count: i32::try_from(count).unwrap_or(i32::MAX),
    })
}
