//! Rolling upgrades on one PostgreSQL database: replicas of the previous
//! release (its real binary, built by scripts/previous-release from the
//! commit RELEASES names) serve beside this tree's while clients count
//! through whichever are up; and a contract migration waits until no
//! session of an older release uses the database.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::app::{TallyProcess, acknowledged_counts, default_count, settings};
use support::load::{self, Live, Until};
use support::pg::PgServer;
use tally::store::Migration;
use tally::store::migrate::{Contracts, Kind, POSTGRES, schema_version};

/// The release before this tree: `(version, commit)` from RELEASES' last line.
fn previous_release() -> (&'static str, &'static str) {
    let line = include_str!("../RELEASES")
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("RELEASES names a release");
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(version), Some(commit)) => (version, commit),
        _ => panic!("RELEASES: not `version commit schema=N`: {line:?}"),
    }
}

/// The schema the previous release was built for, from RELEASES.
fn previous_schema() -> i64 {
    let line = include_str!("../RELEASES")
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("RELEASES names a release");
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("schema="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("RELEASES: no schema=N in {line:?}"))
}

/// The previous release's binary, which scripts/previous-release builds
/// beside this tree's target directory. Missing is a failure, not a skip.
fn previous_binary() -> PathBuf {
    let (version, commit) = previous_release();
    let tally = PathBuf::from(env!("CARGO_BIN_EXE_tally"));
    let target = tally
        .parent()
        .and_then(|debug| debug.parent())
        .expect("the binary lives in <target>/<profile>/");
    let binary = target
        .join("previous-release")
        .join(format!("{version}-{commit}"))
        .join("tally");
    assert!(
        binary.exists(),
        "the binary of tally {version} ({commit}) is missing at {}: run scripts/previous-release \
         (scripts/test does) before these tests",
        binary.display()
    );
    binary
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap().split('?').next().unwrap()
}

/// A replica of the previous release on `url`, ready.
fn spawn_previous(url: &str, extra: &[(&str, &str)]) -> TallyProcess {
    let mut env = vec![("TALLY_DATABASE_URL", url)];
    env.extend_from_slice(extra);
    TallyProcess::spawn_binary(&previous_binary(), &[], &env)
}

/// A replica of this tree on `url`, ready.
fn spawn_current(url: &str, extra: &[(&str, &str)]) -> TallyProcess {
    let mut env = vec![("TALLY_DATABASE_URL", url)];
    env.extend_from_slice(extra);
    TallyProcess::spawn(&env)
}

/// SIGTERM, then the exit status; a graceful stop exits 0.
async fn stop(mut replica: TallyProcess) {
    replica.signal(libc::SIGTERM);
    let (status, replica) = tokio::task::spawn_blocking(move || {
        let status = replica.wait(Duration::from_secs(20));
        (status, replica)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{}", replica.log());
}

/// The application_names of the sessions on `db`, once each, sorted.
fn sessions_by_name(pg: &PgServer, db: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT application_name FROM pg_stat_activity WHERE datname = '{db}' \
             GROUP BY application_name ORDER BY application_name"
        ),
    )
}

/// Waits until the sessions on `db` are named `expected` (as
/// [`sessions_by_name`] lists them): a server process ends a moment after
/// its client has gone.
fn await_sessions(pg: &PgServer, db: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sessions_by_name(pg, db);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions on {db}: {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two replicas of the previous release serve; 64 clients count through
/// the replicas a load balancer holds (a replica is added once ready and
/// taken out 250 ms before its SIGTERM, as Kubernetes does with a pod's
/// endpoint and a pre-stop delay); a replica of this tree joins, the old
/// ones stop one by one (each drains and exits 0), a second new one joins.
/// Every request is answered 200, once, by a live replica, and the stored
/// count is exactly the 200s, their counts 1..=N.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_under_load_answers_every_hit_and_loses_none() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url).to_owned();
    let spawn = |f: fn(&str, &[(&str, &str)]) -> TallyProcess| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || f(&url, &[]))
    };
    let old_a = spawn(spawn_previous).await.unwrap();
    let old_b = spawn(spawn_previous).await.unwrap();
    let (a, b) = (old_a.url(""), old_b.url(""));
    assert_eq!(sessions_by_name(&pg, &db), "tally");

    let live = Live::default();
    live.add(&a);
    live.add(&b);
    let stop_load = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = tokio::spawn({
        let (live, stop_load) = (live.clone(), stop_load.clone());
        async move {
            load::run_live(
                &live,
                "/",
                Method::GET,
                64,
                Until::Flag(stop_load, 10_000_000),
            )
            .await
        }
    });
    let pause = || tokio::time::sleep(Duration::from_millis(1500));

    pause().await;
    // The new release finds the schema it was built for and serves beside
    // the old one; both kinds of session are on the database now.
    let new_c = spawn(spawn_current).await.unwrap();
    let c = new_c.url("");
    live.add(&c);
    assert_eq!(
        sessions_by_name(&pg, &db),
        format!("tally\n{}", this_schema())
    );
    pause().await;

    let mut sigterms = Vec::new();
    live.remove(&a);
    tokio::time::sleep(Duration::from_millis(250)).await;
    sigterms.push((a.clone(), Instant::now()));
    stop(old_a).await;
    pause().await;

    let new_d = spawn(spawn_current).await.unwrap();
    let d = new_d.url("");
    live.add(&d);
    pause().await;

    live.remove(&b);
    tokio::time::sleep(Duration::from_millis(250)).await;
    sigterms.push((b.clone(), Instant::now()));
    stop(old_b).await;
    pause().await;

    stop_load.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let elapsed = started.elapsed();

    // Only the new release is left on the database.
    await_sessions(&pg, &db, &this_schema());
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM tally_migrations"),
        POSTGRES.len().to_string()
    );

    let statuses = load::statuses(&outcomes);
    let ok = load::count_200(&outcomes);
    let per_replica = |base: &str| outcomes.iter().filter(|o| o.url.starts_with(base)).count();
    // Requests a stopped replica had taken before its SIGTERM and answered
    // after it: what its graceful stop drained.
    let drained: usize = sigterms
        .iter()
        .map(|(base, at)| {
            outcomes
                .iter()
                .filter(|o| {
                    o.url.starts_with(base.as_str()) && o.sent < *at && o.sent + o.latency > *at
                })
                .count()
        })
        .sum();
    eprintln!(
        "rolling upgrade: {} requests in {elapsed:.1?}, statuses {statuses:?}; old a {}, old b {}, \
         new c {}, new d {}; {drained} answered by an old replica after its SIGTERM; p99 {:?}",
        outcomes.len(),
        per_replica(&a),
        per_replica(&b),
        per_replica(&c),
        per_replica(&d),
        load::percentile(&outcomes, 99.0),
    );
    assert_eq!(
        ok,
        outcomes.len(),
        "every request answered 200: {statuses:?}"
    );
    for base in [&a, &b, &c, &d] {
        assert!(per_replica(base) > 0, "{base} served no request");
    }
    let stored = default_count(&d).await;
    assert_eq!(stored, ok as i64, "stored count against the 200s");
    load::assert_one_to_n(&acknowledged_counts(&outcomes), stored, "counts answered");
    assert_eq!(default_count(&c).await, stored);
    stop(new_c).await;
    stop(new_d).await;
}

/// The SQL of the test's own migrations: an expand one that adds a
/// nullable column, and the contract one that drops it, a release after
/// the code that stopped using it.
const ADD_NOTE: &str = "ALTER TABLE visitors ADD COLUMN upgrade_note text";
const DROP_NOTE: &str = "ALTER TABLE visitors DROP COLUMN upgrade_note";

/// The application name this binary's sessions announce.
fn this_schema() -> String {
    format!("tally schema={}", schema_version(POSTGRES))
}

/// Migrations 1 to `last`, as `applied` lists them.
fn versions(last: i64) -> String {
    (1..=last)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// This binary's migrations, then the test's.
fn with_test_migrations() -> Vec<Migration> {
    let next = POSTGRES.len() as i64 + 1;
    let mut list = POSTGRES.to_vec();
    list.push(Migration {
        version: next,
        name: "add_upgrade_note",
        kind: Kind::Expand,
        sql: ADD_NOTE,
    });
    list.push(Migration {
        version: next + 1,
        name: "drop_upgrade_note",
        kind: Kind::Contract {
            after: previous_release().0,
        },
        sql: DROP_NOTE,
    });
    list
}

fn store_settings(url: &str) -> tally::config::StoreSettings {
    settings(url, &[]).store
}

fn applied(pg: &PgServer, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM tally_migrations",
    )
}

fn has_note(pg: &PgServer, db: &str) -> bool {
    let n = pg.psql(
        db,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'visitors' AND column_name = 'upgrade_note'",
    );
    n == "1"
}

/// The pid, address and start of the sessions on `db` named `name`.
fn sessions_named(pg: &PgServer, db: &str, name: &str) -> Vec<(String, String)> {
    let rows = pg.psql(
        "postgres",
        &format!(
            "SELECT pid, host(client_addr) || ':' || client_port FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name = '{name}' ORDER BY pid"
        ),
    );
    rows.lines()
        .map(|l| {
            let (pid, addr) = l.split_once('|').unwrap();
            (pid.to_owned(), addr.to_owned())
        })
        .collect()
}

/// A contract migration is refused while a replica of the previous release
/// (plain `tally`) or of this one (its schema, below the migration) is
/// connected, and the refusal names each; the expand migration before it
/// is applied all the same, and the old replica keeps counting on the
/// expanded schema. `serve`'s migrator leaves it pending without failing.
/// Once those replicas stop, `migrate` applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_migration_waits_until_no_older_release_is_connected() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url).to_owned();
    let list = with_test_migrations();
    let (expand, contract) = (list[list.len() - 2].version, list[list.len() - 1].version);
    // One pooled connection each, so each is exactly one session.
    let one = [("TALLY_DB_POOL_SIZE", "1")];
    let old = tokio::task::spawn_blocking({
        let url = url.clone();
        move || spawn_previous(&url, &one)
    })
    .await
    .unwrap();
    let operator_named = format!("{url}?application_name=web-eu");
    let new = tokio::task::spawn_blocking({
        let url = operator_named.clone();
        move || spawn_current(&url, &one)
    })
    .await
    .unwrap();
    assert_eq!(old.hit_greeting().await, 1);
    assert_eq!(new.hit_greeting().await, 2);
    let old_sessions = sessions_named(&pg, &db, "tally");
    let new_sessions = sessions_named(&pg, &db, &format!("web-eu {}", this_schema()));
    assert_eq!((old_sessions.len(), new_sessions.len()), (1, 1));

    let refusal = tally::server::migrate_list(&store_settings(&url), &list, false)
        .await
        .expect_err("a contract migration with older releases connected");
    let message = format!("{refusal:#}");
    let first_line = format!(
        "contract migration {contract} (drop_upgrade_note) not applied: 2 sessions of an older \
         tally release still use this database:"
    );
    assert!(message.starts_with(&first_line), "{message}");
    for ((pid, addr), shown) in [
        (
            &old_sessions[0],
            "\"tally\" (a release that announces no schema)",
        ),
        (
            &new_sessions[0],
            &*format!(
                "\"web-eu {}\" (schema {})",
                this_schema(),
                schema_version(POSTGRES)
            ),
        ),
    ] {
        let line =
            format!("\n  - pid {pid} from {addr}, application_name {shown}, connected since ");
        assert!(message.contains(&line), "{line:?} in {message}");
    }
    assert!(message.contains("`tally migrate --force`"), "{message}");
    assert!(
        message.ends_with(&format!("Applied meanwhile: [{expand}]")),
        "{message}"
    );
    assert_eq!(applied(&pg, &db), versions(expand));
    assert!(has_note(&pg, &db));

    // Both releases keep counting on the expanded schema.
    assert_eq!(old.hit_greeting().await, 3);
    assert_eq!(new.hit_greeting().await, 4);

    // What `serve` does at start: the contract migration stays pending and
    // nothing fails, so the replica becomes ready.
    let store = tally::store::open(&store_settings(&url).database_url, &store_settings(&url))
        .expect("open the store");
    let migrated = store
        .migrate(&list, Contracts::WhenSafe)
        .await
        .expect("the migrator of serve does not fail");
    assert_eq!(migrated.applied, Vec::<i64>::new());
    let held = migrated.held.expect("held");
    assert_eq!(held.migrations.len(), 1);
    assert_eq!(held.migrations[0].version, contract);
    assert_eq!(held.holders.len(), 2);
    assert!(has_note(&pg, &db));
    drop(store);

    // With both replicas gone, `migrate` applies it.
    stop(old).await;
    stop(new).await;
    await_sessions(&pg, &db, "");
    let done = tally::server::migrate_list(&store_settings(&url), &list, false)
        .await
        .expect("applied once no older release is connected");
    assert_eq!(done, [contract]);
    assert_eq!(applied(&pg, &db), versions(contract));
    assert!(!has_note(&pg, &db));
    let again = tally::server::migrate_list(&store_settings(&url), &list, false).await;
    assert_eq!(again.unwrap(), Vec::<i64>::new());
}

/// `--force` applies a contract migration whoever is connected; the
/// previous release, which never used what it drops, counts on, and starts
/// on the newer schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_contract_migration_runs_beside_the_previous_release() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url).to_owned();
    let list = with_test_migrations();
    let old = tokio::task::spawn_blocking({
        let url = url.clone();
        move || spawn_previous(&url, &[])
    })
    .await
    .unwrap();
    assert_eq!(old.hit_greeting().await, 1);
    let done = tally::server::migrate_list(&store_settings(&url), &list, true)
        .await
        .expect("forced");
    // Everything the previous release did not know: this tree's own
    // migrations past its schema, then the test's.
    let contract = list[list.len() - 1].version;
    let unknown: Vec<i64> = (previous_schema() + 1..=contract).collect();
    assert_eq!(done, unknown);
    assert_eq!(applied(&pg, &db), versions(contract));
    assert!(!has_note(&pg, &db));
    assert_eq!(old.hit_greeting().await, 2);
    stop(old).await;

    // The previous release started on the newer schema finds every version
    // it knows applied, ignores the others, and serves.
    let restarted = tokio::task::spawn_blocking(move || spawn_previous(&url, &[]))
        .await
        .unwrap();
    assert_eq!(restarted.hit_greeting().await, 3);
    assert_eq!(applied(&pg, &db), versions(contract));
    stop(restarted).await;
}
