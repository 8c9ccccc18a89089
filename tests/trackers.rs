//! Other counters' real trackers, as their authors publish them on the npm
//! registry (installed by `tests/trackers/install`, which `scripts/test`
//! runs), in headless Chromium, pointed at tally: a reader on a page of one
//! made-up site (`news.test`) follows its link to a page of another
//! (`blog.test`) that runs the tracker, then opens a second page of it
//! directly. tally counts exactly those two views, on their pages, one
//! from `news.test` and one from nowhere, with the class of the width the
//! tracker read. A relay in front of tally keeps every request the tracker
//! sent and tally's answer, and the pages' Content-Security-Policy lets
//! them reach nothing but the relay.
//!
//! - Plausible: `plausible-tracker` (its script's events with the screen's
//!   width) and `@plausible-analytics/tracker` (the current package,
//!   which sends no width), both to `POST /api/event`.
//! - Umami: the tracker inside the `umami` package, to `POST /api/send`.

mod support;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::app::{TestApp, sqlite_url};
use support::chromium::{DESKTOP_CHROME, Run, TEST_NAMES_ON_LOOPBACK, run_chromium};

/// Where `tests/trackers/install` puts the trackers.
fn trackers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trackers")
}

/// The installed file `relative` under `tests/trackers`, or a panic that
/// says how to install it.
fn installed(relative: &str) -> PathBuf {
    let path = trackers().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: tests/trackers/install (which scripts/test runs) installs \
         the trackers from the npm registry",
        path.display()
    );
    path
}

/// The Umami package whose tracker the install keeps.
const UMAMI: &str = "vendor/umami-2.10.0";

/// The browser's window: its width is what Plausible's script sends.
const WINDOW: &str = "--window-size=1280,900";

/// The browser's language, which Umami's tracker sends.
const LANGUAGE: &str = "--lang=en-US";

/// One request a tracker sent, as the relay took it, and tally's answer.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    /// The path and query.
    uri: String,
    content_type: String,
    /// The headers a preflight asked for (`Access-Control-Request-Headers`).
    asked_headers: String,
    body: String,
    status: u16,
    answer: String,
}

/// A loopback listener that keeps every request and sends it on to tally.
struct Relay {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<Sent>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(tally: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let kept = sent.clone();
        let client = reqwest::Client::new();
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (kept, client, tally) = (kept.clone(), client.clone(), tally.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let header = |name: &str| {
                    parts
                        .headers
                        .get(name)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default()
                };
                let mut headers = parts.headers.clone();
                for hop in ["host", "connection", "content-length"] {
                    headers.remove(hop);
                }
                let reply = client
                    .request(parts.method.clone(), format!("{tally}{}", parts.uri))
                    .headers(headers)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = reply.status();
                let mut answer_headers = reply.headers().clone();
                for hop in ["connection", "content-length", "transfer-encoding"] {
                    answer_headers.remove(hop);
                }
                let answer = reply.bytes().await.unwrap();
                kept.lock().unwrap().push(Sent {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    content_type: header("content-type"),
                    asked_headers: header("access-control-request-headers"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: status.as_u16(),
                    answer: String::from_utf8_lossy(&answer).into_owned(),
                });
                let mut response = axum::response::Response::new(axum::body::Body::from(answer));
                *response.status_mut() = status;
                *response.headers_mut() = answer_headers;
                response
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Relay { addr, sent, server }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the trackers sent so far, preflights too.
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// The JSON bodies of the POSTs, in order, each with tally's status;
    /// the same list for any other request fails.
    fn posted(&self) -> Vec<(u16, Value)> {
        let sent = self.sent();
        sent.iter()
            .filter(|s| s.method != "OPTIONS")
            .map(|s| {
                assert_eq!(s.method, "POST", "{sent:#?}");
                let body = serde_json::from_str(&s.body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {sent:#?}"));
                (s.status, body)
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The content type of a file the sites serve.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A file of the installed trackers at `/js/<path under tests/trackers>`.
/// A path without an extension is the `.js` file of that name: the
/// package's own modules import each other so (`./lib/tracker`), as a
/// bundler resolves them.
fn tracker_file(path: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let relative = Path::new(path);
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        && (path.starts_with("node_modules/") || path.starts_with("vendor/"));
    if !inside {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let mut file = trackers().join(relative);
    if file.extension().is_none() {
        file.set_extension("js");
    }
    match std::fs::read(&file) {
        Ok(bytes) => ([("content-type", content_type(&file))], bytes).into_response(),
        Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `pages` (path, HTML) on 127.0.0.1:`port` for every host name
/// (`news.test` and `blog.test` both resolve to it), the installed trackers
/// under `/js/`, and every answer under a CSP that lets the pages run
/// their own and inline scripts and send requests to `relay` only.
async fn serve_sites(
    port: u16,
    pages: Vec<(&'static str, String)>,
    relay: &str,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut router =
        axum::Router::new().route(
            "/js/{*path}",
            axum::routing::get(
                |axum::extract::Path(path): axum::extract::Path<String>| async move {
                    tracker_file(&path)
                },
            ),
        );
    for (path, html) in pages {
        router = router.route(
            path,
            axum::routing::get(move || async move { axum::response::Html(html) }),
        );
    }
    let csp = format!("default-src 'none'; script-src 'self' 'unsafe-inline'; connect-src {relay}");
    let router = router.layer(axum::middleware::map_response(
        move |mut response: axum::response::Response| {
            let csp = csp.clone();
            async move {
                response
                    .headers_mut()
                    .insert("content-security-policy", csp.parse().unwrap());
                response
            }
        },
    ));
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    })
}

/// A free port on 127.0.0.1 for the made-up sites: it is in their pages'
/// links, so it is chosen before they are written.
async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A page of the blog titled `title` that runs `tracker` (tags for the
/// head).
fn blog_page(title: &str, tracker: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title>{tracker}</head><body><h1>{title}</h1></body></html>"
    )
}

/// The news page: a link to the blog's post at `port`, followed as a
/// click would follow it once the page is loaded.
fn news_page(port: u16) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>News</title>\
         </head><body><a id=\"go\" href=\"http://blog.test:{port}/posts/hello\">a post</a>\
         <script>addEventListener(\"load\", () => document.getElementById(\"go\").click());\
         </script></body></html>"
    )
}

/// Chromium as a reader, with a 1280-pixel wide window, on `url` (on one
/// of the `.test` sites); the DOM once the page's requests are done.
async fn read(url: String) -> Run {
    tokio::task::spawn_blocking(move || {
        run_chromium(
            &url,
            &[
                DESKTOP_CHROME,
                TEST_NAMES_ON_LOOPBACK,
                WINDOW,
                LANGUAGE,
                "--virtual-time-budget=5000",
                "--dump-dom",
            ],
        )
    })
    .await
    .unwrap()
}

/// tally with the site `slug`, a relay in front of it, and the blog's two
/// pages (`/posts/hello` and `/about`, each running `tracker(relay)`) and
/// the news page served on one port.
struct Trackers {
    app: TestApp,
    _dir: tempfile::TempDir,
    relay: Relay,
    port: u16,
    sites: tokio::task::JoinHandle<()>,
}

impl Trackers {
    async fn start(slug: &str, tracker: impl Fn(&str) -> String) -> Trackers {
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
        app.create_site(&json!({ "slug": slug })).await;
        let relay = Relay::start(app.url("")).await;
        let port = free_port().await;
        let tag = tracker(&relay.url());
        let pages = vec![
            ("/from", news_page(port)),
            ("/posts/hello", blog_page("Hello", &tag)),
            ("/about", blog_page("About", &tag)),
        ];
        let sites = serve_sites(port, pages, &relay.url()).await;
        Trackers {
            app,
            _dir: dir,
            relay,
            port,
            sites,
        }
    }

    /// The two views: the news page's link to the post followed, then the
    /// about page opened directly. Each ends on the blog's page, and
    /// nothing was written to the console.
    async fn read_both(&self) {
        let port = self.port;
        for (url, title) in [
            (format!("http://news.test:{port}/from"), "Hello"),
            (format!("http://blog.test:{port}/about"), "About"),
        ] {
            let run = read(url.clone()).await;
            assert!(
                run.stdout.contains(&format!("<title>{title}</title>")),
                "{url}: {}",
                run.stdout
            );
            assert_eq!(
                run.console,
                Vec::<String>::new(),
                "{url}: console messages; the trackers sent {:#?}",
                self.relay.sent()
            );
        }
    }

    /// What tally's API says of `slug` after the two views: its count, its
    /// pages, and its referrer and screen breakdowns.
    async fn counted(&self, slug: &str) -> (i64, Value, Value, Value) {
        let app = &self.app;
        let (status, body) = app.get_json(&format!("/api/v1/sites/{slug}/pages")).await;
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
        let breakdown = async |dimension: &str| {
            let (status, body) = app
                .get_json(&format!("/api/v1/sites/{slug}/breakdown/{dimension}"))
                .await;
            assert_eq!(status, 200, "{body}");
            let mut values = body["values"].as_array().unwrap().clone();
            values.sort_by_key(|v| v["value"].as_str().unwrap().to_owned());
            Value::Array(values)
        };
        (
            app.count(slug).await,
            json!(pages),
            breakdown("referrer").await,
            breakdown("screen").await,
        )
    }

    async fn stop(self) {
        self.sites.abort();
        self.app.stop().await.unwrap();
    }
}

/// Plausible's events as its trackers send them (`text/plain`, to
/// `/api/event`), and tally's answer to each: `202 ok` to a page view and
/// to an engagement (kept nowhere), `400 invalid_body` to any other event
/// (docs/peers.md: tally counts page views only).
fn plausible_answers(relay: &Relay) {
    let sent = relay.sent();
    for s in sent.iter().filter(|s| s.method == "POST") {
        let event: Value = serde_json::from_str(&s.body).unwrap();
        let expected = if event["n"] == "pageview" || event["n"] == "engagement" {
            (202, "ok")
        } else {
            (400, "invalid_body")
        };
        // An error's code, or the answer as it is.
        let answer = serde_json::from_str::<Value>(&s.answer)
            .ok()
            .and_then(|a| a["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| s.answer.clone());
        assert_eq!(
            (
                s.uri.as_str(),
                s.content_type.as_str(),
                s.status,
                answer.as_str()
            ),
            ("/api/event", "text/plain", expected.0, expected.1),
            "{sent:#?}"
        );
    }
}

/// `plausible-tracker`, the package's ES module loaded as it is, its
/// automatic page views on: each view is one `pageview` with the page's
/// address, the site, the referrer and the window's width, and tally
/// counts them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plausible_tracker_counts_each_view_with_its_referrer_and_screen() {
    installed("node_modules/plausible-tracker/build/module/index.js");
    let trackers = Trackers::start("blog.test", |relay| {
        format!(
            "<script type=\"module\">\
             import Plausible from \"/js/node_modules/plausible-tracker/build/module/index.js\";\
             Plausible({{ domain: \"blog.test\", apiHost: \"{relay}\" }}).enableAutoPageviews();\
             </script>"
        )
    })
    .await;
    trackers.read_both().await;

    let port = trackers.port;
    let posted = trackers.relay.posted();
    assert_eq!(
        posted,
        [
            (
                202,
                json!({"n": "pageview", "u": format!("http://blog.test:{port}/posts/hello"),
                       "d": "blog.test", "r": format!("http://news.test:{port}/"),
                       "w": 1280, "h": 0})
            ),
            (
                202,
                json!({"n": "pageview", "u": format!("http://blog.test:{port}/about"),
                       "d": "blog.test", "r": null, "w": 1280, "h": 0})
            ),
        ],
        "{:#?}",
        trackers.relay.sent()
    );
    plausible_answers(&trackers.relay);

    let (count, pages, referrers, screens) = trackers.counted("blog.test").await;
    assert_eq!(count, 2);
    assert_eq!(pages, json!([["/about", 1], ["/posts/hello", 1]]));
    assert_eq!(
        referrers,
        json!([{"value": "(none)", "hits": 1}, {"value": "news.test", "hits": 1}])
    );
    // 1280 CSS pixels: a laptop's (docs/breakdowns.md).
    assert_eq!(screens, json!([{"value": "laptop", "hits": 2}]));
    trackers.stop().await;
}

/// `@plausible-analytics/tracker`, the package's ES module loaded as it
/// is: each view is one `pageview` with the page's address, the site and
/// the referrer, and tally counts them so. This tracker sends no width,
/// so the screen is `(unknown)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plausible_s_current_package_counts_each_view_with_its_referrer() {
    installed("node_modules/@plausible-analytics/tracker/plausible.js");
    let trackers = Trackers::start("blog.test", |relay| {
        format!(
            "<script type=\"module\">\
             import {{ init }} from \"/js/node_modules/@plausible-analytics/tracker/plausible.js\";\
             init({{ domain: \"blog.test\", endpoint: \"{relay}/api/event\" }});\
             </script>"
        )
    })
    .await;
    trackers.read_both().await;

    let port = trackers.port;
    let (views, others): (Vec<_>, Vec<_>) = trackers
        .relay
        .posted()
        .into_iter()
        .partition(|(_, event)| event["n"] == "pageview");
    assert_eq!(
        views,
        [
            (
                202,
                json!({"n": "pageview", "v": 36,
                       "u": format!("http://blog.test:{port}/posts/hello"),
                       "d": "blog.test", "r": format!("http://news.test:{port}/")})
            ),
            (
                202,
                json!({"n": "pageview", "v": 36, "u": format!("http://blog.test:{port}/about"),
                       "d": "blog.test", "r": null})
            ),
        ],
        "{:#?}",
        trackers.relay.sent()
    );
    // Its other events are `engagement`s (the time on a page and how far
    // it was scrolled, sent as a page is left or closed: here once a page,
    // as Chromium closes it): answered as Plausible does, not counted.
    let viewed = [
        format!("http://blog.test:{port}/posts/hello"),
        format!("http://blog.test:{port}/about"),
    ];
    for (_, event) in &others {
        assert_eq!(event["n"], "engagement", "{others:#?}");
        assert_eq!(event["d"], "blog.test", "{others:#?}");
        assert!(
            viewed.iter().any(|page| event["u"] == page.as_str()),
            "{others:#?}"
        );
    }
    plausible_answers(&trackers.relay);

    let (count, pages, referrers, screens) = trackers.counted("blog.test").await;
    assert_eq!(count, 2);
    assert_eq!(pages, json!([["/about", 1], ["/posts/hello", 1]]));
    assert_eq!(
        referrers,
        json!([{"value": "(none)", "hits": 1}, {"value": "news.test", "hits": 1}])
    );
    assert_eq!(screens, json!([{"value": "(unknown)", "hits": 2}]));
    trackers.stop().await;
}

/// Umami's site: a website id, as Umami names its sites.
const UMAMI_SITE: &str = "0b6d1f4e-7a3c-4e58-9d21-6c8f3a5b2e17";

/// Umami's tracker from the `umami` package, loaded by its tag with the
/// website id and tally as its host: each view is one event with the
/// page's path, the referrer and the screen, after a preflight tally
/// allows, and tally counts them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn umami_s_tracker_counts_each_view_with_its_referrer_and_screen() {
    let script = format!("{UMAMI}/src/tracker/index.js");
    installed(&script);
    let trackers = Trackers::start(UMAMI_SITE, |relay| {
        format!(
            "<script defer src=\"/js/{script}\" data-website-id=\"{UMAMI_SITE}\" \
             data-host-url=\"{relay}\"></script>"
        )
    })
    .await;
    trackers.read_both().await;

    let port = trackers.port;
    let sent = trackers.relay.sent();
    let event = |url: &str, title: &str, referrer: String| {
        json!({"type": "event", "payload": {
            "website": UMAMI_SITE, "hostname": "blog.test", "screen": "800x600",
            "language": "en-US", "title": title, "url": url, "referrer": referrer}})
    };
    assert_eq!(
        trackers.relay.posted(),
        [
            (
                200,
                event("/posts/hello", "Hello", format!("http://news.test:{port}/"))
            ),
            (200, event("/about", "About", String::new())),
        ],
        "{sent:#?}"
    );
    for s in &sent {
        let expected = if s.method == "OPTIONS" {
            ("content-type", 204, "")
        } else {
            ("", 200, "{}")
        };
        assert_eq!(
            (
                s.uri.as_str(),
                (s.asked_headers.as_str(), s.status, s.answer.as_str())
            ),
            ("/api/send", expected),
            "{sent:#?}"
        );
    }

    let (count, pages, referrers, screens) = trackers.counted(UMAMI_SITE).await;
    assert_eq!(count, 2);
    assert_eq!(pages, json!([["/about", 1], ["/posts/hello", 1]]));
    assert_eq!(
        referrers,
        json!([{"value": "(none)", "hits": 1}, {"value": "news.test", "hits": 1}])
    );
    // Headless Chromium's screen is 800 CSS pixels wide: a tablet's.
    assert_eq!(screens, json!([{"value": "tablet", "hits": 2}]));
    trackers.stop().await;
}

/// A single-page app's later views: Umami's tracker sends each
/// `history.pushState` as a view, with `x-umami-cache` (what the last
/// answer said, which the preflight must allow or Chromium sends nothing)
/// and the page before it, by its path, as the referrer (a move within
/// the site); every one counts, with no referrer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn umami_s_tracker_counts_a_single_page_app_s_later_views() {
    let script = format!("{UMAMI}/src/tracker/index.js");
    installed(&script);
    let trackers = Trackers::start(UMAMI_SITE, |relay| {
        format!(
            "<script defer src=\"/js/{script}\" data-website-id=\"{UMAMI_SITE}\" \
             data-host-url=\"{relay}\"></script>\
             <script>addEventListener(\"load\", () => \
             setTimeout(() => history.pushState({{}}, \"\", \"/next\"), 500));</script>"
        )
    })
    .await;
    trackers.read_both().await;

    let sent = trackers.relay.sent();
    let posted = trackers.relay.posted();
    assert_eq!(posted.len(), 4, "{sent:#?}");
    assert!(posted.iter().all(|(status, _)| *status == 200), "{sent:#?}");
    let referrers: Vec<&Value> = posted
        .iter()
        .map(|(_, p)| &p["payload"]["referrer"])
        .collect();
    assert_eq!(
        referrers,
        [
            &json!(format!("http://news.test:{}/", trackers.port)),
            &json!("/posts/hello"),
            &json!(""),
            &json!("/about")
        ]
    );
    let (count, pages, referrers, _) = trackers.counted(UMAMI_SITE).await;
    assert_eq!(count, 4);
    assert_eq!(
        pages,
        json!([["/about", 1], ["/next", 2], ["/posts/hello", 1]])
    );
    assert_eq!(
        referrers,
        json!([{"value": "(none)", "hits": 3}, {"value": "news.test", "hits": 1}])
    );
    trackers.stop().await;
}
