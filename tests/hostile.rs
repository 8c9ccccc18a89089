//! Clients that lie about who they are, reuse another's request id, probe
//! with HEAD or read without end: each gets what an honest client gets,
//! and no more. Proxies in front are real NGINX processes, configured as
//! careless operators configure them.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use support::app::{TOKEN, TestApp, call, parse_greeting, sqlite_url};
use support::load;
use support::nginx::Nginx;

const GREETING_1: &str = "Hello Linode!  This page has been viewed 1 time(s).";

/// A client whose requests leave from `source` (any 127.0.0.0/8 address).
/// Seconds since the minute began, as the limiters' windows count them.
fn seconds_into_the_minute() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_secs() % 60) as f64 + f64::from(now.subsec_millis()) / 1000.0
}

fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// One GET with extra headers: the status and the body.
async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn statuses(list: &[u16]) -> BTreeMap<u16, usize> {
    let mut by = BTreeMap::new();
    for s in list {
        *by.entry(*s).or_default() += 1;
    }
    by
}

async fn uniques_today(app: &TestApp) -> Value {
    let (status, body) = get(
        &load::client(),
        &app.url("/api/v1/sites/default/uniques?days=1"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["days"][0]["uniques"].clone()
}

#[tokio::test]
async fn head_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let (status, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, GREETING_1));

    for _ in 0..3 {
        let (status, headers, body) = call(&r, Method::HEAD, "/", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        // What GET would answer now, without counting: its length, no body.
        assert_eq!(
            headers["content-length"],
            GREETING_1.len().to_string().as_str()
        );
        assert_eq!(body, "");
    }
    let (status, headers, body) = call(&r, Method::HEAD, "/resetcounter", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "GET");
    let (status, _, _) = call(&r, Method::HEAD, "/badge/default.svg", None, None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parse_greeting(&body), Some(2), "only the two GETs counted");
}

/// `total` hits on `url` from eight workers, each naming another address
/// in `X-Real-IP` (`10.x.y.z`, unique per hit): their statuses.
async fn spoofed_hits(url: &str, total: u32) -> Vec<u16> {
    let client = load::client();
    let mut tasks = Vec::new();
    for worker in 0..8u32 {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..total / 8 + u32::from(worker < total % 8) {
                let n = worker * 1000 + i;
                let spoof = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                got.push(
                    get(
                        &client,
                        &url,
                        &[("x-real-ip", &spoof), ("user-agent", "one")],
                    )
                    .await
                    .0,
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Seconds since the epoch, and the minute window (as the limiter numbers
/// them) that holds them.
fn minute_now() -> (f64, u64) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (since.as_secs_f64(), since.as_secs() / 60)
}

/// A same-host NGINX that passes the client's own `X-Real-IP` through (it
/// sets only X-Forwarded-For): 1 500 hits, each naming another address,
/// are one client, limited at 600, and one unique visitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_pick_its_address_through_a_same_host_proxy() {
    const HITS: u32 = 1500;
    const FORWARD: &str = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;";
    // The pace of the same hits, in the same mix of counted and limited
    // (two in five admitted), on an instance of their own.
    let pace = {
        const PROBE: u32 = 200;
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::spawn(&sqlite_url(dir.path()), &["--rate-limit", "80"]).await;
        let proxy = Nginx::proxy(app.addr, FORWARD);
        let started = std::time::Instant::now();
        let probe = spoofed_hits(&proxy.url("/"), PROBE).await;
        let took = started.elapsed();
        assert_eq!(probe.len(), PROBE as usize);
        drop(proxy);
        app.stop().await.unwrap();
        took / PROBE
    };
    // The limit's windows are the clock's minutes: all the hits go into
    // one, with twice the room they took at the probe's pace.
    let room = pace * HITS * 2 + std::time::Duration::from_secs(1);
    assert!(
        room < std::time::Duration::from_secs(55),
        "{HITS} hits at {pace:?} each need {room:?}: more than a minute window holds"
    );
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--rate-limit", "600"]).await;
    let proxy = Nginx::proxy(app.addr, FORWARD);
    let (now, _) = minute_now();
    let left = 60.0 - now % 60.0;
    if left < room.as_secs_f64() {
        tokio::time::sleep(std::time::Duration::from_secs_f64(left + 0.05)).await;
    }
    let (_, first) = minute_now();
    let all = spoofed_hits(&proxy.url("/"), HITS).await;
    let (_, last) = minute_now();
    assert_eq!(
        first, last,
        "the hits crossed a minute boundary: {room:?} was not enough room at {pace:?} a hit"
    );
    assert_eq!(all.len(), HITS as usize);
    assert_eq!(
        statuses(&all),
        BTreeMap::from([(200, 600), (429, 900)]),
        "{}",
        proxy.error_log()
    );
    assert_eq!(uniques_today(&app).await, 1);
}

/// With only the proxy trusted, and its X-Real-IP believed because it sets
/// it: two clients behind it each send forged X-Forwarded-For hops and a
/// forged X-Real-IP, and each is limited as itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_names_the_first_untrusted_hop() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(
        &sqlite_url(dir.path()),
        &[
            "--rate-limit",
            "50",
            "--trusted-proxies",
            "127.0.0.1/32",
            "--real-ip-from",
            "127.0.0.1/32",
        ],
    )
    .await;
    let proxy = Nginx::proxy(
        app.addr,
        "proxy_set_header X-Real-IP $remote_addr;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    );
    load::away_from_a_minute_boundary().await;
    let mut per_source = BTreeMap::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let client = client_from(source);
        let mut got = Vec::new();
        for i in 0..80 {
            let forged = format!("198.51.100.{i}, 10.0.0.{i}");
            got.push(
                get(
                    &client,
                    &proxy.url("/"),
                    &[
                        ("x-forwarded-for", &forged),
                        ("x-real-ip", "192.0.2.1"),
                        ("user-agent", "one"),
                    ],
                )
                .await
                .0,
            );
        }
        per_source.insert(source, statuses(&got));
    }
    let each = BTreeMap::from([(200, 50), (429, 30)]);
    assert_eq!(
        per_source,
        BTreeMap::from([("127.0.0.2", each.clone()), ("127.0.0.3", each)])
    );
    assert_eq!(uniques_today(&app).await, 2);
}

/// IPv6 clients share a limit per /64: hits from 40 addresses of one /64
/// are limited as one client; another /64 is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_limited_per_64() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--rate-limit", "10"]).await;
    load::away_from_a_minute_boundary().await;
    let client = load::client();
    let mut got = Vec::new();
    for i in 1..=40 {
        let addr = format!("2001:db8:0:7::{i:x}");
        got.push(
            get(&client, &app.url("/"), &[("x-forwarded-for", &addr)])
                .await
                .0,
        );
    }
    assert_eq!(statuses(&got), BTreeMap::from([(200, 10), (429, 30)]));
    let other = get(
        &client,
        &app.url("/"),
        &[("x-forwarded-for", "2001:db8:0:8::1")],
    )
    .await;
    assert_eq!(other.0, 200);
}

/// Behind a proxy that passes clients' own `X-Request-Id` on, two clients
/// sending one id are both counted; a retry by the same client is counted
/// once; ids from clients that reach tally directly are not used; and a
/// reset forgets every recorded id.
async fn request_ids_are_scoped_and_forgotten_by_a_reset(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--trusted-proxies", "127.0.0.1/32"]).await;
    let proxy = Nginx::proxy(
        app.addr,
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    );
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let count = async |client: &reqwest::Client, url: String, id: &str| {
        let (status, body) = get(client, &url, &[("x-request-id", id)]).await;
        assert_eq!(status, 200, "{body}");
        parse_greeting(&body).unwrap()
    };
    // Straight to tally, not through the proxy: the id is the client's own.
    assert_eq!(count(&a, app.url("/"), "direct").await, 1);
    assert_eq!(count(&a, app.url("/"), "direct").await, 2);
    // Through the proxy.
    assert_eq!(count(&a, proxy.url("/"), "shared").await, 3);
    assert_eq!(
        count(&b, proxy.url("/"), "shared").await,
        4,
        "another client's id"
    );
    assert_eq!(
        count(&a, proxy.url("/"), "shared").await,
        3,
        "a retry: its first count"
    );

    let reset = load::client()
        .get(app.url("/resetcounter"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(
        count(&a, proxy.url("/"), "shared").await,
        1,
        "a reset forgets ids"
    );
    assert_eq!(count(&a, proxy.url("/"), "shared").await, 1);
    assert_eq!(count(&b, proxy.url("/"), "shared").await, 2);
}

with_both_databases!(request_ids_are_scoped_and_forgotten_by_a_reset);

/// Reads have a per-client limit of their own: past it, 429
/// `read_rate_limited` with `Retry-After`; other clients and hits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_have_a_per_client_limit_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--read-rate-limit", "40"]).await;
    load::away_from_a_minute_boundary().await;
    let greedy = client_from("127.0.0.2");
    let mut got = Vec::new();
    let mut refusal = None;
    for _ in 0..50 {
        let sent = seconds_into_the_minute();
        let response = greedy
            .get(app.url("/api/v1/sites/default/series"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let answered = seconds_into_the_minute();
        got.push(response.status().as_u16());
        if response.status() == 429 && refusal.is_none() {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body: Value = response.json().await.unwrap();
            refusal = Some((body["error"]["code"].clone(), retry_after, sent, answered));
        }
    }
    assert_eq!(statuses(&got), BTreeMap::from([(200, 40), (429, 10)]));
    let (code, retry_after, sent, answered) = refusal.unwrap();
    assert_eq!(code, "read_rate_limited");
    // All 40 reads are in this minute's window: the next read fits once
    // this window is over and 1 of its 40 has slid out of the next, 60/40
    // = 1.5 s into it. Rounded up, from the moment the limiter looked
    // (between sending and the answer, within one minute).
    assert!(
        sent <= answered,
        "the refusal straddled a minute: {sent} {answered}"
    );
    let earliest = (61.5 - answered).ceil() as u64;
    let latest = (61.5 - sent).ceil() as u64;
    assert!(
        (earliest..=latest).contains(&retry_after),
        "Retry-After {retry_after}, not in {earliest}..={latest}"
    );
    // Counting is not a read; another client reads.
    let hit = greedy
        .post(app.url("/api/v1/sites/default/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(hit.status(), 200);
    let other = get(
        &client_from("127.0.0.3"),
        &app.url("/api/v1/sites/default/count"),
        &[],
    )
    .await;
    assert_eq!(other.0, 200, "{}", other.1);
    let metrics = get(&load::client(), &app.url("/metrics"), &[]).await.1;
    assert!(
        metrics.contains("\ntally_read_rate_limited_total 10\n"),
        "{metrics}"
    );
}

/// A site named like a spreadsheet formula exports as text: its CSV cell
/// starts with `'`, in the export and nowhere run.
#[tokio::test]
async fn csv_exports_neutralise_formulas_in_site_names() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    for (slug, name) in [
        ("f1", "=1+2"),
        ("f2", "@SUM(A1)"),
        ("f3", "-2+3,x"),
        ("f4", "plain"),
    ] {
        let body = serde_json::json!({ "slug": slug, "name": name }).to_string();
        let (status, _, text) =
            call(&r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }
    let (status, _, csv) = call(
        &r,
        Method::GET,
        "/api/v1/export?format=csv",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<&str> = csv.lines().filter(|l| l.starts_with('f')).collect();
    assert_eq!(
        rows,
        [
            "f1,'=1+2,0,,0",
            "f2,'@SUM(A1),0,,0",
            "f3,\"'-2+3,x\",0,,0",
            "f4,plain,0,,0"
        ]
    );
}

/// `/api/v1/openapi.json` is served, and every operation it names is a
/// route of the router (answered, never with the router's own 404 or 405).
#[tokio::test]
async fn the_openapi_document_names_only_routes_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let (status, headers, text) = call(&r, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let (status, _, body) = call(
                &r,
                method.clone(),
                &path
                    .replace("{slug}", "default")
                    .replace("{dimension}", "referrer"),
                None,
                None,
            )
            .await;
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .map(|b| b["error"]["code"].clone());
            assert!(
                code != Some(Value::from("not_found"))
                    && code != Some(Value::from("method_not_allowed")),
                "{method} {path}: {status} {body}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 17);
}
