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

use support::app::{TOKEN, TallyProcess, get_json, parse_greeting, settings};
use support::load::{self, Until};
use support::pg::PgServer;
use support::{OwnedDir, free_port, log_tail, spawner, wait_for};
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

/// NGINX with the project's own configuration (`scripts/render-nginx`)
/// in front of the replicas a rolling upgrade has live: every request it
/// passes on carries its request id, and a request whose replica failed
/// is resent to the next with the same id.
struct Balancer {
    dir: OwnedDir,
    port: u16,
    master: std::process::Child,
}

impl Balancer {
    fn start(replicas: &[&TallyProcess]) -> Balancer {
        let dir = OwnedDir::new("tally-upgrade-nginx-");
        let root = dir.path();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let port = free_port();
        render_nginx(root, port, replicas);
        let cmd = support::nginx::command(&root.join("nginx.conf"), root);
        let master = spawner::spawn(cmd).expect("start nginx (scripts/test installs it)");
        let balancer = Balancer { dir, port, master };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(addr).ok()
        });
        assert!(up.is_some(), "nginx did not listen: {}", balancer.errors());
        balancer
    }

    /// Sends new requests to `replicas` only: a new configuration, then
    /// SIGHUP, then a wait until every worker of the old one has exited
    /// (each finishes the requests it holds first), as a Kubernetes
    /// Service drops an endpoint. An old worker also waits out a
    /// connection the client's pool opened and has sent nothing on, up to
    /// `client_header_timeout` (10 s).
    async fn route_to(&self, replicas: &[&TallyProcess]) -> std::ops::Range<Instant> {
        let began = Instant::now();
        render_nginx(self.dir.path(), self.port, replicas);
        let master = self.master.id();
        let before = spawner::descendants(master);
        spawner::signal(master, libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = spawner::descendants(master);
            let old_gone = before.iter().all(|pid| !now.contains(pid));
            let new_up = now.iter().any(|pid| !before.contains(pid));
            if old_gone && new_up {
                return began..Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "nginx's old workers {before:?} still run beside {now:?}: {}",
                self.errors()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn errors(&self) -> String {
        log_tail(&self.dir.path().join("error.log"), 4000)
            + &log_tail(&self.dir.path().join("nginx.err"), 2000)
    }

    /// The access log's lines (written at most a second after each
    /// request: wait for that first).
    fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Writes `root/nginx.conf`, listening on `port`, with `replicas` as the
/// upstreams and an access log.
fn render_nginx(root: &std::path::Path, port: u16, replicas: &[&TallyProcess]) {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let upstreams: Vec<std::net::SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    support::nginx::render(root, listen, &upstreams, true);
}

impl Drop for Balancer {
    fn drop(&mut self) {
        spawner::kill_tree_and_wait(&mut self.master);
    }
}

/// The sites the upgrade's load counts on: NGINX hashes each to a replica,
/// so every replica has some.
const SITES: usize = 12;

fn site(i: usize) -> String {
    format!("site-{i}")
}

/// Two replicas of the previous release serve behind NGINX; 64 clients
/// count hits on twelve sites through it, every request with NGINX's
/// request id. A replica of this tree joins, the first old one is taken
/// out of NGINX and stopped (it drains and exits 0), a second new one
/// joins, and the second old one is killed (SIGKILL) while NGINX still
/// sends to it: the hits it held are resent, with their ids, to a replica
/// of this tree. Every request is answered 200, and each site's stored
/// count is exactly its 200s, their counts 1..=N: a hit the old replica
/// committed before it died and the new one got again is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_through_nginx_counts_every_hit_once() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let db = db_name(&url).to_owned();
    let spawn = |f: fn(&str, &[(&str, &str)]) -> TallyProcess| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || f(&url, &[]))
    };
    let old_a = spawn(spawn_previous).await.unwrap();
    let old_b = spawn(spawn_previous).await.unwrap();
    let nginx = Balancer::start(&[&old_a, &old_b]);
    assert_eq!(sessions_by_name(&pg, &db), previous_announcement());
    let client = load::client();
    for i in 0..SITES {
        let created = client
            .post(nginx.url("/api/v1/sites"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "slug": site(i) }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }

    let stop_load = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let hits = nginx.url("/api/v1/sites");
    let load = tokio::spawn(load::run_built(
        Arc::new(move |client: &reqwest::Client, i: usize| {
            client.post(format!("{hits}/{}/hits", site(i % SITES)))
        }),
        64,
        Until::Flag(stop_load.clone(), 10_000_000),
    ));
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    let mut reloads = Vec::new();

    pause().await;
    // The new release finds the schema it was built for and serves beside
    // the old one.
    let new_c = spawn(spawn_current).await.unwrap();
    reloads.push(nginx.route_to(&[&old_a, &old_b, &new_c]).await);
    pause().await;

    reloads.push(nginx.route_to(&[&old_b, &new_c]).await);
    let a = old_a.url("");
    stop(old_a).await;
    pause().await;

    let new_d = spawn(spawn_current).await.unwrap();
    reloads.push(nginx.route_to(&[&old_b, &new_c, &new_d]).await);
    pause().await;

    // Killed while NGINX still sends to it.
    let b = old_b.url("");
    let killed_at = Instant::now();
    old_b.signal(libc::SIGKILL);
    drop(old_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    reloads.push(nginx.route_to(&[&new_c, &new_d]).await);
    pause().await;

    stop_load.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let elapsed = started.elapsed();
    await_sessions(&pg, &db, &this_schema());

    // Which replica answered each request, and which were resent: the
    // access log's upstream addresses ("a, b" when NGINX tried two).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = nginx.access_log();
    let counted: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| l["method"] == "POST" && l["uri"].as_str().unwrap().ends_with("/hits"))
        .collect();
    let upstreams = |l: &serde_json::Value| -> Vec<String> {
        l["upstream_addr"]
            .as_str()
            .unwrap()
            .split(", ")
            .map(|a| format!("http://{a}"))
            .collect()
    };
    let served_by = |base: &str| {
        counted
            .iter()
            .filter(|l| upstreams(l).last().map(String::as_str) == Some(base))
            .count()
    };
    let (c, d) = (new_c.url(""), new_d.url(""));
    let resent_from_b: Vec<Vec<String>> = counted
        .iter()
        .map(|l| upstreams(l))
        .filter(|u| u.len() == 2 && u[0] == b)
        .collect();
    let ids: std::collections::BTreeSet<&str> = counted
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    let statuses = load::statuses(&outcomes);
    // A request written on a keep-alive connection at the moment an old
    // NGINX worker closes it gets no answer: NGINX never read it (it has no
    // access log line) and the client sees the connection close, as it may
    // whenever a server closes an idle keep-alive connection.
    let unanswered: Vec<&load::Outcome> = outcomes.iter().filter(|o| o.status.is_none()).collect();
    eprintln!(
        "rolling upgrade through nginx: {} requests in {elapsed:.1?}, statuses {statuses:?} \
         ({} unanswered, closed by a reload); \
         answered by old a {}, old b {}, new c {}, new d {}; {} resent from b after its \
         SIGKILL at {:.1?}; p99 {:?}",
        outcomes.len(),
        unanswered.len(),
        served_by(&a),
        served_by(&b),
        served_by(&c),
        served_by(&d),
        resent_from_b.len(),
        killed_at - started,
        load::percentile(&outcomes, 99.0),
    );
    let ok = load::count_200(&outcomes);
    assert_eq!(
        ok + unanswered.len(),
        outcomes.len(),
        "every answer a 200: {statuses:?}"
    );
    for o in &unanswered {
        assert!(
            reloads.iter().any(|r| r.contains(&o.sent)),
            "a request sent {:?} into the load, outside NGINX's reloads, got no answer: {}",
            o.sent - started,
            o.body
        );
    }
    // Every request NGINX read was answered 200, once.
    assert_eq!(counted.len(), ok, "one access log line an answered request");
    assert!(counted.iter().all(|l| l["status"] == 200));
    assert_eq!(ids.len(), counted.len(), "a request id of its own each");
    for base in [&a, &b, &c, &d] {
        assert!(served_by(base) > 0, "{base} served no hit");
    }
    // The hits b held when it died went, with their ids, to this tree's
    // replicas.
    assert!(!resent_from_b.is_empty(), "no hit was resent from b");
    for pair in &resent_from_b {
        assert!(pair[1] == c || pair[1] == d, "{pair:?}");
    }

    for i in 0..SITES {
        let slug = site(i);
        let suffix = format!("/{slug}/hits");
        let answered: Vec<i64> = outcomes
            .iter()
            .filter(|o| o.url.ends_with(&suffix) && o.status == Some(200))
            .map(|o| {
                let body: serde_json::Value = serde_json::from_str(&o.body).unwrap();
                body["count"].as_i64().unwrap()
            })
            .collect();
        let stored = new_d.count(&slug).await;
        assert_eq!(
            stored,
            answered.len() as i64,
            "{slug}: stored against the 200s"
        );
        load::assert_one_to_n(&answered, stored, &slug);
        assert_eq!(new_c.count(&slug).await, stored);
    }
    stop(new_c).await;
    stop(new_d).await;
}

/// A request counted by one release and resent, with its id, to a replica
/// of the other after the first died is counted once, whichever way it
/// goes; on a site's own count and on its page's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_across_releases_is_counted_once() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let client = load::client();
    let keyed = |base: String, id: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("{base}/count/default.gif?page=/upgrade"))
                .header("x-request-id", id.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let greeting = client
                .get(format!("{base}/"))
                .header("x-request-id", format!("{id}-greeting"))
                .send()
                .await
                .unwrap();
            parse_greeting(&greeting.text().await.unwrap()).unwrap()
        }
    };
    for (round, (first, then)) in [
        (
            spawn_previous as fn(&str, &[(&str, &str)]) -> TallyProcess,
            spawn_current as fn(&str, &[(&str, &str)]) -> TallyProcess,
        ),
        (spawn_current, spawn_previous),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("cross-release-{round}");
        let url_first = url.clone();
        let one = tokio::task::spawn_blocking(move || first(&url_first, &[]))
            .await
            .unwrap();
        let url_then = url.clone();
        let other = tokio::task::spawn_blocking(move || then(&url_then, &[]))
            .await
            .unwrap();
        let before = one.count("default").await;
        let pages_before = page_count(&one.url(""), "/upgrade").await;
        let counted = keyed(one.url(""), id.clone()).await;
        assert_eq!(counted, before + 2, "the pixel's hit and the greeting's");
        // The first replica dies after committing, before it could answer
        // (as NGINX sees it); the request goes to the other release.
        one.signal(libc::SIGKILL);
        drop(one);
        let again = keyed(other.url(""), id).await;
        assert_eq!(
            again, counted,
            "both requests were retries: nothing counted"
        );
        assert_eq!(other.count("default").await, counted);
        assert_eq!(
            page_count(&other.url(""), "/upgrade").await,
            pages_before + 1
        );
        stop(other).await;
    }
}

/// The count of `page` on the default site.
async fn page_count(base: &str, page: &str) -> i64 {
    let (status, body) = get_json(&format!(
        "{base}/api/v1/sites/default/pages/count?page={page}"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_i64().unwrap()
}

/// How a replica of the previous release names its sessions.
fn previous_announcement() -> String {
    format!("tally schema={}", previous_schema())
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
    let old_sessions = sessions_named(&pg, &db, &previous_announcement());
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
            &*format!(
                "\"{}\" (schema {})",
                previous_announcement(),
                previous_schema()
            ),
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
