//! The web UI's static assets, compiled into the binary and served by the API tier under `/ui`.
//! The UI talks only to `/api/v1`, so it has no authorisation path of its own.

/// One asset.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// File content.
    pub bytes: &'static [u8],
    /// Its media type.
    pub content_type: &'static str,
}

/// The asset at `path` (relative to `/ui/`), if there is one.
pub fn asset(path: &str) -> Option<Asset> {
    let (bytes, content_type): (&'static [u8], _) = match path {
        "index.html" => (
            include_bytes!("../assets/index.html"),
            "text/html; charset=utf-8",
        ),
        "app.js" => (
            include_bytes!("../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_bytes!("../assets/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => return None,
    };
    Some(Asset {
        bytes,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn serves_index_and_nothing_else() {
        assert!(super::asset("index.html").is_some());
        assert!(super::asset("app.js").is_some());
        assert!(super::asset("../Cargo.toml").is_none());
    }
}
