//! PostgreSQL: a bounded connection pool, prepared statements, pipelining.
//!
//! Every operation runs under one deadline (`TALLY_STORE_TIMEOUT`) covering
//! both the wait for a connection and the work, so a blackholed server turns
//! into a prompt 503 rather than a hang. A connection whose work was cut off
//! is detached from the pool and closed: it may be mid-transaction, and the
//! server rolls back what it had not committed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio::time::{Instant, timeout_at};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

mod commit;
mod failover;
mod recent;

use failover::{CommitSent, Failure};

use super::migrate::{
    CREATE_TABLE, Contracts, Holder, MARK, Migrated, Migration, POSTGRES, application_name,
    contract_pending, plan, schema_version,
};
use super::pg_tls::{self, PgTls};
use super::{
    AsGiven, Backend, Grow, Outcome, PageCount, PagePlan, Plan, SITE_COLUMNS, SITE_COLUMNS_LEN,
    SiteHits, Store, StoreError, stored_page, stored_rules, stored_slug, stored_trailing_slash,
};
use crate::domain::page::OVERFLOW_PAGE;
use crate::domain::time::{Day, day_of};
use crate::domain::{
    ImportEntry, Imported, NewSite, Page, PageDump, PageList, PageSelector, PageSeries, PageStat,
    RulesPatch, SeriesData, Site, SiteDump, SiteId, SiteRules, Slug, TrailingSlash, Versioned,
    keeps_pages, set_count_split,
};

/// Deletes the `hit_batches` rows older than twice the id window (so
/// clocks that differ a little never drop a batch a replica still relies
/// on), and `hit_requests` rows (the release before's) older than `$1`.
const PURGE_IDS: &str = "\
WITH batches AS (
    DELETE FROM hit_batches WHERE created_at < now() - interval '2 minutes' RETURNING 1
), requests AS (
    DELETE FROM hit_requests WHERE created_at < $1 RETURNING 1
)
SELECT (SELECT count(*) FROM batches) + (SELECT count(*) FROM requests)";

/// Any constant will do; it only has to be the same in every replica.
const MIGRATION_LOCK: i64 = 0x7a11_7a11;

/// Counts `$3[i]` hits on page `$2[i]` of site `$1` (creating the pages
/// not there yet), adds them to the pages' buckets for day `$4`, and adds
/// `$5` new pages to the site's page total. Run only by the holder of the
/// site's row lock, who has read which pages exist and how many.
const COUNT_PAGES: &str = "\
WITH up AS (
    INSERT INTO pages (site_id, path, page_count)
    SELECT $1::bigint, u.path, u.n FROM unnest($2::text[], $3::bigint[]) AS u(path, n)
    ON CONFLICT (site_id, path) DO UPDATE SET page_count = pages.page_count + EXCLUDED.page_count
    RETURNING page_id, path, page_count
), bucket AS (
    INSERT INTO page_hits_daily (page_id, day, hits)
    SELECT up.page_id, $4::bigint, u.n
    FROM up JOIN unnest($2::text[], $3::bigint[]) AS u(path, n) ON u.path = up.path
    ON CONFLICT (page_id, day) DO UPDATE SET hits = page_hits_daily.hits + EXCLUDED.hits
), total AS (
    UPDATE visitors SET page_total = page_total + $5::bigint
    WHERE site_id = $1::bigint AND $5::bigint > 0
)
SELECT path, page_count FROM up";

/// A site's pages ranked by their hits in the days `[$2, $3)`.
const PAGES: &str = "\
SELECT p.path, p.page_count, coalesce(sum(d.hits), 0)::bigint AS range_hits
FROM pages p
LEFT JOIN page_hits_daily d ON d.page_id = p.page_id AND d.day >= $2 AND d.day < $3
WHERE p.site_id = $1
GROUP BY p.page_id
ORDER BY range_hits DESC, p.page_count DESC, p.path COLLATE \"C\"
LIMIT $4 OFFSET $5";

/// Deletes page `$2` of site `$1`.
const DELETE_PAGE: &str = "DELETE FROM pages WHERE site_id = $1 AND path = $2 RETURNING path";

/// Deletes the pages of site `$1` whose names start with `$2`.
const DELETE_PREFIX: &str =
    "DELETE FROM pages WHERE site_id = $1 AND starts_with(path, $2) RETURNING path";

/// Deletes the pages of site `$1` but `$5` (the overflow page) with fewer
/// than `$4` hits in the days `[$2, $3)`.
const DELETE_FEWER: &str = "\
DELETE FROM pages WHERE page_id IN (
    SELECT p.page_id FROM pages p
    LEFT JOIN page_hits_daily d ON d.page_id = p.page_id AND d.day >= $2::bigint
        AND d.day < $3::bigint
    WHERE p.site_id = $1::bigint AND p.path <> $5::text
    GROUP BY p.page_id
    HAVING coalesce(sum(d.hits), 0) < $4::bigint
)
RETURNING path";

/// One page's count, its hits since day `$3`, and its days in `[$3, $4)`.
const PAGE_SERIES: &str = "\
SELECT p.page_count,
    coalesce((SELECT sum(d.hits) FROM page_hits_daily d WHERE d.page_id = p.page_id AND d.day >= $3), 0)::bigint,
    coalesce(b.days, '{}'), coalesce(b.hits, '{}')
FROM pages p
LEFT JOIN LATERAL (
    SELECT array_agg(d.day ORDER BY d.day) AS days, array_agg(d.hits ORDER BY d.day) AS hits
    FROM page_hits_daily d WHERE d.page_id = p.page_id AND d.day >= $3 AND d.day < $4
) b ON true
WHERE p.site_id = $1 AND p.path = $2";

/// Every page, by name in byte order (as SQLite orders them), whatever
/// the database's collation: one export order for both stores.
const DUMP_PAGES: &str = "\
SELECT p.site_id, p.path, p.page_count, coalesce(b.days, '{}'), coalesce(b.hits, '{}')
FROM pages p
LEFT JOIN LATERAL (
    SELECT array_agg(d.day ORDER BY d.day) AS days, array_agg(d.hits ORDER BY d.day) AS hits
    FROM page_hits_daily d WHERE d.page_id = p.page_id
) b ON true
ORDER BY p.site_id, p.path COLLATE \"C\"";

/// Creates pages `$2[i]` of sites `$1[i]` with counts `$3[i]`.
const IMPORT_PAGES: &str = "\
INSERT INTO pages (site_id, path, page_count)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
RETURNING page_id, site_id, path";

const IMPORT_PAGE_DAYS: &str = "\
INSERT INTO page_hits_daily (page_id, day, hits)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])";

/// Sets the page total `$2[i]` of site `$1[i]`.
const IMPORT_PAGE_TOTALS: &str = "\
UPDATE visitors v SET page_total = u.total
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, total) WHERE v.site_id = u.id";

/// One statement, so one snapshot: the site, the hits before `$2`, and the
/// buckets in `[$2, $3)` as two parallel arrays.
const SERIES: &str = "\
SELECT v.site_id, v.slug, v.site_name, v.visitor_count, v.generation, v.created_at,
    v.page_total, v.keep_params, v.allowed_origins, v.is_public, v.require_origin,
    v.trailing_slash,
    v.base_count + coalesce(
        (SELECT sum(h.hits) FROM hits_hourly h WHERE h.site_id = v.site_id AND h.hour < $2),
        0)::bigint,
    coalesce(b.hours, '{}'), coalesce(b.hits, '{}')
FROM visitors v
LEFT JOIN LATERAL (
    SELECT array_agg(h.hour ORDER BY h.hour) AS hours, array_agg(h.hits ORDER BY h.hour) AS hits
    FROM hits_hourly h
    WHERE h.site_id = v.site_id AND h.hour >= $2 AND h.hour < $3
) b ON true
WHERE v.slug = $1";

const DUMP: &str = "\
SELECT v.site_id, v.slug, v.site_name, v.visitor_count, v.generation, v.created_at,
    v.page_total, v.keep_params, v.allowed_origins, v.is_public, v.require_origin,
    v.trailing_slash, v.base_count,
    coalesce(b.hours, '{}'), coalesce(b.hits, '{}')
FROM visitors v
LEFT JOIN LATERAL (
    SELECT array_agg(h.hour ORDER BY h.hour) AS hours, array_agg(h.hits ORDER BY h.hour) AS hits
    FROM hits_hourly h
    WHERE h.site_id = v.site_id
) b ON true
ORDER BY v.site_id";

// The import's statements join an unnested array rather than test
// `= ANY(array)`: with the statistics of a table that the import itself is
// filling, the planner may scan it, and `ANY` then compares every row with
// every element.
const IMPORT_LOCK: &str = "\
SELECT v.site_id, v.slug FROM visitors v JOIN unnest($1::text[]) AS u(slug) ON v.slug = u.slug
ORDER BY v.site_id FOR UPDATE OF v";

const IMPORT_BUCKETED: &str = "\
SELECT h.site_id, sum(h.hits)::bigint
FROM hits_hourly h JOIN unnest($1::bigint[]) AS u(id) ON h.site_id = u.id
GROUP BY h.site_id";

const IMPORT_PAGED: &str = "\
SELECT p.site_id, sum(p.page_count)::bigint
FROM pages p JOIN unnest($1::bigint[]) AS u(id) ON p.site_id = u.id
GROUP BY p.site_id";

const IMPORT_CLEAR: &str = "\
DELETE FROM hits_hourly h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";

/// Sets count `$2[i]` and base `$3[i]` of site `$1[i]`, a new generation each.
const IMPORT_SET: &str = "\
UPDATE visitors v SET visitor_count = u.count, base_count = u.base, generation = v.generation + 1
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, count, base)
WHERE v.site_id = u.id
RETURNING v.site_id, v.generation";

/// The request ids recorded for the sites `$1`, which an import sets anew.
const IMPORT_FORGET_BATCHES: &str = "\
DELETE FROM hit_batches h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";
const IMPORT_FORGET_REQUESTS: &str = "\
DELETE FROM hit_requests h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";

/// How many times an import runs when a site it creates is created
/// meanwhile by another request.
const IMPORT_TRIES: u32 = 3;

/// Creates sites in the document's order, so ids (and so an export's
/// order) follow it.
const IMPORT_CREATE: &str = "\
INSERT INTO visitors (slug, site_name, visitor_count, base_count, created_at)
SELECT slug, name, count, base, coalesce(created, now())
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[])
    WITH ORDINALITY AS u(slug, name, count, base, created, i)
ORDER BY i
RETURNING site_id, slug, generation";

const IMPORT_HOURS: &str = "\
INSERT INTO hits_hourly (site_id, hour, hits)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[])";

/// Folds one site's old buckets into its base count in one statement.
const FOLD: &str = "\
WITH old AS (
    DELETE FROM hits_hourly WHERE site_id = $1 AND hour < $2 RETURNING hits
), folded AS (
    SELECT count(*) AS buckets, coalesce(sum(hits), 0)::bigint AS hits FROM old
)
UPDATE visitors SET base_count = base_count + folded.hits
FROM folded
WHERE site_id = $1
RETURNING folded.buckets";

#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    timeout: Duration,
    tls: PgTls,
    /// When a refused connection was last logged: once per
    /// [`REFUSAL_LOG_EVERY`], not once per request.
    refusal_logged: Mutex<Option<Instant>>,
    /// The request ids this replica's sites recorded lately.
    recent: recent::Recent,
}

/// How often a connection that the TLS settings make fail is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl PgStore {
    /// One try of [`Store::import`], in one transaction.
    async fn import_once(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        // A few set-wide statements per batch, not a few per site: a batch
        // of hundreds of sites is a handful of round trips.
        self.run(async |client| {
            let tx = client.transaction().await?;
            let slugs: Vec<&str> = entries.iter().map(|e| e.slug.as_str()).collect();
            // Locked in id order, the order the hit writer locks them in.
            let existing: HashMap<String, SiteId> = tx
                .query(IMPORT_LOCK, &[&slugs])
                .await?
                .into_iter()
                .map(|r| (r.get(1), r.get(0)))
                .collect();
            let ids: Vec<SiteId> = existing.values().copied().collect();
            let bucketed: HashMap<SiteId, i64> = tx
                .query(IMPORT_BUCKETED, &[&ids])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let paged: HashMap<SiteId, i64> = tx
                .query(IMPORT_PAGED, &[&ids])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let (mut set_ids, mut set_counts, mut set_bases) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cleared, mut new) = (Vec::new(), Vec::new());
            // Sites whose pages go, though their entries carry none.
            let mut unpaged = HashSet::new();
            for entry in entries {
                let Some(&id) = existing.get(entry.slug.as_str()) else {
                    new.push(entry);
                    continue;
                };
                let had = bucketed.get(&id).copied().unwrap_or(0);
                // As set-count, unless a replay replaces the buckets.
                let set = set_count_split(entry.count, had);
                let base = entry.replayed_base().unwrap_or(set.base);
                let drop_hours = entry.hours.is_none() && set.drop_hours;
                if entry.hours.is_some() || set.drop_hours {
                    cleared.push(id);
                }
                let paged = paged.get(&id).copied().unwrap_or(0);
                if entry.pages.is_none() && !keeps_pages(entry.count, paged, drop_hours) {
                    unpaged.insert(id);
                }
                set_ids.push(id);
                set_counts.push(entry.count);
                set_bases.push(base);
            }
            tx.execute(IMPORT_CLEAR, &[&cleared]).await?;
            let mut generations: HashMap<SiteId, i64> = tx
                .query(IMPORT_SET, &[&set_ids, &set_counts, &set_bases])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // As after a set-count, the ids recorded for these sites are
            // from before their new count: a retry after the import is a
            // new hit.
            tx.execute(IMPORT_FORGET_BATCHES, &[&set_ids]).await?;
            tx.execute(IMPORT_FORGET_REQUESTS, &[&set_ids]).await?;
            let new_slugs: Vec<&str> = new.iter().map(|e| e.slug.as_str()).collect();
            let new_names: Vec<&str> = new.iter().map(|e| e.name.as_str()).collect();
            let new_counts: Vec<i64> = new.iter().map(|e| e.count).collect();
            let new_bases: Vec<i64> = new
                .iter()
                .map(|e| e.replayed_base().unwrap_or(e.count))
                .collect();
            let new_created: Vec<Option<SystemTime>> = new
                .iter()
                .map(|e| e.created_at.map(crate::domain::time::at))
                .collect();
            let mut created: HashMap<String, SiteId> = HashMap::new();
            for row in tx
                .query(
                    IMPORT_CREATE,
                    &[
                        &new_slugs,
                        &new_names,
                        &new_counts,
                        &new_bases,
                        &new_created,
                    ],
                )
                .await?
            {
                generations.insert(row.get(0), row.get(2));
                created.insert(row.get(1), row.get(0));
            }
            let id_of = |slug: &str| existing.get(slug).or_else(|| created.get(slug)).copied();
            let (mut hour_sites, mut hours, mut hits) = (Vec::new(), Vec::new(), Vec::new());
            let mut done = Vec::with_capacity(entries.len());
            for entry in entries {
                let id = id_of(&entry.slug).unwrap_or_default();
                for &(hour, n) in entry.hours.iter().flatten() {
                    hour_sites.push(id);
                    hours.push(crate::domain::time::at(hour));
                    hits.push(n);
                }
                done.push(Imported {
                    id,
                    slug: entry.slug.clone(),
                    count: entry.count,
                    generation: generations.get(&id).copied().unwrap_or_default(),
                    created: !existing.contains_key(entry.slug.as_str()),
                });
            }
            if !created.is_empty() && !hours.is_empty() {
                // The foreign key check of each hour row runs a plan cached
                // when `visitors` was small: a scan, quadratic over a large
                // import (5 s instead of 0.7 s for 10 000 new sites). Fresh
                // statistics replan it. Without the right to analyze, this
                // is a warning, not an error.
                tx.batch_execute("ANALYZE visitors").await?;
            }
            tx.execute(IMPORT_HOURS, &[&hour_sites, &hours, &hits])
                .await?;
            import_pages(&tx, entries, &done, &unpaged).await?;
            tx.commit().await?;
            for id in &set_ids {
                self.recent.forget(*id);
            }
            Ok(done)
        })
        .await
    }

    /// Configures the pool; no connection is made until first use.
    /// Reads the TLS files now: one that cannot be used is a setting to fix.
    pub fn new(url: &str, pool_size: u32, timeout: Duration) -> anyhow::Result<Self> {
        let pg_tls::Split { rest, tls } = pg_tls::split(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| anyhow!("invalid PostgreSQL URL: {e}"))?;
        let connector = tls.connector()?;
        tracing::info!(sslmode = %tls.mode, "PostgreSQL connections: {}", tls.describe());
        config
            .ssl_mode(tls.negotiation())
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        // Every session says which schema this binary is built for, so
        // that a contract migration can wait for older releases to go.
        let name = application_name(config.get_application_name(), schema_version(POSTGRES));
        config.application_name(&name);
        if failover::prefer_writable(&mut config, url) {
            tracing::info!(
                "several PostgreSQL hosts and no target_session_attrs: connecting only to one \
                 that takes writes (target_session_attrs=read-write)"
            );
        }
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .context("building the PostgreSQL pool")?;
        Ok(PgStore {
            pool,
            timeout,
            tls,
            refusal_logged: Mutex::new(None),
            recent: recent::Recent::default(),
        })
    }

    /// Runs `work` on a pooled connection under the store deadline.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
    {
        self.run_until(Instant::now() + self.timeout, work).await
    }

    async fn run_until<T, F>(&self, deadline: Instant, work: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
    {
        self.run_tracked(deadline, async |client, _| work(client).await)
            .await
    }

    /// As [`PgStore::run_until`], for a write that marks when its commit is
    /// in flight: a connection lost then leaves the outcome unknown
    /// ([`StoreError::OutcomeUnknown`]), not "nothing was written".
    async fn run_tracked<T, F>(&self, deadline: Instant, work: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Object, &CommitSent) -> Result<T, tokio_postgres::Error>,
    {
        let sent = CommitSent::default();
        let mut client = match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(self.pool_error(e)),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "timed out waiting for a connection".into(),
                ));
            }
        };
        let outcome = timeout_at(deadline, work(&mut client, &sent)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if client.is_closed() || Failure::of(&e).drops_connection() {
                    drop(Object::take(client));
                }
                Err(failover::classify(e, sent.in_flight()))
            }
            Err(_) => {
                drop(Object::take(client));
                Err(if sent.in_flight() {
                    StoreError::OutcomeUnknown("timed out waiting for the commit's answer".into())
                } else {
                    StoreError::Unavailable("timed out".into())
                })
            }
        }
    }
}

/// Sessions on this database, other than this one, whose
/// `application_name` is tally's: plain `tally` (a release from before
/// schema announcements) or one carrying the mark. [`Holder::holds_back`]
/// then says which are older than a migration.
const TALLY_SESSIONS: &str = "\
SELECT pid, host(client_addr), client_port, application_name, backend_start
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
    AND (application_name = 'tally' OR strpos(application_name, $1) > 0)
ORDER BY backend_start, pid";

/// The sessions of other tally releases that use this database.
async fn older_sessions(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<Holder>, tokio_postgres::Error> {
    let rows = tx.query(TALLY_SESSIONS, &[&MARK]).await?;
    let mut holders = Vec::new();
    for row in rows {
        let name: String = row.get(3);
        let Some(announced) = super::migrate::announced(&name) else {
            continue;
        };
        let host: Option<String> = row.get(1);
        let port: Option<i32> = row.get(2);
        let address = match (host, port) {
            (Some(host), Some(port)) if port > 0 => Some(format!("{host}:{port}")),
            (Some(host), _) => Some(host),
            // A unix-socket session shows port -1 and no address.
            (None, Some(-1)) => Some("local socket".to_owned()),
            (None, _) => None,
        };
        let since: Option<SystemTime> = row.get(4);
        holders.push(Holder {
            pid: row.get(0),
            address,
            application_name: name,
            schema: match announced {
                super::migrate::Announced::Unmarked => None,
                super::migrate::Announced::Schema(v) => Some(v),
            },
            since: since.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        });
    }
    Ok(holders)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(
        &self,
        list: &[Migration],
        contracts: Contracts,
    ) -> Result<Migrated, StoreError> {
        // Migrations may legitimately take longer than one request.
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
        self.run_until(deadline, async |client| {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(CREATE_TABLE).await?;
            let done: HashSet<i64> = tx
                .query("SELECT version FROM tally_migrations", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Looked at under the lock, in the transaction that applies.
            let holders = if contracts == Contracts::WhenSafe && contract_pending(list, &done) {
                older_sessions(&tx).await?
            } else {
                Vec::new()
            };
            let (apply, held) = plan(list, &done, contracts, &holders);
            let mut applied = Vec::new();
            for m in apply {
                tx.batch_execute(m.sql).await?;
                tx.execute(
                    "INSERT INTO tally_migrations (version, name) VALUES ($1, $2)",
                    &[&m.version, &m.name],
                )
                .await?;
                applied.push(m.version);
            }
            tx.commit().await?;
            Ok(Migrated { applied, held })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(async |client| client.simple_query("SELECT 1").await.map(drop))
            .await
    }

    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        page_limit: i64,
        deadline: Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut hits = hits.to_vec();
        self.add_hits_growing(hour, &mut hits, page_limit, deadline, &mut AsGiven)
            .await
    }

    async fn add_hits_growing(
        &self,
        hour: SystemTime,
        hits: &mut [SiteHits],
        page_limit: i64,
        deadline: Instant,
        more: &mut (dyn Grow + Send),
    ) -> Result<Vec<Outcome>, StoreError> {
        self.run_tracked(deadline, async |client, sent| {
            commit::commit(client, sent, &self.recent, hour, hits, page_limit, more).await
        })
        .await
    }

    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError> {
        self.run(async |client| {
            let row = client.query_one(PURGE_IDS, &[&before]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .await
    }

    async fn site(&self, slug: &Slug) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = $1"
                ))
                .await?;
            client
                .query_opt(&stmt, &[&slug.as_str()])
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = $1"
                ))
                .await?;
            client
                .query_opt(&stmt, &[&id])
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.run(async |client| {
            let rows = client
                .query(
                    &format!("SELECT {SITE_COLUMNS} FROM visitors ORDER BY site_id"),
                    &[],
                )
                .await?;
            rows.into_iter().map(site_from_row).collect()
        })
        .await
    }

    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError> {
        let row = self
            .run(async |client| {
                client
                    .query_opt(
                        &format!(
                            "INSERT INTO visitors (slug, site_name, visitor_count, base_count, \
                             keep_params, allowed_origins, is_public, require_origin, \
                             trailing_slash) \
                             VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (slug) DO NOTHING RETURNING {SITE_COLUMNS}"
                        ),
                        &[
                            &new.slug.as_str(),
                            &new.name,
                            &new.count,
                            &SiteRules::join(&new.rules.keep_params),
                            &SiteRules::join(&new.rules.origins),
                            &new.rules.public,
                            &new.rules.require_origin,
                            &new.rules.trailing_slash.as_str(),
                        ],
                    )
                    .await
            })
            .await?;
        match row {
            Some(row) => site_from_row(row).map_err(pg_error),
            None => Err(StoreError::Conflict),
        }
    }

    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError> {
        self.run(async |client| {
            let n = client
                .execute("DELETE FROM visitors WHERE site_id = $1", &[&id])
                .await?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<Versioned>, StoreError> {
        self.run(async |client| {
            let tx = client.transaction().await?;
            let set = set_count_in(&tx, id, count).await?;
            tx.commit().await?;
            // Its ids are gone from the table: no need to read them again.
            self.recent.forget(id);
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
        self.run(async |client| {
            let stmt = client.prepare_cached(SERIES).await?;
            let Some(row) = client
                .query_opt(&stmt, &[&slug.as_str(), &from, &to])
                .await?
            else {
                return Ok(None);
            };
            let n = SITE_COLUMNS_LEN;
            Ok(Some(SeriesData {
                before: row.try_get(n)?,
                buckets: buckets_from(row.try_get(n + 1)?, row.try_get(n + 2)?),
                site: site_from_row(row)?,
            }))
        })
        .await
    }

    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError> {
        // Every site and hour in one snapshot: an export that import takes
        // whole may be far larger than one request's work.
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
        self.run_until(deadline, async |client| {
            let tx = snapshot(client).await?;
            let rows = tx.query(DUMP, &[]).await?;
            let n = SITE_COLUMNS_LEN;
            let mut sites = rows
                .into_iter()
                .map(|row| {
                    Ok(SiteDump {
                        base_count: row.try_get(n)?,
                        buckets: buckets_from(row.try_get(n + 1)?, row.try_get(n + 2)?),
                        pages: Vec::new(),
                        site: site_from_row(row)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            let mut by_site: HashMap<SiteId, Vec<PageDump>> = HashMap::new();
            for row in tx.query(DUMP_PAGES, &[]).await? {
                let days: Vec<i64> = row.try_get(3)?;
                let hits: Vec<i64> = row.try_get(4)?;
                by_site.entry(row.try_get(0)?).or_default().push(PageDump {
                    page: row.try_get(1)?,
                    count: row.try_get(2)?,
                    days: days.into_iter().zip(hits).collect(),
                });
            }
            tx.commit().await?;
            for dump in &mut sites {
                dump.pages = by_site.remove(&dump.site.id).unwrap_or_default();
            }
            Ok(sites)
        })
        .await
    }

    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        // A site the import creates may be created meanwhile by another
        // request (its slug is not locked until it exists): the unique
        // constraint refuses the insert, the transaction writes nothing,
        // and the import is run again, finding the site and importing over
        // it, as it would have had the other request come first.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.import_once(entries).await {
                Err(StoreError::Conflict) if tries < IMPORT_TRIES => continue,
                result => return result,
            }
        }
    }

    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError> {
        let sites: Vec<SiteId> = self
            .run(async |client| {
                let rows = client
                    .query(
                        "SELECT DISTINCT site_id FROM hits_hourly WHERE hour < $1 ORDER BY site_id",
                        &[&before],
                    )
                    .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            })
            .await?;
        // A page's count is whole in its row: its old days just go.
        self.run(async |client| {
            client
                .execute(
                    "DELETE FROM page_hits_daily WHERE day < $1",
                    &[&day_of(before)],
                )
                .await
        })
        .await?;
        // One short transaction per site, so hits on other sites never wait
        // for a long one.
        let mut folded = 0;
        for site in sites {
            folded += self
                .run(async |client| {
                    let tx = client.transaction().await?;
                    // The site row first, like every other writer: no deadlock
                    // with a set-count that deletes these buckets.
                    tx.execute(
                        "SELECT 1 FROM visitors WHERE site_id = $1 FOR UPDATE",
                        &[&site],
                    )
                    .await?;
                    let n: i64 = tx
                        .query_opt(FOLD, &[&site, &before])
                        .await?
                        .map_or(0, |r| r.get(0));
                    tx.commit().await?;
                    Ok(n.unsigned_abs())
                })
                .await?;
        }
        Ok(folded)
    }

    async fn pages(
        &self,
        slug: &Slug,
        from: Day,
        to: Day,
        limit: i64,
        offset: i64,
    ) -> Result<Option<PageList>, StoreError> {
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let rows = tx
                .query(PAGES, &[&site.id, &from, &to, &(limit + 1), &offset])
                .await?;
            tx.commit().await?;
            let pages = rows
                .into_iter()
                .map(|r| {
                    Ok(PageStat {
                        page: r.try_get(0)?,
                        count: r.try_get(1)?,
                        hits: r.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            Ok(Some(PageList::from_rows(site, pages, limit)))
        })
        .await
    }

    async fn delete_pages(
        &self,
        id: SiteId,
        which: &PageSelector,
    ) -> Result<Option<u64>, StoreError> {
        self.run(async |client| {
            let tx = client.transaction().await?;
            // The site's row first, as a commit of hits on it takes it: the
            // pages chosen and the page total are those no hit is changing.
            if !lock_site(&tx, id).await? {
                return Ok(None);
            }
            let rows = match which {
                PageSelector::Named(page) => tx.query(DELETE_PAGE, &[&id, &page.as_str()]).await?,
                PageSelector::Prefix(prefix) => tx.query(DELETE_PREFIX, &[&id, &&**prefix]).await?,
                PageSelector::FewerThan { hits, from, to } => {
                    tx.query(DELETE_FEWER, &[&id, from, to, hits, &OVERFLOW_PAGE])
                        .await?
                }
            };
            let named = rows
                .iter()
                .filter(|r| r.get::<_, &str>(0) != OVERFLOW_PAGE)
                .count() as i64;
            if named > 0 {
                tx.execute(
                    "UPDATE visitors SET page_total = page_total - $2 WHERE site_id = $1",
                    &[&id, &named],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(Some(rows.len() as u64))
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
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let row = tx
                .query_opt(PAGE_SERIES, &[&site.id, &page.as_str(), &from, &to])
                .await?;
            tx.commit().await?;
            let (before, days) = match row {
                None => (0, Vec::new()),
                Some(row) => {
                    let count: i64 = row.try_get(0)?;
                    let since: i64 = row.try_get(1)?;
                    let days: Vec<i64> = row.try_get(2)?;
                    let hits: Vec<i64> = row.try_get(3)?;
                    (count - since, days.into_iter().zip(hits).collect())
                }
            };
            Ok(Some(PageSeries {
                site,
                page: page.clone(),
                before,
                days,
            }))
        })
        .await
    }

    async fn set_rules(&self, id: SiteId, patch: &RulesPatch) -> Result<Option<Site>, StoreError> {
        let keep = patch.keep_params.as_deref().map(SiteRules::join);
        let origins = patch.origins.as_deref().map(SiteRules::join);
        let trailing = patch.trailing_slash.map(TrailingSlash::as_str);
        self.run(async |client| {
            client
                .query_opt(
                    &format!(
                        "UPDATE visitors SET keep_params = coalesce($2, keep_params), \
                         allowed_origins = coalesce($3, allowed_origins), \
                         is_public = coalesce($4, is_public), \
                         require_origin = coalesce($5, require_origin), \
                         trailing_slash = coalesce($6, trailing_slash) \
                         WHERE site_id = $1 RETURNING {SITE_COLUMNS}"
                    ),
                    &[
                        &id,
                        &keep,
                        &origins,
                        &patch.public,
                        &patch.require_origin,
                        &trailing,
                    ],
                )
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }

    async fn revoke_session(&self, hash: &str, expires: SystemTime) -> Result<(), StoreError> {
        self.run(async |client| {
            client
                .execute(
                    "DELETE FROM revoked_sessions WHERE expires_at <= now()",
                    &[],
                )
                .await?;
            client
                .execute(
                    "INSERT INTO revoked_sessions (session_hash, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (session_hash) DO NOTHING",
                    &[&hash, &expires],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn session_revoked(&self, hash: &str) -> Result<bool, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached("SELECT 1 FROM revoked_sessions WHERE session_hash = $1")
                .await?;
            Ok(client.query_opt(&stmt, &[&hash]).await?.is_some())
        })
        .await
    }
}

/// Replaces the pages of every imported site whose entry carries pages,
/// and drops those of the sites in `unpaged`.
async fn import_pages(
    tx: &deadpool_postgres::Transaction<'_>,
    entries: &[ImportEntry],
    done: &[Imported],
    unpaged: &HashSet<SiteId>,
) -> Result<(), tokio_postgres::Error> {
    let (mut ids, mut totals) = (Vec::new(), Vec::new());
    let (mut page_sites, mut paths, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, imported) in entries.iter().zip(done) {
        let pages: &[PageDump] = match &entry.pages {
            Some(pages) => pages,
            None if unpaged.contains(&imported.id) => &[],
            None => continue,
        };
        ids.push(imported.id);
        totals.push(pages.iter().filter(|p| !p.page.is_overflow()).count() as i64);
        for page in pages {
            page_sites.push(imported.id);
            paths.push(page.page.as_str());
            counts.push(page.count);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM pages p USING unnest($1::bigint[]) AS u(id) WHERE p.site_id = u.id",
        &[&ids],
    )
    .await?;
    let created: HashMap<(SiteId, String), i64> = tx
        .query(IMPORT_PAGES, &[&page_sites, &paths, &counts])
        .await?
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect();
    let (mut day_pages, mut days, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, imported) in entries.iter().zip(done) {
        for page in entry.pages.iter().flatten() {
            let key = (imported.id, page.page.as_str().to_owned());
            let Some(&page_id) = created.get(&key) else {
                continue;
            };
            for &(day, n) in &page.days {
                day_pages.push(page_id);
                days.push(day);
                hits.push(n);
            }
        }
    }
    tx.execute(IMPORT_PAGE_DAYS, &[&day_pages, &days, &hits])
        .await?;
    tx.execute(IMPORT_PAGE_TOTALS, &[&ids, &totals]).await?;
    Ok(())
}

/// Sets the count of a site, keeping `count = base + buckets`, and starts a
/// new generation; `None` if there is no such site. The row is locked before the buckets are summed:
/// in READ COMMITTED the sum then sees every hit committed before the lock,
/// and no hit on this site can commit until we do.
async fn set_count_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: SiteId,
    count: i64,
) -> Result<Option<Versioned>, tokio_postgres::Error> {
    if !lock_site(tx, id).await? {
        return Ok(None);
    }
    let sums = tx
        .query_one(
            "SELECT (SELECT coalesce(sum(hits), 0)::bigint FROM hits_hourly WHERE site_id = $1), \
                 (SELECT coalesce(sum(page_count), 0)::bigint FROM pages WHERE site_id = $1)",
            &[&id],
        )
        .await?;
    let (bucketed, paged): (i64, i64) = (sums.get(0), sums.get(1));
    // The counts recorded for retried requests are from before this count:
    // a retry after it is a new hit.
    tx.execute("DELETE FROM hit_batches WHERE site_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM hit_requests WHERE site_id = $1", &[&id])
        .await?;
    let set = set_count_split(count, bucketed);
    if set.drop_hours {
        tx.execute("DELETE FROM hits_hourly WHERE site_id = $1", &[&id])
            .await?;
    }
    if !keeps_pages(count, paged, set.drop_hours) {
        tx.execute("DELETE FROM pages WHERE site_id = $1", &[&id])
            .await?;
        tx.execute(
            "UPDATE visitors SET page_total = 0 WHERE site_id = $1",
            &[&id],
        )
        .await?;
    }
    let row = tx
        .query_one(
            "UPDATE visitors SET visitor_count = $2, base_count = $3, \
             generation = generation + 1 WHERE site_id = $1 \
             RETURNING visitor_count, generation",
            &[&id, &count, &set.base],
        )
        .await?;
    Ok(Some(versioned(&row)))
}

/// Takes the row lock of site `id` in `tx`; `false` if there is no such
/// site.
async fn lock_site(
    tx: &deadpool_postgres::Transaction<'_>,
    id: SiteId,
) -> Result<bool, tokio_postgres::Error> {
    let locked = tx
        .query_opt(
            "SELECT 1 FROM visitors WHERE site_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    Ok(locked.is_some())
}

fn buckets_from(hours: Vec<SystemTime>, hits: Vec<i64>) -> Vec<(SystemTime, i64)> {
    hours.into_iter().zip(hits).collect()
}

/// Counts a site's fresh hits on their pages (see [`PagePlan`]) and adds
/// them to the pages' buckets for `day`; returns each hit's page count.
/// The caller holds the site's row lock.
async fn count_pages(
    tx: &tokio_postgres::Client,
    hits: &SiteHits,
    plan: &Plan<'_>,
    page_limit: i64,
    day: i64,
    recorded: &(dyn Fn(&str) -> Option<PageCount> + Sync),
) -> Result<Vec<Option<PageCount>>, tokio_postgres::Error> {
    let names = PagePlan::names(hits);
    let (total, known) = futures_util::future::try_join(
        tx.query_one(
            "SELECT page_total FROM visitors WHERE site_id = $1",
            &[&hits.site],
        ),
        tx.query(
            "SELECT path FROM pages WHERE site_id = $1 AND path = ANY($2::text[])",
            &[&hits.site, &names],
        ),
    )
    .await?;
    let pages_now: i64 = total.get(0);
    let known: HashSet<String> = known.iter().map(|r| r.get(0)).collect();
    let pages = PagePlan::new(
        hits,
        plan,
        &|name| known.contains(name),
        (page_limit - pages_now).max(0),
    );
    let (names, ns): (Vec<&str>, Vec<i64>) = pages.tallies.iter().copied().unzip();
    let counted: HashMap<String, i64> = tx
        .query(
            COUNT_PAGES,
            &[&hits.site, &names, &ns, &day, &pages.created],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let totals: Vec<i64> = names
        .iter()
        .map(|n| counted.get(*n).copied().unwrap_or_default())
        .collect();
    Ok(pages.counts(plan, &totals, recorded))
}

/// A read-only transaction that sees one snapshot in all its statements.
async fn snapshot(
    client: &mut Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// The site with this slug, read in the transaction `tx`.
async fn site_by_slug(
    tx: &deadpool_postgres::Transaction<'_>,
    slug: &Slug,
) -> Result<Option<Site>, tokio_postgres::Error> {
    tx.query_opt(
        &format!("SELECT {SITE_COLUMNS} FROM visitors WHERE slug = $1"),
        &[&slug.as_str()],
    )
    .await?
    .map(site_from_row)
    .transpose()
}

fn site_from_row(row: Row) -> Result<Site, tokio_postgres::Error> {
    Ok(Site {
        id: row.try_get(0)?,
        slug: row.try_get(1)?,
        name: row.try_get(2)?,
        count: row.try_get(3)?,
        generation: row.try_get(4)?,
        created_at: row.try_get(5)?,
        pages: row.try_get(6)?,
        rules: stored_rules(
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(9)?,
            row.try_get(10)?,
            row.try_get(11)?,
        ),
    })
}

impl<'a> FromSql<'a> for Page {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Page, Box<dyn std::error::Error + Sync + Send>> {
        Ok(stored_page(<&str>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl<'a> FromSql<'a> for TrailingSlash {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<TrailingSlash, Box<dyn std::error::Error + Sync + Send>> {
        Ok(stored_trailing_slash(<&str>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl<'a> FromSql<'a> for Slug {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Slug, Box<dyn std::error::Error + Sync + Send>> {
        Ok(stored_slug(<&str>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

fn versioned(row: &Row) -> Versioned {
    Versioned {
        count: row.get(0),
        generation: row.get(1),
    }
}

impl PgStore {
    fn pool_error(&self, e: PoolError) -> StoreError {
        match e {
            PoolError::Backend(e) => match self.tls.refusal(&e) {
                Some(why) => {
                    self.log_refusal(&why);
                    StoreError::Refused(why)
                }
                // Failing to connect or log in is never the request's fault.
                None => StoreError::Unavailable(e.to_string()),
            },
            other => pool_error(other),
        }
    }

    fn log_refusal(&self, why: &str) {
        let mut last = self
            .refusal_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::error!(error = %why, "cannot connect to PostgreSQL with these TLS settings");
        }
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        // Failing to connect or log in is never the request's fault.
        PoolError::Backend(e) => StoreError::Unavailable(e.to_string()),
        PoolError::Timeout(_) => StoreError::Unavailable("timed out connecting".into()),
        PoolError::Closed => StoreError::Unavailable("pool closed".into()),
        other => StoreError::Internal(anyhow!(other)),
    }
}

/// What an error means when no commit was in flight (see [`failover`]).
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    failover::classify(e, false)
}
