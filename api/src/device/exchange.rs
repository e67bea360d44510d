//! One device exchange against the database: identify the device (device validation), keep its
//! HA set, store what it sent, and answer with whatever waits for it (ACKs, the policy, trust
//! codes, authorization codes). Everything a request changes is written in one transaction,
//! committed before the answer is sent. The SLAC messages live in `authorization.rs`.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{
    AccountInfo, DeviceRequest, DeviceResponse, MessageCode, MessageType, ResponseData,
    SmartLicenseFile, Status,
};
use outpost_db::accounts::Tenant;
use outpost_db::alerts::{self, kinds};
use outpost_db::enums::{EventResult, ReportSource};
use outpost_db::events::{self, NewEvent};
use outpost_db::intake;
use outpost_db::pi_files::{self, PiFile};
use outpost_db::product_instances::{self, DeviceContact, HaMemberRow, UdiKey};
use outpost_db::reports::{self, DevicePoll};
use outpost_db::{
    AckId, AsyncConnection, AsyncPgConnection, DbError, DevicePollId, ProductInstanceId,
    QueryError, acks, authorizations, system,
};
use serde_json::{Value, json};

/// Why an exchange did not produce a normal answer.
#[derive(Debug)]
pub enum ExchangeError {
    /// Refused with a protocol code (nothing stored).
    Refused {
        /// The code.
        code: MessageCode,
        /// Human text.
        message: String,
    },
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for ExchangeError {
    fn from(e: DbError) -> Self {
        ExchangeError::Db(e)
    }
}

fn refused(code: MessageCode, message: impl Into<String>) -> ExchangeError {
    ExchangeError::Refused {
        code,
        message: message.into(),
    }
}

/// Reads every report before anything is written, so one bad report refuses the request whole.
fn prepare_reports(
    tenant: &Tenant,
    sender: &Sudi,
    request: &DeviceRequest,
    source: ReportSource,
    now: DateTime<Utc>,
) -> Result<Vec<intake::Prepared>, ExchangeError> {
    intake::prepare(tenant.account.id, sender, &request.data.usage, source, now)
        .map_err(|message| refused(MessageCode::MalformedRequest, message))
}

/// Why the exchange's transaction ended without committing.
pub(super) enum TxError {
    Db(DbError),
    /// A refusal found mid-way: everything written so far is rolled back.
    Refused(MessageCode, String),
}

impl From<DbError> for TxError {
    fn from(e: DbError) -> Self {
        TxError::Db(e)
    }
}

impl From<QueryError> for TxError {
    fn from(e: QueryError) -> Self {
        TxError::Db(e.into())
    }
}

pub(super) fn answer(
    status: Status,
    code: MessageCode,
    message: impl Into<String>,
    poll_id: Option<String>,
) -> DeviceResponse {
    DeviceResponse {
        status,
        nonce: None,
        message: message.into(),
        message_code: code,
        poll_id,
        retry_after: None,
        data: ResponseData::default(),
    }
}

/// Runs one exchange for a device of `tenant`.
pub async fn run(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    request: DeviceRequest,
    source: ReportSource,
    source_address: &str,
    now: DateTime<Utc>,
) -> Result<DeviceResponse, ExchangeError> {
    let sender = request
        .data
        .sudi
        .clone()
        .ok_or_else(|| refused(MessageCode::MalformedRequest, "data.sudi is required"))?;
    super::authorization::check_request(&request)?;
    let prepared = match request.message_type {
        MessageType::UsageReport => prepare_reports(tenant, &sender, &request, source, now)?,
        _ => Vec::new(),
    };
    let actor = format!("device:{sender}");
    let key = UdiKey {
        account_id: tenant.account.id,
        pid: &sender.udi_pid,
        serial: &sender.udi_serial_number,
    };

    // The tenant's own switch, when set, overrides the global one.
    let validate = match tenant.account.validate_device {
        Some(on) => on,
        None => system::validate_device(conn).await?,
    };
    if validate && product_instances::find_by_udi(conn, key).await?.is_none() {
        let message = format!(
            "device {sender} is not in the inventory of local account '{}' and device validation is on",
            tenant.account.name
        );
        events::record(
            conn,
            &NewEvent::account(
                tenant.account.id,
                actor,
                &format!("device.{}", request.message_type.as_str()),
                EventResult::Rejected,
                json!({ "reason": "DEVICE_NOT_ALLOWED", "tenant": tenant.lva.tenant_id, "source_address": source_address }),
                now,
            ),
        )
        .await?;
        return Err(refused(MessageCode::DeviceNotAllowed, message));
    }

    let contact = DeviceContact {
        sudi: serde_json::to_value(&sender).unwrap_or(Value::Null),
        product_instance_identifier: request.data.product_instance_identifier.clone(),
        hostname: request.data.hostname.clone(),
        software_version: request.data.software_version.clone(),
        software_tag: request.data.software_tag_identifier.clone(),
        last_contact_at: Some(now),
        source_address: Some(source_address.to_owned()),
        updated_at: now,
    };

    // With NAT support on, a new device is known by its UDI only: its source address is a
    // NAT gateway's, so it is never pulled from.
    let behind_nat = match tenant.account.nat_support {
        Some(on) => on,
        None => system::nat_support(conn).await?,
    };
    let outcome = conn
        .transaction::<_, TxError, _>(async |conn| {
            let pi = if validate {
                match product_instances::touch_known(conn, key, &contact).await? {
                    Some(pi) => pi,
                    None => {
                        return Err(TxError::Refused(
                            MessageCode::DeviceNotAllowed,
                            format!("device {sender} is not in the inventory"),
                        ));
                    }
                }
            } else {
                product_instances::upsert_from_contact(
                    conn,
                    key,
                    tenant.lva.id,
                    &contact,
                    behind_nat,
                    now,
                )
                .await?
            };
            let ha = update_ha_set(conn, tenant, pi, &sender, &request, &actor, now).await?;

            let (mut response, mut detail, mut files) = match request.message_type {
                MessageType::UsageReport => {
                    store_usage(
                        conn,
                        tenant,
                        pi,
                        prepared,
                        &request.data.trust_requests,
                        now,
                    )
                    .await?
                }
                MessageType::ResultPoll => {
                    match result_poll(conn, pi, request.data.poll_id.as_deref()).await? {
                        Ok(parts) => parts,
                        Err((code, message)) => return Err(TxError::Refused(code, message)),
                    }
                }
                MessageType::TrustSync => trust_sync(conn, pi, now).await?,
                MessageType::AuthorizationRequest
                | MessageType::AuthorizationConfirmation
                | MessageType::AuthorizationReturn => {
                    match super::authorization::handle(
                        conn, tenant, pi, &sender, &request, &ha, now,
                    )
                    .await?
                    {
                        Ok(parts) => parts,
                        Err((code, message)) => return Err(TxError::Refused(code, message)),
                    }
                }
                MessageType::Hello => (
                    answer(Status::Ok, MessageCode::HelloOk, "hello", None),
                    json!({}),
                    Vec::new(),
                ),
            };

            // Whatever waits for this device goes with this answer, whatever was asked.
            let pending = acks::take_undelivered(conn, pi, now).await?;
            let delivered = pending.len();
            files.extend(pending);
            let mut seen = BTreeSet::new();
            files.retain(|(id, _)| seen.insert(*id));
            response.data.acknowledgements = files
                .into_iter()
                .map(|(_, file)| SmartLicenseFile {
                    sudi: None,
                    smart_license: STANDARD.encode(file),
                })
                .collect();
            let issued = pi_files::take_undelivered(conn, pi, now).await?;
            add_pi_files(&mut response, issued);
            let codes =
                authorizations::take_undelivered(conn, tenant.account.id, &ha.udis, now).await?;
            super::authorization::add_codes(&mut response, codes);
            response.data.account_info = Some(AccountInfo {
                smart_account: tenant.account.smart_account.clone(),
                virtual_account: tenant.account.virtual_account.clone(),
                local_account: tenant.account.name.clone(),
                as_of: now.timestamp_millis(),
            });
            if let Value::Object(map) = &mut detail {
                map.insert("source_address".into(), json!(source_address));
                map.insert("message_code".into(), json!(response.message_code));
                map.insert("acks_delivered".into(), json!(delivered));
                map.insert(
                    "delivered".into(),
                    json!({
                        "policy": response.data.policy.is_some(),
                        "trust_codes": response.data.trust_codes.len(),
                        "authorizations": response.data.authorizations.len(),
                    }),
                );
            }
            events::record(
                conn,
                &NewEvent {
                    account_id: Some(tenant.account.id),
                    pi_id: Some(pi),
                    actor: actor.clone(),
                    action: format!("device.{}", request.message_type.as_str()),
                    result: EventResult::Ok,
                    detail,
                    created_at: now,
                },
            )
            .await?;
            Ok(response)
        })
        .await;

    match outcome {
        Ok(mut response) => {
            response.nonce = request.data.nonce;
            Ok(response)
        }
        Err(TxError::Refused(code, message)) => Err(refused(code, message)),
        Err(TxError::Db(e)) => Err(ExchangeError::Db(e)),
    }
}

/// An exchange's answer, its event detail, and the ACK files it hands over.
pub(super) type Parts = (DeviceResponse, Value, Vec<(AckId, String)>);

/// The device's HA set after this exchange.
#[derive(Debug, Default)]
pub(super) struct HaSet {
    /// Every UDI of the set (the PI's own first), as (PID, serial).
    pub udis: Vec<(String, String)>,
}

/// Keeps the HA set a device reports (`ha_udi`): new members join it, and the sender takes
/// the reporting role. A PI of the account named as a member stops counting: only the active's
/// usage is counted. A switchover (the reporting role moving from one PI to another) and new
/// members are events.
async fn update_ha_set(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    sender: &Sudi,
    request: &DeviceRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<HaSet, TxError> {
    let account = tenant.account.id;
    let before = product_instances::ha_members(conn, account, pi).await?;
    let own = (sender.udi_pid.clone(), sender.udi_serial_number.clone());
    let mut udis = vec![own.clone()];
    if request.data.ha_udi.is_empty() {
        // Only the active reports usage: a unit that reports for itself alone counts again.
        if request.message_type == MessageType::UsageReport
            && product_instances::report_alone(conn, pi).await?
        {
            events::record(
                conn,
                &NewEvent {
                    account_id: Some(account),
                    pi_id: Some(pi),
                    actor: actor.to_owned(),
                    action: "ha.reporting_alone".into(),
                    result: EventResult::Ok,
                    detail: json!({ "reporting": sender.to_string() }),
                    created_at: now,
                },
            )
            .await?;
        }
        udis.extend(
            before
                .iter()
                .map(|m| (m.udi_pid.clone(), m.udi_serial_number.clone()))
                .filter(|udi| *udi != own),
        );
        return Ok(HaSet { udis });
    }
    let members: Vec<HaMemberRow> = request
        .data
        .ha_udi
        .iter()
        .map(|m| HaMemberRow {
            account_id: account,
            pi_id: pi,
            role: m.role.as_str().into(),
            udi_pid: m.sudi.udi_pid.clone(),
            udi_serial_number: m.sudi.udi_serial_number.clone(),
            updated_at: now,
        })
        .collect();
    product_instances::replace_ha_members(conn, account, pi, &members).await?;
    for m in &members {
        let udi = (m.udi_pid.clone(), m.udi_serial_number.clone());
        if !udis.contains(&udi) {
            udis.push(udi);
        }
    }
    let added: Vec<String> = members
        .iter()
        .filter(|m| {
            !(m.udi_pid == sender.udi_pid && m.udi_serial_number == sender.udi_serial_number)
        })
        .filter(|m| {
            !before
                .iter()
                .any(|b| b.udi_pid == m.udi_pid && b.udi_serial_number == m.udi_serial_number)
        })
        .map(|m| format!("PID:{},SN:{} ({})", m.udi_pid, m.udi_serial_number, m.role))
        .collect();
    let (joined, took_over) =
        product_instances::take_reporting_role(conn, account, pi, &udis[1..]).await?;
    let handed_over: Vec<ProductInstanceId> = joined
        .iter()
        .filter(|j| j.was_reporting)
        .map(|j| j.id)
        .collect();
    for member in &handed_over {
        // Its deadlines are the set's now, and the set reports through the sender.
        for kind in [
            kinds::REPORTING_DUE,
            kinds::REPORTING_OVERDUE,
            kinds::ACK_OVERDUE,
        ] {
            alerts::clear(conn, account, Some(*member), kind, now).await?;
        }
    }
    let mut record = async |action: &str, detail: Value| {
        events::record(
            conn,
            &NewEvent {
                account_id: Some(account),
                pi_id: Some(pi),
                actor: actor.to_owned(),
                action: action.to_owned(),
                result: EventResult::Ok,
                detail,
                created_at: now,
            },
        )
        .await
    };
    if !added.is_empty() && !before.is_empty() {
        record("ha.member_added", json!({ "members": added })).await?;
    }
    if took_over || !handed_over.is_empty() {
        record(
            "ha.switchover",
            json!({ "reporting": sender.to_string(), "from_product_instances": handed_over }),
        )
        .await?;
    }
    Ok(HaSet { udis })
}

/// Puts the policy and trust codes waiting for the device into the answer.
fn add_pi_files(response: &mut DeviceResponse, files: Vec<PiFile>) {
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

/// `trust_sync`: the device has installed the trust codes it was handed.
async fn trust_sync(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<Parts, DbError> {
    let installed = pi_files::mark_trust_installed(conn, pi, now).await?;
    let message = if installed == 0 {
        "trust synchronised; no new trust code to record".to_owned()
    } else {
        format!("trust code installed ({installed} recorded)")
    };
    Ok((
        answer(Status::Ok, MessageCode::TrustSynced, message, None),
        json!({ "trust_codes_installed": installed }),
        Vec::new(),
    ))
}

async fn store_usage(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    pi: ProductInstanceId,
    prepared: Vec<intake::Prepared>,
    trust_requests: &[Value],
    now: DateTime<Utc>,
) -> Result<Parts, DbError> {
    if !trust_requests.is_empty() {
        // Forwarded with the device's reports by the next CSSM sync.
        product_instances::set_trust_requests(conn, pi, trust_requests).await?;
    }
    if prepared.is_empty() {
        return Ok((
            answer(
                Status::Ok,
                MessageCode::NoReports,
                "the request holds no reports",
                None,
            ),
            json!({ "reports": 0 }),
            Vec::new(),
        ));
    }
    let stored = intake::store(conn, tenant.account.id, pi, prepared, now).await?;
    let poll =
        reports::create_device_poll(conn, tenant.account.id, pi, &stored.report_ids, now).await?;
    let known = stored.reports - stored.new;
    let mut message = format!(
        "usage accepted: {} reports ({known} already known)",
        stored.reports
    );
    if !trust_requests.is_empty() {
        message.push_str(&format!(
            "; {} trust code request(s) go to CSSM with them",
            trust_requests.len()
        ));
    }
    let detail = json!({
        "reports": stored.reports,
        "new": stored.new,
        "already_known": known,
        "poll_id": poll,
        "trust_requests": trust_requests.len(),
    });
    Ok((
        answer(
            Status::OkPoll,
            MessageCode::UsageAccepted,
            message,
            Some(poll.to_string()),
        ),
        detail,
        Vec::new(),
    ))
}

async fn result_poll(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    poll_id: Option<&str>,
) -> Result<Result<Parts, (MessageCode, String)>, DbError> {
    let Some(poll_text) = poll_id else {
        return Ok(Err((
            MessageCode::MalformedRequest,
            "data.poll_id is required for result_poll".into(),
        )));
    };
    let unknown = || {
        Err((
            MessageCode::UnknownPollId,
            format!("unknown poll_id '{poll_text}' for this device"),
        ))
    };
    let Ok(poll) = poll_text.parse::<DevicePollId>() else {
        return Ok(unknown());
    };
    let report_ids = match reports::device_poll(conn, pi, poll).await? {
        None => return Ok(unknown()),
        Some(DevicePoll::Authorization(request)) => {
            return super::authorization::poll(conn, request, poll_text).await;
        }
        Some(DevicePoll::Reports(ids)) => ids,
    };
    let waiting = reports::count_unacknowledged(conn, pi, &report_ids).await?;
    let files = acks::acks_for_reports(conn, pi, &report_ids).await?;
    let detail = json!({ "poll_id": poll_text, "waiting": waiting });
    let response = if waiting == 0 {
        answer(
            Status::Ok,
            MessageCode::PollComplete,
            "acknowledgement ready",
            None,
        )
    } else {
        let message = format!(
            "{waiting} of {} reports await CSSM's acknowledgement",
            report_ids.len()
        );
        answer(
            Status::OkPoll,
            MessageCode::PollPending,
            message,
            Some(poll_text.to_owned()),
        )
    };
    // The policy and trust codes those ACKs brought go again too.
    let ack_ids: Vec<AckId> = files.iter().map(|(id, _)| *id).collect();
    let mut response = response;
    add_pi_files(&mut response, pi_files::for_acks(conn, pi, &ack_ids).await?);
    Ok(Ok((response, detail, files)))
}
