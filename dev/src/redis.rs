//! Throwaway Redis servers, one per test (or per `scripts/stack`), each
//! with its own port and dir; in plain text, or TLS only with an ACL user,
//! as managed Redis services are.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::spawner::ServerChild;
use crate::{LaunchError, ServerDir, launch_on_a_port, log_tail, spawner};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how a [`RedisServer`] runs, and what it does with its data.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// false: nothing survives a restart (no snapshots, no AOF, and any
    /// `dump.rdb` from an explicit SAVE is deleted before restarting).
    /// true: `dump.rdb` in [`RedisServer::dir`], written only by an explicit
    /// SAVE and loaded on restart.
    pub persist: bool,
    /// This port only (no retry on another); default: a free one.
    pub port: Option<u16>,
    /// This directory (created; kept when the server is dropped) instead of
    /// a temporary one.
    pub dir: Option<PathBuf>,
    /// Start the server in a session of its own, so that it outlives this
    /// process once [`RedisServer::detach`]ed.
    pub detached: bool,
    /// More `redis-server` options (`--name value`), after (and so over)
    /// the defaults.
    pub extra_args: Vec<String>,
    /// TLS only: the port speaks TLS and there is no plain-text port.
    pub tls: Option<RedisTls>,
    /// An ACL user with every permission; the default user is turned off,
    /// so every client must authenticate as this one.
    pub user: Option<RedisUser>,
}

/// The certificate a TLS-only [`RedisServer`] presents, and the CA that
/// signed it (which [`RedisServer::command`] trusts). The certificate must
/// name `localhost`, the name `command()` checks (so a test may leave out
/// `127.0.0.1` to see a client refuse it). Client certificates are not
/// asked for unless `extra_args` say `--tls-auth-clients yes`.
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// An ACL user: its name and password.
#[derive(Debug, Clone)]
pub struct RedisUser {
    pub name: String,
    pub password: String,
}

/// A Redis server on 127.0.0.1. Dropping it SIGKILLs its process group and
/// removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    persist: bool,
    detached: bool,
    extra_args: Vec<String>,
    tls: Option<RedisTls>,
    /// How [`RedisServer::command`] speaks TLS to it, when it does.
    tls_client: Option<Arc<rustls::ClientConfig>>,
    user: Option<RedisUser>,
    dir_path: PathBuf,
    log: PathBuf,
    // Behind a Mutex only so `is_running(&self)` can call `try_wait`.
    child: ServerChild,
    // Dropped after `Drop::drop` has killed the server.
    dir: ServerDir,
}

impl RedisServer {
    /// Start a non-persistent server and wait until PING answers PONG.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Start a server with `opts` and wait until PING answers PONG.
    pub fn start_with(opts: RedisOptions) -> RedisServer {
        let dir = ServerDir::new("tally-redis-", opts.dir);
        // Redis reports its dir canonicalised; compare like with like.
        let dir_path = dir.path().canonicalize().expect("canonicalize redis dir");
        let tls_client = opts.tls.as_ref().map(|tls| tls_client(&tls.ca));
        let mut server = RedisServer {
            port: 0,
            persist: opts.persist,
            detached: opts.detached,
            extra_args: opts.extra_args,
            tls: opts.tls,
            tls_client,
            user: opts.user,
            log: dir_path.join("redis.log"),
            dir_path,
            child: ServerChild::default(),
            dir,
        };
        launch_on_a_port("redis", opts.port, |port| {
            server.port = port;
            server.launch()
        });
        server
    }

    /// Let the server run on after this process: returns its pid. Only for
    /// a server started `detached` in a directory of the caller's.
    pub fn detach(mut self) -> u32 {
        assert!(
            self.detached && self.dir.is_kept(),
            "only a detached server in a kept directory can be left running"
        );
        self.child.detach()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` for a TLS-only server,
    /// with `USER:PASS@` when it has an ACL user.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{}:{}@", u.name, u.password))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}", self.port)
    }

    /// Its working dir (holds `dump.rdb` after a SAVE).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Send one command over RESP on a fresh connection (over TLS, and
    /// after `AUTH` as the ACL user, when the server has them).
    ///
    /// Strings come back as-is, integers in decimal, nil as `(nil)`, arrays
    /// as their rendered elements joined by `\n`; an error reply becomes
    /// `Err("ERR ...")`, as do I/O failures (with an `io:` prefix).
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let io = |e: std::io::Error| format!("io: {e}");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        match &self.tls_client {
            Some(config) => {
                let name = ServerName::try_from("localhost").expect("a DNS name");
                let tls = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| format!("tls: {e}"))?;
                self.exchange(rustls::StreamOwned::new(tls, stream), args)
            }
            None => self.exchange(stream, args),
        }
    }

    fn exchange(&self, stream: impl Read + Write, args: &[&str]) -> Result<String, String> {
        let io = |e: std::io::Error| format!("io: {e}");
        let mut reader = BufReader::new(stream);
        if let Some(user) = &self.user {
            let auth = encode_command(&["AUTH", &user.name, &user.password]);
            reader.get_mut().write_all(&auth).map_err(io)?;
            if let Reply::Error(msg) = read_reply(&mut reader).map_err(io)? {
                return Err(msg);
            }
        }
        reader
            .get_mut()
            .write_all(&encode_command(args))
            .map_err(io)?;
        reader.get_mut().flush().map_err(io)?;
        match read_reply(&mut reader).map_err(io)? {
            Reply::Error(msg) => Err(msg),
            reply => Ok(reply.render()),
        }
    }

    /// SIGKILL the process group and wait; the dir is kept.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Start again on the same port and dir; loads `dump.rdb` if persisting.
    pub fn restart(&mut self) {
        self.kill();
        if !self.persist {
            let _ = fs::remove_file(self.dir_path.join("dump.rdb"));
        }
        launch_on_a_port("redis", Some(self.port), |_| self.launch());
    }

    /// SIGSTOP the server and its children: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.child.signal_tree(libc::SIGSTOP);
    }

    /// SIGCONT the server and its children.
    pub fn thaw(&self) {
        self.child.signal_tree(libc::SIGCONT);
    }

    /// Whether the server process is alive (a frozen one counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// Signal the server's process tree, but only while it is unreaped, so
    /// a recycled pid is never hit.
    /// Spawn redis-server on `self.port` and wait until it answers.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open redis log");
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                cmd.arg("--port").arg(self.port.to_string());
            }
        }
        if let Some(user) = &self.user {
            // One word an argument: redis-server quotes an argument that
            // holds a space as one word of the directive.
            cmd.args(["--user", &user.name, "on"])
                .arg(format!(">{}", user.password))
                .args(["~*", "&*", "+@all", "--user", "default", "off"]);
        }
        cmd.args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir_path)
            // Snapshots only on an explicit SAVE; never an AOF.
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--logfile", ""])
            .args(&self.extra_args)
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        let child = if self.detached {
            spawner::spawn_detached(cmd)
        } else {
            spawner::spawn(cmd)
        };
        let child = child.expect("spawn redis-server (is it on PATH?)");
        self.child.set(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self.child.exited();
            if let Some(status) = exited {
                self.kill();
                let text = log_tail(&self.log, usize::MAX);
                let text = text.get(log_offset as usize..).unwrap_or(&text).to_owned();
                return Err(if text.contains("Address already in use") {
                    LaunchError::PortInUse
                } else {
                    LaunchError::Failed(format!("redis-server exited ({status}):\n{text}"))
                });
            }
            // The dir check proves the PONG came from *our* server, not
            // another one that took the port after we chose it.
            if self.command(&["PING"]).as_deref() == Ok("PONG") {
                let dir = self.command(&["CONFIG", "GET", "dir"]);
                let expected = format!("dir\n{}", self.dir_path.display());
                if dir.as_deref() == Ok(expected.as_str()) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(LaunchError::Failed(format!(
                    "no PONG after {READY_TIMEOUT:?}:\n{}",
                    log_tail(&self.log, 4000)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TLS client that trusts only the CA in `ca` (PEM), with ring as its
/// crypto provider.
fn tls_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the Redis CA file") {
        roots
            .add(cert.expect("parse the Redis CA file"))
            .expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

enum Reply {
    Text(String),
    Nil,
    Error(String),
    Array(Vec<Reply>),
}

impl Reply {
    fn render(&self) -> String {
        match self {
            Reply::Text(s) | Reply::Error(s) => s.clone(),
            Reply::Nil => "(nil)".to_owned(),
            Reply::Array(items) => items
                .iter()
                .map(Reply::render)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "truncated reply: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let len = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad length in {line:?}")))
    };
    match kind {
        "+" | ":" => Ok(Reply::Text(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        "$" => {
            let Ok(n) = usize::try_from(len()?) else {
                return Ok(Reply::Nil);
            };
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n);
            Ok(Reply::Text(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let Ok(n) = usize::try_from(len()?) else {
                return Ok(Reply::Nil);
            };
            (0..n)
                .map(|_| read_reply(r))
                .collect::<std::io::Result<_>>()
                .map(Reply::Array)
        }
        _ => Err(bad(format!("unknown reply type in {line:?}"))),
    }
}
