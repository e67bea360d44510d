//! `GET /accounts/{id}/product-instances/{pi}`: one product instance with its HA set, usage,
//! latest reports, ACKs, open alerts, deadlines, trust codes and authorization codes.

use actix_web::{HttpResponse, web};
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::{
    AccountId, ProductInstanceId, acks, alerts, authorizations, pi_files, product_instances,
    reports,
};
use serde_json::json;

use super::super::visible_account;
use super::find_pi;
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

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
