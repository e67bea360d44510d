//! Policies and trust codes CSSM issued for a device (inside ACKs), kept until they are handed
//! to the device with its next answer; a `result_poll` for the reports of that ACK hands them
//! over again, so a lost answer loses nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;

use crate::ids::{AccountId, AckId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::pi_files;

/// A policy file.
pub const POLICY: &str = "policy";
/// A trust code file.
pub const TRUST_CODE: &str = "trust_code";

/// A file waiting for (or handed to) a device.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pi_files, check_for_backend(diesel::pg::Pg))]
pub struct PiFile {
    /// `policy` or `trust_code`.
    pub kind: String,
    /// The device a trust code is for.
    pub sudi: Option<Value>,
    /// The signed file as CSSM issued it.
    pub smart_license: String,
}

/// Keeps a policy for the device unless it is the policy it already has (`content_sha256` is
/// the hash of the policy's content: CSSM signs every copy anew). A policy the device had
/// before and gets again is handed over again.
pub async fn store_policy(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    file: &str,
    content_sha256: &str,
    ack: AckId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO pi_files (id, account_id, pi_id, kind, smart_license, sha256, ack_id, received_at)
         SELECT gen_random_uuid(), $1, $2, 'policy', $3, $4, $5, $6
          WHERE NOT EXISTS (
                SELECT 1 FROM (SELECT sha256 FROM pi_files WHERE pi_id = $2 AND kind = 'policy'
                                ORDER BY received_at DESC LIMIT 1) latest
                 WHERE latest.sha256 = $4)
         ON CONFLICT (pi_id, kind, sha256) DO UPDATE
            SET smart_license = EXCLUDED.smart_license, ack_id = EXCLUDED.ack_id,
                received_at = EXCLUDED.received_at, delivered_at = NULL",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(pi)
    .bind::<Text, _>(file)
    .bind::<Text, _>(content_sha256)
    .bind::<SqlUuid, _>(ack)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps a trust code for a device of the PI (itself or an HA member); the same file twice is
/// kept once.
pub async fn store_trust_code(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    sudi: &Value,
    file: &str,
    ack: AckId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO pi_files (id, account_id, pi_id, kind, sudi, smart_license, sha256, ack_id, received_at)
         VALUES (gen_random_uuid(), $1, $2, 'trust_code', $3, $4, $5, $6, $7)
         ON CONFLICT (pi_id, kind, sha256) DO NOTHING",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(pi)
    .bind::<Nullable<Jsonb>, _>(Some(sudi))
    .bind::<Text, _>(file)
    .bind::<Text, _>(outpost_core::crypto::sha256_hex(file.as_bytes()))
    .bind::<SqlUuid, _>(ack)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes every file not yet handed to the device and marks it delivered. Of several policies
/// only the newest is returned: the older ones are superseded.
pub async fn take_undelivered(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<PiFile>, DbError> {
    let mut files: Vec<(DateTime<Utc>, PiFile)> = diesel::update(
        pi_files::table
            .filter(pi_files::pi_id.eq(pi))
            .filter(pi_files::delivered_at.is_null()),
    )
    .set(pi_files::delivered_at.eq(now))
    .returning((pi_files::received_at, PiFile::as_returning()))
    .get_results(conn)
    .await?;
    files.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut seen_policy = false;
    Ok(files
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.kind != POLICY || !std::mem::replace(&mut seen_policy, true))
        .collect())
}

/// The files that came with some ACKs (a `result_poll` hands them over again).
pub async fn for_acks(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    acks: &[AckId],
) -> Result<Vec<PiFile>, DbError> {
    Ok(pi_files::table
        .filter(pi_files::pi_id.eq(pi))
        .filter(pi_files::ack_id.eq_any(acks))
        // Oldest first: the answer keeps the last policy it is given, the newest.
        .order(pi_files::received_at)
        .select(PiFile::as_select())
        .load(conn)
        .await?)
}

/// Records that the device installed the trust codes handed to it (its `trust_sync`); returns
/// how many.
pub async fn mark_trust_installed(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        pi_files::table
            .filter(pi_files::pi_id.eq(pi))
            .filter(pi_files::kind.eq(TRUST_CODE))
            .filter(pi_files::delivered_at.is_not_null())
            .filter(pi_files::installed_at.is_null()),
    )
    .set(pi_files::installed_at.eq(now))
    .execute(conn)
    .await?)
}

/// A trust code of a device as the PI detail shows it.
#[derive(Debug, Clone, Queryable, Serialize, utoipa::ToSchema)]
pub struct TrustCodeState {
    /// The device it is for (its SUDI as the ACK named it).
    #[schema(value_type = Option<Object>)]
    pub sudi: Option<Value>,
    /// When CSSM's ACK brought it.
    pub received_at: DateTime<Utc>,
    /// When it was handed to the device.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the device said it installed it: "trust code installed".
    pub installed_at: Option<DateTime<Utc>>,
}

/// The trust codes of a PI, newest first.
pub async fn trust_codes(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Vec<TrustCodeState>, DbError> {
    Ok(pi_files::table
        .filter(pi_files::account_id.eq(account))
        .filter(pi_files::pi_id.eq(pi))
        .filter(pi_files::kind.eq(TRUST_CODE))
        .order(pi_files::received_at.desc())
        .select((
            pi_files::sudi,
            pi_files::received_at,
            pi_files::delivered_at,
            pi_files::installed_at,
        ))
        .load(conn)
        .await?)
}
