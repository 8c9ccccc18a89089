//! Time series: after concurrent load a site's series adds up to its count,
//! exactly, on SQLite and PostgreSQL, and still does after set-count, reset
//! and retention; zero-filling and bucketing are exact on known data; bad
//! parameters are 400s.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{Method, StatusCode};
use reqwest::Method as ReqMethod;
use serde_json::Value;
use std::sync::Arc;
use support::app::{TOKEN, TestApp, call, json_of, sqlite_url};
use support::load::{self, Until};
use support::pg::PgServer;
use tally::domain::Slug;
use tally::http::AppState;
use tally::store::Store;

const SITES: [&str; 3] = ["alpha", "beta", "gamma"];
const HITS: usize = 2_000;
const CLIENTS: usize = 64;

/// 2026-01-10T00:00:00Z
const JAN_10: u64 = 1_768_003_200;
const H: u64 = 3600;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

async fn create_sites(app: &TestApp) {
    for slug in SITES {
        app.create_site(&serde_json::json!({ "slug": slug })).await;
    }
}

/// 2 000 hits round-robin over the three sites from 64 clients.
async fn load_sites(apps: &[TestApp]) {
    let urls: Vec<String> = (0..SITES.len() * apps.len())
        .map(|i| {
            apps[i % apps.len()].url(&format!("/api/v1/sites/{}/hits", SITES[i % SITES.len()]))
        })
        .collect();
    let outcomes = load::run(&urls, ReqMethod::POST, CLIENTS, Until::Requests(HITS)).await;
    assert_eq!(
        load::statuses(&outcomes).into_iter().collect::<Vec<_>>(),
        vec![(200, HITS)]
    );
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = load::client()
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// `(before, sum of points)` of a series.
fn sums(series: &Value) -> (i64, i64) {
    let points = series["points"].as_array().unwrap();
    let sum = points.iter().map(|p| p["hits"].as_i64().unwrap()).sum();
    (series["before"].as_i64().unwrap(), sum)
}

/// Asserts that the hourly and daily series covering now add up to the
/// count, and returns the hourly `(before, sum)`.
async fn assert_series_add_up(app: &TestApp, slug: &str) -> (i64, i64) {
    let count = app.count(slug).await;
    let hourly = get_json(app, &format!("/api/v1/sites/{slug}/series?step=hour")).await;
    let daily = get_json(app, &format!("/api/v1/sites/{slug}/series?step=day")).await;
    let (h_before, h_sum) = sums(&hourly);
    let (d_before, d_sum) = sums(&daily);
    assert_eq!(h_before + h_sum, count, "{slug} hourly: {hourly}");
    assert_eq!(d_before + d_sum, count, "{slug} daily: {daily}");
    assert_eq!(hourly["points"].as_array().unwrap().len(), 48);
    assert_eq!(daily["points"].as_array().unwrap().len(), 30);
    (h_before, h_sum)
}

async fn put_count(app: &TestApp, slug: &str, count: i64) {
    let r = load::client()
        .put(app.url(&format!("/api/v1/sites/{slug}/count")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "count": count }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn reset(app: &TestApp, slug: &str) {
    let r = load::client()
        .post(app.url(&format!("/api/v1/sites/{slug}/reset")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn site_id(store: &Arc<dyn Store>, slug: &str) -> i64 {
    let slug = Slug::parse(slug).unwrap();
    store.site(&slug).await.unwrap().unwrap().id
}

/// The whole scenario against running servers; `invariant` reads
/// `count - base - sum(buckets)` for every site straight from the database.
async fn load_then_adjust(apps: &[TestApp], invariant: impl Fn() -> Vec<i64>) {
    create_sites(&apps[0]).await;
    load_sites(apps).await;
    let expected = [667, 667, 666];
    for (slug, n) in SITES.iter().zip(expected) {
        assert_eq!(apps[0].count(slug).await, n);
        // Fresh sites: every hit is in the last 48 hours, nothing before.
        assert_eq!(assert_series_add_up(&apps[0], slug).await, (0, n));
    }
    assert!(invariant().iter().all(|d| *d == 0), "{:?}", invariant());

    // Above the bucketed hits: the hours stay, the base takes the rest.
    put_count(&apps[0], "alpha", 5_000).await;
    assert_eq!(assert_series_add_up(&apps[0], "alpha").await, (4_333, 667));
    // Below them: the hours go.
    put_count(&apps[0], "beta", 100).await;
    assert_eq!(assert_series_add_up(&apps[0], "beta").await, (100, 0));
    reset(&apps[0], "gamma").await;
    assert_eq!(assert_series_add_up(&apps[0], "gamma").await, (0, 0));
    assert!(invariant().iter().all(|d| *d == 0), "{:?}", invariant());

    // Hits in an hour 500 days ago, then retention at 400 days folds it.
    let state = &apps[0].state;
    let alpha = site_id(&apps[0].store, "alpha").await;
    let old =
        tally::domain::time::hour_start(SystemTime::now() - Duration::from_secs(500 * 86_400));
    let written = apps[0]
        .store
        .add_anonymous_hits(old, &[(alpha, 7)])
        .await
        .unwrap();
    // Written past the counter: tell the cache, as the counter would.
    let total = written[0].counted().unwrap().total;
    apps[0].cache.publish(alpha, total);
    assert_eq!(apps[0].count("alpha").await, 5_007);
    let old_day = tally::domain::time::format_date(tally::domain::time::unix(old));
    let before_fold = get_json(
        &apps[0],
        &format!("/api/v1/sites/alpha/series?step=day&from={old_day}&to={old_day}T00:00:01Z"),
    )
    .await;
    assert_eq!(sums(&before_fold), (4_333, 7));

    let cutoff =
        tally::counting::retention::cutoff(SystemTime::now(), Duration::from_secs(400 * 86_400));
    assert_eq!(state.counting.series.prune_series(cutoff).await.unwrap(), 1);
    assert_eq!(state.counting.series.prune_series(cutoff).await.unwrap(), 0);
    assert_eq!(apps[0].count("alpha").await, 5_007);
    assert_eq!(assert_series_add_up(&apps[0], "alpha").await, (4_340, 667));
    let after_fold = get_json(
        &apps[0],
        &format!("/api/v1/sites/alpha/series?step=day&from={old_day}&to={old_day}T00:00:01Z"),
    )
    .await;
    assert_eq!(sums(&after_fold), (4_340, 0));
    assert!(invariant().iter().all(|d| *d == 0), "{:?}", invariant());

    // And more load on top of all that still adds up.
    load_sites(apps).await;
    for slug in SITES {
        assert_series_add_up(&apps[0], slug).await;
    }
    assert!(invariant().iter().all(|d| *d == 0), "{:?}", invariant());
}

const INVARIANT_SQL: &str = "SELECT v.visitor_count - v.base_count - coalesce(\
    (SELECT sum(h.hits) FROM hits_hourly h WHERE h.site_id = v.site_id), 0) \
    FROM visitors v ORDER BY v.site_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_series_add_up_to_counts_under_load_and_after_set_reset_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tally.db");
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let invariant = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn.prepare(INVARIANT_SQL).unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    load_then_adjust(std::slice::from_ref(&app), invariant).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_series_add_up_to_counts_under_load_through_two_instances() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let apps = vec![
        TestApp::spawn(&url, &[]).await,
        TestApp::spawn(&url, &[]).await,
    ];
    let invariant = || {
        pg.psql(&db, INVARIANT_SQL)
            .lines()
            .map(|l| l.trim().parse::<i64>().unwrap())
            .collect::<Vec<_>>()
    };
    load_then_adjust(&apps, invariant).await;
    for app in apps {
        app.stop().await.unwrap();
    }
}

/// A router with site `blog` holding 3 hits at 05:00, 2 at 07:00 and 4 at
/// 23:00 on 2026-01-10, 1 at 00:00 on the 11th, and a base count of 10.
async fn known_data() -> (Router, Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let (router, state) = (app.router(), app.state.clone());
    let got = call(
        &router,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog","count":10,"public":true}"#),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.2);
    let store = &app.store;
    let id = site_id(store, "blog").await;
    for (hour, n) in [(5, 3), (7, 2), (23, 4), (24, 1)] {
        store
            .add_anonymous_hits(at(JAN_10 + hour * H), &[(id, n)])
            .await
            .unwrap();
    }
    (router, state, dir)
}

#[tokio::test]
async fn hourly_series_is_zero_filled_and_exact() {
    let (r, _state, _dir) = known_data().await;
    let got = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?from=2026-01-10T04:00:00Z&to=2026-01-10T09:00:00Z",
        None,
        None,
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    assert_eq!(got.1["content-type"], "application/json");
    assert_eq!(
        json_of(&got.2),
        serde_json::json!({
            "site": "blog",
            "step": "hour",
            "from": "2026-01-10T04:00:00Z",
            "to": "2026-01-10T09:00:00Z",
            "before": 10,
            "points": [
                {"t": "2026-01-10T04:00:00Z", "hits": 0},
                {"t": "2026-01-10T05:00:00Z", "hits": 3},
                {"t": "2026-01-10T06:00:00Z", "hits": 0},
                {"t": "2026-01-10T07:00:00Z", "hits": 2},
                {"t": "2026-01-10T08:00:00Z", "hits": 0},
            ]
        })
    );
}

#[tokio::test]
async fn partial_hours_widen_to_whole_ones_and_offsets_are_honoured() {
    let (r, _state, _dir) = known_data().await;
    // 06:30+01:00 is 05:30Z, rounded down to 05:00; 07:10Z rounds up to 08:00.
    let got = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?from=2026-01-10T06:30:00%2B01:00&to=2026-01-10T07:10:00Z",
        None,
        None,
    )
    .await;
    let body = json_of(&got.2);
    assert_eq!(body["from"], "2026-01-10T05:00:00Z");
    assert_eq!(body["to"], "2026-01-10T08:00:00Z");
    assert_eq!(body["before"], 10);
    let hits: Vec<i64> = body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hits"].as_i64().unwrap())
        .collect();
    assert_eq!(hits, vec![3, 0, 2]);
}

#[tokio::test]
async fn daily_series_sums_utc_days() {
    let (r, _state, _dir) = known_data().await;
    let got = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?step=day&from=2026-01-09&to=2026-01-12",
        None,
        None,
    )
    .await;
    assert_eq!(
        json_of(&got.2),
        serde_json::json!({
            "site": "blog",
            "step": "day",
            "from": "2026-01-09",
            "to": "2026-01-12",
            "before": 10,
            "points": [
                {"t": "2026-01-09", "hits": 0},
                {"t": "2026-01-10", "hits": 9},
                {"t": "2026-01-11", "hits": 1},
            ]
        })
    );
    // A range that starts after some hours counts them in `before`.
    let got = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?step=day&from=2026-01-11&to=2026-01-12",
        None,
        None,
    )
    .await;
    let body = json_of(&got.2);
    assert_eq!(body["before"], 19);
    assert_eq!(
        body["points"],
        serde_json::json!([{"t": "2026-01-11", "hits": 1}])
    );
}

#[tokio::test]
async fn csv_is_exact() {
    let (r, _state, _dir) = known_data().await;
    let (status, headers, body) = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?from=2026-01-10T22:00:00Z&to=2026-01-11T02:00:00Z&format=csv",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        body,
        "t,hits\n\
         2026-01-10T22:00:00Z,0\n\
         2026-01-10T23:00:00Z,4\n\
         2026-01-11T00:00:00Z,1\n\
         2026-01-11T01:00:00Z,0\n"
    );
    let (_, _, body) = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?step=day&from=2026-01-10&to=2026-01-11&format=csv",
        None,
        None,
    )
    .await;
    assert_eq!(body, "t,hits\n2026-01-10,9\n");
}

#[tokio::test]
async fn the_default_range_is_the_last_48_hours_or_30_days() {
    let (r, _state, _dir) = known_data().await;
    let (_, _, body) = call(&r, Method::GET, "/api/v1/sites/blog/series", None, None).await;
    let body = json_of(&body);
    assert_eq!(body["step"], "hour");
    assert_eq!(body["points"].as_array().unwrap().len(), 48);
    assert_eq!(body["before"], 20);
    let (_, _, body) = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?step=day",
        None,
        None,
    )
    .await;
    let body = json_of(&body);
    assert_eq!(body["points"].as_array().unwrap().len(), 30);
    let today = tally::domain::time::format_date(tally::domain::time::unix(SystemTime::now()));
    assert_eq!(body["points"][29]["t"], today.as_str());
}

#[tokio::test]
async fn bad_parameters_are_400s_and_unknown_sites_404s() {
    let (r, _state, _dir) = known_data().await;
    for query in [
        "step=week",
        "step=",
        "format=xml",
        "from=yesterday",
        "from=2026-01-10T04:00:00",
        "to=2026-13-01",
        "from=1969-12-31",
        "from=2026-01-11&to=2026-01-10",
        "from=2026-01-10&to=2026-01-10",
        "from=2020-01-01&to=2026-01-01",
        "from=1970-01-01&to=9999-12-31&step=day",
        "colour=red",
        "from=%FF",
    ] {
        let (status, headers, body) = call(
            &r,
            Method::GET,
            &format!("/api/v1/sites/blog/series?{query}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(json_of(&body)["error"]["code"], "invalid_query", "{query}");
    }
    let (_, _, body) = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?from=2020-01-01&to=2026-01-01",
        None,
        None,
    )
    .await;
    let message = json_of(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("at most 10000"), "{message}");
    // 10 000 points exactly is fine.
    let (status, _, _) = call(
        &r,
        Method::GET,
        "/api/v1/sites/blog/series?from=2026-01-01T00:00:00Z&to=2027-02-21T16:00:00Z",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = call(&r, Method::GET, "/api/v1/sites/nope/series", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&body)["error"]["code"], "site_not_found");
    let (status, _, _) = call(&r, Method::GET, "/api/v1/sites/No!/series", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_task_folds_old_hours_when_tally_starts() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let app = TestApp::spawn(&url, &[]).await;
    let store = app.store.clone();
    let old = tally::domain::time::hour_start(SystemTime::now() - Duration::from_secs(10 * 86_400));
    store.add_anonymous_hits(old, &[(1, 5)]).await.unwrap();
    store
        .add_anonymous_hits(
            tally::domain::time::hour_start(SystemTime::now()),
            &[(1, 2)],
        )
        .await
        .unwrap();
    app.stop().await.unwrap();
    drop(store);

    let app = TestApp::spawn(&url, &["--series-retention", "3days"]).await;
    let store = app.store.clone();
    let mut folded = false;
    for _ in 0..200 {
        let dump = store.dump().await.unwrap();
        if dump[0].buckets.len() == 1 {
            assert_eq!(dump[0].base_count, 5);
            assert_eq!(dump[0].buckets[0].1, 2);
            assert_eq!(dump[0].site.count, 7);
            folded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(folded, "the old hour was not folded");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn retention_below_two_days_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = support::app::settings(&sqlite_url(dir.path()), &["--series-retention", "1day"]);
    let err = tally::Application::build(&settings)
        .unwrap_err()
        .to_string();
    assert!(err.contains("TALLY_SERIES_RETENTION"), "{err}");
}
