//! The Compose topology as local processes (`scripts/stack`): NGINX in front
//! of three tally replicas, PostgreSQL and Redis behind them, all on
//! loopback, driven over HTTP through NGINX only: the seed's walkthrough,
//! exact counts under concurrency, and a replica or Redis dying under load.
//!
//! Each test brings up its own stack (the debug binary, a fresh database, a
//! state directory of its own) and takes it down when its guard drops, even
//! when the test fails. Stacks never run side by side: nextest puts this
//! binary in the `stack` test group, and a lock in the guard serialises
//! them under plain `cargo test`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use support::app::{acknowledged_counts, get_json};
use support::load::{self, Until};
use support::spawner;
use support::stack::{Stack, exited, parse_env, wait_exited};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_walkthrough_through_nginx() {
    let stack = Stack::up();
    let client = load::client();
    let greeting = |n: i64| format!("Hello Linode!  This page has been viewed {n} time(s).");

    let first = client.get(stack.url("/")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), greeting(1));

    let refused = client.get(stack.url("/resetcounter")).send().await.unwrap();
    assert_eq!(refused.status(), 401, "a reset without the token");

    let client_id = format!("walkthrough-{:016x}", fastrand::u64(..));
    let reset = client
        .get(stack.url("/resetcounter"))
        .bearer_auth(stack.var("ADMIN_TOKEN"))
        .header("x-request-id", &client_id)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    // NGINX's own id reaches tally, never the client's (a client's id could
    // collide with another client's).
    let id = reset.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        reset.text().await.unwrap(),
        "Successfully deleted redis and postgres counters"
    );

    // The line is written before the answer is sent.
    let mut reset_lines = Vec::new();
    for i in 1..=stack.replicas() {
        for line in stack.replica_log_lines(i) {
            if line["message"] == "reset visitor count" {
                reset_lines.push((i, line));
            }
        }
    }
    assert_eq!(
        reset_lines.len(),
        1,
        "one `reset visitor count` line in all the replicas' logs: {reset_lines:?}"
    );
    let (replica, line) = &reset_lines[0];
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert_eq!(
        line["span"]["id"], id,
        "NGINX's X-Request-Id is on the log line: {line}"
    );

    // NGINX logged the same id, and sent the request to that replica.
    let entries: Vec<Value> = stack
        .access_log()
        .await
        .into_iter()
        .filter(|e| e["request_id"] == id.as_str())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["client_request_id"], client_id.as_str());
    assert_eq!(entries[0]["uri"], "/resetcounter");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[0]["upstream_addr"], stack.replica_addr(*replica));

    let again = client.get(stack.url("/")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), greeting(1));
    println!(
        "walkthrough: / said 1; reset without token 401; reset with token 200 on tally-{replica}, \
         whose log has `reset visitor count` with request id {id}; / said 1 again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_hits_from_128_clients_are_counted_exactly() {
    const HITS: usize = 20_000;
    let stack = Stack::up();
    let started = Instant::now();
    let outcomes = load::run(&[stack.url("/")], Method::GET, 128, Until::Requests(HITS)).await;
    let elapsed = started.elapsed();
    let statuses = load::statuses(&outcomes);
    let per_replica = stack.replicas_hits().await;
    println!(
        "{HITS} hits from 128 clients through NGINX in {:.1} s ({:.0}/s, p50 {:?}, p99 {:?}): \
         statuses {statuses:?}; acknowledged per replica {per_replica:?}",
        elapsed.as_secs_f64(),
        HITS as f64 / elapsed.as_secs_f64(),
        load::percentile(&outcomes, 50.0),
        load::percentile(&outcomes, 99.0),
    );
    assert_eq!(statuses, BTreeMap::from([(200, HITS)]));
    load::assert_one_to_n(
        &acknowledged_counts(&outcomes),
        HITS as i64,
        "counts from /",
    );
    assert_eq!(stack.count().await, HITS as i64, "stored count");
}

const LOAD_LENGTH: Duration = Duration::from_secs(5);
const FAULT_AT: Duration = Duration::from_millis(1500);
/// Hits the restarted replica must acknowledge to count as back in rotation.
const REJOIN_HITS: u64 = 200;

/// SIGTERM or SIGKILL to one replica while 64 clients count through NGINX,
/// then the replica restarted and loaded again until NGINX sends it hits.
/// Everything is measured and printed first, then asserted, so that a
/// failure shows the whole run. Every hit a client got a `200` for is
/// stored, and nothing else; with `every_answer_200`, no client sees an
/// error either.
async fn replica_stopped_under_load_then_restarted(signal: i32, every_answer_200: bool) {
    let name = if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGKILL"
    };
    let stack = Stack::up();
    // The replica that serves the hits: NGINX sends all of a site's to one.
    let victim = stack.replica_of("/").await;
    let pid = stack.replica_pid(victim);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (stack.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, 64, Until::Flag(stop, 10_000_000)).await }
    });
    let started = Instant::now();
    tokio::time::sleep(FAULT_AT).await;
    spawner::signal(pid, signal);
    let signalled = Instant::now();
    // How long the replica takes to go (SIGTERM: its drain), while the load
    // goes on.
    let mut gone_after = None;
    while started.elapsed() < LOAD_LENGTH {
        if gone_after.is_none() && exited(pid) {
            gone_after = Some(signalled.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let gone_after = match gone_after {
        Some(after) => after,
        None => signalled.elapsed() + wait_exited(pid, Duration::from_secs(20)).await,
    };
    let statuses = load::statuses(&outcomes);
    let acknowledged = load::count_200(&outcomes);
    let not_200 = outcomes.len() - acknowledged;
    let stored = stack.count().await;
    let nginx = stack.proxied("/").await;
    let log = stack.replica_log(victim);
    println!(
        "{name} to tally-{victim} (pid {pid}) {:.1} s into {:.1} s of 64 clients counting through \
         NGINX: {} requests, {acknowledged} answered 200, {not_200} not 200, statuses \
         {statuses:?}; stored count {stored}; the replica was gone {:.2} s after the signal; NGINX \
         logged {} requests to /, {} retried on a second replica, upstream statuses {:?}",
        FAULT_AT.as_secs_f64(),
        LOAD_LENGTH.as_secs_f64(),
        outcomes.len(),
        gone_after.as_secs_f64(),
        nginx.requests,
        nginx.retried,
        nginx.upstream_statuses,
    );

    let restarting = Instant::now();
    stack.restart_replica(victim);
    let restarted_in = restarting.elapsed();
    let (ready, readyz) = get_json(&stack.replica_url(victim, "/readyz")).await;

    // Until the restarted replica has acknowledged REJOIN_HITS (NGINX leaves
    // a peer that failed out for its fail_timeout), at least 3 s, at most
    // 30 s.
    let stop = Arc::new(AtomicBool::new(false));
    let rejoin_load = tokio::spawn({
        let (url, stop) = (stack.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, 64, Until::Flag(stop, 10_000_000)).await }
    });
    let rejoining = Instant::now();
    let mut first_served = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let served = stack.replica_hits(victim).await;
        if served > 0 && first_served.is_none() {
            first_served = Some(rejoining.elapsed());
        }
        if (served >= REJOIN_HITS && rejoining.elapsed() >= Duration::from_secs(3))
            || rejoining.elapsed() >= Duration::from_secs(30)
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rejoin = rejoin_load.await.unwrap();
    let rejoin_length = rejoining.elapsed();
    let rejoin_statuses = load::statuses(&rejoin);
    let per_replica = stack.replicas_hits().await;
    let stored_after = stack.count().await;
    let first_served = first_served.map_or("never".to_owned(), |t| {
        format!("{:.1} s into it", t.as_secs_f64())
    });
    println!(
        "restart-replica {victim}: ready in {:.1} s (/readyz {ready}); then {:.1} s of 64 clients: \
         {} requests, statuses {rejoin_statuses:?}; tally-{victim} acknowledged its first hit \
         {first_served}; hits acknowledged per replica {per_replica:?} (tally-{victim}'s since \
         its restart); stored count {stored_after}",
        restarted_in.as_secs_f64(),
        rejoin_length.as_secs_f64(),
        rejoin.len(),
    );

    if signal == libc::SIGTERM {
        assert!(
            log.contains("\"stopped cleanly\""),
            "tally-{victim} did not stop cleanly on SIGTERM"
        );
    }
    if every_answer_200 {
        assert_eq!(
            statuses,
            BTreeMap::from([(200, outcomes.len())]),
            "{name} to a replica cost clients errors"
        );
    }
    assert_eq!(
        stored, acknowledged as i64,
        "the stored count after {name} differs from the 200 answers"
    );
    load::assert_one_to_n(
        &acknowledged_counts(&outcomes),
        stored,
        &format!("counts from / around the {name}"),
    );
    assert_eq!(ready, 200, "the restarted replica is not ready: {readyz}");
    assert_eq!(
        rejoin_statuses,
        BTreeMap::from([(200, rejoin.len())]),
        "errors after the restart"
    );
    assert!(
        per_replica[victim - 1] >= REJOIN_HITS,
        "NGINX sent the restarted replica {} hits in {rejoin_length:?}",
        per_replica[victim - 1]
    );
    assert_eq!(
        stored_after - stored,
        rejoin.len() as i64,
        "the stored count grew by other than the hits after the restart"
    );
    let all: Vec<i64> = acknowledged_counts(&outcomes)
        .into_iter()
        .chain(acknowledged_counts(&rejoin))
        .collect();
    load::assert_one_to_n(&all, stored_after, "counts from / over both loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_replica_under_load_costs_no_error_and_it_rejoins() {
    replica_stopped_under_load_then_restarted(libc::SIGTERM, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_to_a_replica_under_load_stores_exactly_the_200s_and_it_rejoins() {
    replica_stopped_under_load_then_restarted(libc::SIGKILL, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_costs_no_error_and_no_count() {
    let stack = Stack::up();
    // Every replica is using Redis before it dies.
    for i in 1..=stack.replicas() {
        let started = Instant::now();
        while stack.cache_state(i).await != "up" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tally-{i} never used Redis"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let redis = stack.pid("redis.pid", "redis-server");

    let stop = Arc::new(AtomicBool::new(false));
    let hit_urls = [stack.url("/")];
    let read_urls = [stack.url("/api/v1/sites/default/count")];
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::join!(
                load::run(
                    &hit_urls,
                    Method::GET,
                    48,
                    Until::Flag(stop.clone(), 10_000_000)
                ),
                load::run(&read_urls, Method::GET, 16, Until::Flag(stop, 10_000_000)),
            )
        }
    });
    tokio::time::sleep(FAULT_AT).await;
    spawner::signal(redis, libc::SIGKILL);
    let killed_at = Instant::now();
    tokio::time::sleep(LOAD_LENGTH - FAULT_AT).await;
    stop.store(true, Ordering::Relaxed);
    let (hits, reads) = load.await.unwrap();
    wait_exited(redis, Duration::from_secs(5)).await;
    let mut caches = Vec::new();
    for i in 1..=stack.replicas() {
        caches.push(stack.cache_state(i).await);
    }
    let stored = stack.count().await;
    let hit_statuses = load::statuses(&hits);
    let read_statuses = load::statuses(&reads);
    let hits_after = hits.iter().filter(|o| o.sent >= killed_at).count();
    let reads_after = reads.iter().filter(|o| o.sent >= killed_at).count();
    println!(
        "Redis SIGKILLed {:.1} s into {:.1} s of 48 clients counting and 16 reading through NGINX: \
         hits {hit_statuses:?} ({hits_after} sent after the kill), reads {read_statuses:?} \
         ({reads_after} after); stored count {stored}; replicas' cache then {caches:?}",
        FAULT_AT.as_secs_f64(),
        LOAD_LENGTH.as_secs_f64(),
    );

    assert_eq!(hit_statuses, BTreeMap::from([(200, hits.len())]), "hits");
    assert_eq!(read_statuses, BTreeMap::from([(200, reads.len())]), "reads");
    assert!(
        hits_after > 100 && reads_after > 100,
        "the load went on after the kill"
    );
    assert_eq!(stored, hits.len() as i64, "stored count vs 200 answers");
    load::assert_one_to_n(&acknowledged_counts(&hits), stored, "counts from /");
    for read in &reads {
        let body: Value = serde_json::from_str(&read.body).expect("a JSON count");
        let count = body["count"].as_i64().expect("a count");
        assert!((0..=stored).contains(&count), "a read answered {count}");
    }
    assert!(
        caches.iter().all(|c| c == "down"),
        "every replica noticed Redis is gone: {caches:?}"
    );
}

/// NGINX takes other bodies up to 16 KiB only; an import of 20 000 sites
/// (0.66 MB) goes through it to a replica and is written whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_20_000_sites_goes_through_nginx() {
    let stack = Stack::up();
    let sites: Vec<Value> = (0..20_000)
        .map(|i| serde_json::json!({ "slug": format!("s-{i:05}"), "count": i * 3 }))
        .collect();
    let body = Value::Array(sites).to_string();
    assert!(body.len() > 600_000, "{} bytes", body.len());
    let client = load::client();
    let reply = client
        .post(stack.url("/api/v1/import"))
        .bearer_auth(stack.var("ADMIN_TOKEN"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let listed = client
        .get(stack.url("/api/v1/sites"))
        .bearer_auth(stack.var("ADMIN_TOKEN"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let counts: Vec<(String, i64)> = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|s| {
            (
                s["slug"].as_str().unwrap().to_owned(),
                s["count"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = (0..20_000).map(|i| (format!("s-{i:05}"), i * 3)).collect();
    assert_eq!(counts, want);
}

#[test]
fn the_env_file_parses_as_the_shell_reads_it() {
    let vars = parse_env("# comment\nA='x y'\nB='it'\\''s'\nC=''\n");
    assert_eq!(vars["A"], "x y");
    assert_eq!(vars["B"], "it's");
    assert_eq!(vars["C"], "");
    assert_eq!(vars.len(), 3);
}
