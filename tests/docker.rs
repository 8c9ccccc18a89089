//! The stack for real: `compose.yaml` on a Docker engine, the seed's own
//! stack with tally's image in place of its Flask app, faults made through
//! Docker under load, and the same file as a Swarm stack.
//!
//! Run by `scripts/docker-test`, which starts a private engine, builds the
//! stand-in images and tally's image, and runs these one at a time. Every
//! request goes to a port published on 127.0.0.1 (or, for the seed's second
//! visitor, from a container on the project's own network).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use support::app::acknowledged_counts;
use support::docker::{
    self, Project, container_ip, docker, docker_ok, image_size, inspect, mb, run_ok, setting,
    wait_healthy,
};
use support::load::{self, Outcome, Until};

/// Clients that load the stack during a fault.
const CLIENTS: usize = 64;
/// The fault comes this far into the load.
const FAULT_AT: Duration = Duration::from_secs(2);
/// tally's image must stay under this (the project's goal).
const IMAGE_GOAL_BYTES: u64 = 20_000_000;
const SEED_GREETING: &str = "Hello Linode!  This page has been viewed";

// ---------------------------------------------------------------------------
// helpers

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn get(url: &str) -> (u16, String) {
    get_as(url, None).await
}

/// GET `url`, with the admin token when one is given.
async fn get_as(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = load::client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The default site's count, read (not counted) through NGINX.
async fn stored_count(p: &Project) -> i64 {
    count_at(&p.url("/api/v1/sites/default/count")).await
}

/// The counts answered are exactly `from+1 ..= to`: none repeated, none
/// missing.
fn assert_counts_between(counts: &[i64], from: i64, to: i64, what: &str) {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    if sorted.iter().copied().eq(from + 1..=to) {
        return;
    }
    let repeated = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    panic!(
        "{what}: {} counts answered between {from} and {to}: {repeated} repeated, lowest {:?}, \
         highest {:?}",
        sorted.len(),
        sorted.first(),
        sorted.last()
    );
}

/// 64 clients count on `/` through NGINX; `fault` runs `FAULT_AT` in (on a
/// blocking thread) and the load goes on until `fault` has returned and
/// `after` more has passed.
async fn load_around(
    p: &Project,
    after: Duration,
    fault: impl FnOnce() + Send + 'static,
) -> Vec<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (p.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, CLIENTS, Until::Flag(stop, 5_000_000)).await }
    });
    tokio::time::sleep(FAULT_AT).await;
    tokio::task::spawn_blocking(fault).await.expect("the fault");
    tokio::time::sleep(after).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("the load")
}

/// What one load did to the count: it went from `before` to `after`, the
/// 200s carried exactly `before+1..=after`, and nothing but `allowed`
/// statuses came back.
struct Phase {
    name: String,
    statuses: BTreeMap<u16, usize>,
    before: i64,
    after: i64,
    counts: Vec<i64>,
}

impl Phase {
    async fn measure(
        p: &Project,
        name: &str,
        after: Duration,
        fault: impl FnOnce() + Send + 'static,
    ) -> Phase {
        let before = stored_count(p).await;
        let outcomes = load_around(p, after, fault).await;
        let stored = stored_count(p).await;
        let phase = Phase {
            name: name.to_owned(),
            statuses: load::statuses(&outcomes),
            before,
            after: stored,
            counts: acknowledged_counts(&outcomes),
        };
        println!(
            "{}: {} requests from {CLIENTS} clients through NGINX, statuses {:?}; stored count \
             {} -> {} (+{}), 200s {}",
            phase.name,
            outcomes.len(),
            phase.statuses,
            phase.before,
            phase.after,
            phase.after - phase.before,
            phase.counts.len(),
        );
        phase
    }

    /// No acknowledged hit lost, none counted twice: the stored count grew
    /// by exactly the 200s, whose counts are exactly the new range.
    fn assert_exact(&self) {
        assert_eq!(
            self.after - self.before,
            self.counts.len() as i64,
            "{}: the stored count grew by other than the 200 answers",
            self.name
        );
        assert_counts_between(&self.counts, self.before, self.after, &self.name);
    }

    fn assert_only(&self, allowed: &[u16]) {
        let other: BTreeMap<u16, usize> = self
            .statuses
            .iter()
            .filter(|(s, _)| !allowed.contains(s))
            .map(|(s, n)| (*s, *n))
            .collect();
        assert!(
            other.is_empty(),
            "{}: answers other than {allowed:?}: {other:?} (0: no answer)",
            self.name
        );
    }
}

/// `docker compose up -d --wait`: every service healthy; how long it took.
fn up(p: &Project) -> Duration {
    let started = Instant::now();
    p.compose_ok(&["up", "-d", "--wait", "--wait-timeout", "180"]);
    started.elapsed()
}

/// NGINX's JSON access-log entries since `since` (RFC 3339 or Unix time).
fn access_log(p: &Project, since: &str) -> Vec<Value> {
    let nginx = p.container("nginx");
    let out = run_ok(Command::new("docker").args(["logs", "--since", since, &nginx]));
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("upstream_addr").is_some())
        .collect()
}

fn unix_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The replica container NGINX sends the default site's hits to (all of a
/// site's go to one): asked with a HEAD of `/`, which counts nothing, and
/// read back from NGINX's access log.
async fn replica_of_root(p: &Project) -> String {
    let since = unix_now();
    let response = load::client().head(p.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200, "HEAD / through NGINX");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let found = access_log(p, &since)
            .into_iter()
            .find(|e| e["method"] == "HEAD" && e["uri"] == "/")
            .and_then(|e| e["upstream_addr"].as_str().map(str::to_owned));
        if let Some(addr) = found {
            break addr;
        }
        assert!(Instant::now() < deadline, "no HEAD / in NGINX's access log");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    p.containers("tally")
        .into_iter()
        .find(|c| format!("{}:8000", container_ip(c)) == addr)
        .unwrap_or_else(|| panic!("/ went to {addr}, no replica of this project"))
}

/// After a replica came back: a short load, and how many of its requests
/// NGINX sent to `ip` (the replica) among how many in all.
async fn rejoined(p: &Project, ip: &str) -> (usize, usize) {
    // NGINX re-resolves the replicas' name every 10 s and retries a peer
    // that failed after its fail_timeout (10 s).
    let since = unix_now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Reads are spread over every replica (hits go to their site's).
        let outcomes = load::run(
            &[p.url("/api/v1/sites/default/count")],
            Method::GET,
            8,
            Until::Requests(400),
        )
        .await;
        assert_eq!(
            load::statuses(&outcomes),
            BTreeMap::from([(200, outcomes.len())]),
            "errors after a replica came back"
        );
        let entries = access_log(p, &since);
        let to_it = entries
            .iter()
            .filter(|e| {
                e["upstream_addr"]
                    .as_str()
                    .is_some_and(|a| a.split(", ").any(|one| one == format!("{ip}:8000")))
            })
            .count();
        if to_it > 0 || Instant::now() > deadline {
            return (to_it, entries.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts the container again unless its restart policy already has;
/// waits until it is healthy. Says which.
fn bring_back(id: &str) -> &'static str {
    std::thread::sleep(Duration::from_secs(2));
    let c = inspect(id);
    let how = if c["State"]["Running"] == true {
        "restarted by its restart policy"
    } else {
        docker_ok(&["start", id]);
        "started again by the test (docker start)"
    };
    wait_healthy(id, Duration::from_secs(60));
    how
}

/// The seed's walkthrough against a fresh stack at `base`: `/` twice, the
/// reset with the token (refused without it), `/` again. The answers.
async fn walkthrough(base: &str, token: &str) -> Vec<String> {
    let url = |path: &str| format!("{base}{path}");
    let mut answers = Vec::new();
    for (path, token, want) in [
        (
            "/",
            None,
            "Hello Linode!  This page has been viewed 1 time(s).",
        ),
        (
            "/",
            None,
            "Hello Linode!  This page has been viewed 2 time(s).",
        ),
        (
            "/resetcounter",
            Some(token),
            "Successfully deleted redis and postgres counters",
        ),
        (
            "/",
            None,
            "Hello Linode!  This page has been viewed 1 time(s).",
        ),
    ] {
        let (status, body) = get_as(&url(path), token).await;
        assert_eq!((status, body.as_str()), (200, want), "GET {path}");
        answers.push(body);
    }
    let (unauthorised, _) = get(&url("/resetcounter")).await;
    assert_eq!(unauthorised, 401, "a reset without the token");
    answers
}

// ---------------------------------------------------------------------------
// the walkthrough, facts, and data across down/up

#[test]
fn compose_up_runs_the_seed_walkthrough_and_the_count_survives_down_and_up() {
    let rt = runtime();
    let p = Project::tally("walkthrough", 1);
    let took = up(&p);
    let token = p.secret("admin_token");

    rt.block_on(async {
        let answers = walkthrough(&p.url(""), &token).await;
        println!(
            "up -d --wait: every service healthy after {:.1} s; the walkthrough answered \
             {answers:?}",
            took.as_secs_f64()
        );
    });
    let logs = p.logs("tally");
    let resets = logs.matches("reset visitor count").count();
    assert_eq!(
        resets, 1,
        "`docker compose logs tally` shows the reset {resets} times"
    );

    // Facts about the running containers.
    let tally = p.containers("tally");
    assert_eq!(tally.len(), 3, "tally replicas");
    for id in &tally {
        let c = inspect(id);
        assert_eq!(c["Config"]["User"], "65532:65532", "tally's user");
        assert_eq!(
            c["HostConfig"]["ReadonlyRootfs"], true,
            "tally's root filesystem"
        );
        let top = docker_ok(&["top", id, "-o", "pid,uid"]);
        let uids: Vec<&str> = top
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(uids, vec!["65532"], "tally's process runs as");
        let shell = docker(&["exec", id, "/bin/sh", "-c", "true"]);
        assert!(!shell.status.success(), "tally's container has a shell");
        // The CLI prints the runtime's refusal on stdout.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&shell.stdout),
            String::from_utf8_lossy(&shell.stderr)
        );
        assert!(
            said.contains("stat /bin/sh: no such file or directory"),
            "{said}"
        );
    }
    let tally_image = setting("TALLY_TEST_IMAGE");
    let sizes: Vec<(String, u64)> = [
        tally_image.clone(),
        setting("TALLY_NGINX_IMAGE"),
        setting("TALLY_POSTGRES_IMAGE"),
        setting("TALLY_REDIS_IMAGE"),
    ]
    .into_iter()
    .map(|i| {
        let size = image_size(&i);
        (i, size)
    })
    .collect();
    for (image, size) in &sizes {
        println!("image {image}: {:.1} MB", mb(*size));
    }
    println!(
        "tally's container: user 65532:65532, read-only root filesystem, `docker exec \
         /bin/sh` fails (no shell)"
    );
    assert!(
        sizes[0].1 < IMAGE_GOAL_BYTES,
        "tally's image is {:.1} MB, over the {:.0} MB goal",
        mb(sizes[0].1),
        mb(IMAGE_GOAL_BYTES)
    );

    // Down without -v keeps the volume; the count goes on.
    rt.block_on(async {
        for _ in 0..4 {
            get(&p.url("/")).await;
        }
        assert_eq!(stored_count(&p).await, 5);
    });
    p.compose_ok(&["down", "-t", "15"]);
    let again = up(&p);
    rt.block_on(async {
        let (status, body) = get(&p.url("/")).await;
        println!(
            "down, then up -d --wait (healthy after {:.1} s): / -> {body:?}",
            again.as_secs_f64()
        );
        assert_eq!(
            (status, body.as_str()),
            (200, "Hello Linode!  This page has been viewed 6 time(s).")
        );
    });
}

// ---------------------------------------------------------------------------
// faults under load

#[test]
fn docker_kill_of_a_replica_under_load_loses_no_hit_and_it_comes_back() {
    let rt = runtime();
    let p = Project::tally("kill", 2);
    up(&p);
    // The replica that serves the hits.
    let victim = rt.block_on(replica_of_root(&p));
    let ip = container_ip(&victim);
    let phase = rt.block_on(Phase::measure(
        &p,
        "docker kill (SIGKILL) of a replica",
        Duration::from_secs(6),
        {
            let victim = victim.clone();
            move || {
                docker_ok(&["kill", &victim]);
            }
        },
    ));
    let how = bring_back(&victim);
    let ip_after = container_ip(&victim);
    let (to_it, all) = rt.block_on(rejoined(&p, &ip_after));
    println!(
        "the killed replica ({ip}) was {how}; afterwards NGINX sent it {to_it} of {all} \
         requests ({ip_after})"
    );
    // A replica that dies by itself (not by `docker kill`, which Docker
    // counts as stopping it on purpose) is restarted by its restart policy.
    let pid = inspect(&victim)["State"]["Pid"].as_i64().expect("a pid");
    let restarts = inspect(&victim)["RestartCount"].as_i64().unwrap_or(0);
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
    let healthy_in = wait_restarted(&victim, restarts);
    println!(
        "the replica's process SIGKILLed from the host (pid {pid}): restarted by `restart: \
         unless-stopped` and healthy after {:.1} s",
        healthy_in.as_secs_f64()
    );
    phase.assert_exact();
    phase.assert_only(&[200]);
    assert!(to_it > 0, "the replica is not back in NGINX's rotation");
}

/// Waits until the container's restart count passes `restarts` and it is
/// healthy again.
fn wait_restarted(id: &str, restarts: i64) -> Duration {
    let started = Instant::now();
    while inspect(id)["RestartCount"].as_i64().unwrap_or(0) <= restarts {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{id} was not restarted by its restart policy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_healthy(id, Duration::from_secs(60));
    started.elapsed()
}

#[test]
fn docker_stop_and_sigint_stop_replicas_cleanly_under_load() {
    let rt = runtime();
    let p = Project::tally("stop", 3);
    up(&p);
    for how in ["docker stop (SIGTERM)", "docker kill --signal=SIGINT"] {
        // Each time the replica that serves the hits then.
        let victim = rt.block_on(replica_of_root(&p));
        let phase = rt.block_on(Phase::measure(&p, how, Duration::from_secs(6), {
            let victim = victim.clone();
            move || {
                if how.starts_with("docker stop") {
                    docker_ok(&["stop", "-t", "15", &victim]);
                } else {
                    docker_ok(&["kill", "--signal=SIGINT", &victim]);
                }
            }
        }));
        let code = wait_exited_or_restarted(&victim);
        let back = bring_back(&victim);
        let (to_it, all) = rt.block_on(rejoined(&p, &container_ip(&victim)));
        println!(
            "{how}: the replica exited with code {code}; it was {back}; afterwards NGINX sent \
             it {to_it} of {all} requests"
        );
        phase.assert_exact();
        phase.assert_only(&[200]);
        assert_eq!(code, 0, "{how}: exit code");
        assert!(
            to_it > 0,
            "{how}: the replica is not back in NGINX's rotation"
        );
    }
}

/// The exit code of the container's last run, also when its restart policy
/// has started it again since.
fn wait_exited_or_restarted(id: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = inspect(id);
        let restarts = c["RestartCount"].as_i64().unwrap_or(0);
        if c["State"]["Running"] == false || restarts > 0 {
            return c["State"]["ExitCode"].as_i64().expect("an exit code");
        }
        assert!(Instant::now() < deadline, "{id} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn docker_compose_restart_redis_under_load_costs_no_error_and_no_count() {
    let rt = runtime();
    let p = Project::tally("redis", 4);
    up(&p);
    let phase = rt.block_on(Phase::measure(
        &p,
        "docker compose restart redis",
        Duration::from_secs(4),
        {
            let cmd = p.command(&["restart", "redis"]);
            move || {
                let mut cmd = cmd;
                run_ok(&mut cmd);
            }
        },
    ));
    phase.assert_exact();
    phase.assert_only(&[200]);
}

#[test]
fn postgres_stopped_for_five_seconds_under_load_answers_503_then_recovers_exactly() {
    let rt = runtime();
    let p = Project::tally("postgres", 5);
    up(&p);
    let tally_before: Vec<Value> = p.containers("tally").iter().map(|id| inspect(id)).collect();
    let phase = rt.block_on(Phase::measure(
        &p,
        "docker compose stop postgres, 5 s, start",
        Duration::from_secs(5),
        {
            let (stop, start) = (
                p.command(&["stop", "postgres"]),
                p.command(&["start", "postgres"]),
            );
            move || {
                let (mut stop, mut start) = (stop, start);
                run_ok(&mut stop);
                std::thread::sleep(Duration::from_secs(5));
                run_ok(&mut start);
            }
        },
    ));
    let tally_after: Vec<Value> = p.containers("tally").iter().map(|id| inspect(id)).collect();
    phase.assert_exact();
    phase.assert_only(&[200, 503]);
    assert!(
        phase.statuses.get(&503).copied().unwrap_or(0) > 0,
        "no 503 while PostgreSQL was down: {:?}",
        phase.statuses
    );
    // Recovered by itself: the same tally processes, none restarted.
    for (b, a) in tally_before.iter().zip(&tally_after) {
        assert_eq!(
            a["State"]["StartedAt"], b["State"]["StartedAt"],
            "a replica restarted"
        );
        assert_eq!(a["State"]["Running"], true);
    }
    rt.block_on(async {
        let (status, body) = get(&p.url("/")).await;
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn rolling_replacement_of_every_replica_under_load_costs_no_error() {
    let rt = runtime();
    let p = Project::tally("rolling", 6);
    up(&p);
    let old = p.containers("tally");
    let phase = rt.block_on(Phase::measure(
        &p,
        "rolling replacement of 3 replicas",
        Duration::from_secs(3),
        {
            let (old, scale, project) = (
                old.clone(),
                p.command(&[
                    "up",
                    "-d",
                    "--no-deps",
                    "--no-recreate",
                    "--scale",
                    "tally=4",
                    "tally",
                ]),
                p.name.clone(),
            );
            move || {
                let mut scale = scale;
                for id in &old {
                    // One new replica beside the three...
                    run_ok(&mut scale);
                    let new = newest_tally(&project, &old);
                    wait_healthy(&new, Duration::from_secs(60));
                    // ...in NGINX's rotation (it re-resolves every 10 s)...
                    std::thread::sleep(Duration::from_secs(11));
                    // ...then one old one drained and removed.
                    docker_ok(&["stop", "-t", "15", id]);
                    docker_ok(&["rm", id]);
                }
            }
        },
    ));
    let now = p.containers("tally");
    let short = |ids: &[String]| ids.iter().map(|i| i[..12].to_owned()).collect::<Vec<_>>();
    println!("replicas before {:?}; after {:?}", short(&old), short(&now));
    phase.assert_exact();
    phase.assert_only(&[200]);
    assert_eq!(now.len(), 3);
    assert!(
        now.iter().all(|id| !old.contains(id)),
        "an old replica is left"
    );
}

/// The running tally container of `project` not in `old` and not yet seen
/// healthy: the one just created.
fn newest_tally(project: &str, old: &[String]) -> String {
    let out = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "label=com.docker.compose.service=tally",
    ]);
    let mut fresh: Vec<(String, String)> = out
        .lines()
        .filter(|id| !old.iter().any(|o| o == id))
        .map(|id| {
            let created = inspect(id)["Created"].as_str().unwrap_or("").to_owned();
            (created, id.to_owned())
        })
        .collect();
    fresh.sort();
    fresh.pop().map(|(_, id)| id).expect("a new replica")
}

// ---------------------------------------------------------------------------
// the seed's own stack, tally dropped in

/// tally's limit on the hits one client counts per window
/// (`TALLY_RATE_LIMIT`'s default; the seed's file sets none).
const SEED_RATE_LIMIT: usize = 600;
/// The limiter's window: fixed windows of this many seconds, aligned to
/// Unix time (src/limit/window.rs, `Limiter::position`).
const RATE_WINDOW_SECS: f64 = 60.0;
/// The visitor's hits after the one answered 42.
const SEED_BURST: usize = 700;

/// The clock tally's limiter reads, in seconds since the Unix epoch: the
/// containers share this host's kernel clock.
fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs_f64()
}

/// The limiter's window index at Unix time `t`, and the seconds into it.
fn rate_window(t: f64) -> (u64, f64) {
    (
        (t / RATE_WINDOW_SECS).floor() as u64,
        t.rem_euclid(RATE_WINDOW_SECS),
    )
}

/// Sleeps, if need be, until the limiter's current window has at least
/// `room` left, to just past the start of the next one (which leaves it
/// all, less 50 ms); how long it slept.
async fn wait_for_window_room(room: Duration) -> Duration {
    assert!(room.as_secs_f64() < RATE_WINDOW_SECS - 1.0, "{room:?}");
    let left = RATE_WINDOW_SECS - rate_window(unix_secs()).1;
    if left >= room.as_secs_f64() {
        return Duration::ZERO;
    }
    let wait = Duration::from_secs_f64(left + 0.05);
    tokio::time::sleep(wait).await;
    wait
}

/// The seed's `flaskapp` service as a seed user changes it: tally's image
/// instead of the Flask build and its code volume, and the database URL.
const SEED_FLASKAPP: &str = " flaskapp:
   image: ${TALLY_IMAGE}
   restart: always
   expose:
     - \"8000\"
   depends_on:
     - redis
     - postgres
   links:
     - redis
     - postgres
   environment:
     TALLY_DATABASE_URL: postgres://postgres:linode123@postgres/linode
   deploy:
     mode: replicated
     replicas: 3
";

/// The seed's docker-compose.yml with only its `flaskapp` service replaced.
fn seed_compose_with_tally() -> String {
    let seed = std::fs::read_to_string(format!(
        "{}/tests/fixtures/seed/docker-compose.yml",
        docker::REPO
    ))
    .expect("the seed's docker-compose.yml");
    let start = seed
        .find(" flaskapp:\n")
        .expect("the seed's flaskapp service");
    let end = seed
        .find(" # Define the redis Docker container")
        .expect("the service after flaskapp");
    format!("{}{SEED_FLASKAPP}\n{}", &seed[..start], &seed[end..])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from)
        .expect("read a fixture dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy a fixture");
        }
    }
}

#[test]
fn the_seeds_own_stack_runs_tally_in_place_of_flaskapp() {
    let rt = runtime();
    // The seed publishes port 80 ("80:80"), as it is.
    if let Err(e) = std::net::TcpListener::bind("127.0.0.1:80") {
        panic!("port 80 is taken on this machine ({e}); the seed's stack publishes it");
    }
    let dir = support::OwnedDir::new("tally-docker-seed-");
    let root = dir.path().join("flask-microservice");
    copy_dir(
        Path::new(&format!("{}/tests/fixtures/seed", docker::REPO)),
        &root,
    );
    std::fs::write(root.join("docker-compose.yml"), seed_compose_with_tally()).expect("write");
    std::fs::copy(
        format!("{}/tests/fixtures/seed-loopback.yml", docker::REPO),
        root.join("loopback.yml"),
    )
    .expect("copy");
    // The seed's file, run the way it ran: docker-compose 1.x, which
    // ignores `deploy` (one container per service), and port 80.
    let mut p = Project::at(
        "seed",
        setting("TALLY_COMPOSE_SEED"),
        &root,
        &["docker-compose.yml", "loopback.yml"],
        80,
        dir,
    );
    p.set_env("TALLY_IMAGE", &setting("TALLY_TEST_IMAGE"));

    // The seed's database first, at 41.
    p.compose_ok(&["up", "-d", "postgres"]);
    let pg = p.container("postgres");
    support::wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let out = docker(&[
            "exec",
            &pg,
            "psql",
            "-U",
            "postgres",
            "-d",
            "linode",
            "-qtAc",
            "UPDATE visitors SET visitor_count = 41 WHERE site_id = 1 RETURNING visitor_count",
        ]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "41").then_some(())
    })
    .expect("the seed's database did not take the count of 41");

    let started = Instant::now();
    p.compose_ok(&["up", "-d"]);
    let apps = p.containers("flaskapp");
    println!(
        "the seed's docker-compose.yml under docker-compose 1.26: {} flaskapp container(s), {} \
         nginx, {} redis",
        apps.len(),
        p.containers("nginx").len(),
        p.containers("redis").len()
    );
    rt.block_on(async {
        // Ready through the seed's NGINX, without counting a hit.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = load::client().get(p.url("/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the seed's stack never became ready"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        println!(
            "ready through the seed's NGINX {:.1} s after up",
            started.elapsed().as_secs_f64()
        );

        // One visitor (the host), whose every counted hit from here on is
        // limited by tally's sliding window. Per client it keeps the hits
        // of the current fixed 60 s window (`current`) and of the one
        // before (`previous`), and admits a hit t seconds into the window
        // while previous * (1 - t/60) + current + 1 <= 600. So, when the
        // hit answered 42 and the 700 after it all fall in ONE window W,
        // and the visitor counted nothing in W - 1 (it has counted nothing
        // before the 42), previous is 0 and exactly 599 of the 700 are
        // admitted (current goes from 1 to 600), whatever t is. Crossing
        // into W + 1 part way would not be exact: there previous is the
        // hits of W, weighted less every millisecond, so more are admitted
        // (with all 600 of W behind it, a hit 0.1 s into W + 1 already
        // is: 600 * (1 - 0.1/60) + 1 <= 600). The hits therefore start
        // only where the window has room for all of them: the room is 10
        // times what 701 requests through the same path take at the pace
        // of /readyz (which counts nothing and is not limited), plus 5 s,
        // at least 15 s; with less left, they start just past the next
        // window's start. Afterwards the test checks that the first hit
        // was sent and the last answered in the same window.
        let mut paces = Vec::new();
        for _ in 0..20 {
            let sent = Instant::now();
            let (status, body) = get(&p.url("/readyz")).await;
            assert_eq!(status, 200, "{body}");
            paces.push(sent.elapsed());
        }
        paces.sort_unstable();
        let pace = paces[paces.len() * 9 / 10];
        let room = (pace * 10 * (SEED_BURST as u32 + 1) + Duration::from_secs(5))
            .clamp(Duration::from_secs(15), Duration::from_secs(55));
        let waited = wait_for_window_room(room).await;
        let first_sent = unix_secs();
        let (status, body) = get(&p.url("/")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, format!("{SEED_GREETING} 42 time(s).").as_str())
        );

        // 700 hits in well under a minute: limited past 600.
        let client = load::client();
        let mut statuses = BTreeMap::new();
        for _ in 0..SEED_BURST {
            let s = load::send(&client, Method::GET, &p.url("/"))
                .await
                .status
                .unwrap_or(0);
            *statuses.entry(s).or_insert(0) += 1;
        }
        let last_answered = unix_secs();
        let (first_window, first_into) = rate_window(first_sent);
        let (last_window, last_into) = rate_window(last_answered);
        println!(
            "one visitor (the host, through the published port), {SEED_BURST} hits after the \
             42nd: {statuses:?}; /readyz p90 {pace:?}, so room {room:?} needed; waited \
             {waited:?}; the hits ran from {first_into:.2} s into window {first_window} to \
             {last_into:.2} s into window {last_window}"
        );
        assert_eq!(
            first_window,
            last_window,
            "the visitor's hits took {:.1} s, past the end of their rate-limit window (room \
             {room:?}): the split below holds only within one window",
            last_answered - first_sent
        );
        // Its first hit above (42) was one of its 600.
        assert_eq!(
            statuses,
            BTreeMap::from([
                (200, SEED_RATE_LIMIT - 1),
                (429, SEED_BURST + 1 - SEED_RATE_LIMIT)
            ])
        );
    });

    // A second visitor, from another container on the seed's network.
    let network = format!("{}_default", p.name);
    let out = docker_ok(&[
        "run",
        "--rm",
        "--network",
        &network,
        &setting("TALLY_BUSYBOX_IMAGE"),
        "wget",
        "-q",
        "-O",
        "-",
        "http://nginx/",
    ]);
    println!("a second visitor (busybox wget on {network}): {out:?}");
    assert_eq!(out, format!("{SEED_GREETING} 642 time(s)."));
}

// ---------------------------------------------------------------------------
// Docker Swarm

/// A single-node swarm on the private engine, left when dropped (with
/// everything deployed on it).
struct Swarm {
    stack: String,
    env: Vec<(String, String)>,
    port: u16,
    _dir: support::OwnedDir,
}

impl Swarm {
    fn init(stack: &str) -> Swarm {
        let _ = docker(&["swarm", "leave", "--force"]);
        // Host-mode ports of Swarm tasks are published through the
        // docker_gwbridge network: made before `swarm init`, it binds them
        // to 127.0.0.1 only (a task's port has no host address of its own).
        let _ = docker(&["network", "rm", "docker_gwbridge"]);
        docker_ok(&[
            "network",
            "create",
            "--subnet",
            "172.30.251.0/24",
            "-o",
            "com.docker.network.bridge.name=docker_gwbridge",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=true",
            "-o",
            "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
            "docker_gwbridge",
        ]);
        docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        let dir = support::OwnedDir::new("tally-docker-swarm-");
        let secrets = dir.path().join("secrets");
        run_ok(
            Command::new(format!("{}/scripts/make-secrets", docker::REPO))
                .arg(&secrets)
                .stdout(std::process::Stdio::null()),
        );
        let port = docker::free_port();
        let env = [
            ("TALLY_IMAGE", setting("TALLY_TEST_IMAGE")),
            ("TALLY_NGINX_IMAGE", setting("TALLY_NGINX_IMAGE")),
            ("TALLY_POSTGRES_IMAGE", setting("TALLY_POSTGRES_IMAGE")),
            ("TALLY_REDIS_IMAGE", setting("TALLY_REDIS_IMAGE")),
            ("TALLY_SECRETS_DIR", secrets.display().to_string()),
            ("TALLY_HTTP_PORT", port.to_string()),
            ("TALLY_SUBNET", "172.29.7.0/24".to_owned()),
            ("TALLY_RATE_LIMIT", "0".to_owned()),
            ("TALLY_NEW_PAGES_PER_CLIENT", "0".to_owned()),
            ("TALLY_NEW_PAGES_PER_SITE", "0".to_owned()),
            ("TALLY_READ_RATE_LIMIT", "0".to_owned()),
            ("TALLY_COMPOSE", setting("TALLY_COMPOSE")),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        Swarm {
            stack: stack.to_owned(),
            env,
            port,
            _dir: dir,
        }
    }

    fn docker(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("docker")
                .current_dir(docker::REPO)
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (k, v))),
        )
    }

    fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }

    /// The ids of a service's tasks that are meant to run.
    fn running_tasks(&self, name: &str) -> Vec<String> {
        self.docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &self.service(name),
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.stack]);
        let _ = docker(&["swarm", "leave", "--force"]);
        let _ = docker(&["network", "rm", "docker_gwbridge"]);
    }
}

#[test]
fn swarm_stack_serves_the_walkthrough_and_rolls_every_task_under_load() {
    let rt = runtime();
    let swarm = Swarm::init("tallyswarm");
    let started = Instant::now();
    // `docker stack deploy` cannot read compose.yaml (depends_on with
    // health conditions): scripts/swarm-stack writes the stack file.
    let stack_file = swarm._dir.path().join("stack.json");
    let stack_json = run_ok(
        Command::new(format!("{}/scripts/swarm-stack", docker::REPO))
            .envs(swarm.env.iter().map(|(k, v)| (k, v))),
    );
    std::fs::write(&stack_file, stack_json).expect("write the stack file");
    swarm.docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        &stack_file.display().to_string(),
        &swarm.stack,
    ]);
    // Ready: NGINX answers /readyz from a replica that reaches PostgreSQL,
    // and three tally tasks run.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let ready = matches!(
                load::client().get(swarm.url("/readyz")).send().await,
                Ok(r) if r.status() == 200
            );
            if ready && swarm.running_tasks("tally").len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the swarm stack is not ready after 180 s:\n{}",
                swarm.docker(&["stack", "ps", "--no-trunc", &swarm.stack])
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    println!(
        "docker stack deploy: ready through NGINX with 3 tally tasks after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let token = std::fs::read_to_string(swarm._dir.path().join("secrets/admin_token"))
        .expect("the token")
        .trim()
        .to_owned();
    rt.block_on(walkthrough(&swarm.url(""), &token));
    let logs = swarm.docker(&["service", "logs", "--raw", &swarm.service("tally")]);
    assert_eq!(
        logs.matches("reset visitor count").count(),
        1,
        "the reset in the service's logs"
    );

    // docker service update --force under load: every task replaced.
    let before: Vec<String> = swarm.running_tasks("tally");
    let update = {
        let mut cmd = Command::new("docker");
        cmd.args(["service", "update", "--force", "--detach=false", "--quiet"])
            .arg(swarm.service("tally"))
            .envs(swarm.env.iter().map(|(k, v)| (k, v)));
        cmd
    };
    let url = swarm.url("/");
    let (phase_statuses, counts, from, to, took) =
        rt.block_on(async {
            let from = count_at(&swarm.url("/api/v1/sites/default/count")).await;
            let stop = Arc::new(AtomicBool::new(false));
            let load = tokio::spawn({
                let stop = stop.clone();
                async move {
                    load::run(&[url], Method::GET, CLIENTS, Until::Flag(stop, 5_000_000)).await
                }
            });
            tokio::time::sleep(FAULT_AT).await;
            let t0 = Instant::now();
            tokio::task::spawn_blocking(move || {
                let mut update = update;
                run_ok(&mut update);
            })
            .await
            .expect("the update");
            let took = t0.elapsed();
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop.store(true, Ordering::Relaxed);
            let outcomes = load.await.expect("the load");
            let to = count_at(&swarm.url("/api/v1/sites/default/count")).await;
            (
                load::statuses(&outcomes),
                acknowledged_counts(&outcomes),
                from,
                to,
                took,
            )
        });
    let after: Vec<String> = swarm.running_tasks("tally");
    println!(
        "docker service update --force (took {:.1} s) under {CLIENTS} clients: statuses \
         {phase_statuses:?}; stored count {from} -> {to}; tasks before {before:?}, after {after:?}",
        took.as_secs_f64()
    );
    assert_eq!(
        phase_statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "client errors"
    );
    assert_eq!(
        to - from,
        counts.len() as i64,
        "stored count against the 200s"
    );
    assert_counts_between(&counts, from, to, "counts during the rolling update");
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|t| !before.contains(t)),
        "a task was not replaced"
    );
}

async fn count_at(url: &str) -> i64 {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["count"].as_i64().expect("a count")
}
