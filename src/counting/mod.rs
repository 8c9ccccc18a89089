//! Counting: the services over the [`domain`](crate::domain), with no HTTP
//! and no SQL, one per concept, each with its own handle:
//!
//! - [`HitService`]: counting hits through the group-commit [`writer`],
//!   reading a count, unique visitors, the per-client hit limit;
//! - [`SiteService`]: sites, their settings, setting and resetting counts;
//! - [`PageService`]: a site's pages, ranked, counted, deleted;
//! - [`SeriesService`]: series over ranges, and their retention;
//! - [`TransferService`]: export and import;
//! - [`SessionService`]: signed-out dashboard sessions;
//! - [`BreakdownService`]: hits per referrer, campaign, browser and the
//!   other dimensions;
//! - [`Health`]: migrations, readiness, the store and the cache as they
//!   answer.
//!
//! [`Services`] holds them all; it is the only way from the HTTP layer
//! (and the background tasks) to the store and the cache. Slugs are
//! resolved to ids through one shared [`Directory`], since sites are
//! created and deleted rarely and hits are counted constantly.

pub mod breakdowns;
pub mod directory;
pub mod health;
pub mod hits;
pub mod new_pages;
pub mod pages;
pub mod ranking;
pub mod retention;
pub mod series;
pub mod sessions;
pub mod sites;
pub mod transfer;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use breakdowns::BreakdownService;
pub use directory::Directory;
pub use health::Health;
pub use hits::HitService;
pub use pages::PageService;
pub use series::SeriesService;
pub use sessions::SessionService;
pub use sites::SiteService;
pub use transfer::TransferService;

use crate::audience::{Audience, Visit};
use crate::cache::Cache;
use crate::domain::{Invalid, InvalidPage, InvalidSlug, Page, Visitor};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

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
    /// An alias given is another site's slug or alias.
    #[error("an alias given is another site's slug or alias")]
    AliasTaken,
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
    /// What the request says of where the visit came from and who made
    /// it, for the breakdowns.
    pub visit: Visit<'a>,
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
    /// Distinct values a site may have per breakdown dimension per day.
    pub value_limit: i64,
    /// How many new pages clients and sites may create per window.
    pub new_pages: new_pages::NewPageBudget,
}

/// Whether the store's schema is in place: until it is, every service
/// answers [`CountError::Unavailable`]. One flag, shared by all services.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Ok` once the schema is in place.
    pub fn check(&self) -> Result<(), CountError> {
        if self.is_set() {
            Ok(())
        } else {
            Err(CountError::Unavailable(
                "the store's schema is not ready yet".into(),
            ))
        }
    }
}

/// What the services share.
#[derive(Debug, Clone)]
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    pub directory: Arc<Directory>,
    pub ready: Ready,
    pub metrics: Arc<Metrics>,
}

/// Every counting service.
#[derive(Debug)]
pub struct Services {
    pub hits: HitService,
    pub sites: SiteService,
    pub pages: PageService,
    pub series: SeriesService,
    pub transfer: TransferService,
    pub sessions: SessionService,
    pub breakdowns: BreakdownService,
    pub health: Health,
}

impl Services {
    /// The services over `store` and `cache`, with the group-commit writer
    /// started. Hits are refused (503) until [`Health::set_ready`] says
    /// the store's schema is in place.
    pub fn start(
        store: Arc<dyn Store>,
        cache: Arc<dyn Cache>,
        settings: WriterSettings,
        metrics: Arc<Metrics>,
        audience: Option<Arc<Audience>>,
    ) -> Self {
        let ready = Ready::default();
        let directory = Arc::new(Directory::new(store.clone(), ready.clone()));
        let rankings = Arc::new(ranking::Rankings::default());
        let parts = Parts {
            store: store.clone(),
            cache: cache.clone(),
            directory: directory.clone(),
            ready: ready.clone(),
            metrics: metrics.clone(),
        };
        let pages = PageService {
            store: store.clone(),
            directory: directory.clone(),
            rankings: rankings.clone(),
            ready: ready.clone(),
        };
        Services {
            hits: HitService::start(parts, pages.clone(), settings, audience),
            sites: SiteService {
                store: store.clone(),
                cache: cache.clone(),
                directory: directory.clone(),
                rankings,
                ready: ready.clone(),
            },
            pages,
            series: SeriesService {
                store: store.clone(),
                pages: store.clone(),
                ready: ready.clone(),
            },
            transfer: TransferService {
                store: store.clone(),
                cache: cache.clone(),
                directory: directory.clone(),
                ready: ready.clone(),
                page_limit: settings.page_limit,
            },
            sessions: SessionService {
                store: store.clone(),
                ready: ready.clone(),
            },
            breakdowns: BreakdownService {
                store: store.clone(),
                directory,
                ready: ready.clone(),
            },
            health: Health {
                store,
                cache,
                ready,
                metrics,
            },
        }
    }
}
