//! `/ui`: the web UI's static assets (from `outpost_web`).

use actix_web::{HttpRequest, HttpResponse, web};

/// Registers `/ui` and `/ui/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header(("Location", "/ui/"))
                .finish()
        }),
    )
    .route(
        "/ui",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header(("Location", "/ui/"))
                .finish()
        }),
    )
    .route("/ui/{file:.*}", web::get().to(get_asset));
}

async fn get_asset(req: HttpRequest) -> HttpResponse {
    let file = req.match_info().get("file").unwrap_or("");
    let file = if file.is_empty() { "index.html" } else { file };
    match outpost_web::asset(file) {
        Some(asset) => HttpResponse::Ok()
            .content_type(asset.content_type)
            .insert_header(("Cache-Control", "no-cache"))
            // The UI loads only its own files and talks only to this origin's API.
            .insert_header((
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
            ))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(asset.bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain")
            .body("not found"),
    }
}
