//! RUM reports, the usage derived from them, and the poll ids handed to devices.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::enums::ReportSource;
use crate::ids::{AccountId, DevicePollId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::{device_polls, rum_reports};

/// Rows per multi-row insert: 11 parameters a row stays far below PostgreSQL's 65,535.
const INSERT_CHUNK: usize = 2000;

/// A report to store. `payload` is the exact signed string.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rum_reports)]
pub struct NewRumReport {
    /// Account.
    pub account_id: AccountId,
    /// Device.
    pub pi_id: ProductInstanceId,
    /// The device's report id.
    pub report_id: i64,
    /// The signed payload, byte for byte.
    pub payload: String,
    /// The device's signature object.
    pub signature: Value,
    /// The envelope header, if any.
    pub header: Option<Value>,
    /// Entitlement measured.
    pub entitlement_tag: Option<String>,
    /// Telemetry: stored and forwarded, never counted.
    pub telemetry: bool,
    /// How it arrived.
    pub source: ReportSource,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// Stores reports, skipping any already stored for the same device and report id. Returns the
/// report ids that were new.
pub async fn insert_reports(
    conn: &mut AsyncPgConnection,
    reports: &[NewRumReport],
) -> Result<Vec<i64>, DbError> {
    let mut inserted = Vec::with_capacity(reports.len());
    for chunk in reports.chunks(INSERT_CHUNK) {
        let ids: Vec<i64> = diesel::insert_into(rum_reports::table)
            .values(chunk)
            .on_conflict((rum_reports::pi_id, rum_reports::report_id))
            .do_nothing()
            .returning(rum_reports::report_id)
            .get_results(conn)
            .await?;
        inserted.extend(ids);
    }
    // The latest report of each device, for its reporting deadlines.
    let mut latest: Vec<(ProductInstanceId, DateTime<Utc>)> = Vec::new();
    for report in reports {
        match latest.iter_mut().find(|(pi, _)| *pi == report.pi_id) {
            Some((_, at)) => *at = (*at).max(report.received_at),
            None => latest.push((report.pi_id, report.received_at)),
        }
    }
    for (pi, at) in latest {
        diesel::update(crate::schema::product_instances::table.find(pi))
            .set(
                crate::schema::product_instances::last_report_at.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<Timestamptz>,
                >(
                    "greatest(last_report_at, "
                )
                .bind::<Timestamptz, _>(at)
                .sql(")")),
            )
            .execute(conn)
            .await?;
    }
    Ok(inserted)
}

/// The latest count of one entitlement on one device.
#[derive(Debug, Clone)]
pub struct UsageSample {
    /// Account.
    pub account_id: AccountId,
    /// Device.
    pub pi_id: ProductInstanceId,
    /// Entitlement.
    pub entitlement_tag: String,
    /// Count in use.
    pub count: i64,
    /// End of the measurement.
    pub measured_until: DateTime<Utc>,
}

/// Records a count unless a later measurement is already stored (reports may arrive out of
/// order; the measurement with the latest end time wins).
pub async fn record_usage(
    conn: &mut AsyncPgConnection,
    sample: &UsageSample,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    // One statement: the count before, the upsert, and the PI's usage history (first
    // consumption; the latest change and the entitlements it concerned) for the deadline rules.
    diesel::sql_query(
        "WITH previous AS (
             SELECT count FROM entitlement_usage WHERE pi_id = $2 AND entitlement_tag = $3
         ), stored AS (
             INSERT INTO entitlement_usage (account_id, pi_id, entitlement_tag, count, measured_until, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (pi_id, entitlement_tag) DO UPDATE
             SET count = EXCLUDED.count, measured_until = EXCLUDED.measured_until, updated_at = EXCLUDED.updated_at
             WHERE entitlement_usage.measured_until <= EXCLUDED.measured_until
             RETURNING 1
         ), changed AS (
             SELECT EXISTS (SELECT 1 FROM stored)
                    AND coalesce((SELECT count FROM previous), 0) <> $4 AS yes
         )
         UPDATE product_instances p SET
             first_consumed_at = CASE WHEN $4 > 0 THEN least(p.first_consumed_at, $5)
                                      ELSE p.first_consumed_at END,
             usage_change_tags = CASE
                 WHEN NOT (SELECT yes FROM changed) THEN p.usage_change_tags
                 WHEN p.usage_changed_at IS NULL OR $5 > p.usage_changed_at THEN ARRAY[$3]
                 WHEN $5 = p.usage_changed_at AND NOT $3 = ANY(p.usage_change_tags)
                     THEN array_append(p.usage_change_tags, $3)
                 ELSE p.usage_change_tags END,
             usage_changed_at = CASE WHEN (SELECT yes FROM changed)
                                     THEN greatest(p.usage_changed_at, $5)
                                                                          ELSE p.usage_changed_at END
         WHERE p.id = $2
           -- Most samples change nothing: no row version is written for them.
           AND (($4 > 0 AND (p.first_consumed_at IS NULL OR $5 < p.first_consumed_at))
                OR (SELECT yes FROM changed))",
    )
    .bind::<SqlUuid, _>(sample.account_id)
    .bind::<SqlUuid, _>(sample.pi_id)
    .bind::<Text, _>(&sample.entitlement_tag)
    .bind::<BigInt, _>(sample.count)
    .bind::<Timestamptz, _>(sample.measured_until)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Current usage of a device: (entitlement tag, count).
pub async fn usage_of(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Vec<(String, i64)>, DbError> {
    use crate::schema::entitlement_usage as u;
    Ok(u::table
        .filter(u::account_id.eq(account))
        .filter(u::pi_id.eq(pi))
        .order(u::entitlement_tag)
        .select((u::entitlement_tag, u::count))
        .load(conn)
        .await?)
}

/// Records the poll id handed to a device and the reports it covers.
pub async fn create_device_poll(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    report_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<DevicePollId, DbError> {
    let id = DevicePollId::new();
    diesel::insert_into(device_polls::table)
        .values((
            device_polls::id.eq(id),
            device_polls::account_id.eq(account),
            device_polls::pi_id.eq(pi),
            device_polls::report_ids.eq(report_ids),
            device_polls::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Records the poll id handed to a device for an authorization request.
pub async fn create_authorization_poll(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    request: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<DevicePollId, DbError> {
    let id = DevicePollId::new();
    diesel::insert_into(device_polls::table)
        .values((
            device_polls::id.eq(id),
            device_polls::account_id.eq(account),
            device_polls::pi_id.eq(pi),
            device_polls::report_ids.eq(Vec::<i64>::new()),
            device_polls::authorization_request.eq(request),
            device_polls::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// What a poll id handed to a device stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// The ACK of these reports.
    Reports(Vec<i64>),
    /// The codes of this authorization request.
    Authorization(uuid::Uuid),
}

/// What a poll this device was given stands for; `None` for anyone else's poll id.
pub async fn device_poll(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    poll: DevicePollId,
) -> Result<Option<DevicePoll>, DbError> {
    let row: Option<(Vec<i64>, Option<uuid::Uuid>)> = device_polls::table
        .filter(device_polls::id.eq(poll))
        .filter(device_polls::pi_id.eq(pi))
        .select((
            device_polls::report_ids,
            device_polls::authorization_request,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(reports, request)| match request {
        Some(request) => DevicePoll::Authorization(request),
        None => DevicePoll::Reports(reports),
    }))
}

/// How many of these reports of a device are not acknowledged yet.
pub async fn count_unacknowledged(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    report_ids: &[i64],
) -> Result<i64, DbError> {
    Ok(rum_reports::table
        .filter(rum_reports::pi_id.eq(pi))
        .filter(rum_reports::report_id.eq_any(report_ids))
        .filter(rum_reports::acked_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// A stored report, as listed for an account.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rum_reports, check_for_backend(diesel::pg::Pg))]
pub struct StoredReport {
    /// Row id.
    pub id: i64,
    /// Device.
    pub pi_id: ProductInstanceId,
    /// The device's report id.
    pub report_id: i64,
    /// The exact payload.
    pub payload: String,
    /// How it arrived.
    pub source: ReportSource,
    /// When.
    pub received_at: DateTime<Utc>,
    /// When sent to CSSM.
    pub uploaded_at: Option<DateTime<Utc>>,
    /// When acknowledged.
    pub acked_at: Option<DateTime<Utc>>,
}

/// Every report of an account, oldest first.
pub async fn list_reports(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<StoredReport>, DbError> {
    Ok(rum_reports::table
        .filter(rum_reports::account_id.eq(account))
        .order(rum_reports::id)
        .select(StoredReport::as_select())
        .load(conn)
        .await?)
}

/// How many reports of a device are not acknowledged yet.
pub async fn count_unacknowledged_of_pi(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
) -> Result<i64, DbError> {
    Ok(rum_reports::table
        .filter(rum_reports::pi_id.eq(pi))
        .filter(rum_reports::acked_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// A report as the PI detail lists it (without its payload).
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = rum_reports, check_for_backend(diesel::pg::Pg))]
pub struct ReportSummary {
    /// The device's report id.
    pub report_id: i64,
    /// Entitlement it measures, if one.
    pub entitlement_tag: Option<String>,
    /// How it arrived.
    pub source: ReportSource,
    /// When.
    pub received_at: DateTime<Utc>,
    /// When sent to CSSM.
    pub uploaded_at: Option<DateTime<Utc>>,
    /// When exported to a file.
    pub exported_at: Option<DateTime<Utc>>,
    /// When acknowledged.
    pub acked_at: Option<DateTime<Utc>>,
}

/// The latest `limit` reports of a device, newest first.
pub async fn recent_of_pi(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    limit: i64,
) -> Result<Vec<ReportSummary>, DbError> {
    Ok(rum_reports::table
        .filter(rum_reports::account_id.eq(account))
        .filter(rum_reports::pi_id.eq(pi))
        .order(rum_reports::id.desc())
        .limit(limit)
        .select(ReportSummary::as_select())
        .load(conn)
        .await?)
}
