//! Webhooks: HTTPS endpoints an account registers to receive its alerts as JSON. Raising a new
//! alert writes one delivery per matching webhook and queues a job that sends it, signed, with
//! retries; every attempt is kept as the delivery log.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::ids::{AccountId, DeliveryId, ProductInstanceId, WebhookId};
use crate::jobs::{self, JobPayload, catalog::WebhookDelivery};
use crate::pool::DbError;
use crate::schema::{webhook_attempts, webhook_deliveries, webhooks};

/// Runs a delivery gets before it is marked failed.
pub const MAX_ATTEMPTS: i32 = 8;

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = webhooks, check_for_backend(diesel::pg::Pg))]
pub struct Webhook {
    /// Id.
    pub id: WebhookId,
    /// Account.
    #[serde(skip)]
    pub account_id: AccountId,
    /// The endpoint, `https://...`.
    pub url: String,
    /// Alert kinds sent; empty: every kind.
    pub kinds: Vec<String>,
    /// Whether events are sent.
    pub enabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Registers a webhook.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    url: &str,
    secret: &str,
    kinds: &[String],
    now: DateTime<Utc>,
) -> Result<Webhook, DbError> {
    Ok(diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(WebhookId::new()),
            webhooks::account_id.eq(account),
            webhooks::url.eq(url),
            webhooks::secret.eq(secret),
            webhooks::kinds.eq(kinds),
            webhooks::enabled.eq(true),
            webhooks::created_at.eq(now),
        ))
        .returning(Webhook::as_returning())
        .get_result(conn)
        .await?)
}

/// Every webhook's stored secret: (webhook, account, secret).
pub async fn secrets(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(WebhookId, AccountId, String)>, DbError> {
    Ok(webhooks::table
        .select((webhooks::id, webhooks::account_id, webhooks::secret))
        .load(conn)
        .await?)
}

/// Replaces a webhook's stored secret, only if it still is `old`.
pub async fn replace_secret(
    conn: &mut AsyncPgConnection,
    id: WebhookId,
    old: &str,
    new: &str,
) -> Result<(), DbError> {
    diesel::update(webhooks::table.find(id).filter(webhooks::secret.eq(old)))
        .set(webhooks::secret.eq(new))
        .execute(conn)
        .await?;
    Ok(())
}

/// The webhooks of an account, oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Webhook>, DbError> {
    Ok(webhooks::table
        .filter(webhooks::account_id.eq(account))
        .order(webhooks::created_at)
        .select(Webhook::as_select())
        .load(conn)
        .await?)
}

/// Removes a webhook and its log; `false` when the account has no such webhook.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: WebhookId,
) -> Result<bool, DbError> {
    let gone = diesel::delete(
        webhooks::table
            .filter(webhooks::account_id.eq(account))
            .filter(webhooks::id.eq(id)),
    )
    .execute(conn)
    .await?;
    Ok(gone > 0)
}

/// One attempt of a delivery, as the log shows it.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = webhook_attempts, check_for_backend(diesel::pg::Pg))]
pub struct Attempt {
    /// 1 for the first try.
    pub attempt: i32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// HTTP status the endpoint answered, if it answered.
    pub status_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i32,
}

/// A delivery with its attempts, for the log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryLog {
    /// Id (also the `X-Outpost-Delivery` header).
    pub id: DeliveryId,
    /// Event name, e.g. `alert.raised`.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// The JSON body sent.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, first first.
    pub attempts: Vec<Attempt>,
}

/// The latest deliveries of a webhook (at most `limit`), newest first, with their attempts.
pub async fn delivery_log(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    webhook: WebhookId,
    limit: i64,
) -> Result<Vec<DeliveryLog>, DbError> {
    type Row = (
        DeliveryId,
        String,
        String,
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = webhook_deliveries::table
        .filter(webhook_deliveries::account_id.eq(account))
        .filter(webhook_deliveries::webhook_id.eq(webhook))
        .order(webhook_deliveries::created_at.desc())
        .limit(limit)
        .select((
            webhook_deliveries::id,
            webhook_deliveries::event,
            webhook_deliveries::state,
            webhook_deliveries::body,
            webhook_deliveries::created_at,
            webhook_deliveries::delivered_at,
        ))
        .load(conn)
        .await?;
    let ids: Vec<DeliveryId> = rows.iter().map(|r| r.0).collect();
    let attempts: Vec<(DeliveryId, Attempt)> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(&ids))
        .order((webhook_attempts::delivery_id, webhook_attempts::attempt))
        .select((webhook_attempts::delivery_id, Attempt::as_select()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, event, state, body, created_at, delivered_at)| DeliveryLog {
                id,
                event,
                state,
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
                created_at,
                delivered_at,
                attempts: attempts
                    .iter()
                    .filter(|(d, _)| *d == id)
                    .map(|(_, a)| a.clone())
                    .collect(),
            },
        )
        .collect())
}

#[derive(QueryableByName)]
struct NewDelivery {
    #[diesel(sql_type = SqlUuid)]
    id: DeliveryId,
}

/// Writes an `alert.raised` delivery for every enabled webhook of the account that wants this
/// kind, and queues the jobs that send them. Part of the transaction that raised the alert, so
/// an alert and its deliveries exist together or not at all.
pub(crate) async fn alert_raised(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: Option<ProductInstanceId>,
    alert: i64,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let created: Vec<NewDelivery> = diesel::sql_query(
        "INSERT INTO webhook_deliveries (id, webhook_id, account_id, event, body, created_at)
         SELECT gen_random_uuid(), w.id, w.account_id, 'alert.raised',
                json_build_object(
                  'event', 'alert.raised',
                  'alert', json_build_object('id', al.id, 'kind', al.kind, 'severity', al.severity,
                                             'message', al.message, 'raised_at', al.raised_at),
                  'account', json_build_object('id', a.id, 'name', a.name),
                  'product_instance', CASE WHEN p.id IS NULL THEN NULL ELSE json_build_object(
                      'id', p.id, 'udi_pid', p.udi_pid, 'udi_serial_number', p.udi_serial_number,
                      'hostname', p.hostname) END
                )::text,
                $4
           FROM webhooks w
           JOIN local_accounts a ON a.id = w.account_id
           JOIN alerts al ON al.id = $3
           LEFT JOIN product_instances p ON p.id = $2
          WHERE w.account_id = $1 AND w.enabled
            AND (cardinality(w.kinds) = 0 OR al.kind = ANY (w.kinds))
         RETURNING id",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<Nullable<SqlUuid>, _>(pi)
    .bind::<Int8, _>(alert)
    .bind::<Timestamptz, _>(now)
    .load(conn)
    .await?;
    for delivery in created {
        let job = WebhookDelivery {
            account_id: account,
            delivery_id: delivery.id,
        }
        .job(now, MAX_ATTEMPTS);
        jobs::enqueue(conn, &job, now).await?;
    }
    Ok(())
}

/// What the delivery job needs: the endpoint, its key, the body.
#[derive(Debug, Clone, QueryableByName)]
pub struct Outgoing {
    /// The account whose webhook it is.
    #[diesel(sql_type = SqlUuid)]
    pub account_id: AccountId,
    /// The endpoint.
    #[diesel(sql_type = Text)]
    pub url: String,
    /// The HMAC key, sealed (`outpost_app::secrets`).
    #[diesel(sql_type = Text)]
    pub secret: String,
    /// Event name.
    #[diesel(sql_type = Text)]
    pub event: String,
    /// The JSON body.
    #[diesel(sql_type = Text)]
    pub body: String,
    /// `pending` until delivered or failed.
    #[diesel(sql_type = Text)]
    pub state: String,
    /// Attempts made so far.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
}

/// A delivery still to send, `None` when it (or its webhook) is gone.
pub async fn outgoing(
    conn: &mut AsyncPgConnection,
    delivery: DeliveryId,
) -> Result<Option<Outgoing>, DbError> {
    Ok(diesel::sql_query(
        "SELECT w.account_id, w.url, w.secret, d.event, d.body, d.state, d.attempts
           FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.id = $1",
    )
    .bind::<SqlUuid, _>(delivery)
    .get_result(conn)
    .await
    .optional()?)
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// HTTP status, if the endpoint answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u32,
    /// The endpoint accepted it (2xx).
    pub delivered: bool,
    /// No attempt is left: a failure is final.
    pub last: bool,
}

/// Logs an attempt and moves the delivery to `delivered` or, after the last attempt, `failed`.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    delivery: DeliveryId,
    outcome: &AttemptOutcome,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let state = match (outcome.delivered, outcome.last) {
        (true, _) => "delivered",
        (false, true) => "failed",
        (false, false) => "pending",
    };
    diesel::sql_query(
        "WITH d AS (
           UPDATE webhook_deliveries SET attempts = attempts + 1, state = $2,
                  delivered_at = CASE WHEN $2 = 'delivered' THEN $3 END
            WHERE id = $1 RETURNING attempts)
         INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
         SELECT $1, attempts, $3, $4, $5, $6 FROM d",
    )
    .bind::<SqlUuid, _>(delivery)
    .bind::<Text, _>(state)
    .bind::<Timestamptz, _>(now)
    .bind::<Nullable<diesel::sql_types::Integer>, _>(outcome.status_code.map(i32::from))
    .bind::<Nullable<Text>, _>(outcome.error.as_deref())
    .bind::<diesel::sql_types::Integer, _>(i32::try_from(outcome.duration_ms).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}
