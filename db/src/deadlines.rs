//! What the deadline sweep reads: each product instance's usage history, the policy in force for
//! it, and the kinds of the licenses it uses (`outpost_core::deadlines` computes from these).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use outpost_core::deadlines::{LicenseKind, UsageHistory};
use outpost_core::signed_file::PolicyData;
use serde_json::Value;

use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;

/// One PI as the deadline rules see it.
#[derive(Debug, Clone, QueryableByName)]
pub struct PiHistory {
    /// The PI.
    #[diesel(sql_type = SqlUuid)]
    pub id: ProductInstanceId,
    /// First consumption of a license.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub first_consumed_at: Option<DateTime<Utc>>,
    /// Latest usage change.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub usage_changed_at: Option<DateTime<Utc>>,
    /// Entitlements of that change.
    #[diesel(sql_type = Array<Text>)]
    pub usage_change_tags: Vec<String>,
    /// Latest report.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_report_at: Option<DateTime<Utc>>,
    /// Policy CSSM sent for it; `None`: Cisco default.
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub policy: Option<Value>,
    /// Entitlements it uses now.
    #[diesel(sql_type = Array<Text>)]
    pub tags_in_use: Vec<String>,
    /// Its oldest report CSSM has not acknowledged.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest_unacked_at: Option<DateTime<Utc>>,
}

impl PiHistory {
    /// The policy in force: the one CSSM sent for the PI, else Cisco's default.
    pub fn policy(&self) -> PolicyData {
        self.policy
            .clone()
            .and_then(|p| serde_json::from_value::<PolicyData>(p).ok())
            .unwrap_or_else(PolicyData::cisco_default)
    }

    /// The history as the deadline rules take it; `kinds` is [`license_kinds`] of the account
    /// (an entitlement it holds no license of counts as unenforced perpetual).
    pub fn usage(&self, kinds: &HashMap<String, (String, String)>) -> UsageHistory {
        let kind_of = |tag: &String| {
            kinds
                .get(tag)
                .map_or(LicenseKind::Perpetual, |(e, t)| LicenseKind::of(e, t))
        };
        UsageHistory {
            kinds_in_use: self.tags_in_use.iter().map(kind_of).collect(),
            first_consumed_at: self.first_consumed_at,
            last_change_at: self.usage_changed_at,
            kinds_in_change: self.usage_change_tags.iter().map(kind_of).collect(),
            last_report_at: self.last_report_at,
            oldest_unacked_report_at: self.oldest_unacked_at,
        }
    }
}

/// The columns of a [`PiHistory`], read from `product_instances p`.
const HISTORY: &str = "SELECT p.id, p.first_consumed_at, p.usage_changed_at, p.usage_change_tags,
        p.last_report_at, p.policy,
        coalesce((SELECT array_agg(u.entitlement_tag) FROM entitlement_usage u
                  WHERE u.pi_id = p.id AND u.count > 0), '{}') AS tags_in_use,
        (SELECT min(r.received_at) FROM rum_reports r
         WHERE r.account_id = p.account_id AND r.pi_id = p.id AND r.acked_at IS NULL)
            AS oldest_unacked_at
     FROM product_instances p";

/// Up to `limit` PIs of an account that ever consumed a license, after `after` in id order.
pub async fn histories(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    after: ProductInstanceId,
    limit: i64,
) -> Result<Vec<PiHistory>, DbError> {
    Ok(diesel::sql_query(format!(
        "{HISTORY} WHERE p.account_id = $1 AND p.id > $2 AND p.first_consumed_at IS NOT NULL
           AND p.ha_active_pi IS NULL -- a member of an HA set reports through its active
         ORDER BY p.id LIMIT $3"
    ))
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// One PI's history; `None` if it never consumed a license (or is not the account's).
pub async fn history_of(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Option<PiHistory>, DbError> {
    Ok(diesel::sql_query(format!(
        "{HISTORY} WHERE p.account_id = $1 AND p.id = $2 AND p.first_consumed_at IS NOT NULL"
    ))
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(pi)
    .get_result(conn)
    .await
    .optional()?)
}

#[derive(QueryableByName)]
struct TagKind {
    #[diesel(sql_type = Text)]
    entitlement_tag: String,
    #[diesel(sql_type = Text)]
    enforcement: String,
    #[diesel(sql_type = Text)]
    term: String,
}

/// Enforcement type and term of each entitlement the account holds licenses of.
pub async fn license_kinds(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<HashMap<String, (String, String)>, DbError> {
    let rows: Vec<TagKind> = diesel::sql_query(
        "SELECT DISTINCT ON (entitlement_tag) entitlement_tag, enforcement, term
         FROM licenses WHERE account_id = $1 ORDER BY entitlement_tag, synced_at DESC",
    )
    .bind::<SqlUuid, _>(account)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.entitlement_tag, (r.enforcement, r.term)))
        .collect())
}
