//! Child processes that never outlive the test process.
//!
//! Every child is forked from one dedicated thread that never exits and gets
//! `PR_SET_PDEATHSIG = SIGKILL`: the kernel ties that signal to the *thread*
//! that forked, so forking from short-lived test threads would kill servers
//! early. Each child also leads its own process group so that a server and
//! all of its workers can be signalled together.

// Raw signals and pre_exec need unsafe; it is confined to this file.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

type Job = (Command, Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Sender<Job>> = OnceLock::new();

fn spawner() -> &'static Sender<Job> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                // The static sender is never dropped, so this loop (and the
                // thread that PDEATHSIG is tied to) lives as long as the process.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the child-spawner thread");
        tx
    })
}

/// Runs in the forked child just before exec. Only async-signal-safe calls.
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only changes this process's flags.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The parent may have died between fork and prctl; then no signal comes.
    // SAFETY: getppid/raise are async-signal-safe and touch no Rust state.
    unsafe {
        if libc::getppid() != parent {
            libc::raise(libc::SIGKILL);
        }
    }
    Ok(())
}

/// Spawns `cmd` from one dedicated, never-exiting thread, with
/// `prctl(PR_SET_PDEATHSIG, SIGKILL)` set in `pre_exec` (std applies
/// `uid`/`gid` before `pre_exec` closures, and a uid change would clear the
/// flag), so a child never outlives the test process even when that process
/// is SIGKILLed. The child leads its own process group (`setpgid(0, 0)`).
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure only makes async-signal-safe libc calls.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .send((cmd, tx))
        .map_err(|_| io::Error::other("child-spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("child-spawner thread is gone"))?
}

/// Spawns `cmd` as the leader of a session of its own, to outlive this
/// process: no parent-death signal, no controlling terminal.
pub fn spawn_detached(mut cmd: Command) -> io::Result<Child> {
    // SAFETY: setsid is async-signal-safe and touches no Rust state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Send `sig` to one process. Ignores errors (the process may be gone).
pub fn signal(pid: u32, sig: i32) {
    // pid 0 would hit our own process group.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Send `sig` to every process in group `pgid`. Ignores errors.
pub fn signal_group(pgid: u32, sig: i32) {
    // 0 is our own group and 1 would become kill(-1): every process we may signal.
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether this process runs as root (PostgreSQL refuses to run as root).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One row of /proc: pid, parent pid, process group, state letter.
struct ProcEntry {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    state: char,
}

fn proc_table() -> Vec<ProcEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the parenthesised command name: state ppid pgrp ...
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            let pgrp = fields.next()?.parse().ok()?;
            Some(ProcEntry {
                pid,
                ppid,
                pgrp,
                state,
            })
        })
        .collect()
}

/// Zombies hold no resources, and PID 1 here need not reap the orphans.
fn is_live(entry: &ProcEntry) -> bool {
    entry.state != 'Z' && entry.state != 'X'
}

/// All live descendants of `root`, parents before children.
///
/// Needed because some servers move their workers out of the group:
/// PostgreSQL backends call setsid(), so SIGSTOP to the postmaster's group
/// alone would leave them answering queries.
pub fn descendants(root: u32) -> Vec<u32> {
    let table = proc_table();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            table
                .iter()
                .filter(|e| e.ppid == parent && is_live(e))
                .map(|e| e.pid),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// Send `sig` to `root`'s process group and to every descendant of `root`.
///
/// The group goes first, so a SIGSTOP stops the parent from forking more
/// children while the tree is being walked.
pub fn signal_tree(root: u32, sig: i32) {
    signal_group(root, sig);
    for pid in descendants(root) {
        signal(pid, sig);
    }
}

/// SIGKILL `child`, its process group and all its descendants, reap it, and
/// wait (up to 10 s) until every one of them is gone, so a restart finds no
/// leftovers (e.g. PostgreSQL shared memory still attached).
pub fn kill_tree_and_wait(child: &mut Child) {
    let root = child.id();
    let mut tree = Vec::new();
    // Once reaped, `root` may name an unrelated process: leave it alone.
    if matches!(child.try_wait(), Ok(None)) {
        // Stopped first so the tree can't grow while it is collected; once
        // the root dies its children are reparented and can't be found.
        signal_group(root, libc::SIGSTOP);
        tree = descendants(root);
        for &pid in &tree {
            signal(pid, libc::SIGKILL);
        }
        signal_group(root, libc::SIGKILL);
        let _ = child.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let table = proc_table();
        let live = |e: &&ProcEntry| is_live(e);
        let group_left = table.iter().filter(live).any(|e| e.pgrp == root);
        let tree_left = table.iter().filter(live).any(|e| tree.contains(&e.pid));
        if !group_left && !tree_left {
            return;
        }
        // A group with live members keeps its id, so this hits only it.
        if group_left {
            signal_group(root, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait up to `timeout` for `child` to exit; true when it did.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The process of a server the harness controls (PostgreSQL, Redis):
/// killed with everything it started, frozen and thawed as a tree.
#[derive(Debug, Default)]
pub struct ServerChild(Mutex<Option<Child>>);

/// A server whose handle is dropped is killed with everything it started
/// (NGINX's workers outlived a master killed by its parent-death signal,
/// holding their port), unless it was detached or taken out first.
impl Drop for ServerChild {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ServerChild {
    pub fn set(&mut self, child: Child) {
        *self.0.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
    }

    /// The process, taken out (for a shutdown that needs it by value).
    pub fn take(&mut self) -> Option<Child> {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// SIGKILL the process and its descendants, and wait for all of them.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.take() {
            kill_tree_and_wait(&mut child);
        }
    }

    /// Lets the process run on unwatched (it is no longer killed with this
    /// handle); returns its pid.
    pub fn detach(&mut self) -> u32 {
        self.take().expect("a running server").id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Signals the process and its descendants while it runs.
    pub fn signal_tree(&self, sig: i32) {
        let mut child = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                signal_tree(c.id(), sig);
            }
        }
    }

    /// Whether it is alive (a frozen one counts as running).
    pub fn is_running(&self) -> bool {
        let mut child = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}
