//! PostgreSQL specifics: adopting the seed's database, migrations racing
//! between replicas, the API on PostgreSQL, and surviving a store outage.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, call, settings};
use support::pg::PgServer;
use tally::Application;

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

fn seed_database(pg: &PgServer) -> String {
    let url = pg.create_database();
    pg.psql_file(
        &db_name(&url),
        Path::new("tests/fixtures/seed/postgres/init.sql"),
    );
    url
}

#[tokio::test]
async fn a_seed_database_is_adopted_and_keeps_its_count() {
    let pg = PgServer::start();
    let url = seed_database(&pg);
    let db = db_name(&url);
    pg.psql(
        &db,
        "UPDATE visitors SET visitor_count = 41 WHERE site_id = 1",
    );

    let r = TestApp::spawn(&url, &[]).await;
    let state = r.state.clone();
    let (status, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello Linode!  This page has been viewed 42 time(s).");

    // The seed's row became the default site, its name the slug.
    let (_, _, body) = call(&r, Method::GET, "/api/v1/sites", Some(TOKEN), None).await;
    let sites: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sites["sites"].as_array().unwrap().len(), 1);
    assert_eq!(sites["sites"][0]["slug"], "linodeexample.com");
    assert_eq!(sites["sites"][0]["name"], "linodeexample.com");
    assert_eq!(sites["sites"][0]["count"], 42);

    // The seed's own queries still work on the upgraded table.
    assert_eq!(
        pg.psql(&db, "SELECT visitor_count FROM visitors where site_id = 1;"),
        "42"
    );
    state.counting.hits.close().await;

    // A second start finds nothing to migrate and keeps counting.
    let r = TestApp::spawn(&url, &[]).await;
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 43 time(s).");
    let all: Vec<String> = tally::store::migrate::POSTGRES
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    assert_eq!(
        pg.psql(
            &db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM tally_migrations"
        ),
        all.join(",")
    );
    // The adopted count is in no hour: it is the base of the series.
    assert_eq!(
        pg.psql(
            &db,
            "SELECT base_count + (SELECT sum(hits) FROM hits_hourly WHERE site_id = 1) \
             || '/' || base_count FROM visitors WHERE site_id = 1"
        ),
        "43/41"
    );
    // New sites get ids past the seed's.
    let (status, _, _) = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        pg.psql(&db, "SELECT site_id FROM visitors WHERE slug = 'blog'"),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_migrating_at_once_apply_each_migration_once() {
    let pg = PgServer::start();
    let url = seed_database(&pg);
    pg.psql(&db_name(&url), "UPDATE visitors SET visitor_count = 7");
    let builds = (0..3).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let app = Application::build(&settings(&url, &[])).unwrap();
            app.ready(Duration::from_secs(20)).await.unwrap();
            app
        })
    });
    let apps: Vec<Application> = futures::future::join_all(builds)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM tally_migrations"),
        tally::store::migrate::POSTGRES.len().to_string()
    );
    assert_eq!(
        pg.psql(&db, "SELECT visitor_count FROM visitors WHERE site_id = 1"),
        "7"
    );
    let (_, _, body) = call(&apps[2].router(), Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 8 time(s).");
}

#[tokio::test]
async fn the_api_works_the_same_on_postgres() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let r = TestApp::spawn(&url, &[]).await;
    let t = Some(TOKEN);
    let (status, headers, body) = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        t,
        Some(r#"{"slug":"blog","name":"My blog","count":5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/api/v1/sites/blog");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            created["slug"].clone(),
            created["name"].clone(),
            created["count"].clone()
        ),
        (json!("blog"), json!("My blog"), json!(5))
    );
    let (status, _, _) = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        t,
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, _, body) = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"site": "blog", "count": 6})
    );
    let (_, _, body) = call(
        &r,
        Method::PUT,
        "/api/v1/sites/blog/count",
        t,
        Some(r#"{"count":100}"#),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"site": "blog", "count": 100})
    );
    let (_, _, body) = call(&r, Method::GET, "/api/v1/sites/blog/count", None, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"site": "blog", "count": 100})
    );
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 1 time(s).");
    let (status, _, _) = call(&r, Method::DELETE, "/api/v1/sites/blog", t, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let db = db_name(&url);
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM hits_hourly WHERE site_id = 2"),
        "0",
        "buckets go with their site"
    );
    let (_, _, body) = call(&r, Method::GET, "/readyz", None, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["store"],
        json!({"backend": "postgres", "state": "up"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_gives_503_with_retry_after_then_recovers_by_itself() {
    let mut pg = PgServer::start();
    let url = pg.create_database();
    let app = TestApp::spawn(&url, &["--store-timeout", "1s"]).await;
    let client = support::load::client();
    let hit = || client.get(app.url("/")).send();
    assert_eq!(
        hit().await.unwrap().text().await.unwrap(),
        "Hello Linode!  This page has been viewed 1 time(s)."
    );

    pg.kill();
    for _ in 0..5 {
        let response = hit().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
    }
    let ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let read = client
        .get(app.url("/api/v1/sites/default/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503);

    pg.restart();
    let back = Instant::now();
    let recovered = loop {
        let response = hit().await.unwrap();
        if response.status() == 200 {
            break response.text().await.unwrap();
        }
        assert_eq!(response.status(), 503, "only 503 while recovering");
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no recovery within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "recovered {:?} after PostgreSQL accepted connections",
        back.elapsed()
    );
    assert_eq!(
        recovered, "Hello Linode!  This page has been viewed 2 time(s).",
        "nothing half-written"
    );
    assert_eq!(
        client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_down_at_start_up_delays_readiness_instead_of_failing() {
    let mut pg = PgServer::start();
    let url = pg.create_database();
    pg.stop();
    let app = Application::build(&settings(&url, &["--store-timeout", "500ms"])).unwrap();
    let r = app.router();
    let (status, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _, _) = call(&r, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = call(&r, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "alive while waiting for the store");
    pg.restart();
    app.ready(Duration::from_secs(15)).await.unwrap();
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 1 time(s).");
}

#[tokio::test]
async fn a_site_deleted_and_created_again_on_another_replica_is_counted() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = TestApp::spawn(&url, &[]).await;
    let b = TestApp::spawn(&url, &[]).await;
    let t = Some(TOKEN);
    call(
        &a,
        Method::POST,
        "/api/v1/sites",
        t,
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    let (_, _, body) = call(&b, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"site": "blog", "count": 1})
    );
    // B has the old id in its directory; A deletes and recreates the site.
    call(&a, Method::DELETE, "/api/v1/sites/blog", t, None).await;
    call(
        &a,
        Method::POST,
        "/api/v1/sites",
        t,
        Some(r#"{"slug":"blog","count":10}"#),
    )
    .await;
    let (status, _, body) = call(&b, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"site": "blog", "count": 11})
    );
}

/// Request ids are deleted a batch row at a time: `hit_batches` rows two
/// minutes after their commit, the release before's `hit_requests` rows
/// at the cutoff given; younger ones stay.
#[tokio::test]
async fn old_request_ids_are_deleted_by_batch_and_young_ones_kept() {
    use tally::store::{HitStore, PgStore};
    let pg = PgServer::start();
    let url = pg.create_database();
    let app = TestApp::spawn(&url, &[]).await;
    let db = db_name(&url);
    pg.psql(
        &db,
        "INSERT INTO hit_batches (site_id, batch_id, created_at, keys, counts) VALUES \
         (1, 1, now() - interval '3 minutes', '{11,12}', '{1,2}'), \
         (1, 2, now() - interval '119 seconds', '{13}', '{3}'), \
         (1, 3, now(), '{14}', '{4}'); \
         INSERT INTO hit_requests (site_id, request_id, count, created_at) VALUES \
         (1, 'old', 1, now() - interval '11 minutes'), (1, 'young', 2, now())",
    );
    let store = PgStore::new(&url, 1, Duration::from_secs(5)).unwrap();
    let before = std::time::SystemTime::now() - Duration::from_secs(600);
    assert_eq!(store.purge_requests(before).await.unwrap(), 2);
    assert_eq!(
        pg.psql(
            &db,
            "SELECT string_agg(batch_id::text, ',' ORDER BY batch_id) FROM hit_batches"
        ),
        "2,3"
    );
    assert_eq!(
        pg.psql(&db, "SELECT string_agg(request_id, ',') FROM hit_requests"),
        "young"
    );
    app.stop().await.unwrap();
}

/// A commit whose answer is lost after PostgreSQL committed it (the proxy
/// between them closes the connection once the server has said `COMMIT`).
/// A hit without a request id may have been counted, so it is not tried
/// again: its client gets a 503 that says so, and it is stored once. A hit
/// with a request id is tried again on a new connection and answered with
/// the count it got, stored once; a later retry of it gets that count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_never_counted_twice() {
    use support::proxy::ChaosProxy;
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let proxy = ChaosProxy::start(([127, 0, 0, 1], pg.port()).into());
    let via = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port()));
    let app = TestApp::spawn(&via, &[]).await;
    let http = reqwest::Client::new();
    let greet = |id: Option<&'static str>| {
        let mut request = http.get(app.url("/"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let stored = || {
        pg.psql(
            &db,
            "SELECT visitor_count FROM visitors WHERE slug = 'default'",
        )
    };
    let count_of = |text: &str| support::app::parse_greeting(text).unwrap();

    let first = greet(None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(count_of(&first.text().await.unwrap()), 1);

    proxy.cut_at_next_commit();
    let lost = greet(None).await.unwrap();
    assert!(!proxy.cut_pending(), "the commit was cut");
    assert_eq!(lost.status(), 503);
    let body = lost.text().await.unwrap();
    assert!(body.contains("may or may not have been counted"), "{body}");
    assert_eq!(stored(), "2", "the hit whose answer was lost, once");

    let next = greet(None).await.unwrap();
    assert_eq!(count_of(&next.text().await.unwrap()), 3);

    proxy.cut_at_next_commit();
    let keyed = greet(Some("cut-keyed")).await.unwrap();
    assert!(!proxy.cut_pending(), "the commit was cut");
    assert_eq!(keyed.status(), 200);
    assert_eq!(count_of(&keyed.text().await.unwrap()), 4);
    assert_eq!(stored(), "4");
    let again = greet(Some("cut-keyed")).await.unwrap();
    assert_eq!(count_of(&again.text().await.unwrap()), 4);
    assert_eq!(stored(), "4");
}

/// A connection to a server that takes no writes leaves the pool, even
/// while it stays open: the next connection may reach a primary (after a
/// failover the old primary, demoted, still answers). Here the database
/// makes every new session read-only, and the app's sessions are ended
/// so that its pool opens read-only ones; the hits are refused. Once new
/// sessions take writes again, the very next hit is counted: a read-only
/// connection kept in the pool would refuse it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_takes_no_writes_leaves_the_pool_though_open() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url);
    let app = TestApp::spawn(&url, &["--store-timeout", "1s"]).await;
    let client = support::load::client();
    let hit = || client.get(app.url("/")).send();
    assert_eq!(hit().await.unwrap().status(), 200);

    pg.psql(
        "postgres",
        &format!("ALTER DATABASE \"{db}\" SET default_transaction_read_only = on"),
    );
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}'"
        ),
    );
    // A hit that draws an ended session may be told its outcome is
    // unknown; once the pool holds read-only ones, each is refused.
    let read_only = "the database is unavailable; nothing was written; retry shortly";
    let began = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 3 {
        let response = hit().await.unwrap();
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        in_a_row = if body["error"]["message"] == read_only {
            in_a_row + 1
        } else {
            0
        };
        assert!(began.elapsed() < Duration::from_secs(10), "{body}");
    }
    // Reads work on a read-only session, so the pool keeps some open.
    let read = client
        .get(app.url("/api/v1/sites/default/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);

    pg.psql(
        "postgres",
        &format!("ALTER DATABASE \"{db}\" RESET default_transaction_read_only"),
    );
    let response = hit().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "Hello Linode!  This page has been viewed 2 time(s)."
    );
    app.stop().await.unwrap();
}

/// A contract migration is held back by the sessions of an older release,
/// and the refusal names each by its pid and its address as the server
/// sees it (`host:port` for a TCP session), its `application_name` and its
/// schema (none for a release from before schema announcements, which
/// names itself plain `tally`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_that_hold_back_a_contract_migration_are_named_by_address() {
    use tally::store::Migration;
    use tally::store::migrate::{Contracts, Kind, POSTGRES};

    let pg = PgServer::start();
    let url = pg.create_database();
    let store_settings = settings(&url, &[]).store;
    let store = tally::store::open(&store_settings.database_url, &store_settings).unwrap();
    store.migrate(POSTGRES, Contracts::WhenSafe).await.unwrap();

    let (old, connection) = tokio_postgres::connect(
        &format!("{url}?application_name=tally"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let seen = old
        .query_one(
            "SELECT pg_backend_pid(), host(inet_client_addr()), inet_client_port()",
            &[],
        )
        .await
        .unwrap();
    let (pid, host, port): (i32, String, i32) = (seen.get(0), seen.get(1), seen.get(2));
    assert!(port > 0);

    let mut list = POSTGRES.to_vec();
    let contract = POSTGRES.len() as i64 + 1;
    list.push(Migration {
        version: contract,
        name: "drop_nothing",
        kind: Kind::Contract { after: "0.0.0" },
        sql: "SELECT 1",
    });
    let migrated = store.migrate(&list, Contracts::WhenSafe).await.unwrap();
    assert_eq!(migrated.applied, Vec::<i64>::new());
    let held = migrated.held.expect("held back");
    assert_eq!(
        held.migrations
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>(),
        [contract]
    );
    let holder = held
        .holders
        .iter()
        .find(|h| h.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among {:?}", held.holders));
    assert_eq!(holder.address.as_deref(), Some(&*format!("{host}:{port}")));
    assert_eq!(holder.application_name, "tally");
    assert_eq!(holder.schema, None);
    assert!(holder.since.is_some());
    // Any other holder is one of this store's own pooled sessions, which
    // announce the schema before the test's contract migration.
    for other in held.holders.iter().filter(|h| h.pid != pid) {
        assert_eq!(other.schema, Some(POSTGRES.len() as i64), "{other:?}");
    }
}

/// A page, a slug and a trailing-slash rule are read from PostgreSQL's text
/// types alone: a column of another type is an error before its bytes are
/// read as text.
#[test]
fn names_are_read_from_text_columns_only() {
    use tally::domain::{Page, Slug, TrailingSlash};
    use tokio_postgres::types::{FromSql, Type};

    let accepts = |ty: &Type| {
        [
            <Page as FromSql>::accepts(ty),
            <Slug as FromSql>::accepts(ty),
            <TrailingSlash as FromSql>::accepts(ty),
        ]
    };
    for text in [Type::TEXT, Type::VARCHAR] {
        assert_eq!(accepts(&text), [true; 3], "{text}");
    }
    for other in [Type::INT8, Type::BYTEA, Type::JSONB] {
        assert_eq!(accepts(&other), [false; 3], "{other}");
    }
}

/// A commit that took its sites' locks and was then dropped unfinished (a
/// batch abandoned between its two steps) leaves no transaction open: its
/// connection is closed, which rolls the transaction back and frees the
/// locks, rather than going back to the pool inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_commit_dropped_unfinished_leaves_no_transaction_open() {
    use std::time::SystemTime;
    use tally::domain::{NewSite, Page, SiteRules, Slug};
    use tally::store::{Limits, Opening, Outcome, SiteHits};

    let pg = PgServer::start();
    let (_, db, store) = fresh_store(&pg).await;
    let site = store
        .create_site(&NewSite {
            slug: Slug::parse("held").unwrap(),
            name: String::new(),
            count: 0,
            rules: SiteRules::default(),
        })
        .await
        .unwrap();
    // A hit that names a page takes the locking path.
    let hits = [SiteHits {
        site: site.id,
        keys: vec![None],
        pages: vec![Some(Page::parse("/a", &SiteRules::default()).unwrap())],
        ..SiteHits::default()
    }];
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(10);
    let idle_in_transaction = || {
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND state = 'idle in transaction'"
            ),
        )
    };
    let opening = store
        .open_hits(SystemTime::now(), &hits, Limits::pages(100), deadline())
        .await
        .unwrap();
    let Opening::Held(held) = opening else {
        panic!("the locking path held nothing");
    };
    assert_eq!(idle_in_transaction(), "1");
    drop(held);
    let gone = Instant::now() + Duration::from_secs(10);
    while idle_in_transaction() != "0" {
        assert!(Instant::now() < gone, "a transaction is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing was counted, and the site counts at once.
    let outcomes = store
        .add_hits(SystemTime::now(), &hits, Limits::pages(100), deadline())
        .await
        .unwrap();
    let [Outcome::Counted(counted)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(counted.total.count, 1);
}

/// An import that creates sites and replays hours has PostgreSQL analyze
/// `visitors` in its transaction, so that the checks of its hour rows use
/// a plan for the table's new size (a scan per row otherwise: 5 s instead
/// of 0.7 s for 10 000 new sites); an import that creates no site, or
/// replays no hour, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_new_sites_with_hours_analyzes_the_sites() {
    use tally::domain::time::{hour_start, unix};
    use tally::domain::{ImportEntry, Slug};

    let pg = PgServer::start();
    let (_, db, store) = fresh_store(&pg).await;
    let hour = unix(hour_start(std::time::SystemTime::now())) - 3600;
    let entry = |slug: &str, hours: Option<Vec<(i64, i64)>>| ImportEntry {
        slug: Slug::parse(slug).unwrap(),
        name: String::new(),
        count: 5,
        hours,
        created_at: None,
        pages: None,
        breakdowns: Vec::new(),
    };
    let analyzed = || {
        pg.psql(
            &db,
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'visitors'",
        )
    };
    // New sites without hours, hours on a site that is there, no hours at
    // all: none of them analyzes.
    store.import(&[entry("plain", None)]).await.unwrap();
    store
        .import(&[entry("empty", Some(Vec::new()))])
        .await
        .unwrap();
    store
        .import(&[entry("plain", Some(vec![(hour, 2)]))])
        .await
        .unwrap();
    // The counters reach other sessions within about a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(analyzed(), "0");
    // A new site with hours does, once.
    store
        .import(&[entry("new", Some(vec![(hour, 3)]))])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while analyzed() == "0" {
        assert!(Instant::now() < deadline, "visitors was never analyzed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(analyzed(), "1");
}

/// An import whose sites keep conflicting is tried a bounded number of
/// times, then refused as a conflict, with nothing written. (The API never
/// sends one slug twice in an import; the store alone is asked here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_keeps_conflicting_gives_up() {
    use tally::domain::{ImportEntry, Slug};
    use tally::store::StoreError;

    let pg = PgServer::start();
    let (_, _, store) = fresh_store(&pg).await;
    let twice = ImportEntry {
        slug: Slug::parse("twice").unwrap(),
        name: String::new(),
        count: 5,
        hours: None,
        created_at: None,
        pages: None,
        breakdowns: Vec::new(),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        store.import(&[twice.clone(), twice]),
    )
    .await
    .expect("the import kept trying");
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert_eq!(
        store.site(&Slug::parse("twice").unwrap()).await.unwrap(),
        None
    );
}

/// An import that creates a site another request creates meanwhile is
/// tried again, and imports over the site it then finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_meets_a_site_created_meanwhile_imports_over_it() {
    use tally::domain::{ImportEntry, Slug};

    let pg = PgServer::start();
    let (url, db, store) = fresh_store(&pg).await;
    // Another session creates the site and has not committed yet: the
    // import's insert waits for it.
    let (other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    other
        .batch_execute(
            "BEGIN; INSERT INTO visitors (slug, site_name, visitor_count, base_count) \
             VALUES ('race', 'Other', 1, 1)",
        )
        .await
        .unwrap();
    let racing = ImportEntry {
        slug: Slug::parse("race").unwrap(),
        name: "Imported".into(),
        count: 5,
        hours: None,
        created_at: None,
        pages: None,
        breakdowns: Vec::new(),
    };
    let import = tokio::spawn({
        let store = store.clone();
        async move { store.import(&[racing]).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = '{db}' AND wait_event_type = 'Lock'"
        ),
    ) != "1"
    {
        assert!(Instant::now() < deadline, "the import never waited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other.batch_execute("COMMIT").await.unwrap();
    let imported = tokio::time::timeout(Duration::from_secs(30), import)
        .await
        .expect("the import hung")
        .unwrap()
        .unwrap();
    assert_eq!(
        (imported.len(), imported[0].created, imported[0].count),
        (1, false, 5)
    );
    let site = store
        .site(&Slug::parse("race").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((site.name.as_str(), site.count), ("Other", 5));
}

/// A new database on `pg` with tally's migrations applied: its URL, its
/// name, and a store on it.
async fn fresh_store(pg: &PgServer) -> (String, String, std::sync::Arc<dyn tally::store::Store>) {
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap();
    let db = db.split('?').next().unwrap().to_owned();
    let store = support::app::migrated_store(&url).await;
    (url, db, store)
}
