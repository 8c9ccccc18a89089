//! Whether tally can serve: the store's schema, the store and the cache
//! as they answer now, for `/readyz` and start-up.

use std::sync::Arc;

use super::{CountError, Ready};
use crate::cache::{Cache, CacheStatus};
use crate::metrics::Metrics;
use crate::store::migrate::{self, Contracts, Migrated};
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct Health {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache: Arc<dyn Cache>,
    pub(super) ready: Ready,
    pub(super) metrics: Arc<Metrics>,
}

impl Health {
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

    pub fn cache_status(&self) -> CacheStatus {
        self.cache.status()
    }

    pub fn set_ready(&self) {
        self.ready.set();
        self.metrics.set_store_ready(true);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.is_set()
    }
}
