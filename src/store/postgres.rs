//! PostgreSQL: a bounded connection pool, prepared statements, pipelining.
//!
//! Every operation runs under one deadline (`TALLY_STORE_TIMEOUT`) covering
//! both the wait for a connection and the work, so a blackholed server turns
//! into a prompt 503 rather than a hang. A connection whose work was cut off
//! is detached from the pool and closed: it may be mid-transaction, and the
//! server rolls back what it had not committed.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio::time::{Instant, timeout_at};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::migrate::{CREATE_TABLE, POSTGRES};
use super::{Backend, NewSite, Site, SiteId, Store, StoreError, Versioned};

/// Any constant will do; it only has to be the same in every replica.
const MIGRATION_LOCK: i64 = 0x7a11_7a11;

/// One statement counts `$2` hits on site `$1` and adds them to the bucket of
/// the hour `$3`; the bucket is written only if the site row was, and both
/// happen atomically even outside an explicit transaction.
const ADD_HITS: &str = "\
WITH counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint
    WHERE site_id = $1::bigint
    RETURNING visitor_count, generation
), bucket AS (
    INSERT INTO hits_hourly (site_id, hour, hits)
    SELECT $1::bigint, $3::timestamptz, $2::bigint FROM counted
    ON CONFLICT (site_id, hour) DO UPDATE SET hits = hits_hourly.hits + EXCLUDED.hits
)
SELECT visitor_count, generation FROM counted";

const SITE_COLUMNS: &str = "site_id, slug, site_name, visitor_count, generation, created_at";

#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    timeout: Duration,
}

impl PgStore {
    /// Configures the pool; no connection is made until first use.
    pub fn new(url: &str, pool_size: u32, timeout: Duration) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("invalid PostgreSQL URL: {e}"))?;
        config
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("tally");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
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
        Ok(PgStore { pool, timeout })
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
        let mut client = match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(pool_error(e)),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "timed out waiting for a connection".into(),
                ));
            }
        };
        let outcome = timeout_at(deadline, work(&mut client)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if client.is_closed() {
                    drop(Object::take(client));
                }
                Err(pg_error(e))
            }
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
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
            let mut applied = Vec::new();
            for m in POSTGRES.iter().filter(|m| !done.contains(&m.version)) {
                tx.batch_execute(m.sql).await?;
                tx.execute(
                    "INSERT INTO tally_migrations (version, name) VALUES ($1, $2)",
                    &[&m.version, &m.name],
                )
                .await?;
                applied.push(m.version);
            }
            tx.commit().await?;
            Ok(applied)
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
        hits: &[(SiteId, i64)],
        deadline: Instant,
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.run_until(deadline, async |client| {
            let stmt = client.prepare_cached(ADD_HITS).await?;
            if let [(site, n)] = hits {
                // One statement is its own transaction: one round trip.
                let row = client.query_opt(&stmt, &[site, n, &hour]).await?;
                return Ok(vec![row.as_ref().map(versioned)]);
            }
            let tx = client.transaction().await?;
            // Polled together, the statements are pipelined on the wire and
            // still executed in order, so the lock order stays sorted.
            let params: Vec<[&(dyn ToSql + Sync); 3]> = hits
                .iter()
                .map(|(site, n)| [site as _, n as _, &hour as _])
                .collect();
            let rows =
                futures_util::future::try_join_all(params.iter().map(|p| tx.query_opt(&stmt, p)))
                    .await?;
            tx.commit().await?;
            Ok(rows.iter().map(|r| r.as_ref().map(versioned)).collect())
        })
        .await
    }

    async fn site(&self, slug: &str) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = $1"
                ))
                .await?;
            Ok(client.query_opt(&stmt, &[&slug]).await?.map(site_from_row))
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
            Ok(client.query_opt(&stmt, &[&id]).await?.map(site_from_row))
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
            Ok(rows.into_iter().map(site_from_row).collect())
        })
        .await
    }

    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError> {
        let row = self
            .run(async |client| {
                client
                    .query_opt(
                        &format!(
                            "INSERT INTO visitors (slug, site_name, visitor_count) \
                             VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING \
                             RETURNING {SITE_COLUMNS}"
                        ),
                        &[&new.slug, &new.name, &new.count],
                    )
                    .await
            })
            .await?;
        row.map(site_from_row).ok_or(StoreError::Conflict)
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
            let row = client
                .query_opt(
                    "UPDATE visitors SET visitor_count = $2, generation = generation + 1 \
                     WHERE site_id = $1 RETURNING visitor_count, generation",
                    &[&id, &count],
                )
                .await?;
            Ok(row.as_ref().map(versioned))
        })
        .await
    }
}

fn site_from_row(row: Row) -> Site {
    Site {
        id: row.get(0),
        slug: row.get(1),
        name: row.get(2),
        count: row.get(3),
        generation: row.get(4),
        created_at: row.get(5),
    }
}

fn versioned(row: &Row) -> Versioned {
    Versioned {
        count: row.get(0),
        generation: row.get(1),
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

/// Connection trouble and server states that pass (shutdown, too many
/// connections, serialization) are `Unavailable`; the rest are bugs.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let class = &db.code().code()[..2];
        return match class {
            "08" | "40" | "53" | "57" | "58" => StoreError::Unavailable(db.message().to_owned()),
            "23" if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                StoreError::Conflict
            }
            _ => StoreError::Internal(anyhow!(e)),
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(anyhow!(e))
    }
}
