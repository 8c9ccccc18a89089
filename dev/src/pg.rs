//! Throwaway PostgreSQL servers, one per test (or per `scripts/stack`),
//! each with its own port and data directory.

use std::fs::{self, File, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::spawner::ServerChild;
use crate::{LaunchError, ServerDir, launch_on_a_port, log_tail, spawner, temp_base};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how a [`PgServer`] runs.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// This port only (no retry on another); default: a free one.
    pub port: Option<u16>,
    /// This directory (created; kept when the server is dropped) instead of
    /// a temporary one.
    pub dir: Option<PathBuf>,
    /// Start the server in a session of its own, so that it outlives this
    /// process once [`PgServer::detach`]ed.
    pub detached: bool,
    /// Serve TLS and admit TCP connections over TLS only (`hostssl`, no
    /// `host` line in pg_hba.conf).
    pub tls: Option<PgTls>,
    /// Log every connection and its TLS state (`log_connections`), so a
    /// test can read in [`PgServer::log`] who got in and how.
    pub log_connections: bool,
    /// Server settings (`name=value`, each given as `-c`), kept across
    /// restarts.
    pub settings: Vec<String>,
}

/// A [`PgServer`]'s TLS: its certificate and key (copied into the
/// server's directory, owned by the server's user, the key mode 0600),
/// the CA whose client certificates it accepts, and pg_hba.conf lines
/// that come before the `hostssl all all … trust` ones (to ask some users
/// for a client certificate, say).
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub hba_first: Vec<String>,
}

/// Where a TLS server's own copies of its files are.
#[derive(Debug)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The name a standby made by [`PgServer::start_standby`] streams under
/// (its `application_name`), for `synchronous_standby_names`.
pub const STANDBY_NAME: &str = "tally_standby";

/// Where a new server's data directory comes from.
enum Source<'a> {
    /// A copy of the cached `initdb` template.
    Template,
    /// A base backup of this primary (`pg_basebackup -R`): a standby.
    BaseBackup(&'a PgServer),
}

/// A PostgreSQL server on 127.0.0.1 with trust auth for user `postgres`.
///
/// Dropping it SIGKILLs the postmaster, its process group and all its
/// workers (which PostgreSQL moves into groups of their own), then removes
/// its directory.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    detached: bool,
    tls: Option<TlsFiles>,
    log_connections: bool,
    settings: Vec<String>,
    // Behind a Mutex only so `is_running(&self)` can call `try_wait`.
    child: ServerChild,
    // Dropped after `Drop::drop` has killed the server.
    dir: ServerDir,
}

impl PgServer {
    /// Start a server from the cached `initdb` template on a free port and
    /// wait until it answers queries.
    pub fn start() -> PgServer {
        PgServer::start_with(PgOptions::default())
    }

    /// Start a server from the cached `initdb` template as `opts` say and
    /// wait until it answers queries.
    pub fn start_with(opts: PgOptions) -> PgServer {
        PgServer::start_from(opts, Source::Template)
    }

    /// A primary that a standby can stream from: `wal_level=replica`, WAL
    /// senders, and replication connections from 127.0.0.1 allowed in
    /// `pg_hba.conf`.
    pub fn start_primary() -> PgServer {
        let server = PgServer::start_with(PgOptions {
            settings: vec![
                "wal_level=replica".into(),
                "max_wal_senders=10".into(),
                "wal_keep_size=256MB".into(),
            ],
            ..PgOptions::default()
        });
        fs::write(
            server.data.join("pg_hba.conf"),
            "local all all trust\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        server.psql("postgres", "SELECT pg_reload_conf()");
        server
    }

    /// A hot standby of `primary`, made with `pg_basebackup -R` into a
    /// directory and onto a port of its own, streaming as [`STANDBY_NAME`];
    /// it answers reads once it returns.
    pub fn start_standby(primary: &PgServer) -> PgServer {
        let conninfo = format!(
            "primary_conninfo=host=127.0.0.1 port={} user=postgres application_name={STANDBY_NAME}",
            primary.port
        );
        PgServer::start_from(
            PgOptions {
                settings: vec![conninfo, "hot_standby=on".into()],
                ..PgOptions::default()
            },
            Source::BaseBackup(primary),
        )
    }

    fn start_from(opts: PgOptions, source: Source<'_>) -> PgServer {
        let bin = pg_bin_dir();
        let run_as = server_user();

        let dir = ServerDir::new("tally-pg-", opts.dir);
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let log = dir.path().join("postgres.log");
        fs::create_dir(&sock).expect("create socket dir");
        give_to(run_as, dir.path());
        give_to(run_as, &sock);
        match source {
            Source::Template => {
                let template = ensure_template(&bin, run_as);
                let status = Command::new("cp")
                    .arg("-a")
                    .arg(&template)
                    .arg(&data)
                    .status()
                    .expect("run cp");
                assert!(
                    status.success(),
                    "cp -a {} failed: {status}",
                    template.display()
                );
            }
            Source::BaseBackup(primary) => base_backup(&bin, run_as, primary.port, &data),
        }

        let tls = opts
            .tls
            .as_ref()
            .map(|tls| install_tls(tls, dir.path(), &data, run_as));
        let mut server = PgServer {
            port: 0,
            bin,
            run_as,
            data,
            sock,
            log,
            detached: opts.detached,
            tls,
            log_connections: opts.log_connections,
            settings: opts.settings,
            child: ServerChild::default(),
            dir,
        };
        launch_on_a_port("postgres", opts.port, |port| {
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

    /// Make `user` (a superuser, password `password`) and its database
    /// `database`, then require passwords for every TCP connection, as a
    /// deployed server does; returns the URL `user` connects with. After
    /// this only the unix socket admits `psql` without a password.
    pub fn require_password(&self, user: &str, password: &str, database: &str) -> String {
        let literal = password.replace('\'', "''");
        self.psql(
            "postgres",
            &format!("CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{literal}'"),
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{database}\" OWNER \"{user}\""),
        );
        // A TLS server goes on taking TCP connections over TLS only.
        let host = if self.tls.is_some() {
            "hostssl"
        } else {
            "host"
        };
        fs::write(
            self.data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 {host} all all 127.0.0.1/32 scram-sha-256\n\
                 {host} all all ::1/128 scram-sha-256\n"
            ),
        )
        .expect("write pg_hba.conf");
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until TCP asks for a password.
        let reloaded = crate::wait_for(READY_TIMEOUT, Duration::from_millis(20), || {
            self.try_psql("postgres", "SELECT 1")
                .err()
                .filter(|e| e.contains("password"))
        });
        assert!(reloaded.is_some(), "pg_hba.conf reload not seen");
        let out = self
            .psql_command(database)
            .args([
                "-U",
                user,
                "-w",
                "-q",
                "-A",
                "-t",
                "-c",
                "SELECT current_user",
            ])
            .env("PGPASSWORD", password)
            .output()
            .expect("run psql");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            user,
            "{user} cannot log in with its password: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        log_tail(&self.log, usize::MAX)
    }

    /// Serve `cert` and `key` from now on (a TLS server only): new
    /// connections get them after the reload this asks for; open ones
    /// keep the old ones. Waits until the server has reloaded.
    pub fn replace_certificate(&self, cert: &Path, key: &Path) {
        let tls = self
            .tls
            .as_ref()
            .expect("only a TLS server has a certificate");
        copy_private(cert, &tls.cert, self.run_as);
        copy_private(key, &tls.key, self.run_as);
        let reloads = self.log().matches("reloading configuration files").count();
        self.psql("postgres", "SELECT pg_reload_conf()");
        let reloaded = crate::wait_for(READY_TIMEOUT, Duration::from_millis(20), || {
            (self.log().matches("reloading configuration files").count() > reloads).then_some(())
        });
        assert!(reloaded.is_some(), "the certificate reload was not seen");
    }

    /// Commits wait until the standby named [`STANDBY_NAME`] has flushed
    /// them (`synchronous_standby_names`); returns once it is the
    /// synchronous one.
    pub fn require_synchronous_standby(&self) {
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '\"{STANDBY_NAME}\"'"),
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        self.wait_for_standby("sync");
    }

    /// Returns once the standby named [`STANDBY_NAME`] streams from this
    /// server with this `sync_state` (`async` or `sync`).
    pub fn wait_for_standby(&self, sync_state: &str) {
        let query = format!(
            "SELECT sync_state FROM pg_stat_replication \
             WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
        );
        let seen = crate::wait_for(READY_TIMEOUT, Duration::from_millis(50), || {
            (self.try_psql("postgres", &query).ok()?.as_str() == sync_state).then_some(())
        });
        assert!(
            seen.is_some(),
            "{STANDBY_NAME} not streaming as {sync_state}: {:?}",
            self.try_psql("postgres", "SELECT * FROM pg_stat_replication")
        );
    }

    /// Promotes a standby to primary (`pg_promote()`) and returns once it
    /// takes writes.
    pub fn promote(&self) {
        assert_eq!(
            self.psql("postgres", "SELECT pg_promote(true, 30)"),
            "t",
            "promotion did not finish in 30 s"
        );
        assert_eq!(self.psql("postgres", "SELECT pg_is_in_recovery()"), "f");
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The data directory (kept across `kill`/`restart`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Create an empty database with a name unique across test processes;
    /// returns its url.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "t_{}_{}",
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Run a SQL file in `db`, stopping at the first error; panics with
    /// psql's stderr on failure.
    pub fn psql_file(&self, db: &str, file: &Path) {
        let out = self
            .psql_command(db)
            .arg("-q")
            .arg("-f")
            .arg(file)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -f {} failed ({}): {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run SQL in `db` with `psql -At -c`; returns trimmed stdout (rows,
    /// `|`-separated columns). Panics with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(err) => panic!("psql -c {sql:?} failed: {err}"),
        }
    }

    /// SIGKILL the postmaster and all its workers and wait; the data dir is kept.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Clean fast shutdown (SIGINT to the postmaster), then wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                spawner::signal(child.id(), libc::SIGINT);
                // A frozen server can't act on SIGINT until it is continued.
                spawner::signal_tree(child.id(), libc::SIGCONT);
                if !spawner::wait_timeout(&mut child, Duration::from_secs(30)) {
                    eprintln!("postgres ignored SIGINT for 30 s; killing it");
                }
            }
            // Also sweeps any worker that outlived the postmaster.
            spawner::kill_tree_and_wait(&mut child);
        }
    }

    /// Start again on the same port and data dir (after `kill` or `stop`)
    /// and wait until it answers queries.
    pub fn restart(&mut self) {
        self.kill();
        // Left behind by a SIGKILL; a reused pid in it could block startup.
        let _ = fs::remove_file(self.data.join("postmaster.pid"));
        let _ = fs::remove_file(self.sock.join(format!(".s.PGSQL.{}", self.port)));
        let _ = fs::remove_file(self.sock.join(format!(".s.PGSQL.{}.lock", self.port)));
        launch_on_a_port("postgres", Some(self.port), |_| self.launch());
    }

    /// SIGSTOP the postmaster and all its workers: connections stay open,
    /// nothing answers.
    pub fn freeze(&self) {
        self.child.signal_tree(libc::SIGSTOP);
    }

    /// SIGCONT the postmaster and all its workers.
    pub fn thaw(&self) {
        self.child.signal_tree(libc::SIGCONT);
    }

    /// Whether the postmaster is alive (a frozen one counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            // Never prompt for a password (on a terminal it would wait).
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(db)
        // Don't let the caller's environment pick other servers or options.
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .env_remove("PGSSLMODE")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
        cmd
    }

    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql_command(db)
            .args(["-q", "-A", "-t", "-c", sql])
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Signal the server's process tree, but only while it is unreaped, so
    /// a recycled pid is never hit.
    /// Spawn the postmaster on `self.port` and wait until it is ready.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open postgres log");
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.sock)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "fsync=on",
                // After a kill, recovery would fsync each file of the freshly
                // copied cluster one by one (seconds); one syncfs is as safe.
                "-c",
                "recovery_init_sync_method=syncfs",
            ])
            .args(self.tls_args())
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let child = if self.detached {
            spawner::spawn_detached(cmd)
        } else {
            spawner::spawn(cmd)
        };
        let child = child.expect("spawn postgres");
        self.child.set(child);

        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let expected_dir = self.data.to_string_lossy().into_owned();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self.child.exited();
            if let Some(status) = exited {
                self.kill();
                let text = self.log_since(log_offset);
                return Err(if text.contains("Address already in use") {
                    LaunchError::PortInUse
                } else {
                    LaunchError::Failed(format!("postgres exited ({status}):\n{text}"))
                });
            }
            // Checking data_directory proves the answer came from *our*
            // server, not another one that took the port after we chose it.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
                && self.try_psql("postgres", "SHOW data_directory").as_deref()
                    == Ok(expected_dir.as_str())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(LaunchError::Failed(format!(
                    "not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log_since(log_offset)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The settings that turn TLS and connection logging on.
    fn tls_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut set = |setting: String| args.extend(["-c".to_owned(), setting]);
        if self.log_connections {
            set("log_connections=on".into());
        }
        if let Some(tls) = &self.tls {
            set("ssl=on".into());
            set(format!("ssl_cert_file={}", tls.cert.display()));
            set(format!("ssl_key_file={}", tls.key.display()));
            if let Some(ca) = &tls.client_ca {
                set(format!("ssl_ca_file={}", ca.display()));
            }
        }
        args
    }

    fn log_since(&self, offset: u64) -> String {
        let all = log_tail(&self.log, usize::MAX);
        let start = usize::try_from(offset).unwrap_or(0).min(all.len());
        let text = all.get(start..).unwrap_or(&all);
        let keep = text.len().saturating_sub(4000);
        text.get(keep..).unwrap_or(text).to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `TALLY_TEST_PG_BIN`, else the highest `/usr/lib/postgresql/<n>/bin`.
fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TALLY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let versions = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL not found under /usr/lib/postgresql; set TALLY_TEST_PG_BIN");
    versions
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/postgres; set TALLY_TEST_PG_BIN")
}

/// Copies the server on `port` into `data` as a standby of it:
/// `pg_basebackup -R` writes `standby.signal` and how to reach the primary.
fn base_backup(bin: &Path, run_as: Option<(u32, u32)>, port: u16, data: &Path) {
    let mut cmd = Command::new(bin.join("pg_basebackup"));
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-w", "-R"])
        .args(["-X", "stream", "-c", "fast"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-D")
        .arg(data)
        .current_dir(data.parent().expect("a data dir has a parent"))
        .env("LC_ALL", "C");
    run_tool(cmd, run_as, "pg_basebackup");
}

/// Runs one of PostgreSQL's tools as `run_as` to its end; panics with what
/// it printed if it fails.
fn run_tool(mut cmd: Command, run_as: Option<(u32, u32)>, name: &str) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let out = spawner::spawn(cmd)
        .and_then(Child::wait_with_output)
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The uid/gid to run `initdb`/`postgres` as: they refuse to run as root,
/// so root hands them to the `postgres` system user.
fn server_user() -> Option<(u32, u32)> {
    if !spawner::is_root() {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let found = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[0] != "postgres" {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    });
    Some(found.expect("running as root but /etc/passwd has no usable `postgres` user"))
}

/// Copies the TLS files into `dir/tls` for the server's user and writes a
/// pg_hba.conf that admits TCP connections over TLS only.
fn install_tls(tls: &PgTls, dir: &Path, data: &Path, run_as: Option<(u32, u32)>) -> TlsFiles {
    let own = dir.join("tls");
    fs::create_dir(&own).expect("create the TLS dir");
    give_to(run_as, &own);
    let files = TlsFiles {
        cert: own.join("server.crt"),
        key: own.join("server.key"),
        client_ca: tls.client_ca.as_ref().map(|_| own.join("client-ca.crt")),
    };
    copy_private(&tls.cert, &files.cert, run_as);
    copy_private(&tls.key, &files.key, run_as);
    if let (Some(from), Some(to)) = (&tls.client_ca, &files.client_ca) {
        copy_private(from, to, run_as);
    }
    let mut hba = String::from("local all all trust\n");
    for line in &tls.hba_first {
        hba.push_str(line);
        hba.push('\n');
    }
    hba.push_str("hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n");
    let path = data.join("pg_hba.conf");
    fs::write(&path, hba).expect("write pg_hba.conf");
    give_to(run_as, &path);
    files
}

/// Copies a file for the server's user alone (mode 0600: PostgreSQL
/// refuses a key that others can read).
fn copy_private(from: &Path, to: &Path, run_as: Option<(u32, u32)>) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", to.display()));
    give_to(run_as, to);
}

fn give_to(run_as: Option<(u32, u32)>, path: &Path) {
    if let Some((uid, gid)) = run_as {
        chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Run `initdb` once per machine, PostgreSQL version and server user into a
/// template under the temp dir; returns the template data dir to copy.
///
/// An exclusive lock serialises parallel test processes, and the marker
/// file is written only after a complete initdb, so a crash mid-way leaves
/// the next caller to redo it.
fn ensure_template(bin: &Path, run_as: Option<(u32, u32)>) -> PathBuf {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {}/postgres --version: {e}", bin.display()));
    let version: String = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let uid = run_as.map_or_else(|| "self".to_owned(), |(uid, _)| uid.to_string());
    let base = temp_base().join(format!("tally-pgtemplate-{version}-u{uid}"));
    let data = base.join("data");
    let marker = base.join("complete");

    let lock = File::create(temp_base().join(format!("tally-pgtemplate-{version}-u{uid}.lock")))
        .expect("create template lock file");
    // The crate's declared MSRV predates File::lock; the toolchain here has it.
    #[allow(clippy::incompatible_msrv)]
    lock.lock().expect("lock template lock file");
    if marker.exists() {
        return data;
    }

    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&data).expect("create template dir");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod template dir");
    give_to(run_as, &data);
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
        .current_dir(&base)
        .env("LC_ALL", "C");
    run_tool(cmd, run_as, "initdb");
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .expect("write template marker");
    data
}
