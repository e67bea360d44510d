//! The secrets Outpost keeps in its database, sealed with the credentials key
//! (`auth.credentials_key_file`, outside the database): the access-token key, the instance's
//! private key, each account's CSSM client secret and its webhooks' signing secrets (device pull
//! credentials are sealed the same way, in `inventory.rs`). A dump of the database alone lets
//! nobody mint an access token, call CSSM as Outpost, or sign a webhook. Each value is bound to
//! what it belongs to (its context), so a sealed value copied to another row does not open.
//!
//! Every node of a cluster needs the same key file. [`check_and_seal`] runs at start: it refuses
//! a key that does not open what the database holds, saying which file to copy, and seals
//! values stored before sealing existed.

use std::path::Path;

use outpost_core::secrets::{CredentialKey, is_sealed};
use outpost_db::system::{self, SecretColumn};
use outpost_db::{AccountId, AsyncPgConnection};

use crate::error::{AppError, AppResult, Code};

/// Context of the access-token key.
const JWT_CONTEXT: &[u8] = b"outpost:jwt-secret";
/// Context of the instance's private key.
const INSTANCE_KEY_CONTEXT: &[u8] = b"outpost:instance-private-key";

fn client_secret_context(account: AccountId) -> Vec<u8> {
    [
        b"outpost:cssm-client-secret:".as_slice(),
        account.0.as_bytes(),
    ]
    .concat()
}

fn webhook_context(account: AccountId) -> Vec<u8> {
    [b"outpost:webhook-secret:".as_slice(), account.0.as_bytes()].concat()
}

/// A stored value the key does not open: the node runs with another key than the one that
/// sealed the database's secrets.
fn wrong_key(what: &str) -> AppError {
    AppError::refused(
        Code::NotConfigured,
        format!(
            "the credentials key does not open the {what} this database holds: this node's \
             auth.credentials_key_file is not the one the database's secrets were sealed with; \
             copy that file from a node already serving this database (or restore the original)"
        ),
    )
}

fn seal(key: &CredentialKey, plain: &str, context: &[u8]) -> AppResult<String> {
    key.seal_text(plain, context).map_err(AppError::internal)
}

/// Seals an account's CSSM client secret for storage.
pub fn seal_client_secret(
    key: &CredentialKey,
    account: AccountId,
    secret: &str,
) -> AppResult<String> {
    seal(key, secret, &client_secret_context(account))
}

/// Opens an account's stored CSSM client secret.
pub fn open_client_secret(
    key: &CredentialKey,
    account: AccountId,
    stored: &str,
) -> AppResult<String> {
    key.open_text(stored, &client_secret_context(account))
        .map_err(|_| wrong_key("CSSM client secret"))
}

/// Seals a webhook's signing secret for storage.
pub fn seal_webhook_secret(
    key: &CredentialKey,
    account: AccountId,
    secret: &str,
) -> AppResult<String> {
    seal(key, secret, &webhook_context(account))
}

/// Opens a webhook's stored signing secret.
pub fn open_webhook_secret(
    key: &CredentialKey,
    account: AccountId,
    stored: &str,
) -> AppResult<String> {
    key.open_text(stored, &webhook_context(account))
        .map_err(|_| wrong_key("webhook secret"))
}

/// The access-token key kept in the database: made (and sealed) by the first node that needs
/// it, opened by every node.
pub async fn jwt_secret(conn: &mut AsyncPgConnection, key: &CredentialKey) -> AppResult<String> {
    let candidate = seal(
        key,
        &outpost_core::crypto::random_alphanumeric(64),
        JWT_CONTEXT,
    )?;
    let stored = system::jwt_secret_or_init(conn, &candidate).await?;
    key.open_text(&stored, JWT_CONTEXT)
        .map_err(|_| wrong_key("access-token key"))
}

/// This Outpost's instance private key (PKCS#8 PEM), which identifies it to CSSM: made (and
/// sealed) by the first node that needs it, opened by every node.
pub async fn instance_key(conn: &mut AsyncPgConnection, key: &CredentialKey) -> AppResult<String> {
    let (pem, _) = outpost_core::crypto::generate_key_pair().map_err(AppError::internal)?;
    let candidate = seal(key, &pem, INSTANCE_KEY_CONTEXT)?;
    let stored = system::instance_key_or_init(conn, &candidate).await?;
    key.open_text(&stored, INSTANCE_KEY_CONTEXT)
        .map_err(|_| wrong_key("instance private key"))
}

/// At start: refuses a credentials key that does not open what the database holds (naming
/// `key_file`, the file to copy from another node), then seals the secrets stored in clear by
/// an Outpost from before they were sealed. Idempotent; safe on several nodes at once.
pub async fn check_and_seal(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    key_file: &Path,
) -> AppResult<()> {
    let named = |e: AppError| match e {
        AppError::Refused { code, message, .. } => AppError::refused(
            code,
            message.replace(
                "this node's auth.credentials_key_file",
                &format!(
                    "this node's auth.credentials_key_file ({})",
                    key_file.display()
                ),
            ),
        ),
        other => other,
    };
    let stored = system::stored_secrets(conn).await?;
    for (value, column, context, what) in [
        (
            stored.jwt_secret,
            SecretColumn::JwtSecret,
            JWT_CONTEXT,
            "access-token key",
        ),
        (
            stored.instance_private_key_pem,
            SecretColumn::InstanceKey,
            INSTANCE_KEY_CONTEXT,
            "instance private key",
        ),
    ] {
        match value {
            Some(value) if is_sealed(&value) => {
                key.open_text(&value, context)
                    .map_err(|_| named(wrong_key(what)))?;
            }
            Some(plain) => {
                let sealed = seal(key, &plain, context)?;
                system::replace_secret(conn, column, &plain, &sealed).await?;
            }
            None => {}
        }
    }
    seal_account_secrets(conn, key).await.map_err(named)
}

/// The accounts' CSSM client secrets and the webhooks' secrets: one sealed value of each kind
/// must open; clear ones are sealed.
async fn seal_account_secrets(conn: &mut AsyncPgConnection, key: &CredentialKey) -> AppResult<()> {
    for (account, stored) in outpost_db::accounts::client_secrets(conn).await? {
        if is_sealed(&stored) {
            open_client_secret(key, account, &stored)?;
            continue;
        }
        let sealed = seal_client_secret(key, account, &stored)?;
        outpost_db::accounts::replace_client_secret(conn, account, &stored, &sealed).await?;
    }
    for (webhook, account, stored) in outpost_db::webhooks::secrets(conn).await? {
        if is_sealed(&stored) {
            open_webhook_secret(key, account, &stored)?;
            continue;
        }
        let sealed = seal_webhook_secret(key, account, &stored)?;
        outpost_db::webhooks::replace_secret(conn, webhook, &stored, &sealed).await?;
    }
    Ok(())
}
