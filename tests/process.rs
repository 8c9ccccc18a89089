//! The real binary as a child process: signals, crash safety, the
//! healthcheck subcommand, `--help`, and what reaches the logs.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::app::{TOKEN, TallyProcess, http_status, parse_greeting};
use support::load::{self, Until};
use support::pg::PgServer;

/// Load on `process` from 64 clients until `kill` is sent, then stops.
async fn kill_under_load(store_env: &[(&str, &str)]) {
    let victim = TallyProcess::spawn(store_env);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (victim.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, 64, Until::Flag(stop, 1_000_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.signal(libc::SIGKILL);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    drop(victim);

    let acknowledged: Vec<i64> = outcomes
        .iter()
        .filter(|o| o.status == Some(200))
        .map(|o| parse_greeting(&o.body).unwrap())
        .collect();
    let sent = outcomes.len() as i64;
    assert!(
        acknowledged.len() > 100,
        "the load was real: {} acks",
        acknowledged.len()
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.status, Some(200) | None)),
        "{:?}",
        load::statuses(&outcomes)
    );

    let survivor = TallyProcess::spawn(store_env);
    let count = survivor.count("default").await;
    println!(
        "kill -9: {} acknowledged, {sent} sent, {count} stored",
        acknowledged.len()
    );
    assert!(
        count >= acknowledged.len() as i64,
        "an acknowledged hit was lost"
    );
    assert!(count <= sent, "more hits stored than sent");
    // Every acknowledged count is at most the stored total and distinct.
    let mut distinct = acknowledged.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), acknowledged.len());
    assert!(distinct.last().copied().unwrap_or(0) <= count);
}

async fn kill_9_under_load_loses_no_acknowledged_hit(url: &str) {
    kill_under_load(&[("TALLY_DATABASE_URL", url)]).await;
}

with_both_databases!(kill_9_under_load_loses_no_acknowledged_hit);

/// Requests held in flight (the store locked) when SIGTERM arrives are all
/// answered, then the process exits 0 and their hits are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tally.db");
    let url = format!("sqlite://{}", db.display());
    let env = [
        ("TALLY_DATABASE_URL", url.as_str()),
        ("TALLY_STORE_TIMEOUT", "20s"),
    ];
    let mut process = TallyProcess::spawn(&env);

    // Hold SQLite's write lock so every hit waits in flight.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let client = load::client();
    let mut requests = Vec::new();
    for _ in 0..64 {
        let (client, url) = (client.clone(), process.url("/"));
        requests.push(tokio::spawn(async move {
            load::send(&client, Method::GET, &url).await
        }));
    }
    let metrics_url = process.url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    // 64 hits plus the /metrics request asking.
    while !client
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("\ntally_http_requests_in_flight 65\n")
    {
        assert!(
            Instant::now() < deadline,
            "the 64 requests never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    process.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        http_status(process.addr, "/healthz"),
        None,
        "no longer accepting"
    );
    locker.execute_batch("COMMIT").unwrap();

    let mut counts = Vec::new();
    for r in requests {
        let outcome = r.await.unwrap();
        assert_eq!(
            outcome.status,
            Some(200),
            "an in-flight request went unanswered"
        );
        counts.push(parse_greeting(&outcome.body).unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=64).collect::<Vec<i64>>());
    let status = process.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", process.log());
    assert!(process.log().contains("stopped cleanly"));
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT visitor_count FROM visitors WHERE site_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 64);
}

/// SIGTERM under continuous load: no client sees an error status, the
/// process exits 0, and exactly the acknowledged hits are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_with_exactly_the_acknowledged_hits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tally.db", dir.path().display());
    let env = [("TALLY_DATABASE_URL", url.as_str())];
    let mut process = TallyProcess::spawn(&env);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (process.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, 64, Until::Flag(stop, 1_000_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    process.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let status = process.wait(Duration::from_secs(15));
        (status, process)
    })
    .await
    .unwrap();
    let (status, process) = status;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", process.log());
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.status, Some(200) | None)),
        "{:?}",
        load::statuses(&outcomes)
    );
    let acknowledged = outcomes.iter().filter(|o| o.status == Some(200)).count() as i64;
    drop(process);
    let survivor = TallyProcess::spawn(&env);
    assert_eq!(survivor.count("default").await, acknowledged);
}

#[test]
fn healthcheck_subcommand_reports_the_server_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tally.db", dir.path().display());
    let process = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url)]);
    let run = |listen: &str| {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("healthcheck")
            .env("TALLY_LISTEN", listen)
            .output()
            .unwrap()
    };
    assert!(run(&process.addr.to_string()).status.success());
    let unspecified = format!("0.0.0.0:{}", process.addr.port());
    assert!(
        run(&unspecified).status.success(),
        "0.0.0.0 is checked on loopback"
    );
    let port = support::free_port();
    let down = run(&format!("127.0.0.1:{port}"));
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("connecting to"));
}

/// `tally --version` names the version and the commit the binary was built
/// from, as `scripts/build-id` reads this checkout: the commit, with
/// `+dirty.<digest>` when its sources differ from it.
#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let version = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    let build_id = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-id"))
        .output()
        .unwrap();
    assert!(build_id.status.success());
    let build_id = String::from_utf8(build_id.stdout).unwrap();
    let commit = build_id.trim().split('+').next().unwrap();
    assert_eq!(commit.len(), 40, "a commit: {build_id:?}");
    assert!(
        commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{build_id:?}"
    );
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!(
            "tally {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            build_id.trim()
        )
    );
}

#[test]
fn help_documents_every_setting_and_shows_no_secret() {
    let help = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--help"])
        .env("TALLY_ADMIN_TOKEN", "token-in-env-xyz")
        .env("TALLY_DATABASE_URL", "postgres://u:pw-in-env-xyz@db/x")
        .env("TALLY_REDIS_URL", "redis://:redispw-in-env-xyz@cache:6379")
        .output()
        .unwrap();
    assert!(help.status.success());
    // Help wraps lines; compare with whitespace folded.
    let text = String::from_utf8(help.stdout).unwrap();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for var in [
        "TALLY_LISTEN",
        "TALLY_DATABASE_URL",
        "TALLY_DATABASE_URL_FILE",
        "TALLY_DB_POOL_SIZE",
        "TALLY_STORE_TIMEOUT",
        "TALLY_GREETING",
        "TALLY_ADMIN_TOKEN",
        "TALLY_ADMIN_TOKEN_FILE",
        "TALLY_SHUTDOWN_GRACE",
        "TALLY_WRITE_QUEUE",
        "TALLY_MAX_BATCH",
        "TALLY_MAX_BODY_BYTES",
        "TALLY_MAX_CONNECTIONS",
        "TALLY_HEADER_TIMEOUT",
        "TALLY_BODY_TIMEOUT",
        "TALLY_IDLE_TIMEOUT",
        "TALLY_MAX_HEADER_BYTES",
        "TALLY_TRUSTED_PROXIES",
        "TALLY_REAL_IP_FROM",
        "TALLY_READ_RATE_LIMIT",
        "TALLY_REDIS_URL",
        "TALLY_REDIS_URL_FILE",
        "TALLY_CACHE_TIMEOUT",
        "TALLY_RATE_LIMIT",
        "TALLY_AUTH_FAILURE_LIMIT",
        "TALLY_SERIES_RETENTION",
        "TALLY_DASHBOARD_PUBLIC",
        "TALLY_BOT_FILTER",
        "TALLY_LOG",
        "TALLY_LOG_FORMAT",
    ] {
        assert!(text.contains(&format!("[env: {var}")), "--help lacks {var}");
    }
    assert!(!text.contains("token-in-env-xyz"));
    assert!(!text.contains("pw-in-env-xyz"));
    assert!(!text.contains("redispw-in-env-xyz"));
    let top = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--help")
        .output()
        .unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    for sub in ["serve", "migrate", "healthcheck"] {
        assert!(top.contains(sub), "top-level help lacks {sub}");
    }
    let migrate = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["migrate", "--help"])
        .output()
        .unwrap();
    let migrate = String::from_utf8(migrate.stdout).unwrap();
    assert!(
        migrate.contains("[env: TALLY_MIGRATE_FORCE"),
        "migrate --help lacks TALLY_MIGRATE_FORCE: {migrate}"
    );
}

/// The reset is logged at debug level on stdout, as the seed did, with the
/// request id; secrets in settings never reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_the_reset_with_its_request_id_and_no_secrets() {
    let pg = PgServer::start();
    let url = pg.create_database();
    // Trust auth ignores the password, so it is only there to be hidden.
    let with_password = url.replacen("postgres@", "postgres:hunter2-secret@", 1);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{TOKEN}\n")).unwrap();
    let process = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &with_password),
        ("TALLY_ADMIN_TOKEN", ""),
        (
            "TALLY_ADMIN_TOKEN_FILE",
            token_file.path().to_str().unwrap(),
        ),
        ("TALLY_LOG_FORMAT", "json"),
    ]);
    let client = load::client();
    let reset = client
        .get(process.url("/resetcounter"))
        .bearer_auth(TOKEN)
        .header("x-request-id", "req-from-nginx-42")
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200, "the token came from the file");
    assert_eq!(
        reset.text().await.unwrap(),
        "Successfully deleted redis and postgres counters"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = process.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let reset_line = lines
        .iter()
        .find(|l| l["message"] == "reset visitor count")
        .unwrap_or_else(|| panic!("no reset line in {log}"));
    assert_eq!(reset_line["level"], "DEBUG");
    assert_eq!(reset_line["span"]["id"], "req-from-nginx-42");
    assert!(!log.contains("hunter2-secret"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    assert!(
        log.contains("postgres:***@"),
        "the redacted URL is logged: {log}"
    );
}
