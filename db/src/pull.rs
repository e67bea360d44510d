//! What the pull job reads and writes of the devices it pulls from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use outpost_core::Sudi;

use crate::alerts::{self, kinds};
use crate::enums::{ConnectMethod, Severity};
use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::product_instances;

/// A device to pull from.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = product_instances, check_for_backend(diesel::pg::Pg))]
pub struct Target {
    /// The PI.
    pub id: ProductInstanceId,
    /// Its UDI, once known (a PI added by host learns it from its first report).
    pub udi_pid: Option<String>,
    /// Serial number.
    pub udi_serial_number: Option<String>,
    /// How Outpost reaches it.
    pub connect_method: ConnectMethod,
    /// Host name or address.
    pub host: Option<String>,
    /// Port, when not the method's default.
    pub port: Option<i32>,
    /// Sealed credentials.
    pub credentials: Option<Vec<u8>>,
    /// Behind NAT: never pulled.
    pub behind_nat: bool,
    /// REST or RESTCONF over plain HTTP.
    pub plain_http: bool,
    /// The certificate or host key seen on first contact.
    pub peer_fingerprint: Option<String>,
}

/// The account's devices that are pulled from (connect method other than push), or those of
/// `only` among them, by id.
pub async fn targets(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    only: Option<&[ProductInstanceId]>,
) -> Result<Vec<Target>, DbError> {
    let mut query = product_instances::table
        .filter(product_instances::account_id.eq(account))
        .filter(product_instances::connect_method.ne(ConnectMethod::Push))
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(product_instances::id.eq_any(ids));
    }
    Ok(query
        .order(product_instances::id)
        .select(Target::as_select())
        .load(conn)
        .await?)
}

/// Records a pull of `target` that worked: the device's contact time, its certificate or host
/// key if this was the first contact, and its "Pull failed" alert cleared.
pub async fn succeeded(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    target: &Target,
    fingerprint: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use diesel::PgExpressionMethods;
    let pi = target.id;
    diesel::update(product_instances::table.find(pi))
        .set((
            product_instances::last_pull_at.eq(now),
            product_instances::last_contact_at.eq(now),
            product_instances::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    if let Some(fingerprint) = fingerprint {
        // Only if the device is still at the address pulled: an admin who moved it meanwhile
        // cleared the pin for the new address, which this pull never saw.
        diesel::update(
            product_instances::table
                .find(pi)
                .filter(product_instances::peer_fingerprint.is_null())
                .filter(product_instances::host.is_not_distinct_from(&target.host))
                .filter(product_instances::port.is_not_distinct_from(target.port))
                .filter(product_instances::connect_method.eq(target.connect_method))
                .filter(product_instances::plain_http.eq(target.plain_http)),
        )
        .set((
            product_instances::peer_fingerprint.eq(fingerprint),
            product_instances::peer_fingerprint_at.eq(now),
        ))
        .execute(conn)
        .await?;
    }
    alerts::clear(conn, account, Some(pi), kinds::PULL_FAILED, now).await
}

/// Records a pull that failed, with the reason on the PI's "Pull failed" alert.
pub async fn failed(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let message = format!("Pull failed: {reason}");
    alerts::raise(
        conn,
        account,
        Some(pi),
        kinds::PULL_FAILED,
        Severity::Warning,
        &message,
        now,
    )
    .await
}

/// Gives a PI added by host the UDI its reports name, and any PI the `sudi` its reports carry
/// (added by the admin API or a CSV file, it has none; CSSM needs it). `false` when another PI
/// of the account already has that UDI (the same device added twice).
pub async fn identify(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    sudi: &Sudi,
) -> Result<bool, DbError> {
    let taken: i64 = product_instances::table
        .filter(product_instances::account_id.eq(account))
        .filter(product_instances::udi_pid.eq(&sudi.udi_pid))
        .filter(product_instances::udi_serial_number.eq(&sudi.udi_serial_number))
        .filter(product_instances::id.ne(pi))
        .count()
        .get_result(conn)
        .await?;
    if taken > 0 {
        return Ok(false);
    }
    let json = serde_json::to_value(sudi).unwrap_or_default();
    diesel::sql_query(
        "UPDATE product_instances
            SET udi_pid = coalesce(udi_pid, $2), udi_serial_number = coalesce(udi_serial_number, $3),
                sudi = CASE WHEN sudi ? 'udi_pid' THEN sudi ELSE $4 END
          WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(pi)
    .bind::<diesel::sql_types::Text, _>(&sudi.udi_pid)
    .bind::<diesel::sql_types::Text, _>(&sudi.udi_serial_number)
    .bind::<diesel::sql_types::Jsonb, _>(&json)
    .execute(conn)
    .await?;
    Ok(true)
}

/// A one-time URL's token, as the device presents it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crate::schema::pull_drops, check_for_backend(diesel::pg::Pg))]
pub struct Drop {
    /// The account.
    pub account_id: AccountId,
    /// The PI it is bound to.
    pub pi_id: ProductInstanceId,
    /// `upload` or `download`.
    pub purpose: String,
    /// What a download serves.
    pub file: Option<String>,
    /// Reports an upload brought.
    pub reports: Option<i32>,
    /// New reports an upload brought.
    pub reports_new: Option<i32>,
    /// When it was used.
    pub used_at: Option<DateTime<Utc>>,
}

/// Creates a one-time URL token for a PI; returns the token (only its hash is stored).
pub async fn create_drop(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    file: Option<&str>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    use crate::schema::pull_drops;
    // 22 alphanumeric characters: about 131 bits, short enough for the model's 127-character
    // file-path with the URL around it.
    let token = outpost_core::crypto::random_alphanumeric(22);
    diesel::insert_into(pull_drops::table)
        .values((
            pull_drops::token_sha256.eq(outpost_core::crypto::sha256_hex(token.as_bytes())),
            pull_drops::account_id.eq(account),
            pull_drops::pi_id.eq(pi),
            pull_drops::purpose.eq(if file.is_some() { "download" } else { "upload" }),
            pull_drops::file.eq(file),
            pull_drops::created_at.eq(now),
            pull_drops::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

/// Takes a token for its one use: `None` when it is unknown, used, expired or of another
/// purpose. Call inside the transaction that does what the token allows.
pub async fn take_drop(
    conn: &mut AsyncPgConnection,
    token: &str,
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<Option<Drop>, DbError> {
    use crate::schema::pull_drops;
    Ok(diesel::update(
        pull_drops::table
            .filter(pull_drops::token_sha256.eq(outpost_core::crypto::sha256_hex(token.as_bytes())))
            .filter(pull_drops::purpose.eq(purpose))
            .filter(pull_drops::used_at.is_null())
            .filter(pull_drops::expires_at.gt(now)),
    )
    .set(pull_drops::used_at.eq(now))
    .returning(Drop::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Records what an upload brought.
pub async fn record_upload(
    conn: &mut AsyncPgConnection,
    token: &str,
    reports: usize,
    new: usize,
) -> Result<(), DbError> {
    use crate::schema::pull_drops;
    diesel::update(
        pull_drops::table.filter(
            pull_drops::token_sha256.eq(outpost_core::crypto::sha256_hex(token.as_bytes())),
        ),
    )
    .set((
        pull_drops::reports.eq(i32::try_from(reports).unwrap_or(i32::MAX)),
        pull_drops::reports_new.eq(i32::try_from(new).unwrap_or(i32::MAX)),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The state of a token, by value (the pull job checks the device used it).
pub async fn drop_state(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> Result<Option<Drop>, DbError> {
    use crate::schema::pull_drops;
    Ok(pull_drops::table
        .filter(pull_drops::token_sha256.eq(outpost_core::crypto::sha256_hex(token.as_bytes())))
        .select(Drop::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Forgets tokens that expired a day ago.
pub async fn purge_drops(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    use crate::schema::pull_drops;
    Ok(diesel::delete(
        pull_drops::table.filter(pull_drops::expires_at.lt(now - chrono::Duration::days(1))),
    )
    .execute(conn)
    .await?)
}
