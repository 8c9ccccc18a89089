//! Counting: the services over the [`domain`](crate::domain), with no HTTP
//! and no SQL.
//!
//! [`Counter`] is the only way from the HTTP layer (and the background
//! tasks) to the store and the cache. Hits go through the group-commit
//! [`writer`]; everything else goes straight to the store. Site slugs are
//! resolved to ids through a small in-process directory, since sites are
//! created and deleted rarely and hits are counted constantly.

pub mod retention;
pub mod series;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cache::{Cache, CacheStatus};
use crate::domain::time::Day;
use crate::domain::{
    DEFAULT_SITE_ID, Invalid, InvalidSlug, NewSite, Site, SiteId, Slug, Versioned, Visitor,
    validate_count, validate_name,
};
use crate::limiter::Admission;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sync::{read, write};
use writer::{CommitError, Pending};

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("no site with this slug")]
    NotFound,
    #[error("a site with this slug already exists")]
    Conflict,
    #[error("the default site cannot be deleted")]
    DefaultSite,
    #[error("the count is at its maximum")]
    CountLimit,
    #[error("too many hits are waiting for a commit")]
    Overloaded,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
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

impl From<InvalidSlug> for CountError {
    fn from(e: InvalidSlug) -> Self {
        CountError::InvalidInput(e.to_string())
    }
}

impl From<StoreError> for CountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => CountError::Unavailable(why),
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
}

/// Tuning for the write path.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub queue: usize,
    pub max_batch: usize,
    /// How long a hit may wait for its commit, queueing included.
    pub store_timeout: std::time::Duration,
}

#[derive(Debug)]
pub struct Counter {
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    queue: mpsc::Sender<Pending>,
    queue_capacity: usize,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    directory: RwLock<HashMap<Slug, SiteId>>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
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
        let writer = tokio::spawn(writer::run(
            rx,
            stop_rx,
            store.clone(),
            cache.clone(),
            settings.max_batch,
            settings.store_timeout,
            metrics.clone(),
        ));
        Counter {
            store,
            cache,
            queue,
            queue_capacity: settings.queue,
            stop,
            writer: Mutex::new(Some(writer)),
            directory: RwLock::new(HashMap::new()),
            ready: AtomicBool::new(false),
            metrics,
        }
    }

    /// Applies the store's migrations that are not applied yet; returns
    /// the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>, CountError> {
        Ok(self.store.migrate().await?)
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
        let count = self
            .hit_id(DEFAULT_SITE_ID, hit.request_id)
            .await?
            .ok_or(CountError::NotFound)?;
        if let Some(visitor) = hit.visitor {
            self.cache.visit(DEFAULT_SITE_ID, visitor);
        }
        Ok(count)
    }

    /// Counts one hit on `slug`; returns the new count.
    pub async fn hit(&self, slug: &Slug, hit: &HitFrom<'_>) -> Result<i64, CountError> {
        let mut id = self.resolve(slug).await?;
        let mut count = self.hit_id(id, hit.request_id).await?;
        if count.is_none() {
            // The id we had is gone: the site was deleted, perhaps by another
            // replica, and perhaps created again under the same slug.
            self.forget(slug);
            id = self.resolve(slug).await?;
            count = self.hit_id(id, hit.request_id).await?;
        }
        let count = count.ok_or(CountError::NotFound)?;
        if let Some(visitor) = hit.visitor {
            self.cache.visit(id, visitor);
        }
        Ok(count)
    }

    /// A site's committed count without counting: from the cache when it
    /// has it, else from the store (and then cached).
    pub async fn count(&self, slug: &Slug) -> Result<i64, CountError> {
        let id = self.resolve(slug).await?;
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
        let id = self.resolve(slug).await?;
        Ok(self.cache.uniques(id, days).await)
    }

    async fn hit_id(&self, site: SiteId, key: Option<&str>) -> Result<Option<i64>, CountError> {
        let key = key.map(Box::from);
        self.check_ready()?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending {
                site,
                key,
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

    pub async fn create_site(&self, new: NewSite) -> Result<Site, CountError> {
        validate_name(&new.name)?;
        validate_count(new.count)?;
        self.check_ready()?;
        let site = self.store.create_site(&new).await?;
        self.remember(&site.slug, site.id);
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

    async fn resolve(&self, slug: &Slug) -> Result<SiteId, CountError> {
        if let Some(id) = self.lookup(slug) {
            return Ok(id);
        }
        self.check_ready()?;
        let site = self.store.site(slug).await?.ok_or(CountError::NotFound)?;
        self.remember(slug, site.id);
        Ok(site.id)
    }

    fn lookup(&self, slug: &Slug) -> Option<SiteId> {
        read(&self.directory).get(slug).copied()
    }

    fn remember(&self, slug: &Slug, id: SiteId) {
        write(&self.directory).insert(slug.clone(), id);
    }

    fn forget(&self, slug: &Slug) {
        write(&self.directory).remove(slug);
    }
}
