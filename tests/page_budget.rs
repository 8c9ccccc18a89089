//! New pages are created on a budget tighter than hits: a client may
//! create `TALLY_NEW_PAGES_PER_CLIENT` pages per window and a site gets at
//! most `TALLY_NEW_PAGES_PER_SITE`; past either, a hit on a page the site
//! does not have counts on `(other)` until the window turns, while pages
//! the site has keep counting by name, and every hit counts on the site.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::app::{TestApp, listed_counts};
use support::load;

/// The budgets' window in these tests.
const WINDOW: u64 = 10;

fn budget() -> Vec<String> {
    [
        "--new-pages-per-client",
        "3",
        "--new-pages-per-site",
        "20",
        "--new-page-window",
        &format!("{WINDOW}s"),
        "--page-limit",
        "25",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Waits for the start of the next window (the windows are whole multiples
/// of `WINDOW` seconds since the epoch), so that what follows, well under
/// a second of loopback requests, happens inside one window.
async fn next_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_millis() as u64 % (WINDOW * 1000);
    tokio::time::sleep(Duration::from_millis(WINDOW * 1000 - into + 50)).await;
}

/// A hit on `page` from `client`, as a trusted proxy on loopback names it
/// in `X-Forwarded-For`: the page it counted on and that page's count.
async fn hit(app: &TestApp, client: &str, page: &str) -> (String, i64) {
    let response = load::client()
        .post(app.url("/api/v1/sites/blog/hits"))
        .header("x-forwarded-for", client)
        .json(&json!({ "page": page }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{page}");
    let body: Value = response.json().await.unwrap();
    (
        body["page"].as_str().unwrap().to_owned(),
        body["page_count"].as_i64().unwrap(),
    )
}

/// Every page of site `blog` and its count, by name.
async fn pages(app: &TestApp) -> Vec<(String, i64)> {
    let (status, body) = app
        .get_json("/api/v1/sites/blog/pages?limit=1000&from=2000-01-01")
        .await;
    assert_eq!(status, 200, "{body}");
    let mut list: Vec<(String, i64)> = listed_counts(&body["pages"], "page").into_iter().collect();
    list.sort();
    list
}

async fn a_rotating_client_cannot_fill_the_page_table(url: &str) {
    let args = budget();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let served = TestApp::spawn(url, &args).await;
    let app = &served;
    app.create_site(&json!({"slug": "blog"})).await;
    next_window().await;
    // A reader's client creates its budget of pages, then its next new
    // page counts on (other); a page the site has still counts by name.
    assert_eq!(
        hit(app, "198.51.100.7", "/about").await,
        ("/about".into(), 1)
    );
    assert_eq!(hit(app, "198.51.100.7", "/a").await, ("/a".into(), 1));
    assert_eq!(hit(app, "198.51.100.7", "/b").await, ("/b".into(), 1));
    assert_eq!(hit(app, "198.51.100.7", "/c").await, ("(other)".into(), 1));
    assert_eq!(
        hit(app, "198.51.100.7", "/about").await,
        ("/about".into(), 2)
    );
    // Another client has a budget of its own.
    assert_eq!(hit(app, "198.51.100.8", "/c").await, ("/c".into(), 1));

    // A client behind the trusted proxy on loopback, rotating the address
    // it forwards: 200 new names, each from a new address. The site's
    // budget (20, 4 of them taken) holds: 16 get a page, the rest count
    // on (other), and every hit counts on the site.
    let mut named = 0;
    for i in 0..200 {
        let client = format!("203.0.113.{}", i % 250 + 1);
        let (page, _) = hit(app, &client, &format!("/junk/{i}")).await;
        if page != "(other)" {
            assert_eq!(page, format!("/junk/{i}"));
            named += 1;
        }
    }
    assert_eq!(named, 16);
    assert_eq!(app.count("blog").await, 206);
    // Pages the site has keep their names meanwhile.
    assert_eq!(hit(app, "192.0.2.1", "/about").await, ("/about".into(), 3));
    assert_eq!(
        hit(app, "192.0.2.1", "/post").await,
        ("(other)".into(), 186)
    );

    let mut expected: Vec<(String, i64)> = vec![
        ("(other)".into(), 186),
        ("/a".into(), 1),
        ("/about".into(), 3),
        ("/b".into(), 1),
        ("/c".into(), 1),
    ];
    expected.extend((0..16).map(|i| (format!("/junk/{i}"), 1)));
    expected.sort();
    assert_eq!(pages(app).await, expected);
    // (other) takes no room under the page limit: 20 pages, 5 to spare.
    let (_, site) = app.get_json("/api/v1/sites/blog").await;
    assert_eq!(site["pages"], json!(20));

    // When the window turns, a real new page gets its own name.
    next_window().await;
    assert_eq!(hit(app, "192.0.2.1", "/post").await, ("/post".into(), 1));
    assert_eq!(app.count("blog").await, 209);
    served.stop().await.unwrap();
}

with_both_databases!(a_rotating_client_cannot_fill_the_page_table);
