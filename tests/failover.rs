//! A PostgreSQL primary failover under load: the primary is killed (SIGKILL
//! of its postmaster and every one of its processes) while three tally
//! instances count, and its standby is promoted. tally finds the new
//! primary by itself through a multi-host URL with
//! `target_session_attrs=read-write`.
//!
//! With a synchronous standby no acknowledged hit is lost; through NGINX,
//! whose request ids let tally retry a commit of unknown outcome, the
//! stored count is exactly the number of acknowledged hits. With an
//! asynchronous standby the test measures what is lost.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use support::app::{TallyProcess, acknowledged_counts};
use support::load::{self, Outcome, Until};
use support::pg::PgServer;
use support::spawner::{self, ServerChild};
use support::{OwnedDir, free_port, log_tail, wait_for};

const CLIENTS: usize = 64;
/// Counting before the primary is killed.
const BEFORE: Duration = Duration::from_secs(2);
/// From the kill to the promotion, as a failover manager might take.
const UNTIL_PROMOTION: Duration = Duration::from_millis(500);
/// Counting after the promotion.
const AFTER: Duration = Duration::from_secs(4);
/// A bound no load may pass, so the test always ends.
const MAX_REQUESTS: usize = 2_000_000;
/// Counting must resume within this long of the kill: the promotion comes
/// after 0.5 s, and then each instance's next connection finds the new
/// primary. Generous, for a machine shared with other builds.
const RESUME_BOUND: Duration = Duration::from_secs(10);

/// A primary, its standby, and a database on both.
struct Cluster {
    primary: PgServer,
    standby: PgServer,
    db: String,
}

impl Cluster {
    fn start(synchronous: bool) -> Cluster {
        let primary = PgServer::start_primary();
        let url = primary.create_database();
        let db = url.rsplit('/').next().expect("a database name").to_owned();
        let standby = PgServer::start_standby(&primary);
        if synchronous {
            primary.require_synchronous_standby();
        } else {
            primary.wait_for_standby("async");
        }
        Cluster {
            primary,
            standby,
            db,
        }
    }

    /// Both servers, the primary first, as libpq reads a multi-host URL.
    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
            self.primary.port(),
            self.standby.port(),
            self.db
        )
    }

    /// The default site's count on the promoted standby.
    fn stored(&self) -> i64 {
        self.standby
            .psql(
                &self.db,
                "SELECT visitor_count FROM visitors WHERE site_id = 1",
            )
            .parse()
            .expect("a count")
    }
}

fn three_instances(url: &str) -> Vec<TallyProcess> {
    (0..3)
        .map(|_| TallyProcess::spawn(&[("TALLY_DATABASE_URL", url), ("TALLY_LOG", "warn")]))
        .collect()
}

/// What a load through a failover gave.
struct Failover {
    outcomes: Vec<Outcome>,
    killed: Instant,
    promoted: Instant,
    /// Bytes of WAL the standby had not flushed just before the kill.
    backlog: String,
}

/// Counts on `/` from [`CLIENTS`] clients round-robin over `urls`; kills
/// the primary after [`BEFORE`], promotes the standby [`UNTIL_PROMOTION`]
/// later, and goes on counting for [`AFTER`].
async fn count_through_a_failover(cluster: &mut Cluster, urls: &[String]) -> Failover {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let urls = urls.to_vec();
        let until = Until::Flag(stop.clone(), MAX_REQUESTS);
        async move { load::run(&urls, Method::GET, CLIENTS, until).await }
    });
    tokio::time::sleep(BEFORE).await;
    // WAL the standby had not yet flushed, a moment before the kill.
    let primary = &cluster.primary;
    let backlog = tokio::task::block_in_place(|| {
        primary.psql(
            "postgres",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) FROM pg_stat_replication",
        )
    });
    let killed = Instant::now();
    cluster.primary.kill();
    tokio::time::sleep(UNTIL_PROMOTION).await;
    let standby = &cluster.standby;
    tokio::task::block_in_place(|| standby.promote());
    let promoted = Instant::now();
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("the load");
    Failover {
        outcomes,
        killed,
        promoted,
        backlog,
    }
}

/// The figures of a failover.
#[derive(Debug)]
struct Figures {
    statuses: BTreeMap<u16, usize>,
    acknowledged: usize,
    errors: usize,
    /// From the kill to the first acknowledged hit sent after it.
    resumed: Duration,
    /// From the kill to the last error answered.
    last_error: Option<Duration>,
}

impl Failover {
    fn figures(&self) -> Figures {
        let statuses = load::statuses(&self.outcomes);
        let acknowledged = load::count_200(&self.outcomes);
        let answered = |o: &Outcome| o.sent + o.latency;
        let resumed = self
            .outcomes
            .iter()
            .filter(|o| o.status == Some(200) && o.sent > self.killed)
            .map(answered)
            .min()
            .expect("counting resumed after the kill")
            - self.killed;
        let last_error = self
            .outcomes
            .iter()
            .filter(|o| o.status != Some(200))
            .map(answered)
            .max()
            .map(|at| at.saturating_duration_since(self.killed));
        Figures {
            statuses,
            acknowledged,
            errors: self.outcomes.len() - acknowledged,
            resumed,
            last_error,
        }
    }

    fn print(&self, what: &str, stored: i64, figures: &Figures) {
        println!(
            "{what}: {} hits answered {:?}; 200s {}, errors {}, stored {stored}, \
             stored - 200s {}; WAL not yet on the standby just before the kill: {} bytes; \
             promotion done {:.0} ms after the kill, counting resumed {:.0} ms after it, last \
             error {:?} ms after it",
            self.outcomes.len(),
            figures.statuses,
            figures.acknowledged,
            figures.errors,
            stored - figures.acknowledged as i64,
            self.backlog,
            (self.promoted - self.killed).as_secs_f64() * 1000.0,
            figures.resumed.as_secs_f64() * 1000.0,
            figures.last_error.map(|d| d.as_millis()),
        );
    }
}

/// Every answer was a 200 or a 503.
fn assert_only_503s(figures: &Figures) {
    let unexpected: Vec<_> = figures
        .statuses
        .iter()
        .filter(|(status, _)| !matches!(status, 200 | 503))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 503s were to be seen, not {unexpected:?} (0: no answer)"
    );
}

/// Counts that more than one acknowledged hit was given: after an
/// asynchronous failover, the new primary gives again the counts of hits
/// it never received.
fn counts_given_twice(outcomes: &[Outcome]) -> usize {
    let mut counts = acknowledged_counts(outcomes);
    counts.sort_unstable();
    counts.windows(2).filter(|w| w[0] == w[1]).count()
}

/// Each instance counts again, on the new primary.
async fn each_counts(instances: &[TallyProcess]) {
    let client = load::client();
    for (i, instance) in instances.iter().enumerate() {
        let response = client.get(instance.url("/")).send().await.expect("a hit");
        assert_eq!(response.status(), 200, "instance {i} after the failover");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_failover_loses_no_acknowledged_hit() {
    let mut cluster = Cluster::start(true);
    let instances = three_instances(&cluster.url());
    let urls: Vec<String> = instances.iter().map(|t| t.url("/")).collect();

    let failover = count_through_a_failover(&mut cluster, &urls).await;
    let stored = cluster.stored();
    let figures = failover.figures();
    failover.print("synchronous standby, no request ids", stored, &figures);

    assert_only_503s(&figures);
    let acknowledged = figures.acknowledged as i64;
    assert!(
        stored >= acknowledged,
        "acknowledged hits lost: {acknowledged} 200s, {stored} stored"
    );
    // A hit whose commit was cut off by the kill may have reached the
    // standby: it is stored but was answered 503.
    assert!(
        stored - acknowledged <= figures.errors as i64,
        "{} more stored than acknowledged, but only {} errors",
        stored - acknowledged,
        figures.errors
    );
    assert_eq!(counts_given_twice(&failover.outcomes), 0);
    assert!(
        figures.resumed < RESUME_BOUND,
        "counting resumed only {:?} after the kill",
        figures.resumed
    );
    each_counts(&instances).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_failover_through_nginx_stores_exactly_the_acknowledged_hits() {
    let mut cluster = Cluster::start(true);
    let instances = three_instances(&cluster.url());
    let nginx = ProductionNginx::start(&instances.iter().map(|t| t.addr).collect::<Vec<_>>());

    let failover = count_through_a_failover(&mut cluster, &[nginx.url("/")]).await;
    let stored = cluster.stored();
    let figures = failover.figures();
    failover.print("synchronous standby, through NGINX", stored, &figures);
    let passed_on = figures.statuses.get(&503).copied().unwrap_or(0);
    println!("503s that NGINX passed on: {passed_on}");

    assert_only_503s(&figures);
    assert_eq!(
        stored, figures.acknowledged as i64,
        "with NGINX's request ids every retried commit counts once"
    );
    assert_eq!(counts_given_twice(&failover.outcomes), 0);
    assert!(
        figures.resumed < RESUME_BOUND,
        "counting resumed only {:?} after the kill",
        figures.resumed
    );
    each_counts(&instances).await;
    let errors = nginx.error_log();
    assert!(!errors.contains("[emerg]"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_asynchronous_failover_is_measured() {
    let mut cluster = Cluster::start(false);
    let instances = three_instances(&cluster.url());
    let urls: Vec<String> = instances.iter().map(|t| t.url("/")).collect();

    let failover = count_through_a_failover(&mut cluster, &urls).await;
    let stored = cluster.stored();
    let figures = failover.figures();
    failover.print("asynchronous standby, no request ids", stored, &figures);
    let lost = counts_given_twice(&failover.outcomes);
    println!(
        "asynchronous standby: acknowledged hits lost (their counts given again by the new \
         primary): {lost}; 200s - stored: {}",
        figures.acknowledged as i64 - stored
    );

    // What holds whatever was lost: clients saw only 503s, and counting
    // resumed by itself on every instance.
    assert_only_503s(&figures);
    assert!(
        figures.resumed < RESUME_BOUND,
        "counting resumed only {:?} after the kill",
        figures.resumed
    );
    each_counts(&instances).await;
}

/// NGINX with the production configuration (deploy/nginx/tally.conf.template
/// rendered by scripts/render-nginx, as scripts/stack renders it) in front
/// of the instances.
struct ProductionNginx {
    addr: SocketAddr,
    dir: OwnedDir,
    _child: ServerChild,
}

impl ProductionNginx {
    fn start(upstreams: &[SocketAddr]) -> ProductionNginx {
        let dir = OwnedDir::new("tally-failover-nginx-");
        let root = dir.path();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let conf = support::nginx::render(root, addr, upstreams, false);
        std::fs::create_dir_all(root.join("tmp")).expect("nginx temp dir");
        let cmd = support::nginx::command(&conf, root);
        let mut child = ServerChild::default();
        child.set(spawner::spawn(cmd).expect("start nginx (scripts/test installs it)"));
        let up = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            support::app::http_status(addr, "/readyz").filter(|s| *s == 200)
        });
        assert!(
            up.is_some(),
            "nginx did not proxy /readyz on {addr}: {}{}",
            log_tail(&root.join("error.log"), 2000),
            log_tail(&root.join("nginx.err"), 2000)
        );
        ProductionNginx {
            addr,
            dir,
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// A server made read-only (as a demoted or fenced primary is) refuses
/// writes with SQLSTATE 25006: each hit is answered 503 with Retry-After,
/// not 500, and counting resumes once the server takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_takes_no_writes_is_answered_503_then_left_behind() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let app = support::app::TestApp::spawn(&url, &["--store-timeout", "500ms"]).await;
    let client = load::client();
    let hit = || client.get(app.url("/")).send();
    assert_eq!(
        hit().await.unwrap().text().await.unwrap(),
        "Hello Linode!  This page has been viewed 1 time(s)."
    );

    // Every session, the pooled ones too, turns read-only on reload.
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let refused = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
        let on = pg.psql("postgres", "SHOW default_transaction_read_only");
        (on == "on").then_some(())
    });
    assert!(refused.is_some());
    for _ in 0..3 {
        let response = hit().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
        assert_eq!(
            body["error"]["message"],
            "the database is unavailable; nothing was written; retry shortly"
        );
    }

    pg.psql(
        "postgres",
        "ALTER SYSTEM RESET default_transaction_read_only",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let back = Instant::now();
    let recovered = loop {
        let response = hit().await.unwrap();
        if response.status() == 200 {
            break response.text().await.unwrap();
        }
        assert_eq!(response.status(), 503, "only 503 while read-only");
        assert!(back.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        recovered, "Hello Linode!  This page has been viewed 2 time(s).",
        "nothing was written while the server was read-only"
    );
    app.stop().await.unwrap();
}
