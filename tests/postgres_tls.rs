//! TLS to PostgreSQL against real servers that take TCP connections over
//! TLS only, with certificates made by the test: what each `sslmode`
//! checks, that settings which can never work stop tally at start-up with
//! an error that names them and shows no secret, and that once serving
//! they are 503s instead.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;
use support::app::{Exited, TallyProcess, TestApp, greeting_at, http_status, run_to_exit};
use support::free_port;
use support::pg::{PgOptions, PgServer, PgTls};
use tally_dev::tls::{CertFiles, TestCa};

/// The password of the `tally` role: it must never be shown.
const PASSWORD: &str = "pw-Zq8xV3kT9s";

/// The CA that signs the servers' certificates, and one that signs nothing
/// the servers present, with their files.
struct Cas {
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_file: PathBuf,
    wrong_ca_file: PathBuf,
}

impl Cas {
    fn new() -> Cas {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("tally-test-ca");
        let ca_file = ca.write_ca(dir.path());
        let wrong_ca_file = TestCa::new("wrong-ca").write_ca(dir.path());
        Cas {
            dir,
            ca,
            ca_file,
            wrong_ca_file,
        }
    }

    fn server_cert(&self, file: &str, names: &[&str]) -> CertFiles {
        self.ca.server(self.dir.path(), file, names)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A server that serves `cert` and takes TCP connections over TLS only,
/// logging each connection, with the `tally` role (password [`PASSWORD`])
/// and its database `tally`.
fn tls_server(cert: &CertFiles) -> PgServer {
    tls_server_with(cert, None, Vec::new())
}

/// [`tls_server`], accepting client certificates of `client_ca`, with
/// `hba` before the line that asks `tally` for its password.
fn tls_server_with(cert: &CertFiles, client_ca: Option<&Path>, mut hba: Vec<String>) -> PgServer {
    hba.push("hostssl all tally 127.0.0.1/32 scram-sha-256".into());
    let pg = PgServer::start_with(PgOptions {
        tls: Some(PgTls {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
            client_ca: client_ca.map(Path::to_path_buf),
            hba_first: hba,
        }),
        log_connections: true,
        ..PgOptions::default()
    });
    pg.psql(
        "postgres",
        &format!("CREATE ROLE tally LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
    );
    pg.psql("postgres", "CREATE DATABASE tally OWNER tally");
    pg
}

/// [`tls_server`] with a certificate for `127.0.0.1` and `localhost`,
/// signed by the CA.
fn loopback_server(cas: &Cas) -> PgServer {
    tls_server(&cas.server_cert("server", &["127.0.0.1", "localhost"]))
}

/// The `tally` role's URL on `pg` with these query parameters.
fn url(pg: &PgServer, params: &str) -> String {
    format!(
        "postgres://tally:{PASSWORD}@127.0.0.1:{}/tally?{params}",
        pg.port()
    )
}

/// Runs `tally <command>` to its exit with this database URL.
fn run(command: &str, database_url: &str) -> Exited {
    let listen = format!("127.0.0.1:{}", free_port());
    let exited = run_to_exit(
        &[command],
        &[
            ("TALLY_DATABASE_URL", database_url),
            ("TALLY_LISTEN", &listen),
            ("TALLY_ADMIN_TOKEN", support::app::TOKEN),
        ],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("tally {command} did not exit with {database_url}"));
    // Shown with --no-capture: what a user reads.
    eprintln!("tally {command} -> {}", error_line(&exited));
    exited
}

/// The error line `tally` ended with: its last line of stderr.
fn error_line(exited: &Exited) -> &str {
    exited.stderr.trim_end().lines().last().unwrap_or_default()
}

/// Asserts that tally failed, and that nothing it wrote shows the
/// password, a certificate or a key.
fn assert_failed_without_secrets(exited: &Exited, cas: &Cas) {
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    let keys: Vec<String> = std::fs::read_dir(cas.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for output in [&exited.stdout, &exited.stderr] {
        assert!(
            !output.contains(PASSWORD),
            "the password is shown: {output}"
        );
        assert!(!output.contains("-----BEGIN"), "PEM is shown: {output}");
        for pem in &keys {
            // Any line of base64 of any certificate or key in the directory.
            for line in pem.lines().filter(|l| l.len() >= 40) {
                assert!(!output.contains(&line[..40]), "PEM is shown: {output}");
            }
        }
    }
}

/// Asserts that the server admitted no session of `application` and
/// refused no plain-text attempt: tally never spoke without TLS.
fn assert_no_session_and_no_plain_text(pg: &PgServer, application: &str) {
    let log = pg.log();
    let admitted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains(application))
        .collect();
    assert!(admitted.is_empty(), "sessions admitted: {admitted:?}");
    assert!(
        !log.contains("no encryption"),
        "a plain-text attempt: {log}"
    );
}

/// How many sessions of `application` are open, and whether all use TLS,
/// as `pg_stat_ssl` says.
fn sessions(pg: &PgServer, application: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE '{application} tally schema=%'"
        ),
    )
}

#[tokio::test]
async fn verify_full_counts_exactly_over_tls() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    let database_url = url(
        &pg,
        &format!(
            "sslmode=verify-full&sslrootcert={}&application_name=tally-full",
            cas.ca_file.display()
        ),
    );
    let tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &database_url)]);

    const HITS: i64 = 200;
    let base = tally.url("");
    let mut counts = join_all((0..HITS).map(|_| greeting_at(&base))).await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=HITS).collect::<Vec<_>>());
    assert_eq!(tally.count("default").await, HITS);
    assert_eq!(
        pg.psql(
            "tally",
            "SELECT visitor_count FROM visitors WHERE slug = 'default'"
        ),
        HITS.to_string()
    );

    let open = sessions(&pg, "tally-full");
    let (n, all_tls) = open.split_once('|').unwrap();
    assert!(n.parse::<u32>().unwrap() >= 1, "{open}");
    assert_eq!(all_tls, "t", "every session of tally uses TLS");
    let log = pg.log();
    assert!(
        log.lines().any(|l| l.contains("connection authorized")
            && l.contains("application_name=tally-full")
            && l.contains("SSL enabled")),
        "{log}"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_stops_tally() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    let wrong = cas.wrong_ca_file.display().to_string();
    let database_url = url(
        &pg,
        &format!("sslmode=verify-full&sslrootcert={wrong}&application_name=tally-wrong-ca"),
    );
    let expected = format!(
        "sslmode=verify-full sslrootcert={wrong}: the server's certificate is not signed by a \
         trusted CA (unknown issuer)"
    );
    for command in ["serve", "migrate"] {
        let exited = run(command, &database_url);
        assert_failed_without_secrets(&exited, &cas);
        let line = error_line(&exited);
        assert!(line.starts_with("tally: "), "{command}: {line}");
        assert!(line.ends_with(&expected), "{command}: {line}");
    }
    assert_no_session_and_no_plain_text(&pg, "tally-wrong-ca");
    // The server saw the handshakes fail: tally did try, over TLS.
    assert!(
        pg.log().contains("could not accept SSL connection"),
        "{}",
        pg.log()
    );
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_stops_tally() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    let ca = cas.ca_file.display();
    let port = pg.port();
    let expected = format!(
        "sslmode=verify-full sslrootcert={ca}: the server's certificate does not name the host \
         \"wrong.example\" (name mismatch)"
    );
    // The name is checked, not the address connected to (hostaddr), in
    // both forms of the connection string.
    for database_url in [
        format!(
            "postgres://tally:{PASSWORD}@/tally?host=wrong.example&hostaddr=127.0.0.1\
             &port={port}&sslmode=verify-full&sslrootcert={ca}&application_name=tally-name"
        ),
        format!(
            "host=wrong.example hostaddr=127.0.0.1 port={port} user=tally password={PASSWORD} \
             dbname=tally sslmode=verify-full sslrootcert={ca} application_name=tally-name"
        ),
    ] {
        let exited = run("serve", &database_url);
        assert_failed_without_secrets(&exited, &cas);
        let line = error_line(&exited);
        assert!(line.ends_with(&expected), "{line}");
    }
    assert_no_session_and_no_plain_text(&pg, "tally-name");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_and_not_the_name() {
    let cas = Cas::new();
    // A certificate for another host: not for 127.0.0.1.
    let pg = tls_server(&cas.server_cert("elsewhere", &["db.internal.example"]));
    let ca = cas.ca_file.display();

    let app = TestApp::spawn(
        &url(
            &pg,
            &format!("sslmode=verify-ca&sslrootcert={ca}&application_name=tally-ca"),
        ),
        &[],
    )
    .await;
    assert_eq!(greeting_at(&app.url("")).await, 1);
    assert_eq!(greeting_at(&app.url("")).await, 2);
    assert!(sessions(&pg, "tally-ca").ends_with("|t"));
    app.stop().await.unwrap();

    // verify-full refuses the same server: its certificate names another host.
    let exited = run(
        "serve",
        &url(&pg, &format!("sslmode=verify-full&sslrootcert={ca}")),
    );
    assert_failed_without_secrets(&exited, &cas);
    assert!(
        error_line(&exited).ends_with(&format!(
            "sslmode=verify-full sslrootcert={ca}: the server's certificate does not name the \
             host \"127.0.0.1\" (name mismatch)"
        )),
        "{exited:?}"
    );
    // verify-ca still checks the chain.
    let exited = run(
        "serve",
        &url(
            &pg,
            &format!(
                "sslmode=verify-ca&sslrootcert={}",
                cas.wrong_ca_file.display()
            ),
        ),
    );
    assert!(
        error_line(&exited).ends_with("(unknown issuer)"),
        "{exited:?}"
    );
}

#[tokio::test]
async fn require_and_prefer_connect_over_tls_without_verifying() {
    let cas = Cas::new();
    // Signed by a CA that tally is not told of.
    let pg = loopback_server(&cas);
    for mode in ["require", "prefer"] {
        let application = format!("tally-{mode}");
        let app = TestApp::spawn(
            &url(
                &pg,
                &format!("sslmode={mode}&application_name={application}"),
            ),
            &[],
        )
        .await;
        let first = greeting_at(&app.url("")).await;
        assert_eq!(greeting_at(&app.url("")).await, first + 1);
        let open = sessions(&pg, &application);
        assert!(
            open.ends_with("|t") && !open.starts_with("0|"),
            "{mode}: {open}"
        );
        app.stop().await.unwrap();
    }
    // With no sslmode at all, libpq's default prefer: TLS here too.
    let app = TestApp::spawn(&url(&pg, "application_name=tally-default"), &[]).await;
    greeting_at(&app.url("")).await;
    assert!(sessions(&pg, "tally-default").ends_with("|t"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn require_with_a_root_certificate_verifies_the_chain() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    let wrong = cas.wrong_ca_file.display();
    let exited = run(
        "serve",
        &url(&pg, &format!("sslmode=require&sslrootcert={wrong}")),
    );
    assert_failed_without_secrets(&exited, &cas);
    assert!(
        error_line(&exited).ends_with(&format!(
            "sslmode=require sslrootcert={wrong}: the server's certificate is not signed by a \
             trusted CA (unknown issuer)"
        )),
        "{exited:?}"
    );
}

#[tokio::test]
async fn sslmode_disable_against_a_server_that_requires_tls_stops_tally() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    for command in ["serve", "migrate"] {
        let exited = run(command, &url(&pg, "sslmode=disable"));
        assert_failed_without_secrets(&exited, &cas);
        let line = error_line(&exited);
        assert!(
            line.contains(
                "sslmode=disable: the server requires TLS; it refused this connection because it \
                 is not encrypted (no pg_hba.conf entry for host \"127.0.0.1\", user \"tally\", \
                 database \"tally\", no encryption); use sslmode=require or stricter"
            ),
            "{command}: {line}"
        );
    }
}

#[tokio::test]
async fn a_server_without_tls_stops_tally_under_require_and_verify() {
    let cas = Cas::new();
    let pg = PgServer::start_with(PgOptions {
        log_connections: true,
        ..PgOptions::default()
    });
    for params in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full&sslrootcert={}", cas.ca_file.display()),
    ] {
        let database_url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{params}&application_name=tally-plain",
            pg.port()
        );
        let exited = run("serve", &database_url);
        assert_failed_without_secrets(&exited, &cas);
        let mode = params.split('&').next().unwrap();
        assert!(
            error_line(&exited).contains(&format!(
                "the server does not support TLS, and {mode} never falls back to plain text"
            )),
            "{exited:?}"
        );
    }
    // It asked for TLS, was told no, and went no further.
    let log = pg.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("connection authorized") && l.contains("tally-plain")),
        "{log}"
    );
}

#[tokio::test]
async fn a_client_certificate_logs_in() {
    let cas = Cas::new();
    let server = cas.server_cert("server", &["127.0.0.1"]);
    let pg = tls_server_with(
        &server,
        Some(&cas.ca_file),
        vec!["hostssl all certuser 127.0.0.1/32 cert".into()],
    );
    pg.psql("postgres", "CREATE ROLE certuser LOGIN SUPERUSER");
    pg.psql("postgres", "CREATE DATABASE certdb OWNER certuser");
    let client = cas.ca.client(cas.path(), "certuser");
    let database_url = format!(
        "postgres://certuser@127.0.0.1:{}/certdb?sslmode=verify-full&sslrootcert={}\
         &sslcert={}&sslkey={}&application_name=tally-cert",
        pg.port(),
        cas.ca_file.display(),
        client.cert.display(),
        client.key.display()
    );
    let tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &database_url)]);
    assert_eq!(tally.hit_greeting().await, 1);
    assert_eq!(tally.hit_greeting().await, 2);
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE 'tally-cert tally schema=%' LIMIT 1"
        ),
        "/CN=certuser"
    );
    assert!(
        pg.log()
            .lines()
            .any(|l| l.contains("connection authorized: user=certuser")
                && l.contains("tally-cert")),
        "{}",
        pg.log()
    );
}

#[tokio::test]
async fn a_server_down_at_start_is_waited_for() {
    let cas = Cas::new();
    let cert = cas.server_cert("server", &["127.0.0.1"]);
    let port = free_port();
    let database_url = format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        cas.ca_file.display()
    );
    let mut tally = TallyProcess::start(&[("TALLY_DATABASE_URL", &database_url)]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tally.exited(), None, "{}", tally.log());
    assert_eq!(http_status(tally.addr, "/readyz"), Some(503));

    let _pg = PgServer::start_with(PgOptions {
        port: Some(port),
        tls: Some(PgTls {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
            ..PgTls::default()
        }),
        ..PgOptions::default()
    });
    tally.wait_ready(Duration::from_secs(20));
    assert_eq!(tally.hit_greeting().await, 1);
}

#[tokio::test]
async fn a_certificate_refused_once_serving_gets_503s_and_heals() {
    let cas = Cas::new();
    let pg = loopback_server(&cas);
    let database_url = url(
        &pg,
        &format!(
            "sslmode=verify-full&sslrootcert={}&application_name=tally-later",
            cas.ca_file.display()
        ),
    );
    let mut tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &database_url)]);
    assert_eq!(tally.hit_greeting().await, 1);

    // The server now presents a certificate of a CA tally does not trust,
    // and tally's open sessions end.
    let good = CertFiles {
        cert: cas.path().join("server.crt"),
        key: cas.path().join("server.key"),
    };
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = TestCa::new("stranger").server(stranger_dir.path(), "server", &["127.0.0.1"]);
    pg.replace_certificate(&stranger.cert, &stranger.key);
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'tally-later tally schema=%'",
    );

    // Every hit is refused with a 503 (the first may meet a session that
    // is closing), and tally keeps serving.
    let root = tally.url("/");
    let hit = || async { support::load::client().get(&root).send().await.unwrap() };
    let refusing = Instant::now();
    let deadline = refusing + Duration::from_secs(10);
    loop {
        let response = hit().await;
        if response.status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let response = hit().await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert_eq!(tally.exited(), None);
    let log = tally.log();
    assert!(log.contains("(unknown issuer)"), "{log}");
    // Logged once per 10 seconds, not once per refused connection.
    let logged = log
        .matches("cannot connect to PostgreSQL with these TLS settings")
        .count();
    let most = 1 + refusing.elapsed().as_secs() / 10;
    assert!(
        (1..=most as usize).contains(&logged),
        "{logged} times: {log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains("-----BEGIN"),
        "{log}"
    );

    // The right certificate back: counting goes on where it stopped.
    pg.replace_certificate(&good.cert, &good.key);
    let deadline = Instant::now() + Duration::from_secs(10);
    let count = loop {
        let response = hit().await;
        if response.status() == 200 {
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "still {}", response.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count, "Hello Linode!  This page has been viewed 2 time(s).");
}
