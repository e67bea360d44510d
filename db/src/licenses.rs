//! Purchased license quantities per LVA, synced down from CSSM.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::ids::{AccountId, LvaId};
use crate::pool::DbError;
use crate::schema::licenses;

/// A license pool row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = licenses, check_for_backend(diesel::pg::Pg))]
pub struct License {
    /// Account.
    #[serde(skip)]
    pub account_id: AccountId,
    /// LVA holding the quantity.
    pub lva_id: LvaId,
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// Display name.
    pub name: String,
    /// Quantity purchased.
    pub quantity: i64,
    /// `unenforced`, `enforced`, `export_controlled`.
    pub enforcement: String,
    /// `perpetual`, `subscription`.
    pub term: String,
    /// Subscription end.
    pub end_date: Option<NaiveDate>,
    /// When synced.
    pub synced_at: DateTime<Utc>,
}

/// Replaces the licenses of an LVA with what CSSM lists.
pub async fn replace_for_lva(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    lva: LvaId,
    rows: &[License],
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::delete(
            licenses::table
                .filter(licenses::account_id.eq(account))
                .filter(licenses::lva_id.eq(lva)),
        )
        .execute(conn)
        .await?;
        if !rows.is_empty() {
            diesel::insert_into(licenses::table)
                .values(rows)
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await
}

/// The licenses of an account.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<License>, DbError> {
    Ok(licenses::table
        .filter(licenses::account_id.eq(account))
        .order((licenses::lva_id, licenses::entitlement_tag))
        .select(License::as_select())
        .load(conn)
        .await?)
}
