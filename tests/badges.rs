//! SVG badges: well-formed XML showing the exact count, counting unless
//! read-only, cache headers a proxy obeys, ETag/304, escaping, validation.

mod support;

use axum::http::StatusCode;
use serde_json::Value;
use support::app::TestApp;
use support::web::{Reply, get};

async fn app() -> TestApp {
    TestApp::with_site(&[], &serde_json::json!({ "slug": "blog", "count": 41 })).await
}

/// The badge's visible texts, after parsing it as XML (shadows skipped).
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}): {svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    root.descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("aria-hidden").is_none())
        .map(|n| n.text().unwrap_or_default().to_owned())
        .collect()
}

fn assert_svg_headers(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "image/svg+xml; charset=utf-8");
    let cache = reply.header("cache-control");
    assert!(cache.split(',').any(|d| d.trim() == "no-cache"), "{cache}");
}

fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "application/json");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], code, "{}", reply.body);
}

#[tokio::test]
async fn a_badge_counts_a_hit_and_shows_the_new_count() {
    let r = app().await;
    let reply = get(&r, "/badge/blog.svg", &[]).await;
    assert_svg_headers(&reply);
    assert_eq!(
        reply.header("cache-control"),
        "max-age=0, no-cache, no-store, must-revalidate"
    );
    assert!(reply.headers.get("etag").is_none());
    assert_eq!(texts(&reply.body), vec!["views", "42"]);
    let reply = get(&r, "/badge/blog.svg", &[]).await;
    assert_eq!(texts(&reply.body), vec!["views", "43"]);
    assert_eq!(r.count("blog").await, 43);
}

#[tokio::test]
async fn the_default_site_has_a_badge_like_any_other() {
    let r = app().await;
    let reply = get(&r, "/badge/default.svg", &[]).await;
    assert_eq!(texts(&reply.body), vec!["views", "1"]);
    let greeting = get(&r, "/", &[]).await;
    assert_eq!(
        greeting.body,
        "Hello Linode!  This page has been viewed 2 time(s)."
    );
}

#[tokio::test]
async fn readonly_does_not_count_and_revalidates_with_an_etag() {
    let r = app().await;
    let reply = get(&r, "/badge/blog.svg?readonly=1", &[]).await;
    assert_svg_headers(&reply);
    assert_eq!(reply.header("cache-control"), "max-age=0, no-cache");
    assert_eq!(texts(&reply.body), vec!["views", "41"]);
    let etag = reply.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(r.count("blog").await, 41);

    let again = get(
        &r,
        "/badge/blog.svg?readonly=true",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, "");
    assert_eq!(again.header("etag"), etag);
    assert!(again.header("cache-control").contains("no-cache"));
    let weak = format!("W/{etag}");
    let again = get(
        &r,
        "/badge/blog.svg?readonly=1",
        &[("if-none-match", &weak)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // A new count is a new badge and a new tag.
    get(&r, "/badge/blog.svg", &[]).await;
    let changed = get(
        &r,
        "/badge/blog.svg?readonly=1",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(texts(&changed.body), vec!["views", "42"]);
    assert_ne!(changed.header("etag"), etag);
    // So are other options.
    let other = get(&r, "/badge/blog.svg?readonly=1&label=hits", &[]).await;
    assert_ne!(other.header("etag"), changed.header("etag"));
    assert_eq!(r.count("blog").await, 42);
}

#[tokio::test]
async fn a_head_request_counts_nothing() {
    let r = app().await;
    let reply =
        support::web::send(&r, axum::http::Method::HEAD, "/badge/blog.svg", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "image/svg+xml; charset=utf-8");
    assert_eq!(reply.body, "");
    assert_eq!(r.count("blog").await, 41);
}

#[tokio::test]
async fn labels_are_escaped() {
    let r = app().await;
    let reply = get(&r, "/badge/blog.svg?readonly=1&label=%3C%26%22%3E%27", &[]).await;
    assert_svg_headers(&reply);
    assert_eq!(texts(&reply.body), vec!["<&\">'", "41"]);
    assert!(reply.body.contains("&lt;&amp;&quot;&gt;&#39;"));
    let title = "<title>&lt;&amp;&quot;&gt;&#39;: 41</title>";
    assert!(reply.body.contains(title), "{}", reply.body);
}

#[tokio::test]
async fn styles_colours_and_labels_change_the_badge() {
    let r = app().await;
    let reply = get(
        &r,
        "/badge/blog.svg?readonly=1&label=page%20views&color=brightgreen&label_color=%23123abc&style=flat-square",
        &[],
    )
    .await;
    assert_eq!(texts(&reply.body), vec!["page views", "41"]);
    let doc = roxmltree::Document::parse(&reply.body).unwrap();
    let fills: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .filter_map(|n| n.attribute("fill"))
        .collect();
    assert!(fills.contains(&"#3b1"), "{fills:?}");
    assert!(fills.contains(&"#123abc"), "{fills:?}");
    // Flat-square: square corners, no gradient.
    assert!(reply.body.contains("rx=\"0\""));
    assert!(!reply.body.contains("linearGradient"));
    for style in ["flat", "plastic"] {
        let reply = get(
            &r,
            &format!("/badge/blog.svg?readonly=1&style={style}"),
            &[],
        )
        .await;
        assert_svg_headers(&reply);
        assert_eq!(texts(&reply.body), vec!["views", "41"]);
    }
    // Wider text, wider badge.
    let short = get(&r, "/badge/blog.svg?readonly=1&label=a", &[]).await;
    let long = get(&r, "/badge/blog.svg?readonly=1&label=aaaaaaaaaa", &[]).await;
    let width = |svg: &str| -> u32 {
        roxmltree::Document::parse(svg)
            .unwrap()
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap()
    };
    // Ten 'a's at 6.6px each is 66px, one is 7 (rounded up).
    assert_eq!(width(&long.body) - width(&short.body), 66 - 7);
    // Unknown parameters (cache busters) are ignored.
    let busted = get(&r, "/badge/blog.svg?readonly=1&v=2", &[]).await;
    assert_eq!(busted.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_parameters_are_400s_and_count_nothing() {
    let r = app().await;
    let long = "x".repeat(41);
    for query in [
        "label=".to_owned(),
        format!("label={long}"),
        "label=a%0Ab".to_owned(),
        "color=notacolour".to_owned(),
        "color=%23abcd".to_owned(),
        "color=url(%23x)".to_owned(),
        "label_color=12345".to_owned(),
        "style=for-the-badge".to_owned(),
        "readonly=perhaps".to_owned(),
    ] {
        let reply = get(&r, &format!("/badge/blog.svg?{query}"), &[]).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_badge");
    }
    assert_eq!(r.count("blog").await, 41);
}

#[tokio::test]
async fn unknown_sites_and_bad_paths_are_errors() {
    let r = app().await;
    assert_error(
        &get(&r, "/badge/nope.svg", &[]).await,
        StatusCode::NOT_FOUND,
        "site_not_found",
    );
    assert_error(
        &get(&r, "/badge/nope.svg?readonly=1", &[]).await,
        StatusCode::NOT_FOUND,
        "site_not_found",
    );
    assert_error(
        &get(&r, "/badge/blog.png", &[]).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &get(&r, "/badge/Blog%21.svg", &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_site",
    );
    assert_error(
        &get(&r, "/badge/%FF.svg", &[]).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(r.count("blog").await, 41);
}
