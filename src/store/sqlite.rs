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
    Backend, Counted, Outcome, PageCount, PagePlan, Plan, Recorded, SITE_COLUMNS, SITE_COLUMNS_LEN,
    SiteHits, Store, StoreError, stored_page, stored_rules, stored_slug, stored_trailing_slash,
};
use crate::domain::page::OVERFLOW_PAGE;
use crate::domain::time::{Day, at, day_of, unix};
use crate::domain::{
    ImportEntry, Imported, MAX_COUNT, NewSite, Page, PageDump, PageList, PageSelector, PageSeries,
    PageStat, RulesPatch, SeriesData, Site, SiteDump, SiteId, SiteRules, Slug, TrailingSlash,
    Versioned, keeps_pages, set_count_split,
};
use crate::sync::lock;

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
    readers: Mutex<Vec<Connection>>,
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
                readers: Mutex::new(Vec::new()),
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
            let idle = lock(&inner.readers).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => connect(&inner.path, inner.busy_timeout).map_err(|e| {
                    rusqlite::Error::ToSqlConversionFailure(e.into_boxed_dyn_error())
                })?,
            };
            let out = f(&conn);
            let mut idle = lock(&inner.readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
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

    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        page_limit: i64,
        // A local file has no network to hang on; SQLite's own busy
        // timeout (the store timeout) bounds lock waits.
        _deadline: tokio::time::Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        let hits = hits.to_vec();
        let day = day_of(hour);
        let hour = unix_seconds(hour);
        let now = unix_seconds(SystemTime::now());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(hits.len());
            {
                let mut count = tx.prepare_cached(
                    "UPDATE visitors SET visitor_count = visitor_count + ?2 \
                     WHERE site_id = ?1 AND visitor_count + ?2 <= ?3 \
                     RETURNING visitor_count, generation",
                )?;
                let mut exists = tx.prepare_cached("SELECT 1 FROM visitors WHERE site_id = ?1")?;
                let mut bucket = tx.prepare_cached(
                    "INSERT INTO hits_hourly (site_id, hour, hits) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (site_id, hour) DO UPDATE SET hits = hits + excluded.hits",
                )?;
                let mut recorded = tx.prepare_cached(
                    "SELECT count, page_count, page_overflow FROM hit_requests \
                     WHERE site_id = ?1 AND request_id = ?2",
                )?;
                let mut record = tx.prepare_cached(
                    "INSERT INTO hit_requests \
                     (site_id, request_id, count, page_count, page_overflow, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for h in &hits {
                    let mut known = std::collections::HashMap::new();
                    for key in h.distinct_keys() {
                        if let Some(r) = recorded
                            .query_row(params![h.site, key], recorded_from_row)
                            .optional()?
                        {
                            known.insert(key.to_owned(), r);
                        }
                    }
                    let plan = h.plan(&|k| known.contains_key(k));
                    let Some(total) = count
                        .query_row(params![h.site, plan.fresh, MAX_COUNT], versioned)
                        .optional()?
                    else {
                        out.push(if exists.exists([h.site])? {
                            Outcome::AtLimit
                        } else {
                            Outcome::NoSite
                        });
                        continue;
                    };
                    if plan.fresh > 0 {
                        bucket.execute(params![h.site, hour, plan.fresh])?;
                    }
                    let counts = plan.counts(total.count, &|k| known.get(k).and_then(|r| r.count));
                    let page_counts = if h.has_pages() {
                        count_pages(&tx, h, &plan, page_limit, day, &|k| {
                            known.get(k).and_then(|r| r.page)
                        })?
                    } else {
                        vec![None; h.len()]
                    };
                    for (i, key) in plan.fresh_keyed(h) {
                        let page = page_counts[i];
                        record.execute(params![
                            h.site,
                            key,
                            counts[i],
                            page.map(|p| p.count),
                            page.map(|p| p.overflow),
                            now
                        ])?;
                    }
                    out.push(Outcome::Counted(Counted {
                        total,
                        counts,
                        page_counts,
                    }));
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError> {
        let before = unix_seconds(before);
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM hit_requests WHERE created_at < ?1", [before])?;
            Ok(n as u64)
        })
        .await
    }

    async fn site(&self, slug: &Slug) -> Result<Option<Site>, StoreError> {
        let slug = slug.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = ?1"
            ))?
            .query_row([slug], site_from_row)
            .optional()
        })
        .await
    }

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = ?1"
            ))?
            .query_row([id], site_from_row)
            .optional()
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors ORDER BY site_id"
            ))?
            .query_map([], site_from_row)?
            .collect()
        })
        .await
    }

    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError> {
        let new = new.clone();
        let created = self
            .write(move |conn| {
                conn.query_row(
                    &format!(
                        "INSERT INTO visitors (slug, site_name, visitor_count, base_count, created_at, \
                         keep_params, allowed_origins, is_public, require_origin, trailing_slash) \
                         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                         ON CONFLICT (slug) DO NOTHING RETURNING {SITE_COLUMNS}"
                    ),
                    params![
                        new.slug,
                        new.name,
                        new.count,
                        unix_seconds(SystemTime::now()),
                        SiteRules::join(&new.rules.keep_params),
                        SiteRules::join(&new.rules.origins),
                        new.rules.public,
                        new.rules.require_origin,
                        new.rules.trailing_slash.as_str(),
                    ],
                    site_from_row,
                )
                .optional()
            })
            .await?;
        created.ok_or(StoreError::Conflict)
    }

    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError> {
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM visitors WHERE site_id = ?1", [id])? > 0)
        })
        .await
    }

    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<Versioned>, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let set = set_count_in(&tx, id, count)?;
            tx.commit()?;
            Ok(set)
        })
        .await
    }

    async fn series(
        &self,
        slug: &Slug,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Option<SeriesData>, StoreError> {
        let slug = slug.clone();
        let (from, to) = (unix_seconds(from), unix_seconds(to));
        self.read(move |conn| {
            // One read transaction: both statements see the same snapshot.
            let tx = conn.unchecked_transaction()?;
            let head = tx
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS}, base_count + coalesce( \
                         (SELECT sum(h.hits) FROM hits_hourly h \
                          WHERE h.site_id = v.site_id AND h.hour < ?2), 0) \
                     FROM visitors v WHERE slug = ?1"
                ))?
                .query_row(params![slug, from], |r| {
                    Ok((site_from_row(r)?, r.get(SITE_COLUMNS_LEN)?))
                })
                .optional()?;
            let Some((site, before)) = head else {
                return Ok(None);
            };
            let buckets = tx
                .prepare_cached(
                    "SELECT hour, hits FROM hits_hourly \
                     WHERE site_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
                )?
                .query_map(params![site.id, from, to], bucket_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(SeriesData {
                site,
                before,
                buckets,
            }))
        })
        .await
    }

    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut sites = tx
                .prepare(&format!(
                    "SELECT {SITE_COLUMNS}, base_count FROM visitors ORDER BY site_id"
                ))?
                .query_map([], |r| {
                    Ok(SiteDump {
                        site: site_from_row(r)?,
                        base_count: r.get(SITE_COLUMNS_LEN)?,
                        buckets: Vec::new(),
                        pages: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt =
                tx.prepare("SELECT site_id, hour, hits FROM hits_hourly ORDER BY site_id, hour")?;
            let mut rows = stmt.query([])?;
            // Both lists are in site order: walk them side by side.
            let mut i = 0;
            while let Some(row) = rows.next()? {
                let id: SiteId = row.get(0)?;
                while sites.get(i).is_some_and(|d| d.site.id < id) {
                    i += 1;
                }
                if let Some(dump) = sites.get_mut(i).filter(|d| d.site.id == id) {
                    dump.buckets.push((at(row.get(1)?), row.get(2)?));
                }
            }
            let mut stmt = tx.prepare(
                "SELECT p.site_id, p.path, p.page_count, d.day, d.hits FROM pages p \
                 LEFT JOIN page_hits_daily d ON d.page_id = p.page_id \
                 ORDER BY p.site_id, p.path, d.day",
            )?;
            let mut rows = stmt.query([])?;
            let mut i = 0;
            while let Some(row) = rows.next()? {
                let id: SiteId = row.get(0)?;
                while sites.get(i).is_some_and(|d| d.site.id < id) {
                    i += 1;
                }
                let Some(dump) = sites.get_mut(i).filter(|d| d.site.id == id) else {
                    continue;
                };
                let page: Page = row.get(1)?;
                if dump.pages.last().is_none_or(|p| p.page != page) {
                    dump.pages.push(PageDump {
                        page,
                        count: row.get(2)?,
                        days: Vec::new(),
                    });
                }
                let day: Option<Day> = row.get(3)?;
                if let (Some(day), Some(last)) = (day, dump.pages.last_mut()) {
                    last.days.push((day, row.get(4)?));
                }
            }
            Ok(sites)
        })
        .await
    }

    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        let entries = entries.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut done = Vec::with_capacity(entries.len());
            let now = unix_seconds(SystemTime::now());
            for entry in &entries {
                let existing: Option<SiteId> = tx
                    .prepare_cached("SELECT site_id FROM visitors WHERE slug = ?1")?
                    .query_row([&entry.slug], |r| r.get(0))
                    .optional()?;
                let (id, generation) = match (existing, entry.replayed_base()) {
                    (Some(id), None) => {
                        let set = set_count_in(&tx, id, entry.count)?;
                        (id, set.map_or(0, |v| v.generation))
                    }
                    (Some(id), Some(base)) => {
                        tx.prepare_cached("DELETE FROM hits_hourly WHERE site_id = ?1")?
                            .execute([id])?;
                        tx.prepare_cached(
                            "UPDATE visitors SET visitor_count = ?2, base_count = ?3, \
                             generation = generation + 1 WHERE site_id = ?1 RETURNING generation",
                        )?
                        .query_row(params![id, entry.count, base], |r| Ok((id, r.get(0)?)))?
                    }
                    (None, base) => tx
                        .prepare_cached(
                            "INSERT INTO visitors \
                             (slug, site_name, visitor_count, base_count, created_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING site_id, generation",
                        )?
                        .query_row(
                            params![
                                entry.slug,
                                entry.name,
                                entry.count,
                                base.unwrap_or(entry.count),
                                entry.created_at.unwrap_or(now)
                            ],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?,
                };
                let mut bucket = tx.prepare_cached(
                    "INSERT INTO hits_hourly (site_id, hour, hits) VALUES (?1, ?2, ?3)",
                )?;
                for (hour, hits) in entry.hours.iter().flatten() {
                    bucket.execute(params![id, hour, hits])?;
                }
                match &entry.pages {
                    Some(pages) => replace_pages(&tx, id, pages)?,
                    // Replayed over a site that was there: set-count's rule
                    // did not run.
                    None if existing.is_some() && entry.hours.is_some() => {
                        let paged: i64 = tx
                            .prepare_cached(
                                "SELECT coalesce(sum(page_count), 0) FROM pages WHERE site_id = ?1",
                            )?
                            .query_row([id], |r| r.get(0))?;
                        if !keeps_pages(entry.count, paged, false) {
                            replace_pages(&tx, id, &[])?;
                        }
                    }
                    None => {}
                }
                done.push(Imported {
                    id,
                    slug: entry.slug.clone(),
                    count: entry.count,
                    generation,
                    created: existing.is_none(),
                });
            }
            tx.commit()?;
            Ok(done)
        })
        .await
    }

    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError> {
        let before = unix_seconds(before);
        self.write(move |conn| {
            // SQLite has one writer at a time, so one transaction for all
            // sites cannot deadlock with anything.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE visitors SET base_count = base_count + \
                     (SELECT sum(h.hits) FROM hits_hourly h \
                      WHERE h.site_id = visitors.site_id AND h.hour < ?1) \
                 WHERE site_id IN (SELECT site_id FROM hits_hourly WHERE hour < ?1)",
                [before],
            )?;
            let folded = tx.execute("DELETE FROM hits_hourly WHERE hour < ?1", [before])?;
            tx.execute(
                "DELETE FROM page_hits_daily WHERE day < ?1",
                [day_of(at(before))],
            )?;
            tx.commit()?;
            Ok(folded as u64)
        })
        .await
    }

    async fn pages(
        &self,
        slug: &Slug,
        from: Day,
        to: Day,
        limit: i64,
        offset: i64,
    ) -> Result<Option<PageList>, StoreError> {
        let slug = slug.clone();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let pages = tx
                .prepare_cached(
                    "SELECT p.path, p.page_count, coalesce(sum(d.hits), 0) AS range_hits \
                     FROM pages p LEFT JOIN page_hits_daily d \
                         ON d.page_id = p.page_id AND d.day >= ?2 AND d.day < ?3 \
                     WHERE p.site_id = ?1 GROUP BY p.page_id \
                     ORDER BY range_hits DESC, p.page_count DESC, p.path \
                     LIMIT ?4 OFFSET ?5",
                )?
                .query_map(params![site.id, from, to, limit + 1, offset], |r| {
                    Ok(PageStat {
                        page: r.get(0)?,
                        count: r.get(1)?,
                        hits: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(PageList::from_rows(site, pages, limit)))
        })
        .await
    }

    async fn delete_pages(
        &self,
        id: SiteId,
        which: &PageSelector,
    ) -> Result<Option<u64>, StoreError> {
        let which = which.clone();
        self.write(move |conn| {
            // The write lock, taken at BEGIN, is the site's lock here: no
            // hit commits between the choice of pages and the page total.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !tx
                .prepare_cached("SELECT 1 FROM visitors WHERE site_id = ?1")?
                .exists([id])?
            {
                return Ok(None);
            }
            let deleted: Vec<Page> = match &which {
                PageSelector::Named(page) => tx
                    .prepare_cached(
                        "DELETE FROM pages WHERE site_id = ?1 AND path = ?2 RETURNING path",
                    )?
                    .query_map(params![id, page], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                PageSelector::Prefix(prefix) => tx
                    .prepare_cached(
                        "DELETE FROM pages \
                         WHERE site_id = ?1 AND substr(path, 1, length(?2)) = ?2 RETURNING path",
                    )?
                    .query_map(params![id, &**prefix], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                PageSelector::FewerThan { hits, from, to } => tx
                    .prepare_cached(
                        "DELETE FROM pages WHERE page_id IN ( \
                             SELECT p.page_id FROM pages p LEFT JOIN page_hits_daily d \
                                 ON d.page_id = p.page_id AND d.day >= ?2 AND d.day < ?3 \
                             WHERE p.site_id = ?1 AND p.path <> ?5 GROUP BY p.page_id \
                             HAVING coalesce(sum(d.hits), 0) < ?4) \
                         RETURNING path",
                    )?
                    .query_map(params![id, from, to, hits, OVERFLOW_PAGE], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let named = deleted.iter().filter(|p| !p.is_overflow()).count() as i64;
            if named > 0 {
                tx.prepare_cached(
                    "UPDATE visitors SET page_total = page_total - ?2 WHERE site_id = ?1",
                )?
                .execute(params![id, named])?;
            }
            tx.commit()?;
            Ok(Some(deleted.len() as u64))
        })
        .await
    }

    async fn page_series(
        &self,
        slug: &Slug,
        page: &Page,
        from: Day,
        to: Day,
    ) -> Result<Option<PageSeries>, StoreError> {
        let (slug, page) = (slug.clone(), page.clone());
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT page_id, page_count FROM pages WHERE site_id = ?1 AND path = ?2",
                )?
                .query_row(params![site.id, page], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((page_id, count)) = row else {
                return Ok(Some(PageSeries {
                    site,
                    page,
                    before: 0,
                    days: Vec::new(),
                }));
            };
            let since: i64 = tx
                .prepare_cached(
                    "SELECT coalesce(sum(hits), 0) FROM page_hits_daily \
                     WHERE page_id = ?1 AND day >= ?2",
                )?
                .query_row(params![page_id, from], |r| r.get(0))?;
            let days = tx
                .prepare_cached(
                    "SELECT day, hits FROM page_hits_daily \
                     WHERE page_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day",
                )?
                .query_map(params![page_id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(PageSeries {
                site,
                page,
                before: count - since,
                days,
            }))
        })
        .await
    }

    async fn set_rules(&self, id: SiteId, patch: &RulesPatch) -> Result<Option<Site>, StoreError> {
        let keep = patch.keep_params.as_deref().map(SiteRules::join);
        let origins = patch.origins.as_deref().map(SiteRules::join);
        let (public, require) = (patch.public, patch.require_origin);
        let trailing = patch.trailing_slash.map(TrailingSlash::as_str);
        self.write(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE visitors SET keep_params = coalesce(?2, keep_params), \
                     allowed_origins = coalesce(?3, allowed_origins), \
                     is_public = coalesce(?4, is_public), \
                     require_origin = coalesce(?5, require_origin), \
                     trailing_slash = coalesce(?6, trailing_slash) \
                     WHERE site_id = ?1 RETURNING {SITE_COLUMNS}"
                ),
                params![id, keep, origins, public, require, trailing],
                site_from_row,
            )
            .optional()
        })
        .await
    }

    async fn revoke_session(&self, hash: &str, expires: SystemTime) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let (now, expires) = (unix_seconds(SystemTime::now()), unix_seconds(expires));
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM revoked_sessions WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "INSERT OR IGNORE INTO revoked_sessions (session_hash, expires_at) VALUES (?1, ?2)",
                params![hash, expires],
            )?;
            tx.commit()
        })
        .await
    }

    async fn session_revoked(&self, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM revoked_sessions WHERE session_hash = ?1")?
                .exists([hash])
        })
        .await
    }
}

/// Sets the count of a site, keeping `count = base + buckets`; `false` if
/// there is no such site. The caller holds SQLite's write lock.
fn set_count_in(
    tx: &rusqlite::Transaction<'_>,
    id: SiteId,
    count: i64,
) -> rusqlite::Result<Option<Versioned>> {
    let sums: Option<(i64, i64)> = tx
        .query_row(
            "SELECT (SELECT coalesce(sum(hits), 0) FROM hits_hourly WHERE site_id = ?1), \
                 (SELECT coalesce(sum(page_count), 0) FROM pages WHERE site_id = ?1) \
             FROM visitors WHERE site_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((bucketed, paged)) = sums else {
        return Ok(None);
    };
    // The counts recorded for retried requests are from before this count:
    // a retry after it is a new hit.
    tx.execute("DELETE FROM hit_requests WHERE site_id = ?1", [id])?;
    let set = set_count_split(count, bucketed);
    if set.drop_hours {
        tx.execute("DELETE FROM hits_hourly WHERE site_id = ?1", [id])?;
    }
    if !keeps_pages(count, paged, set.drop_hours) {
        replace_pages(tx, id, &[])?;
    }
    tx.query_row(
        "UPDATE visitors SET visitor_count = ?2, base_count = ?3, generation = generation + 1 \
         WHERE site_id = ?1 RETURNING visitor_count, generation",
        params![id, count, set.base],
        versioned,
    )
    .map(Some)
}

/// Counts a site's fresh hits on their pages (see [`PagePlan`]) and adds
/// them to the pages' buckets for `day`; returns each hit's page count.
/// The caller holds SQLite's write lock, so the page limit cannot be
/// passed by another writer between the read of `page_total` and the
/// insert.
fn count_pages(
    tx: &rusqlite::Transaction<'_>,
    hits: &SiteHits,
    plan: &Plan<'_>,
    page_limit: i64,
    day: Day,
    recorded: &dyn Fn(&str) -> Option<PageCount>,
) -> rusqlite::Result<Vec<Option<PageCount>>> {
    let pages_now: i64 = tx
        .prepare_cached("SELECT page_total FROM visitors WHERE site_id = ?1")?
        .query_row([hits.site], |r| r.get(0))?;
    let mut exists = tx.prepare_cached("SELECT 1 FROM pages WHERE site_id = ?1 AND path = ?2")?;
    let mut known = std::collections::HashSet::new();
    for name in PagePlan::names(hits) {
        if exists.exists(params![hits.site, name])? {
            known.insert(name);
        }
    }
    let pages = PagePlan::new(
        hits,
        plan,
        &|name| known.contains(name),
        (page_limit - pages_now).max(0),
    );
    let mut upsert = tx.prepare_cached(
        "INSERT INTO pages (site_id, path, page_count) VALUES (?1, ?2, ?3) \
         ON CONFLICT (site_id, path) DO UPDATE SET page_count = page_count + excluded.page_count \
         RETURNING page_id, page_count",
    )?;
    let mut bucket = tx.prepare_cached(
        "INSERT INTO page_hits_daily (page_id, day, hits) VALUES (?1, ?2, ?3) \
         ON CONFLICT (page_id, day) DO UPDATE SET hits = hits + excluded.hits",
    )?;
    let mut totals = Vec::with_capacity(pages.tallies.len());
    for (name, n) in &pages.tallies {
        let (page_id, total): (i64, i64) =
            upsert.query_row(params![hits.site, name, n], |r| Ok((r.get(0)?, r.get(1)?)))?;
        bucket.execute(params![page_id, day, n])?;
        totals.push(total);
    }
    if pages.created > 0 {
        tx.prepare_cached("UPDATE visitors SET page_total = page_total + ?2 WHERE site_id = ?1")?
            .execute(params![hits.site, pages.created])?;
    }
    Ok(pages.counts(plan, &totals, recorded))
}

/// Replaces a site's pages with `pages`. The caller holds the write lock.
fn replace_pages(
    tx: &rusqlite::Transaction<'_>,
    id: SiteId,
    pages: &[PageDump],
) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM pages WHERE site_id = ?1")?
        .execute([id])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO pages (site_id, path, page_count) VALUES (?1, ?2, ?3) RETURNING page_id",
    )?;
    let mut day =
        tx.prepare_cached("INSERT INTO page_hits_daily (page_id, day, hits) VALUES (?1, ?2, ?3)")?;
    for page in pages {
        let page_id: i64 = insert.query_row(params![id, page.page, page.count], |r| r.get(0))?;
        for (d, hits) in &page.days {
            day.execute(params![page_id, d, hits])?;
        }
    }
    let total = pages.iter().filter(|p| !p.page.is_overflow()).count() as i64;
    tx.prepare_cached("UPDATE visitors SET page_total = ?2 WHERE site_id = ?1")?
        .execute(params![id, total])?;
    Ok(())
}

/// The site with this slug, read in the caller's transaction.
fn site_by_slug(conn: &Connection, slug: &Slug) -> rusqlite::Result<Option<Site>> {
    conn.prepare_cached(&format!(
        "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = ?1"
    ))?
    .query_row([slug], site_from_row)
    .optional()
}

fn recorded_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Recorded> {
    let page_count: Option<i64> = row.get(1)?;
    let overflow: Option<bool> = row.get(2)?;
    Ok(Recorded {
        count: row.get(0)?,
        page: page_count.map(|count| PageCount {
            count,
            overflow: overflow.unwrap_or(false),
        }),
    })
}

fn bucket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(SystemTime, i64)> {
    Ok((at(row.get(0)?), row.get(1)?))
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
    Ok(Site {
        id: row.get(0)?,
        slug: row.get(1)?,
        name: row.get(2)?,
        count: row.get(3)?,
        generation: row.get(4)?,
        created_at: at(created),
        pages: row.get(6)?,
        rules: stored_rules(
            &keep_params,
            &origins,
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
