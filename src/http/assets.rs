//! Static files: the dashboard's CSS, script and icon, and the counting
//! script pages embed, all embedded in the binary so that tally alone
//! needs no files beside it. In the stack NGINX serves the same `static/`
//! folder itself.
//!
//! The dashboard links its files as `/static/<name>?v=<hash>`, so a long
//! cache lifetime is safe: a new build changes the hash and so the URL.
//! The counting script is `/count.js`, a URL that pages copy once and keep,
//! so it is cached for an hour and revalidated by its `ETag`.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};

#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    hash: u64,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
        Asset {
            name,
            content_type,
            bytes,
            hash: fnv1a(bytes),
        }
    }

    /// The URL pages link to, with the content hash as a cache buster.
    pub fn href(&self) -> String {
        format!("/static/{}?v={:08x}", self.name, self.hash as u32)
    }

    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

pub const CSS: Asset = Asset::new(
    "dashboard.css",
    "text/css; charset=utf-8",
    include_bytes!("../../static/dashboard.css"),
);
pub const JS: Asset = Asset::new(
    "dashboard.js",
    "text/javascript; charset=utf-8",
    include_bytes!("../../static/dashboard.js"),
);
pub const FAVICON: Asset = Asset::new(
    "favicon.svg",
    "image/svg+xml",
    include_bytes!("../../static/favicon.svg"),
);

/// The script that counts a page and shows its counts: `/count.js`.
pub const COUNTER: Asset = Asset::new(
    "count.js",
    "text/javascript; charset=utf-8",
    include_bytes!("../../static/count.js"),
);

// Pages load the script on every view: it stays within 2.5 KiB.
const _: () = assert!(COUNTER.bytes.len() <= 2560);

/// What `/static/{name}` serves (the counting script has its own URL).
const ALL: [&Asset; 3] = [&CSS, &JS, &FAVICON];

/// A year: the URLs change when the content does.
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// An hour: the script's URL never changes, and a new version should
/// reach the pages that embed it the same day.
const CACHE_HOUR: &str = "public, max-age=3600";

/// `GET /static/{name}`
pub async fn serve(name: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    let asset = name
        .ok()
        .and_then(|Path(name)| ALL.into_iter().find(|a| a.name == name));
    let Some(asset) = asset else {
        return ApiError::new(ErrorCode::NotFound, "no such static file").into_response();
    };
    respond(asset, &headers, CACHE_FOREVER)
}

/// `GET /count.js`
pub async fn counter(headers: HeaderMap) -> Response {
    respond(&COUNTER, &headers, CACHE_HOUR)
}

/// `asset`, or a `304` when the request's `If-None-Match` names it.
fn respond(asset: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let etag = asset.etag();
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks
/// for GET) or is `*`.
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 64-bit FNV-1a: tiny, `const`, and plenty to tell versions of a file apart
/// (this is not a defence against anyone).
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, "\"x\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"x\""),
        );
        assert!(if_none_match(&h, "\"x\""));
        assert!(!if_none_match(&h, "\"y\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"y\""));
    }
}
