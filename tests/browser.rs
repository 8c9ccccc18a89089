//! The dashboard in a real browser: headless Chromium loads the pages from
//! a running tally (loopback only), the charts are in the rendered DOM, the
//! script ran under the page's Content-Security-Policy, and nothing was
//! written to the console. Screenshots are taken; with
//! `TALLY_UPDATE_SCREENSHOT=1` they also replace `docs/dashboard.png`,
//! `docs/dashboard-30d.png`, `docs/dashboard-page.png` and
//! `docs/dashboard-referrer.png`.
//! Then `/count.js` on a page of another loopback origin, under a strict
//! CSP: the page counted once, its count shown, nothing in the console;
//! and on pages whose HTML tries to take the script over (elements named
//! like what it reads), and whose URL carries a secret in its query: a
//! recorder in front of tally and a stand-in for the attacker's host (a
//! made-up name Chromium resolves to loopback) show what was sent where.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use support::app::{TOKEN, TestApp, sqlite_url};
use support::chromium::{DESKTOP_CHROME, Run, TEST_NAMES_ON_LOOPBACK, element_text, run_chromium};
use tally::domain::breakdown::{Dimension, Facets};
use tally::domain::time::hour_start;

/// Pages of the made-up site and their shares of its hits, in percent;
/// the rest of the hits name no page.
const PAGES: [(&str, u32); 6] = [
    ("/", 30),
    ("/posts/hello-world", 22),
    ("/posts/exact-counts", 14),
    ("/docs/install", 9),
    ("/about", 5),
    ("/tags/rust", 3),
];

/// Made-up readers: per dimension, values and their shares in percent
/// (the rest of each dimension is `(none)` or `(unknown)`).
const READERS: &[(Dimension, &[(&str, u32)])] = &[
    (
        Dimension::Referrer,
        &[
            ("news.ycombinator.com", 22),
            ("www.google.com", 18),
            ("lobste.rs", 9),
            ("www.reddit.com", 7),
            ("duckduckgo.com", 5),
            ("mastodon.social", 4),
            ("github.com", 3),
        ],
    ),
    (
        Dimension::Source,
        &[("newsletter", 12), ("mastodon", 4), ("rss", 3)],
    ),
    (
        Dimension::Browser,
        &[
            ("Chrome", 46),
            ("Safari", 24),
            ("Firefox", 17),
            ("Edge", 8),
            ("Samsung Internet", 3),
        ],
    ),
    (
        Dimension::Os,
        &[
            ("Windows", 31),
            ("macOS", 24),
            ("iOS", 19),
            ("Android", 14),
            ("Linux", 11),
        ],
    ),
    (
        Dimension::Device,
        &[("desktop", 64), ("mobile", 31), ("tablet", 5)],
    ),
    (
        Dimension::Screen,
        &[
            ("laptop", 34),
            ("desktop", 27),
            ("phone", 29),
            ("wide", 6),
            ("tablet", 4),
        ],
    ),
    (
        Dimension::Country,
        &[
            ("US", 31),
            ("DE", 12),
            ("GB", 9),
            ("FR", 6),
            ("IN", 6),
            ("NL", 4),
            ("JP", 3),
        ],
    ),
    (
        Dimension::Language,
        &[("en", 62), ("de", 13), ("fr", 7), ("ja", 3), ("es", 3)],
    ),
];

/// One made-up reader's facets, by the shares of [`READERS`].
fn facets(rng: &mut fastrand::Rng) -> Facets {
    let mut facets = Facets::default();
    for &(dimension, values) in READERS {
        let mut roll = rng.u32(0..100);
        if let Some(value) = values.iter().find_map(|&(value, share)| {
            if roll < share {
                Some(value)
            } else {
                roll -= share;
                None
            }
        }) {
            facets.set(dimension, value);
            if dimension == Dimension::Browser {
                let major = rng.u32(120..126);
                facets.set(Dimension::BrowserVersion, format!("{value} {major}"));
            }
        }
    }
    facets
}

/// A public dashboard with two sites and two months of made-up hours on one,
/// most of them on its pages, from made-up readers.
async fn dashboard() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--dashboard-public"]).await;
    let client = reqwest::Client::new();
    for (slug, name) in [("blog", "My <blog> & notes"), ("docs", "Docs")] {
        let r = client
            .post(app.url("/api/v1/sites"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "slug": slug, "name": name, "count": 1200 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let store = &app.store;
    let blog = store
        .site(&tally::domain::Slug::parse("blog").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    // Busier by day (UTC) and on weekdays, with a seeded wobble.
    let mut rng = fastrand::Rng::with_seed(2026);
    let now = hour_start(SystemTime::now());
    for h in 0..60 * 24u64 {
        let t = now - Duration::from_secs(h * 3600);
        let hours = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() / 3600;
        let from_peak = (hours % 24).abs_diff(15) as i64;
        let weekday = (hours / 24 + 4) % 7 < 5;
        let n = (36 - 3 * from_peak).max(2) * if weekday { 3 } else { 2 } / 2 + rng.i64(0..12);
        let pages: Vec<Option<tally::domain::Page>> = (0..n)
            .map(|_| {
                let mut roll = rng.u32(0..100);
                PAGES.iter().find_map(|&(page, share)| {
                    if roll < share {
                        Some(tally::domain::Page::parse(page, &Default::default()).unwrap())
                    } else {
                        roll -= share;
                        None
                    }
                })
            })
            .collect();
        let facets = pages
            .iter()
            .map(|_| Some(Box::new(facets(&mut rng))))
            .collect();
        let hits = tally::store::SiteHits {
            site: blog,
            keys: vec![None; pages.len()],
            pages,
            facets,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        store
            .add_hits(t, &[hits], tally::store::Limits::pages(10_000), deadline)
            .await
            .unwrap();
    }
    (app, dir)
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The DOM of `app`'s page at `path` once Chromium has run its scripts.
async fn rendered(app: &TestApp, path: &str) -> Run {
    let url = app.url(path);
    tokio::task::spawn_blocking(move || {
        run_chromium(&url, &["--virtual-time-budget=3000", "--dump-dom"])
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_charts_runs_the_script_and_logs_nothing() {
    let (app, _dir) = dashboard().await;

    // The site's periods with their top pages table, and one page's view;
    // a page's link carries a chosen period.
    for (path, bars, rows, link) in [
        ("/dashboard/blog", 48, PAGES.len(), "?page="),
        (
            "/dashboard/blog?view=daily",
            30,
            PAGES.len(),
            "?range=30d&amp;page=",
        ),
        (
            "/dashboard/blog?range=7d",
            7,
            PAGES.len(),
            "?range=7d&amp;page=",
        ),
        ("/dashboard/blog?page=/posts/hello-world", 30, 0, ""),
    ] {
        let run = rendered(&app, path).await;
        let dom = &run.stdout;
        assert!(dom.contains("<svg class=\"chart bars\""), "{path}: {dom}");
        assert!(dom.contains("<svg class=\"chart cumulative\""), "{path}");
        assert_eq!(dom.matches("<g class=\"bar\">").count(), bars, "{path}");
        assert_eq!(dom.matches("<g class=\"point\">").count(), bars, "{path}");
        // The script ran: the CSP let it, and it marked the page.
        assert!(
            dom.contains("<html lang=\"en\" class=\"js\">"),
            "{path}: {dom}"
        );
        assert!(dom.contains("My &lt;blog&gt; &amp; notes"), "{path}");
        assert_eq!(dom.matches("<tr class=\"page\">").count(), rows, "{path}");
        // Where the visits came from, eight panels, on the site's page and
        // on a page's.
        assert_eq!(dom.matches("<table class=\"panel\">").count(), 8, "{path}");
        // Each referrer opens the hits from it.
        assert!(
            dom.contains(
                "&amp;referrer=news.ycombinator.com\">news.ycombinator.com</a>\
                 <svg class=\"share line\""
            ),
            "{path}: {dom}"
        );
        if rows > 0 {
            assert!(dom.contains("<h2>Top pages</h2>"), "{path}");
            assert_eq!(dom.matches("<svg class=\"share\"").count(), rows, "{path}");
            let a = format!(
                "<a href=\"/dashboard/blog{link}/posts/hello-world\">/posts/hello-world</a>"
            );
            assert!(dom.contains(&a), "{path}: {a}");
        } else {
            assert!(
                dom.contains("<h1 class=\"page\">/posts/hello-world<small>blog</small></h1>"),
                "{path}: {dom}"
            );
        }
        assert_eq!(
            run.console,
            Vec::<String>::new(),
            "{path}: console messages"
        );
    }

    // A referrer's page: its days, the pages they came to, and the seven
    // other panels narrowed to its hits.
    let path = "/dashboard/blog?range=30d&referrer=news.ycombinator.com";
    let run = rendered(&app, path).await;
    let dom = &run.stdout;
    assert!(
        dom.contains("<h1>Hits from news.ycombinator.com<small>blog</small></h1>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<g class=\"bar\">").count(), 30);
    assert_eq!(dom.matches("<table class=\"panel\">").count(), 7);
    assert!(dom.contains("<h2>Pages they came to</h2>"), "{dom}");
    assert_eq!(
        run.console,
        Vec::<String>::new(),
        "{path}: console messages"
    );

    let url = app.url("/dashboard");
    let run = tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom"]))
        .await
        .unwrap();
    assert_eq!(run.stdout.matches("<tr class=\"site\">").count(), 3);
    assert_eq!(run.console, Vec::<String>::new());

    // The screenshots in docs/dashboard.md: the site over 48 hours (the
    // charts, the comparison, the date tabs, the top pages and where the
    // visits came from), over 30 days, filtered to one page, and to one
    // referrer.
    let shots = tempfile::tempdir().unwrap();
    for (file, path, height) in [
        ("dashboard.png", "/dashboard/blog", 2450),
        ("dashboard-30d.png", "/dashboard/blog?range=30d", 900),
        (
            "dashboard-page.png",
            "/dashboard/blog?range=30d&page=/posts/hello-world",
            1850,
        ),
        (
            "dashboard-referrer.png",
            "/dashboard/blog?range=30d&referrer=news.ycombinator.com",
            2380,
        ),
    ] {
        let shot = shots.path().join(file);
        let url = app.url(path);
        let arg = format!("--screenshot={}", shot.display());
        let size = format!("--window-size=1200,{height}");
        let run = tokio::task::spawn_blocking(move || {
            run_chromium(&url, &[&arg, &size, "--virtual-time-budget=3000"])
        })
        .await
        .unwrap();
        assert_eq!(run.console, Vec::<String>::new(), "{path}");
        assert_eq!(png_size(&shot), (1200, height), "{path}");
        if std::env::var_os("TALLY_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(file);
            std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
            std::fs::copy(&shot, &docs).unwrap();
        }
    }
    app.stop().await.unwrap();
}

/// The check above means something only if console output is caught: a
/// page that writes to the console must show up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_messages_are_caught() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!doctype html><p>x</p><script>console.error('control message'); nope();</script>",
            )
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, page).await });
    let url = format!("http://{addr}/");
    let run = tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom"]))
        .await
        .unwrap();
    assert_eq!(run.console.len(), 2, "{:?}", run.console);
    assert!(run.console[0].contains("control message"));
    assert!(run.console[1].contains("nope is not defined"));
    server.abort();
}

/// Serves `pages` (path, HTML) under the Content-Security-Policy `csp`
/// on a loopback port of their own: another origin than tally's.
async fn serve_pages(
    pages: Vec<(&'static str, String)>,
    csp: String,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    serve_pages_on(0, pages, csp).await
}

/// [`serve_pages`] on `port` of 127.0.0.1 (0: any free one).
async fn serve_pages_on(
    port: u16,
    pages: Vec<(&'static str, String)>,
    csp: String,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut router = axum::Router::new();
    for (path, html) in pages {
        let csp = csp.clone();
        router = router.route(
            path,
            axum::routing::get(move || async move {
                (
                    [("content-security-policy", csp)],
                    axum::response::Html(html),
                )
            }),
        );
    }
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, server)
}

/// Chromium on `url` as a reader: desktop user agent, the DOM dumped once
/// the page's requests are done.
async fn read_page(url: String) -> Run {
    read_page_with(url, Vec::new()).await
}

/// [`read_page`] with `extra` arguments for Chromium.
async fn read_page_with(url: String, extra: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut args = vec![DESKTOP_CHROME, "--virtual-time-budget=5000", "--dump-dom"];
        args.extend(extra.iter().map(String::as_str));
        run_chromium(&url, &args)
    })
    .await
    .unwrap()
}

/// The snippet on a page of another origin with a strict CSP (no inline
/// script or style, tally the only source of scripts, requests and
/// images), included twice, beside a no-script pixel for another page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snippet_counts_the_page_once_under_a_strict_csp_and_shows_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&serde_json::json!({"slug": "blog"})).await;
    let tally = app.url("");
    let snippet = format!(r#"<script async src="{tally}/count.js" data-site="blog"></script>"#);
    let hello = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hello</title>\
         {snippet}</head><body><h1>Hello</h1>\
         <p>Read <span data-tally-count></span> times.</p>\
         <img src=\"{tally}/count/blog.gif?page=/pixel-page\" alt=\"\">\
         {snippet}</body></html>"
    );
    let other = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Other</title>\
         {snippet}</head><body><p>This page: <span data-tally-count></span>; \
         the site: <span data-tally-count=\"site\"></span>.</p></body></html>"
    );
    let csp =
        format!("default-src 'none'; script-src {tally}; connect-src {tally}; img-src {tally}");
    let (page_addr, server) =
        serve_pages(vec![("/posts/hello", hello), ("/posts/other", other)], csp).await;
    assert_ne!(page_addr, app.addr);

    // The query string is the page's own; the site keeps no parameter, so
    // the hit counts on the path.
    let run = read_page(format!("http://{page_addr}/posts/hello?ref=feed")).await;
    assert_eq!(run.console, Vec::<String>::new(), "console messages");
    assert_eq!(
        element_text(&run.stdout, "<span data-tally-count=\"\">"),
        "1",
        "{}",
        run.stdout
    );
    let page_count = |page: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get_json(&format!("/api/v1/sites/blog/pages/count?page={page}"))
                .await;
            assert_eq!(status, 200, "{body}");
            body["count"].as_i64().unwrap()
        }
    };
    assert_eq!(page_count("/posts/hello").await, 1);
    assert_eq!(page_count("/pixel-page").await, 1);
    assert_eq!(
        app.count("blog").await,
        2,
        "the script's hit and the pixel's"
    );

    // The next page view: its own page counted once, the site's count shown.
    let run = read_page(format!("http://{page_addr}/posts/other")).await;
    assert_eq!(run.console, Vec::<String>::new(), "console messages");
    assert_eq!(
        element_text(&run.stdout, "<span data-tally-count=\"\">"),
        "1"
    );
    assert_eq!(
        element_text(&run.stdout, "<span data-tally-count=\"site\">"),
        "3"
    );
    assert_eq!(page_count("/posts/other").await, 1);
    assert_eq!(page_count("/posts/hello").await, 1);
    assert_eq!(app.count("blog").await, 3);
    server.abort();
    app.stop().await.unwrap();
}

/// The check above means something only if the CSP is enforced and its
/// violations are caught: a page that does not let the script call tally
/// counts nothing and shows the refusal in the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csp_that_refuses_tally_counts_nothing_and_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&serde_json::json!({"slug": "blog"})).await;
    let tally = app.url("");
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Closed</title>\
         <script async src=\"{tally}/count.js\" data-site=\"blog\"></script></head>\
         <body><span data-tally-count></span></body></html>"
    );
    let csp = format!("default-src 'none'; script-src {tally}; connect-src 'none'");
    let (page_addr, server) = serve_pages(vec![("/closed", html)], csp).await;
    let run = read_page(format!("http://{page_addr}/closed")).await;
    assert!(
        run.console
            .iter()
            .any(|l| l.contains("Content Security Policy") && l.contains("connect-src")),
        "{:?}",
        run.console
    );
    assert_eq!(
        element_text(&run.stdout, "<span data-tally-count=\"\">"),
        ""
    );
    assert_eq!(app.count("blog").await, 0);
    server.abort();
    app.stop().await.unwrap();
}

/// One request a [`Recorder`] took, whole.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The path and query.
    uri: String,
    /// The headers, one `name: value` a line.
    headers: String,
    body: String,
}

impl Seen {
    fn contains(&self, needle: &str) -> bool {
        [&self.uri, &self.headers, &self.body]
            .iter()
            .any(|part| part.contains(needle))
    }
}

/// What a [`Recorder`] does with a request once it has kept it.
#[derive(Clone)]
enum Answer {
    /// Sends it on to tally at this base URL, and tally's answer back.
    Forward(String),
    /// Answers as an attacker's host would: CORS open to every origin, an
    /// image for a GET and a made-up count for anything else.
    Attacker,
}

/// The count the attacker's host answers: a page that shows it shows the
/// attacker's number.
const ATTACKER_COUNT: &str = r#"{"site":"x","count":666,"page":"/","page_count":666}"#;

/// A loopback HTTP listener that keeps every request it takes.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(answer: Answer) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let client = reqwest::Client::new();
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (kept, client, answer) = (kept.clone(), client.clone(), answer.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                kept.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                match answer {
                    Answer::Forward(base) => forward(&client, &base, parts, body).await,
                    Answer::Attacker => attacker_answer(&parts.method),
                }
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Recorder { addr, seen, server }
    }

    /// Everything taken so far.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The method and path with query of each request taken, in order.
    fn requests(&self) -> Vec<(String, String)> {
        let seen = self.seen();
        seen.into_iter().map(|s| (s.method, s.uri)).collect()
    }

    /// The bodies of the POSTs to `uri`, in order.
    fn posted(&self, uri: &str) -> Vec<String> {
        let seen = self.seen();
        let posts = seen
            .into_iter()
            .filter(|s| s.method == "POST" && s.uri == uri);
        posts.map(|s| s.body).collect()
    }

    /// Whether `needle` is in any request's path, headers or body.
    fn ever_saw(&self, needle: &str) -> bool {
        self.seen().iter().any(|s| s.contains(needle))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `parts` and `body` sent on to tally at `base`, and tally's answer.
async fn forward(
    client: &reqwest::Client,
    base: &str,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let mut headers = parts.headers;
    for hop in ["host", "connection", "content-length"] {
        headers.remove(hop);
    }
    let reply = client
        .request(parts.method, format!("{base}{}", parts.uri))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let mut headers = reply.headers().clone();
    for hop in ["connection", "content-length", "transfer-encoding"] {
        headers.remove(hop);
    }
    let mut response =
        axum::response::Response::new(axum::body::Body::from(reply.bytes().await.unwrap()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn attacker_answer(method: &axum::http::Method) -> axum::response::Response {
    use axum::response::IntoResponse;
    let open = ("access-control-allow-origin", "*");
    match method.as_str() {
        "OPTIONS" => (
            axum::http::StatusCode::NO_CONTENT,
            [
                open,
                ("access-control-allow-methods", "POST"),
                ("access-control-allow-headers", "content-type"),
            ],
        )
            .into_response(),
        "GET" => (
            [open, ("content-type", "image/svg+xml")],
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>"#,
        )
            .into_response(),
        _ => ([open, ("content-type", "application/json")], ATTACKER_COUNT).into_response(),
    }
}

/// The secret a page's URL carries, which only the page may see.
const SECRET: &str = "SECRET123";

/// Where the script posts its hits on the site `blog`.
const BLOG_HITS: &str = "/api/v1/sites/blog/hits";

/// A page titled `title`: `body` (elements, script tags), then the places
/// for its counts.
fn counted_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head><body>{body}\
         <p>This page: <span data-tally-count></span>; \
         the site: <span data-tally-count=\"site\"></span>.</p></body></html>"
    )
}

/// The tag that counts on `blog` from the tally at `tally`, with `more`
/// attributes.
fn script_tag(tally: &str, more: &str) -> String {
    format!(r#"<script async src="{tally}/count.js" data-site="blog"{more}></script>"#)
}

/// tally behind a recorder, and pages on another loopback origin.
struct Recorded {
    app: TestApp,
    _dir: tempfile::TempDir,
    /// In front of tally: the pages' tally.
    tally: Recorder,
    page_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

/// tally with the site `site`, behind a recorder, and `html` (path, HTML)
/// served from another loopback origin under a strict CSP that also
/// names `more` sources for images and requests.
async fn recorded_pages(
    site: serde_json::Value,
    html: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    more: &str,
) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&site).await;
    let recorder = Recorder::start(Answer::Forward(app.url(""))).await;
    let tally = format!("http://{}", recorder.addr);
    let csp = format!(
        "default-src 'none'; script-src {tally}; connect-src {tally} {more}; img-src {more}"
    );
    let (page_addr, server) = serve_pages(html(&tally), csp).await;
    Recorded {
        app,
        _dir: dir,
        tally: recorder,
        page_addr,
        server,
    }
}

/// [`recorded_pages`] for the site `blog` and one page at `path`, `body`
/// of tally's URL, under a CSP that names `more` too.
async fn one_blog_page(
    path: &'static str,
    more: &str,
    body: impl FnOnce(&str) -> String,
) -> Recorded {
    let site = serde_json::json!({"slug": "blog"});
    let page = |tally: &str| vec![(path, counted_page(path, &body(tally)))];
    recorded_pages(site, page, more).await
}

impl Recorded {
    /// What the sites API lists for `blog`: each page and its count, sorted.
    async fn counted_pages(&self) -> Vec<(String, i64)> {
        let (status, body) = self.app.get_json("/api/v1/sites/blog/pages").await;
        assert_eq!(status, 200, "{body}");
        let mut pages: Vec<(String, i64)> = body["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let page = p["page"].as_str().unwrap().to_owned();
                (page, p["count"].as_i64().unwrap())
            })
            .collect();
        pages.sort();
        pages
    }

    /// After the one view `run` of the page at `page`: the script posted
    /// exactly `page`, and nothing tally got held the secret; tally counted
    /// the page once and `blog` has that one hit; the page shows both
    /// counts, 1, and logged nothing. Then everything stops.
    async fn counted_once(self, run: &Run, page: &str) {
        // Headless Chromium's screen is 800 CSS pixels wide; a page opened
        // directly has no referrer to send.
        let body = serde_json::json!({ "page": page, "screen": 800 }).to_string();
        let tally = &self.tally;
        assert_eq!(tally.posted(BLOG_HITS), [body], "{:#?}", tally.seen());
        assert!(!tally.ever_saw(SECRET), "{:#?}", tally.seen());
        let shown = |open| element_text(&run.stdout, open);
        assert_eq!(shown("<span data-tally-count=\"\">"), "1", "{}", run.stdout);
        assert_eq!(shown("<span data-tally-count=\"site\">"), "1");
        assert_eq!(self.counted_pages().await, [(page.to_owned(), 1)]);
        assert_eq!(self.app.count("blog").await, 1);
        assert_eq!(run.console, Vec::<String>::new(), "console messages");
        self.stop().await;
    }

    async fn stop(self) {
        self.server.abort();
        self.app.stop().await.unwrap();
    }
}

/// The finding: an image named `currentScript` with a `data-site`, before
/// the script tag, made `document.currentScript` the image; the script
/// posted the page and its query to the image's host and showed that
/// host's number. Now the image's own GET is all the attacker's host
/// gets, tally counts the page by its path, and the secret in the page's
/// query goes nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_named_current_script_cannot_send_the_hit_elsewhere() {
    let attacker = Recorder::start(Answer::Attacker).await;
    let evil = format!("http://evil.test:{}", attacker.addr.port());
    let img = format!(r#"<img name="currentScript" src="{evil}/a.png" data-site="x" alt="">"#);
    let recorded = one_blog_page("/welcome", &evil, |tally| {
        format!("{img}{}", script_tag(tally, ""))
    })
    .await;
    let resolve = format!("--host-resolver-rules=MAP evil.test {}", attacker.addr.ip());
    let url = format!("http://{}/welcome?reset_token={SECRET}", recorded.page_addr);
    let run = read_page_with(url, vec![resolve]).await;

    // The image's request reached the stand-in, so a hit sent there would
    // have too; nothing else did.
    assert_eq!(
        attacker.requests(),
        [("GET".to_owned(), "/a.png".to_owned())],
        "{:#?}",
        attacker.seen()
    );
    assert!(!attacker.ever_saw(SECRET), "{:#?}", attacker.seen());
    recorded.counted_once(&run, "/welcome").await;
}

/// Elements whose ids and names are what the script reads, or would keep
/// its "counted" mark under (`window.__tally`), or globals it calls: the
/// page is counted once all the same, and its counts shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_named_like_the_script_s_globals_cannot_switch_counting_off() {
    let recorded = one_blog_page("/clobbered", "", |tally| {
        format!(
            "<a id=\"__tally\"></a><form name=\"currentScript\"></form>\
             <form name=\"querySelectorAll\"></form><img name=\"readyState\" alt=\"\">\
             <img name=\"location\" alt=\"\"><a id=\"Symbol\"></a><a id=\"fetch\"></a>{}",
            script_tag(tally, "")
        )
    })
    .await;
    let run = read_page(format!("http://{}/clobbered", recorded.page_addr)).await;
    recorded.counted_once(&run, "/clobbered").await;
}

/// The script twice on a page (two URLs, so both are loaded and run) that
/// also holds elements named `__tally`: one hit, no more and no less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_included_twice_counts_once_whatever_the_page_names() {
    let recorded = one_blog_page("/twice", "", |tally| {
        format!(
            "<a id=\"__tally\"></a><form name=\"__tally\"></form>{}\
             <script src=\"{tally}/count.js?v=2\" data-site=\"blog\"></script>",
            script_tag(tally, "")
        )
    })
    .await;
    let run = read_page(format!("http://{}/twice?from=feed", recorded.page_addr)).await;
    let mut scripts = recorded.tally.requests();
    scripts.retain(|(method, _)| method == "GET");
    scripts.sort();
    let get = |uri: &str| ("GET".to_owned(), uri.to_owned());
    assert_eq!(scripts, [get("/count.js"), get("/count.js?v=2")]);
    recorded.counted_once(&run, "/twice").await;
}

/// The script sends the page's path and, of its query, only what the tag's
/// `data-params` names, in the URL's order; tally then keeps what the
/// site keeps. The secret in the query never leaves the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_sends_only_the_query_parameters_its_tag_names() {
    let recorded = recorded_pages(
        serde_json::json!({"slug": "blog", "keep_params": ["lang"]}),
        |tally| {
            let tag = |params| script_tag(tally, &format!(r#" data-params="{params}""#));
            vec![
                ("/doc", counted_page("Doc", &tag("lang"))),
                ("/guide", counted_page("Guide", &tag("lang, ref"))),
            ]
        },
        "",
    )
    .await;
    let (tally, page_addr) = (&recorded.tally, recorded.page_addr);

    let run = read_page(format!(
        "http://{page_addr}/doc?lang=en&reset_token={SECRET}"
    ))
    .await;
    assert_eq!(
        tally.posted(BLOG_HITS),
        [r#"{"page":"/doc?lang=en","screen":800}"#],
        "{:#?}",
        tally.seen()
    );
    assert_eq!(
        element_text(&run.stdout, "<span data-tally-count=\"\">"),
        "1",
        "{}",
        run.stdout
    );
    assert_eq!(run.console, Vec::<String>::new(), "console messages");

    // Two names, a comma and a space between them: both sent, in the URL's
    // order, with the campaign's parameters; tally keeps the one the site
    // keeps.
    let run = read_page(format!(
        "http://{page_addr}/guide?ref=feed&utm_source=x&reset_token={SECRET}&lang=de"
    ))
    .await;
    assert_eq!(
        tally.posted(BLOG_HITS),
        [
            r#"{"page":"/doc?lang=en","screen":800}"#,
            r#"{"page":"/guide?ref=feed&utm_source=x&lang=de","screen":800}"#
        ],
        "{:#?}",
        tally.seen()
    );
    assert!(!tally.ever_saw(SECRET), "{:#?}", tally.seen());
    assert_eq!(run.console, Vec::<String>::new(), "console messages");
    assert_eq!(
        recorded.counted_pages().await,
        [
            ("/doc?lang=en".to_owned(), 1),
            ("/guide?lang=de".to_owned(), 1)
        ]
    );
    assert_eq!(recorded.app.count("blog").await, 2);
    recorded.stop().await;
}

/// A reader on a page of one site (`news.test`) follows its link to a page
/// of another (`blog.test`) that counts with `count.js`: the blog's
/// referrer breakdown names the first site, and its screen breakdown the
/// class of the browser's screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_link_is_counted_under_its_referrer_and_the_screen_class() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&serde_json::json!({"slug": "blog"})).await;
    let tally = app.url("");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    // The link is followed as a click would follow it, once the page is
    // loaded.
    let from = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>News</title></head><body>\
         <a id=\"go\" href=\"http://blog.test:{port}/post\">a post</a>\
         <script>addEventListener(\"load\", () => document.getElementById(\"go\").click());</script>\
         </body></html>"
    );
    // The post shows the screen's width as the page reads it.
    let post = counted_page(
        "Post",
        &format!(
            "<span id=\"width\"></span>\
             <script>document.getElementById(\"width\").textContent = screen.width;</script>{}",
            script_tag(&tally, "")
        ),
    );
    let (addr, server) = serve_pages_on(
        port,
        vec![("/from", from), ("/post", post)],
        format!("default-src 'none'; script-src 'unsafe-inline' {tally}; connect-src {tally}"),
    )
    .await;
    assert_eq!(addr.port(), port);
    let url = format!("http://news.test:{port}/from");
    let run = tokio::task::spawn_blocking(move || {
        run_chromium(
            &url,
            &[
                DESKTOP_CHROME,
                TEST_NAMES_ON_LOOPBACK,
                "--virtual-time-budget=5000",
                "--dump-dom",
            ],
        )
    })
    .await
    .unwrap();
    assert!(run.stdout.contains("<title>Post</title>"), "{}", run.stdout);
    let breakdown = async |dimension: &str| {
        let (status, body) = app
            .get_json(&format!("/api/v1/sites/blog/breakdown/{dimension}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["values"].clone()
    };
    assert_eq!(app.count("blog").await, 1);
    assert_eq!(
        breakdown("referrer").await,
        serde_json::json!([{"value": "news.test", "hits": 1}])
    );
    // The class docs/breakdowns.md gives that width.
    let width: u32 = element_text(&run.stdout, "<span id=\"width\">")
        .parse()
        .unwrap();
    let class = match width {
        0..600 => "phone",
        600..1024 => "tablet",
        1024..1440 => "laptop",
        1440..2560 => "desktop",
        _ => "wide",
    };
    assert_eq!(
        breakdown("screen").await,
        serde_json::json!([{"value": class, "hits": 1}])
    );
    assert_eq!(
        breakdown("browser").await,
        serde_json::json!([{"value": "Chrome", "hits": 1}])
    );
    assert_eq!(run.console, Vec::<String>::new(), "console messages");
    server.abort();
    app.stop().await.unwrap();
}
