//! Counting: the services over the [`domain`](crate::domain), with no HTTP
//! and no SQL.
//!
//! [`Counter`] is the only way from the HTTP layer (and the background
//! tasks) to the store and the cache. Hits go through the group-commit
//! [`writer`]; everything else goes straight to the store. Site slugs are
//! resolved to ids through a small in-process directory, since sites are
//! created and deleted rarely and hits are counted constantly.

pub mod new_pages;
pub mod ranking;
pub mod retention;
pub mod series;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cache::{Cache, CacheStatus};
use crate::domain::time::{Day, today};
use crate::domain::{
    DEFAULT_SITE_ID, Invalid, InvalidPage, InvalidSlug, NewSite, Page, PageList, PageSelector,
    RulesPatch, Site, SiteId, SiteRules, Slug, Versioned, Visitor, validate_count, validate_name,
};
use crate::limiter::Admission;
use crate::metrics::Metrics;
use crate::store::migrate::{self, Contracts, Migrated};
use crate::store::{Backend, PageCount, Store, StoreError, writes_inline};
use crate::sync::{read, write};
use writer::{CommitError, Pending};

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    InvalidPage(String),
    #[error("no site with this slug")]
    NotFound,
    #[error("a site with this slug already exists")]
    Conflict,
    #[error("the default site cannot be deleted")]
    DefaultSite,
    #[error("the count is at its maximum")]
    CountLimit,
    /// The site takes hits only from pages on the hosts it names.
    #[error("this site does not count hits from pages on {0}")]
    OriginRefused(String),
    #[error("too many hits are waiting for a commit")]
    Overloaded,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store went away while the hit was being committed: it may have
    /// been counted.
    #[error("the store went away during the commit: {0}")]
    OutcomeUnknown(String),
    /// The store failed after some batches of an import were committed.
    #[error("the store failed after {done} of {total} sites were imported: {why}")]
    ImportIncomplete {
        done: usize,
        total: usize,
        why: String,
    },
    #[error("tally is shutting down")]
    ShuttingDown,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<Invalid> for CountError {
    fn from(e: Invalid) -> Self {
        CountError::InvalidInput(e.0)
    }
}

impl From<InvalidPage> for CountError {
    fn from(e: InvalidPage) -> Self {
        CountError::InvalidPage(e.to_string())
    }
}

impl From<InvalidSlug> for CountError {
    fn from(e: InvalidSlug) -> Self {
        CountError::InvalidInput(e.to_string())
    }
}

impl From<StoreError> for CountError {
    fn from(e: StoreError) -> Self {
        match e {
            // Outside start-up, settings the server refuses are one more
            // way for the store to be out of reach.
            StoreError::Unavailable(why) | StoreError::Refused(why) => CountError::Unavailable(why),
            StoreError::OutcomeUnknown(why) => CountError::OutcomeUnknown(why),
            StoreError::Conflict => CountError::Conflict,
            StoreError::Internal(e) => CountError::Internal(e),
        }
    }
}

/// Where a hit came from.
#[derive(Debug, Default, Clone, Copy)]
pub struct HitFrom<'a> {
    /// The request's id as the client or proxy sent it: a retry of the same
    /// request carries the same id and is counted once.
    pub request_id: Option<&'a str>,
    /// For unique-visitor counting.
    pub visitor: Option<&'a Visitor>,
    /// The page the hit names, as the client sent it (normalised by the
    /// site's rules before it is counted).
    pub page: Option<&'a str>,
    /// The host of the page the hit came from (its `Origin` or `Referer`),
    /// checked against the site's allowed origins.
    pub origin: Option<&'a str>,
    /// The client as its limits know it (an IPv6 client by its /64), for
    /// its budget of new pages.
    pub client: Option<std::net::IpAddr>,
}

/// The page a hit names, normalised by its site's rules, once the rules
/// say the page it came from may count here.
fn checked_page(entry: &Entry, hit: &HitFrom<'_>) -> Result<Option<Page>, CountError> {
    if !entry.rules.allows(hit.origin) {
        return Err(CountError::OriginRefused(
            hit.origin.unwrap_or_default().to_owned(),
        ));
    }
    Ok(hit
        .page
        .map(|raw| Page::parse(raw, &entry.rules))
        .transpose()?)
}

/// What counting one hit gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitCount {
    /// The site's count, this hit included.
    pub count: i64,
    /// The page counted on and its count, if the hit named a page: the
    /// overflow page when the site had no room for a new one.
    pub page: Option<(Page, i64)>,
}

/// Tuning for the write path.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub queue: usize,
    pub max_batch: usize,
    /// How long a hit may wait for its commit, queueing included.
    pub store_timeout: std::time::Duration,
    /// Distinct pages a site may have; hits naming more count on its
    /// overflow page.
    pub page_limit: i64,
    /// How many new pages clients and sites may create per window.
    pub new_pages: new_pages::NewPageBudget,
}

/// How long a replica trusts the rules it read for a site before reading
/// them again: a change made through another replica takes effect within
/// this time everywhere.
const RULES_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// What the directory knows about a site.
#[derive(Debug, Clone)]
struct Entry {
    id: SiteId,
    rules: Arc<SiteRules>,
    read: tokio::time::Instant,
}

#[derive(Debug)]
pub struct Counter {
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    queue: mpsc::Sender<Pending>,
    queue_capacity: usize,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    directory: RwLock<HashMap<Slug, Entry>>,
    /// Sites' pages ranked over ranges of days, kept a few seconds.
    rankings: ranking::Rankings,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// Distinct pages a site may have (as [`WriterSettings::page_limit`]),
    /// which an import holds to as counting does.
    page_limit: i64,
    /// What clients and sites may still create of new pages.
    new_pages: new_pages::NewPages,
}

/// Runs the group-commit writer on a thread of its own, where its SQLite
/// commits block that thread alone (see [`writes_inline`]); on a task if
/// the thread's runtime cannot be made.
fn writer_thread(run: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => tokio::task::spawn_blocking(move || writes_inline(|| runtime.block_on(run))),
        Err(e) => {
            tracing::warn!(error = %e, "no thread of its own for the commit writer");
            tokio::spawn(run)
        }
    }
}

impl Counter {
    /// Starts the group-commit writer. Hits are refused (503) until
    /// [`Counter::set_ready`] says the store's schema is in place.
    pub fn start(
        store: Arc<dyn Store>,
        cache: Arc<dyn Cache>,
        settings: WriterSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(settings.queue);
        let (stop, stop_rx) = watch::channel(false);
        let run = writer::run(
            rx,
            stop_rx,
            store.clone(),
            cache.clone(),
            settings,
            metrics.clone(),
        );
        let writer = match store.backend() {
            Backend::Sqlite => writer_thread(run),
            Backend::Postgres => tokio::spawn(run),
        };
        Counter {
            store,
            cache,
            queue,
            queue_capacity: settings.queue,
            stop,
            writer: Mutex::new(Some(writer)),
            directory: RwLock::new(HashMap::new()),
            rankings: ranking::Rankings::default(),
            ready: AtomicBool::new(false),
            metrics,
            page_limit: settings.page_limit,
            new_pages: new_pages::NewPages::new(settings.new_pages),
        }
    }

    /// Applies the store's migrations that are not applied yet, but the
    /// contract ones that a replica of an older release still holds back:
    /// this release's code works with those applied or not. The store's
    /// own error, so that start-up can tell settings the server refuses
    /// from an outage.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let list = migrate::list(self.store.backend());
        self.store.migrate(list, Contracts::WhenSafe).await
    }

    /// The store's backend: `sqlite` or `postgres`.
    pub fn store_backend(&self) -> &'static str {
        self.store.backend().name()
    }

    /// Whether the store answers now.
    pub async fn ping_store(&self) -> Result<(), CountError> {
        Ok(self.store.ping().await?)
    }

    /// Forgets the request ids of hits from before `before`.
    pub async fn purge_requests(&self, before: std::time::SystemTime) -> Result<u64, CountError> {
        Ok(self.store.purge_requests(before).await?)
    }

    pub fn cache_status(&self) -> CacheStatus {
        self.cache.status()
    }

    /// Whether a client (by its rate-limit key) may count another hit now.
    pub fn admit(&self, client: std::net::IpAddr) -> Admission {
        self.cache.admit(client)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.metrics.set_store_ready(true);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Hits waiting for a commit.
    pub fn queue_depth(&self) -> usize {
        self.queue_capacity - self.queue.capacity()
    }

    /// Counts one hit on the default site; returns the new count.
    pub async fn hit_default(&self, hit: &HitFrom<'_>) -> Result<i64, CountError> {
        let (count, _) = self
            .hit_id(DEFAULT_SITE_ID, hit.request_id, None)
            .await?
            .ok_or(CountError::NotFound)?;
        if let Some(visitor) = hit.visitor {
            self.cache.visit(DEFAULT_SITE_ID, visitor);
        }
        Ok(count)
    }

    /// Counts one hit on `slug` (and on its page, if it names one).
    pub async fn hit(&self, slug: &Slug, hit: &HitFrom<'_>) -> Result<HitCount, CountError> {
        let mut entry = self.resolve(slug).await?;
        let mut counted = self.hit_entry(slug, &entry, hit).await?;
        if counted.is_none() {
            // The id we had is gone: the site was deleted, perhaps by another
            // replica, and perhaps created again under the same slug.
            self.forget(slug);
            entry = self.resolve(slug).await?;
            counted = self.hit_entry(slug, &entry, hit).await?;
        }
        let counted = counted.ok_or(CountError::NotFound)?;
        if let Some(visitor) = hit.visitor {
            self.cache.visit(entry.id, visitor);
        }
        Ok(counted)
    }

    async fn hit_entry(
        &self,
        slug: &Slug,
        entry: &Entry,
        hit: &HitFrom<'_>,
    ) -> Result<Option<HitCount>, CountError> {
        let mut page = checked_page(entry, hit)?;
        let may_create = self.new_pages.room(hit.client, entry.id);
        if let Some(named) = page.as_ref().filter(|_| !may_create) {
            // Past the budget for new pages: a page the site has counts by
            // name (only a page with hits is kept), a new one on `(other)`.
            if self.page_count(slug, named).await? == 0 {
                page = Some(Page::overflow());
            }
        }
        let Some((count, page_count)) = self.hit_id(entry.id, hit.request_id, page.clone()).await?
        else {
            return Ok(None);
        };
        if page_count.is_some_and(|c| c.count == 1 && !c.overflow) && may_create {
            self.new_pages.charge(hit.client, entry.id);
        }
        let page = page.zip(page_count).map(|(page, counted)| {
            let page = if counted.overflow {
                Page::overflow()
            } else {
                page
            };
            (page, counted.count)
        });
        Ok(Some(HitCount { count, page }))
    }

    /// What [`Counter::hit`] would check and answer, without counting: the
    /// site's count and, if the hit names a page, that page's, as they
    /// stand. For hits that must not count (a crawler's) but must be
    /// answered as if they had.
    pub async fn as_if_counted(
        &self,
        slug: &Slug,
        hit: &HitFrom<'_>,
    ) -> Result<HitCount, CountError> {
        let entry = self.resolve(slug).await?;
        let page = checked_page(&entry, hit)?;
        let count = self.count(slug).await?;
        let page = match page {
            Some(page) => {
                let n = self.page_count(slug, &page).await?;
                Some((page, n))
            }
            None => None,
        };
        Ok(HitCount { count, page })
    }

    /// Normalises a page named by a reader of `slug` by the site's rules
    /// ([`Page::named`]: `(other)`, which no hit can name, reads the
    /// overflow page).
    pub async fn page_of(&self, slug: &Slug, raw: &str) -> Result<Page, CountError> {
        let entry = self.resolve(slug).await?;
        Ok(Page::named(raw, &entry.rules)?)
    }

    /// One slice of a site's pages, ranked by their hits in the days
    /// `[from, to)`: cut from the whole ranking, kept a few seconds (see
    /// [`ranking`]), so that every slice costs about the same whatever the
    /// site's number of pages.
    pub async fn pages(
        &self,
        slug: &Slug,
        from: Day,
        to: Day,
        limit: i64,
        offset: i64,
    ) -> Result<PageList, CountError> {
        self.check_ready()?;
        let site = self.store.site(slug).await?.ok_or(CountError::NotFound)?;
        if let Some(kept) = self.rankings.find(&site, from, to) {
            return Ok(kept.slice(limit, offset));
        }
        if site.pages < ranking::MAX_ROWS {
            let since = std::time::Instant::now();
            let whole = self
                .store
                .pages(slug, from, to, ranking::MAX_ROWS, 0)
                .await?
                .ok_or(CountError::NotFound)?;
            if !whole.more {
                let kept = self
                    .rankings
                    .keep(from, to, ranking::Ranking::new(whole, since));
                return Ok(kept.slice(limit, offset));
            }
        }
        // Too many pages to keep whole: the store ranks them for this slice.
        self.store
            .pages(slug, from, to, limit, offset)
            .await?
            .ok_or(CountError::NotFound)
    }

    /// Deletes the pages of `slug` that `which` selects, with their daily
    /// hits; the site's count and series stay as they are, and its page
    /// total drops by the named pages deleted. Returns how many went. This
    /// replica's rankings of the site are forgotten whatever the outcome.
    pub async fn delete_pages(&self, slug: &Slug, which: &PageSelector) -> Result<u64, CountError> {
        let site = self.site(slug).await?;
        let deleted = self.store.delete_pages(site.id, which).await;
        self.rankings.forget(site.id);
        deleted?.ok_or(CountError::NotFound)
    }

    /// A page's count without counting: 0 for a page never hit.
    pub async fn page_count(&self, slug: &Slug, page: &Page) -> Result<i64, CountError> {
        self.check_ready()?;
        // A range that starts after today holds no day: all is before it.
        let after = today() + 1;
        let series = self
            .store
            .page_series(slug, page, after, after)
            .await?
            .ok_or(CountError::NotFound)?;
        Ok(series.before)
    }

    /// Replaces the lists of a site's rules (kept query parameters,
    /// allowed origins) that `patch` gives. This replica uses them at once;
    /// the others within [`RULES_FRESH`].
    pub async fn set_rules(&self, slug: &Slug, patch: RulesPatch) -> Result<Site, CountError> {
        let patch = patch.checked()?;
        let site = self.site(slug).await?;
        let site = self
            .store
            .set_rules(site.id, &patch)
            .await?
            .ok_or(CountError::NotFound)?;
        self.remember(&site);
        Ok(site)
    }

    /// A site's committed count without counting: from the cache when it
    /// has it, else from the store (and then cached).
    pub async fn count(&self, slug: &Slug) -> Result<i64, CountError> {
        let id = self.resolve(slug).await?.id;
        if let Some(cached) = self.cache.count(id).await {
            return Ok(cached.count);
        }
        match self.store.site_by_id(id).await? {
            Some(site) => {
                self.cache.publish(
                    id,
                    Versioned {
                        generation: site.generation,
                        count: site.count,
                    },
                );
                Ok(site.count)
            }
            None => {
                self.forget(slug);
                Err(CountError::NotFound)
            }
        }
    }

    /// Unique-visitor estimates for a site on the given days; `None` when
    /// the cache holding them is down.
    pub async fn uniques(&self, slug: &Slug, days: &[Day]) -> Result<Option<Vec<u64>>, CountError> {
        let id = self.resolve(slug).await?.id;
        Ok(self.cache.uniques(id, days).await)
    }

    async fn hit_id(
        &self,
        site: SiteId,
        key: Option<&str>,
        page: Option<Page>,
    ) -> Result<Option<(i64, Option<PageCount>)>, CountError> {
        let key = key.map(Box::from);
        self.check_ready()?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending {
                site,
                key,
                page,
                queued: tokio::time::Instant::now(),
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.metrics.queue_rejection();
                    CountError::Overloaded
                }
                mpsc::error::TrySendError::Closed(_) => CountError::ShuttingDown,
            })?;
        match answer.await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(CommitError::Unavailable(why))) => Err(CountError::Unavailable(why.to_string())),
            Ok(Err(CommitError::OutcomeUnknown(why))) => {
                Err(CountError::OutcomeUnknown(why.to_string()))
            }
            Ok(Err(CommitError::CountLimit)) => Err(CountError::CountLimit),
            Ok(Err(CommitError::Internal)) => Err(CountError::Internal(anyhow::anyhow!(
                "the commit holding this hit failed"
            ))),
            Err(_) => Err(CountError::ShuttingDown),
        }
    }

    /// The site, with its current count, without counting.
    pub async fn site(&self, slug: &Slug) -> Result<Site, CountError> {
        self.check_ready()?;
        self.store.site(slug).await?.ok_or(CountError::NotFound)
    }

    pub async fn default_site(&self) -> Result<Site, CountError> {
        self.check_ready()?;
        self.store
            .site_by_id(DEFAULT_SITE_ID)
            .await?
            .ok_or(CountError::NotFound)
    }

    pub async fn sites(&self) -> Result<Vec<Site>, CountError> {
        self.check_ready()?;
        Ok(self.store.sites().await?)
    }

    /// Records a signed-out dashboard session (a hash of its cookie) until
    /// it would have expired; kept in the store so every replica sees it.
    pub async fn revoke_session(
        &self,
        hash: &str,
        expires: std::time::SystemTime,
    ) -> Result<(), CountError> {
        self.check_ready()?;
        Ok(self.store.revoke_session(hash, expires).await?)
    }

    /// Whether a dashboard session was signed out.
    pub async fn session_revoked(&self, hash: &str) -> Result<bool, CountError> {
        self.check_ready()?;
        Ok(self.store.session_revoked(hash).await?)
    }

    /// Creates a site with its rules, checked first: a bad one writes
    /// nothing.
    pub async fn create_site(&self, mut new: NewSite) -> Result<Site, CountError> {
        validate_name(&new.name)?;
        validate_count(new.count)?;
        new.rules = new.rules.checked()?;
        self.check_ready()?;
        let site = self.store.create_site(&new).await?;
        self.remember(&site);
        Ok(site)
    }

    pub async fn delete_site(&self, slug: &Slug) -> Result<(), CountError> {
        let site = self.site(slug).await?;
        if site.id == DEFAULT_SITE_ID {
            return Err(CountError::DefaultSite);
        }
        self.forget(slug);
        let deleted = self.store.delete_site(site.id).await?;
        self.cache.forget(site.id);
        self.rankings.forget(site.id);
        if deleted {
            Ok(())
        } else {
            Err(CountError::NotFound)
        }
    }

    /// Sets a site's count (to import from another counter, or to reset).
    pub async fn set_count(&self, slug: &Slug, count: i64) -> Result<i64, CountError> {
        validate_count(count)?;
        let site = self.site(slug).await?;
        self.set_count_id(site.id, count).await
    }

    /// The seed's `/resetcounter`: the default site back to 0.
    pub async fn reset_default(&self) -> Result<(), CountError> {
        self.set_count_id(DEFAULT_SITE_ID, 0).await.map(drop)
    }

    async fn set_count_id(&self, id: SiteId, count: i64) -> Result<i64, CountError> {
        self.check_ready()?;
        let set = self
            .store
            .set_count(id, count)
            .await?
            .ok_or(CountError::NotFound)?;
        // A new generation: outranks every cached count from before.
        self.cache.publish(id, set);
        Ok(set.count)
    }

    /// Stops taking hits, commits every hit already queued, and waits for
    /// the writer to finish.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        let writer = crate::sync::lock(&self.writer).take();
        if let Some(writer) = writer {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "the commit writer failed");
            }
        }
    }

    fn check_ready(&self) -> Result<(), CountError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(CountError::Unavailable(
                "the store's schema is not ready yet".into(),
            ))
        }
    }

    /// The site's id and rules: from the directory while they are fresh,
    /// else from the store (and if the store cannot answer, what the
    /// directory had, however old).
    /// A site's rules, as fresh as [`RULES_FRESH`] keeps them.
    pub async fn rules(&self, slug: &Slug) -> Result<Arc<SiteRules>, CountError> {
        Ok(self.resolve(slug).await?.rules)
    }

    async fn resolve(&self, slug: &Slug) -> Result<Entry, CountError> {
        let known = self.lookup(slug);
        if let Some(entry) = known.as_ref().filter(|e| e.read.elapsed() < RULES_FRESH) {
            return Ok(entry.clone());
        }
        self.check_ready()?;
        match self.store.site(slug).await {
            Ok(Some(site)) => Ok(self.remember(&site)),
            Ok(None) => {
                self.forget(slug);
                Err(CountError::NotFound)
            }
            Err(StoreError::Unavailable(_) | StoreError::Refused(_)) if known.is_some() => {
                Ok(known.expect("checked just now"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lookup(&self, slug: &Slug) -> Option<Entry> {
        read(&self.directory).get(slug).cloned()
    }

    fn remember(&self, site: &Site) -> Entry {
        let entry = Entry {
            id: site.id,
            rules: Arc::new(site.rules.clone()),
            read: tokio::time::Instant::now(),
        };
        write(&self.directory).insert(site.slug.clone(), entry.clone());
        entry
    }

    fn forget(&self, slug: &Slug) {
        write(&self.directory).remove(slug);
    }
}
