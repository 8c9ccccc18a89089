//! The counting script over HTTP: `/count.js` and its headers, and CORS on
//! the hits route and nowhere else. A preflight is answered before the
//! handler, so it counts nothing and takes nothing from the hit limit.
//! (`tests/browser.rs` runs the script in Chromium.)

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, json_of};
use support::web::{Reply, get, send};
use tally::domain::{RulesPatch, Slug};

const SCRIPT: &str = include_str!("../static/count.js");
const PAGE_ORIGIN: &str = "http://blog.example";

/// A preflight for the script's POST from `PAGE_ORIGIN`.
async fn preflight(app: &TestApp, path: &str) -> Reply {
    send(
        app,
        Method::OPTIONS,
        path,
        &[
            ("origin", PAGE_ORIGIN),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        None,
    )
    .await
}

/// The script's POST from `PAGE_ORIGIN`, with `body` as JSON.
async fn post_hit(app: &TestApp, slug: &str, body: &str) -> Reply {
    send(
        app,
        Method::POST,
        &format!("/api/v1/sites/{slug}/hits"),
        &[
            ("origin", PAGE_ORIGIN),
            ("content-type", "application/json"),
        ],
        Some(body),
    )
    .await
}

fn error_code(reply: &Reply) -> Value {
    json_of(&reply.body)["error"]["code"].clone()
}

/// The response's `access-control-*` header names, sorted.
fn cors_headers(reply: &Reply) -> Vec<String> {
    let mut names: Vec<String> = reply
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect();
    names.sort();
    names
}

async fn page_count(app: &TestApp, slug: &str, page: &str) -> i64 {
    let reply = get(
        app,
        &format!("/api/v1/sites/{slug}/pages/count?page={page}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    json_of(&reply.body)["count"].as_i64().unwrap()
}

/// An app with site `blog`, public so that its pages can be read without
/// the token, as a page's script would.
async fn with_blog(extra: &[&str]) -> TestApp {
    TestApp::with_site(extra, &json!({"slug": "blog", "public": true})).await
}

#[tokio::test]
async fn count_js_is_small_typed_cached_for_an_hour_and_revalidated() {
    let app = with_blog(&[]).await;
    let reply = get(&app, "/count.js", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(reply.header("cache-control"), "public, max-age=3600");
    assert_eq!(reply.body, SCRIPT);
    assert_eq!(
        reply.header("content-length"),
        SCRIPT.len().to_string().as_str()
    );
    assert!(SCRIPT.len() <= 2560, "count.js is {} bytes", SCRIPT.len());
    // A script any page may load needs no CORS header, and has none.
    assert_eq!(cors_headers(&reply), Vec::<String>::new());

    let etag = reply.header("etag").to_owned();
    assert_eq!(etag.len(), 18, "{etag}");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let cached = get(&app, "/count.js", &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.body, "");
    assert_eq!(cached.header("etag"), etag);
    assert_eq!(cached.header("cache-control"), "public, max-age=3600");
    let stale = get(&app, "/count.js", &[("if-none-match", "\"0\"")]).await;
    assert_eq!(stale.status, StatusCode::OK);

    let head = send(&app, Method::HEAD, "/count.js", &[], None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        head.header("content-length"),
        SCRIPT.len().to_string().as_str()
    );
    assert_eq!(head.body, "");

    // It is not a static file of the dashboard's.
    let other = get(&app, "/static/count.js", &[]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_preflight_is_answered_exactly_and_counts_nothing() {
    let app = with_blog(&[]).await;
    for _ in 0..3 {
        let reply = preflight(&app, "/api/v1/sites/blog/hits").await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.body, "");
        assert_eq!(
            cors_headers(&reply),
            [
                "access-control-allow-headers",
                "access-control-allow-methods",
                "access-control-allow-origin",
                "access-control-max-age",
            ]
        );
        assert_eq!(reply.header("access-control-allow-origin"), "*");
        assert_eq!(reply.header("access-control-allow-methods"), "POST");
        assert_eq!(reply.header("access-control-allow-headers"), "content-type");
        assert_eq!(reply.header("access-control-max-age"), "86400");
        assert!(reply.headers.get("vary").is_none(), "{:?}", reply.headers);
    }
    // Nothing was counted, on the site or on any page.
    assert_eq!(app.count("blog").await, 0);
    let pages = get(&app, "/api/v1/sites/blog/pages", &[]).await;
    assert_eq!(json_of(&pages.body)["pages"], json!([]));

    // A preflight for a site that does not exist is answered the same:
    // whether the site exists is the POST's to say, with a readable 404.
    let reply = preflight(&app, "/api/v1/sites/nosuch/hits").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    let reply = post_hit(&app, "nosuch", "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&reply), "site_not_found");
    assert_eq!(reply.header("access-control-allow-origin"), "*");

    // Then the POST counts once.
    let reply = post_hit(&app, "blog", r#"{"page":"/posts/hello?utm=x"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert_eq!(cors_headers(&reply), ["access-control-allow-origin"]);
    assert_eq!(
        json_of(&reply.body),
        json!({"site": "blog", "count": 1, "page": "/posts/hello", "page_count": 1})
    );
    assert_eq!(app.count("blog").await, 1);
    assert_eq!(page_count(&app, "blog", "/posts/hello").await, 1);
}

#[tokio::test]
async fn preflights_take_nothing_from_the_hit_limit() {
    let app = with_blog(&["--rate-limit", "2"]).await;
    for _ in 0..5 {
        let reply = preflight(&app, "/api/v1/sites/blog/hits").await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    for expected in [1, 2] {
        let reply = post_hit(&app, "blog", r#"{"page":"/a"}"#).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(json_of(&reply.body)["count"], expected);
    }
    // Past the limit: a 429 the script can read.
    let limited = post_hit(&app, "blog", r#"{"page":"/a"}"#).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&limited), "rate_limited");
    assert_eq!(limited.header("access-control-allow-origin"), "*");
    // A limited client's preflight is still answered.
    let reply = preflight(&app, "/api/v1/sites/blog/hits").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(app.count("blog").await, 2);
    assert_eq!(page_count(&app, "blog", "/a").await, 2);
}

#[tokio::test]
async fn every_answer_of_the_hits_route_is_readable_by_the_script() {
    let app = with_blog(&[]).await;
    let bad_page = post_hit(&app, "blog", r#"{"page":"no-slash"}"#).await;
    assert_eq!(bad_page.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad_page), "invalid_page");
    assert_eq!(bad_page.header("access-control-allow-origin"), "*");

    let untyped = send(
        &app,
        Method::POST,
        "/api/v1/sites/blog/hits",
        &[("origin", PAGE_ORIGIN), ("content-type", "text/plain")],
        Some(r#"{"page":"/a"}"#),
    )
    .await;
    assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(untyped.header("access-control-allow-origin"), "*");

    // A site that allows only its own pages: another page's hit is a 403
    // the script can read; its own page's hit counts.
    let slug = Slug::parse("blog").unwrap();
    let rules = RulesPatch {
        keep_params: None,
        origins: Some(vec!["blog.example".to_owned()]),
        ..RulesPatch::default()
    };
    app.state
        .counting
        .sites
        .set_rules(&slug, rules)
        .await
        .unwrap();
    let foreign = send(
        &app,
        Method::POST,
        "/api/v1/sites/blog/hits",
        &[
            ("origin", "http://elsewhere.example"),
            ("content-type", "application/json"),
        ],
        Some(r#"{"page":"/a"}"#),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&foreign), "origin_not_allowed");
    assert_eq!(foreign.header("access-control-allow-origin"), "*");
    let own = post_hit(&app, "blog", r#"{"page":"/a"}"#).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(json_of(&own.body)["count"], 1);
    assert_eq!(app.count("blog").await, 1);

    // A method the route does not take: the router's 405, no CORS.
    let put = send(
        &app,
        Method::PUT,
        "/api/v1/sites/blog/hits",
        &[("origin", PAGE_ORIGIN)],
        None,
    )
    .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.header("allow"), "POST,OPTIONS");
    assert_eq!(cors_headers(&put), Vec::<String>::new());
}

#[tokio::test]
async fn no_other_route_answers_cors_headers() {
    let app = with_blog(&[]).await;
    let origin = ("origin", PAGE_ORIGIN);
    let bearer = format!("Bearer {TOKEN}");
    let admin = ("authorization", bearer.as_str());
    for (path, headers) in [
        ("/api/v1/sites/blog/count", vec![origin]),
        ("/api/v1/sites/blog/pages", vec![origin]),
        ("/api/v1/sites/blog/pages/count?page=/a", vec![origin]),
        ("/api/v1/sites/blog/series", vec![origin]),
        ("/api/v1/export", vec![origin, admin]),
        ("/api/v1/sites", vec![origin, admin]),
        ("/api/v1/openapi.json", vec![origin]),
        ("/badge/blog.svg?readonly=1", vec![origin]),
        ("/healthz", vec![origin]),
    ] {
        let reply = get(&app, path, &headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{path}");
    }
    // The pixel is an image: a page shows it, no script reads it. (HEAD:
    // its body is no text, and its headers are GET's.)
    let pixel = send(
        &app,
        Method::HEAD,
        "/count/blog.gif?page=/a",
        &[origin],
        None,
    )
    .await;
    assert_eq!(pixel.status, StatusCode::OK);
    assert_eq!(pixel.header("content-type"), "image/gif");
    assert_eq!(cors_headers(&pixel), Vec::<String>::new());
    // Preflights elsewhere are the router's 405, without CORS headers, so
    // a browser refuses the cross-origin call they ask for.
    for path in [
        "/api/v1/sites/blog/count",
        "/api/v1/export",
        "/api/v1/sites",
    ] {
        let reply = preflight(&app, path).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(error_code(&reply), "method_not_allowed", "{path}");
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{path}");
    }
    // Nothing above counted.
    assert_eq!(app.count("blog").await, 0);
}
