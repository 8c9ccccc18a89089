//! A Docker engine for the stack tests: the `docker` CLI, Compose projects
//! that take themselves down, and what the engine says about containers.
//!
//! The engine is the private one `scripts/docker-test` starts (it exports
//! `DOCKER_HOST` and the `TALLY_*` variables read here); these tests are a
//! separate test target (`test = false` in Cargo.toml) that only that
//! script runs, so they never run without an engine, and never skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::OwnedDir;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A variable `scripts/docker-test` sets; its absence is a failure.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests run under scripts/docker-test, which starts the engine"
        )
    })
}

fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Runs `cmd` to its end; panics, with its output, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\n{}{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("`{}`: {e}", describe(cmd)))
}

pub fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

pub fn docker_ok(args: &[&str]) -> String {
    run_ok(Command::new("docker").args(args))
}

/// `docker inspect` of one container (or image), as JSON.
pub fn inspect(id: &str) -> Value {
    let text = docker_ok(&["inspect", id]);
    let mut all: Vec<Value> = serde_json::from_str(&text).expect("docker inspect JSON");
    all.remove(0)
}

/// The image's size in bytes, as the engine stores it (uncompressed).
pub fn image_size(image: &str) -> u64 {
    docker_ok(&["image", "inspect", "-f", "{{.Size}}", image])
        .trim()
        .parse()
        .expect("an image size")
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// A container's address on its (first) network.
pub fn container_ip(id: &str) -> String {
    let c = inspect(id);
    c["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|nets| nets.values().next())
        .and_then(|n| n["IPAddress"].as_str())
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| panic!("container {id} has no address"))
        .to_owned()
}

/// Waits until the container runs and its healthcheck says healthy.
pub fn wait_healthy(id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let c = inspect(id);
        let state = &c["State"];
        if state["Running"] == true && state["Health"]["Status"] == "healthy" {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "container {id} not healthy after {within:?}: {}",
            state
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A port that nothing listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    super::free_port()
}

/// One Compose project: its own name, directory for generated files and
/// secrets, published port and subnet. `down -v` when dropped.
pub struct Project {
    pub name: String,
    /// The compose binary (`TALLY_COMPOSE`: v2; `TALLY_COMPOSE_SEED`: 1.26).
    compose: String,
    /// Where compose runs (relative paths in the files resolve here).
    workdir: PathBuf,
    files: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    pub port: u16,
    pub dir: OwnedDir,
}

impl Project {
    /// tally's own `compose.yaml`, with the stand-in images, secrets made by
    /// `scripts/make-secrets` in a directory of its own, NGINX published on
    /// 127.0.0.1 at a free port, and a subnet of its own (`index` picks it).
    pub fn tally(name: &str, index: u8) -> Project {
        let dir = OwnedDir::new("tally-docker-test-");
        let secrets = dir.path().join("secrets");
        run_ok(
            Command::new(format!("{REPO}/scripts/make-secrets"))
                .arg(&secrets)
                .stdout(Stdio::null()),
        );
        let port = free_port();
        let env = BTreeMap::from(
            [
                ("TALLY_IMAGE", setting("TALLY_TEST_IMAGE")),
                ("TALLY_NGINX_IMAGE", setting("TALLY_NGINX_IMAGE")),
                ("TALLY_POSTGRES_IMAGE", setting("TALLY_POSTGRES_IMAGE")),
                ("TALLY_REDIS_IMAGE", setting("TALLY_REDIS_IMAGE")),
                ("TALLY_SECRETS_DIR", secrets.display().to_string()),
                ("TALLY_HTTP_ADDR", "127.0.0.1".to_owned()),
                ("TALLY_HTTP_PORT", port.to_string()),
                ("TALLY_SUBNET", format!("172.29.{index}.0/24")),
                // All the load comes from one host address.
                ("TALLY_RATE_LIMIT", "0".to_owned()),
                ("TALLY_NEW_PAGES_PER_CLIENT", "0".to_owned()),
                ("TALLY_NEW_PAGES_PER_SITE", "0".to_owned()),
                ("TALLY_READ_RATE_LIMIT", "0".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let project = Project {
            name: format!("tally-{name}"),
            compose: setting("TALLY_COMPOSE"),
            workdir: PathBuf::from(REPO),
            files: vec![PathBuf::from(REPO).join("compose.yaml")],
            env,
            port,
            dir,
        };
        // Whatever an interrupted run of the same test left behind.
        let _ = project.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        project
    }

    /// A project in `workdir` from `files`, run by `compose`, publishing
    /// `port`.
    pub fn at(
        name: &str,
        compose: String,
        workdir: &Path,
        files: &[&str],
        port: u16,
        dir: OwnedDir,
    ) -> Project {
        let project = Project {
            name: name.to_owned(),
            compose,
            workdir: workdir.to_owned(),
            files: files.iter().map(|f| workdir.join(f)).collect(),
            env: BTreeMap::new(),
            port,
            dir,
        };
        let _ = project.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        project
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
    }

    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("secrets").join(name))
            .expect("read a secret")
            .trim()
            .to_owned()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose);
        cmd.current_dir(&self.workdir).arg("-p").arg(&self.name);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args).envs(&self.env);
        cmd
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    pub fn compose_ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    /// The service's containers, oldest first.
    pub fn containers(&self, service: &str) -> Vec<String> {
        let label = |k: &str, v: &str| format!("label=com.docker.compose.{k}={v}");
        let out = docker_ok(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &label("project", &self.name),
            "--filter",
            &label("service", service),
        ]);
        let mut ids: Vec<(String, String)> = out
            .lines()
            .map(|id| {
                let created = inspect(id)["Created"].as_str().unwrap_or("").to_owned();
                (created, id.to_owned())
            })
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub fn container(&self, service: &str) -> String {
        let ids = self.containers(service);
        assert_eq!(ids.len(), 1, "{service}: {ids:?}");
        ids[0].clone()
    }

    /// Every line the service's containers logged.
    pub fn logs(&self, service: &str) -> String {
        self.compose_ok(&["logs", "--no-color", "--no-log-prefix", service])
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
    }
}
