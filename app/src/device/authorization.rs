//! The SLAC messages of the device protocol: `authorization_request` (codes asked of CSSM by a
//! worker job, answered `OK_POLL`; `scope: all` asks for every UDI of the HA set; codes
//! imported from a SLAC CSV are handed over at once), `authorization_confirmation` (the device
//! installed a code) and `authorization_return` (the device gives its codes back: the licenses
//! return to the pool at once and a job forwards the return to CSSM). Codes themselves travel
//! in `data.authorizations` of any later answer.

use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{
    AuthorizationMode, AuthorizationScope, DeviceRequest, MessageCode, MessageType, Status,
};
use outpost_db::accounts::Tenant;
use outpost_db::authorizations::{self, Ask, Authorization, Refusal};
use outpost_db::jobs::{
    self, JobPayload,
    catalog::{AuthorizationRequest, AuthorizationReturn},
};
use outpost_db::{AsyncPgConnection, ProductInstanceId, reports};
use serde_json::json;

use super::ha::HaSet;
use super::{Reply, waiting};
use crate::error::{AppError, AppResult, Code};

/// Runs a job gets before its codes are marked failed.
const JOB_ATTEMPTS: i32 = 8;

/// Checks that a SLAC message carries what it needs, before anything is read or written.
pub(super) fn check_request(request: &DeviceRequest) -> AppResult<()> {
    let missing = |field: &str| {
        Err(AppError::malformed(format!(
            "data.{field} is required for {}",
            request.message_type.as_str()
        )))
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

/// The (device, entitlement, count) asks of a request: every UDI of the set with `scope:
/// all`, else the listed devices, each of which must be the sender or a member.
fn asks_of(request: &DeviceRequest, ha: &HaSet) -> AppResult<Vec<Ask>> {
    let data = &request.data;
    let all = data.scope == Some(AuthorizationScope::All);
    let mut asks: Vec<Ask> = Vec::new();
    for (i, license) in data.licenses.iter().enumerate() {
        let targets = if all {
            ha.udis.clone()
        } else {
            vec![ha.member(&license.sudi, &format!("data.licenses[{i}].sudi"))?]
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
    Ok(asks)
}

/// `authorization_request`: imported codes at once, else codes asked of CSSM.
pub(super) async fn request(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    sender: &Sudi,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> AppResult<Reply> {
    let account = tenant.account.id;
    let data = &request.data;
    let add = data.mode != Some(AuthorizationMode::Replace);
    let mode = if add { "add" } else { "replace" };
    let scope = match data.scope {
        Some(AuthorizationScope::All) => "all",
        _ => "local",
    };
    let asks = asks_of(request, ha)?;
    let request_id = uuid::Uuid::new_v4();
    if let Some(ready) = authorizations::ready_imports(conn, account, &asks).await? {
        // Codes imported from a SLAC CSV wait for exactly these: hand them over now, under a
        // poll id that hands them over again if this answer is lost.
        authorizations::claim(conn, &ready, request_id).await?;
        let poll = reports::create_authorization_poll(conn, account, pi, request_id, now).await?;
        let message = format!("{} authorization code(s) ready", asks.len());
        let detail = json!({ "codes": asks.len(), "from": "import", "mode": mode, "scope": scope, "poll_id": poll });
        return Ok(Reply::new(
            Status::Ok,
            MessageCode::AuthorizationIssued,
            message,
            Some(poll.to_string()),
            detail,
        ));
    }
    let lva = authorizations::lva_of(conn, pi).await?;
    let rows = authorizations::request(conn, account, lva, pi, request_id, &asks, add, now)
        .await?
        .map_err(|refusal| match refusal {
            Refusal::NotAuthorizable(m) => AppError::refused(Code::NotAuthorizable, m),
            Refusal::Insufficient(m) => AppError::refused(Code::InsufficientLicenses, m),
            Refusal::Pending(m) => AppError::refused(Code::RequestPending, m),
        })?;
    let poll = reports::create_authorization_poll(conn, account, pi, request_id, now).await?;
    let job = AuthorizationRequest {
        account_id: account,
        request_id,
    };
    jobs::enqueue(conn, &job.job(now, JOB_ATTEMPTS), now).await?;
    let devices: Vec<String> = rows
        .iter()
        .map(|r| format!("PID:{},SN:{}", r.udi_pid, r.udi_serial_number))
        .collect();
    let message = format!(
        "{} authorization code(s) asked of CSSM for {sender}; poll for them",
        rows.len()
    );
    let detail = json!({ "request_id": request_id, "codes": rows.len(), "devices": devices, "mode": mode, "scope": scope, "poll_id": poll });
    Ok(Reply::new(
        Status::OkPoll,
        MessageCode::AuthorizationPending,
        message,
        Some(poll.to_string()),
        detail,
    ))
}

/// `authorization_confirmation`: each code must be one of the device's (or its set's).
pub(super) async fn confirm(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> AppResult<Reply> {
    let account = tenant.account.id;
    let mut confirmed = Vec::new();
    for (i, c) in request.data.confirmations.iter().enumerate() {
        let (pid, serial) = ha.member(&c.sudi, &format!("data.confirmations[{i}].sudi"))?;
        let code = authorizations::confirm(conn, account, (&pid, &serial), &c.confirm_code, now)
            .await?
            .ok_or_else(|| {
                AppError::refused(
                    Code::UnknownAuthorization,
                    format!(
                        "no authorization code of {} has the confirmation code {}",
                        c.sudi, c.confirm_code
                    ),
                )
            })?;
        confirmed.push(code.entitlement_tag);
    }
    authorizations::check_alert(conn, account, pi, now).await?;
    let message = format!("{} confirmation(s) recorded", confirmed.len());
    Ok(Reply::new(
        Status::Ok,
        MessageCode::AuthorizationConfirmed,
        message,
        None,
        json!({ "confirmed": confirmed }),
    ))
}

/// `authorization_return`: the codes go back to the pool now and to CSSM by a job.
pub(super) async fn give_back(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    request: &DeviceRequest,
    ha: &HaSet,
    now: DateTime<Utc>,
) -> AppResult<Reply> {
    let account = tenant.account.id;
    let mut freed = 0i64;
    let mut returned = Vec::new();
    for (i, r) in request.data.returns.iter().enumerate() {
        let (pid, serial) = ha.member(&r.sudi, &format!("data.returns[{i}].sudi"))?;
        let codes =
            authorizations::give_back(conn, account, (&pid, &serial), &r.return_code, now).await?;
        if codes.is_empty() {
            return Err(AppError::refused(
                Code::UnknownAuthorization,
                format!("{} holds no authorization code to return", r.sudi),
            ));
        }
        freed += codes.iter().map(|c| i64::from(c.count)).sum::<i64>();
        returned.push(r.sudi.to_string());
    }
    let job = AuthorizationReturn {
        account_id: account,
    };
    jobs::enqueue(conn, &job.job(now, JOB_ATTEMPTS), now).await?;
    authorizations::check_alert(conn, account, pi, now).await?;
    let message = format!("authorization returned: {freed} license(s) back in the pool");
    Ok(Reply::new(
        Status::Ok,
        MessageCode::AuthorizationReturned,
        message,
        None,
        json!({ "returned": returned, "licenses_freed": freed }),
    ))
}

/// `result_poll` for an authorization request: the codes once CSSM issued them.
pub(super) async fn poll(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
    poll_id: &str,
) -> AppResult<Reply> {
    let codes = authorizations::of_request(conn, request).await?;
    let waiting = codes.iter().filter(|c| c.state == "requested").count();
    let detail = json!({ "poll_id": poll_id, "request_id": request, "waiting": waiting });
    if waiting > 0 {
        let message = format!(
            "{waiting} of {} authorization codes await CSSM",
            codes.len()
        );
        return Ok(Reply::new(
            Status::OkPoll,
            MessageCode::AuthorizationPending,
            message,
            Some(poll_id.to_owned()),
            detail,
        ));
    }
    let (issued, failed): (Vec<Authorization>, Vec<Authorization>) = codes
        .into_iter()
        .filter(|c| c.state != "requested")
        .partition(|c| c.state == "issued" || c.state == "confirmed");
    if issued.is_empty()
        && let Some(first) = failed.iter().find(|c| c.state == "failed")
    {
        return Err(AppError::refused(
            Code::AuthorizationFailed,
            format!(
                "CSSM did not issue the codes: {}",
                first.error.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let not_issued: Vec<String> = failed
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
    let message = if not_issued.is_empty() {
        "authorization codes ready".to_owned()
    } else {
        format!(
            "{} authorization code(s) ready; not issued: {}",
            issued.len(),
            not_issued.join("; ")
        )
    };
    let mut reply = Reply::new(
        Status::Ok,
        MessageCode::AuthorizationIssued,
        message,
        None,
        detail,
    );
    waiting::add_codes(&mut reply.response, issued);
    Ok(reply)
}
