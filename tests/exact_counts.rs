//! Exact counts under concurrency: N acknowledged hits add exactly N, and the
//! counts `/` returns are exactly {1..N}, on SQLite with one instance and on
//! PostgreSQL with three instances sharing one database.

mod support;

use std::sync::Arc;

use reqwest::Method;
use support::app::{TOKEN, TestApp, get_text, parse_greeting, sqlite_url};
use support::load::{self, Until};
use support::pg::{PgOptions, PgServer};

const HITS: usize = 20_000;
const CLIENTS: usize = 128;

/// The counts in the greetings, sorted, after asserting every answer was 200.
fn greeting_counts(outcomes: &[load::Outcome]) -> Vec<i64> {
    assert_eq!(
        load::statuses(outcomes).into_iter().collect::<Vec<_>>(),
        vec![(200, outcomes.len())],
        "every hit must be acknowledged"
    );
    let mut counts: Vec<i64> = outcomes
        .iter()
        .map(|o| parse_greeting(&o.body).unwrap_or_else(|| panic!("not a greeting: {:?}", o.body)))
        .collect();
    counts.sort_unstable();
    counts
}

fn one_to(n: usize) -> Vec<i64> {
    (1..=n as i64).collect()
}

fn mean_batch(app: &TestApp) -> f64 {
    let text = app.state.metrics.render(0);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim().parse::<f64>().unwrap())
            })
            .unwrap()
    };
    value("tally_commit_batch_size_sum ") / value("tally_commit_batch_size_count ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_20000_concurrent_hits_are_exact_and_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let outcomes = load::run(&[app.url("/")], Method::GET, CLIENTS, Until::Requests(HITS)).await;
    assert_eq!(outcomes.len(), HITS);
    assert_eq!(greeting_counts(&outcomes), one_to(HITS));
    assert_eq!(app.count("default").await, HITS as i64);
    println!("sqlite: mean commit batch {:.1} hits", mean_batch(&app));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_20000_hits_through_three_instances_are_exact_and_gap_free() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(TestApp::spawn(&url, &[]).await);
    }
    let urls: Vec<String> = apps.iter().map(|a| a.url("/")).collect();
    let outcomes = load::run(&urls, Method::GET, CLIENTS, Until::Requests(HITS)).await;
    assert_eq!(outcomes.len(), HITS);
    assert_eq!(greeting_counts(&outcomes), one_to(HITS));
    assert_eq!(apps[0].count("default").await, HITS as i64);
    assert_eq!(
        pg.psql(
            &db_name(&url),
            "SELECT visitor_count FROM visitors WHERE site_id = 1"
        ),
        "20000"
    );
    // The hourly buckets hold the same hits (one or two hours if the test straddles one).
    assert_eq!(
        pg.psql(
            &db_name(&url),
            "SELECT sum(hits) FROM hits_hourly WHERE site_id = 1"
        ),
        "20000"
    );
    for app in &apps {
        println!("postgres: mean commit batch {:.1} hits", mean_batch(app));
    }
    for app in apps {
        app.stop().await.unwrap();
    }
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// The seed loses 19 to 25 of 1280 hits here: a reset, then 64 clients at
/// the same instant.
async fn reset_then_simultaneous_clients(apps: &[TestApp]) {
    let client = load::client();
    for _ in 0..5 {
        client.get(apps[0].url("/")).send().await.unwrap();
    }
    let reset = client
        .get(apps[0].url("/resetcounter"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (client, start, url) = (client.clone(), start.clone(), apps[i % apps.len()].url("/"));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            load::send(&client, Method::GET, &url).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(greeting_counts(&outcomes), one_to(64));
    assert_eq!(apps[0].count("default").await, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reset_then_64_simultaneous_clients_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    reset_then_simultaneous_clients(std::slice::from_ref(&app)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reset_then_64_simultaneous_clients_lose_nothing() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(TestApp::spawn(&url, &[]).await);
    }
    reset_then_simultaneous_clients(&apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hits_on_many_sites_in_one_batch_are_each_exact() {
    // Several sites in every batch exercise the multi-site transaction.
    let pg = PgServer::start();
    let url = pg.create_database();
    let apps = [
        TestApp::spawn(&url, &[]).await,
        TestApp::spawn(&url, &[]).await,
    ];
    let client = load::client();
    let slugs = ["a", "b", "c", "d"];
    for slug in slugs {
        let created = client
            .post(apps[0].url("/api/v1/sites"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "slug": slug }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let urls: Vec<String> = apps
        .iter()
        .flat_map(|a| {
            slugs
                .iter()
                .map(|s| a.url(&format!("/api/v1/sites/{s}/hits")))
        })
        .collect();
    // 8 URLs round-robin: each site gets exactly 1000 of the 4000 hits.
    let outcomes = load::run(&urls, Method::POST, 64, Until::Requests(4000)).await;
    let mut per_site: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for o in &outcomes {
        assert_eq!(o.status, Some(200), "{}", o.body);
        let body: serde_json::Value = serde_json::from_str(&o.body).unwrap();
        per_site
            .entry(body["site"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["count"].as_i64().unwrap());
    }
    for slug in slugs {
        let mut counts = per_site.remove(slug).unwrap();
        counts.sort_unstable();
        assert_eq!(counts, one_to(1000), "site {slug}");
    }
}

/// `GET url` with this `X-Request-Id`: answered 200, the count it gives.
async fn hit_with_id(client: reqwest::Client, url: String, id: String) -> i64 {
    let r = client
        .get(url)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    parse_greeting(&r.text().await.unwrap()).unwrap()
}

/// A request retried with the same `X-Request-Id` (NGINX after a replica
/// died) is counted once and answered with its first count.
async fn retried_requests_count_once(urls: &[String]) {
    let client = load::client();
    let hit = |url: String, id: String| hit_with_id(client.clone(), url, id);
    assert_eq!(hit(urls[0].clone(), "req-a".into()).await, 1);
    assert_eq!(
        hit(urls[urls.len() - 1].clone(), "req-a".into()).await,
        1,
        "a retry gets the first count"
    );
    assert_eq!(hit(urls[0].clone(), "req-b".into()).await, 2);
    // 200 requests with 100 ids, each sent twice at once to different instances.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = urls[i % urls.len()].clone();
        tasks.push(tokio::spawn(hit(url, format!("dup-{}", i / 2))));
    }
    let mut by_id: std::collections::BTreeMap<usize, Vec<i64>> = Default::default();
    for (i, t) in tasks.into_iter().enumerate() {
        by_id.entry(i / 2).or_default().push(t.await.unwrap());
    }
    let mut firsts: Vec<i64> = by_id
        .values()
        .map(|c| {
            assert_eq!(c[0], c[1], "both sends of one request get one count");
            c[0]
        })
        .collect();
    firsts.sort_unstable();
    assert_eq!(firsts, (3..=102).collect::<Vec<i64>>());
    // Requests without an id are each counted.
    let plain = get_text(&urls[0]).await;
    assert_eq!(parse_greeting(&plain), Some(103));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_requests_count_once_on_postgres_across_instances() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let apps = [
        TestApp::spawn(&url, &[]).await,
        TestApp::spawn(&url, &[]).await,
    ];
    let urls: Vec<String> = apps.iter().map(|a| a.url("/")).collect();
    retried_requests_count_once(&urls).await;
    // The 102 ids are recorded as hashes, one row per committed batch, and
    // no longer as one indexed row each.
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT sum(cardinality(keys)) FROM hit_batches"),
        "102"
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM hit_requests"), "0");
}

/// A database and two replicas on it.
async fn two_replicas() -> (PgServer, String, TestApp, TestApp) {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = TestApp::spawn(&url, &[]).await;
    let b = TestApp::spawn(&url, &[]).await;
    (pg, url, a, b)
}

/// `GET /` on `app` with this `X-Request-Id`: the count it gives.
async fn hit_at(app: &TestApp, id: impl Into<String>) -> i64 {
    hit_with_id(load::client(), app.url("/"), id.into()).await
}

/// A request first counted by one replica, in a batch long followed by
/// others, and resent to another replica that has restarted since (so it
/// knows nothing of the batch from memory) is counted once and gets its
/// first count; so it is on the first replica after it restarted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_restart_gets_the_count_another_replica_committed() {
    let (pg, url, a, b) = two_replicas().await;
    assert_eq!(hit_at(&a, "first").await, 1);
    // Later batches on both replicas, with ids of their own.
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(hit_at(app, format!("later-{i}")).await, i + 2);
    }
    b.stop().await.unwrap();
    let b = TestApp::spawn(&url, &[]).await;
    assert_eq!(
        hit_at(&b, "first").await,
        1,
        "the retry gets its first count"
    );
    assert_eq!(hit_at(&b, "later-7").await, 9);
    a.stop().await.unwrap();
    let a = TestApp::spawn(&url, &[]).await;
    assert_eq!(hit_at(&a, "first").await, 1);
    assert_eq!(hit_at(&a, "fresh").await, 22);
    assert_eq!(a.count("default").await, 22);
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT sum(cardinality(keys)) FROM hit_batches"),
        "22"
    );
}

/// A replica whose last word from a site is older than its memory of
/// contention (a second) commits a lone site's batch in one round trip,
/// checked against the site's newest batch: a retry of an id another
/// replica committed meanwhile is found and gets its first count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_replica_finds_the_batch_another_committed_since() {
    let (pg, url, a, b) = two_replicas().await;
    assert_eq!(hit_at(&a, "a-1").await, 1);
    assert_eq!(hit_at(&b, "b-1").await, 2);
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        let id = format!("a-{}", round + 2);
        let first = 3 + 2 * round;
        assert_eq!(hit_at(&a, id.clone()).await, first);
        assert_eq!(
            hit_at(&b, id).await,
            first,
            "the retry gets its first count"
        );
        assert_eq!(hit_at(&b, format!("b-{}", round + 2)).await, first + 1);
    }
    assert_eq!(a.count("default").await, 8);
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT sum(cardinality(keys)) FROM hit_batches"),
        "8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_requests_count_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    retried_requests_count_once(&[app.url("/")]).await;
}

/// What a commit sends PostgreSQL, as pg_stat_statements counts it: a
/// replica alone on a site commits each batch of its keyed hits in one
/// counting statement, with no lock statement and no read of
/// `hit_batches`; once another replica has written to the site, the next
/// commit's check fails, and it locks the site and reads the one batch it
/// had not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_replica_commits_in_one_statement_and_reads_no_batch() {
    let pg = PgServer::start_with(PgOptions {
        settings: vec![
            "shared_preload_libraries=pg_stat_statements".to_owned(),
            "pg_stat_statements.track=all".to_owned(),
        ],
        ..PgOptions::default()
    });
    let url = pg.create_database();
    let db = db_name(&url);
    pg.psql(&db, "CREATE EXTENSION pg_stat_statements");
    let calls = |pattern: &str| -> i64 {
        pg.psql(
            &db,
            &format!(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
                 WHERE query LIKE '%{pattern}%'"
            ),
        )
        .parse()
        .unwrap()
    };
    let lock = "FOR UPDATE";
    let reads = "FROM hit_batches WHERE site_id";
    let at_once = "last_batch <= $6::bigint";
    // A commit that succeeded leaves nothing to roll back.
    let rollback = "ROLLBACK";

    let a = TestApp::spawn(&url, &[]).await;
    // A replica's first keyed commit reads its site's last minute.
    assert_eq!(hit_at(&a, "warm-up").await, 1);
    pg.psql(&db, "SELECT pg_stat_statements_reset()");
    for i in 0..40 {
        assert_eq!(hit_at(&a, format!("lone-{i}")).await, i + 2);
    }
    assert_eq!(
        (calls(lock), calls(reads), calls(at_once), calls(rollback)),
        (0, 0, 40, 0),
        "(lock statements, batch reads, one-flight counts, rollbacks)"
    );
    // Hits on pages take the locking path; alone on the site, it reads no
    // batch either.
    pg.psql(&db, "SELECT pg_stat_statements_reset()");
    let client = load::client();
    for i in 0..10 {
        let pixel = client
            .get(a.url("/count/default.gif?page=/a"))
            .header("x-request-id", format!("page-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(pixel.status(), 200);
    }
    assert_eq!(a.count("default").await, 51);
    assert_eq!(
        (calls(lock), calls(reads), calls(at_once), calls(rollback)),
        (10, 0, 0, 0),
        "(lock statements, batch reads, one-flight counts, rollbacks)"
    );

    let b = TestApp::spawn(&url, &[]).await;
    assert_eq!(hit_at(&b, "from-b").await, 52);
    pg.psql(&db, "SELECT pg_stat_statements_reset()");
    assert_eq!(hit_at(&a, "after-b").await, 53);
    assert_eq!(
        (calls(lock), calls(reads), calls(at_once), calls(rollback)),
        (1, 1, 1, 0),
        "(lock statements, batch reads, one-flight counts, rollbacks)"
    );
    // The one-flight breakdowns went out behind the failed count and wrote
    // nothing; the locking path wrote them: each of the 11 dimensions'
    // values add up to the count, every hit once.
    assert_eq!(calls("pg_current_xact_id_if_assigned"), 1);
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*), min(n), max(n) FROM (SELECT dimension, sum(hits) AS n \
             FROM site_breakdowns GROUP BY dimension) d"
        ),
        "11|53|53"
    );
    // And a retry of b's id on a is b's count, read from b's batch.
    assert_eq!(hit_at(&a, "from-b").await, 52);
    assert_eq!(a.count("default").await, 53);
}

/// An import over a site sets its count anew, as a set-count does: a
/// request counted before it and resent after it is a new hit, on every
/// replica (PostgreSQL) and on SQLite.
async fn a_retry_after_an_import_is_a_new_hit(a: &TestApp, b: &TestApp) {
    assert_eq!(hit_at(a, "before-import").await, 1);
    assert_eq!(hit_at(b, "before-import-b").await, 2);
    let imported = load::client()
        .post(a.url("/api/v1/import"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!([{ "slug": "default", "count": 10 }]))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200, "{}", imported.text().await.unwrap());
    assert_eq!(hit_at(b, "before-import").await, 11);
    assert_eq!(hit_at(a, "before-import-b").await, 12);
    // Resent again, each is now the hit it was counted as after the import.
    assert_eq!(hit_at(a, "before-import").await, 11);
    assert_eq!(a.count("default").await, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_an_import_is_a_new_hit_on_postgres() {
    let (_pg, _url, a, b) = two_replicas().await;
    a_retry_after_an_import_is_a_new_hit(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_an_import_is_a_new_hit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    a_retry_after_an_import_is_a_new_hit(&app, &app).await;
}

/// A commit that fails before it sends its `COMMIT` (here its lock waits
/// past the database's `lock_timeout`, while another session holds the
/// site's row) rolls its transaction back, so the connection goes back to
/// the pool out of any transaction: no session of the replica is left idle
/// in an aborted transaction, and the next hits count on the first try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_before_committing_leaves_no_transaction_open() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url);
    pg.psql(
        &db,
        &format!("ALTER DATABASE {db} SET lock_timeout = '200ms'"),
    );
    let a = TestApp::spawn(&url, &["--store-timeout", "1s"]).await;
    let client = load::client();
    let pixel = |id: &str| {
        client
            .get(a.url("/count/default.gif?page=/a"))
            .header("x-request-id", id)
            .send()
    };
    // Hits on a page take the locking path: the lock is its own statement.
    assert_eq!(pixel("first").await.unwrap().status(), 200);
    assert_eq!(a.count("default").await, 1);

    let holder = hold_default_site(&url).await;
    let refused = pixel("while-locked").await.unwrap().status();
    assert_eq!(refused, 503, "a hit whose lock timed out");
    holder.batch_execute("ROLLBACK").await.unwrap();

    let aborted = pg.psql(
        &db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
             AND state = 'idle in transaction (aborted)'"
        ),
    );
    assert_eq!(aborted, "0", "sessions left in an aborted transaction");
    for (i, id) in ["after-1", "after-2", "after-3"].into_iter().enumerate() {
        assert_eq!(pixel(id).await.unwrap().status(), 200, "{id}");
        assert_eq!(a.count("default").await, i as i64 + 2);
    }
}

/// A retry that joins a batch while the batch waits for its site's lock
/// (another session holds the row) is found in the older batch that
/// counted it, which only the retry's own hash leads to: counted once and
/// answered with its first count, beside the batch's fresh hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_joins_a_batch_waiting_for_its_lock_is_counted_once() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = TestApp::spawn(&url, &[]).await;
    let client = load::client();
    assert_eq!(hit_at(&a, "first").await, 1);

    let holder = hold_default_site(&url).await;
    // A hit on a page takes the locking path and waits for the lock...
    let on_page = tokio::spawn(
        client
            .get(a.url("/count/default.gif?page=/a"))
            .header("x-request-id", "fresh")
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...and the retry queued meanwhile joins its batch once it has it.
    let retry = tokio::spawn(hit_with_id(client.clone(), a.url("/"), "first".into()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    holder.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(on_page.await.unwrap().unwrap().status(), 200);
    assert_eq!(retry.await.unwrap(), 1, "the retry gets its first count");
    assert_eq!(a.count("default").await, 2);
}

/// A session of its own that holds the default site's row lock until it
/// rolls back.
async fn hold_default_site(url: &str) -> tokio_postgres::Client {
    let (holder, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute("BEGIN; SELECT 1 FROM visitors WHERE slug = 'default' FOR UPDATE")
        .await
        .unwrap();
    holder
}
