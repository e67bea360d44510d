//! Registering a local account with CSSM, online or by files; both end the same way
//! ([`complete`]). Online, the worker calls CSSM between [`prepare_online`] and [`complete`]
//! (the API only queues the job, [`queue_online`]). Offline [ours]: Outpost writes a request
//! file signed with its instance key ([`request_file`]); CSSM, through its portal, turns it into
//! a response file signed with the CSSM key ([`response_file`]).

use chrono::{DateTime, Utc};
use outpost_core::crypto::{self, EcdsaSigner, SignatureVerifier};
use outpost_core::cssm::{
    REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE, RegistrationRequest,
    RegistrationRequestData, RegistrationResponse, RegistrationResponseData, SignedFile,
};
use outpost_core::secrets::CredentialKey;
use outpost_db::accounts::{self, LocalAccount, Registration};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::{self, JobPayload, catalog::AccountRegistration};
use outpost_db::{AccountId, AsyncConnection, AsyncPgConnection, JobId};
use serde_json::json;

use crate::accounts::may_register;
use crate::error::{AppError, AppResult, OrNotFound};
use crate::offline::{file_safe, rejected};
use crate::secrets;

/// Queues the online registration of an approved account for the worker: (job, newly queued).
pub async fn queue_online(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    actor: &str,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> AppResult<(JobId, bool)> {
    let account = accounts::find_account(conn, id)
        .await
        .or_not_found("account")?;
    may_register(&account)?;
    let job = AccountRegistration {
        account_id: account.id,
        actor: actor.to_owned(),
    };
    let (job_id, created) = jobs::enqueue(conn, &job.job(now, max_attempts), now).await?;
    let event = NewEvent::account(
        account.id,
        actor,
        "account.register_requested",
        EventResult::Ok,
        json!({ "job_id": job_id }),
        now,
    );
    events::record(conn, &event).await?;
    Ok((job_id, created))
}

/// What to send CSSM to register the account online; refused unless it may register.
pub async fn prepare_online(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    id: AccountId,
) -> AppResult<(LocalAccount, RegistrationRequest)> {
    let account = accounts::find_account(conn, id)
        .await
        .or_not_found("account")?;
    may_register(&account)?;
    let private_key = secrets::instance_key(conn, key).await?;
    let request = RegistrationRequest {
        name: account.name.clone(),
        smart_account: account.smart_account.clone(),
        virtual_account: account.virtual_account.clone(),
        public_key_pem: crypto::public_key_pem_of(&private_key).map_err(AppError::internal)?,
    };
    Ok((account, request))
}

/// Records what CSSM answered (online or in a response file): the account becomes active with
/// its client credentials (the secret sealed). Checked again on the locked row, so a
/// deactivation that came in between is not undone.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    id: AccountId,
    mut answer: RegistrationResponse,
    mode: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let account = accounts::lock_account(conn, id)
            .await
            .or_not_found("account")?;
        may_register(&account)?;
        answer.client_secret = secrets::seal_client_secret(key, account.id, &answer.client_secret)?;
        let registration_id = answer.registration_id.clone();
        let account =
            accounts::record_registration(conn, account.id, &Registration::active(answer, now))
                .await?;
        accounts::set_registration_nonce(conn, account.id, None).await?;
        let detail = json!({ "mode": mode, "registration_id": registration_id });
        let event = NewEvent::account(
            account.id,
            actor,
            "account.register",
            EventResult::Ok,
            detail,
            now,
        );
        events::record(conn, &event).await?;
        Ok(account)
    })
    .await
}

/// Records a failed online attempt in the account's event log.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    id: AccountId,
    error: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let event = NewEvent::account(
        id,
        actor,
        "account.register",
        EventResult::Failed,
        json!({ "error": error }),
        now,
    );
    events::record(conn, &event).await?;
    Ok(())
}

/// A signed registration request file for the account: (file name, content). Only the latest
/// request can be answered.
pub async fn request_file(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    id: AccountId,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<(String, String)> {
    let (account, request) = prepare_online(conn, key, id).await?;
    let private_key = secrets::instance_key(conn, key).await?;
    let signer = EcdsaSigner::from_pkcs8_pem(&private_key).map_err(AppError::internal)?;
    let nonce = crypto::random_alphanumeric(24);
    let data = RegistrationRequestData {
        request,
        timestamp: now.timestamp_millis(),
        nonce: nonce.clone(),
    };
    let file =
        SignedFile::sign(REGISTRATION_REQUEST_FILE, &data, &signer).map_err(AppError::internal)?;
    let text = serde_json::to_string_pretty(&file).map_err(AppError::internal)?;
    accounts::set_registration_nonce(conn, account.id, Some(&nonce)).await?;
    let event = NewEvent::account(
        account.id,
        actor,
        "account.registration_request",
        EventResult::Ok,
        json!({ "mode": "offline" }),
        now,
    );
    events::record(conn, &event).await?;
    let name = format!("{}.registration.json", file_safe(&account.name));
    Ok((name, text))
}

/// Registers the account from a response file signed by CSSM; it must answer the account's
/// latest request.
pub async fn response_file(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    verifier: &SignatureVerifier,
    id: AccountId,
    text: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<LocalAccount> {
    let account = accounts::find_account(conn, id)
        .await
        .or_not_found("account")?;
    may_register(&account)?;
    let data: RegistrationResponseData =
        SignedFile::open(text, REGISTRATION_RESPONSE_FILE, |_, message, signature| {
            verifier.verify(message, signature, now)
        })
        .map_err(|e| rejected(format!("registration response: {e}")))?;
    if data.name != account.name {
        return Err(rejected(format!(
            "registration response: it is for local account '{}', not '{}'",
            data.name, account.name
        )));
    }
    let expected = accounts::registration_nonce(conn, account.id).await?;
    if expected.as_deref() != Some(data.request_nonce.as_str()) {
        return Err(rejected(
            "registration response: it answers another request than the latest one of this account; send the latest request file to CSSM",
        ));
    }
    complete(
        conn,
        key,
        account.id,
        data.registration,
        "offline",
        actor,
        now,
    )
    .await
}
