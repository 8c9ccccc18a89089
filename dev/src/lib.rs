//! Throwaway PostgreSQL and Redis servers on loopback, each with its own
//! port and directory, and the process plumbing under them: the tests start
//! them through this library, `scripts/stack` through the `tally-dev`
//! binary.

pub mod pg;
pub mod redis;
pub mod spawner;
pub mod tls;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A currently free TCP port on 127.0.0.1 (bind :0, read, drop).
///
/// Another process may grab it before the caller binds it, so servers that
/// use it retry with a new port when the bind fails.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
        .port()
}

/// Parent directory for per-server temp dirs.
///
/// Canonical so paths reported back by servers compare equal, and short
/// because unix socket paths must stay under ~100 bytes.
pub fn temp_base() -> PathBuf {
    let base = std::env::temp_dir()
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("/tmp"));
    if base.as_os_str().len() > 48 {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// A per-server temp dir that is `flock`ed for as long as it lives.
///
/// A test process killed by a signal never runs `Drop`, so its dirs (a
/// PostgreSQL copy is ~40 MB) would pile up; the lock lets a later run tell
/// such an abandoned dir from one still in use, and sweep it.
#[derive(Debug)]
pub struct OwnedDir {
    dir: TempDir,
    // Closed after the dir is removed; close releases the lock.
    _owner: File,
}

const OWNER_FILE: &str = ".owner";

impl OwnedDir {
    /// Remove abandoned `<prefix>*` dirs, then create and lock a new one.
    pub fn new(prefix: &str) -> OwnedDir {
        sweep_abandoned(prefix);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(temp_base())
            .unwrap_or_else(|e| panic!("create {prefix}* temp dir: {e}"));
        let owner = File::create(dir.path().join(OWNER_FILE)).expect("create owner file");
        // The crate's declared MSRV predates File::lock; the toolchain here has it.
        #[allow(clippy::incompatible_msrv)]
        owner.lock().expect("lock owner file");
        OwnedDir { dir, _owner: owner }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A server's directory: a temporary [`OwnedDir`], removed with it, or one
/// the caller named, which stays.
#[derive(Debug)]
pub enum ServerDir {
    Temp(OwnedDir),
    Kept(PathBuf),
}

impl ServerDir {
    /// `dir` (created if missing), else a new temporary `<prefix>*` dir.
    pub fn new(prefix: &str, dir: Option<PathBuf>) -> ServerDir {
        match dir {
            None => ServerDir::Temp(OwnedDir::new(prefix)),
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
                ServerDir::Kept(dir)
            }
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            ServerDir::Temp(dir) => dir.path(),
            ServerDir::Kept(dir) => dir,
        }
    }

    pub fn is_kept(&self) -> bool {
        matches!(self, ServerDir::Kept(_))
    }
}

fn sweep_abandoned(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(temp_base()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        // Skip young dirs: their creator may not have taken the lock yet.
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        let Ok(owner) = File::open(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        #[allow(clippy::incompatible_msrv)]
        let unowned = owner.try_lock().is_ok();
        if old && unowned {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Poll `probe` every `step` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    step: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// The last `max` bytes of a log file, for panic messages.
pub fn log_tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Why one launch of a server did not come up.
pub(crate) enum LaunchError {
    /// Another process took the port first: try another.
    PortInUse,
    Failed(String),
}

/// Launches a server on `fixed` (once) or on free ports until one is not
/// taken meanwhile; returns the port it listens on. `launch` starts it on
/// the port given and waits until it answers.
pub(crate) fn launch_on_a_port(
    name: &str,
    fixed: Option<u16>,
    mut launch: impl FnMut(u16) -> Result<(), LaunchError>,
) -> u16 {
    const ATTEMPTS: usize = 8;
    let attempts = if fixed.is_some() { 1 } else { ATTEMPTS };
    for _ in 0..attempts {
        let port = fixed.unwrap_or_else(free_port);
        match launch(port) {
            Ok(()) => return port,
            Err(LaunchError::PortInUse) => continue,
            Err(LaunchError::Failed(why)) => panic!("{name} failed to start: {why}"),
        }
    }
    panic!("{name} found no free port in {attempts} attempts");
}
