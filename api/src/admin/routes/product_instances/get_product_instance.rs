//! `GET /accounts/{id}/product-instances/{pi}`: one product instance with its HA set, usage,
//! latest reports, ACKs, open alerts, deadlines, trust codes and authorization codes.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use outpost_core::deadlines::DueReason;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::alerts::Alert;
use outpost_db::authorizations::Authorization;
use outpost_db::enums::ConnectMethod;
use outpost_db::pi_files::TrustCodeState;
use outpost_db::product_instances::ProductInstance;
use outpost_db::reports::ReportSummary;
use outpost_db::{
    AccountId, AckId, ProductInstanceId, acks, alerts, authorizations, pi_files, product_instances,
    reports,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::visible_account;
use super::find_pi;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// One product instance with everything its detail page shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductInstanceDetail {
    /// Id.
    pub id: ProductInstanceId,
    /// UDI product id.
    pub udi_pid: Option<String>,
    /// UDI serial number.
    pub udi_serial_number: Option<String>,
    /// The SUDI the device sent (free-form: `udi_pid`, `udi_serial_number` and more).
    #[schema(value_type = Object)]
    pub sudi: serde_json::Value,
    /// The device's product instance identifier.
    pub product_instance_identifier: Option<String>,
    /// Hostname the device reported.
    pub hostname: Option<String>,
    /// Software version.
    pub software_version: Option<String>,
    /// Software tag.
    pub software_tag: Option<String>,
    /// Push, or how Outpost pulls from it.
    pub connect_method: ConnectMethod,
    /// Host Outpost pulls from.
    pub host: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// Whether pull credentials are stored.
    pub has_credentials: bool,
    /// Behind NAT (identified by UDI only, never pulled).
    pub behind_nat: bool,
    /// Pulled over plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// What was pinned on first contact: a certificate's SHA-256 (rest, restconf) or an SSH
    /// host key's fingerprint (netconf). Changing the host, port, method or scheme clears it.
    pub pinned_peer: Option<PinnedPeer>,
    /// Last pull.
    pub last_pull_at: Option<DateTime<Utc>>,
    /// Own Smart Account mapping.
    pub smart_account: Option<String>,
    /// Own Virtual Account mapping.
    pub virtual_account: Option<String>,
    /// Its local virtual account.
    pub lva: Option<LvaRef>,
    /// Last exchange.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Address of its last push.
    pub source_address: Option<String>,
    /// Added.
    pub created_at: DateTime<Utc>,
    /// Members of its HA set.
    pub ha_members: Vec<HaMember>,
    /// Set while another PI reports for this one's HA set (this one's usage is not counted).
    pub ha_reporting_pi: Option<ProductInstanceId>,
    /// Its trust codes, newest first.
    pub trust_codes: Vec<TrustCodeState>,
    /// When it last installed a trust code.
    pub trust_code_installed_at: Option<DateTime<Utc>>,
    /// Its authorization codes (at most 100), newest first.
    pub authorizations: Vec<Authorization>,
    /// Its current use per entitlement.
    pub usage: Vec<EntitlementCount>,
    /// Its latest 50 reports, newest first.
    pub reports: Vec<ReportSummary>,
    /// Its latest 20 ACKs, newest first.
    pub acks: Vec<AckRef>,
    /// Its open alerts.
    pub alerts: Vec<Alert>,
    /// Its reporting and ACK deadlines.
    pub deadlines: PiDeadlines,
}

/// The peer identity pinned on first contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct PinnedPeer {
    /// Certificate SHA-256 or SSH host key fingerprint.
    pub fingerprint: String,
    /// When it was pinned.
    pub pinned_at: Option<DateTime<Utc>>,
}

/// The LVA a product instance is in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LvaRef {
    /// Number within the account.
    pub number: i32,
    /// Display name.
    pub name: String,
    /// Its tenant id (the last segment of its transport URL).
    pub tenant_id: String,
}

/// A member of an HA set.
#[derive(Debug, Serialize, ToSchema)]
pub struct HaMember {
    /// `Active`, `Standby` or `Member`.
    pub role: String,
    /// UDI product id.
    pub udi_pid: String,
    /// UDI serial number.
    pub udi_serial_number: String,
}

/// Use of one entitlement.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntitlementCount {
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// Licenses in use.
    pub count: i64,
}

/// An ACK stored for the device.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckRef {
    /// Id.
    pub id: AckId,
    /// When the device received it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A product instance's deadlines under its policy (what the deadline sweep alerts on).
#[derive(Debug, Serialize, ToSchema)]
pub struct PiDeadlines {
    /// The earliest report deadline and why; `null`: no report owed.
    pub report_due: Option<ReportDue>,
    /// When the ACK of its oldest unacknowledged report is due; `null`: none owed.
    pub ack_due: Option<DateTime<Utc>>,
    /// Name of the policy in force.
    pub policy: String,
    /// Only when it never consumed a license: what it owes (nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owes: Option<String>,
    /// The account's reporting interval in days (`null`: the policy's only); absent when it
    /// never consumed a license.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    pub reporting_interval_days: Option<Option<u32>>,
}

/// A report deadline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDue {
    /// When.
    pub at: DateTime<Utc>,
    /// `first_report`, `ongoing` or `usage_change`.
    #[schema(value_type = String)]
    pub reason: DueReason,
}

/// Shows one product instance with its HA set, usage, latest reports, ACKs and open alerts.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/{pi}", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("pi" = uuid::Uuid, Path, description = "Product instance id")),
    responses((status = 200, body = ProductInstanceDetail), (status = 404)))]
pub async fn get_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, ProductInstanceId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, pi_id) = path.into_inner();
    let account = visible_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    let pi = find_pi(&mut conn, account.id, pi_id).await?;
    let lva = accounts::list_lvas(&mut conn, account.id)
        .await?
        .into_iter()
        .find(|l| l.id == pi.lva_id)
        .map(|l| LvaRef {
            number: l.number,
            name: l.name,
            tenant_id: l.tenant_id,
        });
    let related = Related {
        ha_members: product_instances::ha_members(&mut conn, account.id, pi.id)
            .await?
            .into_iter()
            .map(|m| HaMember {
                role: m.role,
                udi_pid: m.udi_pid,
                udi_serial_number: m.udi_serial_number,
            })
            .collect(),
        usage: reports::usage_of(&mut conn, account.id, pi.id)
            .await?
            .into_iter()
            .map(|(entitlement_tag, count)| EntitlementCount {
                entitlement_tag,
                count,
            })
            .collect(),
        reports: reports::recent_of_pi(&mut conn, account.id, pi.id, 50).await?,
        acks: acks::list_for_pi(&mut conn, account.id, pi.id)
            .await?
            .into_iter()
            .rev()
            .take(20)
            .map(|(id, _, delivered_at)| AckRef { id, delivered_at })
            .collect(),
        alerts: alerts::open_of_pi(&mut conn, account.id, pi.id).await?,
        deadlines: pi_deadlines(&mut conn, &account, pi.id).await?,
        trust_codes: pi_files::trust_codes(&mut conn, account.id, pi.id).await?,
        authorizations: authorizations::list(&mut conn, account.id, Some(pi.id), 100).await?,
    };
    Ok(HttpResponse::Ok().json(ProductInstanceDetail::new(pi, lva, related)))
}

/// What the detail shows beside the product instance's own row.
struct Related {
    ha_members: Vec<HaMember>,
    usage: Vec<EntitlementCount>,
    reports: Vec<ReportSummary>,
    acks: Vec<AckRef>,
    alerts: Vec<Alert>,
    deadlines: PiDeadlines,
    trust_codes: Vec<TrustCodeState>,
    authorizations: Vec<Authorization>,
}

impl ProductInstanceDetail {
    fn new(pi: ProductInstance, lva: Option<LvaRef>, related: Related) -> Self {
        Self {
            id: pi.id,
            udi_pid: pi.udi_pid,
            udi_serial_number: pi.udi_serial_number,
            sudi: pi.sudi,
            product_instance_identifier: pi.product_instance_identifier,
            hostname: pi.hostname,
            software_version: pi.software_version,
            software_tag: pi.software_tag,
            connect_method: pi.connect_method,
            host: pi.host,
            port: pi.port,
            has_credentials: pi.has_credentials,
            behind_nat: pi.behind_nat,
            plain_http: pi.plain_http,
            pinned_peer: pi.peer_fingerprint.map(|fingerprint| PinnedPeer {
                fingerprint,
                pinned_at: pi.peer_fingerprint_at,
            }),
            last_pull_at: pi.last_pull_at,
            smart_account: pi.smart_account,
            virtual_account: pi.virtual_account,
            lva,
            last_contact_at: pi.last_contact_at,
            source_address: pi.source_address,
            created_at: pi.created_at,
            ha_members: related.ha_members,
            ha_reporting_pi: pi.ha_active_pi,
            trust_code_installed_at: related
                .trust_codes
                .iter()
                .filter_map(|t| t.installed_at)
                .max(),
            trust_codes: related.trust_codes,
            authorizations: related.authorizations,
            usage: related.usage,
            reports: related.reports,
            acks: related.acks,
            alerts: related.alerts,
            deadlines: related.deadlines,
        }
    }
}

/// The PI's reporting and ACK deadlines under its policy (what the deadline sweep alerts on).
async fn pi_deadlines(
    conn: &mut outpost_db::AsyncPgConnection,
    account: &LocalAccount,
    pi: ProductInstanceId,
) -> Result<PiDeadlines, ApiError> {
    use outpost_core::deadlines;
    let narrowing = account.reporting_interval();
    let Some(history) = outpost_db::deadlines::history_of(conn, account.id, pi).await? else {
        return Ok(PiDeadlines {
            report_due: None,
            ack_due: None,
            policy: "Cisco default".into(),
            owes: Some("nothing: no license consumed".into()),
            reporting_interval_days: None,
        });
    };
    let kinds = outpost_db::deadlines::license_kinds(conn, account.id).await?;
    let policy = history.policy();
    let due = deadlines::deadlines(&policy, narrowing, &history.usage(&kinds));
    Ok(PiDeadlines {
        report_due: due.report_due.map(|(at, reason)| ReportDue { at, reason }),
        ack_due: due.ack_due,
        policy: policy.name,
        owes: None,
        reporting_interval_days: Some(narrowing),
    })
}
