//! The durable store: one small trait, one implementation per backend.
//!
//! The store holds the only authoritative copy of every count. Counts are
//! pre-aggregated rows incremented atomically (`visitor_count + n`), never
//! derived from a `COUNT(*)`. The backend is picked by the URL's scheme.
//!
//! Beside each count, hits are kept per site per UTC hour (`hits_hourly`),
//! and hits that are in no hour (a count set or imported by an admin, hours
//! folded in by retention) in the site's `base_count`. Every write keeps
//! `count = base_count + sum(hourly hits)`, so a series always adds up to
//! its count.

mod migrate;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use async_trait::async_trait;

use crate::config::{Secret, StoreSettings, redact_url};

pub use migrate::Migration;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A site's numeric id. The seed's only site has id 1.
pub type SiteId = i64;

/// The site that the seed routes (`/`, `/resetcounter`) count on.
pub const DEFAULT_SITE_ID: SiteId = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub slug: String,
    pub name: String,
    pub count: i64,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct NewSite {
    pub slug: String,
    pub name: String,
    pub count: i64,
}

/// A site's hourly buckets over `[from, to)` and the hits before them, read
/// in one snapshot so that `before + sum(buckets)` is the count as of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesData {
    pub site: Site,
    /// The base count plus every bucket before `from`.
    pub before: i64,
    /// The non-empty hours in `[from, to)`, ascending: (hour start, hits).
    pub buckets: Vec<(SystemTime, i64)>,
}

/// All a store holds about one site, read in one snapshot (for export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDump {
    pub site: Site,
    pub base_count: i64,
    /// Every bucket, ascending: (hour start, hits).
    pub buckets: Vec<(SystemTime, i64)>,
}

/// One site's starting count in an import; `name` is used only when the site
/// is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportEntry {
    pub slug: String,
    pub name: String,
    pub count: i64,
}

/// What an import did to one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub slug: String,
    pub count: i64,
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is overloaded; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write (a site slug already taken).
    #[error("already exists")]
    Conflict,
    /// Anything else: a bug or a broken schema.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations; safe when several processes call it at
    /// once. Returns the versions it applied.
    async fn migrate(&self) -> Result<Vec<i64>, StoreError>;

    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Adds `n` hits to each `(site, n)` in one transaction, and the same to
    /// that site's bucket for the hour starting at `hour`. `hits` is sorted
    /// by site id with no repeats (a fixed lock order, so concurrent writers
    /// never deadlock). Returns each site's new count, `None` for a site that
    /// does not exist (nothing is written for it).
    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[(SiteId, i64)],
    ) -> Result<Vec<Option<i64>>, StoreError>;

    async fn site(&self, slug: &str) -> Result<Option<Site>, StoreError>;

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError>;

    async fn sites(&self) -> Result<Vec<Site>, StoreError>;

    /// Creates a site; [`StoreError::Conflict`] if the slug is taken.
    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError>;

    /// Deletes a site and its series; `false` if there was none.
    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError>;

    /// Sets a site's count; `None` if there is no such site. The buckets are
    /// kept and the base count takes the difference, unless the new count
    /// is below the bucketed hits: then the buckets go and the base is the
    /// count (so a reset to 0 empties the series).
    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<i64>, StoreError>;

    /// The site `slug` with its hourly buckets in `[from, to)`; `None` if
    /// there is no such site.
    async fn series(
        &self,
        slug: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Option<SeriesData>, StoreError>;

    /// Every site with its base count and buckets, ordered by id.
    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError>;

    /// Sets each entry's count as [`Store::set_count`] does, creating the
    /// sites that do not exist, all in one transaction: any failure writes
    /// nothing. Slugs are distinct and valid (the caller checked them).
    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError>;

    /// Folds every bucket of an hour before `before` into its site's base
    /// count; counts do not change. Returns the number of buckets folded.
    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError>;
}

/// Opens the store named by the URL's scheme. Fails only on settings that
/// cannot work (a bad URL, an unwritable SQLite path), never because a
/// PostgreSQL server is down: that is retried by the caller.
pub fn open(url: &Secret, settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    let raw = url.expose();
    if let Some(path) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            bail!("TALLY_DATABASE_URL {raw:?} names no file");
        }
        let store = SqliteStore::open(path.as_ref(), settings.store_timeout)
            .with_context(|| format!("opening SQLite database {path:?}"))?;
        return Ok(Arc::new(store));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let store = PgStore::new(raw, settings.db_pool_size, settings.store_timeout)
            .with_context(|| format!("configuring PostgreSQL store {}", redact_url(raw)))?;
        return Ok(Arc::new(store));
    }
    bail!(
        "TALLY_DATABASE_URL must start with sqlite:// or postgres:// (got {})",
        redact_url(raw)
    )
}
