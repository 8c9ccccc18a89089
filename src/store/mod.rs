//! The durable store: one trait per concept ([`HitStore`], [`SiteStore`],
//! [`PageStore`], [`SeriesStore`], [`TransferStore`], [`SessionStore`]),
//! [`Store`] their sum for wiring, and one implementation per backend, each
//! split into the same concept files (`postgres/`, `sqlite/`). A batch of
//! hits and its plan are in `batch.rs`.
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

mod batch;
pub mod migrate;
pub mod owner;
mod pg_tls;
mod postgres;
mod sqlite;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use async_trait::async_trait;

use crate::config::StoreSettings;
use crate::domain::breakdown::{Dimension, Facets};
use crate::domain::time::Day;
use crate::domain::{
    BreakdownList, BreakdownQuery, ImportEntry, Imported, NewSite, Page, PageList, PageSelector,
    PageSeries, PageSlice, RulesPatch, SeriesData, Site, SiteDump, SiteId, SiteRules, Slug,
    TrailingSlash, ValueDetail, Versioned,
};
use crate::secret::{Secret, redact_url};

pub use batch::{
    BreakdownRow, Counted, HeldCommit, Limits, Opening, Outcome, PageCount, Recorded, SiteHits,
    cap_values, takes_room,
};
use batch::{PagePlan, Plan};
pub use migrate::Migration;
pub use owner::Owner;
pub use postgres::PgStore;
pub use sqlite::{SqliteStore, writes_inline};

/// How many columns [`SITE_COLUMNS`] names: a query's own columns follow.
const SITE_COLUMNS_LEN: usize = 13;

/// The columns every query that reads a [`Site`] selects, in this order.
const SITE_COLUMNS: &str = "site_id, slug, site_name, visitor_count, generation, created_at, \
    page_total, keep_params, allowed_origins, is_public, require_origin, trailing_slash, aliases";

/// A slug read back from the store: written only after [`Slug::parse`],
/// so an invalid one means the table was edited by hand.
fn stored_slug(text: &str) -> anyhow::Result<Slug> {
    Slug::parse(text)
        .with_context(|| format!("the store holds a site slug {text:?} that is not valid"))
}

impl PageList {
    /// A slice of a site's pages from rows read with `LIMIT limit + 1`: the
    /// extra row, if any, only says that more pages follow.
    fn from_rows(site: Site, mut pages: Vec<crate::domain::PageStat>, limit: i64) -> PageList {
        let more = pages.len() as i64 > limit;
        pages.truncate(usize::try_from(limit).unwrap_or(0));
        PageList { site, pages, more }
    }
}

impl BreakdownList {
    /// A slice of a breakdown from rows read with `LIMIT limit + 1`: the
    /// extra row, if any, only says that more values follow.
    fn from_rows(site: Site, mut values: Vec<(String, i64)>, limit: i64) -> BreakdownList {
        let more = values.len() as i64 > limit;
        values.truncate(usize::try_from(limit).unwrap_or(0));
        BreakdownList { site, values, more }
    }
}

/// A page name read back from the store.
fn stored_page(text: &str) -> anyhow::Result<Page> {
    Page::stored(text)
        .with_context(|| format!("the store holds a page name {text:?} that is not valid"))
}

/// A site's rules as the store keeps them: two space-separated lists,
/// then the settings.
fn stored_rules(
    (keep_params, origins, aliases): (&str, &str, &str),
    public: Option<bool>,
    require_origin: bool,
    trailing_slash: TrailingSlash,
) -> SiteRules {
    SiteRules {
        keep_params: SiteRules::split(keep_params),
        origins: SiteRules::split(origins),
        public,
        require_origin,
        trailing_slash,
        aliases: SiteRules::split(aliases),
    }
}

/// A trailing-slash setting read back from the store.
fn stored_trailing_slash(text: &str) -> anyhow::Result<TrailingSlash> {
    TrailingSlash::parse(text).with_context(|| {
        format!("the store holds a trailing_slash setting {text:?} that is not valid")
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached, is overloaded or does not take writes
    /// (a standby); nothing was written, and retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The server refused the connection settings themselves (a TLS
    /// certificate that does not verify, TLS demanded and not offered):
    /// no retry can succeed until the settings or the server change. At
    /// start-up tally stops on it; once serving it is answered like
    /// `Unavailable`.
    #[error("{0}")]
    Refused(String),
    /// The connection was lost after a write's commit was sent: it may or
    /// may not have been committed. Only a write that a retry cannot
    /// repeat (one whose hits all carry request ids) may be retried.
    #[error("store unavailable, outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A unique constraint refused the write (a site slug already taken).
    #[error("already exists")]
    Conflict,
    /// Anything else: a bug or a broken schema.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_connection_strings_are_told_from_urls() {
        assert!(is_key_value("host=a,b port=1,2 dbname=db"));
        assert!(is_key_value(" dbname = db"));
        assert!(!is_key_value("mysql://u@h/db"));
        assert!(!is_key_value("redis://h?x=1"));
        assert!(!is_key_value("data/tally.db"));
    }
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

/// Counting hits: the one-flight commit of a batch, and the request ids it records.
#[async_trait]
pub trait HitStore: Send + Sync + fmt::Debug {
    /// Counts each site's hits in one transaction, and adds them to that
    /// site's bucket for the hour starting at `hour`. `hits` is sorted by
    /// site id with no repeats (a fixed lock order, so concurrent writers
    /// never deadlock). Returns each site's new total and each hit's count,
    /// or why nothing was written for it: no such site, or a count that
    /// would pass [`MAX_COUNT`] (the other sites are counted all the same).
    /// `deadline` bounds the whole operation (waiting for a connection
    /// included): hits must be answered within the store timeout of their
    /// arrival, not of their batch's start.
    ///
    /// A hit carrying a request id already recorded for its site (a request
    /// retried after its first replica died) is not counted again: it gets
    /// the count it was first given.
    ///
    /// A hit naming a page also counts on that page, in the same
    /// transaction, creating it if the site has fewer than `limits.pages`
    /// pages, else counting on the site's overflow page. A hit with facets
    /// also counts under each of them, for its site and its page, on the
    /// hour's day, in the same transaction: a value new to the site that
    /// day only while the site has fewer than `limits.values` of that
    /// dimension, else under `(other)` ([`batch::cap_values`]).
    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        limits: Limits,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Outcome>, StoreError>;

    /// Begins [`HitStore::add_hits`] for a store whose writers contend
    /// for a site's lock: it commits `hits` at once if it can
    /// ([`Opening::Done`]), else it takes their sites' locks and hands the
    /// open commit back ([`Opening::Held`]), so that the hits of those
    /// sites that queued up while it waited join this commit instead of
    /// waiting for the locks again. By default it holds nothing
    /// ([`Opening::Unlocked`]).
    async fn open_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        limits: Limits,
        deadline: tokio::time::Instant,
    ) -> Result<Opening<'_>, StoreError> {
        let _ = (hour, hits, limits, deadline);
        Ok(Opening::Unlocked)
    }

    /// Forgets request ids recorded before `before`; returns how many.
    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError>;
}

/// Sites: their rows, rules and counts.
#[async_trait]
pub trait SiteStore: Send + Sync + fmt::Debug {
    async fn site(&self, slug: &Slug) -> Result<Option<Site>, StoreError>;

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError>;

    async fn sites(&self) -> Result<Vec<Site>, StoreError>;

    /// Creates a site with its rules in one statement;
    /// [`StoreError::Conflict`] if the slug is taken.
    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError>;

    /// Deletes a site and its series; `false` if there was none.
    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError>;

    /// Sets a site's count and starts a new generation; `None` if there is
    /// no such site. The buckets are kept and the base count takes the
    /// difference, unless the new count is below the bucketed hits: then
    /// the buckets go and the base is the count (so a reset to 0 empties the
    /// series), and the site's pages go with them. The pages also go when
    /// they hold more hits than the new count ([`keeps_pages`](crate::domain::keeps_pages)).
    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<Versioned>, StoreError>;

    /// Replaces the lists of a site's rules that `patch` gives, in one
    /// transaction (two changes to different lists never undo each other);
    /// `None` if there is no such site; [`StoreError::Conflict`] if an
    /// alias given is another site's slug or alias.
    async fn set_rules(&self, id: SiteId, patch: &RulesPatch) -> Result<Option<Site>, StoreError>;

    /// The site one of whose aliases is `alias`.
    async fn site_by_alias(&self, alias: &Slug) -> Result<Option<Site>, StoreError>;
}

/// A site's pages: ranked, one page's days, deleted.
#[async_trait]
pub trait PageStore: Send + Sync + fmt::Debug {
    /// The site `slug` and one slice of its pages, ordered by hits in the
    /// slice's days, then count, then name; `None` if there is no such
    /// site.
    async fn pages(&self, slug: &Slug, slice: PageSlice) -> Result<Option<PageList>, StoreError>;

    /// Deletes the pages of site `id` that `which` selects, with their
    /// daily hits, in one transaction that holds the site's lock (as a
    /// commit of hits on it does), and takes the named pages among them
    /// off its page total (the overflow page is not in it); returns how
    /// many pages went, or `None` if there is no such site. The site's
    /// count, base count and hours do not change, nor do the counts
    /// recorded for request ids: a retry of a hit on a deleted page gets
    /// the counts it was first given.
    async fn delete_pages(
        &self,
        id: SiteId,
        which: &PageSelector,
    ) -> Result<Option<u64>, StoreError>;

    /// One page's daily hits in `days` and its count before them
    /// (nothing for a page never hit); `None` if there is no such site.
    async fn page_series(
        &self,
        slug: &Slug,
        page: &Page,
        days: Range<Day>,
    ) -> Result<Option<PageSeries>, StoreError>;
}

/// Hourly series, and their retention.
#[async_trait]
pub trait SeriesStore: Send + Sync + fmt::Debug {
    /// The site `slug` with its hourly buckets in `[from, to)`; `None` if
    /// there is no such site.
    async fn series(
        &self,
        slug: &Slug,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Option<SeriesData>, StoreError>;

    /// Folds every bucket of an hour before `before` into its site's base
    /// count, and drops the page days before `before`'s day (a page's count
    /// is kept whole in its row); counts do not change. Returns the number
    /// of hour buckets folded.
    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError>;
}

/// Export and import of every site.
#[async_trait]
pub trait TransferStore: Send + Sync + fmt::Debug {
    /// Every site with its base count and buckets, ordered by id.
    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError>;

    /// Sets each entry's count as [`SiteStore::set_count`] does (a new
    /// generation for each), or replays its hours, creating the sites that
    /// do not exist, all in one transaction under the store timeout: any
    /// failure writes nothing. An entry's pages, when it carries them,
    /// replace the site's; without them the site keeps its pages unless
    /// [`keeps_pages`](crate::domain::keeps_pages) says otherwise (with its
    /// hours replayed, they are not dropped with the old hours). Slugs are distinct and valid (the caller
    /// checked them); callers split a large import into batches.
    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError>;
}

/// Breakdowns: a site's or a page's hits per value of a dimension.
#[async_trait]
pub trait BreakdownStore: Send + Sync + fmt::Debug {
    /// The site `slug`'s hits in the days `days` per value of `dimension`
    /// (only `page`'s, if given), most hits first, then by value; one
    /// slice of them (`limit`, `offset`). `None` if there is no such site.
    async fn breakdown(
        &self,
        slug: &Slug,
        query: &BreakdownQuery,
    ) -> Result<Option<BreakdownList>, StoreError>;

    /// The site `slug`'s hits under `value` of `dimension` in the days
    /// `[from, to)`: per day, and on its `pages` pages with the most of
    /// them. `None` if there is no such site.
    async fn value_detail(
        &self,
        slug: &Slug,
        dimension: Dimension,
        value: &str,
        days: (Day, Day),
        pages: i64,
    ) -> Result<Option<ValueDetail>, StoreError>;
}

/// Signed-out dashboard sessions.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Records a signed-out dashboard session, by a hash of its cookie,
    /// until `expires` (when the cookie stops working anyway), and forgets
    /// the records already past theirs, so the table holds at most the
    /// sessions signed out in the last session lifetime.
    async fn revoke_session(&self, hash: &str, expires: SystemTime) -> Result<(), StoreError>;

    /// Whether the session with this hash was signed out.
    async fn session_revoked(&self, hash: &str) -> Result<bool, StoreError>;
}

/// A backend: every concept's store, and what wiring needs of the whole
/// (which backend, its migrations, whether it answers).
#[async_trait]
pub trait Store:
    HitStore
    + SiteStore
    + PageStore
    + SeriesStore
    + TransferStore
    + SessionStore
    + BreakdownStore
    + fmt::Debug
    + 'static
{
    fn backend(&self) -> Backend;

    /// Applies the migrations of `list` not applied yet; safe when several
    /// processes call it at once. A contract migration is left pending
    /// while a session of an older release uses the database, unless
    /// `contracts` forces it (see [`migrate`]). `list` is the backend's own
    /// ([`migrate::list`]) but for tests of the migrator.
    async fn migrate(
        &self,
        list: &[Migration],
        contracts: migrate::Contracts,
    ) -> Result<migrate::Migrated, StoreError>;

    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
}

impl dyn Store {
    /// Counts `n` hits without request ids on each `(site, n)`, with a
    /// generous deadline: for tools and tests that write history directly.
    pub async fn add_anonymous_hits(
        &self,
        hour: SystemTime,
        hits: &[(SiteId, i64)],
    ) -> Result<Vec<Outcome>, StoreError> {
        let hits: Vec<SiteHits> = hits
            .iter()
            .map(|(site, n)| SiteHits::anonymous(*site, usize::try_from(*n).unwrap_or(0)))
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        self.add_hits(
            hour,
            &hits,
            Limits::pages(crate::domain::page::DEFAULT_PAGE_LIMIT),
            deadline,
        )
        .await
    }
}

/// Opens the store named by the URL's scheme. Fails only on settings that
/// cannot work (a bad URL, an unwritable SQLite path), never because a
/// PostgreSQL server is down: that is retried by the caller.
pub fn open(url: &Secret, settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    let raw = url.expose();
    if let Some(path) = sqlite_path(raw)? {
        let store = SqliteStore::open(path.as_ref(), settings.store_timeout)
            .with_context(|| format!("opening SQLite database {path:?}"))?;
        return Ok(Arc::new(store));
    }
    if pg_tls::is_url(raw) || is_key_value(raw) {
        let store = PgStore::new(raw, settings.db_pool_size, settings.store_timeout)
            .with_context(|| format!("configuring PostgreSQL store {}", redact_url(raw)))?;
        return Ok(Arc::new(store));
    }
    bail!(
        "TALLY_DATABASE_URL must start with sqlite:// or postgres://, or be a PostgreSQL \
         key=value connection string (got {})",
        redact_url(raw)
    )
}

/// A libpq key=value connection string (`host=a,b port=1,2 dbname=db`):
/// it opens with a `key=` word.
fn is_key_value(raw: &str) -> bool {
    raw.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

/// Makes this process the owner of the SQLite database that `url` names, if
/// it names one (see [`owner`]); `None` for PostgreSQL and for `:memory:`,
/// which no other process can open.
pub fn claim(url: &Secret) -> anyhow::Result<Option<Owner>> {
    match sqlite_path(url.expose())? {
        Some(":memory:") | None => Ok(None),
        Some(path) => Owner::claim(path.as_ref()).map(Some),
    }
}

/// The file of a `sqlite://` URL; `None` for another scheme.
fn sqlite_path(raw: &str) -> anyhow::Result<Option<&str>> {
    let Some(path) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        bail!("TALLY_DATABASE_URL {raw:?} names no file");
    }
    Ok(Some(path))
}
