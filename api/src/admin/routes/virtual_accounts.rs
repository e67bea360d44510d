//! Local virtual accounts: each with its tenant id, transport URL and the IOS-XE lines a network
//! admin pastes; created, renamed, mapped to an SA/VA, deleted when empty. An LVA is addressed
//! by its number within the account (1 is the default).

use actix_web::{HttpResponse, web};
use outpost_core::tenant::transport_url;
use outpost_db::accounts::{self, LocalAccount, LocalVirtualAccount, LvaChanges};
use outpost_db::{AccountId, licenses};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{Items, audit, check_text, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// An LVA as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LvaView {
    /// Id.
    pub id: uuid::Uuid,
    /// Number within the account; 1 is the default.
    pub number: i32,
    /// Display name.
    pub name: String,
    /// `<account name>-<number>`, the last segment of the transport URL.
    pub tenant_id: String,
    /// The URL devices of this LVA are configured with.
    pub transport_url: String,
    /// Smart Account its usage goes to.
    pub smart_account: String,
    /// Virtual Account its usage goes to.
    pub virtual_account: String,
    /// Whether the SA/VA pair is this LVA's own (else the account's).
    pub own_mapping: bool,
    /// The IOS-XE configuration lines for its devices.
    pub device_configuration: Vec<String>,
}

/// The API view of an LVA.
pub fn view(state: &AppState, account: &LocalAccount, lva: &LocalVirtualAccount) -> LvaView {
    let url = transport_url(&state.settings.public_base_url(), &lva.tenant_id);
    let own = lva.smart_account.is_some() && lva.virtual_account.is_some();
    LvaView {
        id: lva.id.0,
        number: lva.number,
        name: lva.name.clone(),
        tenant_id: lva.tenant_id.clone(),
        smart_account: lva
            .smart_account
            .clone()
            .filter(|_| own)
            .unwrap_or_else(|| account.smart_account.clone()),
        virtual_account: lva
            .virtual_account
            .clone()
            .filter(|_| own)
            .unwrap_or_else(|| account.virtual_account.clone()),
        own_mapping: own,
        device_configuration: vec![
            "license smart transport cslu".into(),
            format!("license smart url cslu {url}"),
        ],
        transport_url: url,
    }
}

/// The LVA `number` of an account, or 404.
pub async fn find_lva(
    state: &AppState,
    account: AccountId,
    number: i32,
) -> Result<LocalVirtualAccount, ApiError> {
    let mut conn = state.pool.get().await?;
    accounts::find_lva(&mut conn, account, number)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::not_found(&format!("local virtual account {number}"))
            } else {
                e.into()
            }
        })
}

/// Lists an account's local virtual accounts.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/virtual-accounts", tag = "virtual accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = Items<LvaView>), (status = 404)))]
pub async fn list_virtual_accounts(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items: Vec<LvaView> = accounts::list_lvas(&mut conn, account.id)
        .await?
        .iter()
        .map(|lva| view(&state, &account, lva))
        .collect();
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// A new LVA, or changes to one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LvaBody {
    /// Display name.
    pub name: Option<String>,
    /// Smart Account its usage goes to; with `virtual_account`. Empty strings: the account's.
    pub smart_account: Option<String>,
    /// Virtual Account its usage goes to.
    pub virtual_account: Option<String>,
}

fn check_lva_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name: must be 1 to 100 characters without control characters",
        ));
    }
    Ok(())
}

/// The mapping change a body asks for: `None` leaves it, `Some(None)` resets it to the
/// account's pair.
fn mapping_change(body: &LvaBody) -> Result<Option<Option<(String, String)>>, ApiError> {
    match (&body.smart_account, &body.virtual_account) {
        (None, None) => Ok(None),
        (Some(sa), Some(va)) if sa.is_empty() && va.is_empty() => Ok(Some(None)),
        (Some(sa), Some(va)) if !sa.trim().is_empty() && !va.trim().is_empty() => {
            check_text("smart_account", sa, 200).map_err(ApiError::invalid)?;
            check_text("virtual_account", va, 200).map_err(ApiError::invalid)?;
            Ok(Some(Some((sa.trim().to_owned(), va.trim().to_owned()))))
        }
        _ => Err(ApiError::invalid(
            "smart_account and virtual_account go together: give both, or both empty for the account's pair",
        )),
    }
}

/// Creates the next LVA of an account.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/virtual-accounts", tag = "virtual accounts",
    request_body = LvaBody, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 201, body = LvaView), (status = 404), (status = 422)))]
pub async fn create_virtual_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<LvaBody>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    let name = body
        .name
        .clone()
        .ok_or_else(|| ApiError::invalid("name: required"))?;
    check_lva_name(&name)?;
    let mapping = mapping_change(&body)?;
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let lva = accounts::create_lva(&mut conn, &account, name.trim(), mapping.flatten()).await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "virtual_account.create",
        json!({ "number": lva.number, "name": lva.name, "tenant_id": lva.tenant_id }),
        now,
    )
    .await?;
    Ok(HttpResponse::Created().json(view(&state, &account, &lva)))
}

/// Renames an LVA or changes its SA/VA mapping.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/virtual-accounts/{number}", tag = "virtual accounts",
    request_body = LvaBody,
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("number" = i32, Path, description = "LVA number")),
    responses((status = 200, body = LvaView), (status = 404), (status = 422)))]
pub async fn update_virtual_account(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, i32)>,
    body: Body<LvaBody>,
) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    let account = operable_account(&state, &principal, id).await?;
    let lva = find_lva(&state, account.id, number).await?;
    if let Some(name) = &body.name {
        check_lva_name(name)?;
    }
    let mapping = mapping_change(&body)?;
    let changes = LvaChanges {
        name: body.name.as_deref().map(|n| n.trim().to_owned()),
        smart_account: mapping.clone().map(|m| m.clone().map(|(sa, _)| sa)),
        virtual_account: mapping.map(|m| m.map(|(_, va)| va)),
    };
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let updated = if changes.name.is_none() && changes.smart_account.is_none() {
        lva
    } else {
        accounts::update_lva(&mut conn, account.id, number, &changes).await?
    };
    audit(&mut conn, &principal, account.id, "virtual_account.update",
        json!({ "number": number, "name": body.name, "smart_account": body.smart_account, "virtual_account": body.virtual_account }), now).await?;
    Ok(HttpResponse::Ok().json(view(&state, &account, &updated)))
}

/// Deletes an empty LVA (no product instances, no licenses); never the default one.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/virtual-accounts/{number}", tag = "virtual accounts",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("number" = i32, Path, description = "LVA number")),
    responses((status = 204), (status = 404), (status = 409, description = "Not empty, or the default")))]
pub async fn delete_virtual_account(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, i32)>,
) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    let account = operable_account(&state, &principal, id).await?;
    let lva = find_lva(&state, account.id, number).await?;
    if lva.number == 1 {
        return Err(ApiError::conflict(
            "default_virtual_account",
            "local virtual account 1 is the default and cannot be deleted",
        ));
    }
    let mut conn = state.pool.get().await?;
    let held: i64 = licenses::list(&mut conn, account.id)
        .await?
        .iter()
        .filter(|l| l.lva_id == lva.id)
        .map(|l| l.quantity)
        .sum();
    if held > 0 {
        return Err(ApiError::conflict(
            "not_empty",
            format!("local virtual account {number} holds {held} license(s); transfer them first"),
        ));
    }
    accounts::delete_lva(&mut conn, lva.id).await.map_err(|e| {
        if e.is_foreign_key_violation() {
            ApiError::conflict(
                "not_empty",
                format!("local virtual account {number} holds product instances; transfer or remove them first"),
            )
        } else {
            e.into()
        }
    })?;
    let now = state.clock.now();
    audit(
        &mut conn,
        &principal,
        account.id,
        "virtual_account.delete",
        json!({ "number": number, "name": lva.name, "tenant_id": lva.tenant_id }),
        now,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
