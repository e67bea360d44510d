//! The OpenAPI document of the admin API, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `/api/openapi.json`. `api/openapi.json` is its committed snapshot.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::routes::*;
use crate::error::ErrorEnvelope;

/// Every admin route.
#[derive(OpenApi)]
#[openapi(
    info(title = "Outpost admin API", description = "Tenancy, inventory, licenses, synchronisation and files of an on-premises Smart Licensing server. Errors: `{\"error\": {\"code\", \"message\", \"details\"?}}`; another tenant's object answers 404."),
    paths(
        health::get_healthz, health::get_readyz,
        create_login::create_login,
        accounts::list_accounts, accounts::create_account, accounts::get_account,
        accounts::update_account, accounts::delete_account, accounts::approve_account,
        accounts::register_account, accounts::deactivate_account, accounts::reactivate_account,
        settings::get_account_settings, settings::put_account_settings,
        settings::get_settings, settings::put_settings,
        virtual_accounts::list_virtual_accounts, virtual_accounts::create_virtual_account,
        virtual_accounts::update_virtual_account, virtual_accounts::delete_virtual_account,
        product_instances::list_product_instances, product_instances::create_product_instance,
        product_instances::get_import_template, product_instances::export_product_instances,
        product_instances::import_product_instances, product_instances::transfer_product_instances,
        product_instances::remove_product_instances, product_instances::get_product_instance,
        product_instances::delete_product_instance,
        licenses::list_licenses, licenses::transfer_licenses,
        authorizations::list_authorizations, authorizations::import_authorizations,
        create_sync::create_sync, create_pull::create_pull,
        schedules::get_device_pull_schedule, schedules::put_device_pull_schedule, list_sync_runs::list_sync_runs, list_alerts::list_alerts,
        list_events::list_events, schedules::get_cssm_schedule, schedules::put_cssm_schedule,
        offline_files::get_usage_export, offline_files::create_ack_import,
        offline_files::get_registration_request, offline_files::create_registration_response,
        offline_files::create_usage_file, offline_files::get_ack_file,
        get_job::get_job,
        users::list_users, users::create_user, users::put_user_roles,
        webhooks::list_webhooks, webhooks::create_webhook, webhooks::delete_webhook,
        webhooks::list_webhook_deliveries,
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&BearerAuth, &ErrorAnswers),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Declares the bearer token scheme every route but login uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Gives every 4xx and 5xx answer that documents no body of its own the error envelope: one
/// place, so an annotation cannot forget it.
struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let envelope = Ref::from_schema_name(ErrorEnvelope::name());
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &mut operation.responses.responses {
                    if let RefOr::T(response) = response
                        && (status.starts_with('4') || status.starts_with('5'))
                        && response.content.is_empty()
                    {
                        response.content.insert(
                            "application/json".into(),
                            Content::new(Some(envelope.clone())),
                        );
                    }
                }
            }
        }
    }
}

/// The document as pretty JSON (what `/api/openapi.json` serves and the snapshot holds).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // The crate's version would churn the snapshot on every release; the API has its own.
    doc.info.version = "1".into();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// `GET /api/openapi.json`.
pub async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

    /// The committed document is what the code generates: an API change shows up in review.
    /// `UPDATE_SNAPSHOTS=1 cargo test -p outpost_api openapi` rewrites it.
    #[test]
    fn the_document_matches_its_snapshot() {
        let generated = format!("{}\n", document());
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(SNAPSHOT, &generated).ok();
        }
        let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
        assert!(
            committed == generated,
            "api/openapi.json is out of date: run `UPDATE_SNAPSHOTS=1 cargo test -p outpost_api openapi` and review the diff"
        );
    }

    /// Answers that are files, not JSON documents: (method, path, content type).
    const FILE_ANSWERS: &[(&str, &str, &str)] = &[
        (
            "get",
            "/api/v1/accounts/{id}/usage-export",
            "application/gzip",
        ),
        (
            "get",
            "/api/v1/accounts/{id}/registration-request",
            "text/plain",
        ),
        (
            "get",
            "/api/v1/accounts/{id}/product-instances/{pi}/ack-file",
            "text/plain",
        ),
        (
            "get",
            "/api/v1/accounts/{id}/product-instances/template.csv",
            "text/csv",
        ),
        (
            "get",
            "/api/v1/accounts/{id}/product-instances/export.csv",
            "text/csv",
        ),
    ];

    /// Whether a schema says what is in the answer: a reference to a named schema, or an object
    /// with properties, or a composition of such; not `{}` or a bare `{"type": "object"}`.
    fn describes(schema: &serde_json::Value) -> bool {
        if schema.get("$ref").is_some() {
            return true;
        }
        if schema["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty())
        {
            return true;
        }
        ["allOf", "oneOf", "anyOf"].iter().any(|key| {
            schema[*key]
                .as_array()
                .is_some_and(|parts| !parts.is_empty() && parts.iter().all(describes))
        })
    }

    /// Every 2xx answer documents what it holds: a JSON answer a schema with its fields (so a
    /// `json!` answer cannot slip in undocumented), a file its content type.
    #[test]
    fn every_success_answer_has_a_schema() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap_or_default();
        let mut bare = Vec::new();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                operations += 1;
                let responses = operation["responses"].as_object().into_iter().flatten();
                for (status, response) in responses.filter(|(s, _)| s.starts_with('2')) {
                    let content = response["content"].as_object();
                    if status == "204" {
                        if content.is_some_and(|c| !c.is_empty()) {
                            bare.push(format!("{method} {path} {status}: 204 with a body"));
                        }
                        continue;
                    }
                    let Some(content) = content.filter(|c| !c.is_empty()) else {
                        bare.push(format!("{method} {path} {status}: no content"));
                        continue;
                    };
                    for (content_type, media) in content {
                        let is_file = FILE_ANSWERS.iter().any(|f| {
                            (f.0, f.1, f.2)
                                == (method.as_str(), path.as_str(), content_type.as_str())
                        });
                        if content_type == "application/json" {
                            if !describes(&media["schema"]) {
                                bare.push(format!("{method} {path} {status}: {}", media["schema"]));
                            }
                        } else if !is_file {
                            bare.push(format!("{method} {path} {status}: {content_type} is not a known file answer"));
                        }
                    }
                }
            }
        }
        assert!(operations > 40, "no operations found");
        assert!(
            bare.is_empty(),
            "answers without a schema:\n{}",
            bare.join("\n")
        );
    }

    /// The schemas a success answer references all exist, and the error envelope is among
    /// them, with every refusal pointing at it.
    #[test]
    fn references_resolve_and_refusals_use_the_envelope() {
        let text = document();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            schemas.contains_key("ErrorEnvelope"),
            "ErrorEnvelope is not in components"
        );
        for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    if status.starts_with('4') {
                        assert!(
                            describes(&response["content"]["application/json"]["schema"]),
                            "{method} {path} {status} documents no error body"
                        );
                    }
                }
            }
        }
    }

    /// (method, path) of every `.route(...)` in the route table of `admin/mod.rs`.
    fn registered_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let mut routes = BTreeSet::new();
        for chunk in source.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap_or_default();
            let method = chunk
                .split("web::")
                .nth(1)
                .and_then(|m| m.split("()").next())
                .unwrap_or_default();
            let full = if path.starts_with("/healthz")
                || path.starts_with("/readyz")
                || path.starts_with("/api/")
            {
                path.to_owned()
            } else {
                format!("/api/v1{path}")
            };
            routes.insert((method.to_owned(), full));
        }
        routes
    }

    /// Every route the server answers is documented, and every documented route exists (the
    /// tenant-isolation test walks the document, so a missing route would escape it).
    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap_or_default();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let mut registered = registered_routes();
        registered.remove(&("get".to_owned(), "/api/openapi.json".to_owned()));
        assert!(
            registered.len() > 40,
            "route table not parsed: {registered:?}"
        );
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document: {undocumented:?}"
        );
        assert!(
            phantom.is_empty(),
            "documented routes that do not exist: {phantom:?}"
        );
    }
}
