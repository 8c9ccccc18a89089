//! Counting hits: the queue to the group-commit [`writer`](super::writer),
//! each hit's answer, reading a count, unique visitors, and the per-client
//! limit on hits.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::directory::{Directory, Entry};
use super::new_pages::NewPages;
use super::pages::PageService;
use super::writer::{self, CommitError, Pending};
use super::{CountError, HitCount, HitFrom, Parts, Ready, WriterSettings};
use crate::audience::{Audience, Visit};
use crate::cache::Cache;
use crate::domain::breakdown::{self, Facets};
use crate::domain::time::Day;
use crate::domain::{DEFAULT_SITE_ID, Page, SiteId, Slug, Versioned};
use crate::metrics::Metrics;
use crate::store::{Backend, PageCount, Store, writes_inline};

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

#[derive(Debug)]
pub struct HitService {
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    directory: Arc<Directory>,
    pages: PageService,
    ready: Ready,
    queue: mpsc::Sender<Pending>,
    queue_capacity: usize,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    /// What clients and sites may still create of new pages.
    new_pages: NewPages,
    /// Reads a hit's breakdown values; `None` when they are not kept.
    audience: Option<Arc<Audience>>,
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

impl HitService {
    /// Starts the group-commit writer. Hits are refused (503) until the
    /// store's schema is in place ([`Ready`]).
    pub fn start(
        parts: Parts,
        pages: PageService,
        settings: WriterSettings,
        audience: Option<Arc<Audience>>,
    ) -> Self {
        let Parts {
            store,
            cache,
            directory,
            ready,
            metrics,
        } = parts;
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
        HitService {
            store,
            cache,
            directory,
            pages,
            ready,
            queue,
            queue_capacity: settings.queue,
            stop,
            writer: Mutex::new(Some(writer)),
            metrics,
            new_pages: NewPages::new(settings.new_pages),
            audience,
        }
    }

    /// Counts one hit on the default site; returns the new count.
    pub async fn hit_default(&self, hit: &HitFrom<'_>) -> Result<i64, CountError> {
        let (count, _) = self
            .hit_id(
                DEFAULT_SITE_ID,
                hit.request_id,
                None,
                self.facets(hit, None),
            )
            .await?
            .ok_or(CountError::NotFound)?;
        if let Some(visitor) = hit.visitor {
            self.cache.visit(DEFAULT_SITE_ID, visitor);
        }
        Ok(count)
    }

    /// Counts one hit on `slug` (and on its page, if it names one).
    pub async fn hit(&self, slug: &Slug, hit: &HitFrom<'_>) -> Result<HitCount, CountError> {
        let mut entry = self.directory.resolve(slug).await?;
        let mut counted = self.hit_entry(slug, &entry, hit).await?;
        if counted.is_none() {
            // The id we had is gone: the site was deleted, perhaps by another
            // replica, and perhaps created again under the same slug.
            self.directory.forget(slug);
            entry = self.directory.resolve(slug).await?;
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
            if self.pages.page_count(slug, named).await? == 0 {
                page = Some(Page::overflow());
            }
        }
        let facets = self.facets(hit, Some((slug, entry)));
        let Some((count, page_count)) = self
            .hit_id(entry.id, hit.request_id, page.clone(), facets)
            .await?
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

    /// What [`HitService::hit`] would check and answer, without counting: the
    /// site's count and, if the hit names a page, that page's, as they
    /// stand. For hits that must not count (a crawler's) but must be
    /// answered as if they had.
    pub async fn as_if_counted(
        &self,
        slug: &Slug,
        hit: &HitFrom<'_>,
    ) -> Result<HitCount, CountError> {
        let entry = self.directory.resolve(slug).await?;
        let page = checked_page(&entry, hit)?;
        let count = self.count(slug).await?;
        let page = match page {
            Some(page) => {
                let n = self.pages.page_count(slug, &page).await?;
                Some((page, n))
            }
            None => None,
        };
        Ok(HitCount { count, page })
    }

    /// A site's committed count without counting: from the cache when it
    /// has it, else from the store (and then cached).
    pub async fn count(&self, slug: &Slug) -> Result<i64, CountError> {
        let id = self.directory.resolve(slug).await?.id;
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
                self.directory.forget(slug);
                Err(CountError::NotFound)
            }
        }
    }

    /// Unique-visitor estimates for a site on the given days; `None` when
    /// the cache holding them is down.
    pub async fn uniques(&self, slug: &Slug, days: &[Day]) -> Result<Option<Vec<u64>>, CountError> {
        let id = self.directory.resolve(slug).await?.id;
        Ok(self.cache.uniques(id, days).await)
    }

    /// What a hit counts under in the breakdowns, if they are kept. A
    /// referrer from the site's own pages (`site`: its slug and rules; the
    /// default site has none) is no referral.
    fn facets(&self, hit: &HitFrom<'_>, site: Option<(&Slug, &Entry)>) -> Option<Box<Facets>> {
        let audience = self.audience.as_ref()?;
        let visit = Visit {
            page: hit.page,
            ..hit.visit
        };
        Some(Box::new(audience.facets(&visit, |host| {
            let (slug, origins) = match site {
                Some((slug, entry)) => (slug.as_str(), &entry.rules.origins[..]),
                None => ("", &[][..]),
            };
            breakdown::is_own_host(host, hit.origin, slug, origins)
        })))
    }

    async fn hit_id(
        &self,
        site: SiteId,
        key: Option<&str>,
        page: Option<Page>,
        facets: Option<Box<Facets>>,
    ) -> Result<Option<(i64, Option<PageCount>)>, CountError> {
        let key = key.map(Box::from);
        self.ready.check()?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending {
                site,
                key,
                page,
                facets,
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

    /// Forgets the request ids of hits from before `before`.
    pub async fn purge_requests(&self, before: std::time::SystemTime) -> Result<u64, CountError> {
        Ok(self.store.purge_requests(before).await?)
    }

    /// Hits waiting for a commit.
    pub fn queue_depth(&self) -> usize {
        self.queue_capacity - self.queue.capacity()
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
}
