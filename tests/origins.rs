//! A site's settings: the origins whose pages may count hits on it and the
//! query parameters its page names keep. Set on creation or by `PATCH`,
//! checked (a bad one is a 400 that writes nothing), enforced on the JSON
//! hit, the pixel and the counting badge on SQLite and PostgreSQL, and
//! seen by a second instance sharing the PostgreSQL database within the
//! five seconds a replica trusts what it read.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, listed_counts, sqlite_url};
use support::load;
use support::pg::PgServer;

/// One request: the status and the body (JSON, or `null` for an image).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /api/v1/sites/{slug}/hits` with `{"page": page}` and `headers`.
async fn hit(base: &str, slug: &str, page: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = load::client()
        .post(format!("{base}/api/v1/sites/{slug}/hits"))
        .json(&json!({ "page": page }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// `GET {path}` (a pixel or a badge) with `headers`: the status and, for
/// an error, its code.
async fn image(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = load::client().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, body) = send(request).await;
    (status, body["error"]["code"].clone())
}

/// An admin request with a JSON body.
async fn admin(method: reqwest::Method, url: String, body: &Value) -> (u16, Value) {
    send(
        load::client()
            .request(method, url)
            .bearer_auth(TOKEN)
            .json(body),
    )
    .await
}

async fn create(app: &TestApp, body: &Value) -> (u16, Value) {
    admin(reqwest::Method::POST, app.url("/api/v1/sites"), body).await
}

async fn patch(app: &TestApp, slug: &str, body: &Value) -> (u16, Value) {
    let url = app.url(&format!("/api/v1/sites/{slug}"));
    admin(reqwest::Method::PATCH, url, body).await
}

/// The site's JSON, without its creation time.
async fn site(app: &TestApp, slug: &str) -> (u16, Value) {
    let request = load::client()
        .get(app.url(&format!("/api/v1/sites/{slug}")))
        .bearer_auth(TOKEN);
    let (status, mut body) = send(request).await;
    if let Some(site) = body.as_object_mut() {
        site.remove("created_at");
    }
    (status, body)
}

/// The site's pages as `{page: count}`.
async fn pages(app: &TestApp, slug: &str) -> BTreeMap<String, i64> {
    let (status, body) = app
        .get_json(&format!("/api/v1/sites/{slug}/pages?limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    listed_counts(&body["pages"], "page").into_iter().collect()
}

fn counts(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(p, n)| (p.to_string(), *n)).collect()
}

const EVIL_ORIGIN: (&str, &str) = ("origin", "http://evil.test");
const EVIL_REFERER: (&str, &str) = ("referer", "http://evil.test/page");

/// With `origins: ["allowed.test"]`, pages elsewhere count nothing through
/// any counting route; the allowed host on any port, and requests naming
/// no page, count; a cleared list lets every page count.
async fn other_sites_cannot_count(app: &TestApp) {
    let base = app.url("");
    let (status, body) = create(app, &json!({"slug": "blog", "origins": ["allowed.test"]})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["origins"], &body["keep_params"], &body["pages"]),
        (&json!(["allowed.test"]), &json!([]), &json!(0))
    );

    let (status, body) = hit(&base, "blog", "/x", &[EVIL_ORIGIN]).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": {"code": "origin_not_allowed",
                "message": "this site does not count hits from pages on evil.test"}})
        )
    );
    // The Origin is what is checked when there is one.
    let (status, body) = hit(
        &base,
        "blog",
        "/x",
        &[EVIL_ORIGIN, ("referer", "http://allowed.test/")],
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("origin_not_allowed"))
    );
    let refused = (403, json!("origin_not_allowed"));
    assert_eq!(
        image(&base, "/count/blog.gif?page=/x", &[EVIL_REFERER]).await,
        refused
    );
    assert_eq!(
        image(&base, "/badge/blog.svg", &[EVIL_REFERER]).await,
        refused
    );
    assert_eq!(
        image(&base, "/badge/blog.svg?page=/x", &[EVIL_REFERER]).await,
        refused
    );
    // A sandboxed page's `Origin: null` is no allowed host either.
    let (status, _) = hit(&base, "blog", "/x", &[("origin", "null")]).await;
    assert_eq!(status, 403);
    assert_eq!(app.count("blog").await, 0);
    assert_eq!(pages(app, "blog").await, BTreeMap::new());
    // Reading is not counting: a read-only badge is drawn for anyone.
    assert_eq!(
        image(&base, "/badge/blog.svg?readonly=1", &[EVIL_REFERER]).await,
        (200, Value::Null)
    );

    let (status, body) = hit(
        &base,
        "blog",
        "/x",
        &[("origin", "http://allowed.test:8080")],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"site": "blog", "count": 1, "page": "/x", "page_count": 1})
        )
    );
    let referer = ("referer", "https://ALLOWED.test/some/page?q=1");
    assert_eq!(
        image(&base, "/count/blog.gif?page=/x", &[referer]).await,
        (200, Value::Null)
    );
    // No Origin and no Referer: not a browser's page; counted.
    let (status, body) = hit(&base, "blog", "/y", &[]).await;
    assert_eq!((status, &body["count"]), (200, &json!(3)));
    assert_eq!(
        image(&base, "/count/blog.gif?page=/y", &[]).await,
        (200, Value::Null)
    );
    assert_eq!(app.count("blog").await, 4);
    assert_eq!(pages(app, "blog").await, counts(&[("/x", 2), ("/y", 2)]));

    // Cleared: any page counts.
    let (status, body) = patch(app, "blog", &json!({"origins": []})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["origins"], json!([]));
    let (status, body) = hit(&base, "blog", "/x", &[EVIL_ORIGIN]).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"site": "blog", "count": 5, "page": "/x", "page_count": 3})
        )
    );
    assert_eq!(
        image(&base, "/count/blog.gif?page=/x", &[EVIL_REFERER]).await,
        (200, Value::Null)
    );
    assert_eq!(app.count("blog").await, 6);
    assert_eq!(pages(app, "blog").await, counts(&[("/x", 4), ("/y", 2)]));
    let (status, body) = site(app, "blog").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"slug": "blog", "name": "blog", "count": 6, "pages": 2,
                "origins": [], "keep_params": [], "public": false,
                "require_origin": false, "trailing_slash": "keep", "aliases": []})
        )
    );
}

#[tokio::test]
async fn sqlite_hits_from_pages_on_other_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    other_sites_cannot_count(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn postgres_hits_from_pages_on_other_hosts_are_refused() {
    let pg = PgServer::start();
    let app = TestApp::spawn(&pg.create_database(), &[]).await;
    other_sites_cannot_count(&app).await;
    app.stop().await.unwrap();
}

/// Kept parameters make pages of their own; the others are dropped.
async fn kept_parameters_name_pages(app: &TestApp) {
    let base = app.url("");
    let (status, body) = create(app, &json!({"slug": "docs", "keep_params": ["lang"]})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["keep_params"], json!(["lang"]));
    let mut named = Vec::new();
    for page in [
        "/doc?lang=en&utm=x",
        "/doc?lang=de",
        "/doc",
        "/doc?utm=y&lang=en#top",
        "/doc?utm=z",
    ] {
        let (status, body) = hit(&base, "docs", page, &[]).await;
        assert_eq!(status, 200, "{page}: {body}");
        named.push((body["page"].clone(), body["page_count"].clone()));
    }
    assert_eq!(
        named,
        vec![
            (json!("/doc?lang=en"), json!(1)),
            (json!("/doc?lang=de"), json!(1)),
            (json!("/doc"), json!(1)),
            (json!("/doc?lang=en"), json!(2)),
            (json!("/doc"), json!(2)),
        ]
    );
    assert_eq!(
        pages(app, "docs").await,
        counts(&[("/doc", 2), ("/doc?lang=de", 1), ("/doc?lang=en", 2)])
    );
    // The pixel keeps them too, after a bare `?`: its `page` is read as
    // it stands, so an encoded `%3F` would be part of the path.
    assert_eq!(
        image(&base, "/count/docs.gif?page=/doc?lang=de", &[]).await,
        (200, Value::Null)
    );
    // Dropped from the rules, the parameter is dropped from new hits'
    // pages; the pages counted so far stay.
    let (status, body) = patch(app, "docs", &json!({"keep_params": []})).await;
    assert_eq!((status, &body["keep_params"]), (200, &json!([])));
    let (status, body) = hit(&base, "docs", "/doc?lang=en", &[]).await;
    assert_eq!((status, &body["page"]), (200, &json!("/doc")));
    assert_eq!(
        pages(app, "docs").await,
        counts(&[("/doc", 3), ("/doc?lang=de", 2), ("/doc?lang=en", 2)])
    );
    assert_eq!(app.count("docs").await, 7);
    let (_, body) = site(app, "docs").await;
    assert_eq!(body["pages"], 3);
}

#[tokio::test]
async fn sqlite_kept_query_parameters_name_pages() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    kept_parameters_name_pages(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn postgres_kept_query_parameters_name_pages() {
    let pg = PgServer::start();
    let app = TestApp::spawn(&pg.create_database(), &[]).await;
    kept_parameters_name_pages(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_settings_are_400_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let many: Vec<String> = (0..33).map(|i| format!("h{i}.test")).collect();
    let params: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
    let invalid = |message: &str| {
        (
            400,
            json!({"error": {"code": "invalid_request", "message": message}}),
        )
    };
    for (field, value, want) in [
        (
            "origins",
            json!(["example.com/blog"]),
            invalid(
                r#"allowed origin "example.com/blog": an origin has no path, query or fragment"#,
            ),
        ),
        (
            "origins",
            json!(["ok.test", ""]),
            invalid(r#"allowed origin "": an entry is a host name or address, not empty"#),
        ),
        (
            "origins",
            json!(["*.example.com"]),
            invalid(r#"allowed origin "*.example.com": wildcards are not taken: list each host"#),
        ),
        (
            "origins",
            json!(["me@example.com"]),
            invalid(
                r#"allowed origin "me@example.com": user names and passwords are not part of an origin"#,
            ),
        ),
        (
            "origins",
            json!(["example.com:443"]),
            invalid(
                r#"allowed origin "example.com:443": browsers leave ports 80 and 443 out of the origins they send: list the host alone"#,
            ),
        ),
        (
            "origins",
            json!(["example.com:99999"]),
            invalid(
                r#"allowed origin "example.com:99999": a port is a whole number from 1 to 65535"#,
            ),
        ),
        (
            "origins",
            json!(many),
            invalid("a site names at most 32 allowed origins"),
        ),
        (
            "keep_params",
            json!(params),
            invalid("a site keeps at most 8 query parameters"),
        ),
        (
            "keep_params",
            json!(["lang", "a b"]),
            invalid(r#"a kept query parameter is 1 to 64 of A-Z a-z 0-9 _ - . (got "a b")"#),
        ),
    ] {
        let (status, body) = create(&app, &json!({"slug": "blog", field: value})).await;
        assert_eq!((status, body), want.clone(), "create with {field}: {value}");
        // Nothing was created.
        assert_eq!(site(&app, "blog").await.0, 404);
        // Nor is anything changed on a site that exists.
        let (status, body) = patch(&app, "default", &json!({ field: value })).await;
        assert_eq!((status, body), want, "patch with {field}: {value}");
    }
    for (body, code) in [
        (
            json!({"slug": "blog", "origins": "example.com"}),
            "invalid_body",
        ),
        (json!({"slug": "blog", "origins": [7]}), "invalid_body"),
        (
            json!({"slug": "blog", "origin": ["example.com"]}),
            "invalid_body",
        ),
    ] {
        let (status, reply) = create(&app, &body).await;
        assert_eq!(
            (status, &reply["error"]["code"]),
            (400, &json!(code)),
            "{body}"
        );
    }
    assert_eq!(site(&app, "blog").await.0, 404);
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"origins": null}), "invalid_request"),
        (json!({"slug": "x"}), "invalid_body"),
        (json!({"origins": {"a": 1}}), "invalid_body"),
        (json!(["example.com"]), "invalid_body"),
    ] {
        let (status, reply) = patch(&app, "default", &body).await;
        assert_eq!(
            (status, &reply["error"]["code"]),
            (400, &json!(code)),
            "{body}"
        );
    }
    let (status, reply) = patch(&app, "default", &json!({})).await;
    assert_eq!(
        reply["error"]["message"],
        "give at least one of origins, keep_params, public, require_origin, \
         trailing_slash and aliases: the settings that replace the site's",
        "{status}"
    );
    let untouched = json!({"slug": "default", "name": "default", "count": 0, "pages": 0,
        "origins": [], "keep_params": [], "public": false, "require_origin": false,
        "trailing_slash": "keep", "aliases": []});
    assert_eq!(site(&app, "default").await, (200, untouched.clone()));

    // Not the admin, or no such site.
    let response = load::client()
        .patch(app.url("/api/v1/sites/default"))
        .json(&json!({"origins": ["evil.test"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (status, reply) = patch(&app, "nope", &json!({"origins": []})).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (404, &json!("site_not_found"))
    );
    let (status, reply) = patch(&app, "Not A Slug", &json!({"origins": []})).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (400, &json!("invalid_site"))
    );
    assert_eq!(site(&app, "default").await, (200, untouched));

    // Good entries are normalised; a list not given is kept.
    let (status, body) = patch(
        &app,
        "default",
        &json!({"origins": ["HTTPS://WWW.Example.com:443/", "www.example.com", "[::1]:8080"],
            "keep_params": ["lang", "id", "lang"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["origins"], &body["keep_params"]),
        (
            &json!(["www.example.com", "[::1]:8080"]),
            &json!(["lang", "id"])
        )
    );
    let (status, body) = patch(&app, "default", &json!({"keep_params": ["ref"]})).await;
    assert_eq!(
        (status, &body["origins"], &body["keep_params"]),
        (
            200,
            &json!(["www.example.com", "[::1]:8080"]),
            &json!(["ref"])
        )
    );
    let (status, body) = patch(&app, "default", &json!({"origins": []})).await;
    assert_eq!(
        (status, &body["origins"], &body["keep_params"]),
        (200, &json!([]), &json!(["ref"]))
    );
    // A site created with both.
    let (status, body) = create(
        &app,
        &json!({"slug": "blog", "origins": ["https://blog.example"], "keep_params": ["p"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["origins"], &body["keep_params"], &body["count"]),
        (&json!(["blog.example"]), &json!(["p"]), &json!(0))
    );
    app.stop().await.unwrap();
}

/// Evil hits on `base` until one is refused, at most for 10 s: how many
/// were counted, how long after `since` the refusal came, and the longest
/// step between two looks (the first from `since`).
async fn until_refused(base: &str, since: Instant) -> (i64, Duration, Duration) {
    let mut counted = 0;
    let (mut last, mut step) = (since, Duration::ZERO);
    loop {
        let (status, body) = hit(base, "blog", "/x", &[EVIL_ORIGIN]).await;
        step = step.max(last.elapsed());
        last = Instant::now();
        match status {
            200 => counted += 1,
            403 => return (counted, since.elapsed(), step),
            other => panic!("{other}: {body}"),
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "still counted 10 s after the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Evil hits on `base` until one is counted, at most for 10 s: how long
/// after `since` that came, and the longest step between two looks (the
/// first from `since`).
async fn until_counted(base: &str, since: Instant) -> (Duration, Duration) {
    let (mut last, mut step) = (since, Duration::ZERO);
    loop {
        let (status, body) = hit(base, "blog", "/x", &[EVIL_ORIGIN]).await;
        step = step.max(last.elapsed());
        last = Instant::now();
        match status {
            200 => return (since.elapsed(), step),
            403 => {}
            other => panic!("{other}: {body}"),
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "still refused 10 s after the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long after a change another instance may still act on what it read
/// before: its five seconds, and the look that saw the change may come up
/// to one step after it (twice the longest step measured, for the noise).
fn within_the_refresh(step: Duration) -> Duration {
    Duration::from_secs(5) + step * 2
}

/// A change made through one instance: that one applies it at once, the
/// other (which read the site just before) within five seconds.
#[tokio::test]
async fn a_change_through_one_instance_reaches_another_within_five_seconds() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let (a, b) = (
        TestApp::spawn(&url, &[]).await,
        TestApp::spawn(&url, &[]).await,
    );
    let (base_a, base_b) = (a.url(""), b.url(""));
    assert_eq!(create(&a, &json!({"slug": "blog"})).await.0, 201);
    // B reads the site (no origins) and keeps it for up to five seconds.
    assert_eq!(hit(&base_b, "blog", "/x", &[EVIL_ORIGIN]).await.0, 200);

    let (status, body) = patch(&a, "blog", &json!({"origins": ["allowed.test"]})).await;
    assert_eq!((status, &body["origins"]), (200, &json!(["allowed.test"])));
    let changed = Instant::now();
    assert_eq!(hit(&base_a, "blog", "/x", &[EVIL_ORIGIN]).await.0, 403);
    let (counted, took, step) = until_refused(&base_b, changed).await;
    println!(
        "refused on the second instance {took:?} after the change ({counted} counted before, \
         looking every {step:?} at most)"
    );
    let bound = within_the_refresh(step);
    assert!(took <= bound, "{took:?}, beyond {bound:?}");
    // From then on, refused every time; and the count is exactly the hits
    // that were counted.
    for _ in 0..5 {
        assert_eq!(hit(&base_b, "blog", "/x", &[EVIL_ORIGIN]).await.0, 403);
    }
    assert_eq!(a.count("blog").await, 1 + counted);
    assert_eq!(pages(&b, "blog").await, counts(&[("/x", 1 + counted)]));

    // Cleared through B: B counts at once, A within five seconds.
    assert_eq!(hit(&base_a, "blog", "/x", &[EVIL_ORIGIN]).await.0, 403);
    let (status, body) = patch(&b, "blog", &json!({"origins": []})).await;
    assert_eq!((status, &body["origins"]), (200, &json!([])));
    let cleared = Instant::now();
    assert_eq!(hit(&base_b, "blog", "/x", &[EVIL_ORIGIN]).await.0, 200);
    let (took, step) = until_counted(&base_a, cleared).await;
    println!(
        "counted on the first instance {took:?} after the change (looking every {step:?} at most)"
    );
    let bound = within_the_refresh(step);
    assert!(took <= bound, "{took:?}, beyond {bound:?}");
    assert_eq!(b.count("blog").await, 3 + counted);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// With `require_origin`, a counting hit that names no page it comes from
/// (neither `Origin` nor `Referer`: curl, a server, an e-mail client, a page
/// with `Referrer-Policy: no-referrer`) is refused on every counting route
/// and counts nothing; a page's hit still counts, and reading never needs
/// one. Off, the default, such hits count.
async fn hits_from_nowhere_are_refused_when_required(app: &TestApp) {
    let base = app.url("");
    let (status, body) = create(app, &json!({"slug": "blog"})).await;
    assert_eq!((status, &body["require_origin"]), (201, &json!(false)));
    assert_eq!(hit(&base, "blog", "/x", &[]).await.0, 200);

    let (status, body) = patch(app, "blog", &json!({"require_origin": true})).await;
    assert_eq!((status, &body["require_origin"]), (200, &json!(true)));
    let (status, body) = hit(&base, "blog", "/x", &[]).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": {"code": "origin_not_allowed",
                "message": "this site counts only hits that name the page they come from \
                    (an Origin or Referer header)"}})
        )
    );
    let refused = (403, json!("origin_not_allowed"));
    assert_eq!(image(&base, "/count/blog.gif?page=/x", &[]).await, refused);
    assert_eq!(image(&base, "/badge/blog.svg", &[]).await, refused);
    assert_eq!(image(&base, "/badge/blog.svg?page=/x", &[]).await, refused);
    assert_eq!(app.count("blog").await, 1);
    // A page's hit names its host and counts; reading needs nothing.
    let (status, body) = hit(&base, "blog", "/x", &[EVIL_ORIGIN]).await;
    assert_eq!((status, &body["count"]), (200, &json!(2)));
    assert_eq!(
        image(&base, "/count/blog.gif?page=/x", &[EVIL_REFERER]).await,
        (200, Value::Null)
    );
    assert_eq!(
        image(&base, "/badge/blog.svg?readonly=1", &[]).await,
        (200, Value::Null)
    );
    assert_eq!(app.count("blog").await, 3);
    assert_eq!(pages(app, "blog").await, counts(&[("/x", 3)]));
    // With an allow-list too, a hit must name an allowed host.
    patch(app, "blog", &json!({"origins": ["allowed.test"]})).await;
    assert_eq!(hit(&base, "blog", "/x", &[EVIL_ORIGIN]).await.0, 403);
    assert_eq!(hit(&base, "blog", "/x", &[]).await.0, 403);
    let allowed = ("origin", "https://allowed.test");
    assert_eq!(hit(&base, "blog", "/x", &[allowed]).await.0, 200);
    // Off again: hits from nowhere count.
    patch(app, "blog", &json!({"require_origin": false})).await;
    assert_eq!(hit(&base, "blog", "/x", &[]).await.0, 200);
    assert_eq!(app.count("blog").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hits_from_nowhere_are_refused_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    hits_from_nowhere_are_refused_when_required(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hits_from_nowhere_are_refused_when_required() {
    let pg = PgServer::start();
    let app = TestApp::spawn(&pg.create_database(), &[]).await;
    hits_from_nowhere_are_refused_when_required(&app).await;
    app.stop().await.unwrap();
}
