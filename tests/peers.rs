//! Other counters' protocols: Plausible's `POST /api/event`, Umami's
//! `POST /api/send` and GoatCounter's `GET /count` count page views on the
//! site they name, with their referrer, campaign and screen, exactly once
//! through a proxy's retries, on both backends; bots, other origins and
//! bad input count nothing.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, sqlite_url};
use support::load;
use support::pg::PgServer;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
const UMAMI_SITE: &str = "4f2c8e3a-9b1d-4c6e-8f7a-2d5b9c1e0a34";

/// Sends `body` to `path` as a tracker on `origin`'s page would, with
/// request id `id` (the app trusts 127.0.0.1 as its proxy); answers the
/// status and the body's text.
async fn post(
    app: &TestApp,
    path: &str,
    (kind, body): (&str, &str),
    (origin, agent, id): (&str, &str, &str),
) -> (StatusCode, String) {
    let reply = load::client()
        .post(app.url(path))
        .header("content-type", kind)
        .header("origin", origin)
        .header("user-agent", agent)
        .header("x-request-id", id)
        .header("x-forwarded-for", "203.0.113.7")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (reply.status(), reply.text().await.unwrap())
}

/// An error's message, from the body of an answer.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

/// GoatCounter's count as its script sends it: to the site's own host.
async fn count(app: &TestApp, host: &str, query: &str, agent: &str) -> reqwest::Response {
    load::client()
        .get(app.url(&format!("/count?{query}")))
        .header("host", host)
        .header("referer", format!("https://{host}/a"))
        .header("user-agent", agent)
        .send()
        .await
        .unwrap()
}

/// `dimension`'s values for `slug`, as the API lists them.
async fn values(app: &TestApp, slug: &str, dimension: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/api/v1/sites/{slug}/breakdown/{dimension}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["values"].clone()
}

/// Each page of `slug` with its count.
async fn pages(app: &TestApp, slug: &str) -> Value {
    let (status, body) = app.get_json(&format!("/api/v1/sites/{slug}/pages")).await;
    assert_eq!(status, 200, "{body}");
    Value::Array(
        body["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| json!([p["page"], p["hits"]]))
            .collect(),
    )
}

async fn trackers_count_page_views_exactly(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--trusted-proxies", "127.0.0.1/32"]).await;
    for slug in ["blog.example", "docs.example", UMAMI_SITE] {
        app.create_site(&json!({ "slug": slug })).await;
    }
    let blog = ("https://blog.example", FIREFOX);

    // Plausible's script: short names, as text/plain.
    let event = r#"{"n":"pageview","u":"https://blog.example/a?utm_source=hn","d":"blog.example",
        "r":"https://news.ycombinator.com/item?id=1","w":1280}"#;
    for _ in 0..2 {
        // The second is a proxy's retry of the first: counted once.
        let (status, text) = post(
            &app,
            "/api/event",
            ("text/plain", event),
            (blog.0, blog.1, "p-1"),
        )
        .await;
        assert_eq!((status, text.as_str()), (StatusCode::ACCEPTED, "ok"));
    }
    // The Events API: long names, as JSON, on two sites at once.
    let event = r#"{"name":"pageview","url":"https://blog.example/b","domain":"blog.example,docs.example","referrer":null}"#;
    let (status, _) = post(
        &app,
        "/api/event",
        ("application/json", event),
        (blog.0, blog.1, "p-2"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Umami's tracker.
    let send =
        json!({"type": "event", "payload": {"website": UMAMI_SITE, "hostname": "blog.example",
        "url": "/c", "referrer": "https://lobste.rs/s/x", "screen": "390x844",
        "language": "de-DE", "title": "C"}})
        .to_string();
    let (status, text) = post(
        &app,
        "/api/send",
        ("application/json", &send),
        (blog.0, blog.1, "u-1"),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "{}"));

    // GoatCounter's script, to the host that names the site.
    let reply = count(
        &app,
        "blog.example",
        "p=/d&r=https%3A%2F%2Fduckduckgo.com%2F&s=1920&q=utm_source%3Dnewsletter&t=D&rnd=7",
        FIREFOX,
    )
    .await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["content-type"], "image/gif");
    assert_eq!(&reply.bytes().await.unwrap()[..6], b"GIF89a");

    assert_eq!(app.count("blog.example").await, 3);
    assert_eq!(app.count("docs.example").await, 1);
    assert_eq!(app.count(UMAMI_SITE).await, 1);
    assert_eq!(
        pages(&app, "blog.example").await,
        json!([["/a", 1], ["/b", 1], ["/d", 1]])
    );
    assert_eq!(pages(&app, UMAMI_SITE).await, json!([["/c", 1]]));
    assert_eq!(
        values(&app, "blog.example", "referrer").await,
        json!([{"value": "(none)", "hits": 1}, {"value": "duckduckgo.com", "hits": 1},
               {"value": "news.ycombinator.com", "hits": 1}])
    );
    assert_eq!(
        values(&app, "blog.example", "source").await,
        json!([{"value": "(none)", "hits": 1}, {"value": "hn", "hits": 1},
               {"value": "newsletter", "hits": 1}])
    );
    assert_eq!(
        values(&app, "blog.example", "screen").await,
        json!([{"value": "(unknown)", "hits": 1}, {"value": "desktop", "hits": 1},
               {"value": "laptop", "hits": 1}])
    );
    assert_eq!(
        values(&app, UMAMI_SITE, "referrer").await,
        json!([{"value": "lobste.rs", "hits": 1}])
    );
    assert_eq!(
        values(&app, UMAMI_SITE, "screen").await,
        json!([{"value": "phone", "hits": 1}])
    );
    assert_eq!(
        values(&app, "blog.example", "browser").await,
        json!([{"value": "Firefox", "hits": 3}])
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackers_count_page_views_exactly_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    trackers_count_page_views_exactly(&sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackers_count_page_views_exactly_on_postgres() {
    let pg = PgServer::start();
    trackers_count_page_views_exactly(&pg.create_database()).await;
}

/// Bots, pages on hosts a site does not allow, custom events and bad
/// input: each answered, none counted.
#[tokio::test]
async fn what_a_tracker_may_not_count_counts_nothing() {
    let app = TestApp::sqlite(&[]).await;
    app.create_site(&json!({"slug": "blog.example", "origins": ["blog.example"]}))
        .await;
    app.create_site(&json!({ "slug": UMAMI_SITE })).await;
    let blog = ("https://blog.example", FIREFOX, "");
    let pageview = r#"{"n":"pageview","u":"https://blog.example/a","d":"blog.example"}"#;

    // A crawler's view is answered as a view and not counted.
    let (status, _) = post(
        &app,
        "/api/event",
        ("text/plain", pageview),
        (
            blog.0,
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let reply = count(&app, "blog.example", "p=/a&b=150", FIREFOX).await;
    assert_eq!(reply.status(), StatusCode::OK);
    let reply = load::client()
        .head(app.url("/count?p=/a"))
        .header("host", "blog.example")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);

    // A page on another host.
    let (status, text) = post(
        &app,
        "/api/event",
        ("text/plain", pageview),
        ("https://evil.example", FIREFOX, ""),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");

    for (path, kind, body, want, says) in [
        (
            "/api/event",
            "text/plain",
            r#"{"n":"signup","u":"https://blog.example/a","d":"blog.example"}"#,
            StatusCode::BAD_REQUEST,
            "\"signup\" is a custom event",
        ),
        (
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"blog.example/a","d":"blog.example"}"#,
            StatusCode::BAD_REQUEST,
            "url: \"blog.example/a\" is not a page's address",
        ),
        (
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"https://blog.example/a","d":"blog example"}"#,
            StatusCode::BAD_REQUEST,
            "domain: \"blog example\" names no site",
        ),
        (
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"https://blog.example/a","d":"nope.example"}"#,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"https://blog.example/a","d":"blog.example","w":0}"#,
            StatusCode::BAD_REQUEST,
            "screen_width:",
        ),
        (
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"https://blog.example/a"}"#,
            StatusCode::BAD_REQUEST,
            "missing field `domain`",
        ),
        (
            "/api/event",
            "image/png",
            pageview,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json or text/plain",
        ),
        (
            "/api/send",
            "application/json",
            r#"{"type":"event","payload":{"website":"4f2c8e3a-9b1d-4c6e-8f7a-2d5b9c1e0a34","url":"/a","name":"signup"}}"#,
            StatusCode::BAD_REQUEST,
            "payload.name: \"signup\" is a custom event",
        ),
        (
            "/api/send",
            "application/json",
            r#"{"type":"identify","payload":{"website":"4f2c8e3a-9b1d-4c6e-8f7a-2d5b9c1e0a34","url":"/a"}}"#,
            StatusCode::BAD_REQUEST,
            "type: \"identify\"",
        ),
        (
            "/api/send",
            "application/json",
            r#"{"type":"event","payload":{"website":"4f2c8e3a-9b1d-4c6e-8f7a-2d5b9c1e0a34","url":"/a","screen":"wide"}}"#,
            StatusCode::BAD_REQUEST,
            "payload.screen: \"wide\" is not WIDTHxHEIGHT",
        ),
    ] {
        let (status, text) = post(&app, path, (kind, body), blog).await;
        assert_eq!(status, want, "{body}: {text}");
        let text = message(&text);
        assert!(text.contains(says), "{body}: {text}");
    }
    for (query, says) in [
        ("r=https%3A%2F%2Fa.test%2F", "p: the page's path is missing"),
        ("p=a", "p: \"a\" is not a path"),
        ("p=/a&x=1", "\"x\": GoatCounter's count takes"),
        ("p=/a&p=/b", "p: given twice"),
        ("p=/a&s=wide", "s: \"wide\" is not a screen's width"),
    ] {
        let reply = count(&app, "blog.example", query, FIREFOX).await;
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST, "{query}");
        let text = message(&reply.text().await.unwrap());
        assert!(text.contains(says), "{query}: {text}");
    }

    assert_eq!(app.count("blog.example").await, 0);
    assert_eq!(app.count(UMAMI_SITE).await, 0);
    app.stop().await.unwrap();
}

/// A site's aliases: set with `PATCH` like its other settings, each a slug
/// no other site has as its slug or alias (else `409`), and a tracker that
/// names the site by one counts on it.
async fn aliases_name_a_site_to_every_tracker(database_url: &str) {
    let app = TestApp::spawn(database_url, &[]).await;
    app.create_site(&json!({"slug": "blog.example"})).await;
    app.create_site(&json!({"slug": "docs.example"})).await;
    let patch = |slug: &str, aliases: Value| {
        let body = json!({ "aliases": aliases }).to_string();
        let path = format!("/api/v1/sites/{slug}");
        let app = &app;
        async move { app.admin(reqwest::Method::PATCH, &path, Some(&body)).await }
    };
    let (status, site) = patch(
        "blog.example",
        json!(["WWW.Blog.Example.", UMAMI_SITE, "www.blog.example"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{site}");
    assert_eq!(site["aliases"], json!(["www.blog.example", UMAMI_SITE]));
    let (_, read) = app
        .admin(reqwest::Method::GET, "/api/v1/sites/blog.example", None)
        .await;
    assert_eq!(read["aliases"], json!(["www.blog.example", UMAMI_SITE]));

    // Another site's slug or alias, the site's own slug, a name that is no
    // slug, and a site named as an alias: refused, nothing changed.
    for (slug, aliases, want) in [
        (
            "docs.example",
            json!(["www.blog.example"]),
            StatusCode::CONFLICT,
        ),
        (
            "docs.example",
            json!(["blog.example"]),
            StatusCode::CONFLICT,
        ),
        (
            "blog.example",
            json!(["blog.example"]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "blog.example",
            json!(["not a name"]),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = patch(slug, aliases.clone()).await;
        assert_eq!(status, want, "{slug} {aliases}: {body}");
    }
    let (status, body) = app
        .admin(
            reqwest::Method::POST,
            "/api/v1/sites",
            Some(&json!({"slug": "www.blog.example"}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, docs) = app
        .admin(reqwest::Method::GET, "/api/v1/sites/docs.example", None)
        .await;
    assert_eq!(docs["aliases"], json!([]));

    // Each tracker, naming the blog by an alias.
    let page = ("https://www.blog.example", FIREFOX, "");
    let event = r#"{"n":"pageview","u":"https://www.blog.example/a","d":"www.blog.example"}"#;
    let (status, _) = post(&app, "/api/event", ("text/plain", event), page).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let send =
        json!({"type": "event", "payload": {"website": UMAMI_SITE, "url": "/b"}}).to_string();
    let (status, _) = post(&app, "/api/send", ("application/json", &send), page).await;
    assert_eq!(status, StatusCode::OK);
    let reply = count(&app, "www.blog.example", "p=/c", FIREFOX).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(app.count("blog.example").await, 3);
    assert_eq!(
        pages(&app, "blog.example").await,
        json!([["/a", 1], ["/b", 1], ["/c", 1]])
    );

    // Cleared, the aliases name nothing, and another site may take them.
    let (status, _) = patch("blog.example", json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, site) = patch("docs.example", json!(["www.blog.example"])).await;
    assert_eq!(status, StatusCode::OK, "{site}");
    let (status, _) = post(&app, "/api/send", ("application/json", &send), page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn aliases_name_a_site_to_every_tracker_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    aliases_name_a_site_to_every_tracker(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn aliases_name_a_site_to_every_tracker_on_postgres() {
    let pg = PgServer::start();
    aliases_name_a_site_to_every_tracker(&pg.create_database()).await;
}
