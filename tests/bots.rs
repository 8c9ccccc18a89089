//! Bots' hits: not counted on badges and on a page's API hits, answered as
//! if counted, noted per site in /metrics; GitHub's image proxy, programs
//! calling the API and the seed's `/` count; `TALLY_BOT_FILTER=false`
//! counts everything. On SQLite, and the badge once on PostgreSQL.

mod support;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TallyProcess, TestApp, admin_via, count_via, sqlite_url};
use support::pg::PgServer;
use support::web::{Reply, get, send};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const SLACKBOT: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
const HEADLESS_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
    (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36";
const GITHUB_CAMO: &str = "github-camo (876de43e)";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const CURL: &str = "curl/8.5.0";
const ORIGIN: &str = "https://blog.example";

const COUNTING_CACHE: &str = "max-age=0, no-cache, no-store, must-revalidate";

async fn app(extra: &[&str]) -> TestApp {
    TestApp::with_site(extra, &json!({ "slug": "blog", "count": 41 })).await
}

async fn badge(r: &Router, user_agent: &str) -> Reply {
    get(r, "/badge/blog.svg", &[("user-agent", user_agent)]).await
}

/// `POST /api/v1/sites/blog/hits` with these headers: status and JSON body.
async fn api_hit(r: &Router, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let reply = send(r, Method::POST, "/api/v1/sites/blog/hits", headers, None).await;
    let body = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.body));
    (reply.status, body)
}

/// The count a badge draws (its second visible text).
fn drawn(svg: &str) -> String {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}): {svg}"));
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("aria-hidden").is_none())
        .map(|n| n.text().unwrap_or_default())
        .collect();
    assert_eq!(texts.len(), 2, "{svg}");
    texts[1].to_owned()
}

/// The headers of a reply but its request id, which every reply has its own of.
fn headers_but_id(reply: &Reply) -> HeaderMap {
    let mut headers = reply.headers.clone();
    headers.remove("x-request-id");
    headers
}

/// `tally_bot_hits_ignored_total` for `site` in /metrics; `None` if the
/// site has no line.
async fn ignored(r: &Router, site: &str) -> Option<u64> {
    let reply = get(r, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let prefix = format!("tally_bot_hits_ignored_total{{site=\"{site}\"}} ");
    reply.body.lines().find_map(|l| {
        let value = l.strip_prefix(&prefix)?;
        Some(value.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
    })
}

/// Whether /metrics names `tally_bot_hits_ignored_total` at all (it does
/// from the first ignored hit on).
async fn any_ignored(r: &Router) -> bool {
    let body = get(r, "/metrics", &[]).await.body;
    assert!(body.contains("\ntally_hits_total "), "{body}");
    body.contains("tally_bot_hits_ignored")
}

#[tokio::test]
async fn a_bot_s_badge_counts_nothing_and_is_answered_as_a_counted_one() {
    let r = app(&[]).await;
    let read = get(&r, "/badge/blog.svg?readonly=1", &[]).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(drawn(&read.body), "41");

    for n in 1..=3 {
        let reply = badge(&r, GOOGLEBOT).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.header("content-type"), "image/svg+xml; charset=utf-8");
        assert_eq!(reply.header("cache-control"), COUNTING_CACHE);
        assert!(reply.headers.get("etag").is_none());
        assert_eq!(reply.body, read.body, "the badge a read draws");
        assert_eq!(ignored(&r, "blog").await, Some(n));
    }
    for ua in [SLACKBOT, HEADLESS_CHROME] {
        assert_eq!(drawn(&badge(&r, ua).await.body), "41", "{ua}");
    }
    assert_eq!(r.count("blog").await, 41);
    assert_eq!(ignored(&r, "blog").await, Some(5));

    // A reader's badge: counted, and the same status and headers.
    let bot = badge(&r, GOOGLEBOT).await;
    let reader = badge(&r, CHROME).await;
    assert_eq!(drawn(&reader.body), "42");
    assert_eq!(reader.status, bot.status);
    assert_eq!(headers_but_id(&reader), headers_but_id(&bot));
    assert_eq!(r.count("blog").await, 42);
    assert_eq!(ignored(&r, "blog").await, Some(6));

    // A read-only badge counts nothing for anyone: no hit to leave out.
    let reply = get(
        &r,
        "/badge/blog.svg?readonly=1",
        &[("user-agent", GOOGLEBOT)],
    )
    .await;
    assert_eq!(drawn(&reply.body), "42");
    assert_eq!(ignored(&r, "blog").await, Some(6));
}

#[tokio::test]
async fn github_s_image_proxy_is_a_reader() {
    let r = app(&[]).await;
    for want in ["42", "43", "44"] {
        let reply = badge(&r, GITHUB_CAMO).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(drawn(&reply.body), want);
    }
    assert_eq!(r.count("blog").await, 44);
    assert!(!any_ignored(&r).await);
}

#[tokio::test]
async fn a_badge_without_a_user_agent_counts() {
    let r = app(&[]).await;
    assert_eq!(drawn(&get(&r, "/badge/blog.svg", &[]).await.body), "42");
    assert_eq!(drawn(&badge(&r, "").await.body), "43");
    assert_eq!(r.count("blog").await, 43);
    assert!(!any_ignored(&r).await);
}

#[tokio::test]
async fn a_page_s_api_hit_from_a_bot_is_not_counted_and_a_program_s_always_is() {
    let r = app(&[]).await;
    let from_page_bot = [("origin", ORIGIN), ("user-agent", GOOGLEBOT)];
    for n in 1..=2 {
        assert_eq!(
            api_hit(&r, &from_page_bot).await,
            (StatusCode::OK, json!({"site": "blog", "count": 41}))
        );
        assert_eq!(ignored(&r, "blog").await, Some(n));
    }
    assert_eq!(r.count("blog").await, 41);

    // No Origin: a program, counted whatever it calls itself.
    for (ua, want) in [(CURL, 42), (GOOGLEBOT, 43), ("python-requests/2.31.0", 44)] {
        assert_eq!(
            api_hit(&r, &[("user-agent", ua)]).await,
            (StatusCode::OK, json!({"site": "blog", "count": want})),
            "{ua}"
        );
    }
    // A page's script in a browser, or with no user agent: counted.
    assert_eq!(
        api_hit(&r, &[("origin", ORIGIN), ("user-agent", CHROME)]).await,
        (StatusCode::OK, json!({"site": "blog", "count": 45}))
    );
    assert_eq!(
        api_hit(&r, &[("origin", ORIGIN)]).await,
        (StatusCode::OK, json!({"site": "blog", "count": 46}))
    );
    assert_eq!(r.count("blog").await, 46);
    assert_eq!(ignored(&r, "blog").await, Some(2));
}

#[tokio::test]
async fn the_seed_index_counts_bots_as_the_seed_did() {
    let r = app(&[]).await;
    for n in 1..=3 {
        let reply = get(&r, "/", &[("user-agent", GOOGLEBOT)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body,
            format!("Hello Linode!  This page has been viewed {n} time(s).")
        );
    }
    assert_eq!(r.count("default").await, 3);
    assert!(!any_ignored(&r).await);
}

#[tokio::test]
async fn a_bot_on_a_missing_site_gets_the_same_404_and_no_label() {
    let r = app(&[]).await;
    let bot = get(&r, "/badge/nosuch.svg", &[("user-agent", GOOGLEBOT)]).await;
    let reader = get(&r, "/badge/nosuch.svg", &[("user-agent", CHROME)]).await;
    for reply in [&bot, &reader] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "site_not_found", "{}", reply.body);
    }
    assert_eq!(bot.body, reader.body);
    assert!(!any_ignored(&r).await);
}

#[tokio::test]
async fn a_bot_over_the_hit_limit_gets_the_429_anyone_would() {
    let r = app(&["--rate-limit", "2"]).await;
    for _ in 0..2 {
        assert_eq!(badge(&r, GOOGLEBOT).await.status, StatusCode::OK);
    }
    let limited = badge(&r, GOOGLEBOT).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    let body: Value = serde_json::from_str(&limited.body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
    assert_eq!(r.count("blog").await, 41);
    assert_eq!(ignored(&r, "blog").await, Some(2));
}

#[tokio::test]
async fn with_the_filter_off_bots_count() {
    let r = app(&["--bot-filter", "false"]).await;
    assert!(!r.state.bots.enabled());
    assert_eq!(drawn(&badge(&r, GOOGLEBOT).await.body), "42");
    assert_eq!(drawn(&badge(&r, HEADLESS_CHROME).await.body), "43");
    assert_eq!(
        api_hit(&r, &[("origin", ORIGIN), ("user-agent", GOOGLEBOT)]).await,
        (StatusCode::OK, json!({"site": "blog", "count": 44}))
    );
    assert_eq!(r.count("blog").await, 44);
    assert!(!any_ignored(&r).await);
}

/// `TALLY_BOT_FILTER=false` in the environment of the real binary.
#[tokio::test]
async fn the_environment_variable_turns_the_filter_off() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url), ("TALLY_BOT_FILTER", "false")]);
    let client = support::load::client();
    let created = client
        .post(tally.url("/api/v1/sites"))
        .bearer_auth(TOKEN)
        .json(&json!({ "slug": "blog", "count": 41 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for want in ["42", "43"] {
        let reply = client
            .get(tally.url("/badge/blog.svg"))
            .header("user-agent", GOOGLEBOT)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(drawn(&reply.text().await.unwrap()), want);
    }
    assert_eq!(tally.count("blog").await, 43);
}

#[tokio::test]
async fn on_postgres_too_a_bot_s_badge_counts_nothing_and_camo_s_counts() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let r = TestApp::spawn(&url, &[]).await;
    let (status, body) = admin_via(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(r#"{"slug":"blog","count":41}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for _ in 0..4 {
        assert_eq!(drawn(&badge(&r, GOOGLEBOT).await.body), "41");
    }
    assert_eq!(drawn(&badge(&r, GITHUB_CAMO).await.body), "42");
    assert_eq!(
        api_hit(&r, &[("origin", ORIGIN), ("user-agent", SLACKBOT)]).await,
        (StatusCode::OK, json!({"site": "blog", "count": 42}))
    );
    assert_eq!(count_via(&r, "blog").await, 42);
    assert_eq!(ignored(&r, "blog").await, Some(5));
    assert_eq!(
        pg.psql(
            url.rsplit('/').next().unwrap(),
            "SELECT visitor_count FROM visitors WHERE slug = 'blog'"
        ),
        "42"
    );
}

/// A bot's page hit, from a script or through the pixel, counts on neither
/// the site nor the page and is answered with both counts as they stand;
/// a reader's is counted on both.
#[tokio::test]
async fn a_bot_s_page_hits_count_on_no_page() {
    let r = app(&[]).await;
    let page = Some(r#"{"page": "/posts/hello"}"#);
    let post = async |ua: &str| {
        let headers = [
            ("origin", ORIGIN),
            ("user-agent", ua),
            ("content-type", "application/json"),
        ];
        let reply = send(&r, Method::POST, "/api/v1/sites/blog/hits", &headers, page).await;
        (
            reply.status,
            serde_json::from_str::<Value>(&reply.body).unwrap(),
        )
    };
    let counted = |count: i64, page_count: i64| json!({"site": "blog", "count": count, "page": "/posts/hello", "page_count": page_count});
    assert_eq!(post(CHROME).await, (StatusCode::OK, counted(42, 1)));
    assert_eq!(post(GOOGLEBOT).await, (StatusCode::OK, counted(42, 1)));
    assert_eq!(
        post(HEADLESS_CHROME).await,
        (StatusCode::OK, counted(42, 1))
    );
    let pixel = async |ua: &str| {
        let reply = get(
            &r,
            "/count/blog.gif?page=/posts/hello",
            &[("user-agent", ua)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "image/gif");
    };
    pixel(SLACKBOT).await;
    assert_eq!(r.count("blog").await, 42);
    pixel(CHROME).await;
    assert_eq!(r.count("blog").await, 43);
    let reply = get(&r, "/api/v1/sites/blog/pages/count?page=/posts/hello", &[]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"site": "blog", "page": "/posts/hello", "count": 2})
    );
    assert_eq!(ignored(&r, "blog").await, Some(3));
}

/// A badge fetched with a `User-Agent` of raw bytes (HTTP allows bytes
/// past ASCII in a header, and they need not be UTF-8): status and body.
async fn badge_bytes(r: &Router, user_agent: &[u8]) -> (StatusCode, String) {
    use tower::ServiceExt;
    let request = axum::http::Request::get("/badge/blog.svg")
        .header(
            "user-agent",
            axum::http::HeaderValue::from_bytes(user_agent).unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let response = r.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// One byte that is not UTF-8 does not hide a crawler: its user agent is
/// read with the byte replaced, and a browser's stays a reader's.
#[tokio::test]
async fn a_bot_whose_user_agent_is_not_utf8_is_still_a_bot() {
    let r = app(&[]).await;
    let (status, svg) = badge_bytes(&r, b"Googlebot/2.1 \xff").await;
    assert_eq!(status, StatusCode::OK, "{svg}");
    assert_eq!(drawn(&svg), "41");
    assert_eq!(r.count("blog").await, 41);
    assert_eq!(ignored(&r, "blog").await, Some(1));

    let browser = [CHROME.as_bytes(), b" \xff"].concat();
    let (status, svg) = badge_bytes(&r, &browser).await;
    assert_eq!(status, StatusCode::OK, "{svg}");
    assert_eq!(drawn(&svg), "42");
    assert_eq!(r.count("blog").await, 42);
    assert_eq!(ignored(&r, "blog").await, Some(1));
}
