//! Purchased license quantities per LVA, synced down from CSSM.

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Integer, Nullable, Text, Uuid as SqlUuid};
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

/// Quantities of each entitlement held by the account's LVAs other than `lva` (moved there by
/// transfers): a sync gives the default LVA what CSSM lists minus these.
pub async fn held_outside(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    lva: LvaId,
) -> Result<HashMap<String, i64>, DbError> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = Text)]
        entitlement_tag: String,
        #[diesel(sql_type = BigInt)]
        quantity: i64,
    }
    let rows: Vec<Held> = diesel::sql_query(
        "SELECT entitlement_tag, sum(quantity)::bigint AS quantity FROM licenses
         WHERE account_id = $1 AND lva_id <> $2 GROUP BY entitlement_tag",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(lva)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.entitlement_tag, r.quantity))
        .collect())
}

/// One entitlement in one LVA: purchased, in use, and the shortfall.
#[derive(Debug, Clone, QueryableByName, Serialize)]
pub struct Position {
    /// LVA number.
    #[diesel(sql_type = Integer)]
    pub lva_number: i32,
    /// Entitlement tag.
    #[diesel(sql_type = Text)]
    pub entitlement_tag: String,
    /// Display name (`None` for usage of an entitlement never purchased).
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    /// Enforcement type.
    #[diesel(sql_type = Nullable<Text>)]
    pub enforcement: Option<String>,
    /// Term.
    #[diesel(sql_type = Nullable<Text>)]
    pub term: Option<String>,
    /// Subscription end.
    #[diesel(sql_type = Nullable<Date>)]
    pub end_date: Option<NaiveDate>,
    /// Purchased quantity held by this LVA.
    #[diesel(sql_type = BigInt)]
    pub purchased: i64,
    /// Current use by this LVA's PIs (from their latest RUM measurements).
    #[diesel(sql_type = BigInt)]
    pub in_use: i64,
    /// In use beyond purchased (0 when covered).
    #[diesel(sql_type = BigInt)]
    pub shortfall: i64,
}

/// The license positions of an account, per LVA and entitlement.
pub async fn positions(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Position>, DbError> {
    Ok(diesel::sql_query(
        "WITH lic AS (SELECT * FROM licenses WHERE account_id = $1),
              used AS (SELECT p.lva_id, u.entitlement_tag, sum(u.count)::bigint AS in_use
                       FROM entitlement_usage u JOIN product_instances p ON p.id = u.pi_id
                       WHERE u.account_id = $1 GROUP BY 1, 2)
         SELECT l.number AS lva_number,
                coalesce(lic.entitlement_tag, used.entitlement_tag) AS entitlement_tag,
                lic.name, lic.enforcement, lic.term, lic.end_date,
                coalesce(lic.quantity, 0) AS purchased,
                coalesce(used.in_use, 0) AS in_use,
                greatest(coalesce(used.in_use, 0) - coalesce(lic.quantity, 0), 0) AS shortfall
         FROM lic FULL JOIN used
              ON used.lva_id = lic.lva_id AND used.entitlement_tag = lic.entitlement_tag
         JOIN local_virtual_accounts l ON l.id = coalesce(lic.lva_id, used.lva_id)
         ORDER BY l.number, 2",
    )
    .bind::<SqlUuid, _>(account)
    .load(conn)
    .await?)
}

/// Why a license transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferRefusal {
    /// The source LVA holds none of this entitlement.
    NotHeld,
    /// It holds fewer than asked.
    Insufficient {
        /// What it holds.
        available: i64,
    },
}

/// Moves `quantity` of an entitlement from one LVA to another of the same account; never
/// below zero.
pub async fn transfer(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    tag: &str,
    from: LvaId,
    to: LvaId,
    quantity: i64,
) -> Result<Result<(), TransferRefusal>, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let source: Option<License> = licenses::table
            .filter(licenses::account_id.eq(account))
            .filter(licenses::lva_id.eq(from))
            .filter(licenses::entitlement_tag.eq(tag))
            .for_update()
            .select(License::as_select())
            .first(conn)
            .await
            .optional()?;
        let Some(source) = source else {
            return Ok(Err(TransferRefusal::NotHeld));
        };
        if source.quantity < quantity {
            return Ok(Err(TransferRefusal::Insufficient {
                available: source.quantity,
            }));
        }
        diesel::update(
            licenses::table
                .filter(licenses::lva_id.eq(from))
                .filter(licenses::entitlement_tag.eq(tag)),
        )
        .set(licenses::quantity.eq(licenses::quantity - quantity))
        .execute(conn)
        .await?;
        let target = License {
            lva_id: to,
            quantity,
            ..source
        };
        diesel::insert_into(licenses::table)
            .values(&target)
            .on_conflict((licenses::lva_id, licenses::entitlement_tag))
            .do_update()
            .set(licenses::quantity.eq(licenses::quantity + quantity))
            .execute(conn)
            .await?;
        Ok(Ok(()))
    })
    .await
}
