//! The in-process cache, for a tally without Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::hll::Hll;
use super::{Cache, CacheStatus, random_salt, visitor_hash};
use crate::domain::time::{Day, today};
use crate::domain::{SiteId, UNIQUE_DAYS_KEPT, Versioned, Visitor};
use crate::sync::lock;

#[derive(Debug)]
pub struct LocalCache {
    /// `None` when counts must not be cached here (several writers).
    counts: Option<Mutex<HashMap<SiteId, Versioned>>>,
    uniques: Mutex<Uniques>,
}

#[derive(Debug, Default)]
struct Uniques {
    /// Today's salt; replaced (and the old one forgotten) when the day turns.
    salt: Option<(Day, [u8; 16])>,
    days: HashMap<(SiteId, Day), Hll>,
}

impl LocalCache {
    pub fn new(cache_counts: bool) -> Self {
        LocalCache {
            counts: cache_counts.then(|| Mutex::new(HashMap::new())),
            uniques: Mutex::new(Uniques::default()),
        }
    }
}

#[async_trait]
impl Cache for LocalCache {
    fn status(&self) -> CacheStatus {
        CacheStatus {
            backend: "in-process",
            up: true,
        }
    }

    async fn count(&self, site: SiteId) -> Option<Versioned> {
        lock(self.counts.as_ref()?).get(&site).copied()
    }

    fn publish(&self, site: SiteId, value: Versioned) {
        if let Some(counts) = &self.counts {
            let mut counts = lock(counts);
            let cached = counts.entry(site).or_insert(value);
            *cached = (*cached).max(value);
        }
    }

    fn forget(&self, site: SiteId) {
        if let Some(counts) = &self.counts {
            lock(counts).remove(&site);
        }
        lock(&self.uniques).days.retain(|(s, _), _| *s != site);
    }

    fn visit(&self, site: SiteId, visitor: &Visitor) {
        let day = today();
        let mut uniques = lock(&self.uniques);
        let salt = match uniques.salt {
            Some((d, salt)) if d == day => salt,
            _ => {
                let salt = random_salt();
                uniques.salt = Some((day, salt));
                uniques.days.retain(|(_, d), _| *d > day - UNIQUE_DAYS_KEPT);
                salt
            }
        };
        let hash = visitor_hash(&salt, site, visitor);
        uniques.days.entry((site, day)).or_default().add(hash);
    }

    async fn uniques(&self, site: SiteId, days: &[Day]) -> Option<Vec<u64>> {
        let uniques = lock(&self.uniques);
        Some(
            days.iter()
                .map(|d| uniques.days.get(&(site, *d)).map_or(0, Hll::count))
                .collect(),
        )
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_label(("backend".into(), "in-process".into()))
            .register(
                "tally_cache_up",
                "1 when the cache answers (always, in process)",
                ConstGauge::new(1),
            );
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn cache(counts: bool) -> LocalCache {
        LocalCache::new(counts)
    }

    fn v(generation: i64, count: i64) -> Versioned {
        Versioned { generation, count }
    }

    #[tokio::test]
    async fn counts_never_move_backwards() {
        let c = cache(true);
        c.publish(1, v(0, 10));
        c.publish(1, v(0, 7));
        assert_eq!(c.count(1).await, Some(v(0, 10)));
        // A reset starts a new generation: lower, but newer.
        c.publish(1, v(1, 0));
        c.publish(1, v(0, 11));
        assert_eq!(c.count(1).await, Some(v(1, 0)));
        c.forget(1);
        assert_eq!(c.count(1).await, None);
    }

    #[tokio::test]
    async fn counts_are_not_cached_for_several_writers() {
        let c = cache(false);
        c.publish(1, v(0, 10));
        assert_eq!(c.count(1).await, None);
    }

    #[tokio::test]
    async fn uniques_count_distinct_visitors_per_site() {
        let c = cache(false);
        for i in 0..50u8 {
            for _ in 0..3 {
                let visitor = Visitor {
                    ip: IpAddr::from([10, 0, 0, i]),
                    user_agent: "x".into(),
                };
                c.visit(1, &visitor);
            }
        }
        let other = Visitor {
            ip: IpAddr::from([10, 0, 0, 1]),
            user_agent: "y".into(),
        };
        c.visit(1, &other);
        c.visit(2, &other);
        let d = today();
        assert_eq!(c.uniques(1, &[d, d - 1]).await, Some(vec![51, 0]));
        assert_eq!(c.uniques(2, &[d]).await, Some(vec![1]));
    }
}
