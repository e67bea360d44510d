//! The admin listener: `/api/v1` (JSON, bearer tokens), `/ui` (web UI) and health endpoints.

pub mod auth;
pub mod body;
pub mod openapi;
mod routes;
pub mod uploads;

use actix_web::web;

use crate::error::ApiError;

/// Registers the admin routes: one table, in four parts by area; handlers live under
/// `routes/`, one file per resource. Every route here is in the OpenAPI document (`openapi.rs`;
/// a test holds the two together).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(routes::health::get_healthz))
        .route("/readyz", web::get().to(routes::health::get_readyz))
        .route("/api/openapi.json", web::get().to(openapi::get_openapi))
        .service(
            web::scope("/api/v1")
                .configure(account_routes)
                .configure(inventory_routes)
                .configure(sync_routes)
                .configure(people_routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::not_found("API endpoint"))
                })),
        )
        .configure(routes::ui::configure);
}

/// Local accounts: the lifecycle and per-account settings.
fn account_routes(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.route("/accounts", web::get().to(accounts::list_accounts))
        .route("/accounts", web::post().to(accounts::create_account))
        .route("/accounts/{id}", web::get().to(accounts::get_account))
        .route("/accounts/{id}", web::patch().to(accounts::update_account))
        .route("/accounts/{id}", web::delete().to(accounts::delete_account))
        .route(
            "/accounts/{id}/approve",
            web::post().to(accounts::approve_account),
        )
        .route(
            "/accounts/{id}/register",
            web::post().to(accounts::register_account),
        )
        .route(
            "/accounts/{id}/deactivate",
            web::post().to(accounts::deactivate_account),
        )
        .route(
            "/accounts/{id}/reactivate",
            web::post().to(accounts::reactivate_account),
        )
        .route(
            "/accounts/{id}/settings",
            web::get().to(settings::get_account_settings),
        )
        .route(
            "/accounts/{id}/settings",
            web::put().to(settings::put_account_settings),
        );
}

/// Virtual accounts, product instances, licenses and authorization codes.
fn inventory_routes(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.route(
        "/accounts/{id}/virtual-accounts",
        web::get().to(virtual_accounts::list_virtual_accounts),
    )
    .route(
        "/accounts/{id}/virtual-accounts",
        web::post().to(virtual_accounts::create_virtual_account),
    )
    .route(
        "/accounts/{id}/virtual-accounts/{number}",
        web::patch().to(virtual_accounts::update_virtual_account),
    )
    .route(
        "/accounts/{id}/virtual-accounts/{number}",
        web::delete().to(virtual_accounts::delete_virtual_account),
    )
    .route(
        "/accounts/{id}/product-instances",
        web::get().to(product_instances::list_product_instances),
    )
    .route(
        "/accounts/{id}/product-instances",
        web::post().to(product_instances::create_product_instance),
    )
    .route(
        "/accounts/{id}/product-instances/template.csv",
        web::get().to(product_instances::get_import_template),
    )
    .route(
        "/accounts/{id}/product-instances/export.csv",
        web::get().to(product_instances::export_product_instances),
    )
    .route(
        "/accounts/{id}/product-instances/import",
        web::post().to(product_instances::import_product_instances),
    )
    .route(
        "/accounts/{id}/product-instances/transfer",
        web::post().to(product_instances::transfer_product_instances),
    )
    .route(
        "/accounts/{id}/product-instances/remove",
        web::post().to(product_instances::remove_product_instances),
    )
    .route(
        "/accounts/{id}/product-instances/{pi}",
        web::get().to(product_instances::get_product_instance),
    )
    .route(
        "/accounts/{id}/product-instances/{pi}",
        web::delete().to(product_instances::delete_product_instance),
    )
    .route(
        "/accounts/{id}/product-instances/{pi}/ack-file",
        web::get().to(offline_files::get_ack_file),
    )
    .route(
        "/accounts/{id}/licenses",
        web::get().to(licenses::list_licenses),
    )
    .route(
        "/accounts/{id}/licenses/transfer",
        web::post().to(licenses::transfer_licenses),
    )
    .route(
        "/accounts/{id}/authorizations",
        web::get().to(authorizations::list_authorizations),
    )
    .route(
        "/accounts/{id}/slac-import",
        web::post().to(authorizations::import_authorizations),
    );
}

/// Synchronisation with CSSM and the devices, air-gapped files, schedules, jobs, status and webhooks.
fn sync_routes(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.route(
        "/accounts/{id}/sync",
        web::post().to(create_sync::create_sync),
    )
    .route(
        "/accounts/{id}/sync-runs",
        web::get().to(list_sync_runs::list_sync_runs),
    )
    .route(
        "/accounts/{id}/alerts",
        web::get().to(list_alerts::list_alerts),
    )
    .route(
        "/accounts/{id}/events",
        web::get().to(list_events::list_events),
    )
    .route(
        "/accounts/{id}/schedules/cssm-sync",
        web::get().to(schedules::get_cssm_schedule),
    )
    .route(
        "/accounts/{id}/schedules/cssm-sync",
        web::put().to(schedules::put_cssm_schedule),
    )
    .route(
        "/accounts/{id}/usage-export",
        web::get().to(offline_files::get_usage_export),
    )
    .route(
        "/accounts/{id}/ack-import",
        web::post().to(offline_files::create_ack_import),
    )
    .route(
        "/accounts/{id}/registration-request",
        web::get().to(offline_files::get_registration_request),
    )
    .route(
        "/accounts/{id}/registration-response",
        web::post().to(offline_files::create_registration_response),
    )
    .route(
        "/accounts/{id}/usage-files",
        web::post().to(offline_files::create_usage_file),
    )
    .route(
        "/accounts/{id}/webhooks",
        web::get().to(webhooks::list_webhooks),
    )
    .route(
        "/accounts/{id}/webhooks",
        web::post().to(webhooks::create_webhook),
    )
    .route(
        "/accounts/{id}/webhooks/{webhook_id}",
        web::delete().to(webhooks::delete_webhook),
    )
    .route(
        "/accounts/{id}/webhooks/{webhook_id}/deliveries",
        web::get().to(webhooks::list_webhook_deliveries),
    )
    .route(
        "/accounts/{id}/pull",
        web::post().to(create_pull::create_pull),
    )
    .route(
        "/accounts/{id}/schedules/device-pull",
        web::get().to(schedules::get_device_pull_schedule),
    )
    .route(
        "/accounts/{id}/schedules/device-pull",
        web::put().to(schedules::put_device_pull_schedule),
    )
    .route("/jobs/{id}", web::get().to(get_job::get_job));
}

/// Sign-in, users and the global settings.
fn people_routes(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.route("/auth/login", web::post().to(create_login::create_login))
        .route("/settings", web::get().to(settings::get_settings))
        .route("/settings", web::put().to(settings::put_settings))
        .route("/users", web::get().to(users::list_users))
        .route("/users", web::post().to(users::create_user))
        .route("/users/{id}/roles", web::put().to(users::put_user_roles));
}
