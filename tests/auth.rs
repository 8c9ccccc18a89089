//! Authentication under attack: a budget of failures per client (429 with
//! the real wait), a log that does not grow with every guess, admin tokens
//! too short or padded refused at start, and a sign-out that ends the
//! session everywhere and only when this host's page asks.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use support::app::{TOKEN, TallyProcess, TestApp, sqlite_url};
use support::pg::PgServer;
use support::web::{Reply, get, send};

/// The default budget: failures per client per minute.
const LIMIT: usize = 10;

/// A request to `app` from `client` (named by a trusted proxy's
/// `X-Forwarded-For`; the test's own address, loopback, is that proxy).
async fn from(
    http: &reqwest::Client,
    app: &TestApp,
    client: &str,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    http.request(method, app.url(path))
        .header("x-forwarded-for", client)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        retry,
        body["error"]["code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bearer_tokens_get_401_up_to_the_limit_then_429_with_the_real_wait() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--trusted-proxies", "127.0.0.1"]).await;
    let http = reqwest::Client::new();
    let attacker = "203.0.113.7";
    let mut answers = Vec::new();
    let mut times = Vec::new();
    for i in 0..20 {
        let wrong = format!("wrong-admin-token-{i:02}");
        let sent = Instant::now();
        let got = from(&http, &app, attacker, Method::GET, "/api/v1/sites", &wrong).await;
        answers.push(error_code(got).await);
        times.push((sent, Instant::now()));
    }
    // A right token from the throttled client is refused too, and does nothing.
    let sent = Instant::now();
    let right = from(&http, &app, attacker, Method::POST, "/api/v1/sites", TOKEN).await;
    let right = error_code(right).await;
    times.push((sent, Instant::now()));
    // The oldest failure was recorded while the first request was in
    // flight, and leaves the minute 60 s later: each throttled answer's
    // Retry-After is that wait, rounded up, at some moment while it was in
    // flight.
    let (first_sent, first_answered) = times[0];
    let waits = |(sent, answered): (Instant, Instant)| {
        let minute = Duration::from_secs(60);
        let up = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let least = minute.saturating_sub(answered.duration_since(first_sent));
        let most = minute.saturating_sub(sent.saturating_duration_since(first_answered));
        up(least).max(1)..=up(most).max(1)
    };
    let unauthorized = (401, None, "invalid_token".to_owned());
    for (i, answer) in answers.iter().chain([&right]).enumerate() {
        if i < LIMIT {
            assert_eq!(answer, &unauthorized, "answer {i}");
            continue;
        }
        let (status, retry, code) = answer;
        assert_eq!(
            (*status, code.as_str()),
            (429, "auth_rate_limited"),
            "answer {i}"
        );
        let retry: u64 = retry
            .as_deref()
            .unwrap_or_else(|| panic!("answer {i} without Retry-After"))
            .parse()
            .unwrap();
        let expected = waits(times[i]);
        assert!(
            expected.contains(&retry),
            "answer {i}: Retry-After {retry}, the oldest failure leaves the minute in {expected:?} s"
        );
    }

    // Another client is not affected: its right token works, its wrong
    // ones count against its own budget.
    let other = "203.0.113.8";
    let list = from(&http, &app, other, Method::GET, "/api/v1/sites", TOKEN).await;
    assert_eq!(list.status(), 200);
    let sites: serde_json::Value = list.json().await.unwrap();
    let slugs: Vec<&str> = sites["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["default"], "the throttled create wrote nothing");
    let wrong = from(&http, &app, other, Method::GET, "/resetcounter", "nope").await;
    assert_eq!(
        error_code(wrong).await,
        (401, None, "invalid_token".to_owned())
    );
    app.stop().await.unwrap();
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// What a browser says of a form sent from a page of the same host.
const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

async fn sign_in(r: &Router, token: &str) -> Reply {
    sign_in_from(r, token, &[SAME_ORIGIN]).await
}

/// The sign-in form sent to host `tally.test` with `from` saying where it
/// came from.
async fn sign_in_from(r: &Router, token: &str, from: &[(&str, &str)]) -> Reply {
    let mut headers = vec![FORM, ("host", "tally.test")];
    headers.extend_from_slice(from);
    send(
        r,
        Method::POST,
        "/dashboard/login",
        &headers,
        Some(&format!("token={token}")),
    )
    .await
}

#[tokio::test]
async fn the_sign_in_form_shares_the_budget_and_answers_429_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    // Half the budget through the dashboard's Bearer header, half by the form.
    for _ in 0..LIMIT / 2 {
        let page = get(
            &r,
            "/dashboard",
            &[("authorization", "Bearer wrong-admin-token")],
        )
        .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    for _ in 0..LIMIT / 2 {
        let page = sign_in(&r, "wrong-admin-token").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.body.contains("That is not the admin token."));
    }
    for token in ["wrong-admin-token", TOKEN] {
        let page = sign_in(&r, token).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{token}");
        assert_eq!(page.header("retry-after"), "60");
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        assert!(
            page.body.contains("Try again in 60 seconds."),
            "{}",
            page.body
        );
        assert!(page.headers.get("set-cookie").is_none());
    }
    let page = get(
        &r,
        "/dashboard",
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.header("retry-after"), "60");
}

/// Each guess used to write an INFO line; now a client gets one WARN line
/// a minute, however many it sends: the first failure at once, the rest in
/// the line the background sweep writes a minute later (a test of a
/// minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_logged_once_per_client_per_minute() {
    let dir = tempfile::tempdir().unwrap();
    let process = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &sqlite_url(dir.path()))]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let login = http
            .post(process.url("/dashboard/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
            .body(format!("token=wrong-admin-token-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(login.status().as_u16());
        let bearer = http
            .get(process.url("/resetcounter"))
            .bearer_auth("wrong-admin-token")
            .send()
            .await
            .unwrap();
        statuses.push(bearer.status().as_u16());
    }
    let mut expected = vec![401; LIMIT];
    expected.resize(40, 429);
    assert_eq!(statuses, expected);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = process.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed") || l.contains("refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    for part in ["WARN", "client=127.0.0.1", "failed=1", "throttled=0"] {
        assert!(lines[0].contains(part), "{part} in {}", lines[0]);
    }
    assert!(!log.contains("wrong-admin-token"), "{log}");

    // A minute after the first line, the background sweep (every 5 s)
    // writes the rest: the other failures and the refused attempts.
    let rest = format!("failed={}", LIMIT - 1);
    let throttled = format!("throttled={}", 40 - LIMIT);
    let second = support::wait_for(Duration::from_secs(80), Duration::from_millis(500), || {
        let log = process.log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("authentication failed"))
            .map(str::to_owned)
            .collect();
        (lines.len() > 1).then_some(lines)
    })
    .unwrap_or_else(|| panic!("no second line: {}", process.log()));
    assert_eq!(second.len(), 2, "{second:?}");
    for part in ["WARN", "client=127.0.0.1", &rest, &throttled] {
        assert!(second[1].contains(part), "{part} in {}", second[1]);
    }
}

/// `tally serve` with `env`, expected to refuse to start: its exit code,
/// its output, and whether it created the database's directory.
fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/tally.db");
    let out = dir.path().join("out.log");
    let log = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("serve")
        .env_clear()
        .env(
            "TALLY_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .env("TALLY_DATABASE_URL", format!("sqlite://{}", db.display()))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let status = support::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        child.try_wait().unwrap()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("{env:?}: still serving after 10 s: {text}"));
    (status.code(), text, db.parent().unwrap().exists())
}

#[test]
fn short_or_padded_admin_tokens_are_refused_at_start_without_showing_them() {
    let file = |content: &str| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    };
    let short = file("short-secret-15\n");
    let doubled = file("long-enough-secret-1\n\n");
    let padded = file(" long-enough-secret-2\n");
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "TALLY_ADMIN_TOKEN",
            "short-secret-15",
            "TALLY_ADMIN_TOKEN:",
            "is 15 bytes; use at least 16",
        ),
        (
            "TALLY_ADMIN_TOKEN",
            "long-enough-secret-3 ",
            "TALLY_ADMIN_TOKEN:",
            "whitespace",
        ),
        (
            "TALLY_ADMIN_TOKEN",
            "\tlong-enough-secret-4",
            "TALLY_ADMIN_TOKEN:",
            "whitespace",
        ),
        (
            "TALLY_ADMIN_TOKEN_FILE",
            short.path().to_str().unwrap(),
            "TALLY_ADMIN_TOKEN_FILE (",
            "is 15 bytes",
        ),
        (
            "TALLY_ADMIN_TOKEN_FILE",
            doubled.path().to_str().unwrap(),
            "TALLY_ADMIN_TOKEN_FILE (",
            "whitespace",
        ),
        (
            "TALLY_ADMIN_TOKEN_FILE",
            padded.path().to_str().unwrap(),
            "TALLY_ADMIN_TOKEN_FILE (",
            "whitespace",
        ),
    ];
    for (var, value, names, says) in cases {
        let (code, output, opened) = refused_start(&[(var, value)]);
        assert_eq!(code, Some(1), "{var}={value:?}: {output}");
        assert!(output.contains(names), "{var}={value:?}: {output}");
        assert!(output.contains(says), "{var}={value:?}: {output}");
        for secret in ["short-secret-15", "long-enough-secret"] {
            assert!(!output.contains(secret), "the token is shown: {output}");
        }
        assert!(
            !opened,
            "the store was opened before the settings were checked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_may_end_with_one_newline() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "file-admin-token-0123\r\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let process = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &sqlite_url(dir.path())),
        ("TALLY_ADMIN_TOKEN", ""),
        ("TALLY_ADMIN_TOKEN_FILE", f.path().to_str().unwrap()),
    ]);
    let http = reqwest::Client::new();
    for (token, status) in [
        ("file-admin-token-0123", 200),
        // The newline was the file's, not the token's; a prefix is not it.
        ("file-admin-token-012", 401),
    ] {
        let got = http
            .get(process.url("/api/v1/sites"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status().as_u16(), status, "{token:?}");
    }
}

/// Signs in on `r`; returns the `name=value` of the session cookie.
async fn session(r: &Router) -> String {
    let ok = sign_in(r, TOKEN).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    ok.header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn opens(r: &Router, cookie: &str) -> StatusCode {
    get(r, "/dashboard", &[("cookie", cookie)]).await.status
}

async fn sign_out(r: &Router, cookie: &str, from: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("cookie", cookie), ("host", "tally.test")];
    headers.extend_from_slice(from);
    send(r, Method::POST, "/dashboard/logout", &headers, None).await
}

#[tokio::test]
async fn a_cross_site_sign_out_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let cookie = session(&r).await;
    for from in [
        &[("origin", "https://evil.example")][..],
        &[("referer", "https://evil.example/tally.test")],
        &[("sec-fetch-site", "cross-site")],
        &[("origin", "null")],
        &[],
    ] {
        let out = sign_out(&r, &cookie, from).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{from:?}");
        assert!(out.headers.get("set-cookie").is_none(), "{from:?}");
        assert_eq!(opens(&r, &cookie).await, StatusCode::OK, "{from:?}");
    }
}

/// Signs out with `cookie` on `a`; then the same cookie must not open the
/// dashboard on `b` (the same replica, or another on the same database).
async fn signing_out_ends_the_session_on(a: &Router, b: &Router) {
    let cookie = session(a).await;
    let other = session(a).await;
    assert_eq!(opens(b, &cookie).await, StatusCode::OK);
    let out = sign_out(a, &cookie, &[("origin", "http://tally.test:8080")]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), "/dashboard/login");
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    for r in [a, b] {
        let page = get(r, "/dashboard", &[("cookie", &cookie)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert!(page.header("location").starts_with("/dashboard/login"));
    }
    // A session signed in separately, even in the same second, is not
    // ended by it.
    assert_ne!(other, cookie);
    assert_eq!(opens(b, &other).await, StatusCode::OK);
    // Signing out twice, or by the Referer, is harmless.
    let again = sign_out(b, &cookie, &[("referer", "http://tally.test/dashboard")]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn after_sign_out_the_old_cookie_no_longer_opens_the_dashboard_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    signing_out_ends_the_session_on(&r, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sign_out_no_replica_on_postgres_accepts_the_old_cookie() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = TestApp::spawn(&url, &[]).await;
    let b = TestApp::spawn(&url, &[]).await;
    signing_out_ends_the_session_on(&a, &b).await;
}

/// A foreign page can make a browser send the sign-in form (a `no-cors`
/// `fetch`, a form that submits itself) though it cannot read the answer.
/// Such a sign-in is refused before the token is looked at and counts
/// nothing against the budget of the address it came from: twelve of them,
/// past the budget of ten, leave the admin's right token working there, on
/// the form and as a Bearer token.
#[tokio::test]
async fn a_cross_site_sign_in_is_refused_uncounted_and_leaves_the_right_token_working() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    let bearer = format!("Bearer {TOKEN}");
    for from in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")],
    ] {
        let mut statuses = Vec::new();
        for i in 0..12 {
            let page = sign_in_from(&r, &format!("wrong-admin-token-{i:02}"), from).await;
            assert!(page.headers.get("set-cookie").is_none(), "{from:?}");
            statuses.push(page.status.as_u16());
        }
        assert_eq!(statuses, [403; 12], "{from:?}");
        // Not even the right token is taken from a foreign page.
        let page = sign_in_from(&r, TOKEN, from).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{from:?}");
        assert!(page.headers.get("set-cookie").is_none(), "{from:?}");
        assert!(page.body.contains("Not signed in"), "{}", page.body);
        // The admin, at the same address, signs in and calls the API.
        let page = sign_in(&r, TOKEN).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{from:?}: {}",
            page.body
        );
        assert!(page.header("set-cookie").starts_with("tally_session="));
        let list = get(&r, "/api/v1/sites", &[("authorization", &bearer)]).await;
        assert_eq!(list.status, StatusCode::OK, "{from:?}: {}", list.body);
        let page = get(&r, "/dashboard", &[("authorization", &bearer)]).await;
        assert_eq!(page.status, StatusCode::OK, "{from:?}");
    }
}

/// The sign-in form is taken from a page of this host only, by the check
/// sign-out makes: `Sec-Fetch-Site: same-origin`, else the host of
/// `Origin`, else of `Referer`; a sign-in that says nothing of where it
/// came from is refused.
#[tokio::test]
async fn a_sign_in_is_taken_only_from_a_page_of_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &[]).await;
    for from in [
        &[SAME_ORIGIN][..],
        &[("origin", "http://tally.test:8080")],
        &[(
            "referer",
            "https://tally.test/dashboard/login?next=/dashboard",
        )],
    ] {
        let page = sign_in_from(&r, TOKEN, from).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{from:?}: {}",
            page.body
        );
        assert!(
            page.header("set-cookie").starts_with("tally_session="),
            "{from:?}"
        );
    }
    for from in [
        &[][..],
        &[("origin", "null")],
        &[("referer", "https://evil.example/tally.test")],
        &[("sec-fetch-site", "same-site")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://tally.test"),
        ],
    ] {
        let page = sign_in_from(&r, TOKEN, from).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{from:?}");
        assert!(page.headers.get("set-cookie").is_none(), "{from:?}");
    }
}

/// One attempt through `base`'s listener, from `client` as a proxy's
/// `X-Forwarded-For` names it: the sign-in form, or a Bearer call when
/// `bearer`. Its status.
async fn attempt(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    token: &str,
    bearer: bool,
) -> u16 {
    let request = if bearer {
        http.get(format!("{base}/api/v1/sites")).bearer_auth(token)
    } else {
        http.post(format!("{base}/dashboard/login"))
            .header(FORM.0, FORM.1)
            .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
            .body(format!("token={token}"))
    };
    let got = request
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap();
    got.status().as_u16()
}

/// The sign-in budget is the client's as the trusted-proxy rule names it:
/// the peer itself when the peer is not trusted, whatever it forwards; the
/// forwarded address behind a trusted peer. A client behind a trusted peer
/// that passes on any `X-Forwarded-For` (the defaults trust loopback and
/// private peers) can name a new address for every guess, so the failures
/// from behind one peer have a budget too, ten times a client's: past it,
/// only clients that showed the right token before are heard; and the log
/// has one line for the peer, not one per named address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_budget_is_the_named_client_s_and_a_rotating_forwarded_address_is_bounded() {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // An untrusted peer: what it forwards is not read, it is the client.
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&sqlite_url(dir.path()), &["--trusted-proxies", "192.0.2.1"]).await;
    let base = app.url("");
    let mut statuses = Vec::new();
    for i in 0..=LIMIT {
        let client = format!("198.18.0.{}", i + 1);
        statuses.push(attempt(&http, &base, &client, "wrong-admin-token", false).await);
    }
    let mut expected = vec![401; LIMIT];
    expected.push(429);
    assert_eq!(statuses, expected);
    app.stop().await.unwrap();

    // The defaults: loopback, the test's own address, is a trusted peer.
    let dir = tempfile::tempdir().unwrap();
    let process = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &sqlite_url(dir.path()))]);
    let base = process.url("");
    let admin = "198.51.100.1";
    assert_eq!(attempt(&http, &base, admin, TOKEN, false).await, 303);
    // One named client spends its own budget, not another's.
    let attacker = "203.0.113.7";
    let mut statuses = Vec::new();
    for _ in 0..LIMIT {
        statuses.push(attempt(&http, &base, attacker, "wrong-admin-token", false).await);
    }
    statuses.push(attempt(&http, &base, attacker, TOKEN, false).await);
    assert_eq!(statuses, expected);
    assert_eq!(
        attempt(&http, &base, "203.0.113.8", TOKEN, false).await,
        303
    );

    // A new forwarded address for every guess, by the form and by Bearer:
    // the peer's budget (10 × 10) holds 90 more failures, then 429s.
    let mut statuses = Vec::new();
    for i in 0..120 {
        let client = format!("198.18.0.{}", i + 1);
        statuses.push(attempt(&http, &base, &client, "wrong-admin-token", i % 2 == 1).await);
    }
    let mut rotated = vec![401; 90];
    rotated.resize(120, 429);
    assert_eq!(statuses, rotated);
    // A right token from an address never seen is not taken past the
    // budget (that would tell a guess right); the admin's address, which
    // showed it before, still signs in and calls the API.
    for bearer in [false, true] {
        assert_eq!(
            attempt(&http, &base, "198.18.1.1", TOKEN, bearer).await,
            429
        );
    }
    assert_eq!(attempt(&http, &base, admin, TOKEN, false).await, 303);
    assert_eq!(attempt(&http, &base, admin, TOKEN, true).await, 200);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = process.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for part in ["WARN", "client=203.0.113.7", "failed=1", "throttled=0"] {
        assert!(lines[0].contains(part), "{part} in {}", lines[0]);
    }
    for part in ["WARN", "proxy=127.0.0.1", "failed=1", "throttled=0"] {
        assert!(lines[1].contains(part), "{part} in {}", lines[1]);
    }
}
