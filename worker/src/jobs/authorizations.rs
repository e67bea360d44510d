//! The SLAC jobs. `authorization_request` asks CSSM (`devices/authrequest`) for the codes of
//! one device request, polls for them (action `authorizations`), verifies each against the
//! CSSM signing certificate and stores it, so the device gets it with its next answer. CSSM is
//! asked once: its poll id is kept, and a retry only polls. A refusal by CSSM (or the last
//! failed attempt) fails the codes with the reason, which the device's poll then reports.
//! `authorization_return` forwards returned codes to CSSM.

use std::collections::BTreeMap;
use std::time::Duration;

use outpost_core::Sudi;
use outpost_core::crypto::random_alphanumeric;
use outpost_core::cssm::{
    AuthKey, AuthLicense, AuthRequest, AuthRequestData, PollData, STATUS_COMPLETE,
};
use outpost_core::signed_file::verify_authorization;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::authorizations::{self, Authorization, Issued};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::catalog::{AuthorizationRequest, AuthorizationReturn};
use outpost_db::{AccountId, AsyncConnection, AsyncPgConnection, AuthorizationId, DbError};
use serde_json::{Value, json};

use super::cssm_sync::{Scopes, account_token};
use super::{JobContext, JobError, RunJob};
use crate::cssm_client::AccountScope;

/// The CSSM scope of a device's codes (its own pair, its LVA's or its account's).
async fn scope_of(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    token: &str,
    code: &Authorization,
) -> Result<AccountScope, JobError> {
    let (sa, va) = authorizations::pair_of(conn, account.id, code.lva_id, code.pi_id).await?;
    Scopes::new(&ctx.worker.cssm, token, account)?
        .scope(&sa, &va)
        .await
}

impl RunJob for AuthorizationRequest {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let mut conn = ctx.worker.pool.get().await?;
        let request = self.request_id;
        let account = self.account_id;
        let waiting: Vec<Authorization> = authorizations::of_request(&mut conn, request)
            .await?
            .into_iter()
            .filter(|c| c.state == "requested")
            .collect();
        if waiting.is_empty() {
            return Ok(json!({ "message": "no code of this request waits for CSSM" }));
        }
        let outcome = async {
            let found = accounts::find_account(&mut conn, account).await?;
            ask_cssm(ctx, &mut conn, &found, request, &waiting).await
        }
        .await;
        let now = ctx.worker.clock.now();
        let last = ctx.job.attempts >= ctx.job.max_attempts;
        // The codes, what they replace and the event change together.
        match outcome {
            Ok(issued) => {
                let filled = conn
                    .transaction::<_, DbError, _>(async |conn| {
                        let filled = authorizations::issue(conn, request, &issued, now).await?;
                        if filled < waiting.len() {
                            let why = "CSSM issued no code for this device and entitlement";
                            authorizations::fail(conn, request, why).await?;
                        }
                        let detail = json!({ "request_id": request, "codes": filled });
                        record(
                            conn,
                            account,
                            "cssm.authorization_issued",
                            detail,
                            EventResult::Ok,
                            now,
                        )
                        .await?;
                        Ok(filled)
                    })
                    .await?;
                Ok(json!({
                    "codes": filled,
                    "message": format!("{filled} of {} authorization codes issued by CSSM", waiting.len()),
                }))
            }
            Err(JobError::Retry(message)) if !last => Err(JobError::Retry(message)),
            // A refusal, or the last attempt: the device's poll learns why, and the codes these
            // would have replaced hold alone again.
            Err(JobError::Retry(message) | JobError::Fatal(message)) => {
                conn.transaction::<_, DbError, _>(async |conn| {
                    authorizations::fail(conn, request, &message).await?;
                    let detail = json!({ "request_id": request, "error": message });
                    record(
                        conn,
                        account,
                        "cssm.authorization_issued",
                        detail,
                        EventResult::Failed,
                        now,
                    )
                    .await
                })
                .await?;
                Err(JobError::Fatal(message))
            }
        }
    }
}

async fn record(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    action: &str,
    detail: Value,
    result: EventResult,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    events::record(
        conn,
        &NewEvent::account(account, "system", action, result, detail, now),
    )
    .await
}

/// Asks CSSM for the codes (once: a retry polls with the poll id CSSM gave) and returns them
/// verified.
async fn ask_cssm(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    account: &LocalAccount,
    request: uuid::Uuid,
    waiting: &[Authorization],
) -> Result<Vec<Issued>, JobError> {
    let worker = &ctx.worker;
    let Some(verifier) = &worker.ack_verifier else {
        return Err(JobError::Fatal(
            "cssm.signing_certificate_file is not set: Outpost cannot verify authorization codes"
                .into(),
        ));
    };
    let token = account_token(worker, account).await?;
    let scope = scope_of(ctx, conn, account, &token, &waiting[0]).await?;
    let poll_id = match &waiting[0].cssm_poll_id {
        Some(poll_id) => poll_id.clone(),
        None => {
            let poll_id = send_request(ctx, &token, &scope, waiting).await?;
            authorizations::set_cssm_poll_id(conn, request, &poll_id).await?;
            poll_id
        }
    };
    let attempts = worker.settings.cssm.poll_attempts.max(1);
    for attempt in 0..attempts {
        let data = PollData {
            timestamp: worker.clock.now().timestamp_millis(),
            nonce: random_alphanumeric(16),
            poll_id: poll_id.clone(),
            action: "authorizations".into(),
        };
        let polled = worker.cssm.poll_acks(&token, &scope, data).await?;
        if polled.status == STATUS_COMPLETE {
            return verify(ctx, &polled.data.authorizations, verifier);
        }
        if attempt + 1 < attempts {
            tokio::time::sleep(Duration::from_secs(worker.settings.cssm.poll_interval_secs)).await;
        }
    }
    Err(JobError::Retry(
        "CSSM has not issued the authorization codes yet".into(),
    ))
}

/// Sends `devices/authrequest` for the waiting codes; returns CSSM's poll id.
async fn send_request(
    ctx: &JobContext,
    token: &str,
    scope: &AccountScope,
    waiting: &[Authorization],
) -> Result<String, JobError> {
    let worker = &ctx.worker;
    let mut devices: BTreeMap<(String, String), Vec<AuthKey>> = BTreeMap::new();
    for code in waiting {
        devices
            .entry((code.udi_pid.clone(), code.udi_serial_number.clone()))
            .or_default()
            .push(AuthKey {
                entitlement: code.entitlement_tag.clone(),
                count: u32::try_from(code.count).unwrap_or(0),
            });
    }
    let request = AuthRequest {
        data: AuthRequestData {
            timestamp: worker.clock.now().timestamp_millis(),
            nonce: random_alphanumeric(16),
            licenses: devices
                .into_iter()
                .map(|((pid, serial), keys)| AuthLicense {
                    sudi: Sudi::new(pid, serial),
                    hostname: None,
                    keys,
                    remove_code: None,
                })
                .collect(),
        },
    };
    ctx.progress(
        0,
        Some(waiting.len() as u64),
        "asking CSSM for authorization codes",
    );
    let answer = worker.cssm.auth_request(token, scope, &request).await?;
    answer.poll_id.ok_or_else(|| {
        JobError::Fatal(format!(
            "CSSM answered {} without a poll id: {}",
            answer.status, answer.message
        ))
    })
}

/// Checks each SLAC's signature and device; one bad code refuses them all.
fn verify(
    ctx: &JobContext,
    entries: &[outpost_core::cssm::AckEntry],
    verifier: &outpost_core::crypto::SignatureVerifier,
) -> Result<Vec<Issued>, JobError> {
    let now = ctx.worker.clock.now();
    let mut issued = Vec::new();
    for entry in entries {
        let file = crate::cssm_client::decode_file(&entry.smart_license).ok_or_else(|| {
            JobError::Fatal(format!(
                "the code for {} is not base64 UTF-8 text",
                entry.sudi
            ))
        })?;
        let code = verify_authorization(&file, verifier, now).map_err(|e| {
            JobError::Fatal(format!("the code for {} was refused: {e}", entry.sudi))
        })?;
        if !code.sudi.same_device(&entry.sudi) {
            return Err(JobError::Fatal(format!(
                "the code listed for {} is for {}",
                entry.sudi, code.sudi
            )));
        }
        for entitlement in &code.data.entitlements {
            issued.push(Issued {
                udi_pid: code.sudi.udi_pid.clone(),
                udi_serial_number: code.sudi.udi_serial_number.clone(),
                entitlement_tag: entitlement.tag.clone(),
                file: file.clone(),
                confirm_code: code.data.confirm_code.clone(),
            });
        }
    }
    Ok(issued)
}

impl RunJob for AuthorizationReturn {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let worker = &ctx.worker;
        let mut conn = worker.pool.get().await?;
        let returns = authorizations::unforwarded_returns(&mut conn, self.account_id).await?;
        if returns.is_empty() {
            return Ok(json!({ "message": "no return waits" }));
        }
        let account = accounts::find_account(&mut conn, self.account_id).await?;
        let token = account_token(worker, &account).await?;
        // One call per SA/VA pair; each device once, with its return code.
        let mut by_pair: BTreeMap<(String, String), Vec<&Authorization>> = BTreeMap::new();
        for code in &returns {
            let pair =
                authorizations::pair_of(&mut conn, account.id, code.lva_id, code.pi_id).await?;
            by_pair.entry(pair).or_default().push(code);
        }
        let mut forwarded = 0;
        for ((sa, va), codes) in by_pair {
            let scope = Scopes::new(&worker.cssm, &token, &account)?
                .scope(&sa, &va)
                .await?;
            let mut devices: BTreeMap<(String, String), String> = BTreeMap::new();
            for code in &codes {
                devices
                    .entry((code.udi_pid.clone(), code.udi_serial_number.clone()))
                    .or_insert_with(|| code.return_code.clone().unwrap_or_default());
            }
            let request = AuthRequest {
                data: AuthRequestData {
                    timestamp: worker.clock.now().timestamp_millis(),
                    nonce: random_alphanumeric(16),
                    licenses: devices
                        .into_iter()
                        .map(|((pid, serial), remove_code)| AuthLicense {
                            sudi: Sudi::new(pid, serial),
                            hostname: None,
                            keys: Vec::new(),
                            remove_code: Some(remove_code),
                        })
                        .collect(),
                },
            };
            worker.cssm.auth_request(&token, &scope, &request).await?;
            let ids: Vec<AuthorizationId> = codes.iter().map(|c| c.id).collect();
            authorizations::mark_forwarded(&mut conn, &ids, worker.clock.now()).await?;
            forwarded += ids.len();
        }
        let now = worker.clock.now();
        record(
            &mut conn,
            account.id,
            "cssm.authorization_returned",
            json!({ "codes": forwarded }),
            EventResult::Ok,
            now,
        )
        .await?;
        Ok(json!({
            "codes": forwarded,
            "message": format!("{forwarded} returned authorization code(s) forwarded to CSSM"),
        }))
    }
}
