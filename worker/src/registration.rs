//! Online registration of a local account with CSSM: the account becomes active with client
//! credentials for its later syncs.

use outpost_core::crypto;
use outpost_core::cssm::RegistrationRequest;
use outpost_db::accounts::{self, LocalAccount, Registration};
use outpost_db::enums::{AccountStatus, EventResult};
use outpost_db::events::{self, NewEvent};
use outpost_db::{AccountId, DbError, system};
use serde_json::json;

use crate::WorkerContext;
use crate::cssm_client::CssmError;

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// CSSM refused or could not be reached.
    #[error("registration with CSSM failed: {0}")]
    Cssm(#[from] CssmError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Key material could not be made.
    #[error("{0}")]
    Crypto(#[from] crypto::CryptoError),
    /// Already registered.
    #[error("account '{0}' is already registered with CSSM")]
    AlreadyRegistered(String),
    /// Not in the approved state (still requested, or deactivated meanwhile).
    #[error("account '{0}' is {1}: only an approved account registers")]
    NotApproved(String, AccountStatus),
}

/// Registers an account online; `actor` is recorded in its event log.
pub async fn register_online(
    ctx: &WorkerContext,
    account_id: AccountId,
    actor: &str,
) -> Result<LocalAccount, RegistrationError> {
    let mut conn = ctx.pool.get().await?;
    let account = accounts::find_account(&mut conn, account_id).await?;
    if account.cssm_client_id.is_some() {
        return Err(RegistrationError::AlreadyRegistered(account.name));
    }
    if account.status != AccountStatus::Approved {
        return Err(RegistrationError::NotApproved(account.name, account.status));
    }
    // The instance key identifies this Outpost to CSSM; the first node to need it creates it.
    let (candidate, _) = crypto::generate_key_pair()?;
    let private_key = system::instance_key_or_init(&mut conn, &candidate).await?;
    let request = RegistrationRequest {
        name: account.name.clone(),
        smart_account: account.smart_account.clone(),
        virtual_account: account.virtual_account.clone(),
        public_key_pem: crypto::public_key_pem_of(&private_key)?,
    };
    let token = ctx.settings.cssm.registration_token.expose();
    let answer = match ctx
        .cssm
        .register(&request, (!token.is_empty()).then_some(token))
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            let event = NewEvent::account(
                account.id,
                actor,
                "account.register",
                EventResult::Failed,
                json!({ "error": e.to_string() }),
                ctx.clock.now(),
            );
            events::record(&mut conn, &event).await?;
            return Err(e.into());
        }
    };
    let now = ctx.clock.now();
    let registration_id = answer.registration_id.clone();
    let account =
        accounts::record_registration(&mut conn, account.id, &Registration::active(answer, now))
            .await?;
    events::record(
        &mut conn,
        &NewEvent::account(
            account.id,
            actor,
            "account.register",
            EventResult::Ok,
            json!({ "mode": "online", "registration_id": registration_id }),
            now,
        ),
    )
    .await?;
    Ok(account)
}
