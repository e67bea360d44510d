//! Online registration of a local account with CSSM: the rules and the record are
//! `outpost_app::registration`'s; this is the call to CSSM between them.

use outpost_app::AppError;
use outpost_app::registration::{complete, prepare_online, record_failure};
use outpost_db::AccountId;
use outpost_db::accounts::LocalAccount;

use crate::WorkerContext;
use crate::cssm_client::CssmError;

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// CSSM refused or could not be reached.
    #[error("registration with CSSM failed: {0}")]
    Cssm(#[from] CssmError),
    /// A rule refused it, or the database failed.
    #[error(transparent)]
    App(#[from] AppError),
}

/// Registers an account online; `actor` is recorded in its event log.
pub async fn register_online(
    ctx: &WorkerContext,
    account_id: AccountId,
    actor: &str,
) -> Result<LocalAccount, RegistrationError> {
    let mut conn = ctx.pool.get().await.map_err(AppError::from)?;
    let (account, request) = prepare_online(&mut conn, &ctx.credentials, account_id).await?;
    let token = ctx.settings.cssm.registration_token.expose();
    let answer = ctx
        .cssm
        .register(&request, (!token.is_empty()).then_some(token))
        .await;
    let now = ctx.clock.now();
    match answer {
        Ok(answer) => Ok(complete(
            &mut conn,
            &ctx.credentials,
            account.id,
            answer,
            "online",
            actor,
            now,
        )
        .await?),
        Err(e) => {
            record_failure(&mut conn, account.id, &e.to_string(), actor, now).await?;
            Err(e.into())
        }
    }
}

/// Whether a failed registration may succeed when tried again later.
pub fn is_retryable(error: &RegistrationError) -> bool {
    match error {
        RegistrationError::Cssm(e) => e.is_retryable(),
        RegistrationError::App(AppError::Db(e)) => e.is_transient(),
        RegistrationError::App(_) => false,
    }
}
