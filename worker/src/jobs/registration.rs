//! The `account_registration` job: registers an approved account with CSSM online (what
//! `POST /accounts/{id}/register` asks for), so the API never waits on CSSM.

use outpost_db::jobs::catalog::AccountRegistration;
use serde_json::{Value, json};

use super::{JobContext, JobError, RunJob};
use crate::registration::{is_retryable, register_online};

impl RunJob for AccountRegistration {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        match register_online(&ctx.worker, self.account_id, &self.actor).await {
            Ok(account) => Ok(json!({
                "registration_id": account.cssm_registration_id,
                "status": account.status,
                "message": format!("'{}' is registered with CSSM", account.name),
            })),
            Err(e) if is_retryable(&e) => Err(JobError::Retry(e.to_string())),
            Err(e) => Err(JobError::Fatal(e.to_string())),
        }
    }
}
