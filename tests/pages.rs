//! Pages within a site: every page counted exactly and gap-free beside its
//! site, under concurrency, on SQLite (one instance) and PostgreSQL (three
//! instances sharing one database); the page limit and its overflow page;
//! bad paths refused with nothing written; the list, a page's count, its
//! badge, its series, and the pixel.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::app::{TestApp, listed_counts, sqlite_url};
use support::load;
use support::pg::PgServer;

const HITS: usize = 20_000;
const CLIENTS: usize = 128;
const PAGES: usize = 50;

/// What one page hit was answered: the site's count, the page, its count.
#[derive(Debug)]
struct Answer {
    count: i64,
    page: String,
    page_count: i64,
}

/// `POST /api/v1/sites/{slug}/hits` with `{"page": page}`: status and body.
async fn post_hit(client: &reqwest::Client, base: &str, slug: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}/api/v1/sites/{slug}/hits"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `HITS` page hits from `CLIENTS` clients, hit `i` on page `/p/{i % PAGES}`,
/// round-robin over `bases`; every one must be a 200.
async fn page_load(bases: &[String], slug: &str) -> Vec<Answer> {
    let client = load::client();
    let next = Arc::new(AtomicUsize::new(0));
    let bases = Arc::new(bases.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, next, bases, slug) =
            (client.clone(), next.clone(), bases.clone(), slug.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= HITS {
                    return answers;
                }
                let page = format!("/p/{}", i % PAGES);
                let (status, body) = post_hit(
                    &client,
                    &bases[i % bases.len()],
                    &slug,
                    &json!({"page": page}),
                )
                .await;
                assert_eq!(status, 200, "hit {i}: {body}");
                assert_eq!(body["page"], json!(page), "{body}");
                answers.push(Answer {
                    count: body["count"].as_i64().unwrap(),
                    page: page.clone(),
                    page_count: body["page_count"].as_i64().unwrap(),
                });
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Every site count returned is exactly {1..HITS}, every page's counts
/// exactly {1..its hits}, and each page had HITS / PAGES hits.
fn assert_exact(answers: &[Answer]) {
    assert_eq!(answers.len(), HITS);
    let mut counts: Vec<i64> = answers.iter().map(|a| a.count).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=HITS as i64).collect::<Vec<_>>());
    let mut by_page: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in answers {
        by_page.entry(&a.page).or_default().push(a.page_count);
    }
    assert_eq!(by_page.len(), PAGES);
    for (page, mut counts) in by_page {
        counts.sort_unstable();
        let n = (HITS / PAGES) as i64;
        assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "page {page}");
    }
}

/// The stored pages of `slug` as `{page: count}`, from the pages list.
async fn stored_pages(app: &TestApp, slug: &str) -> BTreeMap<String, i64> {
    let (status, body) = app
        .get_json(&format!("/api/v1/sites/{slug}/pages?limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["next"], Value::Null, "{body}");
    listed_counts(&body["pages"], "page").into_iter().collect()
}

fn every_page(n: i64) -> BTreeMap<String, i64> {
    (0..PAGES).map(|p| (format!("/p/{p}"), n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_20000_hits_over_50_pages_are_exact_per_page() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let answers = page_load(&[app.url("")], "blog").await;
    assert_exact(&answers);
    assert_eq!(app.count("blog").await, HITS as i64);
    assert_eq!(
        stored_pages(&app, "blog").await,
        every_page((HITS / PAGES) as i64)
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_20000_hits_over_50_pages_through_three_instances_are_exact_per_page() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(TestApp::spawn(&url, &[]).await);
    }
    apps[0].create_site(&json!({"slug": "blog"})).await;
    let bases: Vec<String> = apps.iter().map(|a| a.url("")).collect();
    let answers = page_load(&bases, "blog").await;
    assert_exact(&answers);
    assert_eq!(apps[1].count("blog").await, HITS as i64);
    assert_eq!(
        stored_pages(&apps[2], "blog").await,
        every_page((HITS / PAGES) as i64)
    );
    let db = url.rsplit('/').next().unwrap();
    // The daily buckets hold the same hits (two days if the test straddles midnight).
    assert_eq!(
        pg.psql(db, "SELECT sum(hits) FROM page_hits_daily"),
        HITS.to_string()
    );
    assert_eq!(
        pg.psql(db, "SELECT page_total FROM visitors WHERE slug = 'blog'"),
        PAGES.to_string()
    );
    for app in apps {
        app.stop().await.unwrap();
    }
}

/// With a limit of 100 pages, 1000 distinct paths make 100 pages and the
/// overflow page holds the other 900 hits; the site counts all 1000.
async fn page_limit_holds(bases: &[String], app: &TestApp) {
    app.create_site(&json!({"slug": "docs"})).await;
    let client = load::client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, bases, next) = (client.clone(), bases.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 1000 {
                    return answers;
                }
                let page = json!({"page": format!("/doc/{i}")});
                answers.push(post_hit(&client, &bases[i % bases.len()], "docs", &page).await);
            }
        }));
    }
    let mut overflowed = 0;
    for task in tasks {
        for (status, body) in task.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            if body["page"] == json!("(other)") {
                overflowed += 1;
            }
        }
    }
    assert_eq!(overflowed, 900);
    assert_eq!(app.count("docs").await, 1000);
    let pages = stored_pages(app, "docs").await;
    assert_eq!(pages.len(), 101, "{pages:?}");
    assert_eq!(pages.get("(other)"), Some(&900));
    let (status, body) = app
        .get_json("/api/v1/sites/docs/pages/count?page=(other)")
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(900)));
    assert_eq!(pages.values().filter(|&&c| c == 1).count(), 100);
    // A page that made it in still counts on itself past the limit.
    let kept = pages
        .keys()
        .find(|p| p.starts_with("/doc/"))
        .unwrap()
        .clone();
    let (status, body) = post_hit(&client, &bases[0], "docs", &json!({"page": kept})).await;
    assert_eq!(
        (status, &body["page"], &body["page_count"]),
        (200, &json!(kept), &json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_site_has_at_most_its_page_limit_of_pages() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--page-limit", "100"]).await;
    page_limit_holds(&[app.url("")], &app).await;
    let metrics = support::app::get_text(&app.url("/metrics")).await;
    assert!(
        metrics.contains("\ntally_page_overflow_hits_total 900\n"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

/// Three instances on the database at `url`, each with `extra`, and
/// their base URLs.
async fn three_instances(url: &str, extra: &[&str]) -> (Vec<TestApp>, Vec<String>) {
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(TestApp::spawn(url, extra).await);
    }
    let bases = apps.iter().map(|a| a.url("")).collect();
    (apps, bases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_site_has_at_most_its_page_limit_of_pages_across_instances() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let (apps, bases) = three_instances(&url, &["--page-limit", "100"]).await;
    page_limit_holds(&bases, &apps[0]).await;
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(pg.psql(db, "SELECT count(*) FROM pages"), "101");
    assert_eq!(
        pg.psql(db, "SELECT page_total FROM visitors WHERE slug = 'docs'"),
        "100"
    );
    let mut overflowed = 0;
    for app in &apps {
        let metrics = support::app::get_text(&app.url("/metrics")).await;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("tally_page_overflow_hits_total "))
            .unwrap();
        overflowed += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(overflowed, 900);
    for app in apps {
        app.stop().await.unwrap();
    }
}

/// Paths that are not pages: each a 400 `invalid_page`, and nothing counted.
async fn bad_paths_get_400_and_write_nothing(app: &TestApp) {
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    let long = format!("/{}", "a".repeat(600));
    for page in [
        long.as_str(),
        "/a\u{1}b",
        "/line\nbreak",
        "/bad%FFutf8",
        "/bad%0Acontrol",
        "no/leading/slash",
        "",
    ] {
        let (status, body) = post_hit(&client, &base, "blog", &json!({"page": page})).await;
        assert_eq!(status, 400, "{page:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_page", "{page:?}: {body}");
    }
    // The same through the pixel and the badge, where the page is in the
    // query string: a raw %FF there is not UTF-8 either.
    for query in [
        "page=%2Fbad%FF",
        "page=/bad%ED%A0%80",
        "page=nope",
        "page=%2Fa%01b",
    ] {
        for path in ["/count/blog.gif", "/badge/blog.svg"] {
            let response = client
                .get(format!("{base}{path}?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path}?{query}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], "invalid_page",
                "{path}?{query}: {body}"
            );
        }
    }
    let (status, body) = post_hit(&client, &base, "blog", &json!({"page": 7})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_body"))
    );
    assert_eq!(app.count("blog").await, 0);
    assert_eq!(stored_pages(app, "blog").await, BTreeMap::new());
    let (status, body) = app.get_json("/api/v1/sites/blog/pages").await;
    assert_eq!((status, body["pages"].clone()), (200, json!([])));
}

on_both_stores!(bad_paths_get_400_and_write_nothing);

#[tokio::test]
async fn paths_are_normalised_and_read_back_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    // One page, however it is written.
    let mut page_counts = Vec::new();
    for page in [
        "/posts/caf%C3%A9",
        "/posts/café?utm_source=x",
        "/posts/café#top",
    ] {
        let (status, body) = post_hit(&client, &base, "blog", &json!({"page": page})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["page"], "/posts/café");
        page_counts.push(body["page_count"].as_i64().unwrap());
    }
    assert_eq!(page_counts, vec![1, 2, 3]);
    // A hit without a page counts on the site only.
    let (status, body) = post_hit(&client, &base, "blog", &json!({})).await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"site": "blog", "count": 4}))
    );
    let response = client
        .post(format!("{base}/api/v1/sites/blog/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"site": "blog", "count": 5})
    );

    // The pixel: a GIF no cache keeps, one hit on the page.
    let response = client
        .get(format!("{base}/count/blog.gif?page=%2Fposts%2Fcaf%C3%A9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let gif = response.bytes().await.unwrap();
    assert_eq!(&gif[..6], b"GIF89a");
    // A HEAD is no view.
    let head = client
        .head(format!("{base}/count/blog.gif?page=/posts/café"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // The page's count, read without counting.
    let (status, body) = app
        .get_json("/api/v1/sites/blog/pages/count?page=/posts/caf%C3%A9")
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"site": "blog", "page": "/posts/café", "count": 4})
        )
    );
    let (status, body) = app
        .get_json("/api/v1/sites/blog/pages/count?page=/never")
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(0)));
    let (status, body) = app.get_json("/api/v1/sites/nope/pages/count?page=/").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("site_not_found"))
    );
    let (status, body) = app.get_json("/api/v1/sites/blog/pages/count").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );

    // Its badge: counting draws the page's count, read-only draws it as is.
    let svg = support::app::get_text(&app.url("/badge/blog.svg?page=/posts/caf%C3%A9")).await;
    assert!(svg.contains(">5</text>"), "{svg}");
    let svg =
        support::app::get_text(&app.url("/badge/blog.svg?page=/posts/caf%C3%A9&readonly=1")).await;
    assert!(svg.contains(">5</text>"), "{svg}");
    assert_eq!(app.count("blog").await, 7);

    // Its series by day: today holds its five hits.
    let (status, body) = app
        .get_json("/api/v1/sites/blog/series?page=/posts/caf%C3%A9&step=day")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["page"], "/posts/café");
    assert_eq!(body["step"], "day");
    assert_eq!(body["before"], 0);
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 30);
    assert_eq!(points.last().unwrap()["hits"], 5);
    let total: i64 = points.iter().map(|p| p["hits"].as_i64().unwrap()).sum();
    assert_eq!(total, 5);
    let (status, body) = app
        .get_json("/api/v1/sites/blog/series?page=/posts/caf%C3%A9&step=hour")
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_pages_list_ranks_by_hits_in_range_then_count_and_pages_through() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    // /a: 3 hits, /b: 1, /c: 3, /d: 2: ties broken by name.
    for page in ["/a", "/b", "/c", "/a", "/c", "/d", "/a", "/c", "/d"] {
        let (status, _) = post_hit(&client, &base, "blog", &json!({"page": page})).await;
        assert_eq!(status, 200);
    }
    let (status, body) = app.get_json("/api/v1/sites/blog/pages?limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["pages"],
        json!([
            {"page": "/a", "count": 3, "hits": 3},
            {"page": "/c", "count": 3, "hits": 3},
        ])
    );
    let next = body["next"].as_str().unwrap().to_owned();
    assert!(next.ends_with("&limit=2&offset=2"), "{next}");
    let (status, body) = app.get_json(&next).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["pages"],
        json!([
            {"page": "/d", "count": 2, "hits": 2},
            {"page": "/b", "count": 1, "hits": 1},
        ])
    );
    assert_eq!(body["next"], Value::Null);
    // A range with none of the hits ranks by count alone.
    let (_, body) = app
        .get_json("/api/v1/sites/blog/pages?from=2020-01-01&to=2020-02-01")
        .await;
    let ranked: Vec<(&str, i64)> = body["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["page"].as_str().unwrap(), p["hits"].as_i64().unwrap()))
        .collect();
    assert_eq!(ranked, vec![("/a", 0), ("/c", 0), ("/d", 0), ("/b", 0)]);
    // CSV, with the next link in a header.
    let response = client
        .get(format!("{base}/api/v1/sites/blog/pages?format=csv&limit=3"))
        .bearer_auth(support::app::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.ends_with("&limit=3&offset=3&format=csv>; rel=\"next\""),
        "{link}"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "page,count,hits\n/a,3,3\n/c,3,3\n/d,2,2\n"
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "format=xml",
        "from=yesterday",
        "sort=x",
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/sites/blog/pages?{bad}"))
            .await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_query")),
            "{bad}"
        );
    }
    let (status, _) = app.get_json("/api/v1/sites/nope/pages").await;
    assert_eq!(status, 404);
    app.stop().await.unwrap();
}

/// `POST` a page hit carrying request id `id` (tally trusts the loopback
/// peer as its proxy, so the id is used): status and body.
async fn keyed_hit(client: &reqwest::Client, base: &str, page: Option<&str>, id: &str) -> Value {
    let mut request = client
        .post(format!("{base}/api/v1/sites/blog/hits"))
        .header("x-request-id", id);
    if let Some(page) = page {
        request = request.json(&json!({ "page": page }));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A retried request (same id) is counted once and gets its first site and
/// page counts, on the overflow page too; a retry names the page it first
/// counted on whatever it names now.
async fn retries_get_their_first_page_count(database_url: &str) {
    let app = TestApp::spawn(
        database_url,
        &["--trusted-proxies", "127.0.0.1/32", "--page-limit", "1"],
    )
    .await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    let hit = |page, id| keyed_hit(&client, &base, page, id);
    let page = |count: i64, page: &str, page_count: i64| json!({"site": "blog", "count": count, "page": page, "page_count": page_count});
    assert_eq!(hit(Some("/a"), "r1").await, page(1, "/a", 1));
    assert_eq!(hit(Some("/a"), "r2").await, page(2, "/a", 2));
    assert_eq!(hit(Some("/a"), "r1").await, page(1, "/a", 1), "a retry");
    // Past the limit of one page: the overflow page, and so on a retry.
    assert_eq!(hit(Some("/b"), "r3").await, page(3, "(other)", 1));
    assert_eq!(
        hit(Some("/b"), "r3").await,
        page(3, "(other)", 1),
        "a retry"
    );
    assert_eq!(hit(Some("/c"), "r4").await, page(4, "(other)", 2));
    // A hit with no page, and its retry.
    assert_eq!(hit(None, "r5").await, json!({"site": "blog", "count": 5}));
    assert_eq!(hit(None, "r5").await, json!({"site": "blog", "count": 5}));
    // Retries inside one batch: 20 requests, 4 ids, at once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            keyed_hit(&client, &base, Some("/a"), &format!("b{}", i % 4)).await
        }));
    }
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for task in tasks {
        let body = task.await.unwrap();
        seen.insert(
            body["page_count"].as_i64().unwrap(),
            body["count"].as_i64().unwrap(),
        );
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    assert_eq!(app.count("blog").await, 9);
    assert_eq!(
        stored_pages(&app, "blog").await,
        BTreeMap::from([("/a".to_owned(), 6), ("(other)".to_owned(), 2)])
    );
    app.stop().await.unwrap();
}

with_both_databases!(retries_get_their_first_page_count);

/// `DELETE /api/v1/sites/{slug}/pages?{query}`, with the admin token if
/// `token`: status and body.
async fn delete_pages(app: &TestApp, slug: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request =
        load::client().delete(app.url(&format!("/api/v1/sites/{slug}/pages?{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// What deleting pages must leave alone: the site's count, its hourly
/// series, and (from the site) its number of pages.
async fn site_state(app: &TestApp, slug: &str) -> (i64, Value, i64) {
    let (status, series) = app.get_json(&format!("/api/v1/sites/{slug}/series")).await;
    assert_eq!(status, 200, "{series}");
    let (status, site) = app.get_json(&format!("/api/v1/sites/{slug}")).await;
    assert_eq!(status, 200, "{site}");
    (
        app.count(slug).await,
        series["points"].clone(),
        site["pages"].as_i64().unwrap(),
    )
}

fn pages_of(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
}

/// Deleting one page, the pages under a prefix, and the pages with fewer
/// than N hits in a range: each deletes exactly its pages, answers how
/// many, leaves the site's count and series as they were, and gives the
/// site back room under its page limit (5 here); `(other)` goes only when
/// named. A retried hit whose page is gone gets what it was first given.
/// Without the token, or with a bad selector, nothing is deleted.
async fn deleting_pages_takes_exactly_the_pages_named_and_keeps_the_count(database_url: &str) {
    let app = TestApp::spawn(
        database_url,
        &["--trusted-proxies", "127.0.0.1/32", "--page-limit", "5"],
    )
    .await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    let first_x = keyed_hit(&client, &base, Some("/x"), "x-1").await;
    for page in [
        "/keep/a", "/keep/a", "/keep/a", "/keep/b", "/junk/1", "/junk/2", "/junk/2",
    ] {
        assert_eq!(
            post_hit(&client, &base, "blog", &json!({"page": page}))
                .await
                .0,
            200
        );
    }
    // Past the limit of 5 pages: on the overflow page.
    let (_, body) = post_hit(&client, &base, "blog", &json!({"page": "/y"})).await;
    assert_eq!(body["page"], "(other)");
    let all = pages_of(&[
        ("/keep/a", 3),
        ("/keep/b", 1),
        ("/junk/1", 1),
        ("/junk/2", 2),
        ("/x", 1),
        ("(other)", 1),
    ]);
    assert_eq!(stored_pages(&app, "blog").await, all);
    let (count, series, page_total) = site_state(&app, "blog").await;
    assert_eq!((count, page_total), (9, 5));

    // Refused: no token, a wrong one, bad selectors; nothing goes.
    let token = Some(support::app::TOKEN);
    let (status, body) = delete_pages(&app, "blog", "page=/x", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let (status, _) = delete_pages(&app, "blog", "page=/x", Some("wrong")).await;
    assert_eq!(status, 401);
    for (query, names) in [
        ("", "'fewer_than'"),
        ("page=/x&prefix=/junk/", "'page' and 'prefix'"),
        ("prefix=/junk/&fewer_than=2", "'prefix' and 'fewer_than'"),
        ("page=x", "'page'"),
        ("page=", "'page'"),
        ("prefix=junk", "'prefix'"),
        ("prefix=(other)", "'prefix'"),
        ("prefix=", "'prefix'"),
        ("fewer_than=0", "'fewer_than'"),
        ("fewer_than=-3", "'fewer_than'"),
        ("fewer_than=two", "'fewer_than'"),
        ("page=/x&from=2020-01-01", "'from'"),
        ("prefix=/junk/&to=2020-01-01", "'to'"),
        ("fewer_than=2&from=yesterday", "'from'"),
        ("fewer_than=2&from=2020-02-01&to=2020-01-01", "'from'"),
        ("pages=/x", "pages"),
        ("page=/x&page=/y", "page"),
    ] {
        let (status, body) = delete_pages(&app, "blog", query, token).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_query")),
            "{query}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    let (status, body) = delete_pages(&app, "nope", "page=/x", token).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("site_not_found"))
    );
    assert_eq!(stored_pages(&app, "blog").await, all);
    assert_eq!(site_state(&app, "blog").await, (count, series.clone(), 5));

    // One page, by its listed name; a page that is not there is no error.
    let (status, body) = delete_pages(&app, "blog", "page=/x", token).await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 1})));
    let (status, body) = delete_pages(&app, "blog", "page=/x", token).await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 0})));
    // A retry of the hit on it is answered what was recorded, and counts
    // nothing.
    assert_eq!(keyed_hit(&client, &base, Some("/x"), "x-1").await, first_x);
    let mut left = all.clone();
    left.remove("/x");
    assert_eq!(stored_pages(&app, "blog").await, left);
    assert_eq!(site_state(&app, "blog").await, (count, series.clone(), 4));

    // Every page under a prefix.
    let (status, body) = delete_pages(&app, "blog", "prefix=/junk/", token).await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 2})));
    left.remove("/junk/1");
    left.remove("/junk/2");
    assert_eq!(stored_pages(&app, "blog").await, left);
    assert_eq!(site_state(&app, "blog").await, (count, series.clone(), 2));

    // Fewer than 2 hits in the last 30 days: /keep/b, not (other).
    let (status, body) = delete_pages(&app, "blog", "fewer_than=2", token).await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 1})));
    assert_eq!(
        stored_pages(&app, "blog").await,
        pages_of(&[("/keep/a", 3), ("(other)", 1)])
    );
    assert_eq!(site_state(&app, "blog").await, (count, series.clone(), 1));

    // The room came back: new pages get their own names again, up to 5.
    for i in 0..5 {
        let (_, body) = post_hit(
            &client,
            &base,
            "blog",
            &json!({"page": format!("/new/{i}")}),
        )
        .await;
        let expected = if i < 4 {
            format!("/new/{i}")
        } else {
            "(other)".into()
        };
        assert_eq!(body["page"], json!(expected), "{body}");
    }
    let (count, series, page_total) = site_state(&app, "blog").await;
    assert_eq!((count, page_total), (14, 5));

    // The overflow page goes when named, and frees no room.
    let (status, body) = delete_pages(&app, "blog", "page=(other)", token).await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 1})));
    assert_eq!(site_state(&app, "blog").await, (count, series.clone(), 5));
    // Fewer than 1 hit in a month long past: every page but the overflow.
    let (_, body) = post_hit(&client, &base, "blog", &json!({"page": "/z"})).await;
    assert_eq!(body["page"], "(other)");
    let (status, body) = delete_pages(
        &app,
        "blog",
        "fewer_than=1&from=2020-01-01&to=2020-02-01",
        token,
    )
    .await;
    assert_eq!((status, body), (200, json!({"site": "blog", "deleted": 5})));
    assert_eq!(
        stored_pages(&app, "blog").await,
        pages_of(&[("(other)", 1)])
    );
    let (after, _, page_total) = site_state(&app, "blog").await;
    assert_eq!((after, page_total), (count + 1, 0));
    app.stop().await.unwrap();
}

with_both_databases!(deleting_pages_takes_exactly_the_pages_named_and_keeps_the_count);

/// Deletions while hits name new pages: the site's page total stays the
/// number of pages it holds (the overflow page aside), every hit is
/// counted, and no page is over the limit.
async fn deletions_under_hits(bases: &[String], app: &TestApp) {
    app.create_site(&json!({"slug": "busy"})).await;
    let client = load::client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, bases, next) = (client.clone(), bases.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 2000 {
                    return;
                }
                let page = json!({"page": format!("/{}/{}", ["a", "b"][i % 2], i % 70)});
                let (status, body) =
                    post_hit(&client, &bases[i % bases.len()], "busy", &page).await;
                assert_eq!(status, 200, "{body}");
            }
        }));
    }
    let mut deleted = 0;
    while next.load(Ordering::Relaxed) < 2000 {
        let (status, body) =
            delete_pages(app, "busy", "prefix=/a/", Some(support::app::TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        deleted += body["deleted"].as_i64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(deleted > 0);
    assert_eq!(app.count("busy").await, 2000);
    let pages = stored_pages(app, "busy").await;
    let named = pages.keys().filter(|p| *p != "(other)").count() as i64;
    let (_, site) = app.get_json("/api/v1/sites/busy").await;
    assert_eq!(site["pages"], json!(named), "{pages:?}");
    assert!(named <= 100, "{named}");
    assert!(pages.values().sum::<i64>() <= 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_deleting_pages_under_hits_keeps_the_page_total_exact() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--page-limit", "100"]).await;
    deletions_under_hits(&[app.url("")], &app).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deleting_pages_under_hits_through_three_instances_keeps_the_page_total_exact() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let (apps, bases) = three_instances(&url, &["--page-limit", "100"]).await;
    deletions_under_hits(&bases, &apps[0]).await;
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT page_total FROM visitors WHERE slug = 'busy'"),
        pg.psql(
            db,
            "SELECT count(*) FROM pages p JOIN visitors v USING (site_id) \
             WHERE v.slug = 'busy' AND p.path <> '(other)'"
        )
    );
    for app in apps {
        app.stop().await.unwrap();
    }
}

/// Reading the list is cut from a ranking kept a few seconds: a hit, a
/// deletion and a set count each show in the next read at once.
#[tokio::test]
async fn the_pages_list_shows_every_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let base = app.url("");
    let hit = |page: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move { post_hit(&client, &base, "blog", &json!({"page": page})).await }
    };
    // The top two, in CSV: `page,count,hits` (every hit is today's).
    let ranked = || async {
        let response = client
            .get(app.url("/api/v1/sites/blog/pages?limit=2&format=csv"))
            .bearer_auth(support::app::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let owned = |list: &[(&str, i64)]| {
        let rows: String = list.iter().map(|(p, n)| format!("{p},{n},{n}\n")).collect();
        format!("page,count,hits\n{rows}")
    };
    hit("/a").await;
    hit("/b").await;
    assert_eq!(ranked().await, owned(&[("/a", 1), ("/b", 1)]));
    assert_eq!(ranked().await, owned(&[("/a", 1), ("/b", 1)]));
    hit("/b").await;
    assert_eq!(ranked().await, owned(&[("/b", 2), ("/a", 1)]));
    hit("/c").await;
    hit("/c").await;
    hit("/c").await;
    assert_eq!(ranked().await, owned(&[("/c", 3), ("/b", 2)]));
    let (status, _) = delete_pages(&app, "blog", "page=/c", Some(support::app::TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(ranked().await, owned(&[("/b", 2), ("/a", 1)]));
    let set = client
        .put(app.url("/api/v1/sites/blog/count"))
        .bearer_auth(support::app::TOKEN)
        .json(&json!({"count": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(ranked().await, owned(&[]));
    app.stop().await.unwrap();
}

/// A client may not create pages faster than it may count: page hits take
/// the same per-client limit as any hit.
#[tokio::test]
async fn new_pages_take_the_per_client_hit_limit() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--rate-limit", "5"]).await;
    app.create_site(&json!({"slug": "blog"})).await;
    let client = load::client();
    let mut statuses = BTreeMap::new();
    for i in 0..8 {
        let (status, _) = post_hit(
            &client,
            &app.url(""),
            "blog",
            &json!({"page": format!("/n/{i}")}),
        )
        .await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 5), (429, 3)]));
    assert_eq!(stored_pages(&app, "blog").await.len(), 5);
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------
// One normalisation of page names (docs/pages.md, "Paths"),
// the same through every route that names a page.

/// The routes that name a page, as one client calls them.
struct PageRoutes<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> PageRoutes<'a> {
    fn of(app: &'a TestApp) -> Self {
        PageRoutes {
            app,
            client: load::client(),
        }
    }

    /// `POST /api/v1/sites/{slug}/hits` with `{"page": page}`.
    async fn hit(&self, slug: &str, page: &str) -> (u16, Value) {
        post_hit(
            &self.client,
            &self.app.url(""),
            slug,
            &json!({ "page": page }),
        )
        .await
    }

    /// The page a hit with `{"page": page}` counted on; the hit must be a 200.
    async fn hit_on(&self, slug: &str, page: &str) -> String {
        let (status, body) = self.hit(slug, page).await;
        assert_eq!(status, 200, "{page:?}: {body}");
        body["page"].as_str().unwrap().to_owned()
    }

    /// `GET {route}?page={raw}` (`raw` as it stands in the query string):
    /// the status and the JSON body, `Null` for a GIF or an SVG.
    async fn get(&self, route: &str, raw: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.app.url(&format!("{route}?page={raw}")))
            .bearer_auth(support::app::TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The pixel `/count/{slug}.gif?page={raw}`; it must be a 200.
    async fn pixel(&self, slug: &str, raw: &str) {
        let (status, body) = self.get(&format!("/count/{slug}.gif"), raw).await;
        assert_eq!(status, 200, "pixel {raw:?}: {body}");
    }

    /// `/api/v1/sites/{slug}/pages/count?page={raw}`, a 200: the page read
    /// and its count.
    async fn count(&self, slug: &str, raw: &str) -> (String, i64) {
        let (status, body) = self
            .get(&format!("/api/v1/sites/{slug}/pages/count"), raw)
            .await;
        assert_eq!(status, 200, "count {raw:?}: {body}");
        (
            body["page"].as_str().unwrap().to_owned(),
            body["count"].as_i64().unwrap(),
        )
    }

    /// `PATCH /api/v1/sites/{slug}` with `body`, a 200.
    async fn patch(&self, slug: &str, body: &Value) {
        let response = self
            .client
            .patch(self.app.url(&format!("/api/v1/sites/{slug}")))
            .bearer_auth(support::app::TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{body}");
    }

    /// The dashboard's view of one page, `/dashboard/{slug}?page={raw}`:
    /// the name it shows and its count in all.
    async fn dashboard(&self, slug: &str, raw: &str) -> (String, i64) {
        let response = self
            .client
            .get(self.app.url(&format!("/dashboard/{slug}?page={raw}")))
            .bearer_auth(support::app::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "dashboard {raw:?}");
        let html = response.text().await.unwrap();
        let name = html
            .split_once("<h1 class=\"page\">")
            .and_then(|(_, rest)| rest.split_once("<small>"))
            .unwrap_or_else(|| panic!("no page heading: {html}"))
            .0
            .to_owned();
        let count = html
            .split_once("<strong>")
            .and_then(|(_, rest)| rest.split_once("</strong> hits on this page in all"))
            .unwrap_or_else(|| panic!("no page count: {html}"))
            .0
            .parse()
            .unwrap();
        (name, count)
    }
}

fn named_counts(pages: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pages.iter().map(|(p, n)| (p.to_string(), *n)).collect()
}

/// `trailing_slash`: `keep` (the default) makes `/posts/hello/` and
/// `/posts/hello` two pages; `merge` one, `/posts/hello`, on every route.
/// The root is `/` either way.
async fn a_trailing_slash_is_kept_or_merged_by_the_site(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "kept"})).await;
    app.create_site(&json!({"slug": "merged"})).await;
    r.patch("merged", &json!({"trailing_slash": "merge"})).await;

    assert_eq!(r.hit_on("kept", "/posts/hello/").await, "/posts/hello/");
    assert_eq!(r.hit_on("kept", "/posts/hello").await, "/posts/hello");
    r.pixel("kept", "/posts/hello/").await;
    assert_eq!(
        r.count("kept", "/posts/hello/").await,
        ("/posts/hello/".to_owned(), 2)
    );
    assert_eq!(
        r.count("kept", "/posts/hello").await,
        ("/posts/hello".to_owned(), 1)
    );
    assert_eq!(r.hit_on("kept", "/").await, "/");

    assert_eq!(r.hit_on("merged", "/posts/hello/").await, "/posts/hello");
    assert_eq!(r.hit_on("merged", "/posts/hello").await, "/posts/hello");
    assert_eq!(r.hit_on("merged", "/posts/hello//").await, "/posts/hello");
    r.pixel("merged", "/posts/hello/").await;
    assert_eq!(
        r.count("merged", "/posts/hello/").await,
        ("/posts/hello".to_owned(), 4)
    );
    assert_eq!(
        r.dashboard("merged", "/posts/hello/").await,
        ("/posts/hello".to_owned(), 4)
    );
    assert_eq!(r.hit_on("merged", "/").await, "/");
    assert_eq!(r.hit_on("merged", "//").await, "/");

    assert_eq!(
        stored_pages(app, "kept").await,
        named_counts(&[("/posts/hello/", 2), ("/posts/hello", 1), ("/", 1)])
    );
    assert_eq!(
        stored_pages(app, "merged").await,
        named_counts(&[("/posts/hello", 4), ("/", 2)])
    );
}

on_both_stores!(a_trailing_slash_is_kept_or_merged_by_the_site);

/// Dot segments are resolved (RFC 3986's remove_dot_segments, `..` past
/// the root staying at `/`), encoded dots too, and repeated slashes merged.
async fn dot_segments_and_repeated_slashes_are_resolved(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "blog"})).await;
    assert_eq!(r.hit_on("blog", "//a/./b/../c").await, "/a/c");
    assert_eq!(r.hit_on("blog", "/../../a/%2E%2E/a/c").await, "/a/c");
    r.pixel("blog", "/a//b/.%2E/./c").await;
    assert_eq!(r.count("blog", "/x/../a/./c").await, ("/a/c".to_owned(), 3));
    assert_eq!(r.dashboard("blog", "//a/c").await, ("/a/c".to_owned(), 3));
    assert_eq!(r.hit_on("blog", "/..").await, "/");
    assert_eq!(r.hit_on("blog", "/a/b/..").await, "/a/");
    assert_eq!(r.hit_on("blog", "/a/.").await, "/a/");
    assert_eq!(r.hit_on("blog", "/a/...").await, "/a/...");
    assert_eq!(
        stored_pages(app, "blog").await,
        named_counts(&[("/a/c", 3), ("/", 1), ("/a/", 2), ("/a/...", 1)])
    );
}

on_both_stores!(dot_segments_and_repeated_slashes_are_resolved);

/// A name is in Unicode NFC: the decomposed `/cafe\u{301}` is `/café`.
async fn names_are_in_unicode_nfc(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "blog"})).await;
    assert_eq!(r.hit_on("blog", "/cafe\u{301}").await, "/caf\u{e9}");
    assert_eq!(r.hit_on("blog", "/caf\u{e9}").await, "/caf\u{e9}");
    assert_eq!(r.hit_on("blog", "/cafe%CC%81").await, "/caf\u{e9}");
    r.pixel("blog", "/cafe%CC%81").await;
    assert_eq!(
        r.count("blog", "/caf%C3%A9").await,
        ("/caf\u{e9}".to_owned(), 4)
    );
    assert_eq!(
        r.count("blog", "/cafe%CC%81").await,
        ("/caf\u{e9}".to_owned(), 4)
    );
    assert_eq!(
        r.dashboard("blog", "/cafe%CC%81").await,
        ("/caf\u{e9}".to_owned(), 4)
    );
    assert_eq!(
        stored_pages(app, "blog").await,
        named_counts(&[("/caf\u{e9}", 4)])
    );
}

on_both_stores!(names_are_in_unicode_nfc);

/// `%3F`, `%23` and `%25` stay encoded in a name: `/a%3Fb` is its own
/// page, not `/a` with a query string, and `/a%253Fb` (a literal `%3F`)
/// another; `%2F` is a `/`.
async fn encoded_question_marks_hashes_and_percents_stay_encoded(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "blog"})).await;
    app.create_site(&json!({"slug": "doc", "keep_params": ["lang"]}))
        .await;
    assert_eq!(r.hit_on("blog", "/a%3Fb").await, "/a%3Fb");
    assert_eq!(r.hit_on("blog", "/a?b").await, "/a");
    assert_eq!(r.hit_on("blog", "/a%23b").await, "/a%23b");
    assert_eq!(r.hit_on("blog", "/a#b").await, "/a");
    assert_eq!(r.hit_on("blog", "/a%3fb").await, "/a%3Fb");
    assert_eq!(r.hit_on("blog", "/a%253Fb").await, "/a%253Fb");
    assert_eq!(r.hit_on("blog", "/100%25").await, "/100%25");
    assert_eq!(r.hit_on("blog", "/100%").await, "/100%25");
    assert_eq!(r.hit_on("blog", "/x%2Fy").await, "/x/y");
    r.pixel("blog", "/a%3Fb").await;
    assert_eq!(r.count("blog", "/a%3Fb").await, ("/a%3Fb".to_owned(), 3));
    assert_eq!(r.count("blog", "/a").await, ("/a".to_owned(), 2));
    assert_eq!(
        r.count("blog", "/a%253Fb").await,
        ("/a%253Fb".to_owned(), 1)
    );
    assert_eq!(
        r.dashboard("blog", "/a%3Fb").await,
        ("/a%3Fb".to_owned(), 3)
    );
    assert_eq!(
        stored_pages(app, "blog").await,
        named_counts(&[
            ("/a%3Fb", 3),
            ("/a", 2),
            ("/a%23b", 1),
            ("/a%253Fb", 1),
            ("/100%25", 2),
            ("/x/y", 1),
        ])
    );
    // A kept parameter follows a real `?` only.
    assert_eq!(r.hit_on("doc", "/doc?lang=en").await, "/doc?lang=en");
    assert_eq!(r.hit_on("doc", "/doc%3Flang=en").await, "/doc%3Flang=en");
    r.pixel("doc", "/doc?lang=en").await;
    assert_eq!(
        r.count("doc", "/doc?lang=en").await,
        ("/doc?lang=en".to_owned(), 2)
    );
    assert_eq!(
        stored_pages(app, "doc").await,
        named_counts(&[("/doc?lang=en", 2), ("/doc%3Flang=en", 1)])
    );
}

on_both_stores!(encoded_question_marks_hashes_and_percents_stay_encoded);

/// Bidirectional controls and invisible characters, raw or encoded, are a
/// 400 `invalid_page` naming the rule on every route, and count nothing.
async fn bidi_controls_and_invisible_characters_are_refused(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "blog"})).await;
    assert_eq!(r.hit_on("blog", "/ok").await, "/ok");
    let bidi = "bidirectional control";
    let invisible = "invisible character";
    for (page, rule) in [
        ("/admin\u{202E}txt.exe", bidi),
        ("/a\u{202A}", bidi),
        ("/a\u{200E}", bidi),
        ("/a\u{200F}", bidi),
        ("/a\u{061C}", bidi),
        ("/a\u{2066}b\u{2069}", bidi),
        ("/a%E2%80%AE", bidi),
        ("/posts/hel\u{200B}lo", invisible),
        ("/a\u{200C}", invisible),
        ("/a\u{200D}", invisible),
        ("/a\u{2060}", invisible),
        ("/\u{FEFF}a", invisible),
        ("/a\u{AD}", invisible),
        ("/a\u{E0041}", invisible),
        ("/a%E2%80%8B", invisible),
    ] {
        let (status, body) = r.hit("blog", page).await;
        assert_eq!(status, 400, "{page:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_page", "{page:?}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{page:?}: {message}");
    }
    for (raw, rule) in [("/a%E2%80%AE", bidi), ("/posts/hel%E2%80%8Blo", invisible)] {
        for route in [
            "/count/blog.gif",
            "/badge/blog.svg",
            "/api/v1/sites/blog/pages/count",
            "/api/v1/sites/blog/series",
        ] {
            let (status, body) = r.get(route, raw).await;
            assert_eq!(status, 400, "{route}?page={raw}: {body}");
            assert_eq!(body["error"]["code"], "invalid_page", "{route}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(rule), "{route}?page={raw}: {message}");
        }
    }
    assert_eq!(app.count("blog").await, 1);
    assert_eq!(stored_pages(app, "blog").await, named_counts(&[("/ok", 1)]));
}

on_both_stores!(bidi_controls_and_invisible_characters_are_refused);

/// A query route reads its `page` as it stands in the query string and
/// decodes it once, as the body's is: `%2568ello` is the text `%68ello`
/// there too, and `+` is a `+`.
async fn a_page_in_a_query_string_means_what_it_means_in_a_body(app: &TestApp) {
    let r = PageRoutes::of(app);
    app.create_site(&json!({"slug": "blog"})).await;
    assert_eq!(
        r.hit_on("blog", "/posts/%2568ello").await,
        "/posts/%2568ello"
    );
    assert_eq!(
        r.count("blog", "/posts/%2568ello").await,
        ("/posts/%2568ello".to_owned(), 1)
    );
    assert_eq!(
        r.count("blog", "/posts/hello").await,
        ("/posts/hello".to_owned(), 0)
    );
    r.pixel("blog", "/posts/%2568ello").await;
    assert_eq!(
        r.count("blog", "/posts/%2568ello").await,
        ("/posts/%2568ello".to_owned(), 2)
    );
    assert_eq!(
        r.dashboard("blog", "/posts/%2568ello").await,
        ("/posts/%2568ello".to_owned(), 2)
    );

    assert_eq!(r.hit_on("blog", "/a+b").await, "/a+b");
    r.pixel("blog", "/a+b").await;
    assert_eq!(r.hit_on("blog", "/a%2Bb").await, "/a+b");
    assert_eq!(r.count("blog", "/a+b").await, ("/a+b".to_owned(), 3));
    assert_eq!(r.count("blog", "/a%2Bb").await, ("/a+b".to_owned(), 3));
    assert_eq!(r.count("blog", "/a%20b").await, ("/a b".to_owned(), 0));
    let (status, body) = r.get("/api/v1/sites/blog/series", "/a+b").await;
    assert_eq!((status, &body["page"]), (200, &json!("/a+b")), "{body}");
    let (status, _) = r.get("/badge/blog.svg", "/a+b&readonly=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        stored_pages(app, "blog").await,
        named_counts(&[("/posts/%2568ello", 2), ("/a+b", 3)])
    );
}

on_both_stores!(a_page_in_a_query_string_means_what_it_means_in_a_body);
