//! The Compose topology as local processes (`scripts/stack`): NGINX in front
//! of three tally replicas, PostgreSQL and Redis behind them, all on
//! loopback, driven over HTTP through NGINX only: the seed's walkthrough,
//! exact counts under concurrency, and a replica or Redis dying under load.
//! Production NGINX sends all of a site's hits to one replica; two tests
//! render it with round-robin counting instead, so that all three replicas
//! count one site at once, as behind any other balancer (the seed's NGINX,
//! a Kubernetes Service, Swarm's DNS round robin).
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
use serde_json::{Value, json};
use support::app::{acknowledged_counts, count_at, get_json, parse_greeting};
use support::load::{self, Outcome, Until};
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

/// NGINX counting round robin: every replica counts every site.
const ROUND_ROBIN: [(&str, &str); 1] = [("TALLY_STACK_COUNT_BALANCE", "round-robin")];
/// The routes the round-robin loads count on, as NGINX logs them.
const COUNTING_URIS: [&str; 2] = ["/", "/api/v1/sites/default/hits"];
/// Pages the round-robin loads count on.
const PAGES: usize = 10;
const ROUND_ROBIN_CLIENTS: usize = 128;
const ROUND_ROBIN_HITS: usize = 20_000;

/// Hit `i` on the default site through NGINX at `base`: every fourth the
/// seed's `GET /`, the others `POST /api/v1/sites/default/hits` on page
/// `/p/{i % PAGES}`.
fn default_site_hit(base: String) -> load::Build {
    Arc::new(move |client, i| {
        if i % 4 == 0 {
            client.get(format!("{base}/"))
        } else {
            client
                .post(format!("{base}/api/v1/sites/default/hits"))
                .json(&json!({ "page": format!("/p/{}", i % PAGES) }))
        }
    })
}

/// What the 200s of a load on the default site answered.
#[derive(Debug, Default)]
struct Answers {
    /// The site's count, from every 200 of either route.
    counts: Vec<i64>,
    /// Each page's count, from every 200 of a hit on it.
    pages: BTreeMap<String, Vec<i64>>,
}

fn answers(outcomes: &[Outcome]) -> Answers {
    let mut answers = Answers::default();
    for o in outcomes.iter().filter(|o| o.status == Some(200)) {
        if o.url.ends_with("/hits") {
            let body: Value = serde_json::from_str(&o.body)
                .unwrap_or_else(|e| panic!("a 200 hit that is not JSON ({e}): {}", o.body));
            assert_eq!(body["site"], "default", "{body}");
            let page = body["page"].as_str().expect("the page hit");
            answers
                .counts
                .push(body["count"].as_i64().expect("a count"));
            answers
                .pages
                .entry(page.to_owned())
                .or_default()
                .push(body["page_count"].as_i64().expect("a page count"));
        } else {
            answers
                .counts
                .push(parse_greeting(&o.body).unwrap_or_else(|| {
                    panic!("a 200 from / that is not the greeting: {}", o.body)
                }));
        }
    }
    answers
}

/// Every page's counts answered are exactly 1..=n, with n its stored count,
/// and the stored pages are exactly those answered.
fn assert_pages_exact(answered: &BTreeMap<String, Vec<i64>>, stored: &BTreeMap<String, i64>) {
    let answered_pages: Vec<&String> = answered.keys().collect();
    let stored_pages: Vec<&String> = stored.keys().collect();
    assert_eq!(answered_pages, stored_pages, "pages answered vs stored");
    for (page, counts) in answered {
        load::assert_one_to_n(counts, stored[page], &format!("counts of page {page}"));
    }
}

/// The site's count read from each replica itself.
async fn count_on_each_replica(stack: &Stack, replicas: &[usize]) -> Vec<i64> {
    let mut counts = Vec::new();
    for &i in replicas {
        counts.push(count_at(&stack.replica_url(i, ""), "default").await);
    }
    counts
}

/// Seconds of NGINX's access log with at least `busy` of the 200s, and how
/// many of them had every replica in `replicas` answering some.
fn seconds_all_served(
    by_second: &BTreeMap<String, Vec<usize>>,
    replicas: &[usize],
    busy: usize,
) -> (usize, usize) {
    let busy: Vec<&Vec<usize>> = by_second
        .values()
        .filter(|n| n.iter().sum::<usize>() >= busy)
        .collect();
    let all = busy
        .iter()
        .filter(|n| replicas.iter().all(|&i| n[i - 1] > 0))
        .count();
    (busy.len(), all)
}

/// 20 000 hits on one site from 128 clients, with NGINX sending them round
/// robin: the three replicas commit the site's hits at once, each taking
/// its row in turn, and every count is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_counting_one_site_at_once_count_exactly() {
    let stack = Stack::up_with(&ROUND_ROBIN);
    let started = Instant::now();
    let outcomes = load::run_built(
        default_site_hit(stack.url("")),
        ROUND_ROBIN_CLIENTS,
        Until::Requests(ROUND_ROBIN_HITS),
    )
    .await;
    let elapsed = started.elapsed();
    let statuses = load::statuses(&outcomes);
    let answers = answers(&outcomes);
    let stored = stack.count().await;
    let stored_pages = stack.pages("default").await;
    let on_each = count_on_each_replica(&stack, &[1, 2, 3]).await;
    let spread = stack.spread(&COUNTING_URIS).await;
    let acknowledged = stack.replicas_hits().await;
    let (busy, all_served) = seconds_all_served(&spread.by_second, &[1, 2, 3], 30);
    println!(
        "{ROUND_ROBIN_HITS} hits on one site (a quarter GET /, the rest POSTed on {PAGES} \
         pages) from {ROUND_ROBIN_CLIENTS} clients through round-robin NGINX in {:.1} s \
         ({:.0}/s, p50 {:?}, p99 {:?}): statuses {statuses:?}; stored {stored}, read on each \
         replica {on_each:?}; 200s per replica by NGINX's log {:?} ({} resent), acknowledged \
         per replica by their metrics {acknowledged:?}; {all_served} of the {busy} seconds \
         with at least 30 answers had all three replicas answering",
        elapsed.as_secs_f64(),
        ROUND_ROBIN_HITS as f64 / elapsed.as_secs_f64(),
        load::percentile(&outcomes, 50.0),
        load::percentile(&outcomes, 99.0),
        spread.answered,
        spread.retried,
    );

    assert_eq!(statuses, BTreeMap::from([(200, ROUND_ROBIN_HITS)]));
    assert_eq!(stored, ROUND_ROBIN_HITS as i64, "stored count");
    assert_eq!(on_each, vec![stored; 3], "the count read on each replica");
    load::assert_one_to_n(&answers.counts, stored, "site counts answered");
    // Hit i is on a page unless i % 4 == 0, on page i % PAGES.
    let mut want_pages = BTreeMap::new();
    for i in (0..ROUND_ROBIN_HITS).filter(|i| i % 4 != 0) {
        *want_pages.entry(format!("/p/{}", i % PAGES)).or_insert(0) += 1;
    }
    assert_eq!(stored_pages, want_pages, "stored pages");
    assert_pages_exact(&answers.pages, &stored_pages);
    // All three replicas counted the site, each a substantial share (round
    // robin gives each a third), and at the same time.
    assert_eq!(
        spread.answered.iter().sum::<usize>(),
        ROUND_ROBIN_HITS,
        "NGINX logged every 200: {spread:?}"
    );
    for (i, &n) in spread.answered.iter().enumerate() {
        assert!(
            n >= ROUND_ROBIN_HITS / 4,
            "tally-{} answered {n} of {ROUND_ROBIN_HITS}: {:?}",
            i + 1,
            spread.answered
        );
    }
    assert_eq!(
        acknowledged,
        spread
            .answered
            .iter()
            .map(|&n| n as u64)
            .collect::<Vec<_>>(),
        "each replica's own count of the hits it acknowledged vs NGINX's log"
    );
    assert!(busy >= 2, "the load spanned {busy} busy seconds of the log");
    assert_eq!(
        all_served, busy,
        "seconds with at least 30 answers in which not every replica answered"
    );
}

/// The same load, and SIGKILL to one of the three replicas counting the
/// site part way through it: NGINX resends what the kill broke off to
/// another replica with the same request id, so the hits the victim
/// committed before it died are counted once, and the stored count is
/// exactly the 200s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_to_one_of_three_replicas_counting_one_site_stores_exactly_the_200s() {
    const VICTIM: usize = 2;
    const SURVIVORS: [usize; 2] = [1, 3];
    let stack = Stack::up_with(&ROUND_ROBIN);
    let pid = stack.replica_pid(VICTIM);
    let started = Instant::now();
    let load = tokio::spawn(load::run_built(
        default_site_hit(stack.url("")),
        ROUND_ROBIN_CLIENTS,
        Until::Requests(ROUND_ROBIN_HITS),
    ));
    tokio::time::sleep(FAULT_AT).await;
    spawner::signal(pid, libc::SIGKILL);
    let killed_at = Instant::now();
    let outcomes = load.await.unwrap();
    let elapsed = started.elapsed();
    let gone_after = wait_exited(pid, Duration::from_secs(10)).await;
    let statuses = load::statuses(&outcomes);
    let acknowledged = load::count_200(&outcomes);
    let acknowledged_after = outcomes
        .iter()
        .filter(|o| o.status == Some(200) && o.sent >= killed_at)
        .count();
    let answers = answers(&outcomes);
    let stored = stack.count().await;
    let stored_pages = stack.pages("default").await;
    let on_survivors = count_on_each_replica(&stack, &SURVIVORS).await;
    let spread = stack.spread(&COUNTING_URIS).await;
    println!(
        "SIGKILL to tally-{VICTIM} {:.1} s into {ROUND_ROBIN_HITS} hits on one site from \
         {ROUND_ROBIN_CLIENTS} clients through round-robin NGINX ({:.1} s in all; gone \
         {gone_after:?} after the signal): statuses {statuses:?}, {acknowledged_after} 200s \
         for hits sent after the kill; stored {stored}, read on tally-1 and tally-3 \
         {on_survivors:?}; 200s per replica by NGINX's log {:?}, {} of them resent to a \
         second replica",
        FAULT_AT.as_secs_f64(),
        elapsed.as_secs_f64(),
        spread.answered,
        spread.retried,
    );

    assert_eq!(
        stored, acknowledged as i64,
        "the stored count after the SIGKILL differs from the 200 answers"
    );
    assert_eq!(
        on_survivors,
        vec![stored; 2],
        "the count read on each survivor"
    );
    load::assert_one_to_n(&answers.counts, stored, "site counts answered");
    assert_pages_exact(&answers.pages, &stored_pages);
    assert!(
        acknowledged_after >= 1000,
        "the load went on after the kill: {acknowledged_after} 200s"
    );
    assert_eq!(
        spread.answered.iter().sum::<usize>(),
        acknowledged,
        "NGINX logged every 200: {spread:?}"
    );
    assert!(
        spread.answered[VICTIM - 1] > 0,
        "tally-{VICTIM} counted before it was killed: {spread:?}"
    );
    for i in SURVIVORS {
        assert!(
            spread.answered[i - 1] >= acknowledged / 4,
            "tally-{i} answered {} of {acknowledged}: {spread:?}",
            spread.answered[i - 1]
        );
    }
    assert!(
        spread.retried > 0,
        "NGINX resent none of the requests the kill broke off: {spread:?}"
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
