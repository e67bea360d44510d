//! Alerts: the status lines of a PI (or of an account when `pi` is `None`). At most one open
//! alert per kind; raising it again refreshes it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::enums::Severity;
use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::alerts;

/// Kinds of alert Outpost raises.
pub mod kinds {
    /// A device sent usage.
    pub const USAGE_REPORT: &str = "usage_report_received";
    /// CSSM acknowledged a device's reports.
    pub const ACK_RECEIVED: &str = "ack_received";
    /// A device was refused by device validation.
    pub const DEVICE_REJECTED: &str = "device_rejected";
    /// The last CSSM sync of the account failed.
    pub const SYNC_FAILED: &str = "cssm_sync_failed";
    /// A device's next report is due soon.
    pub const REPORTING_DUE: &str = "reporting_due";
    /// A device's report is overdue.
    pub const REPORTING_OVERDUE: &str = "reporting_overdue";
    /// CSSM's ACK for a device's report is overdue.
    pub const ACK_OVERDUE: &str = "ack_overdue";
    /// Summary on the account: some of its devices are overdue.
    pub const ACCOUNT_OVERDUE: &str = "account_reporting_overdue";
    /// Outpost could not pull from a device (unreachable, authentication, bad response).
    pub const PULL_FAILED: &str = "pull_failed";
    /// A device uses an enforced or export-controlled license without an installed SLAC.
    pub const AUTHORIZATION_MISSING: &str = "authorization_missing";
}

/// An alert row.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alerts, check_for_backend(diesel::pg::Pg))]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// Account.
    #[serde(skip)]
    pub account_id: AccountId,
    /// Device, if a device alert.
    pub pi_id: Option<ProductInstanceId>,
    /// Kind (see [`kinds`]).
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// The line shown.
    pub message: String,
    /// First raised.
    pub raised_at: DateTime<Utc>,
    /// Last raised.
    pub updated_at: DateTime<Utc>,
    /// Cleared, if it is.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// Locks the PI an alert belongs to before the alert changes. The trigger that keeps
/// `product_instances.has_open_alert` locks it too; taking the PI first, as the device path does
/// when it updates the PI, keeps every writer in the same order (PI, then alert), so a sync
/// clearing an alert and a device raising it cannot deadlock.
pub(crate) async fn lock_pi(
    conn: &mut AsyncPgConnection,
    pi: Option<ProductInstanceId>,
) -> Result<(), DbError> {
    if let Some(pi) = pi {
        diesel::sql_query("SELECT 1 FROM product_instances WHERE id = $1 FOR UPDATE")
            .bind::<SqlUuid, _>(pi)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Raises (or refreshes) an alert.
pub async fn raise(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: Option<ProductInstanceId>,
    kind: &str,
    severity: Severity,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    // The alert and its webhook deliveries commit together (a savepoint inside a caller's
    // transaction).
    conn.transaction::<_, DbError, _>(async |conn| {
        raise_now(conn, account, pi, kind, severity, message, now).await
    })
    .await
}

async fn raise_now(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: Option<ProductInstanceId>,
    kind: &str,
    severity: Severity,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    lock_pi(conn, pi).await?;
    // `xmax = 0` tells a fresh row from a refreshed one: only a new alert goes to webhooks.
    let row: Raised = diesel::sql_query(
        "INSERT INTO alerts (account_id, pi_id, kind, severity, message, raised_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (account_id, pi_id, kind) WHERE cleared_at IS NULL DO UPDATE
         SET severity = EXCLUDED.severity, message = EXCLUDED.message, updated_at = EXCLUDED.updated_at
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<Nullable<SqlUuid>, _>(pi)
    .bind::<Text, _>(kind)
    .bind::<Text, _>(severity)
    .bind::<Text, _>(message)
    .bind::<Timestamptz, _>(now)
    .get_result(conn)
    .await?;
    if row.inserted {
        crate::webhooks::alert_raised(conn, account, pi, row.id, now).await?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Raised {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    inserted: bool,
}

/// Clears an open alert, if there is one.
pub async fn clear(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: Option<ProductInstanceId>,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    lock_pi(conn, pi).await?;
    let open = alerts::table
        .filter(alerts::account_id.eq(account))
        .filter(alerts::kind.eq(kind))
        .filter(alerts::cleared_at.is_null());
    let cleared = match pi {
        Some(pi) => {
            diesel::update(open.filter(alerts::pi_id.eq(pi)))
                .set(alerts::cleared_at.eq(now))
                .execute(conn)
                .await
        }
        None => {
            diesel::update(open.filter(alerts::pi_id.is_null()))
                .set(alerts::cleared_at.eq(now))
                .execute(conn)
                .await
        }
    };
    cleared?;
    Ok(())
}

/// Open alerts of an account, newest first.
pub async fn list_open(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Alert>, DbError> {
    Ok(alerts::table
        .filter(alerts::account_id.eq(account))
        .filter(alerts::cleared_at.is_null())
        .order(alerts::updated_at.desc())
        .select(Alert::as_select())
        .load(conn)
        .await?)
}

/// Open alerts of one device, newest first.
pub async fn open_of_pi(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Vec<Alert>, DbError> {
    Ok(alerts::table
        .filter(alerts::account_id.eq(account))
        .filter(alerts::pi_id.eq(pi))
        .filter(alerts::cleared_at.is_null())
        .order(alerts::updated_at.desc())
        .select(Alert::as_select())
        .load(conn)
        .await?)
}
