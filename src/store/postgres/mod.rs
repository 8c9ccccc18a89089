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

mod breakdowns;
mod commit;
mod failover;
mod hits;
mod pages;
mod recent;
mod series;
mod sessions;
mod sites;
mod transfer;
use pages::count_pages;

use failover::{CommitSent, Failure};

use super::migrate::{
    CREATE_TABLE, Contracts, Holder, MARK, Migrated, Migration, POSTGRES, application_name,
    contract_pending, plan, schema_version,
};
use super::pg_tls::{self, PgTls};
use super::{
    Backend, BreakdownRow, BreakdownStore, HeldCommit, HitStore, Limits, Opening, Outcome,
    PageCount, PagePlan, PageStore, Plan, SITE_COLUMNS, SITE_COLUMNS_LEN, SeriesStore,
    SessionStore, SiteHits, SiteStore, Store, StoreError, TransferStore, stored_page, stored_rules,
    stored_slug, stored_trailing_slash,
};
use crate::domain::breakdown::Dimension;
use crate::domain::page::OVERFLOW_PAGE;
use crate::domain::time::{Day, day_of};
use crate::domain::{
    BreakdownDump, BreakdownList, BreakdownQuery, ImportEntry, Imported, Narrowed, NewSite, Page,
    PageDump, PageList, PageSelector, PageSeries, PageSlice, PageStat, RulesPatch, SeriesData,
    Site, SiteDump, SiteId, SiteRules, Slug, TrailingSlash, ValueDetail, Versioned, keeps_pages,
    set_count_split,
};

/// Any constant will do; it only has to be the same in every replica.
const MIGRATION_LOCK: i64 = 0x7a11_7a11;

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
        let mut client = self.client_by(deadline).await?;
        let outcome = timeout_at(deadline, work(&mut client, &sent)).await;
        Self::settle(client, &sent, outcome).map(|(value, _)| value)
    }

    /// A pooled connection, if one comes by `deadline`.
    async fn client_by(&self, deadline: Instant) -> Result<Object, StoreError> {
        match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.pool_error(e)),
            Err(_) => Err(StoreError::Unavailable(
                "timed out waiting for a connection".into(),
            )),
        }
    }

    /// What a piece of work on `client` (run until a deadline) comes to,
    /// with the connection back on success. On a failure that may have
    /// broken the connection, or a timeout, the connection leaves the pool;
    /// a failure or timeout while the commit was in flight (`sent`) leaves
    /// the outcome unknown.
    fn settle<T>(
        client: Object,
        sent: &CommitSent,
        outcome: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<(T, Object), StoreError> {
        match outcome {
            Ok(Ok(value)) => Ok((value, client)),
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
            (row.try_get(7)?, row.try_get(8)?, row.try_get(12)?),
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
