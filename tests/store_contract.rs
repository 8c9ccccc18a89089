//! The store's contract as a property, on SQLite and on a real PostgreSQL:
//! for any interleaving of hits, set-count, reset, import and retention
//! from several tasks at once, every site's count is its base count plus
//! its hours, a site that only gets hits has counted each acknowledged hit
//! exactly once (counts exactly 1..=N), and hits after the storm count on
//! from where it left off, gap-free.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;
use support::app::{TOKEN, call, router, sqlite_url};
use support::pg::PgServer;
use tally::http::AppState;

/// Sites the storm touches with every kind of write.
const MIXED: [&str; 2] = ["mixed-a", "mixed-b"];
/// The site that only ever gets hits (and has its hours folded).
const HITS_ONLY: &str = "hits-only";

#[derive(Debug, Clone)]
enum Op {
    Hit(usize),
    HitOnly,
    SetCount(usize, i64),
    Reset(usize),
    Import(usize, i64),
    /// Folds every hour, the current one too, into the base counts.
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    let site = 0..MIXED.len();
    prop_oneof![
        4 => site.clone().prop_map(Op::Hit),
        4 => Just(Op::HitOnly),
        1 => (site.clone(), 0i64..1000).prop_map(|(s, n)| Op::SetCount(s, n)),
        1 => site.clone().prop_map(Op::Reset),
        1 => (site, 0i64..1000).prop_map(|(s, n)| Op::Import(s, n)),
        1 => Just(Op::Retention),
    ]
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn apply(router: &Router, state: &AppState, op: &Op) -> Option<i64> {
    let (method, path, body) = match op {
        Op::Hit(s) => (
            Method::POST,
            format!("/api/v1/sites/{}/hits", MIXED[*s]),
            None,
        ),
        Op::HitOnly => (
            Method::POST,
            format!("/api/v1/sites/{HITS_ONLY}/hits"),
            None,
        ),
        Op::SetCount(s, n) => (
            Method::PUT,
            format!("/api/v1/sites/{}/count", MIXED[*s]),
            Some(format!("{{\"count\":{n}}}")),
        ),
        Op::Reset(s) => (
            Method::POST,
            format!("/api/v1/sites/{}/reset", MIXED[*s]),
            None,
        ),
        Op::Import(s, n) => (
            Method::POST,
            "/api/v1/import".to_owned(),
            Some(format!("[{{\"slug\":\"{}\",\"count\":{n}}}]", MIXED[*s])),
        ),
        Op::Retention => {
            let before = SystemTime::now() + Duration::from_secs(7200);
            state.counter.prune_series(before).await.expect("retention");
            return None;
        }
    };
    let (status, _, text) = call(router, method, &path, Some(TOKEN), body.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{op:?}: {text}");
    matches!(op, Op::HitOnly).then(|| json(&text)["count"].as_i64().unwrap())
}

/// Every site's `count == base_count + sum(hourly hits)`, and the count
/// API agrees with the export; returns the counts by slug.
async fn check_sums(router: &Router) -> Vec<(String, i64)> {
    let (status, _, text) = call(router, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut counts = Vec::new();
    for site in json(&text)["sites"].as_array().unwrap() {
        let slug = site["slug"].as_str().unwrap().to_owned();
        let count = site["count"].as_i64().unwrap();
        let hours: i64 = site["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["hits"].as_i64().unwrap())
            .sum();
        assert_eq!(
            count,
            site["base_count"].as_i64().unwrap() + hours,
            "{site}"
        );
        let (_, _, read) = call(
            router,
            Method::GET,
            &format!("/api/v1/sites/{slug}/count"),
            None,
            None,
        )
        .await;
        assert_eq!(json(&read)["count"].as_i64().unwrap(), count, "{slug}");
        counts.push((slug, count));
    }
    counts
}

async fn storm(database_url: String, tasks: Vec<Vec<Op>>) {
    let (router, state) = router(&database_url, &[]).await;
    for slug in MIXED.iter().chain([&HITS_ONLY]) {
        let body = format!("{{\"slug\":\"{slug}\"}}");
        let (status, _, text) = call(
            &router,
            Method::POST,
            "/api/v1/sites",
            Some(TOKEN),
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }
    let mut running = Vec::new();
    for ops in tasks {
        let (router, state) = (router.clone(), Arc::clone(&state));
        running.push(tokio::spawn(async move {
            let mut counts = Vec::new();
            for op in &ops {
                counts.extend(apply(&router, &state, op).await);
            }
            counts
        }));
    }
    let mut hits_only = Vec::new();
    for task in running {
        hits_only.extend(task.await.unwrap());
    }
    hits_only.sort_unstable();
    let n = hits_only.len() as i64;
    assert_eq!(
        hits_only,
        (1..=n).collect::<Vec<_>>(),
        "each hit counted once"
    );

    let before = check_sums(&router).await;
    assert!(before.contains(&(HITS_ONLY.to_owned(), n)), "{before:?}");

    // After the storm, 16 concurrent hits on every site count on gap-free.
    let mut after = Vec::new();
    for (slug, _) in &before {
        for _ in 0..16 {
            let (router, slug) = (router.clone(), slug.clone());
            after.push(tokio::spawn(async move {
                let path = format!("/api/v1/sites/{slug}/hits");
                let (status, _, text) = call(&router, Method::POST, &path, None, None).await;
                assert_eq!(status, StatusCode::OK, "{text}");
                (slug, json(&text)["count"].as_i64().unwrap())
            }));
        }
    }
    let mut got: Vec<(String, i64)> = Vec::new();
    for hit in after {
        got.push(hit.await.unwrap());
    }
    for (slug, start) in &before {
        let mut counts: Vec<i64> = got
            .iter()
            .filter(|(s, _)| s == slug)
            .map(|(_, c)| *c)
            .collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (start + 1..=start + 16).collect::<Vec<_>>(),
            "{slug}"
        );
    }
    let end = check_sums(&router).await;
    for ((slug, start), (slug_after, count)) in before.iter().zip(&end) {
        assert_eq!((slug, start + 16), (slug_after, *count));
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn tasks() -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(prop::collection::vec(op(), 0..16), 3)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        // Each case is a whole storm against a fresh database.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/store_contract.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(24))]
    #[test]
    fn the_contract_holds_on_sqlite(tasks in tasks()) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(storm(sqlite_url(dir.path()), tasks));
    }
}

fn postgres() -> &'static PgServer {
    static PG: OnceLock<PgServer> = OnceLock::new();
    PG.get_or_init(PgServer::start)
}

proptest! {
    #![proptest_config(config(12))]
    #[test]
    fn the_contract_holds_on_postgres(tasks in tasks()) {
        let url = postgres().create_database();
        runtime().block_on(storm(url, tasks));
    }
}
