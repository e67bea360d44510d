//! Webhooks of an account: HTTPS endpoints that receive its alerts as JSON signed with HMAC
//! (`X-Outpost-Signature`), retried with backoff, with a delivery log per webhook.

use actix_web::{HttpResponse, web};
use outpost_db::webhooks::{self, DeliveryLog, Webhook};
use outpost_db::{AccountId, WebhookId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{Items, Limit, audit, check_text, operable_account, visible_account};
use crate::admin::auth::Principal;
use crate::admin::body::Body;
use crate::error::ApiError;
use crate::state::AppState;

/// A webhook to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// The endpoint; must be `https://`.
    pub url: String,
    /// HMAC key, at least 16 characters; generated (and returned once) when left out.
    pub secret: Option<String>,
    /// Alert kinds to send (e.g. `reporting_overdue`); left out or empty: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
}

fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    check_text("url", url, 2000).map_err(ApiError::invalid)?;
    let parsed = url::Url::parse(url).map_err(|e| ApiError::invalid(format!("url: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(ApiError::invalid(
            "url must start with https://: events carry inventory data",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url names no host"));
    }
    // Address literals and localhost are refused here; names are checked again at each
    // connection (they may be re-pointed).
    let private = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => !outpost_core::net::is_public_ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => !outpost_core::net::is_public_ip(ip.into()),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    };
    if private && !allow_private {
        return Err(ApiError::invalid(
            "url points at a loopback or private address; webhooks reach public endpoints only",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid(
            "url must not carry credentials; the signature authenticates Outpost",
        ));
    }
    Ok(())
}

/// Lists the account's webhooks (never their secrets).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/webhooks", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 200, body = Items<Webhook>), (status = 404)))]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let mut conn = state.pool.get().await?;
    let items = webhooks::list(&mut conn, account.id).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// A webhook just registered, with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC key its deliveries are signed with; never shown again.
    pub secret: String,
}

/// Registers a webhook. The answer carries the secret; it is never shown again.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/webhooks", tag = "webhooks",
    request_body = NewWebhook, params(("id" = uuid::Uuid, Path, description = "Account id")),
    responses((status = 201, body = CreatedWebhook), (status = 404), (status = 422)))]
pub async fn create_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    body: Body<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    let account = operable_account(&state, &principal, *id).await?;
    check_url(&body.url, state.settings.webhooks.allow_private_addresses)?;
    let secret = match &body.secret {
        Some(secret) => {
            check_text("secret", secret, 200).map_err(ApiError::invalid)?;
            if secret.chars().count() < 16 {
                return Err(ApiError::invalid("secret must be at least 16 characters"));
            }
            secret.clone()
        }
        None => outpost_core::crypto::random_alphanumeric(32),
    };
    for kind in &body.kinds {
        check_text("kinds", kind, 100).map_err(ApiError::invalid)?;
    }
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let sealed =
        outpost_app::secrets::seal_webhook_secret(&state.credentials, account.id, &secret)?;
    let webhook =
        webhooks::create(&mut conn, account.id, &body.url, &sealed, &body.kinds, now).await?;
    audit(
        &mut conn,
        &principal,
        account.id,
        "webhook.create",
        json!({ "webhook": webhook.id, "url": webhook.url, "kinds": webhook.kinds }),
        now,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedWebhook { webhook, secret }))
}

/// Removes a webhook and its delivery log.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("webhook_id" = uuid::Uuid, Path, description = "Webhook id")),
    responses((status = 204), (status = 404)))]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, WebhookId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, webhook) = path.into_inner();
    let account = operable_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    if !webhooks::delete(&mut conn, account.id, webhook).await? {
        return Err(ApiError::not_found("webhook"));
    }
    audit(
        &mut conn,
        &principal,
        account.id,
        "webhook.delete",
        json!({ "webhook": webhook }),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The delivery log of a webhook: the latest deliveries, each with every attempt.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ("webhook_id" = uuid::Uuid, Path, description = "Webhook id"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, body = Items<DeliveryLog>), (status = 404)))]
pub async fn list_webhook_deliveries(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(AccountId, WebhookId)>,
    limit: web::Query<Limit>,
) -> Result<HttpResponse, ApiError> {
    let (id, webhook) = path.into_inner();
    let account = visible_account(&state, &principal, id).await?;
    let mut conn = state.pool.get().await?;
    if !webhooks::list(&mut conn, account.id)
        .await?
        .iter()
        .any(|w| w.id == webhook)
    {
        return Err(ApiError::not_found("webhook"));
    }
    let items = webhooks::delivery_log(&mut conn, account.id, webhook, limit.value()?).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}
