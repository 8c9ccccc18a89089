//! SQLite: the embedded default, one file in a data directory.
//!
//! WAL mode with `synchronous=FULL`: a commit returns only after the WAL is
//! fsynced, so an acknowledged hit survives a power loss, not just a crash.
//! SQLite allows one writer at a time, so all writes go through one
//! connection (behind a mutex that only the group-commit writer contends
//! for); reads use a small set of other connections, which WAL lets run
//! beside the writer.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::migrate::{CREATE_TABLE, Contracts, Migrated, Migration};
use super::{
    Backend, BreakdownRow, BreakdownStore, Counted, HitStore, Limits, Outcome, PageCount, PagePlan,
    PageStore, Plan, Recorded, SITE_COLUMNS, SITE_COLUMNS_LEN, SeriesStore, SessionStore, SiteHits,
    SiteStore, Store, StoreError, TransferStore, cap_values, stored_page, stored_rules,
    stored_slug, stored_trailing_slash, takes_room,
};
use crate::domain::breakdown::{self, Dimension};
use crate::domain::page::OVERFLOW_PAGE;
use crate::domain::time::{Day, at, day_of, unix};
use crate::domain::{
    BreakdownDump, BreakdownList, BreakdownQuery, ImportEntry, Imported, MAX_COUNT, Narrowed,
    NewSite, Page, PageDump, PageList, PageSelector, PageSeries, PageSlice, PageStat, RulesPatch,
    SeriesData, Site, SiteDump, SiteId, SiteRules, Slug, TrailingSlash, ValueDetail, Versioned,
    keeps_pages, set_count_split,
};
use crate::sync::lock;

mod breakdowns;
mod hits;
mod pages;
mod series;
mod sessions;
mod sites;
mod transfer;
use sites::set_count_in;
use transfer::replace_pages;

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    writer: Mutex<Connection>,
    readers: Idle<Connection>,
}

/// Read connections put back for reuse, at most `limit` of them: a burst of
/// reads opens as many as it needs, and all but `limit` close after it.
#[derive(Debug)]
struct Idle<T> {
    limit: usize,
    kept: Mutex<Vec<T>>,
}

impl<T> Idle<T> {
    fn new(limit: usize) -> Self {
        Idle {
            limit,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The connection put back last, if one is kept.
    fn take(&self) -> Option<T> {
        lock(&self.kept).pop()
    }

    /// Keeps `item` for the next read, or closes it (outside the lock)
    /// when `limit` are kept already.
    fn put_back(&self, item: T) {
        let surplus = {
            let mut kept = lock(&self.kept);
            if kept.len() < self.limit {
                kept.push(item);
                None
            } else {
                Some(item)
            }
        };
        drop(surplus);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory.
    pub fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        let writer = connect(path, busy_timeout)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                busy_timeout,
                writer: Mutex::new(writer),
                readers: Idle::new(MAX_IDLE_READERS),
            }),
        })
    }

    /// Runs `f` on the write connection: on this thread if it is a writer's
    /// own (see [`writes_inline`]), else on a blocking thread.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        if INLINE.get() {
            // A panic fails this commit, as it would on a blocking thread,
            // and leaves the writer to take the next one.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(&mut lock(&self.inner.writer))
            }));
            return result
                .map_err(|_| StoreError::Internal(anyhow!("SQLite write panicked")))?
                .map_err(sqlite_error);
        }
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer))).await;
        result
            .map_err(|e| StoreError::Internal(anyhow!("SQLite writer task failed: {e}")))?
            .map_err(sqlite_error)
    }

    /// Runs `f` on a read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.take() {
                Some(conn) => conn,
                // SQLite's own error keeps its code (a vanished file is
                // one that may pass, not a bug).
                None => connect(&inner.path, inner.busy_timeout).map_err(|e| {
                    e.downcast::<rusqlite::Error>().unwrap_or_else(|e| {
                        rusqlite::Error::ToSqlConversionFailure(e.into_boxed_dyn_error())
                    })
                })?,
            };
            let out = f(&conn);
            inner.readers.put_back(conn);
            out
        })
        .await;
        result
            .map_err(|e| StoreError::Internal(anyhow!("SQLite reader task failed: {e}")))?
            .map_err(sqlite_error)
    }
}

thread_local! {
    /// Whether SQLite writes may block this thread; see [`writes_inline`].
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a runtime's `block_on`, on a thread of its own) with SQLite
/// writes made on this thread rather than handed to a blocking thread and
/// back: for the group-commit writer, which has nothing else to do while
/// its commit waits for the disk, so that under load it goes from one
/// commit to the next with no thread hand-off or wake-up in between.
pub fn writes_inline<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            INLINE.set(self.0);
        }
    }
    let _reset = Reset(INLINE.replace(true));
    f()
}

fn connect(path: &Path, busy_timeout: Duration) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("opening SQLite database {}", path.display()))?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// One process owns the file (`serve` and `migrate` both claim it),
    /// so no older release can be using it: contract migrations run too.
    async fn migrate(
        &self,
        list: &[Migration],
        _contracts: Contracts,
    ) -> Result<Migrated, StoreError> {
        let list = list.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(CREATE_TABLE)?;
            let mut applied = Vec::new();
            for m in &list {
                let done: Option<i64> = tx
                    .query_row(
                        "SELECT version FROM tally_migrations WHERE version = ?1",
                        [m.version],
                        |r| r.get(0),
                    )
                    .optional()?;
                if done.is_none() {
                    tx.execute_batch(m.sql)?;
                    tx.execute(
                        "INSERT INTO tally_migrations (version, name) VALUES (?1, ?2)",
                        params![m.version, m.name],
                    )?;
                    applied.push(m.version);
                }
            }
            tx.commit()?;
            Ok(Migrated {
                applied,
                held: None,
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

/// The site with this slug, read in the caller's transaction.
fn site_by_slug(conn: &Connection, slug: &Slug) -> rusqlite::Result<Option<Site>> {
    conn.prepare_cached(&format!(
        "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = ?1"
    ))?
    .query_row([slug], site_from_row)
    .optional()
}

fn versioned(row: &rusqlite::Row<'_>) -> rusqlite::Result<Versioned> {
    Ok(Versioned {
        count: row.get(0)?,
        generation: row.get(1)?,
    })
}

fn site_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Site> {
    let created: i64 = row.get(5)?;
    let keep_params: String = row.get(7)?;
    let origins: String = row.get(8)?;
    let aliases: String = row.get(12)?;
    Ok(Site {
        id: row.get(0)?,
        slug: row.get(1)?,
        name: row.get(2)?,
        count: row.get(3)?,
        generation: row.get(4)?,
        created_at: at(created),
        pages: row.get(6)?,
        rules: stored_rules(
            (&keep_params, &origins, &aliases),
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
        ),
    })
}

/// Unix seconds as the tables hold them: instants before 1970 are 0.
fn unix_seconds(t: SystemTime) -> i64 {
    unix(t).max(0)
}

impl ToSql for Slug {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl ToSql for Page {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Page {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Page> {
        stored_page(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}

impl FromSql for TrailingSlash {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<TrailingSlash> {
        stored_trailing_slash(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}

impl FromSql for Slug {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Slug> {
        stored_slug(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}
/// Lock contention and I/O trouble (a full disk, a vanished file) may pass;
/// everything else is a bug.
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory,
        ) => StoreError::Unavailable(e.to_string()),
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::Internal(anyhow!(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_of_connections_is_kept_idle() {
        let idle = Idle::new(2);
        assert_eq!(idle.take(), None::<u8>);
        for conn in 1..=3 {
            idle.put_back(conn);
        }
        let taken: Vec<_> = std::iter::from_fn(|| idle.take()).collect();
        assert_eq!(taken, [2, 1]);
    }

    /// A store whose data directory is gone is not ready: the read that
    /// `ping` runs cannot open a connection.
    #[tokio::test]
    async fn ping_fails_once_the_data_directory_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = SqliteStore::open(&data.join("t.db"), Duration::from_secs(1)).unwrap();
        store.ping().await.unwrap();
        // The read connection `ping` opened is kept idle: drop it.
        while store.inner.readers.take().is_some() {}
        std::fs::remove_dir_all(&data).unwrap();
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn a_constraint_violation_is_a_conflict() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        let err = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(
            matches!(sqlite_error(err), StoreError::Conflict),
            "not a conflict"
        );
    }

    /// The thread a write ran on.
    async fn writer_thread_of(store: &SqliteStore) -> std::thread::ThreadId {
        store
            .write(|_| Ok(std::thread::current().id()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn writes_run_on_the_calling_thread_only_inside_writes_inline() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Duration::from_secs(1)).unwrap();
        let here = std::thread::current().id();
        assert_ne!(writer_thread_of(&store).await, here);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inside = {
            let store = store.clone();
            std::thread::spawn(move || {
                let own = std::thread::current().id();
                let ran = writes_inline(|| runtime.block_on(writer_thread_of(&store)));
                (own, ran, INLINE.get())
            })
            .join()
            .unwrap()
        };
        assert_eq!(
            inside.0, inside.1,
            "inside writes_inline, on its own thread"
        );
        assert!(!inside.2, "the mark is gone once writes_inline returns");
        assert_ne!(writer_thread_of(&store).await, here);
    }

    #[test]
    fn a_panic_in_an_inline_write_fails_that_write_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Duration::from_secs(1)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        writes_inline(|| {
            runtime.block_on(async {
                let failed = store.write(|_| -> rusqlite::Result<()> { panic!("bug") });
                assert!(matches!(failed.await, Err(StoreError::Internal(_))));
                let next =
                    store.write(|conn| conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)));
                assert_eq!(next.await.unwrap(), 1i64);
            })
        });
    }
}
