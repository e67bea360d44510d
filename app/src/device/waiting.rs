//! What waits for a device rides on the next answer to it, whatever it asked: ACKs, the policy,
//! trust codes and authorization codes, each marked delivered (and still retrievable by
//! `result_poll`, so a lost answer loses nothing), and the account it reports into.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{AccountInfo, DeviceResponse, SmartLicenseFile};
use outpost_db::accounts::Tenant;
use outpost_db::authorizations::Authorization;
use outpost_db::pi_files::{self, PiFile};
use outpost_db::{AsyncPgConnection, ProductInstanceId, acks, authorizations};

use super::Reply;
use super::ha::HaSet;
use crate::error::AppResult;

/// Puts everything waiting for `pi` (and the codes for its HA set) into the reply; returns how
/// many ACKs were newly delivered.
pub(super) async fn hand_over(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    ha: &HaSet,
    reply: &mut Reply,
    now: DateTime<Utc>,
) -> AppResult<usize> {
    let pending = acks::take_undelivered(conn, pi, now).await?;
    let delivered = pending.len();
    let mut files = std::mem::take(&mut reply.acks);
    files.extend(pending);
    let mut seen = BTreeSet::new();
    files.retain(|(id, _)| seen.insert(*id));
    let response = &mut reply.response;
    response.data.acknowledgements = files
        .into_iter()
        .map(|(_, file)| SmartLicenseFile {
            sudi: None,
            smart_license: STANDARD.encode(file),
        })
        .collect();
    add_pi_files(response, pi_files::take_undelivered(conn, pi, now).await?);
    let codes = authorizations::take_undelivered(conn, tenant.account.id, &ha.udis, now).await?;
    add_codes(response, codes);
    response.data.account_info = Some(AccountInfo {
        smart_account: tenant.account.smart_account.clone(),
        virtual_account: tenant.account.virtual_account.clone(),
        local_account: tenant.account.name.clone(),
        as_of: now.timestamp_millis(),
    });
    Ok(delivered)
}

/// Puts the policy and trust codes into an answer (each trust code once).
pub(super) fn add_pi_files(response: &mut DeviceResponse, files: Vec<PiFile>) {
    for file in files {
        let encoded = STANDARD.encode(&file.smart_license);
        if file.kind == pi_files::POLICY {
            response.data.policy = Some(encoded);
        } else if !response
            .data
            .trust_codes
            .iter()
            .any(|t| t.smart_license == encoded)
        {
            response.data.trust_codes.push(SmartLicenseFile {
                sudi: file.sudi.and_then(|s| serde_json::from_value(s).ok()),
                smart_license: encoded,
            });
        }
    }
}

/// Puts authorization codes into an answer's `data.authorizations`, each once.
pub(super) fn add_codes(response: &mut DeviceResponse, codes: Vec<Authorization>) {
    for code in codes {
        let Some(file) = code.smart_license else {
            continue;
        };
        let encoded = STANDARD.encode(file);
        if !response
            .data
            .authorizations
            .iter()
            .any(|a| a.smart_license == encoded)
        {
            response.data.authorizations.push(SmartLicenseFile {
                sudi: Some(Sudi::new(code.udi_pid, code.udi_serial_number)),
                smart_license: encoded,
            });
        }
    }
}
