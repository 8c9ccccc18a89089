//! The group-commit writer when a commit fails on SQLite: every waiter of
//! the failed batch is answered 503 within the store timeout, nothing of
//! it is written, and the batches after it commit as if nothing happened.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::app::{TestApp, get_text, parse_greeting, sqlite_url};
use support::load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_waiter_and_the_next_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store_timeout = Duration::from_secs(1);
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--store-timeout", "1s"]).await;
    let client = load::client();
    let hit = |client: reqwest::Client, url: String| async move {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (status, body, started.elapsed())
    };
    assert_eq!(
        parse_greeting(&hit(client.clone(), app.url("/")).await.1),
        Some(1)
    );
    // What a batch of eight takes here and now, with the store free.
    let mut baseline = Duration::ZERO;
    let mut counts = Vec::new();
    let first: Vec<_> = (0..8)
        .map(|_| tokio::spawn(hit(client.clone(), app.url("/"))))
        .collect();
    for f in first {
        let (status, body, took) = f.await.unwrap();
        assert_eq!(status, 200, "{body}");
        baseline = baseline.max(took);
        counts.push(parse_greeting(&body).unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (2..=9).collect::<Vec<i64>>());

    // Another process holds SQLite's write lock for longer than the store
    // timeout: the writer's commit fails.
    let locker = rusqlite::Connection::open(dir.path().join("tally.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let waiting: Vec<_> = (0..8)
        .map(|_| tokio::spawn(hit(client.clone(), app.url("/"))))
        .collect();
    let mut answers = Vec::new();
    for w in waiting {
        answers.push(w.await.unwrap());
    }
    locker.execute_batch("COMMIT").unwrap();
    // One store timeout, and what a batch takes besides: not a second
    // timeout, nor the lock's release (which waits for these answers).
    let within = store_timeout * 2 + baseline * 4;
    for (status, body, took) in &answers {
        assert_eq!(*status, 503, "{body}");
        let error: Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["error"]["code"], "store_unavailable", "{body}");
        assert!(
            *took < within,
            "answered after {took:?}, beyond {within:?} (a free batch took {baseline:?})"
        );
    }

    // Nothing of the failed batch was written; the next ones commit, at
    // once, gap-free.
    let at_once = baseline * 4 + Duration::from_millis(100);
    let mut counts = Vec::new();
    let next: Vec<_> = (0..8)
        .map(|_| tokio::spawn(hit(client.clone(), app.url("/"))))
        .collect();
    for n in next {
        let (status, body, took) = n.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            took < at_once,
            "{took:?}, beyond {at_once:?} (a free batch took {baseline:?})"
        );
        counts.push(parse_greeting(&body).unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (10..=17).collect::<Vec<i64>>());
    let metrics = get_text(&app.url("/metrics")).await;
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tally_commit_failures_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_ne!(failures, "0", "{metrics}");
}
