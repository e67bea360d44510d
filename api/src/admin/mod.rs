//! The admin listener: `/api/v1` (JSON, bearer tokens), `/ui` (web UI) and health endpoints.

pub mod auth;
mod routes;

use actix_web::web;

use crate::error::ApiError;

/// Registers the admin routes: one table, one handler per file under `routes/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use routes::*;
    cfg.route("/healthz", web::get().to(health::get_healthz))
        .route("/readyz", web::get().to(health::get_readyz))
        .service(
            web::scope("/api/v1")
                .route("/auth/login", web::post().to(create_login::create_login))
                .route("/accounts", web::get().to(list_accounts::list_accounts))
                .route(
                    "/accounts/{id}/virtual-accounts",
                    web::get().to(list_virtual_accounts::list_virtual_accounts),
                )
                .route(
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
                    web::get().to(cssm_schedule::get_cssm_schedule),
                )
                .route(
                    "/accounts/{id}/schedules/cssm-sync",
                    web::put().to(cssm_schedule::put_cssm_schedule),
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
                    "/accounts/{id}/product-instances/{pi}/ack-file",
                    web::get().to(offline_files::get_ack_file),
                )
                .route("/jobs/{id}", web::get().to(get_job::get_job))
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::not_found("API endpoint"))
                })),
        )
        .configure(ui::configure);
}
