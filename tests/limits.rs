//! The edges of what tally accepts and writes: counts at their maximum,
//! JSON bodies that say one thing twice, series ranges at the end of what
//! a timestamp can say, and CSV cells a spreadsheet would run.

mod support;

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::json;
use support::app::{TOKEN, TestApp, admin_via, call, count_via, hit_via, json_of, sqlite_url};
use tally::store::{Limits, Outcome, SiteHits};

/// 2^53 - 1, the documented maximum count.
const MAX: i64 = 9_007_199_254_740_991;

/// The series of `slug` adds up to its count: no refused hit reached a bucket.
async fn assert_series_adds_up(r: &Router, slug: &str) {
    let path = format!("/api/v1/sites/{slug}/series?step=day");
    let (status, _, body) = call(r, Method::GET, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series = json_of(&body);
    let hits: i64 = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hits"].as_i64().unwrap())
        .sum();
    assert_eq!(
        series["before"].as_i64().unwrap() + hits,
        count_via(r, slug).await
    );
}

async fn hits_past_the_maximum_are_refused(r: &TestApp) {
    for (slug, count) in [("full", MAX - 3), ("other", 0)] {
        let body = json!({ "slug": slug, "count": count }).to_string();
        let (status, created) = admin_via(r, Method::POST, "/api/v1/sites", Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }

    // Concurrent hits share commits: a batch that would pass the maximum
    // is refused whole, and the other site's hits in it are counted.
    let hits = (0..32).map(|i| hit_via(r, if i % 2 == 0 { "full" } else { "other" }));
    let outcomes = futures::future::join_all(hits).await;
    let (full, other): (Vec<_>, Vec<_>) = outcomes
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let mut acked: Vec<i64> = Vec::new();
    for (_, (status, detail)) in full {
        match status {
            StatusCode::OK => acked.push(detail.as_i64().unwrap()),
            StatusCode::CONFLICT => assert_eq!(detail, json!("count_limit")),
            other => panic!("{other}: {detail}"),
        }
    }
    acked.sort_unstable();
    let acknowledged = acked.len();
    acked.dedup();
    assert_eq!(acked.len(), acknowledged, "counts given twice");
    assert!(acked.len() <= 3, "{acked:?}");
    assert!(
        acked.iter().all(|c| (MAX - 2..=MAX).contains(c)),
        "{acked:?}"
    );
    assert_eq!(count_via(r, "full").await, MAX - 3 + acked.len() as i64);
    let mut counts: Vec<i64> = other
        .into_iter()
        .map(|(_, (status, count))| {
            assert_eq!(status, StatusCode::OK, "{count}");
            count.as_i64().unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=16).collect::<Vec<_>>());

    // One below the maximum: one more hit fits, the next is refused.
    let (status, _) = admin_via(
        r,
        Method::PUT,
        "/api/v1/sites/full/count",
        Some(&json!({ "count": MAX - 1 }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hit_via(r, "full").await, (StatusCode::OK, json!(MAX)));
    let (status, _, body) = call(r, Method::POST, "/api/v1/sites/full/hits", None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let error = &json_of(&body)["error"];
    assert_eq!(error["code"], "count_limit");
    assert!(error["message"].as_str().unwrap().contains("2^53 - 1"));
    assert_eq!(count_via(r, "full").await, MAX);
    // The seed's route is refused the same way.
    let (status, _) = admin_via(
        r,
        Method::PUT,
        "/api/v1/sites/default/count",
        Some(&json!({ "count": MAX }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(r, Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(json_of(&body)["error"]["code"], "count_limit");
    assert_eq!(count_via(r, "default").await, MAX);
    assert_series_adds_up(r, "full").await;
    assert_series_adds_up(r, "default").await;
    assert_eq!(hit_via(r, "other").await, (StatusCode::OK, json!(17)));
}

on_both_stores!(hits_past_the_maximum_are_refused);

#[tokio::test]
async fn json_bodies_with_a_key_twice_or_an_array_for_an_object_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let refused = [
        (
            "/api/v1/sites",
            Method::POST,
            r#"{"slug":"blog","slug":"evil"}"#,
        ),
        (
            "/api/v1/sites",
            Method::POST,
            r#"{"slug":"blog","count":1,"count":5}"#,
        ),
        ("/api/v1/sites", Method::POST, r#"["blog","Blog",5]"#),
        (
            "/api/v1/sites/default/count",
            Method::PUT,
            r#"{"count":1,"count":5}"#,
        ),
        ("/api/v1/sites/default/count", Method::PUT, "[5]"),
    ];
    for (path, method, body) in refused {
        let (status, _, reply) = call(&r, method, path, Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(json_of(&reply)["error"]["code"], "invalid_body", "{body}");
    }
    // Nothing was written.
    let (_, listed) = admin_via(&r, Method::GET, "/api/v1/sites", Some("")).await;
    let slugs: Vec<&str> = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["default"]);
    assert_eq!(count_via(&r, "default").await, 0);
    // The same bodies, said once and as objects, are taken.
    let (status, site) = admin_via(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(r#"{"slug":"blog","count":5}"#),
    )
    .await;
    assert_eq!(
        (status, site["count"].clone()),
        (StatusCode::CREATED, json!(5))
    );
    let (status, set) = admin_via(
        &r,
        Method::PUT,
        "/api/v1/sites/blog/count",
        Some(r#"{"count":7}"#),
    )
    .await;
    assert_eq!((status, set["count"].clone()), (StatusCode::OK, json!(7)));
}

#[tokio::test]
async fn a_series_never_ends_past_year_9999() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let series = |query: &str| {
        let path = format!("/api/v1/sites/default/series?{query}");
        let r = r.clone();
        async move { call(&r, Method::GET, &path, Some(TOKEN), None).await }
    };
    for query in [
        "from=9999-12-31T20:00:00Z&to=9999-12-31T23:30:00Z",
        "from=9999-12-31T23:00:01Z",
        "step=day&from=9999-12-30&to=9999-12-31T00:00:01Z",
    ] {
        let (status, _, body) = series(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = &json_of(&body)["error"];
        assert_eq!(error["code"], "invalid_query", "{query}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("must end by 9999-12-31"),
            "{body}"
        );
    }
    let (status, _, body) = series("from=9999-12-31T21:00:00Z&to=9999-12-31T23:00:00Z").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = json_of(&body);
    assert_eq!(
        (got["from"].clone(), got["to"].clone()),
        (json!("9999-12-31T21:00:00Z"), json!("9999-12-31T23:00:00Z"))
    );
    let (status, _, csv) = series("step=day&from=9999-12-30&to=9999-12-31&format=csv").await;
    assert_eq!(
        (status, csv.as_str()),
        (StatusCode::OK, "t,hits\n9999-12-30,0\n")
    );
}

/// At the maximum, a retried request (same id) still gets its first
/// count: it counts nothing. Checked on the store, whatever the HTTP layer
/// decides to trust as a request id.
async fn a_repeat_at_the_maximum_gets_its_first_count(app: &TestApp) {
    let r = &app.router;
    for (slug, count) in [("full", MAX - 1), ("other", 0)] {
        let body = json!({ "slug": slug, "count": count }).to_string();
        let (status, _) = admin_via(r, Method::POST, "/api/v1/sites", Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let store = &app.store;
    let (full, other) = (2, 3);
    let add = |hits: Vec<SiteHits>| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let hour = tally::domain::time::hour_start(SystemTime::now());
        let outcomes = store
            .add_hits(hour, &hits, Limits::pages(10), deadline)
            .await
            .unwrap();
        outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Counted(c) => Ok(c.counts),
                refused => Err(refused),
            })
            .collect::<Vec<_>>()
    };
    let keyed = |site, keys: &[Option<&str>]| SiteHits {
        site,
        keys: keys.iter().map(|k| k.map(Box::from)).collect(),
        pages: vec![None; keys.len()],
        ..SiteHits::default()
    };
    assert_eq!(add(vec![keyed(full, &[Some("r1")])]).await, [Ok(vec![MAX])]);
    assert_eq!(add(vec![keyed(full, &[Some("r1")])]).await, [Ok(vec![MAX])]);
    assert_eq!(
        add(vec![keyed(full, &[Some("r1")]), keyed(other, &[None])]).await,
        [Ok(vec![MAX]), Ok(vec![1])]
    );
    assert_eq!(
        add(vec![
            keyed(full, &[Some("r2")]),
            keyed(other, &[Some("o1")])
        ])
        .await,
        [Err(Outcome::AtLimit), Ok(vec![2])]
    );
    assert_eq!(
        add(vec![keyed(full, &[Some("r1"), None])]).await,
        [Err(Outcome::AtLimit)]
    );
    assert_eq!(add(vec![keyed(99, &[None])]).await, [Err(Outcome::NoSite)]);
    assert_eq!(count_via(r, "full").await, MAX);
    assert_eq!(count_via(r, "other").await, 2);
}

on_both_stores!(a_repeat_at_the_maximum_gets_its_first_count);
