//! The device exchange (`docs/protocol.md` section 3): find the tenant, identify the device (device
//! validation), keep its HA set, run its message, and answer with whatever waits for it (ACKs,
//! the policy, trust codes, authorization codes). Everything one request changes is written in
//! one transaction, committed before the answer exists. One function per message type:
//! `usage.rs`, `poll.rs`, `trust.rs`, `authorization.rs`; the HA set in `ha.rs`, and what waits
//! for the device in `waiting.rs`.

mod authorization;
mod ha;
mod poll;
mod request;
mod trust;
mod usage;
mod waiting;

use chrono::{DateTime, Utc};
use outpost_core::Sudi;
use outpost_core::device::{DeviceRequest, DeviceResponse, MessageCode, MessageType, Status};
use outpost_db::accounts::{self, Tenant};
use outpost_db::enums::{AccountStatus, EventResult, ReportSource};
use outpost_db::events::{self, NewEvent};
use outpost_db::product_instances::{self, DeviceContact, UdiKey};
use outpost_db::{AckId, AsyncConnection, AsyncPgConnection, ProductInstanceId, system};
use serde_json::{Value, json};

use self::ha::HaSet;
pub use self::request::parse;
use crate::error::{AppError, AppResult, Code};
use crate::intake::{self, Prepared};

/// What one message produced: the answer, its event's detail, and the ACK files it hands over
/// besides those waiting anyway.
pub(crate) struct Reply {
    response: DeviceResponse,
    detail: Value,
    acks: Vec<(AckId, String)>,
}

impl Reply {
    /// An answer with its event detail and nothing extra to hand over.
    fn new(
        status: Status,
        code: MessageCode,
        message: impl Into<String>,
        poll_id: Option<String>,
        detail: Value,
    ) -> Self {
        Self {
            response: DeviceResponse {
                status,
                nonce: None,
                message: message.into(),
                message_code: code,
                poll_id,
                retry_after: None,
                data: Default::default(),
            },
            detail,
            acks: Vec::new(),
        }
    }
}

/// The tenant a device addressed: `tenant` from its URL, else the configured default (`""`:
/// none). Refused when unknown, deactivated or not registered with CSSM yet.
pub async fn find_tenant(
    conn: &mut AsyncPgConnection,
    tenant: Option<&str>,
    default_tenant: &str,
) -> AppResult<Tenant> {
    let tenant_id = match tenant {
        Some(id) => id,
        None if !default_tenant.is_empty() => default_tenant,
        None => {
            return Err(AppError::refused(
                Code::UnknownTenant,
                "no tenant in the URL and no default tenant is configured",
            ));
        }
    };
    // No tenant id has control characters (a NUL would not even reach the database) or is
    // longer than a name, a dash and a number.
    if tenant_id.len() > 256 || tenant_id.chars().any(char::is_control) {
        return Err(AppError::refused(
            Code::UnknownTenant,
            "the tenant id in the URL is not valid",
        ));
    }
    let Some(tenant) = accounts::find_tenant(conn, tenant_id).await? else {
        return Err(AppError::refused(
            Code::UnknownTenant,
            format!("unknown tenant '{tenant_id}'"),
        ));
    };
    let account = &tenant.account;
    let refusal = match account.status {
        AccountStatus::Active => return Ok(tenant),
        AccountStatus::Inactive => format!(
            "local account '{}' is inactive: {}",
            account.name,
            account
                .status_reason
                .as_deref()
                .unwrap_or("deactivated by an administrator")
        ),
        AccountStatus::Requested | AccountStatus::Approved => format!(
            "local account '{}' is not registered with CSSM yet",
            account.name
        ),
    };
    Err(AppError::refused(Code::TenantInactive, refusal))
}

/// One exchange: who sent it, to which tenant, and how it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The tenant the device addressed.
    pub tenant: &'a Tenant,
    /// Push (JSON or XML body) or an uploaded file.
    pub source: ReportSource,
    /// The device's address as Outpost saw it (or what brought the file).
    pub source_address: &'a str,
}

/// Runs one exchange for a device of `origin.tenant`; the answer echoes the request's nonce.
pub async fn run(
    conn: &mut AsyncPgConnection,
    origin: Origin<'_>,
    request: DeviceRequest,
    now: DateTime<Utc>,
) -> AppResult<DeviceResponse> {
    let sender = request
        .data
        .sudi
        .clone()
        .ok_or_else(|| AppError::malformed("data.sudi is required"))?;
    authorization::check_request(&request)?;
    let prepared = match request.message_type {
        MessageType::UsageReport => intake::prepare(
            origin.tenant.account.id,
            &sender,
            &request.data.usage,
            origin.source,
            now,
        )?,
        _ => Vec::new(),
    };
    let validate = validates_devices(conn, origin, &sender, &request, now).await?;
    let behind_nat = match origin.tenant.account.nat_support {
        Some(on) => on,
        None => system::nat_support(conn).await?,
    };
    let exchange = Exchange {
        origin,
        sender,
        request: &request,
        validate,
        behind_nat,
        now,
    };
    let mut response = conn
        .transaction::<_, AppError, _>(async |conn| exchange.within(conn, prepared).await)
        .await?;
    response.nonce = request.data.nonce;
    Ok(response)
}

/// Device validation (the tenant's switch, else the global one): `true` when on. A device
/// not in the inventory is refused, and the refusal is an event of the tenant.
async fn validates_devices(
    conn: &mut AsyncPgConnection,
    origin: Origin<'_>,
    sender: &Sudi,
    request: &DeviceRequest,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let tenant = origin.tenant;
    let validate = match tenant.account.validate_device {
        Some(on) => on,
        None => system::validate_device(conn).await?,
    };
    if !validate
        || product_instances::find_by_udi(conn, udi_key(tenant, sender))
            .await?
            .is_some()
    {
        return Ok(validate);
    }
    let detail = json!({ "reason": "DEVICE_NOT_ALLOWED", "tenant": tenant.lva.tenant_id, "source_address": origin.source_address });
    let event = NewEvent::account(
        tenant.account.id,
        format!("device:{sender}"),
        &format!("device.{}", request.message_type.as_str()),
        EventResult::Rejected,
        detail,
        now,
    );
    events::record(conn, &event).await?;
    Err(not_allowed(tenant, sender))
}

fn not_allowed(tenant: &Tenant, sender: &Sudi) -> AppError {
    AppError::refused(
        Code::DeviceNotAllowed,
        format!(
            "device {sender} is not in the inventory of local account '{}' and device validation is on",
            tenant.account.name
        ),
    )
}

fn udi_key<'a>(tenant: &Tenant, sender: &'a Sudi) -> UdiKey<'a> {
    UdiKey {
        account_id: tenant.account.id,
        pid: &sender.udi_pid,
        serial: &sender.udi_serial_number,
    }
}

/// An exchange checked and ready to run in its transaction.
struct Exchange<'a> {
    origin: Origin<'a>,
    sender: Sudi,
    request: &'a DeviceRequest,
    validate: bool,
    behind_nat: bool,
    now: DateTime<Utc>,
}

impl Exchange<'_> {
    /// Everything the exchange writes, in its transaction.
    async fn within(
        &self,
        conn: &mut AsyncPgConnection,
        prepared: Vec<Prepared>,
    ) -> AppResult<DeviceResponse> {
        let pi = self.product_instance(conn).await?;
        let actor = format!("device:{}", self.sender);
        let ha = ha::update(
            conn,
            self.origin.tenant,
            pi,
            &self.sender,
            self.request,
            &actor,
            self.now,
        )
        .await?;
        let mut reply = self.message(conn, pi, &ha, prepared).await?;
        let delivered =
            waiting::hand_over(conn, self.origin.tenant, pi, &ha, &mut reply, self.now).await?;
        let action = format!("device.{}", self.request.message_type.as_str());
        self.record(conn, pi, &actor, &action, &mut reply, delivered)
            .await?;
        Ok(reply.response)
    }

    /// The PI of the sender: a known one only under device validation, else found or added,
    /// with its last contact and source address updated.
    async fn product_instance(&self, conn: &mut AsyncPgConnection) -> AppResult<ProductInstanceId> {
        let tenant = self.origin.tenant;
        let key = udi_key(tenant, &self.sender);
        let contact = DeviceContact {
            sudi: serde_json::to_value(&self.sender).unwrap_or(Value::Null),
            product_instance_identifier: self.request.data.product_instance_identifier.clone(),
            hostname: self.request.data.hostname.clone(),
            software_version: self.request.data.software_version.clone(),
            software_tag: self.request.data.software_tag_identifier.clone(),
            last_contact_at: Some(self.now),
            source_address: Some(self.origin.source_address.to_owned()),
            updated_at: self.now,
        };
        if self.validate {
            // Removed since the check before the transaction: refused all the same.
            return product_instances::touch_known(conn, key, &contact)
                .await?
                .ok_or_else(|| not_allowed(tenant, &self.sender));
        }
        // With NAT support on, a new device is known by its UDI only: its source address is a
        // NAT gateway's, so it is never pulled from.
        Ok(product_instances::upsert_from_contact(
            conn,
            key,
            tenant.lva.id,
            &contact,
            self.behind_nat,
            self.now,
        )
        .await?)
    }

    /// Runs the message the device sent.
    async fn message(
        &self,
        conn: &mut AsyncPgConnection,
        pi: ProductInstanceId,
        ha: &HaSet,
        prepared: Vec<Prepared>,
    ) -> AppResult<Reply> {
        let tenant = self.origin.tenant;
        let data = &self.request.data;
        match self.request.message_type {
            MessageType::UsageReport => {
                usage::usage_report(conn, tenant, pi, prepared, &data.trust_requests, self.now)
                    .await
            }
            MessageType::ResultPoll => poll::result_poll(conn, pi, data.poll_id.as_deref()).await,
            MessageType::TrustSync => trust::trust_sync(conn, pi, self.now).await,
            MessageType::AuthorizationRequest => {
                authorization::request(conn, tenant, pi, &self.sender, self.request, ha, self.now)
                    .await
            }
            MessageType::AuthorizationConfirmation => {
                authorization::confirm(conn, tenant, pi, self.request, ha, self.now).await
            }
            MessageType::AuthorizationReturn => {
                authorization::give_back(conn, tenant, pi, self.request, ha, self.now).await
            }
            MessageType::Hello => Ok(Reply::new(
                Status::Ok,
                MessageCode::HelloOk,
                "hello",
                None,
                json!({}),
            )),
        }
    }

    /// The exchange's event: what was asked, answered and handed over.
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        pi: ProductInstanceId,
        actor: &str,
        action: &str,
        reply: &mut Reply,
        acks_delivered: usize,
    ) -> AppResult<()> {
        let response = &reply.response;
        if let Value::Object(map) = &mut reply.detail {
            map.insert("source_address".into(), json!(self.origin.source_address));
            map.insert("message_code".into(), json!(response.message_code));
            map.insert("acks_delivered".into(), json!(acks_delivered));
            map.insert(
                "delivered".into(),
                json!({
                    "policy": response.data.policy.is_some(),
                    "trust_codes": response.data.trust_codes.len(),
                    "authorizations": response.data.authorizations.len(),
                }),
            );
        }
        let event = NewEvent {
            account_id: Some(self.origin.tenant.account.id),
            pi_id: Some(pi),
            actor: actor.to_owned(),
            action: action.to_owned(),
            result: EventResult::Ok,
            detail: std::mem::take(&mut reply.detail),
            created_at: self.now,
        };
        events::record(conn, &event).await?;
        Ok(())
    }
}
