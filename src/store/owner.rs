//! One owning process per SQLite database.
//!
//! Each process keeps counts it committed in its in-process cache, so a
//! second process on the same file would serve counts that the first one
//! has since changed. The owner holds an exclusive advisory lock (`flock`)
//! on `<database>.lock` for as long as it runs; the kernel drops the lock
//! when the process dies, even by `kill -9`, so a restart after a crash
//! finds the database free. PostgreSQL needs no owner: every replica reads
//! the same rows, and the cache is shared through Redis.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use fs4::TryLockError;

/// The lock on one SQLite database, held until dropped.
#[derive(Debug)]
pub struct Owner {
    _file: File,
    path: PathBuf,
}

impl Owner {
    /// Locks `database`'s lock file, creating it (and its directory) if
    /// needed. Fails with a message naming the database if another
    /// process holds it.
    pub fn claim(database: &Path) -> anyhow::Result<Owner> {
        let path = lock_path(database);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        // Not truncated on open: until the lock is ours, the holder's pid
        // in it is what the refusal below reports.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        // Called through the trait: std's own `File::try_lock` is newer
        // than the crate's minimum Rust version.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(String::new, |pid| format!(" (pid {pid})"));
                bail!(
                    "the SQLite database {} is in use by another tally process{holder}, which \
                     holds {}; stop that process first, or give this one its own \
                     TALLY_DATABASE_URL",
                    database.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        // The pid is only for that message; the lock itself is the flock.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .with_context(|| format!("writing lock file {}", path.display()))?;
        Ok(Owner { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the database and its `-wal` and `-shm` files.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("tally.db");
        let first = Owner::claim(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("data").join("tally.db.lock"));
        let err = format!("{:#}", Owner::claim(&db).unwrap_err());
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(err.contains("another tally process"), "{err}");
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        Owner::claim(&db).unwrap();
    }
}
