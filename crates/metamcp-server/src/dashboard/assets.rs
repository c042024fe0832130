//! The dashboard's own static files, compiled into the binary (`include_bytes!`): no build
//! step, no CDN, nothing fetched from elsewhere. Each is served at `/assets/<name>` and
//! referenced as `/assets/<name>?v=<content hash>` with its SRI digest, so a browser caches it
//! for a year and a new binary's file is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// One static file.
#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// `/assets/<name>?v=<first 16 hex of SHA-256>`.
    pub url: String,
    /// `sha256-<base64>` for the `integrity` attribute.
    pub sri: String,
}

fn asset(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Asset {
        name,
        content_type,
        bytes,
        url: format!("/assets/{name}?v={hex}"),
        sri: format!("sha256-{}", STANDARD.encode(digest)),
    }
}

/// Every asset.
pub static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset(
            "app.css",
            "text/css; charset=utf-8",
            include_bytes!("../../assets/app.css"),
        ),
        asset(
            "app.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/app.js"),
        ),
        asset(
            "inspector.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/inspector.js"),
        ),
    ]
});

/// The stylesheet.
pub fn css() -> &'static Asset {
    &ASSETS[0]
}

/// The script.
pub fn js() -> &'static Asset {
    &ASSETS[1]
}

/// The inspector's script (only its page loads it).
pub fn inspector_js() -> &'static Asset {
    &ASSETS[2]
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut resp = a.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_hash() {
        assert!(css().url.starts_with("/assets/app.css?v="));
        assert_eq!(css().url.len(), "/assets/app.css?v=".len() + 16);
        assert!(js().sri.starts_with("sha256-"));
        assert_ne!(css().url, js().url);
    }
}
