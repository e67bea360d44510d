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
            .body(asset.bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain")
            .body("not found"),
    }
}
