//! Offline registration [ours]: Outpost writes a request file signed with its instance key; CSSM
//! (by hand, through its portal) turns it into a response file signed with the CSSM key;
//! importing the response registers the account exactly as the online call would.

use chrono::{DateTime, Utc};
use outpost_core::crypto::{self, EcdsaSigner, SignatureVerifier};
use outpost_core::cssm::{
    REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE, RegistrationRequest,
    RegistrationRequestData, RegistrationResponseData, SignedFile,
};
use outpost_db::accounts::{self, LocalAccount, Registration};
use outpost_db::enums::{AccountStatus, EventResult};
use outpost_db::events::{self, NewEvent};
use outpost_db::{AccountId, DbPool, system};
use serde_json::json;

use super::{OfflineError, file_safe};

/// Only an approved, unregistered account registers (online or by files).
fn may_register(account: &LocalAccount) -> Result<(), OfflineError> {
    let refusal = match account.status {
        _ if account.cssm_client_id.is_some() => "is already registered with CSSM".to_owned(),
        AccountStatus::Approved => return Ok(()),
        AccountStatus::Active => "is already registered with CSSM".to_owned(),
        AccountStatus::Requested => {
            "is not approved yet: a system admin approves it first".to_owned()
        }
        AccountStatus::Inactive => {
            "is inactive; only an approved account registers (reactivate it first)".to_owned()
        }
    };
    Err(OfflineError::Conflict(format!(
        "local account '{}' {refusal}",
        account.name
    )))
}

/// A signed registration request file for the account: (file name, content).
pub async fn registration_request(
    pool: &DbPool,
    account_id: AccountId,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<(String, String), OfflineError> {
    let mut conn = pool.get().await?;
    let account = accounts::find_account(&mut conn, account_id).await?;
    may_register(&account)?;
    let (candidate, _) =
        crypto::generate_key_pair().map_err(|e| OfflineError::Io(e.to_string()))?;
    let private_key = system::instance_key_or_init(&mut conn, &candidate).await?;
    let signer =
        EcdsaSigner::from_pkcs8_pem(&private_key).map_err(|e| OfflineError::Io(e.to_string()))?;
    let nonce = crypto::random_alphanumeric(24);
    let data = RegistrationRequestData {
        request: RegistrationRequest {
            name: account.name.clone(),
            smart_account: account.smart_account.clone(),
            virtual_account: account.virtual_account.clone(),
            public_key_pem: crypto::public_key_pem_of(&private_key)
                .map_err(|e| OfflineError::Io(e.to_string()))?,
        },
        timestamp: now.timestamp_millis(),
        nonce: nonce.clone(),
    };
    let file = SignedFile::sign(REGISTRATION_REQUEST_FILE, &data, &signer)
        .map_err(|e| OfflineError::Io(e.to_string()))?;
    let text = serde_json::to_string_pretty(&file).map_err(|e| OfflineError::Io(e.to_string()))?;
    // Only the latest request can be answered.
    accounts::set_registration_nonce(&mut conn, account.id, Some(&nonce)).await?;
    let detail = json!({ "mode": "offline" });
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            actor,
            "account.registration_request",
            EventResult::Ok,
            detail,
            now,
        ),
    )
    .await?;
    Ok((
        format!("{}.registration.json", file_safe(&account.name)),
        text,
    ))
}

/// Registers the account from a response file signed by CSSM.
pub async fn registration_response(
    pool: &DbPool,
    verifier: &SignatureVerifier,
    account_id: AccountId,
    text: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<LocalAccount, OfflineError> {
    let mut conn = pool.get().await?;
    let account = accounts::find_account(&mut conn, account_id).await?;
    may_register(&account)?;
    let data: RegistrationResponseData =
        SignedFile::open(text, REGISTRATION_RESPONSE_FILE, |_, message, signature| {
            verifier.verify(message, signature, now)
        })
        .map_err(|e| OfflineError::Rejected(format!("registration response: {e}")))?;
    if data.name != account.name {
        return Err(OfflineError::Rejected(format!(
            "registration response: it is for local account '{}', not '{}'",
            data.name, account.name
        )));
    }
    let expected = accounts::registration_nonce(&mut conn, account.id).await?;
    if expected.as_deref() != Some(data.request_nonce.as_str()) {
        return Err(OfflineError::Rejected(
            "registration response: it answers another request than the latest one of this account; send the latest request file to CSSM".into(),
        ));
    }
    let registration_id = data.registration.registration_id.clone();
    let account = accounts::record_registration(
        &mut conn,
        account.id,
        &Registration::active(data.registration, now),
    )
    .await?;
    accounts::set_registration_nonce(&mut conn, account.id, None).await?;
    let detail = json!({ "mode": "offline", "registration_id": registration_id });
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            actor,
            "account.register",
            EventResult::Ok,
            detail,
            now,
        ),
    )
    .await?;
    Ok(account)
}
