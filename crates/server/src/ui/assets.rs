//! The web UI's static files (`crates/server/ui/`), embedded in the binary at build time: no
//! build step, no download, nothing served from disk. Each answer carries its content hash as a
//! strong `ETag` and `Cache-Control: no-cache`, so a browser revalidates (a 304 costs one round
//! trip) and never runs a stale script after an upgrade.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

#[derive(rust_embed::RustEmbed)]
#[folder = "ui/"]
struct Assets;

/// `GET /ui/assets/{*path}`.
pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return ApiError::NotFound {
            entity: "asset",
            id: path,
        }
        .into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(CONTENT_TYPE, HeaderValue::from_static(content_type(&path)))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Whether an asset exists: the page shells name their script, and a test checks every name.
pub fn exists(path: &str) -> bool {
    Assets::get(path).is_some()
}

/// Every embedded asset's path.
pub fn paths() -> impl Iterator<Item = String> {
    Assets::iter().map(|path| path.into_owned())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
