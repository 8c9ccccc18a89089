//! tally itself: in-process on port 0 (most tests), or as a real child
//! process (tests that send it signals).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use clap::Parser;
use serde_json::Value;
use tally::Application;
use tally::cache::Cache;
use tally::config::{Cli, Command as Sub, ServeSettings};
use tally::http::AppState;
use tally::store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{free_port, spawner};

/// The admin token every test app is given unless it asks for none.
pub const TOKEN: &str = "test-admin-token";

/// Settings as the command line would give them, plus the test defaults.
pub fn settings(database_url: &str, extra: &[&str]) -> ServeSettings {
    let mut args = vec![
        "tally",
        "serve",
        "--database-url",
        database_url,
        "--log",
        "warn",
    ];
    if !extra.contains(&"--no-token") {
        args.extend(["--admin-token", TOKEN]);
    }
    // All test traffic comes from one address: no limit unless asked for.
    if !extra.contains(&"--rate-limit") {
        args.extend(["--rate-limit", "0"]);
    }
    if !extra.contains(&"--read-rate-limit") {
        args.extend(["--read-rate-limit", "0"]);
    }
    if !extra.contains(&"--new-pages-per-client") {
        args.extend(["--new-pages-per-client", "0"]);
    }
    if !extra.contains(&"--new-pages-per-site") {
        args.extend(["--new-pages-per-site", "0"]);
    }
    args.extend(extra.iter().filter(|a| **a != "--no-token"));
    match Cli::try_parse_from(args)
        .expect("test settings parse")
        .command
    {
        Some(Sub::Serve(s)) => s,
        _ => unreachable!("asked for serve"),
    }
}

/// A fresh SQLite database URL in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tally.db").display())
}

/// A store on `url` with its backend's migrations applied, opened with the
/// default settings, as `tally serve` opens it.
pub async fn migrated_store(url: &str) -> Arc<dyn Store> {
    use tally::store::{Backend, migrate};
    let settings = settings(url, &[]).store;
    let store = tally::store::open(&settings.database_url, &settings).unwrap();
    let list = match store.backend() {
        Backend::Sqlite => migrate::SQLITE,
        Backend::Postgres => migrate::POSTGRES,
    };
    store
        .migrate(list, migrate::Contracts::WhenSafe)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    store
}

/// One request through the router; returns status, headers and body text.
pub async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if json.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let reply = super::web::send(router, method, path, &headers, json).await;
    (reply.status, reply.headers, reply.body)
}

/// A JSON body, or a panic that shows what came instead.
pub fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The count in a `200` answer to `GET /api/v1/sites/{slug}/count`.
fn count_from(slug: &str, status: u16, body: &Value) -> i64 {
    assert_eq!(status, 200, "count of {slug}: {body}");
    body["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("count of {slug}: {body}"))
}

fn count_path(slug: &str) -> String {
    format!("/api/v1/sites/{slug}/count")
}

/// A hit's status and, for a 200, its count, else its error code.
fn hit_detail(status: u16, body: &Value) -> Value {
    if status == 200 {
        body["count"].clone()
    } else {
        body["error"]["code"].clone()
    }
}

/// A request to `router` with the admin token; returns status and JSON body.
pub async fn admin_via(
    router: &Router,
    method: Method,
    path: &str,
    json: Option<&str>,
) -> (StatusCode, Value) {
    let (status, _, body) = call(router, method, path, Some(TOKEN), json).await;
    (status, json_of(&body))
}

/// The stored count of `slug`, read through `router`.
pub async fn count_via(router: &Router, slug: &str) -> i64 {
    let (status, _, body) = call(router, Method::GET, &count_path(slug), None, None).await;
    count_from(slug, status.as_u16(), &json_of(&body))
}

/// One hit on `slug` through `router`: the status and, for a 200, the
/// count, else the error code.
pub async fn hit_via(router: &Router, slug: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/sites/{slug}/hits");
    let (status, _, body) = call(router, Method::POST, &path, None, None).await;
    (status, hit_detail(status.as_u16(), &json_of(&body)))
}

/// `GET url` over HTTP; returns status and JSON body.
pub async fn get_json(url: &str) -> (u16, Value) {
    let response = super::load::client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
    (status, body)
}

/// The stored count of `slug`, read over HTTP from the server at `base`.
pub async fn count_at(base: &str, slug: &str) -> i64 {
    let (status, body) = get_json(&format!("{base}{}", count_path(slug))).await;
    count_from(slug, status, &body)
}

/// The body of `GET url` over HTTP, whatever its status.
pub async fn get_text(url: &str) -> String {
    let response = super::load::client().get(url).send().await.unwrap();
    response.text().await.unwrap()
}

/// The count in the greeting `GET /` answers at `base` (one hit).
pub async fn greeting_at(base: &str) -> i64 {
    let body = get_text(&format!("{base}/")).await;
    parse_greeting(&body).unwrap_or_else(|| panic!("not the greeting: {body:?}"))
}

/// tally in-process, ready, serving on 127.0.0.1:<random port>: requests
/// go through its socket ([`TestApp::url`]) or, without one, straight to
/// its router (it derefs to it, for `oneshot` calls).
pub struct TestApp {
    pub router: Router,
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The store and cache the app opened, to write past its counter.
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The SQLite database's directory, when the app made its own.
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestApp {
    type Target = Router;
    fn deref(&self) -> &Router {
        &self.router
    }
}

impl TestApp {
    /// On a fresh SQLite database of its own.
    pub async fn sqlite(extra: &[&str]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = Self::spawn(&sqlite_url(dir.path()), extra).await;
        app._dir = Some(dir);
        app
    }

    /// On a fresh SQLite database of its own, with `site` created.
    pub async fn with_site(extra: &[&str], site: &Value) -> TestApp {
        let app = Self::sqlite(extra).await;
        app.create_site(site).await;
        app
    }

    pub async fn spawn(database_url: &str, extra: &[&str]) -> TestApp {
        Self::spawn_with(settings(database_url, extra)).await
    }

    pub async fn spawn_with(settings: ServeSettings) -> TestApp {
        let app = Application::build(&settings).expect("build app");
        app.ready(Duration::from_secs(20))
            .await
            .expect("store ready");
        let router = app.router();
        let state = app.state().clone();
        let (store, cache) = (app.store().clone(), app.cache().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        TestApp {
            router,
            addr,
            state,
            store,
            cache,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// A handle on the router, for code that takes one by value.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One request through the router; returns status, headers and body text.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        call(&self.router, method, path, token, json).await
    }

    /// A request with the admin token; returns status and JSON body.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        json: Option<&str>,
    ) -> (StatusCode, Value) {
        admin_via(&self.router, method, path, json).await
    }

    /// `POST /api/v1/sites` with the admin token; the site must be created.
    pub async fn create_site(&self, site: &Value) {
        let (status, body) = self
            .admin(Method::POST, "/api/v1/sites", Some(&site.to_string()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// The stored count of `slug`.
    pub async fn count(&self, slug: &str) -> i64 {
        count_via(&self.router, slug).await
    }

    /// `POST /api/v1/sites/{slug}/hits`: the status and, for a 200, the
    /// count, else the error code.
    pub async fn hit(&self, slug: &str) -> (StatusCode, Value) {
        hit_via(&self.router, slug).await
    }

    /// `GET path` through the socket with the admin token (which reads
    /// every site's details; a public route ignores it); returns status
    /// and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let url = self.url(path);
        let response = super::load::client()
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
        (status, body)
    }

    /// Graceful stop; returns what `serve` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("serve task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `tally serve` as a child process, logging to a file.
pub struct TallyProcess {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TallyProcess {
    /// Starts the binary with `env` (TALLY_LISTEN is chosen here) and waits
    /// until `/readyz` answers 200.
    pub fn spawn(env: &[(&str, &str)]) -> TallyProcess {
        Self::spawn_wrapped(&[], env)
    }

    /// As [`TallyProcess::spawn`], with tally started by `wrapper` (a
    /// command and its arguments, e.g. `prlimit --nofile=…`).
    pub fn spawn_wrapped(wrapper: &[&str], env: &[(&str, &str)]) -> TallyProcess {
        Self::spawn_binary(Path::new(env!("CARGO_BIN_EXE_tally")), wrapper, env)
    }

    /// As [`TallyProcess::spawn_wrapped`], with another tally binary (a
    /// previous release's).
    pub fn spawn_binary(tally: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> TallyProcess {
        let mut process = Self::start_binary(tally, wrapper, env);
        process.wait_ready(Duration::from_secs(20));
        process
    }

    /// Starts the binary with `env` and returns at once, ready or not.
    pub fn start(env: &[(&str, &str)]) -> TallyProcess {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_tally")), &[], env)
    }

    fn start_binary(tally: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> TallyProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("tally.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(tally);
                cmd
            }
            None => Command::new(tally),
        };
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TALLY_LISTEN", addr.to_string())
            .env("TALLY_ADMIN_TOKEN", TOKEN)
            .env("TALLY_RATE_LIMIT", "0")
            .env("TALLY_NEW_PAGES_PER_CLIENT", "0")
            .env("TALLY_NEW_PAGES_PER_SITE", "0")
            .env("TALLY_READ_RATE_LIMIT", "0")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"));
        for (k, v) in env {
            // An empty value unsets a default given above.
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let child = spawner::spawn(cmd).expect("spawn tally");
        TallyProcess {
            addr,
            child,
            log,
            _dir: dir,
        }
    }

    /// Waits until `/readyz` answers 200; panics if tally exits first.
    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tally exited early with {status}: {}", self.log());
            }
            if http_status(self.addr, "/readyz") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "tally not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stored count of `slug`.
    pub async fn count(&self, slug: &str) -> i64 {
        count_at(&self.url(""), slug).await
    }

    /// One hit on `/`: the count its greeting carries.
    pub async fn hit_greeting(&self) -> i64 {
        greeting_at(&self.url("")).await
    }

    pub fn signal(&self, signal: i32) {
        spawner::signal(self.child.id(), signal);
    }

    /// The exit status, if tally has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tally did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the process wrote to stderr (logs go to stdout, [`Self::log`]).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }
}

impl Drop for TallyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a run of the binary that was expected to end did end.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tally <args>` with only `env` (and PATH) to its exit; `None` if it
/// was still running after `within` (it is killed then).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], within: Duration) -> Option<Exited> {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = dir.path().join("stderr.log");
    let stdout = dir.path().join("stdout.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("log file"))
        .stderr(std::fs::File::create(&stderr).expect("log file"));
    let mut child = spawner::spawn(cmd).expect("spawn tally");
    if !spawner::wait_timeout(&mut child, within) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(Exited {
        status: child.wait().expect("wait"),
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
    })
}

/// The status of a plain `GET path`, or `None` if nothing answered.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The default site's stored count, read through the API at `base`.
pub async fn default_count(base: &str) -> i64 {
    count_at(base, "default").await
}

/// The count in the seed's greeting.
pub fn parse_greeting(body: &str) -> Option<i64> {
    body.strip_prefix("Hello ")?
        .split_once("!  This page has been viewed ")?
        .1
        .strip_suffix(" time(s).")?
        .parse()
        .ok()
}

/// The counts that the `200` answers of `/` carried.
pub fn acknowledged_counts(outcomes: &[super::load::Outcome]) -> Vec<i64> {
    outcomes
        .iter()
        .filter(|o| o.status == Some(200))
        .map(|o| {
            parse_greeting(&o.body)
                .unwrap_or_else(|| panic!("a 200 from / that is not the greeting: {:?}", o.body))
        })
        .collect()
}

/// Each object of a JSON list as `(its key, its count)`, in order: a pages
/// list's `page`s or a sites list's `slug`s, with their counts.
pub fn listed_counts(list: &Value, key: &str) -> Vec<(String, i64)> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|e| {
            let name = e[key].as_str().expect("a name").to_owned();
            (name, e["count"].as_i64().expect("a count"))
        })
        .collect()
}
