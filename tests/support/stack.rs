//! The Compose topology as local processes (`scripts/stack`): a guard that
//! brings a stack up in a state directory of its own, reads it over HTTP
//! and its files, and takes it down when dropped, even when the test fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::OwnedDir;
use super::app::{count_at, get_json, get_text};
use super::load;

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack");
pub const DIR_PREFIX: &str = "tally-stack-test-";
/// Held by the test that owns a stack directory; free once that test is gone.
pub const LOCK_FILE: &str = "test.lock";

pub static ONE_STACK_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running stack; `scripts/stack down` when dropped.
pub struct Stack {
    dir: OwnedDir,
    /// What every `scripts/stack` call gets (on top of a clean environment).
    env: Vec<(&'static str, String)>,
    /// `$TALLY_STACK_DIR/env`, written by `up`.
    vars: BTreeMap<String, String>,
    _lock: File,
    _turn: MutexGuard<'static, ()>,
}

impl Stack {
    pub fn up() -> Stack {
        Stack::up_with(&[])
    }

    /// A stack with more `scripts/stack` settings, e.g.
    /// `TALLY_STACK_COUNT_BALANCE=round-robin`.
    pub fn up_with(settings: &[(&'static str, &str)]) -> Stack {
        let turn = ONE_STACK_AT_A_TIME
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        stop_abandoned_stacks();
        let dir = OwnedDir::new(DIR_PREFIX);
        let lock = File::create(dir.path().join(LOCK_FILE)).expect("create the stack's lock file");
        #[allow(clippy::incompatible_msrv)]
        lock.lock().expect("lock the stack's lock file");
        let ports = quiet_ports(6);
        let mut env = vec![
            ("TALLY_BIN", env!("CARGO_BIN_EXE_tally").to_owned()),
            ("TALLY_STACK_DIR", dir.path().display().to_string()),
            ("TALLY_STACK_NGINX_PORT", ports[0].to_string()),
            ("TALLY_STACK_PG_PORT", ports[1].to_string()),
            ("TALLY_STACK_REDIS_PORT", ports[2].to_string()),
            (
                "TALLY_STACK_TALLY_PORTS",
                format!("{} {} {}", ports[3], ports[4], ports[5]),
            ),
            // All the load comes from 127.0.0.1.
            ("TALLY_RATE_LIMIT", "0".to_owned()),
            ("TALLY_NEW_PAGES_PER_CLIENT", "0".to_owned()),
            ("TALLY_NEW_PAGES_PER_SITE", "0".to_owned()),
            ("TALLY_READ_RATE_LIMIT", "0".to_owned()),
        ];
        env.extend(settings.iter().map(|&(k, v)| (k, v.to_owned())));
        let mut stack = Stack {
            dir,
            env,
            vars: BTreeMap::new(),
            _lock: lock,
            _turn: turn,
        };
        let started = Instant::now();
        let up = stack.script(&["up"]);
        assert!(
            up.status.success(),
            "scripts/stack up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let env_file = std::fs::read_to_string(stack.path("env")).expect("read the stack's env");
        stack.vars = parse_env(&env_file);
        println!(
            "stack up in {:.1} s: nginx {}, replicas {}",
            started.elapsed().as_secs_f64(),
            stack.var("NGINX_URL"),
            stack.var("REPLICA_URLS")
        );
        stack
    }

    pub fn script(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(SCRIPT);
        cmd.args(args).stdin(Stdio::null());
        // Only this test's settings reach the replicas.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TALLY_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("run scripts/stack")
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the stack's env"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A URL on NGINX.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.var("NGINX_URL"))
    }

    /// `127.0.0.1:PORT` of replica `i` (from 1).
    pub fn replica_addr(&self, i: usize) -> String {
        let port = self
            .var("REPLICA_PORTS")
            .split_whitespace()
            .nth(i - 1)
            .unwrap_or_else(|| panic!("no replica {i}"));
        format!("127.0.0.1:{port}")
    }

    /// A URL on replica `i` itself, to inspect it (never to load it).
    pub fn replica_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.replica_addr(i))
    }

    pub fn replicas(&self) -> usize {
        self.var("REPLICA_PORTS").split_whitespace().count()
    }

    /// Replica logs in the state directory (also before `env` is written).
    pub fn replica_logs(&self) -> Vec<String> {
        let mut logs: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("tally-") && n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }

    /// The PID recorded in a PID file of the stack, checked to be running
    /// the program named `program`.
    pub fn pid(&self, pid_file: &str, program: &str) -> u32 {
        let text = std::fs::read_to_string(self.path(pid_file))
            .unwrap_or_else(|e| panic!("read {pid_file}: {e}"));
        let pid: u32 = text.trim().parse().expect("a PID");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains(program),
            "{pid_file} names pid {pid}, which is not {program}"
        );
        pid
    }

    pub fn replica_pid(&self, i: usize) -> u32 {
        self.pid(&format!("tally-{i}.pid"), "tally")
    }

    pub fn restart_replica(&self, i: usize) {
        let out = self.script(&["restart-replica", &i.to_string()]);
        assert!(
            out.status.success(),
            "scripts/stack restart-replica {i} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn replica_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("tally-{i}.log"))).unwrap_or_default()
    }

    /// The JSON lines of replica `i`'s log (a line that is not JSON, such
    /// as a panic on stderr, is skipped).
    pub fn replica_log_lines(&self, i: usize) -> Vec<Value> {
        self.replica_log(i)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The replica NGINX sends `uri` to: counting routes go to the replica
    /// of their site. Asked with a HEAD (which counts nothing), read back
    /// from the access log.
    pub async fn replica_of(&self, uri: &str) -> usize {
        let response = load::client().head(self.url(uri)).send().await.unwrap();
        assert_eq!(response.status(), 200, "HEAD {uri} through NGINX");
        let log = self.access_log().await;
        let addr = log
            .iter()
            .rev()
            .find(|e| e["uri"] == uri)
            .and_then(|e| e["upstream_addr"].as_str())
            .unwrap_or_else(|| panic!("no {uri} in NGINX's access log"))
            .to_owned();
        (1..=self.replicas())
            .find(|&i| self.replica_addr(i) == addr)
            .unwrap_or_else(|| panic!("{uri} went to {addr}, no replica of this stack"))
    }

    /// NGINX's access log, one JSON object per request. NGINX writes it in
    /// 1 s flushes, so this waits for one first.
    pub async fn access_log(&self) -> Vec<Value> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::read_to_string(self.path("nginx-access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The default site's count, read through NGINX.
    pub async fn count(&self) -> i64 {
        count_at(self.var("NGINX_URL"), "default").await
    }

    /// `tally_hits_total` of replica `i`: the hits that process acknowledged.
    pub async fn replica_hits(&self, i: usize) -> u64 {
        let text = get_text(&self.replica_url(i, "/metrics")).await;
        text.lines()
            .find_map(|l| l.strip_prefix("tally_hits_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no tally_hits_total in replica {i}'s metrics"))
    }

    pub async fn replicas_hits(&self) -> Vec<u64> {
        let mut hits = Vec::new();
        for i in 1..=self.replicas() {
            hits.push(self.replica_hits(i).await);
        }
        hits
    }

    pub async fn cache_state(&self, i: usize) -> String {
        let (_, body) = get_json(&self.replica_url(i, "/readyz")).await;
        body["cache"]["state"].as_str().unwrap_or("?").to_owned()
    }

    /// The replica (from 1) at `addr` (`127.0.0.1:PORT`).
    pub fn replica_at(&self, addr: &str) -> usize {
        (1..=self.replicas())
            .find(|&i| self.replica_addr(i) == addr)
            .unwrap_or_else(|| panic!("{addr} is no replica of this stack"))
    }

    /// Which replicas answered NGINX's 200s for `uris`, by its access log.
    pub async fn spread(&self, uris: &[&str]) -> Spread {
        let mut spread = Spread {
            answered: vec![0; self.replicas()],
            retried: 0,
            by_second: BTreeMap::new(),
        };
        for e in self.access_log().await {
            if e["status"] != 200 || !uris.iter().any(|u| e["uri"] == *u) {
                continue;
            }
            let addrs = e["upstream_addr"].as_str().unwrap_or_default();
            // A request resent to a second replica: "first, second".
            let (last, resent) = match addrs.rsplit_once(", ") {
                Some((_, last)) => (last, true),
                None => (addrs, false),
            };
            let replica = self.replica_at(last);
            spread.answered[replica - 1] += 1;
            spread.retried += usize::from(resent);
            let second = e["time"].as_str().unwrap_or("?").to_owned();
            spread
                .by_second
                .entry(second)
                .or_insert_with(|| vec![0; self.replicas()])[replica - 1] += 1;
        }
        spread
    }

    /// A site's pages and their stored counts (`GET …/pages` through NGINX,
    /// with the admin token: a site's pages are private).
    pub async fn pages(&self, slug: &str) -> BTreeMap<String, i64> {
        let response = load::client()
            .get(self.url(&format!("/api/v1/sites/{slug}/pages?limit=1000")))
            .bearer_auth(self.var("ADMIN_TOKEN"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["next"],
            Value::Null,
            "more than one page of pages: {body}"
        );
        body["pages"]
            .as_array()
            .unwrap_or_else(|| panic!("no pages in {body}"))
            .iter()
            .map(|p| {
                (
                    p["page"].as_str().expect("a page").to_owned(),
                    p["count"].as_i64().expect("a page's count"),
                )
            })
            .collect()
    }

    pub async fn proxied(&self, uri: &str) -> Proxied {
        let entries: Vec<Value> = self
            .access_log()
            .await
            .into_iter()
            .filter(|e| e["uri"] == uri)
            .collect();
        let mut upstream_statuses = BTreeMap::new();
        for e in &entries {
            let s = e["upstream_status"].as_str().unwrap_or("?").to_owned();
            *upstream_statuses.entry(s).or_insert(0) += 1;
        }
        Proxied {
            requests: entries.len(),
            retried: entries
                .iter()
                .filter(|e| e["upstream_addr"].as_str().is_some_and(|a| a.contains(',')))
                .count(),
            upstream_statuses,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs = self.replica_logs();
            logs.extend(
                [
                    "nginx-error.log",
                    "redis.log",
                    "redis/redis.log",
                    "postgres.log",
                    "pg/postgres.log",
                ]
                .map(String::from),
            );
            for log in logs {
                eprintln!(
                    "--- last lines of {log}:\n{}",
                    super::log_tail(&self.path(&log), 3000)
                );
            }
        }
        let down = self.script(&["down"]);
        if !down.status.success() {
            eprintln!(
                "scripts/stack down failed:\n{}",
                String::from_utf8_lossy(&down.stderr)
            );
        }
    }
}

/// `n` distinct free ports on 127.0.0.1, at random in 20000..32000: clear
/// of the ranges `scripts/stack` scans by default (a stack someone else
/// starts meanwhile would race for the same ports) and of the kernel's
/// ephemeral range (a client socket could take a replica's port while the
/// replica restarts).
pub fn quiet_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = fastrand::u16(20_000..32_000);
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// Takes down the stacks of earlier test processes that died without
/// running their guard's drop (killed by a signal or a timeout).
pub fn stop_abandoned_stacks() {
    let Ok(entries) = std::fs::read_dir(super::temp_base()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let has_pid_files = std::fs::read_dir(&dir).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".pid"))
        });
        let Ok(lock) = File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        #[allow(clippy::incompatible_msrv)]
        let abandoned = lock.try_lock().is_ok();
        if has_pid_files && abandoned {
            eprintln!("stopping an abandoned stack in {}", dir.display());
            let down = Command::new(SCRIPT)
                .arg("down")
                .env("TALLY_STACK_DIR", &dir)
                .stdin(Stdio::null())
                .output();
            if down.is_ok_and(|d| d.status.success()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

/// `KEY='value'` lines as `scripts/stack` writes them (single-quoted shell
/// words, a quote inside written `'\''`).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(key, word)| {
            let mut value = String::new();
            let mut quoted = false;
            let mut chars = word.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\'' => quoted = !quoted,
                    '\\' if !quoted => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            (key.to_owned(), value)
        })
        .collect()
}

/// Whether `pid` has exited (a zombie has: nothing may reap it here).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with(['Z', 'X'])),
    }
}

pub async fn wait_exited(pid: u32, within: Duration) -> Duration {
    let started = Instant::now();
    while !exited(pid) {
        assert!(
            started.elapsed() < within,
            "pid {pid} still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Which replicas answered the 200s NGINX logged for some URIs.
#[derive(Debug)]
pub struct Spread {
    /// The 200s each replica (index 0 is replica 1) answered; a request
    /// NGINX resent belongs to the replica it was resent to, the last of
    /// its upstream addresses.
    pub answered: Vec<usize>,
    /// Of those, the requests NGINX had first sent to another replica.
    pub retried: usize,
    /// The same per replica, in each second of the log (`time`, when NGINX
    /// wrote the answer).
    pub by_second: BTreeMap<String, Vec<usize>>,
}

/// What NGINX's access log says about the requests for `uri`: how many,
/// how many it sent to a second replica, and the upstream statuses.
pub struct Proxied {
    pub requests: usize,
    pub retried: usize,
    pub upstream_statuses: BTreeMap<String, usize>,
}
