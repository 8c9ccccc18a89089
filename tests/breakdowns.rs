//! Breakdowns: every counted hit counts once under each dimension, for its
//! site and its page, exactly, on both backends; a retried request counts
//! its breakdowns once; a site keeps a bounded number of values; bad
//! referrers and screens are refused and count nothing; countries come
//! from a database the operator provides.

mod support;

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, sqlite_url};
use support::load;
use support::pg::PgServer;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

const DIMENSIONS: [&str; 11] = [
    "referrer",
    "source",
    "medium",
    "campaign",
    "browser",
    "browser_version",
    "os",
    "device",
    "country",
    "screen",
    "language",
];

/// One kind of hit the tests send: its body and headers.
#[derive(Clone, Copy)]
struct Kind {
    agent: &'static str,
    body: &'static str,
    referer: Option<&'static str>,
    language: Option<&'static str>,
}

const FROM_HN: Kind = Kind {
    agent: FIREFOX_LINUX,
    body: r#"{"page": "/a?utm_source=hn&utm_medium=social&utm_campaign=launch",
              "referrer": "https://news.ycombinator.com/item?id=1", "screen": 1280}"#,
    referer: None,
    language: Some("en-US,en;q=0.9"),
};
const FROM_LOBSTERS: Kind = Kind {
    agent: SAFARI_IPHONE,
    body: r#"{"page": "/b", "referrer": "https://lobste.rs/s/x", "screen": 390}"#,
    referer: None,
    language: Some("de-DE,de;q=0.8"),
};
/// A reader moving between the site's own pages: no referral.
const FROM_ITSELF: Kind = Kind {
    agent: CHROME_WINDOWS,
    body: r#"{"page": "/a", "referrer": "https://blog.example/other"}"#,
    referer: None,
    language: None,
};
/// No page, no referrer in the body: the `Referer` header says it.
const BY_HEADER: Kind = Kind {
    agent: CHROME_WINDOWS,
    body: r#"{"screen": 1920}"#,
    referer: Some("https://duckduckgo.com/"),
    language: Some("fr"),
};

/// Sends one hit of `kind` on `slug` through the app's socket, with request
/// id `id` (the app trusts 127.0.0.1 as its proxy); answers the status.
async fn send(app: &TestApp, slug: &str, kind: Kind, id: &str) -> StatusCode {
    let mut request = load::client()
        .post(app.url(&format!("/api/v1/sites/{slug}/hits")))
        .header("content-type", "application/json")
        .header("origin", "https://blog.example")
        .header("user-agent", kind.agent)
        .header("x-request-id", id)
        .header("x-forwarded-for", "203.0.113.9")
        .body(kind.body);
    if let Some(referer) = kind.referer {
        request = request.header("referer", referer);
    }
    if let Some(language) = kind.language {
        request = request.header("accept-language", language);
    }
    request.send().await.unwrap().status()
}

/// The values the API lists at `path` (a breakdown), checking that the
/// answer names `field` as `named`.
async fn listed(app: &TestApp, path: &str, (field, named): (&str, &str)) -> Vec<(String, i64)> {
    let (status, body) = app.get_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(body[field], named, "{path}: {body}");
    body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["hits"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `dimension`'s values for `slug` (and `page`), as the API answers them.
async fn values(
    app: &TestApp,
    slug: &str,
    dimension: &str,
    page: Option<&str>,
) -> Vec<(String, i64)> {
    let path = match page {
        Some(page) => format!("/api/v1/sites/{slug}/breakdown/{dimension}?page={page}"),
        None => format!("/api/v1/sites/{slug}/breakdown/{dimension}"),
    };
    listed(app, &path, ("dimension", dimension)).await
}

/// `dimension`'s values for `slug`'s hits from `referrer`, as the API
/// answers them.
async fn from_referrer(
    app: &TestApp,
    slug: &str,
    dimension: &str,
    referrer: &str,
) -> Vec<(String, i64)> {
    let encoded: String = url::form_urlencoded::byte_serialize(referrer.as_bytes()).collect();
    let path = format!("/api/v1/sites/{slug}/breakdown/{dimension}?referrer={encoded}");
    listed(app, &path, ("referrer", referrer)).await
}

/// A referrer, a dimension, and the values of its hits.
type FromReferrer = (&'static str, &'static str, Vec<(String, i64)>);

/// The mix's hits from each referrer (`(none)`: the 3 from the site
/// itself) under the dimensions a referrer's hits differ by, written from
/// the documented rules.
fn expected_from_referrers() -> Vec<FromReferrer> {
    vec![
        ("news.ycombinator.com", "browser", expect(&[("Firefox", 6)])),
        ("news.ycombinator.com", "source", expect(&[("hn", 6)])),
        ("news.ycombinator.com", "screen", expect(&[("laptop", 6)])),
        (
            "news.ycombinator.com",
            "referrer",
            expect(&[("news.ycombinator.com", 6)]),
        ),
        ("lobste.rs", "os", expect(&[("iOS", 4)])),
        ("lobste.rs", "device", expect(&[("mobile", 4)])),
        ("lobste.rs", "language", expect(&[("de", 4)])),
        (
            "duckduckgo.com",
            "browser_version",
            expect(&[("Chrome 124", 2)]),
        ),
        ("duckduckgo.com", "screen", expect(&[("desktop", 2)])),
        ("(none)", "browser", expect(&[("Chrome", 3)])),
        ("(none)", "language", expect(&[("(unknown)", 3)])),
        ("(none)", "source", expect(&[("(none)", 3)])),
        ("(none)", "referrer", expect(&[("(none)", 3)])),
        ("example.org", "browser", expect(&[])),
    ]
}

/// Every dimension but the referrer's, for each referrer of the mix (and
/// none), adds up to its hits.
async fn referrers_add_up(app: &TestApp, slug: &str) {
    for (referrer, dimension, expected) in expected_from_referrers() {
        assert_eq!(
            from_referrer(app, slug, dimension, referrer).await,
            expected,
            "{referrer} {dimension}"
        );
    }
    for (referrer, hits) in [
        ("news.ycombinator.com", 6),
        ("lobste.rs", 4),
        ("duckduckgo.com", 2),
        ("(none)", 3),
    ] {
        for dimension in DIMENSIONS {
            let sum: i64 = from_referrer(app, slug, dimension, referrer)
                .await
                .iter()
                .map(|(_, n)| n)
                .sum();
            assert_eq!(sum, hits, "{referrer} {dimension}");
        }
    }
}

fn expect(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect()
}

/// What the tests send, by kind: 6 from HN, 4 from Lobsters, 3 from the
/// site itself, 2 with only a `Referer` header: 15 hits.
const MIX: [(Kind, usize); 4] = [
    (FROM_HN, 6),
    (FROM_LOBSTERS, 4),
    (FROM_ITSELF, 3),
    (BY_HEADER, 2),
];

/// The breakdowns the mix gives, written from the documented rules.
fn expected_site() -> BTreeMap<&'static str, Vec<(String, i64)>> {
    BTreeMap::from([
        (
            "referrer",
            expect(&[
                ("news.ycombinator.com", 6),
                ("(none)", 3),
                ("lobste.rs", 4),
                ("duckduckgo.com", 2),
            ]),
        ),
        ("source", expect(&[("(none)", 9), ("hn", 6)])),
        ("medium", expect(&[("(none)", 9), ("social", 6)])),
        ("campaign", expect(&[("(none)", 9), ("launch", 6)])),
        (
            "browser",
            expect(&[("Firefox", 6), ("Chrome", 5), ("Safari", 4)]),
        ),
        (
            "browser_version",
            expect(&[("Firefox 125", 6), ("Chrome 124", 5), ("Safari 17", 4)]),
        ),
        ("os", expect(&[("Linux", 6), ("Windows", 5), ("iOS", 4)])),
        ("device", expect(&[("desktop", 11), ("mobile", 4)])),
        ("country", expect(&[("(unknown)", 15)])),
        (
            "screen",
            expect(&[
                ("laptop", 6),
                ("phone", 4),
                ("(unknown)", 3),
                ("desktop", 2),
            ]),
        ),
        (
            "language",
            expect(&[("en", 6), ("de", 4), ("(unknown)", 3), ("fr", 2)]),
        ),
    ])
}

/// Sorted as the API sorts: most hits first, then by value (bytewise).
fn ranked(mut values: Vec<(String, i64)>) -> Vec<(String, i64)> {
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values
}

async fn concurrent_hits_count_exactly(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--trusted-proxies", "127.0.0.1/32"]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let app = &app;
    let mut sends = Vec::new();
    let mut n = 0;
    for (kind, times) in MIX {
        for _ in 0..times {
            n += 1;
            let id = format!("hit-{n}");
            sends.push(async move { send(app, "blog", kind, &id).await });
        }
    }
    let statuses = futures::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    // Retries of three of them (a proxy's second try): counted once.
    for (kind, id) in [
        (FROM_HN, "hit-1"),
        (FROM_LOBSTERS, "hit-7"),
        (BY_HEADER, "hit-14"),
    ] {
        assert_eq!(send(app, "blog", kind, id).await, StatusCode::OK);
    }
    assert_eq!(app.count("blog").await, 15);

    for (dimension, expected) in expected_site() {
        let got = values(app, "blog", dimension, None).await;
        assert_eq!(got, ranked(expected), "{dimension}");
        assert_eq!(got.iter().map(|(_, n)| n).sum::<i64>(), 15, "{dimension}");
    }
    // Per page: /a has the 6 from HN and the 3 from the site; /b the 4.
    assert_eq!(
        values(app, "blog", "referrer", Some("/a")).await,
        expect(&[("news.ycombinator.com", 6), ("(none)", 3)])
    );
    assert_eq!(
        values(app, "blog", "campaign", Some("/a")).await,
        expect(&[("launch", 6), ("(none)", 3)])
    );
    assert_eq!(
        values(app, "blog", "browser", Some("/b")).await,
        expect(&[("Safari", 4)])
    );
    // The page's name dropped the campaign's parameters.
    let (_, pages) = app.get_json("/api/v1/sites/blog/pages").await;
    let names: Vec<&str> = pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["page"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/a", "/b"]);
    for dimension in DIMENSIONS {
        let a: i64 = values(app, "blog", dimension, Some("/a"))
            .await
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(a, 9, "{dimension}");
    }
    // Per referrer, the retries counted once there too.
    referrers_add_up(app, "blog").await;
    // A slice's next link keeps the referrer.
    let (_, body) = app
        .get_json("/api/v1/sites/blog/breakdown/language?referrer=%28none%29&limit=1")
        .await;
    assert_eq!(body["values"], json!([{"value": "(unknown)", "hits": 3}]));
    assert_eq!(body["next"], Value::Null);
    let (_, body) = app
        .get_json("/api/v1/sites/blog/breakdown/device?referrer=(none)&limit=0")
        .await;
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    // A page and a referrer, or a referrer no breakdown could list: 400.
    for query in [
        "page=/a&referrer=lobste.rs",
        "referrer=%20lobste.rs",
        "referrer=",
    ] {
        let path = format!("/api/v1/sites/blog/breakdown/browser?{query}");
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hits_count_exactly_per_dimension_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_hits_count_exactly(&sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hits_count_exactly_per_dimension_on_postgres() {
    let pg = PgServer::start();
    concurrent_hits_count_exactly(&pg.create_database()).await;
}

/// Hits from referrers `hosts`, in order, one at a time.
async fn referred(app: &TestApp, slug: &str, hosts: &[&str]) {
    for (i, host) in hosts.iter().enumerate() {
        let body = if host.is_empty() {
            "{}".to_owned()
        } else {
            format!(r#"{{"referrer": "https://{host}/"}}"#)
        };
        let status = load::client()
            .post(app.url(&format!("/api/v1/sites/{slug}/hits")))
            .header("content-type", "application/json")
            .header("x-request-id", format!("{slug}-{i}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
}

async fn a_site_keeps_at_most_its_limit_of_values(database_url: &str) {
    let app = TestApp::spawn(database_url, &["--breakdown-limit", "2"]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    // a and b take the room; c, d and the second c are past it; a hit with
    // no referrer takes none.
    referred(
        &app,
        "blog",
        &[
            "a.test", "b.test", "c.test", "", "a.test", "d.test", "c.test",
        ],
    )
    .await;
    assert_eq!(
        values(&app, "blog", "referrer", None).await,
        expect(&[("(other)", 3), ("a.test", 2), ("(none)", 1), ("b.test", 1)])
    );
    // The referrers past the room are (other) in their own rows too.
    for (referrer, hits) in [("(other)", 3), ("a.test", 2), ("(none)", 1), ("c.test", 0)] {
        let expected = if hits > 0 {
            expect(&[("(unknown)", hits)])
        } else {
            expect(&[])
        };
        assert_eq!(
            from_referrer(&app, "blog", "browser", referrer).await,
            expected,
            "{referrer}"
        );
    }
    // Another site has room of its own.
    app.create_site(&json!({"slug": "docs"})).await;
    referred(&app, "docs", &["c.test"]).await;
    assert_eq!(
        values(&app, "docs", "referrer", None).await,
        expect(&[("c.test", 1)])
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_site_keeps_at_most_its_limit_of_values_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_site_keeps_at_most_its_limit_of_values(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn a_site_keeps_at_most_its_limit_of_values_on_postgres() {
    let pg = PgServer::start();
    a_site_keeps_at_most_its_limit_of_values(&pg.create_database()).await;
}

#[tokio::test]
async fn with_breakdowns_off_hits_count_and_nothing_is_broken_down() {
    let app = TestApp::sqlite(&["--breakdowns", "false"]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    referred(&app, "blog", &["a.test", ""]).await;
    assert_eq!(app.count("blog").await, 2);
    for dimension in DIMENSIONS {
        assert_eq!(
            values(&app, "blog", dimension, None).await,
            [],
            "{dimension}"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_referrer_or_screen_is_refused_and_counts_nothing() {
    let app = TestApp::sqlite(&[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let post = |body: &'static str| {
        load::client()
            .post(app.url("/api/v1/sites/blog/hits"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let long = format!(r#"{{"referrer": "https://a.test/{}"}}"#, "x".repeat(2048));
    let long: &'static str = Box::leak(long.into_boxed_str());
    for (body, message) in [
        (
            r#"{"referrer": "news.ycombinator.com"}"#,
            "referrer: a referrer is an absolute URL with a host (https://example.com/page)",
        ),
        (
            r#"{"referrer": "mailto:a@b.test"}"#,
            "referrer: a referrer is an absolute URL with a host (https://example.com/page)",
        ),
        (long, "referrer: a referrer is at most 2048 bytes"),
        (
            r#"{"screen": 0}"#,
            "screen: screen is a width in CSS pixels, from 1 to 100000",
        ),
        (
            r#"{"screen": 100001}"#,
            "screen: screen is a width in CSS pixels, from 1 to 100000",
        ),
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_body", "{body}");
        assert_eq!(error["error"]["message"], message, "{body}");
    }
    for query in [
        "ref=news.ycombinator.com",
        "screen=wide",
        "screen=0",
        "screen=-1",
    ] {
        let response = load::client()
            .get(app.url(&format!("/count/blog.gif?page=/a&{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_query", "{query}");
    }
    assert_eq!(app.count("blog").await, 0);
    for dimension in DIMENSIONS {
        assert_eq!(
            values(&app, "blog", dimension, None).await,
            [],
            "{dimension}"
        );
    }
    // The pixel's own parameters, form-encoded, count.
    let response = load::client()
        .get(app.url(
            "/count/blog.gif?page=/a&ref=https%3A%2F%2Fnews.ycombinator.com%2Fitem&screen=2560",
        ))
        .header("user-agent", FIREFOX_LINUX)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        values(&app, "blog", "referrer", Some("/a")).await,
        expect(&[("news.ycombinator.com", 1)])
    );
    assert_eq!(
        values(&app, "blog", "screen", None).await,
        expect(&[("wide", 1)])
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_private_sites_breakdowns_need_the_token_or_a_session() {
    let app = TestApp::sqlite(&[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let get = |path: &'static str, token: Option<&'static str>| {
        let mut request = load::client().get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let path = "/api/v1/sites/blog/breakdown/referrer";
    assert_eq!(
        get(path, None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(path, Some(TOKEN)).await.unwrap().status(),
        StatusCode::OK
    );
    let (status, _) = app
        .admin(
            reqwest::Method::PATCH,
            "/api/v1/sites/blog",
            Some(r#"{"public": true}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(path, None).await.unwrap().status(), StatusCode::OK);
    // An unknown dimension, site or page is a clear error.
    let response = get("/api/v1/sites/blog/breakdown/colour", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "no dimension \"colour\": one of referrer, source, medium, campaign, browser, \
         browser_version, os, device, country, screen, language"
    );
    assert_eq!(
        get("/api/v1/sites/nope/breakdown/referrer", Some(TOKEN))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(
            "/api/v1/sites/blog/breakdown/referrer?page=no-slash",
            Some(TOKEN)
        )
        .await
        .unwrap()
        .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get("/api/v1/sites/blog/breakdown/referrer?limit=0", Some(TOKEN))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn slices_follow_one_another_and_csv_names_the_dimension() {
    let app = TestApp::sqlite(&[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    referred(
        &app,
        "blog",
        &["a.test", "a.test", "a.test", "b.test", "b.test", "c.test"],
    )
    .await;
    let (status, first) = app
        .get_json("/api/v1/sites/blog/breakdown/referrer?limit=2&from=2020-01-01")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        first["values"],
        json!([{"value": "a.test", "hits": 3}, {"value": "b.test", "hits": 2}])
    );
    let next = first["next"].as_str().unwrap();
    assert!(next.ends_with("&limit=2&offset=2"), "{next}");
    let (_, second) = app.get_json(next).await;
    assert_eq!(second["values"], json!([{"value": "c.test", "hits": 1}]));
    assert_eq!(second["next"], Value::Null);
    let csv = load::client()
        .get(app.url("/api/v1/sites/blog/breakdown/referrer?format=csv"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "referrer,hits\na.test,3\nb.test,2\nc.test,1\n");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn countries_come_from_the_operators_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = countries_file(dir.path());
    let app = TestApp::sqlite(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--geoip-db",
        db.to_str().unwrap(),
    ])
    .await;
    app.create_site(&json!({"slug": "blog"})).await;
    for (i, from) in [
        "203.0.113.9",
        "2001:db8:7::1",
        "198.51.100.1",
        "203.0.113.77",
    ]
    .into_iter()
    .enumerate()
    {
        let status = load::client()
            .post(app.url("/api/v1/sites/blog/hits"))
            .header("x-forwarded-for", from)
            .header("x-request-id", format!("c-{i}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        values(&app, "blog", "country", None).await,
        expect(&[("NZ", 2), ("(unknown)", 1), ("DE", 1)])
    );
    app.stop().await.unwrap();
}

/// A country database of the test's own (never downloaded): two networks
/// laid out as GeoLite2 Country lays out a record.
fn countries_file(dir: &std::path::Path) -> std::path::PathBuf {
    #[derive(serde::Serialize)]
    struct Country {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Record {
        country: Country,
    }
    let mut writer = mmdb_writer::Writer::new("GeoLite2-Country");
    for (net, iso_code) in [("203.0.113.0/24", "NZ"), ("2001:db8:7::/48", "DE")] {
        let net: ipnet::IpNet = net.parse().unwrap();
        writer
            .insert(
                net,
                &Record {
                    country: Country { iso_code },
                },
            )
            .unwrap();
    }
    let path = dir.join("countries.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    path
}

/// The export's sites, as `GET /api/v1/export` writes them.
async fn exported_sites(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/api/v1/export").await;
    assert_eq!(status, 200, "{body}");
    body["sites"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_imports_into_an_empty_tally_with_the_same_breakdowns() {
    let dir = tempfile::tempdir().unwrap();
    let source = TestApp::spawn(
        &sqlite_url(dir.path()),
        &["--trusted-proxies", "127.0.0.1/32"],
    )
    .await;
    source.create_site(&json!({"slug": "blog"})).await;
    let mut n = 0;
    for (kind, times) in MIX {
        for _ in 0..times {
            n += 1;
            assert_eq!(
                send(&source, "blog", kind, &format!("e-{n}")).await,
                StatusCode::OK
            );
        }
    }
    let sites = exported_sites(&source).await;
    // The default site first, then the blog.
    assert_eq!(sites[1]["slug"], "blog");
    let rows = sites[1]["breakdowns"].as_array().unwrap();
    // 11 dimensions on the site, and on /a and /b.
    let site_rows: i64 = rows
        .iter()
        .filter(|r| r.get("page").is_none() && r.get("referrer").is_none())
        .map(|r| r["hits"].as_i64().unwrap())
        .sum();
    assert_eq!(site_rows, 15 * 11);
    // The 12 hits from a referrer, under the 10 other dimensions.
    let referred: i64 = rows
        .iter()
        .filter(|r| r.get("referrer").is_some())
        .map(|r| r["hits"].as_i64().unwrap())
        .sum();
    assert_eq!(referred, 12 * 10);
    let document = json!({"exported_at": "2026-12-01T00:00:00Z", "sites": sites}).to_string();

    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    for url in [pg.create_database(), sqlite_url(dir.path())] {
        let target = TestApp::spawn(&url, &[]).await;
        let (status, body) = target
            .admin(
                reqwest::Method::POST,
                "/api/v1/import?hours=replay",
                Some(&document),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The blog as it was exported (the default site is the target's own).
        assert_eq!(exported_sites(&target).await[1], sites[1], "{url}");
        for (dimension, expected) in expected_site() {
            assert_eq!(
                values(&target, "blog", dimension, None).await,
                ranked(expected),
                "{dimension}"
            );
        }
        referrers_add_up(&target, "blog").await;
        // Imported again, the rows replace the site's: the same again.
        let (status, _) = target
            .admin(
                reqwest::Method::POST,
                "/api/v1/import?hours=replay",
                Some(&document),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // The blog as it was exported (the default site is the target's own).
        assert_eq!(exported_sites(&target).await[1], sites[1], "{url}");
        target.stop().await.unwrap();
    }
    source.stop().await.unwrap();
}

#[tokio::test]
async fn bad_breakdown_rows_are_refused_and_nothing_is_imported() {
    let app = TestApp::sqlite(&[]).await;
    let site = |rows: Value| {
        json!({"sites": [{"slug": "blog", "count": 1, "base_count": 0,
            "hourly": [{"t": "2026-11-23T01:00:00Z", "hits": 1}],
            "pages": [{"page": "/a", "count": 1, "daily": []}],
            "breakdowns": rows}]})
        .to_string()
    };
    let row = |d: &str, dimension: &str, value: &str, page: Option<&str>| {
        let mut r = json!({"d": d, "dimension": dimension, "value": value, "hits": 1});
        if let Some(page) = page {
            r["page"] = json!(page);
        }
        r
    };
    let from = |mut r: Value, referrer: &str| {
        r["referrer"] = json!(referrer);
        r
    };
    for (rows, message) in [
        (
            json!([row("2026-11-23", "colour", "red", None)]),
            "sites[0].breakdowns[0].dimension: no dimension \"colour\"",
        ),
        (
            json!([row("2026-11-23", "referrer", " padded", None)]),
            "sites[0].breakdowns[0].value: \" padded\" is not a value a breakdown keeps",
        ),
        (
            json!([row("2026-11-23", "referrer", "a.test", Some("/b"))]),
            "site \"blog\": a breakdown names page \"/b\", which is not in its pages",
        ),
        (
            json!([
                row("2026-11-23", "referrer", "a.test", None),
                row("2026-11-23", "referrer", "a.test", None)
            ]),
            "site \"blog\": the breakdown row referrer \"a.test\" of the site on 2026-11-23 is given twice",
        ),
        (
            json!([row("9999-01-01", "referrer", "a.test", None)]),
            "sites[0].breakdowns[0].d:",
        ),
        (
            json!([from(
                row("2026-11-23", "browser", "Firefox", None),
                "(none)"
            )]),
            "sites[0].breakdowns[0].referrer: \"(none)\" is not a referrer a breakdown keeps",
        ),
        (
            json!([from(
                row("2026-11-23", "referrer", "a.test", None),
                "a.test"
            )]),
            "sites[0].breakdowns[0].referrer: a referrer's row counts another dimension",
        ),
        (
            json!([from(
                row("2026-11-23", "browser", "Firefox", Some("/a")),
                "a.test"
            )]),
            "sites[0].breakdowns[0].referrer: a row is a page's or a referrer's, not both",
        ),
        (
            json!([
                from(row("2026-11-23", "browser", "Firefox", None), "a.test"),
                from(row("2026-11-23", "browser", "Firefox", None), "a.test")
            ]),
            "site \"blog\": the breakdown row browser \"Firefox\" of referrer \"a.test\" on 2026-11-23 is given twice",
        ),
    ] {
        let (status, body) = app
            .admin(
                reqwest::Method::POST,
                "/api/v1/import?hours=replay",
                Some(&site(rows)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let got = body["error"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{got}");
    }
    let (_, sites) = app.admin(reqwest::Method::GET, "/api/v1/sites", None).await;
    assert_eq!(
        sites["sites"],
        json!([{"slug": "default"}])
            .as_array()
            .map(|_| sites["sites"].clone())
            .unwrap()
    );
    let (status, _) = app
        .admin(reqwest::Method::GET, "/api/v1/sites/blog", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}
