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

/// Serialises changes of an account's license pools (a sync and a transfer would otherwise
/// lock rows in opposite orders, or a sync would recompute around a transfer in flight).
async fn lock_pools(conn: &mut AsyncPgConnection, account: AccountId) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('outpost:licenses:' || $1::text))")
        .bind::<Text, _>(account.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies the license list CSSM gave (one row per entitlement, quantities as purchased) to an
/// account, in one transaction under row locks (a transfer cannot slip in between):
/// - quantities transferred to other LVAs stay there, refreshed with CSSM's name, type and
///   term, but never more than CSSM still lists: when CSSM lowers or drops an entitlement, the
///   LVAs created last give back first;
/// - the default LVA holds the rest.
///
/// Returns how many entitlements CSSM listed.
pub async fn apply_cssm_totals(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    default_lva: LvaId,
    listed: &[License],
) -> Result<usize, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        lock_pools(conn, account).await?;
        let mut others: Vec<License> = licenses::table
            .filter(licenses::account_id.eq(account))
            .filter(licenses::lva_id.ne(default_lva))
            // LVA ids are time-ordered: newest first gives back first.
            .order((licenses::entitlement_tag, licenses::lva_id.desc()))
            .for_update()
            .select(License::as_select())
            .load(conn)
            .await?;
        let mut held: HashMap<String, i64> = HashMap::new();
        for row in &others {
            *held.entry(row.entitlement_tag.clone()).or_default() += row.quantity;
        }
        for row in &mut others {
            let listed_row = listed
                .iter()
                .find(|l| l.entitlement_tag == row.entitlement_tag);
            let total = listed_row.map_or(0, |l| l.quantity);
            let sum = held.get(&row.entitlement_tag).copied().unwrap_or(0);
            let excess = sum.saturating_sub(total).max(0);
            let give_back = excess.min(row.quantity);
            row.quantity -= give_back;
            held.insert(row.entitlement_tag.clone(), sum - give_back);
            if let Some(l) = listed_row {
                row.name.clone_from(&l.name);
                row.enforcement.clone_from(&l.enforcement);
                row.term.clone_from(&l.term);
                row.end_date = l.end_date;
                row.synced_at = l.synced_at;
            }
        }
        diesel::delete(licenses::table.filter(licenses::account_id.eq(account)))
            .execute(conn)
            .await?;
        let mut rows: Vec<License> = others
            .into_iter()
            .filter(|r| {
                r.quantity > 0
                    || listed
                        .iter()
                        .any(|l| l.entitlement_tag == r.entitlement_tag)
            })
            .collect();
        for l in listed {
            let elsewhere = held.get(&l.entitlement_tag).copied().unwrap_or(0);
            rows.push(License {
                lva_id: default_lva,
                quantity: l.quantity.saturating_sub(elsewhere).max(0),
                ..l.clone()
            });
        }
        for chunk in rows.chunks(1000) {
            diesel::insert_into(licenses::table)
                .values(chunk)
                .execute(conn)
                .await?;
        }
        Ok(listed.len())
    })
    .await
}

/// One entitlement in one LVA: purchased, in use, and the shortfall.
#[derive(Debug, Clone, QueryableByName, Serialize, utoipa::ToSchema)]
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
    /// Held by authorization codes (SLAC) requested, issued or installed.
    #[diesel(sql_type = BigInt)]
    pub authorized: i64,
    /// Still free for authorization codes: purchased minus authorized.
    #[diesel(sql_type = BigInt)]
    pub authorizable: i64,
}

/// The license positions of an account, per LVA and entitlement.
pub async fn positions(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Position>, DbError> {
    Ok(diesel::sql_query(
        "WITH lic AS (SELECT * FROM licenses WHERE account_id = $1),
              -- Only the PI reporting for an HA set counts; its members' usage is the set's.
              used AS (SELECT p.lva_id, u.entitlement_tag, sum(u.count)::bigint AS in_use
                       FROM entitlement_usage u JOIN product_instances p ON p.id = u.pi_id
                       WHERE u.account_id = $1 AND p.ha_active_pi IS NULL GROUP BY 1, 2)
         SELECT l.number AS lva_number,
                coalesce(lic.entitlement_tag, used.entitlement_tag) AS entitlement_tag,
                lic.name, lic.enforcement, lic.term, lic.end_date,
                coalesce(lic.quantity, 0) AS purchased,
                coalesce(used.in_use, 0) AS in_use,
                greatest(coalesce(used.in_use, 0) - coalesce(lic.quantity, 0), 0) AS shortfall,
                coalesce(authorization_held(lic.lva_id, lic.entitlement_tag), 0) AS authorized,
                greatest(coalesce(lic.quantity, 0)
                         - coalesce(authorization_held(lic.lva_id, lic.entitlement_tag), 0), 0) AS authorizable
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
        lock_pools(conn, account).await?;
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
        // Licenses held by authorization codes stay where the codes draw on them.
        let available = source.quantity - crate::authorizations::held_in(conn, from, tag).await?;
        if available < quantity {
            return Ok(Err(TransferRefusal::Insufficient {
                available: available.max(0),
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
