//! The SLAC messages of the device protocol: `authorization_request` (codes asked of CSSM by
//! a worker job, answered `OK_POLL`; `scope: all` asks for every UDI of the HA set),
//! `authorization_confirmation` (the device installed a code) and `authorization_return` (the
//! device gives its codes back: the licenses return to the pool at once and a job forwards the
//! return to CSSM). Codes themselves travel in `data.authorizations` of any later answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{
    AuthorizationMode, AuthorizationScope, DeviceRequest, DeviceResponse, MessageCode, MessageType,
    SmartLicenseFile, Status,
};
use outpost_db::accounts::Tenant;
use outpost_db::authorizations::{self, Ask, Authorization, Refusal};
use outpost_db::jobs::{
    self,
    catalog::{AuthorizationRequest, AuthorizationReturn},
};
use outpost_db::{AsyncPgConnection, DbError, ProductInstanceId, reports};
use serde_json::json;

use super::exchange::{ExchangeError, HaSet, Parts, answer};

/// Runs a job gets before its codes are marked failed.
const JOB_ATTEMPTS: i32 = 8;

/// What the exchange gets back: the answer, a refusal (rolled back), or a database failure.
type Outcome = Result<Result<Parts, (MessageCode, String)>, DbError>;

/// Why a SLAC message ends without an answer; both kinds pass through `?`.
enum Fail {
    Refused(MessageCode, String),
    Db(DbError),
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Fail::Db(e)
    }
}

type Done = Result<Parts, Fail>;

fn refused(code: MessageCode, message: impl Into<String>) -> Fail {
    Fail::Refused(code, message.into())
}

fn outcome(done: Done) -> Outcome {
    match done {
        Ok(parts) => Ok(Ok(parts)),
        Err(Fail::Refused(code, message)) => Ok(Err((code, message))),
        Err(Fail::Db(e)) => Err(e),
    }
}

/// Checks that a SLAC message carries what it needs, before anything is read or written.
pub(super) fn check_request(request: &DeviceRequest) -> Result<(), ExchangeError> {
    let missing = |field: &str| {
        Err(ExchangeError::Refused {
            code: MessageCode::MalformedRequest,
            message: format!(
                "data.{field} is required for {}",
                request.message_type.as_str()
            ),
        })
    };
    let d = &request.data;
    match request.message_type {
        MessageType::AuthorizationRequest if d.licenses.is_empty() => missing("licenses"),
        MessageType::AuthorizationConfirmation if d.confirmations.is_empty() => {
            missing("confirmations")
        }
        MessageType::AuthorizationReturn if d.returns.is_empty() => missing("returns"),
        _ => Ok(()),
    }
}

/// Puts codes into an answer's `data.authorizations`, each once.
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

/// The UDI of a listed device, if it is the sender or a member of its HA set.
fn member_of(ha: &HaSet, sudi: &Sudi, field: &str) -> Result<(String, String), Fail> {
    let udi = (sudi.udi_pid.clone(), sudi.udi_serial_number.clone());
    if ha.udis.contains(&udi) {
        Ok(udi)
    } else {
        Err(refused(
            MessageCode::MalformedRequest,
            format!("{field} {sudi} is neither this device nor a member of its HA set"),
        ))
    }
}

/// Runs one SLAC message.
pub(super) async fn handle(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    sender: &Sudi,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> Outcome {
    outcome(match request.message_type {
        MessageType::AuthorizationRequest => ask(conn, tenant, pi, sender, request, ha, now).await,
        MessageType::AuthorizationConfirmation => confirm(conn, tenant, pi, request, ha, now).await,
        _ => give_back(conn, tenant, pi, request, ha, now).await,
    })
}

async fn ask(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    sender: &Sudi,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> Done {
    let account = tenant.account.id;
    let data = &request.data;
    let all = data.scope == Some(AuthorizationScope::All);
    let add = data.mode != Some(AuthorizationMode::Replace);
    let mut asks: Vec<Ask> = Vec::new();
    for (i, license) in data.licenses.iter().enumerate() {
        let targets = if all {
            ha.udis.clone()
        } else {
            vec![member_of(
                ha,
                &license.sudi,
                &format!("data.licenses[{i}].sudi"),
            )?]
        };
        for (pid, serial) in targets {
            for key in &license.keys {
                let known = asks.iter().any(|a| {
                    a.udi_pid == pid
                        && a.udi_serial_number == serial
                        && a.entitlement_tag == key.entitlement
                });
                if !known {
                    asks.push(Ask {
                        udi_pid: pid.clone(),
                        udi_serial_number: serial.clone(),
                        entitlement_tag: key.entitlement.clone(),
                        count: i32::try_from(key.count).unwrap_or(i32::MAX),
                    });
                }
            }
        }
    }
    let mode = if add { "add" } else { "replace" };
    let scope = if all { "all" } else { "local" };
    let request_id = uuid::Uuid::new_v4();
    if let Some(ready) = authorizations::ready_imports(conn, account, &asks).await? {
        // Codes imported from a SLAC CSV wait for exactly these: hand them over now, under a
        // poll id that hands them over again if this answer is lost.
        authorizations::claim(conn, &ready, request_id).await?;
        let poll = reports::create_authorization_poll(conn, account, pi, request_id, now).await?;
        let message = format!("{} authorization code(s) ready", asks.len());
        return Ok((
            answer(
                Status::Ok,
                MessageCode::AuthorizationIssued,
                message,
                Some(poll.to_string()),
            ),
            json!({ "codes": asks.len(), "from": "import", "mode": mode, "scope": scope, "poll_id": poll }),
            Vec::new(),
        ));
    }
    let lva = authorizations::lva_of(conn, pi).await?;
    let rows = match authorizations::request(conn, account, lva, pi, request_id, &asks, add, now)
        .await?
    {
        Ok(rows) => rows,
        Err(Refusal::NotAuthorizable(m)) => return Err(refused(MessageCode::NotAuthorizable, m)),
        Err(Refusal::Insufficient(m)) => return Err(refused(MessageCode::InsufficientLicenses, m)),
        Err(Refusal::Pending(m)) => return Err(refused(MessageCode::RequestPending, m)),
    };
    let poll = reports::create_authorization_poll(conn, account, pi, request_id, now).await?;
    let job = AuthorizationRequest {
        account_id: account,
        request_id,
    }
    .job(now, JOB_ATTEMPTS);
    jobs::enqueue(conn, &job, now).await?;
    let devices: Vec<String> = rows
        .iter()
        .map(|r| format!("PID:{},SN:{}", r.udi_pid, r.udi_serial_number))
        .collect();
    let message = format!(
        "{} authorization code(s) asked of CSSM for {sender}; poll for them",
        rows.len()
    );
    Ok((
        answer(
            Status::OkPoll,
            MessageCode::AuthorizationPending,
            message,
            Some(poll.to_string()),
        ),
        json!({ "request_id": request_id, "codes": rows.len(), "devices": devices, "mode": mode, "scope": scope, "poll_id": poll }),
        Vec::new(),
    ))
}

async fn confirm(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> Done {
    let account = tenant.account.id;
    let mut confirmed = Vec::new();
    for (i, c) in request.data.confirmations.iter().enumerate() {
        let (pid, serial) = member_of(ha, &c.sudi, &format!("data.confirmations[{i}].sudi"))?;
        match authorizations::confirm(conn, account, (&pid, &serial), &c.confirm_code, now).await? {
            Some(code) => confirmed.push(code.entitlement_tag),
            None => {
                return Err(refused(
                    MessageCode::UnknownAuthorization,
                    format!(
                        "no authorization code of {} has the confirmation code {}",
                        c.sudi, c.confirm_code
                    ),
                ));
            }
        }
    }
    authorizations::check_alert(conn, account, pi, now).await?;
    let message = format!("{} confirmation(s) recorded", confirmed.len());
    Ok((
        answer(
            Status::Ok,
            MessageCode::AuthorizationConfirmed,
            message,
            None,
        ),
        json!({ "confirmed": confirmed }),
        Vec::new(),
    ))
}

async fn give_back(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> Done {
    let account = tenant.account.id;
    let mut freed = 0i64;
    let mut returned = Vec::new();
    for (i, r) in request.data.returns.iter().enumerate() {
        let (pid, serial) = member_of(ha, &r.sudi, &format!("data.returns[{i}].sudi"))?;
        let codes =
            authorizations::give_back(conn, account, (&pid, &serial), &r.return_code, now).await?;
        if codes.is_empty() {
            return Err(refused(
                MessageCode::UnknownAuthorization,
                format!("{} holds no authorization code to return", r.sudi),
            ));
        }
        freed += codes.iter().map(|c| i64::from(c.count)).sum::<i64>();
        returned.push(r.sudi.to_string());
    }
    jobs::enqueue(
        conn,
        &AuthorizationReturn {
            account_id: account,
        }
        .job(now, JOB_ATTEMPTS),
        now,
    )
    .await?;
    authorizations::check_alert(conn, account, pi, now).await?;
    let message = format!("authorization returned: {freed} license(s) back in the pool");
    Ok((
        answer(
            Status::Ok,
            MessageCode::AuthorizationReturned,
            message,
            None,
        ),
        json!({ "returned": returned, "licenses_freed": freed }),
        Vec::new(),
    ))
}

/// `result_poll` for an authorization request: the codes once CSSM issued them.
pub(super) async fn poll(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
    poll_id: &str,
) -> Outcome {
    outcome(poll_codes(conn, request, poll_id).await)
}

async fn poll_codes(conn: &mut AsyncPgConnection, request: uuid::Uuid, poll_id: &str) -> Done {
    let codes = authorizations::of_request(conn, request).await?;
    let waiting = codes.iter().filter(|c| c.state == "requested").count();
    let detail = json!({ "poll_id": poll_id, "request_id": request, "waiting": waiting });
    if waiting > 0 {
        let message = format!(
            "{waiting} of {} authorization codes await CSSM",
            codes.len()
        );
        return Ok((
            answer(
                Status::OkPoll,
                MessageCode::AuthorizationPending,
                message,
                Some(poll_id.to_owned()),
            ),
            detail,
            Vec::new(),
        ));
    }
    let issued = codes
        .iter()
        .filter(|c| c.state == "issued" || c.state == "confirmed")
        .count();
    if let Some(failed) = codes.iter().find(|c| c.state == "failed")
        && issued == 0
    {
        return Err(refused(
            MessageCode::AuthorizationFailed,
            format!(
                "CSSM did not issue the codes: {}",
                failed.error.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let failed: Vec<String> = codes
        .iter()
        .filter(|c| c.state == "failed")
        .map(|c| {
            format!(
                "PID:{},SN:{} {}: {}",
                c.udi_pid,
                c.udi_serial_number,
                c.entitlement_tag,
                c.error.as_deref().unwrap_or("not issued")
            )
        })
        .collect();
    let message = if failed.is_empty() {
        "authorization codes ready".to_owned()
    } else {
        format!(
            "{issued} authorization code(s) ready; not issued: {}",
            failed.join("; ")
        )
    };
    let mut response = answer(Status::Ok, MessageCode::AuthorizationIssued, message, None);
    add_codes(
        &mut response,
        codes
            .into_iter()
            .filter(|c| c.state == "issued" || c.state == "confirmed")
            .collect(),
    );
    Ok((response, detail, Vec::new()))
}
