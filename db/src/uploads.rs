//! Reports on their way to CSSM. A batch is recorded as an upload ('sending') and its reports
//! tagged before the call, so a crash at any point either resends the very same batch or
//! continues polling it: nothing is lost and nothing is sent in two different batches.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::enums::UploadState;
use crate::ids::{AccountId, ProductInstanceId, UploadId};
use crate::pool::DbError;
use crate::schema::{cssm_uploads, local_virtual_accounts, product_instances, rum_reports};

/// A report to upload, with what the upload needs of its device and LVA.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct OutgoingReport {
    /// Row id.
    #[diesel(select_expression = rum_reports::id)]
    pub row_id: i64,
    /// Device.
    #[diesel(select_expression = rum_reports::pi_id)]
    pub pi_id: ProductInstanceId,
    /// The device's report id.
    #[diesel(select_expression = rum_reports::report_id)]
    pub report_id: i64,
    /// The exact payload.
    #[diesel(select_expression = rum_reports::payload)]
    pub payload: String,
    /// The device's signature.
    #[diesel(select_expression = rum_reports::signature)]
    pub signature: Value,
    /// The device's `sudi`.
    #[diesel(select_expression = product_instances::sudi)]
    pub sudi: Value,
    /// Its hostname.
    #[diesel(select_expression = product_instances::hostname)]
    pub hostname: Option<String>,
    /// Its software tag.
    #[diesel(select_expression = product_instances::software_tag)]
    pub software_tag: Option<String>,
    /// SA override of its LVA.
    #[diesel(select_expression = local_virtual_accounts::smart_account)]
    pub lva_smart_account: Option<String>,
    /// VA override of its LVA.
    #[diesel(select_expression = local_virtual_accounts::virtual_account)]
    pub lva_virtual_account: Option<String>,
    /// SA override of the device itself.
    #[diesel(select_expression = product_instances::smart_account)]
    pub pi_smart_account: Option<String>,
    /// VA override of the device itself.
    #[diesel(select_expression = product_instances::virtual_account)]
    pub pi_virtual_account: Option<String>,
}

impl OutgoingReport {
    /// The SA/VA pair this report goes to: the device's own mapping, else its LVA's, else
    /// the account's (`default`).
    pub fn destination(&self, default: (&str, &str)) -> (String, String) {
        match (
            &self.pi_smart_account,
            &self.pi_virtual_account,
            &self.lva_smart_account,
            &self.lva_virtual_account,
        ) {
            (Some(sa), Some(va), _, _) | (_, _, Some(sa), Some(va)) => (sa.clone(), va.clone()),
            _ => (default.0.to_owned(), default.1.to_owned()),
        }
    }
}

macro_rules! outgoing_query {
    () => {
        rum_reports::table
            .inner_join(product_instances::table.on(product_instances::id.eq(rum_reports::pi_id)))
            .inner_join(
                local_virtual_accounts::table
                    .on(local_virtual_accounts::id.eq(product_instances::lva_id)),
            )
    };
}

/// Up to `limit` reports of an account never put in an upload, oldest first, after row `after`.
pub async fn unsent_reports(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    after: i64,
    limit: i64,
) -> Result<Vec<OutgoingReport>, DbError> {
    Ok(outgoing_query!()
        .filter(rum_reports::account_id.eq(account))
        .filter(rum_reports::upload_id.is_null())
        // Exported reports travel by file; uploading them too would only confuse the ledger.
        .filter(rum_reports::exported_at.is_null())
        .filter(rum_reports::id.gt(after))
        .order(rum_reports::id)
        .limit(limit)
        .select(OutgoingReport::as_select())
        .load(conn)
        .await?)
}

/// The reports of an upload (to resend one interrupted before CSSM answered).
pub async fn upload_reports(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    upload: UploadId,
) -> Result<Vec<OutgoingReport>, DbError> {
    Ok(outgoing_query!()
        .filter(rum_reports::account_id.eq(account))
        .filter(rum_reports::upload_id.eq(upload))
        .order(rum_reports::id)
        .select(OutgoingReport::as_select())
        .load(conn)
        .await?)
}

/// An upload row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cssm_uploads, check_for_backend(diesel::pg::Pg))]
pub struct Upload {
    /// Id.
    pub id: UploadId,
    /// Account.
    pub account_id: AccountId,
    /// Smart Account it went to.
    pub smart_account: String,
    /// Virtual Account it went to.
    pub virtual_account: String,
    /// Nonce of the call (the same on a resend).
    pub nonce: String,
    /// Where it stands.
    pub state: UploadState,
    /// CSSM's poll id once sent.
    pub poll_id: Option<String>,
    /// Reports in it.
    pub report_count: i32,
    /// Reports CSSM already had.
    pub duplicate_count: i32,
    /// Request body size.
    pub bytes: i64,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Accepted by CSSM.
    pub sent_at: Option<DateTime<Utc>>,
    /// ACKs received.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Records a batch before it is sent and tags its reports with it, in one transaction. Returns
/// the row ids actually tagged: a report another batch took meanwhile is not among them.
pub async fn create_upload(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    smart_account: &str,
    virtual_account: &str,
    nonce: &str,
    row_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(Upload, Vec<i64>), DbError> {
    let id = UploadId::new();
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::insert_into(cssm_uploads::table)
            .values((
                cssm_uploads::id.eq(id),
                cssm_uploads::account_id.eq(account),
                cssm_uploads::smart_account.eq(smart_account),
                cssm_uploads::virtual_account.eq(virtual_account),
                cssm_uploads::nonce.eq(nonce),
                cssm_uploads::state.eq(UploadState::Sending),
                cssm_uploads::report_count.eq(0),
                cssm_uploads::created_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let tagged: Vec<i64> = diesel::update(
            rum_reports::table
                .filter(rum_reports::account_id.eq(account))
                .filter(rum_reports::id.eq_any(row_ids))
                .filter(rum_reports::upload_id.is_null()),
        )
        .set(rum_reports::upload_id.eq(id))
        .returning(rum_reports::id)
        .get_results(conn)
        .await?;
        let count = i32::try_from(tagged.len()).unwrap_or(i32::MAX);
        let upload = diesel::update(cssm_uploads::table.find(id))
            .set(cssm_uploads::report_count.eq(count))
            .returning(Upload::as_returning())
            .get_result(conn)
            .await?;
        Ok((upload, tagged))
    })
    .await
}

/// CSSM accepted the batch: keep its poll id and stamp the reports.
pub async fn mark_sent(
    conn: &mut AsyncPgConnection,
    upload: UploadId,
    poll_id: &str,
    duplicates: i32,
    bytes: i64,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::update(cssm_uploads::table.find(upload))
            .set((
                cssm_uploads::state.eq(UploadState::Polling),
                cssm_uploads::poll_id.eq(poll_id),
                cssm_uploads::duplicate_count.eq(duplicates),
                cssm_uploads::bytes.eq(bytes),
                cssm_uploads::sent_at.eq(now),
            ))
            .execute(conn)
            .await?;
        diesel::update(rum_reports::table.filter(rum_reports::upload_id.eq(upload)))
            .set(rum_reports::uploaded_at.eq(now))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Every upload of an account not yet complete, oldest first.
pub async fn open_uploads(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Upload>, DbError> {
    Ok(cssm_uploads::table
        .filter(cssm_uploads::account_id.eq(account))
        .filter(cssm_uploads::state.ne(UploadState::Complete))
        .order(cssm_uploads::created_at)
        .select(Upload::as_select())
        .load(conn)
        .await?)
}

/// All ACKs of an upload are stored.
pub async fn mark_complete(
    conn: &mut AsyncPgConnection,
    upload: UploadId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(cssm_uploads::table.find(upload))
        .set((
            cssm_uploads::state.eq(UploadState::Complete),
            cssm_uploads::completed_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// CSSM no longer knows the batch's poll id: back to `sending`, so the next sync sends it again.
pub async fn reset_for_resend(
    conn: &mut AsyncPgConnection,
    upload: UploadId,
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::update(cssm_uploads::table.find(upload))
            .set((
                cssm_uploads::state.eq(UploadState::Sending),
                cssm_uploads::poll_id.eq(None::<String>),
                cssm_uploads::sent_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)
            .await?;
        diesel::update(rum_reports::table.filter(rum_reports::upload_id.eq(upload)))
            .set(rum_reports::uploaded_at.eq(None::<DateTime<Utc>>))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Puts the reports of a completed batch that no ACK covered back among the unsent ones.
pub async fn release_unacknowledged(
    conn: &mut AsyncPgConnection,
    upload: UploadId,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        rum_reports::table
            .filter(rum_reports::upload_id.eq(upload))
            .filter(rum_reports::acked_at.is_null()),
    )
    .set((
        rum_reports::upload_id.eq(None::<UploadId>),
        rum_reports::uploaded_at.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?)
}
