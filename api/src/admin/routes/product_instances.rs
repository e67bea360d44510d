//! The inventory ("SL Using Policy"): list with search, filters, sorting and pagination; PI
//! detail; add one; CSV template, import (all or nothing, every bad row named) and export;
//! transfer between LVAs; remove.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use chrono::Duration;
use futures_util::StreamExt;
use outpost_core::secrets::Credentials;
use outpost_core::udi::Sudi;
use outpost_db::accounts::{self, LocalAccount, LocalVirtualAccount};
use outpost_db::enums::ConnectMethod;
use outpost_db::inventory::{
    self, AlertFilter, Cursor, ImportError, InventoryQuery, ManagedPi, Removal, RowError, SortKey,
};
use outpost_db::{
    AccountId, DbPool, ProductInstanceId, acks, alerts, authorizations, pi_files,
    product_instances, reports,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::offline_files::spool_text;
use super::virtual_accounts::find_lva;
use super::{audit, check_text, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Where a capped count stops.
const COUNT_CAP: i64 = 10_000;
/// Most rows on one page.
const MAX_PER_PAGE: i64 = 500;
/// Most PIs in one transfer or removal.
const MAX_BULK: usize = 10_000;
/// Columns of the CSV template, import and export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "udi_pid",
    "udi_serial_number",
    "hostname",
    "host",
    "port",
    "connect_method",
    "username",
    "password",
    "lva",
    "smart_account",
    "virtual_account",
    "behind_nat",
    "plain_http",
];
/// Columns the export adds for reading; an import accepts and ignores them.
const CSV_INFORMATIONAL: &[&str] = &["last_contact_at", "software_version"];

/// Inventory list parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this LVA (its number).
    lva: Option<i32>,
    /// Substring of UDI, hostname or host (case-insensitive).
    q: Option<String>,
    /// `any`, `none`, or an alert kind (e.g. `usage_report_received`).
    alert: Option<String>,
    /// `push`, `rest`, `restconf` or `netconf`.
    connect_method: Option<String>,
    /// Only PIs whose last contact is older than this many days (or never).
    last_contact_older_than_days: Option<u32>,
    /// `udi` (default), `hostname` or `last_contact`.
    sort: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
    /// `next_cursor` of the previous page (fast at any depth).
    cursor: Option<String>,
    /// Page number from 1 (without a cursor; slower deep into large inventories).
    page: Option<i64>,
    /// Rows per page, 1 to 500, default 50.
    per_page: Option<i64>,
    /// `capped` (default): `total` counts up to 10,000 (`total_exceeds` says when there are
    /// more); `exact`: count them all (slower on large inventories); `none`: no `total`.
    count: Option<String>,
}

fn parse_method(text: &str) -> Result<ConnectMethod, String> {
    text.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| format!("connect_method '{text}' is not push, rest, restconf or netconf"))
}

impl ListQuery {
    fn to_query(
        &self,
        lva: Option<&LocalVirtualAccount>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<InventoryQuery, ApiError> {
        let sort = match self.sort.as_deref() {
            None | Some("udi") => SortKey::Udi,
            Some("hostname") => SortKey::Hostname,
            Some("last_contact") => SortKey::LastContact,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "sort '{other}' is not udi, hostname or last_contact"
                )));
            }
        };
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "order '{other}' is not asc or desc"
                )));
            }
        };
        let cursor = match &self.cursor {
            Some(text) => Some(Cursor::decode(text, sort).ok_or_else(|| {
                ApiError::invalid("cursor is not one this list gave for this sort order")
            })?),
            None => None,
        };
        let limit = self.per_page.unwrap_or(50);
        if !(1..=MAX_PER_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "per_page must be 1 to {MAX_PER_PAGE}"
            )));
        }
        let page = self.page.unwrap_or(1);
        if !(1..=1_000_000).contains(&page) {
            return Err(ApiError::invalid("page must be 1 or more"));
        }
        if let Some(kind) = &self.alert {
            check_text("alert", kind, 64).map_err(ApiError::invalid)?;
        }
        let alert = self.alert.as_deref().map(|a| match a {
            "any" => AlertFilter::Any,
            "none" => AlertFilter::None,
            kind => AlertFilter::Kind(kind.to_owned()),
        });
        let connect_method = self
            .connect_method
            .as_deref()
            .map(parse_method)
            .transpose()
            .map_err(ApiError::invalid)?;
        let search = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if search.is_some_and(|q| q.chars().count() > 100 || q.contains('\0')) {
            return Err(ApiError::invalid("q must be at most 100 characters"));
        }
        Ok(InventoryQuery {
            lva: lva.map(|l| l.id),
            search: search.map(str::to_owned),
            alert,
            connect_method,
            contact_before: self
                .last_contact_older_than_days
                .map(|d| now - Duration::days(i64::from(d.min(36_500)))),
            sort,
            descending,
            cursor,
            offset: (page - 1).saturating_mul(limit),
            limit,
            only_ids: None,
        })
    }
}

/// Lists an account's product instances, one page at a time.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ListQuery),
    responses((status = 200, description = "`{items, next_cursor, total}`", body = serde_json::Value),
        (status = 404), (status = 422)))]
pub async fn list_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let lva = match query.lva {
        Some(n) => Some(find_lva(&state, account.id, n).await?),
        None => None,
    };
    let q = query.to_query(lva.as_ref(), state.clock.now())?;
    let mut conn = state.pool.get().await?;
    let page = inventory::list(&mut conn, account.id, &q).await?;
    let cap = match query.count.as_deref() {
        None | Some("capped") => Some(Some(COUNT_CAP)),
        Some("exact") => Some(None),
        Some("none") => None,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "count '{other}' is not capped, exact or none"
            )));
        }
    };
    let total = match cap {
        // One more than the cap tells "more than" from "exactly".
        Some(cap) => Some(inventory::count(&mut conn, account.id, &q, cap.map(|c| c + 1)).await?),
        None => None,
    };
    let exceeds = matches!((total, cap), (Some(t), Some(Some(c))) if t > c);
    Ok(HttpResponse::Ok().json(json!({
        "items": page.items,
        "next_cursor": page.next_cursor,
        "total": total.map(|t| if exceeds { COUNT_CAP } else { t }),
        "total_exceeds": exceeds,
    })))
}

/// Shows one product instance with its HA set, usage, latest reports, ACKs and open alerts.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/{pi}", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("pi" = uuid::Uuid, Path, description = "Product instance id")),
    responses((status = 200, body = serde_json::Value), (status = 404)))]
pub async fn get_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, ProductInstanceId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, pi_id) = path.into_inner();
    let account = visible_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    let pi = find_pi(&mut conn, account.id, pi_id).await?;
    let lvas = accounts::list_lvas(&mut conn, account.id).await?;
    let lva = lvas.iter().find(|l| l.id == pi.lva_id);
    let ha = product_instances::ha_members(&mut conn, account.id, pi.id).await?;
    let usage = reports::usage_of(&mut conn, account.id, pi.id).await?;
    let recent = reports::recent_of_pi(&mut conn, account.id, pi.id, 50).await?;
    let acks: Vec<_> = acks::list_for_pi(&mut conn, account.id, pi.id)
        .await?
        .into_iter()
        .rev()
        .take(20)
        .map(|(ack_id, _, delivered_at)| json!({ "id": ack_id, "delivered_at": delivered_at }))
        .collect();
    let open_alerts = alerts::open_of_pi(&mut conn, account.id, pi.id).await?;
    let deadlines = pi_deadlines(&mut conn, &account, pi.id).await?;
    let trust_codes = pi_files::trust_codes(&mut conn, account.id, pi.id).await?;
    let codes = authorizations::list(&mut conn, account.id, Some(pi.id), 100).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": pi.id,
        "udi_pid": pi.udi_pid,
        "udi_serial_number": pi.udi_serial_number,
        "sudi": pi.sudi,
        "product_instance_identifier": pi.product_instance_identifier,
        "hostname": pi.hostname,
        "software_version": pi.software_version,
        "software_tag": pi.software_tag,
        "connect_method": pi.connect_method,
        "host": pi.host,
        "port": pi.port,
        "has_credentials": pi.has_credentials,
        "behind_nat": pi.behind_nat,
        "plain_http": pi.plain_http,
        // What was pinned on first contact: a certificate's SHA-256 (rest, restconf) or an SSH
        // host key's fingerprint (netconf). Changing the host, port, method or scheme clears it.
        "pinned_peer": pi.peer_fingerprint.as_ref().map(|f| json!({ "fingerprint": f, "pinned_at": pi.peer_fingerprint_at })),
        "last_pull_at": pi.last_pull_at,
        "smart_account": pi.smart_account,
        "virtual_account": pi.virtual_account,
        "lva": lva.map(|l| json!({ "number": l.number, "name": l.name, "tenant_id": l.tenant_id })),
        "last_contact_at": pi.last_contact_at,
        "source_address": pi.source_address,
        "created_at": pi.created_at,
        "ha_members": ha.iter().map(|m| json!({ "role": m.role, "udi_pid": m.udi_pid, "udi_serial_number": m.udi_serial_number })).collect::<Vec<_>>(),
        // Set while another PI reports for this one's HA set (this one's usage is not counted).
        "ha_reporting_pi": pi.ha_active_pi,
        "trust_codes": trust_codes,
        "trust_code_installed_at": trust_codes.iter().filter_map(|t| t.installed_at).max(),
        "authorizations": codes,
        "usage": usage.iter().map(|(tag, count)| json!({ "entitlement_tag": tag, "count": count })).collect::<Vec<_>>(),
        "reports": recent,
        "acks": acks,
        "alerts": open_alerts,
        "deadlines": deadlines,
    })))
}

/// The PI's reporting and ACK deadlines under its policy (what the deadline sweep alerts on).
async fn pi_deadlines(
    conn: &mut outpost_db::AsyncPgConnection,
    account: &LocalAccount,
    pi: ProductInstanceId,
) -> Result<serde_json::Value, ApiError> {
    use outpost_core::deadlines;
    let narrowing = account.reporting_interval();
    let Some(history) = outpost_db::deadlines::history_of(conn, account.id, pi).await? else {
        return Ok(
            json!({ "report_due": null, "ack_due": null, "policy": "Cisco default", "owes": "nothing: no license consumed" }),
        );
    };
    let kinds = outpost_db::deadlines::license_kinds(conn, account.id).await?;
    let policy = history.policy();
    let due = deadlines::deadlines(&policy, narrowing, &history.usage(&kinds));
    Ok(json!({
        "report_due": due.report_due.map(|(at, reason)| json!({ "at": at, "reason": reason })),
        "ack_due": due.ack_due,
        "policy": policy.name,
        "reporting_interval_days": narrowing,
    }))
}

async fn find_pi(
    conn: &mut outpost_db::AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<product_instances::ProductInstance, ApiError> {
    product_instances::find(conn, account, pi)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::not_found("product instance")
            } else {
                e.into()
            }
        })
}

/// A product instance as an operator describes it.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PiBody {
    /// UDI product id (required for push devices).
    pub udi_pid: Option<String>,
    /// UDI serial number.
    pub udi_serial_number: Option<String>,
    /// Hostname to show until the device reports its own.
    pub hostname: Option<String>,
    /// Host Outpost pulls from (required for rest, restconf, netconf).
    pub host: Option<String>,
    /// Port, when not the method's default.
    pub port: Option<i32>,
    /// `push` (default), `rest`, `restconf` or `netconf`.
    pub connect_method: Option<String>,
    /// Login for pulling; stored sealed, never shown again.
    pub username: Option<String>,
    /// Password for pulling.
    pub password: Option<String>,
    /// LVA number, default 1.
    pub lva: Option<i32>,
    /// Smart Account of this PI's usage, when not its LVA's.
    pub smart_account: Option<String>,
    /// Virtual Account of this PI's usage.
    pub virtual_account: Option<String>,
    /// Behind NAT: identified by UDI only, never pulled.
    pub behind_nat: Option<bool>,
    /// Pull a `rest` or `restconf` device over plain HTTP instead of HTTPS (its credentials
    /// then travel in clear); false for a new device when left out, unchanged for a known one.
    pub plain_http: Option<bool>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!("host '{host}' is not a host name or an IP address"))
    }
}

/// Checks a described PI and turns it into what the inventory stores; the message names the
/// field at fault.
fn managed(
    state: &AppState,
    account: &LocalAccount,
    lvas: &[LocalVirtualAccount],
    body: &PiBody,
    line: usize,
) -> Result<ManagedPi, String> {
    let udi = match (non_empty(&body.udi_pid), non_empty(&body.udi_serial_number)) {
        (Some(pid), Some(sn)) => {
            Sudi::new(pid.clone(), sn.clone())
                .validate()
                .map_err(|e| e.to_string())?;
            Some((pid, sn))
        }
        (None, None) => None,
        _ => return Err("udi_pid and udi_serial_number go together".into()),
    };
    let method = match non_empty(&body.connect_method) {
        Some(m) => parse_method(&m)?,
        None => ConnectMethod::Push,
    };
    let host = non_empty(&body.host);
    if let Some(host) = &host {
        check_host(host)?;
    }
    if let Some(port) = body.port
        && !(1..=65535).contains(&port)
    {
        return Err(format!("port {port} is not between 1 and 65535"));
    }
    let behind_nat = body.behind_nat.unwrap_or(false);
    let speaks_http = matches!(method, ConnectMethod::Rest | ConnectMethod::Restconf);
    if body.plain_http == Some(true) && !speaks_http {
        return Err(format!(
            "plain_http is for rest and restconf devices; {method} does not use HTTP"
        ));
    }
    // Left out, it stays as stored for an HTTP device; any other method has no HTTP to speak.
    let plain_http = if speaks_http {
        body.plain_http
    } else {
        Some(false)
    };
    match method {
        ConnectMethod::Push if udi.is_none() => {
            return Err("a push device needs udi_pid and udi_serial_number".into());
        }
        ConnectMethod::Rest | ConnectMethod::Restconf | ConnectMethod::Netconf => {
            if host.is_none() {
                return Err(format!("connect_method {method} needs a host to pull from"));
            }
            if behind_nat {
                return Err(
                    "a product instance behind NAT is never pulled; use connect_method push".into(),
                );
            }
        }
        ConnectMethod::Push => {}
    }
    let hostname = non_empty(&body.hostname);
    if let Some(h) = &hostname {
        check_text("hostname", h, 255)?;
    }
    let credentials = match (
        non_empty(&body.username),
        body.password.as_deref().filter(|p| !p.is_empty()),
    ) {
        (Some(username), Some(password)) => {
            check_text("username", &username, 128)?;
            if password.len() > 256 || password.contains('\0') {
                return Err("password must be at most 256 characters".into());
            }
            let sealed = state
                .credentials
                .seal(
                    &Credentials {
                        username,
                        password: password.to_owned(),
                    },
                    account.id.0.as_bytes(),
                )
                .map_err(|e| e.to_string())?;
            Some(sealed)
        }
        (None, None) => None,
        _ => return Err("username and password go together".into()),
    };
    let number = body.lva.unwrap_or(1);
    let lva = lvas
        .iter()
        .find(|l| l.number == number)
        .ok_or_else(|| format!("local virtual account {number} does not exist"))?;
    let mapping = match (
        non_empty(&body.smart_account),
        non_empty(&body.virtual_account),
    ) {
        (Some(sa), Some(va)) => {
            check_text("smart_account", &sa, 200)?;
            check_text("virtual_account", &va, 200)?;
            Some((sa, va))
        }
        (None, None) => None,
        _ => return Err("smart_account and virtual_account go together".into()),
    };
    Ok(ManagedPi {
        line,
        udi,
        hostname,
        host,
        port: body.port,
        connect_method: method,
        plain_http,
        credentials,
        lva_id: lva.id,
        mapping,
        behind_nat,
    })
}

pub(super) fn rows_refused(errors: Vec<RowError>) -> ApiError {
    ApiError::with_details(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rows",
        format!(
            "{} row(s) cannot be imported, so nothing was: {}",
            errors.len(),
            errors
                .iter()
                .take(5)
                .map(|e| format!("line {}: {}", e.line, e.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        json!({ "rows": errors.iter().take(1000).collect::<Vec<_>>(), "row_error_count": errors.len() }),
    )
}

/// Adds one product instance (or updates the one with its UDI or host).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances", tag = "inventory",
    request_body = PiBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 201, body = serde_json::Value), (status = 404), (status = 422)))]
pub async fn create_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<PiBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let lvas = accounts::list_lvas(&mut conn, account.id).await?;
    let row = managed(&state, &account, &lvas, &body, 1).map_err(ApiError::invalid)?;
    let now = state.clock.now();
    let outcome = match inventory::import(&mut conn, account.id, vec![row], now).await {
        Ok(outcome) => outcome,
        Err(ImportError::Rows(errors)) => {
            let reason = errors.first().map(|e| e.reason.clone()).unwrap_or_default();
            return Err(ApiError::conflict("conflict", reason));
        }
        Err(ImportError::Db(e)) => return Err(e.into()),
    };
    let pi_id = outcome.ids.first().copied();
    audit(&mut conn, &principal, account.id, "product_instance.add",
        json!({ "id": pi_id, "udi_pid": body.udi_pid, "udi_serial_number": body.udi_serial_number, "host": body.host, "created": outcome.created == 1 }), now).await?;
    Ok(HttpResponse::Created().json(json!({ "id": pi_id, "created": outcome.created == 1 })))
}

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    }
}

/// The CSV template: the header row of an import file.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/template.csv", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)))]
pub async fn get_import_template(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    visible_account(&state, &principal, *id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(attachment("product-instances-template.csv"))
        .body(format!("{}\n", CSV_COLUMNS.join(","))))
}

/// One CSV row, every column as text.
#[derive(Debug, Default, Deserialize)]
struct CsvRow {
    udi_pid: Option<String>,
    udi_serial_number: Option<String>,
    hostname: Option<String>,
    host: Option<String>,
    port: Option<String>,
    connect_method: Option<String>,
    username: Option<String>,
    password: Option<String>,
    lva: Option<String>,
    smart_account: Option<String>,
    virtual_account: Option<String>,
    behind_nat: Option<String>,
    /// Optional: files made from an older template have no such column.
    plain_http: Option<String>,
}

/// A yes/no CSV cell: true, yes, 1 or false, no, 0 (any case); empty is `None`.
fn csv_flag(column: &str, cell: &Option<String>) -> Result<Option<bool>, String> {
    match non_empty(cell).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "1") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "false" | "no" | "0") => Ok(Some(false)),
        Some(v) => Err(format!("{column} '{v}' is not true or false")),
    }
}

impl CsvRow {
    fn body(self) -> Result<PiBody, String> {
        let port = match non_empty(&self.port) {
            Some(p) => Some(
                p.parse::<i32>()
                    .map_err(|_| format!("port '{p}' is not a number"))?,
            ),
            None => None,
        };
        let lva = match non_empty(&self.lva) {
            Some(n) => Some(
                n.parse::<i32>()
                    .map_err(|_| format!("lva '{n}' is not an LVA number"))?,
            ),
            None => None,
        };
        let behind_nat = csv_flag("behind_nat", &self.behind_nat)?;
        let plain_http = csv_flag("plain_http", &self.plain_http)?;
        Ok(PiBody {
            udi_pid: self.udi_pid,
            udi_serial_number: self.udi_serial_number,
            hostname: self.hostname,
            host: self.host,
            port,
            connect_method: self.connect_method,
            username: self.username,
            password: self.password,
            lva,
            smart_account: self.smart_account,
            virtual_account: self.virtual_account,
            behind_nat,
            plain_http,
        })
    }
}

/// Most rows one import file may hold.
const MAX_IMPORT_ROWS: usize = 200_000;

/// Imports product instances from CSV (the template's columns): every row is checked first;
/// one bad row and nothing is imported, and the answer lists each bad row with its reason.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/import", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "`{created, updated}`", body = serde_json::Value),
        (status = 404), (status = 422, description = "`error.details.rows`: `[{line, reason}]`")))]
pub async fn import_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let text = spool_text(payload, state.settings.admin.max_upload_bytes).await?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::invalid(format!("the CSV header cannot be read: {e}")))?
        .clone();
    let unknown: Vec<&str> = headers
        .iter()
        .filter(|h| !CSV_COLUMNS.contains(h) && !CSV_INFORMATIONAL.contains(h))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(format!(
            "unknown CSV column(s) {}; the template has: {}",
            unknown.join(", "),
            CSV_COLUMNS.join(",")
        )));
    }
    let mut conn = state.pool.get().await?;
    let lvas = accounts::list_lvas(&mut conn, account.id).await?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is line 1.
        let line = index + 2;
        if rows.len() + errors.len() >= MAX_IMPORT_ROWS {
            return Err(ApiError::invalid(format!(
                "the file has more than {MAX_IMPORT_ROWS} rows; split it"
            )));
        }
        let parsed = record
            .map_err(|e| format!("unreadable CSV: {e}"))
            .and_then(|r| {
                r.deserialize::<CsvRow>(Some(&headers))
                    .map_err(|e| format!("unreadable row: {e}"))
            })
            .and_then(CsvRow::body)
            .and_then(|body| managed(&state, &account, &lvas, &body, line));
        match parsed {
            Ok(row) => rows.push(row),
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if !errors.is_empty() {
        // Also name the rows that are fine alone but clash with each other or the inventory,
        // so one round of fixes is enough.
        let (clashes, _) = inventory::check(&mut conn, account.id, &rows).await?;
        errors.extend(clashes);
        errors.sort_by_key(|e| e.line);
        return Err(rows_refused(errors));
    }
    if rows.is_empty() {
        return Err(ApiError::invalid("the file has no rows below its header"));
    }
    let now = state.clock.now();
    let count = rows.len();
    let outcome = match inventory::import(&mut conn, account.id, rows, now).await {
        Ok(outcome) => outcome,
        Err(ImportError::Rows(errors)) => return Err(rows_refused(errors)),
        Err(ImportError::Db(e)) => return Err(e.into()),
    };
    audit(
        &mut conn,
        &principal,
        account.id,
        "product_instance.import",
        json!({ "rows": count, "created": outcome.created, "updated": outcome.updated }),
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "created": outcome.created, "updated": outcome.updated })))
}

/// Exports the inventory as CSV (the template's columns plus last contact; never credentials),
/// streamed page by page so memory stays flat at any size.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances/export.csv", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404)))]
pub async fn export_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut header = CSV_COLUMNS.to_vec();
    header.extend_from_slice(CSV_INFORMATIONAL);
    let first = format!("{}\n", header.join(","));
    let pool = state.pool.clone();
    let stream = futures_util::stream::unfold(ExportState::Start(first), move |step| {
        export_step(pool.clone(), account.id, step)
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(attachment("product-instances.csv"))
        .streaming(stream.boxed_local()))
}

enum ExportState {
    Start(String),
    After(Option<Cursor>),
    Done,
}

async fn export_step(
    pool: DbPool,
    account: AccountId,
    step: ExportState,
) -> Option<(Result<web::Bytes, ApiError>, ExportState)> {
    let cursor = match step {
        ExportState::Done => return None,
        ExportState::Start(header) => {
            return Some((Ok(web::Bytes::from(header)), ExportState::After(None)));
        }
        ExportState::After(cursor) => cursor,
    };
    let query = InventoryQuery {
        cursor,
        limit: 2000,
        ..InventoryQuery::default()
    };
    let page = async {
        let mut conn = pool.get().await?;
        inventory::list(&mut conn, account, &query).await
    }
    .await;
    let page = match page {
        Ok(page) => page,
        // The header is sent: a failure can only end the stream early (the client sees a cut
        // download) and is logged.
        Err(e) => return Some((Err(ApiError::from(e)), ExportState::Done)),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in &page.items {
        let port = row.port.map(|p| p.to_string()).unwrap_or_default();
        let lva = row.lva_number.to_string();
        let contact = row
            .last_contact_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let record = [
            row.udi_pid.as_deref().unwrap_or_default(),
            row.udi_serial_number.as_deref().unwrap_or_default(),
            row.hostname.as_deref().unwrap_or_default(),
            row.host.as_deref().unwrap_or_default(),
            &port,
            row.connect_method.as_str(),
            "",
            "",
            &lva,
            row.smart_account.as_deref().unwrap_or_default(),
            row.virtual_account.as_deref().unwrap_or_default(),
            if row.behind_nat { "true" } else { "false" },
            if row.plain_http { "true" } else { "false" },
            &contact,
            row.software_version.as_deref().unwrap_or_default(),
        ];
        if let Err(e) = writer.write_record(record) {
            return Some((Err(ApiError::internal(e)), ExportState::Done));
        }
    }
    let bytes = match writer.into_inner() {
        Ok(bytes) => bytes,
        Err(e) => return Some((Err(ApiError::internal(e)), ExportState::Done)),
    };
    let next = match page.next_cursor.as_deref() {
        Some(text) => ExportState::After(Cursor::decode(text, SortKey::Udi)),
        None => ExportState::Done,
    };
    Some((Ok(web::Bytes::from(bytes)), next))
}

/// PIs to move or remove.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// The product instances.
    pub product_instance_ids: Vec<uuid::Uuid>,
    /// Target LVA number (transfer only).
    pub to_lva: Option<i32>,
    /// Remove even with reports CSSM has not acknowledged yet (removal only).
    #[serde(default)]
    pub force: bool,
}

fn bulk_ids(body: &BulkBody) -> Result<Vec<ProductInstanceId>, ApiError> {
    if body.product_instance_ids.is_empty() || body.product_instance_ids.len() > MAX_BULK {
        return Err(ApiError::invalid(format!(
            "product_instance_ids must hold 1 to {MAX_BULK} ids"
        )));
    }
    let mut ids: Vec<ProductInstanceId> = body
        .product_instance_ids
        .iter()
        .map(|u| ProductInstanceId(*u))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Moves product instances to another LVA of the account, all or none.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/transfer", tag = "inventory",
    request_body = BulkBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, description = "`{moved}`", body = serde_json::Value), (status = 404), (status = 422)))]
pub async fn transfer_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let ids = bulk_ids(&body)?;
    let number = body
        .to_lva
        .ok_or_else(|| ApiError::invalid("to_lva: required"))?;
    let lva = find_lva(&state, account.id, number).await?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let missing = inventory::transfer(&mut conn, account.id, &ids, lva.id, now).await?;
    if !missing.is_empty() {
        return Err(ApiError::not_found(&format!(
            "product instance(s) {}; nothing was moved",
            missing
                .iter()
                .take(10)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    audit(&mut conn, &principal, account.id, "product_instance.transfer",
        json!({ "count": ids.len(), "to_lva": number, "ids": ids.iter().take(100).collect::<Vec<_>>() }), now).await?;
    Ok(HttpResponse::Ok().json(json!({ "moved": ids.len(), "to_lva": number })))
}

/// `?force=true` removes a PI whose reports CSSM has not acknowledged yet.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Remove even with unacknowledged reports.
    #[serde(default)]
    force: bool,
}

async fn remove(
    state: &AppState,
    principal: &Principal,
    account: &LocalAccount,
    ids: &[ProductInstanceId],
    force: bool,
) -> Result<usize, ApiError> {
    let mut conn = state.pool.get().await?;
    let (removed, dropped) = match inventory::remove(&mut conn, account.id, ids, force).await? {
        Removal::Removed(removed, dropped) => (removed, dropped),
        Removal::Unacknowledged(pending) => {
            return Err(ApiError::conflict(
                "unacknowledged_reports",
                format!(
                    "{pending} report(s) of these product instances are not acknowledged by CSSM yet; sync first, or remove with force"
                ),
            ));
        }
    };
    let now = state.clock.now();
    audit(&mut conn, principal, account.id, "product_instance.remove",
        json!({ "removed": removed, "forced": force, "unacknowledged_reports_dropped": dropped, "ids": ids.iter().take(100).collect::<Vec<_>>() }), now).await?;
    Ok(removed)
}

/// Removes one product instance with its reports and ACKs.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/product-instances/{pi}", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("pi" = uuid::Uuid, Path, description = "Product instance id"), ForceQuery),
    responses((status = 204), (status = 404), (status = 409, description = "Unacknowledged reports")))]
pub async fn delete_product_instance(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, ProductInstanceId)>,
    query: web::Query<ForceQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, pi_id) = path.into_inner();
    let account = operable_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    find_pi(&mut conn, account.id, pi_id).await?;
    drop(conn);
    remove(&state, &principal, &account, &[pi_id], query.force).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes several product instances, all or none.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/product-instances/remove", tag = "inventory",
    request_body = BulkBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, description = "`{removed}`", body = serde_json::Value), (status = 404), (status = 409)))]
pub async fn remove_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let ids = bulk_ids(&body)?;
    let mut conn = state.pool.get().await?;
    let found = inventory::count_existing(&mut conn, account.id, &ids).await?;
    drop(conn);
    if found != ids.len() as i64 {
        return Err(ApiError::not_found(
            "product instance(s); nothing was removed",
        ));
    }
    let removed = remove(&state, &principal, &account, &ids, body.force).await?;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}
