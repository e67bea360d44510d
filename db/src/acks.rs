//! ACKs from CSSM, stored once per device and file, delivered to the device in its next exchange.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::enums::AckSource;
use crate::ids::{AccountId, AckId, ProductInstanceId, UploadId};
use crate::pool::DbError;
use crate::schema::{acks, rum_reports};

/// A verified ACK to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = acks)]
pub struct NewAck {
    /// Id.
    pub id: AckId,
    /// Account.
    pub account_id: AccountId,
    /// Device.
    pub pi_id: ProductInstanceId,
    /// The signed file exactly as CSSM issued it.
    pub smart_license: String,
    /// Its SHA-256 (hex); storing the same file twice is a no-op.
    pub sha256: String,
    /// Report ids it acknowledges.
    pub acked_report_ids: Vec<i64>,
    /// Carries a policy.
    pub has_policy: bool,
    /// Where it came from.
    pub source: AckSource,
    /// The upload it answers, for online syncs.
    pub upload_id: Option<UploadId>,
    /// When received.
    pub received_at: DateTime<Utc>,
}

/// Stores an ACK unless the same file is already stored for the device; returns its id and
/// whether it was new.
pub async fn insert_ack(
    conn: &mut AsyncPgConnection,
    ack: &NewAck,
) -> Result<(AckId, bool), DbError> {
    let inserted: Option<AckId> = diesel::insert_into(acks::table)
        .values(ack)
        .on_conflict((acks::pi_id, acks::sha256))
        .do_nothing()
        .returning(acks::id)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(id) = inserted {
        return Ok((id, true));
    }
    let existing = acks::table
        .filter(acks::pi_id.eq(ack.pi_id))
        .filter(acks::sha256.eq(&ack.sha256))
        .select(acks::id)
        .first(conn)
        .await?;
    Ok((existing, false))
}

/// Marks reports of a device acknowledged by `ack`; returns how many were not already.
pub async fn mark_reports_acked(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    report_ids: &[i64],
    ack: AckId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        rum_reports::table
            .filter(rum_reports::pi_id.eq(pi))
            .filter(rum_reports::report_id.eq_any(report_ids))
            .filter(rum_reports::acked_at.is_null()),
    )
    .set((rum_reports::acked_at.eq(now), rum_reports::ack_id.eq(ack)))
    .execute(conn)
    .await?)
}

/// Takes every ACK not yet delivered to a device and marks it delivered.
pub async fn take_undelivered(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<(AckId, String)>, DbError> {
    Ok(diesel::update(
        acks::table
            .filter(acks::pi_id.eq(pi))
            .filter(acks::delivered_at.is_null()),
    )
    .set(acks::delivered_at.eq(now))
    .returning((acks::id, acks::smart_license))
    .get_results(conn)
    .await?)
}

/// The ACKs not yet handed to a device (a pull installs them, then marks each delivered).
pub async fn undelivered(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
) -> Result<Vec<(AckId, String)>, DbError> {
    Ok(acks::table
        .filter(acks::pi_id.eq(pi))
        .filter(acks::delivered_at.is_null())
        .order(acks::received_at)
        .select((acks::id, acks::smart_license))
        .load(conn)
        .await?)
}

/// The ACKs covering some reports of a device (a `result_poll` re-delivers them).
pub async fn acks_for_reports(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    report_ids: &[i64],
) -> Result<Vec<(AckId, String)>, DbError> {
    let covering = rum_reports::table
        .filter(rum_reports::pi_id.eq(pi))
        .filter(rum_reports::report_id.eq_any(report_ids))
        .filter(rum_reports::ack_id.is_not_null())
        .select(rum_reports::ack_id.assume_not_null());
    Ok(acks::table
        .filter(acks::pi_id.eq(pi))
        .filter(acks::id.eq_any(covering))
        .order(acks::received_at)
        .select((acks::id, acks::smart_license))
        .load(conn)
        .await?)
}

/// Every ACK of a device, oldest first.
pub async fn list_for_pi(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Vec<(AckId, String, Option<DateTime<Utc>>)>, DbError> {
    Ok(acks::table
        .filter(acks::account_id.eq(account))
        .filter(acks::pi_id.eq(pi))
        .order(acks::received_at)
        .select((acks::id, acks::smart_license, acks::delivered_at))
        .load(conn)
        .await?)
}

/// An ACK whose signatures verified, for a known device of the account.
#[derive(Debug, Clone)]
pub struct VerifiedAck {
    /// The device.
    pub pi_id: ProductInstanceId,
    /// The signed file exactly as CSSM issued it.
    pub file: String,
    /// Report ids it acknowledges.
    pub report_ids: Vec<i64>,
    /// The policy it carries (the `<data>` of its `smartLicensePolicy`), if any.
    pub policy: Option<serde_json::Value>,
    /// That policy as a stand-alone signed file, handed to the device as `data.policy`.
    pub policy_file: Option<String>,
    /// Trust codes it carries: (device, stand-alone signed file).
    pub trust_codes: Vec<(outpost_core::Sudi, String)>,
}

impl VerifiedAck {
    /// The ACK `file` of device `pi` as `verify_ack` read it.
    pub fn new(
        pi: ProductInstanceId,
        file: String,
        verified: outpost_core::signed_file::VerifiedAck,
    ) -> Self {
        Self {
            pi_id: pi,
            file,
            report_ids: verified.ack.acked_report_ids,
            policy: verified
                .policy
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
            policy_file: verified.policy_file,
            trust_codes: verified
                .trust_codes
                .into_iter()
                .map(|code| (code.sudi, code.file))
                .collect(),
        }
    }
}

/// Stores one verified ACK and all it implies: reports marked acknowledged, the device's
/// "Acknowledgement received from CSSM" alert (and its usage alert cleared once nothing waits),
/// an event. Idempotent: the same file again changes nothing. Returns (new, reports newly
/// acknowledged). Call inside the caller's transaction.
pub async fn store_verified(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ack: &VerifiedAck,
    source: AckSource,
    upload: Option<UploadId>,
    now: DateTime<Utc>,
) -> Result<(bool, usize), DbError> {
    use crate::alerts::{self, kinds};
    use crate::enums::{EventResult, Severity};
    use crate::events::{self, NewEvent};

    // The PI first, as the device path takes it before its reports: an ACK stored while the
    // device resends a report must not wait for the PI while holding the report rows.
    alerts::lock_pi(conn, Some(ack.pi_id)).await?;
    let (ack_id, new) = insert_ack(
        conn,
        &NewAck {
            id: AckId::new(),
            account_id: account,
            pi_id: ack.pi_id,
            smart_license: ack.file.clone(),
            sha256: outpost_core::crypto::sha256_hex(ack.file.as_bytes()),
            acked_report_ids: ack.report_ids.clone(),
            has_policy: ack.policy.is_some(),
            source,
            upload_id: upload,
            received_at: now,
        },
    )
    .await?;
    let marked = mark_reports_acked(conn, ack.pi_id, &ack.report_ids, ack_id, now).await?;
    // The policy in force for the device from now on (its deadlines follow it), handed to
    // the device with its next answer.
    if let Some(policy) = &ack.policy {
        diesel::update(crate::schema::product_instances::table.find(ack.pi_id))
            .set(crate::schema::product_instances::policy.eq(policy))
            .execute(conn)
            .await?;
        if let Some(file) = &ack.policy_file {
            let content = outpost_core::crypto::sha256_hex(policy.to_string().as_bytes());
            crate::pi_files::store_policy(conn, account, ack.pi_id, file, &content, ack_id, now)
                .await?;
        }
    }
    for (sudi, file) in &ack.trust_codes {
        let sudi = serde_json::to_value(sudi).unwrap_or_default();
        crate::pi_files::store_trust_code(conn, account, ack.pi_id, &sudi, file, ack_id, now)
            .await?;
    }
    if !ack.trust_codes.is_empty() {
        // CSSM answered the trust request.
        diesel::update(crate::schema::product_instances::table.find(ack.pi_id))
            .set(crate::schema::product_instances::trust_requests.eq(None::<serde_json::Value>))
            .execute(conn)
            .await?;
    }
    if new {
        let message = "Acknowledgement received from CSSM";
        alerts::raise(
            conn,
            account,
            Some(ack.pi_id),
            kinds::ACK_RECEIVED,
            Severity::Info,
            message,
            now,
        )
        .await?;
    }
    if crate::reports::count_unacknowledged_of_pi(conn, ack.pi_id).await? == 0 {
        alerts::clear(conn, account, Some(ack.pi_id), kinds::USAGE_REPORT, now).await?;
    }
    let event = NewEvent {
        account_id: Some(account),
        pi_id: Some(ack.pi_id),
        actor: "system".into(),
        action: "cssm.ack_received".into(),
        result: EventResult::Ok,
        detail: serde_json::json!({
            "report_ids": ack.report_ids,
            "new": new,
            "policy": ack.policy.is_some(),
            "trust_codes": ack.trust_codes.len(),
            "source": source,
        }),
        created_at: now,
    };
    events::record(conn, &event).await?;
    Ok((new, marked))
}

/// Whether this exact file is already stored for the device.
pub async fn exists(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    sha256: &str,
) -> Result<bool, DbError> {
    use diesel::dsl::exists;
    Ok(diesel::select(exists(
        acks::table
            .filter(acks::pi_id.eq(pi))
            .filter(acks::sha256.eq(sha256)),
    ))
    .get_result(conn)
    .await?)
}

/// Marks an ACK delivered (handed to its device), if it was not already.
pub async fn mark_delivered(
    conn: &mut AsyncPgConnection,
    ack: AckId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use crate::schema::pi_files;
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::update(acks::table.find(ack).filter(acks::delivered_at.is_null()))
            .set(acks::delivered_at.eq(now))
            .execute(conn)
            .await?;
        // The file carries its policy and trust code sections: handing it over (a pull, a
        // download for an air-gapped device) hands those over too.
        diesel::update(
            pi_files::table
                .filter(pi_files::ack_id.eq(ack))
                .filter(pi_files::delivered_at.is_null()),
        )
        .set(pi_files::delivered_at.eq(now))
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}
