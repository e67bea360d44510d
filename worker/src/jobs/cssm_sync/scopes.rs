//! SA/VA names to CSSM ids.

use std::collections::HashMap;

use outpost_db::accounts::LocalAccount;
use serde_json::json;

use super::JobError;
use crate::cssm_client::{AccountScope, CssmClient};

/// Resolves SA/VA names to CSSM ids, asking CSSM only for pairs other than the account's own.
pub(crate) struct Scopes<'a> {
    cssm: &'a CssmClient,
    token: &'a str,
    account: &'a LocalAccount,
    requesting_system: String,
    known: HashMap<(String, String), AccountScope>,
}

impl<'a> Scopes<'a> {
    pub(crate) fn new(
        cssm: &'a CssmClient,
        token: &'a str,
        account: &'a LocalAccount,
    ) -> Result<Self, JobError> {
        let (Some(sa_id), Some(va_id)) = (
            &account.cssm_smart_account_id,
            &account.cssm_virtual_account_id,
        ) else {
            return Err(JobError::Fatal(format!(
                "account '{}' is not registered with CSSM",
                account.name
            )));
        };
        let requesting_system = json!({
            "udi_pid": "OUTPOST",
            "udi_serial_number": account.cssm_registration_id.clone().unwrap_or_default(),
        })
        .to_string();
        let own = AccountScope {
            smart_account_id: sa_id.clone(),
            virtual_account_id: va_id.clone(),
            requesting_system: requesting_system.clone(),
        };
        let known = HashMap::from([(
            (
                account.smart_account.clone(),
                account.virtual_account.clone(),
            ),
            own,
        )]);
        Ok(Self {
            cssm,
            token,
            account,
            requesting_system,
            known,
        })
    }

    pub(crate) async fn scope(
        &mut self,
        smart_account: &str,
        virtual_account: &str,
    ) -> Result<AccountScope, JobError> {
        let key = (smart_account.to_owned(), virtual_account.to_owned());
        if let Some(scope) = self.known.get(&key) {
            return Ok(scope.clone());
        }
        let found = self.cssm.accounts(self.token).await?;
        let pair = found
            .accounts
            .iter()
            .filter(|sa| sa.name == smart_account)
            .find_map(|sa| {
                let va = sa
                    .virtual_accounts
                    .iter()
                    .find(|va| va.name == virtual_account)?;
                Some(AccountScope {
                    smart_account_id: sa.account_id.clone(),
                    virtual_account_id: va.virtual_account_id.clone(),
                    requesting_system: self.requesting_system.clone(),
                })
            });
        if let Some(scope) = pair {
            self.known.insert(key, scope.clone());
            return Ok(scope);
        }
        Err(JobError::Fatal(format!(
            "account '{}' maps usage to Smart Account '{smart_account}' / Virtual Account '{virtual_account}', which CSSM does not know",
            self.account.name
        )))
    }
}
