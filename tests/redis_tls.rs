//! Redis as managed services run it: TLS only (no plain-text port) and an
//! ACL user, the default user turned off. tally trusts the private CA of
//! TALLY_REDIS_CA_FILE and authenticates as the URL's user; a wrong CA or a
//! wrong password leaves the cache down exactly as an outage does (the
//! store answers every request, counts stay exact, nothing goes in plain
//! text), the reason is logged once, and no password is ever shown.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::app::{TallyProcess, get_json, get_text, parse_greeting, run_to_exit, sqlite_url};
use support::load;
use support::redis::{RedisOptions, RedisServer, RedisTls, RedisUser};
use tally_dev::tls::TestCa;

/// The ACL user's password; distinctive, so a search of the logs for it
/// cannot match anything else.
const PASSWORD: &str = "redis-acl-pass-3f9c1a";
const WRONG_PASSWORD: &str = "not-the-pass-8d2e7b";

/// A TLS-only Redis with the ACL user `tally`, and the CA files to trust.
struct Tls {
    redis: RedisServer,
    ca: PathBuf,
    wrong_ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Tls {
    fn start() -> Tls {
        Tls::start_with(&["127.0.0.1", "localhost"], Vec::new())
    }

    /// With a certificate for `names`, and more `redis-server` options
    /// (such as another ACL user).
    fn start_with(names: &[&str], extra_args: Vec<String>) -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("redis-ca");
        let server = ca.server(dir.path(), "redis", names);
        let ca_file = ca.write_ca(dir.path());
        let wrong_ca = TestCa::new("wrong-ca").write_ca(dir.path());
        let redis = RedisServer::start_with(RedisOptions {
            tls: Some(RedisTls {
                cert: server.cert,
                key: server.key,
                ca: ca_file.clone(),
            }),
            user: Some(RedisUser {
                name: "tally".to_owned(),
                password: PASSWORD.to_owned(),
            }),
            extra_args,
            ..RedisOptions::default()
        });
        Tls {
            redis,
            ca: ca_file,
            wrong_ca,
            dir,
        }
    }

    /// `rediss://<user>:<password>@127.0.0.1:<port>/0`
    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "rediss://{user}:{password}@127.0.0.1:{}/0",
            self.redis.port()
        )
    }

    /// tally on a SQLite store in this test's dir, with `redis_url`.
    fn tally(&self, redis_url: &str, ca_file: Option<&PathBuf>) -> TallyProcess {
        let db_dir = self.dir.path().join(fresh_name());
        std::fs::create_dir(&db_dir).unwrap();
        let db = sqlite_url(&db_dir);
        let mut env = vec![
            ("TALLY_DATABASE_URL", db.clone()),
            ("TALLY_REDIS_URL", redis_url.to_owned()),
        ];
        if let Some(ca) = ca_file {
            env.push(("TALLY_REDIS_CA_FILE", ca.display().to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TallyProcess::spawn(&env)
    }
}

/// A new directory name for one tally's database.
fn fresh_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("db-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Waits until `/readyz` says the cache is `state`.
async fn cache_becomes(tally: &TallyProcess, state: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = get_json(&tally.url("/readyz")).await;
        assert_eq!(status, 200, "{body}");
        if body["cache"]["state"] == state {
            assert_eq!(body["cache"]["backend"], "redis", "{body}");
            return;
        }
        assert!(
            started.elapsed() < within,
            "cache not {state} within {within:?}: {body}\n{}",
            tally.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/readyz` says the cache is down at every look for `span`.
async fn cache_stays_down(tally: &TallyProcess, span: Duration) {
    let started = Instant::now();
    while started.elapsed() < span {
        let (status, body) = get_json(&tally.url("/readyz")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cache"]["state"], "down", "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` hits on `/`, one after another: each must be a 200 greeting that
/// carries the next count after `from`.
async fn hits_count_on(tally: &TallyProcess, from: i64, n: i64) {
    let client = load::client();
    for expected in from + 1..=from + n {
        let response = client.get(tally.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert_eq!(parse_greeting(&body), Some(expected), "{body}");
    }
}

/// `n` reads of the default site's count, each a 200 with `expected`.
async fn reads_answer(tally: &TallyProcess, n: usize, expected: i64) {
    for _ in 0..n {
        let (status, body) = get_json(&tally.url("/api/v1/sites/default/count")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], expected, "{body}");
    }
}

/// The value of the sample `name` (with its labels) in `/metrics`.
async fn metric(tally: &TallyProcess, name: &str) -> u64 {
    let text = get_text(&tally.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Lines of the log that contain `text`.
fn lines_with(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

/// No password, right or wrong, in anything tally showed.
async fn no_password_shown(tally: &TallyProcess) {
    let readyz = get_text(&tally.url("/readyz")).await;
    let metrics = get_text(&tally.url("/metrics")).await;
    for (what, text) in [
        ("log", tally.log()),
        ("stderr", tally.stderr()),
        ("/readyz", readyz),
        ("/metrics", metrics),
    ] {
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(!text.contains(secret), "{what} shows a password:\n{text}");
        }
    }
}

#[test]
fn the_harness_speaks_tls_as_the_acl_user_and_redis_has_no_plain_port() {
    let tls = Tls::start();
    let redis = &tls.redis;
    assert_eq!(
        redis.url(),
        format!("rediss://tally:{PASSWORD}@127.0.0.1:{}", redis.port())
    );
    assert_eq!(redis.command(&["ACL", "WHOAMI"]).as_deref(), Ok("tally"));
    assert_eq!(
        redis.command(&["CONFIG", "GET", "port"]),
        Ok("port\n0".into())
    );
    // The TLS port does not answer plain text.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("PONG"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_uses_a_tls_redis_as_its_acl_user() {
    let tls = Tls::start();
    let tally = tls.tally(&tls.url("tally", PASSWORD), Some(&tls.ca));
    cache_becomes(&tally, "up", Duration::from_secs(5)).await;

    hits_count_on(&tally, 0, 20).await;
    // The count reached Redis (over TLS, as `tally`) once the background
    // publish is delivered.
    let started = Instant::now();
    let key = loop {
        let key = tls.redis.command(&["KEYS", "tally:*:count:1"]).unwrap();
        if !key.is_empty() && tls.redis.command(&["GET", &key]).unwrap() == "0:20" {
            break key;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(tls.redis.command(&["GET", &key]).unwrap(), "0:20");

    let hits = metric(&tally, "tally_cache_hits_total").await;
    let misses = metric(&tally, "tally_cache_misses_total").await;
    reads_answer(&tally, 10, 20).await;
    assert_eq!(metric(&tally, "tally_cache_hits_total").await, hits + 10);
    assert_eq!(metric(&tally, "tally_cache_misses_total").await, misses);
    assert_eq!(metric(&tally, "tally_cache_up{backend=\"redis\"}").await, 1);
    assert_eq!(metric(&tally, "tally_cache_errors_total").await, 0);

    let log = tally.log();
    let shown = format!("rediss://tally:***@127.0.0.1:{}/0", tls.redis.port());
    assert_eq!(lines_with(&log, &shown), 1, "{log}");
    assert_eq!(lines_with(&log, "Redis is up"), 1, "{log}");
    assert_eq!(lines_with(&log, "WARN"), 0, "{log}");
    no_password_shown(&tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_leaves_the_cache_down_and_every_answer_right() {
    let tls = Tls::start();
    let tally = tls.tally(&tls.url("tally", WRONG_PASSWORD), Some(&tls.ca));
    // Several probes (one each 200 ms) are refused in this time.
    cache_stays_down(&tally, Duration::from_millis(1500)).await;

    hits_count_on(&tally, 0, 20).await;
    reads_answer(&tally, 5, 20).await;
    cache_stays_down(&tally, Duration::from_millis(300)).await;
    assert_eq!(metric(&tally, "tally_cache_up{backend=\"redis\"}").await, 0);
    assert_eq!(metric(&tally, "tally_cache_hits_total").await, 0);
    assert_eq!(tls.redis.command(&["DBSIZE"]).as_deref(), Ok("0"));

    let log = tally.log();
    assert_eq!(
        lines_with(
            &log,
            "Redis refused the user or password of TALLY_REDIS_URL"
        ),
        1,
        "logged once, however many probes:\n{log}"
    );
    assert_eq!(lines_with(&log, "WARN"), 1, "{log}");
    assert_eq!(lines_with(&log, "user=\"tally\""), 1, "{log}");
    no_password_shown(&tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_leaves_the_cache_down_and_nothing_in_plain_text() {
    let tls = Tls::start();
    let url = tls.url("tally", PASSWORD);
    // A private CA that did not sign the server's certificate, and the
    // public roots when no CA file is given.
    let wrong = tls.tally(&url, Some(&tls.wrong_ca));
    let public = tls.tally(&url, None);
    for (tally, trust) in [
        (
            &wrong,
            format!("TALLY_REDIS_CA_FILE {}", tls.wrong_ca.display()),
        ),
        (
            &public,
            "the bundled public roots (no TALLY_REDIS_CA_FILE)".to_owned(),
        ),
    ] {
        cache_stays_down(tally, Duration::from_millis(1200)).await;
        hits_count_on(tally, 0, 20).await;
        reads_answer(tally, 5, 20).await;
        assert_eq!(metric(tally, "tally_cache_up{backend=\"redis\"}").await, 0);
        let log = tally.log();
        assert_eq!(lines_with(&log, "TLS to Redis failed"), 1, "{log}");
        assert_eq!(lines_with(&log, "WARN"), 1, "{log}");
        assert_eq!(lines_with(&log, &trust), 2, "configured, failed: {log}");
        assert_eq!(lines_with(&log, "UnknownIssuer"), 1, "{log}");
        no_password_shown(tally).await;
    }
    // Nothing tally would write reached Redis.
    assert_eq!(tls.redis.command(&["DBSIZE"]).as_deref(), Ok("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_name_is_not_trusted() {
    // Signed by the trusted CA, but not for 127.0.0.1, the URL's host
    // (the harness checks `localhost`).
    let tls = Tls::start_with(&["localhost"], Vec::new());
    let tally = tls.tally(&tls.url("tally", PASSWORD), Some(&tls.ca));
    cache_stays_down(&tally, Duration::from_millis(1000)).await;
    hits_count_on(&tally, 0, 5).await;
    let log = tally.log();
    assert_eq!(lines_with(&log, "TLS to Redis failed"), 1, "{log}");
    assert_eq!(
        lines_with(&log, "certificate not valid for name"),
        1,
        "{log}"
    );
    assert_eq!(tls.redis.command(&["DBSIZE"]).as_deref(), Ok("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_redis_is_noticed_and_its_return_used_again() {
    // tally connects as `app`; the harness keeps its own `tally` user.
    let tls = Tls::start_with(
        &["127.0.0.1", "localhost"],
        [
            "--user",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let tally = tls.tally(&tls.url("app", PASSWORD), Some(&tls.ca));
    cache_becomes(&tally, "up", Duration::from_secs(5)).await;
    hits_count_on(&tally, 0, 10).await;

    let redis = &tls.redis;
    redis
        .command(&[
            "ACL",
            "SETUSER",
            "app",
            "resetpass",
            &format!(">{WRONG_PASSWORD}"),
        ])
        .unwrap();
    redis.command(&["CLIENT", "KILL", "USER", "app"]).unwrap();
    // The next call fails (its connection is gone), and every reconnection
    // is refused from then on.
    reads_answer(&tally, 3, 10).await;
    cache_becomes(&tally, "down", Duration::from_secs(2)).await;
    cache_stays_down(&tally, Duration::from_millis(1000)).await;
    hits_count_on(&tally, 10, 10).await;

    redis
        .command(&[
            "ACL",
            "SETUSER",
            "app",
            "resetpass",
            &format!(">{PASSWORD}"),
        ])
        .unwrap();
    cache_becomes(&tally, "up", Duration::from_secs(2)).await;
    hits_count_on(&tally, 20, 10).await;
    reads_answer(&tally, 3, 30).await;

    let log = tally.log();
    assert_eq!(lines_with(&log, "Redis is up"), 2, "{log}");
    assert_eq!(
        lines_with(
            &log,
            "Redis refused the user or password of TALLY_REDIS_URL"
        ),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, "user=\"app\""), 1, "{log}");
    no_password_shown(&tally).await;
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_the_start_naming_the_setting() {
    let tls = Tls::start();
    let missing = tls.dir.path().join("missing.crt");
    let garbage = tls.dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nsecret*words\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let db = sqlite_url(tls.dir.path());
    let tls_url = tls.url("tally", PASSWORD);
    let plain_url = format!("redis://tally:{PASSWORD}@127.0.0.1:{}/0", tls.redis.port());
    for (url, ca, expected) in [
        (
            &tls_url,
            &missing,
            format!("TALLY_REDIS_CA_FILE {}: cannot read it", missing.display()),
        ),
        (
            &tls_url,
            &garbage,
            format!(
                "TALLY_REDIS_CA_FILE {}: not a PEM certificate file",
                garbage.display()
            ),
        ),
        (
            &plain_url,
            &tls.ca,
            "TALLY_REDIS_CA_FILE is set but the Redis URL".to_owned(),
        ),
    ] {
        let ca = ca.display().to_string();
        let exited = run_to_exit(
            &["serve"],
            &[
                ("TALLY_LISTEN", "127.0.0.1:0"),
                ("TALLY_DATABASE_URL", &db),
                ("TALLY_REDIS_URL", url),
                ("TALLY_REDIS_CA_FILE", &ca),
            ],
            Duration::from_secs(10),
        )
        .expect("tally stops at once");
        assert!(!exited.status.success());
        assert!(exited.stderr.contains(&expected), "{}", exited.stderr);
        assert!(!exited.stderr.contains(PASSWORD), "{}", exited.stderr);
        assert!(!exited.stderr.contains("secret*words"), "{}", exited.stderr);
    }
}
