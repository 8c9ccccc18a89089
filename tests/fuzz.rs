//! Property tests over every parser of client input, and over the whole
//! HTTP surface: whatever a client sends, tally answers below 500, never
//! panics, and every parser keeps its own rule.
//!
//! CI runs each property with proptest's default case count;
//! `scripts/fuzz` runs them with many more, for a bounded time. Failures
//! proptest finds are kept in `tests/fuzz.proptest-regressions` and are
//! replayed first on every run.

mod support;

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use support::app::{TOKEN, router, sqlite_url};
use tally::config::NetList;
use tally::domain::Slug;
use tally::domain::page::{MAX_PAGE_LEN, Page};
use tally::domain::time::{format_timestamp, parse_instant};
use tally::http::badge::{Options, render};
use tally::http::client::{Proxies, client_ip};
use tally::http::transfer::parse_import;
use tower::ServiceExt;

/// One runtime and one app for every case: a case is one request.
fn app() -> &'static (tokio::runtime::Runtime, Router, tempfile::TempDir) {
    static APP: OnceLock<(tokio::runtime::Runtime, Router, tempfile::TempDir)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (router, _) = runtime.block_on(router(&sqlite_url(dir.path()), &[]));
        runtime.block_on(async {
            for slug in ["blog", "docs.example.org"] {
                let create = Request::post("/api/v1/sites")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(Body::from(format!("{{\"slug\":\"{slug}\"}}")))
                    .unwrap();
                let status = router.clone().oneshot(create).await.unwrap().status();
                assert_eq!(status, 201);
            }
        });
        (runtime, router, dir)
    })
}

/// Paths shaped like tally's routes, with hostile fillings.
fn path() -> impl Strategy<Value = String> {
    let slug = prop_oneof![
        Just("blog".to_owned()),
        Just("default".to_owned()),
        Just("docs.example.org".to_owned()),
        "[a-z0-9._-]{0,70}",
        any::<String>().prop_map(|s| percent(&s)),
    ];
    let route = prop_oneof![
        Just("/"),
        Just("/resetcounter"),
        Just("/api/v1/sites"),
        Just("/api/v1/sites/{}"),
        Just("/api/v1/sites/{}/hits"),
        Just("/api/v1/sites/{}/count"),
        Just("/api/v1/sites/{}/uniques"),
        Just("/api/v1/sites/{}/reset"),
        Just("/api/v1/sites/{}/series"),
        Just("/api/v1/sites/{}/pages"),
        Just("/api/v1/sites/{}/pages/count"),
        Just("/count/{}.gif"),
        Just("/count/{}"),
        Just("/api/v1/export"),
        Just("/api/v1/import"),
        Just("/badge/{}.svg"),
        Just("/badge/{}"),
        Just("/dashboard"),
        Just("/dashboard/{}"),
        Just("/dashboard/sites/{}"),
        Just("/dashboard/login"),
        Just("/dashboard/logout"),
        Just("/static/{}"),
        Just("/count.js"),
        Just("/healthz"),
        Just("/readyz"),
        Just("/metrics"),
    ];
    let key = prop_oneof![
        Just("from"),
        Just("to"),
        Just("step"),
        Just("format"),
        Just("days"),
        Just("readonly"),
        Just("label"),
        Just("color"),
        Just("label_color"),
        Just("style"),
        Just("next"),
        Just("page"),
        Just("limit"),
        Just("offset"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("/posts/hello".to_owned()),
        "/[ -~]{0,40}".prop_map(|s| percent(&s)),
        Just("hour".to_owned()),
        Just("day".to_owned()),
        Just("csv".to_owned()),
        Just("1".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("1970-01-01".to_owned()),
        "[0-9]{1,25}",
        "-?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}(T[0-9:.]{0,14}(Z|[+-][0-9:]{0,6}))?",
        any::<String>().prop_map(|s| percent(&s)),
    ];
    let query = prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    });
    (route, slug, query).prop_map(|(route, slug, query)| {
        let path = route.replace("{}", &slug);
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    })
}

/// Percent-encodes everything but unreserved characters, so any string
/// makes a valid URI.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// JSON bodies near what tally reads (sites, counts, import documents), and
/// bytes that are not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        Just(serde_json::Value::from(9_007_199_254_740_991_i64)),
        Just(serde_json::Value::from(9_007_199_254_740_992_i64)),
        "[a-z0-9._-]{0,70}".prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let json = scalar.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("slug".to_owned()),
            Just("name".to_owned()),
            Just("count".to_owned()),
            Just("sites".to_owned()),
            Just("hours".to_owned()),
            Just("base_count".to_owned()),
            Just("version".to_owned()),
            Just("page".to_owned()),
            "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        3 => json.prop_map(|v| v.to_string().into_bytes()),
        // Duplicate keys, which a JSON value cannot hold.
        1 => "[a-z]{1,8}".prop_map(|s| format!("{{\"slug\":\"{s}\",\"slug\":\"x{s}\"}}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        // Plain import lists, mostly well formed.
        1 => prop::collection::vec(("[a-z0-9][a-z0-9._-]{0,8}", 0i64..1000), 0..5).prop_map(|sites| {
            let list: Vec<serde_json::Value> = sites
                .into_iter()
                .map(|(slug, count)| serde_json::json!({ "slug": slug, "count": count }))
                .collect();
            serde_json::to_vec(&list).unwrap()
        }),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(format!("Bearer {TOKEN}").into_bytes()),
        Just(b"application/json".to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "(([0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9a-f:]{2,39}|unknown)(, ?(([0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9a-f:]{2,39}))*"
            .prop_map(String::into_bytes),
        "tally_session=[0-9a-f.]{0,90}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    let name = prop_oneof![
        Just("authorization"),
        Just("content-type"),
        Just("cookie"),
        Just("x-forwarded-for"),
        Just("x-real-ip"),
        Just("x-request-id"),
        Just("user-agent"),
        Just("origin"),
        Just("referer"),
        Just("if-none-match"),
        Just("accept"),
    ];
    prop::collection::vec((name, header_value()), 0..6)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    /// Whatever a client names as a page, a page that parses is a name the
    /// store accepts back: `/` first, bounded, no control characters, and
    /// never the overflow page.
    #[test]
    fn a_parsed_page_is_a_name_the_store_keeps(
        raw in prop_oneof![any::<String>(), "/[ -~%]{0,80}", "/[a-z%0-9A-F?&=#+]{0,60}"],
        keep in prop::collection::vec("[a-z]{1,3}", 0..3),
    ) {
        if let Ok(page) = Page::parse(&raw, &keep) {
            prop_assert!(page.as_str().starts_with('/'), "{raw:?} → {page}");
            prop_assert!(page.as_str().len() <= MAX_PAGE_LEN);
            prop_assert!(!page.is_overflow());
            prop_assert_eq!(Page::stored(page.as_str()), Ok(page.clone()));
        }
    }

    /// Any request: an answer below 500 (503 only if the store were down,
    /// which it is not here), and a JSON error body on every API error.
    #[test]
    fn no_request_gets_a_server_error(
        method in method(),
        path in path(),
        headers in headers(),
        body in body(),
    ) {
        let (runtime, router, _) = app();
        let mut request = Request::builder().method(method.clone()).uri(&path);
        for (name, value) in &headers {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request = request.header(*name, value);
            }
        }
        let request = request.body(Body::from(body)).unwrap();
        let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
        let status = response.status();
        prop_assert!(status.as_u16() < 500, "{method} {path} with {headers:?}: {status}");
        let api = path.starts_with("/api/");
        if api && status.is_client_error() {
            let bytes = runtime
                .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                .unwrap();
            if method != Method::HEAD {
                let error: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
                prop_assert!(error["error"]["code"].is_string(), "{path}: {error}");
            }
        }
    }

    /// A slug is accepted exactly when it follows the documented rule.
    #[test]
    fn slugs_follow_the_documented_rule(slug in prop_oneof!["[a-z0-9._-]{0,70}", any::<String>()]) {
        let rule = !slug.is_empty()
            && slug.len() <= 64
            && slug.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && slug.as_bytes()[0].is_ascii_alphanumeric();
        prop_assert_eq!(Slug::parse(&slug).is_ok(), rule);
    }

    /// Instants parse only to what can be written back, and round-trip.
    #[test]
    fn instants_round_trip(
        s in prop_oneof![
            "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
            any::<String>(),
        ],
        t in 0i64..253_402_300_800,
    ) {
        if let Some(unix) = parse_instant(&s) {
            let written = format_timestamp(unix);
            prop_assert_eq!(parse_instant(&written), Some(unix), "{} -> {}", s, written);
        }
        prop_assert_eq!(parse_instant(&format_timestamp(t)), Some(t));
    }

    /// The client is the peer or an address some header named; an
    /// untrusted peer is always itself.
    #[test]
    fn client_addresses_come_from_the_peer_or_its_headers(
        peer in any::<IpAddr>(),
        trusted in prop_oneof![Just("127.0.0.0/8,10.0.0.0/8"), Just(""), Just("0.0.0.0/0,::/0")],
        forwarded in prop::collection::vec(header_value(), 0..3),
        real_ip in header_value(),
    ) {
        let proxies = Proxies {
            trusted: trusted.parse::<NetList>().unwrap(),
            real_ip_from: trusted.parse::<NetList>().unwrap(),
        };
        let mut headers = HeaderMap::new();
        let mut named = Vec::new();
        for value in forwarded.iter().chain([&real_ip]) {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                named.push(String::from_utf8_lossy(value).into_owned());
                headers.append("x-forwarded-for", v);
            }
        }
        if let Ok(v) = HeaderValue::from_bytes(&real_ip) {
            headers.insert("x-real-ip", v);
        }
        let origin = client_ip(Some(peer), &headers, &proxies);
        let peer = peer.to_canonical();
        if !proxies.trusted.contains(peer) {
            prop_assert_eq!(origin.ip, peer);
            prop_assert!(!origin.via_proxy);
        } else if origin.ip != peer {
            // Addresses are compared, not their text: `a0a::01` is `a0a::1`.
            let addresses: Vec<IpAddr> = named
                .iter()
                .flat_map(|h| h.split(','))
                .filter_map(|hop| {
                    let hop = hop.trim();
                    hop.parse::<IpAddr>()
                        .ok()
                        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                })
                .map(|ip| ip.to_canonical())
                .collect();
            prop_assert!(addresses.contains(&origin.ip), "{} not in {:?}", origin.ip, named);
        }
    }

    /// Import documents: any bytes are refused or read, never a panic; a
    /// document read is one whose every site was an object with a slug, in
    /// the order given, and a key given twice anywhere is refused.
    #[test]
    fn import_documents_are_read_or_refused(body in body(), replay in any::<bool>()) {
        if let Ok(entries) = parse_import(&body[..], replay) {
            let doc: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("read what is not JSON: {e}")))?;
            let sites = doc.as_array().or_else(|| doc["sites"].as_array());
            let sites = sites.ok_or_else(|| TestCaseError::fail(format!("no sites in {doc}")))?;
            let slugs: Vec<&str> = sites.iter().filter_map(|s| s["slug"].as_str()).collect();
            let read: Vec<&str> = entries.iter().map(|e| e.slug.as_str()).collect();
            prop_assert_eq!(read, slugs);
            if !replay {
                prop_assert!(entries.iter().all(|e| e.hours.is_none()));
            }
        }
    }

    /// Badge options: whatever is accepted draws well-formed SVG whose
    /// label is the text given, escaped.
    #[test]
    fn accepted_badge_options_draw_well_formed_svg(
        params in prop::collection::vec(
            (prop_oneof![
                Just("label".to_owned()), Just("color".to_owned()), Just("label_color".to_owned()),
                Just("style".to_owned()), Just("readonly".to_owned()), "[a-z_]{0,10}",
            ], any::<String>()),
            0..5,
        ),
    ) {
        if let Ok(options) = Options::parse(&params) {
            let svg = render(&options, "42");
            let doc = roxmltree::Document::parse(&svg)
                .map_err(|e| TestCaseError::fail(format!("{params:?}: {e}\n{svg}")))?;
            let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
            prop_assert!(texts.contains(&options.label.as_str()), "{:?} in {:?}", options.label, texts);
        }
    }
}
