//! Reading reports for "Export Usage to Cisco", device by device in pages (memory stays flat
//! whatever the number of reports), and marking them exported.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::rum_reports;

/// Which reports an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Reports neither sent online, nor exported, nor acknowledged (the default).
    Unsent,
    /// Every report received since this time, whatever its state.
    Since(DateTime<Utc>),
}

impl Selection {
    /// The SQL condition on `r` (`rum_reports`); `$2` is the time of [`Selection::Since`].
    fn condition(self) -> &'static str {
        match self {
            Selection::Unsent => {
                "r.upload_id IS NULL AND r.exported_at IS NULL AND r.acked_at IS NULL"
            }
            Selection::Since(_) => "r.received_at >= $2",
        }
    }

    fn since(self) -> DateTime<Utc> {
        match self {
            Selection::Unsent => DateTime::UNIX_EPOCH,
            Selection::Since(t) => t,
        }
    }
}

/// A report to export with what the device file and manifest need.
#[derive(Debug, Clone, QueryableByName)]
pub struct ExportRow {
    /// Row id.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// Device.
    #[diesel(sql_type = SqlUuid)]
    pub pi_id: ProductInstanceId,
    /// The exact payload.
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// The device's signature.
    #[diesel(sql_type = Jsonb)]
    pub signature: Value,
    /// The envelope header.
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub header: Option<Value>,
    /// The device's `sudi`.
    #[diesel(sql_type = Jsonb)]
    pub sudi: Value,
    /// Its hostname.
    #[diesel(sql_type = Nullable<Text>)]
    pub hostname: Option<String>,
    /// Its software tag.
    #[diesel(sql_type = Nullable<Text>)]
    pub software_tag: Option<String>,
    /// SA mapping of the device, else of its LVA.
    #[diesel(sql_type = Nullable<Text>)]
    pub mapped_smart_account: Option<String>,
    /// VA mapping of the device, else of its LVA.
    #[diesel(sql_type = Nullable<Text>)]
    pub mapped_virtual_account: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// How many reports an export would carry.
pub async fn count(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    selection: Selection,
) -> Result<i64, DbError> {
    let sql = format!(
        "SELECT count(*) AS count FROM rum_reports r WHERE r.account_id = $1 AND {}",
        selection.condition()
    );
    let query = diesel::sql_query(sql).bind::<SqlUuid, _>(account);
    let row: Count = match selection {
        Selection::Unsent => query.get_result(conn).await?,
        Selection::Since(_) => {
            query
                .bind::<Timestamptz, _>(selection.since())
                .get_result(conn)
                .await?
        }
    };
    Ok(row.count)
}

/// The next `limit` reports after `after` (device, row id), ordered by device then row.
pub async fn page(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    selection: Selection,
    after: (ProductInstanceId, i64),
    limit: i64,
) -> Result<Vec<ExportRow>, DbError> {
    // The selection's time is always bound as $2 so the placeholders keep their numbers.
    let sql = format!(
        "SELECT r.id, r.pi_id, r.payload, r.signature, r.header, pi.sudi, pi.hostname, pi.software_tag,
                coalesce(pi.smart_account, lva.smart_account) AS mapped_smart_account,
                coalesce(pi.virtual_account, lva.virtual_account) AS mapped_virtual_account
         FROM rum_reports r
         JOIN product_instances pi ON pi.id = r.pi_id
         JOIN local_virtual_accounts lva ON lva.id = pi.lva_id
         WHERE r.account_id = $1 AND ($2::timestamptz IS NOT NULL) AND {}
           AND (r.pi_id, r.id) > ($3, $4)
         ORDER BY r.pi_id, r.id
         LIMIT $5",
        selection.condition()
    );
    Ok(diesel::sql_query(sql)
        .bind::<SqlUuid, _>(account)
        .bind::<Timestamptz, _>(selection.since())
        .bind::<SqlUuid, _>(after.0)
        .bind::<BigInt, _>(after.1)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?)
}

/// Marks reports exported (not acknowledged: that takes CSSM's ACK).
pub async fn mark_exported(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    row_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    let mut marked = 0;
    for chunk in row_ids.chunks(10_000) {
        marked += diesel::update(
            rum_reports::table
                .filter(rum_reports::account_id.eq(account))
                .filter(rum_reports::id.eq_any(chunk)),
        )
        .set(rum_reports::exported_at.eq(now))
        .execute(conn)
        .await?;
    }
    Ok(marked)
}
