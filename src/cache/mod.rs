//! The cache: fast count reads, per-client rate limits and unique visitors.
//!
//! It wraps the store; it is never a third place where a count lives. Every
//! cached count is a copy of a committed one, ordered by
//! [`Versioned`](crate::domain::Versioned) so that a late or repeated publish
//! can never move it backwards, and a miss (or a cache that is down) simply
//! reads the store. Nothing on a request's path waits on Redis for longer
//! than `TALLY_CACHE_TIMEOUT`, and after one failure nothing waits on it at
//! all until a background probe sees it back.
//!
//! - [`LocalCache`]: in-process, when `TALLY_REDIS_URL` is not set;
//! - [`RedisCache`]: shared by every replica, with a circuit breaker;
//! - [`RedisCache`] also adds up the per-client window of counted hits
//!   across replicas ([`limit`](crate::limit));
//! - [`hll`]: the in-process HyperLogLog for unique visitors.

mod hll;
mod local;
mod redis;

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use prometheus_client::registry::Registry;

use crate::config::CacheSettings;
use crate::domain::time::Day;
use crate::domain::{SiteId, Versioned, Visitor};
use crate::limit::Limiter;
pub use local::LocalCache;
pub use redis::RedisCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    pub backend: &'static str,
    pub up: bool,
}

#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug + 'static {
    fn status(&self) -> CacheStatus;

    /// The cached committed count of a site, if the cache has one.
    async fn count(&self, site: SiteId) -> Option<Versioned>;

    /// Offers a committed count; kept only if newer than the cached one.
    /// Never blocks: delivery to a shared cache happens in the background.
    fn publish(&self, site: SiteId, value: Versioned);

    /// Drops a deleted site's cached count.
    fn forget(&self, site: SiteId);

    /// Records a visit for the site's unique-visitor estimate (background).
    fn visit(&self, site: SiteId, visitor: &Visitor);

    /// Unique-visitor estimates for the given days, or `None` when they
    /// cannot be read now (the shared cache is down).
    async fn uniques(&self, site: SiteId, days: &[Day]) -> Option<Vec<u64>>;

    /// Registers the cache's own metrics, read at every scrape of `/metrics`.
    fn register_metrics(&self, registry: &mut Registry);
}

/// The cache `settings` ask for. Counts are cached in process only when
/// one process owns the store (SQLite): with PostgreSQL and no Redis,
/// replicas would each cache only their own commits. A shared cache also
/// shares `hit_limits`, the window of counted hits, between replicas.
pub fn open(
    settings: &CacheSettings,
    single_writer: bool,
    hit_limits: Arc<Limiter>,
) -> anyhow::Result<Arc<dyn Cache>> {
    match settings.redis_url()? {
        Some(url) => Ok(Arc::new(RedisCache::start(
            url.expose(),
            settings.redis_ca_file.as_deref(),
            settings.cache_timeout,
            hit_limits,
        )?)),
        None => Ok(Arc::new(LocalCache::new(single_writer))),
    }
}

/// A visitor's keyed hash for one site and one day's salt.
fn visitor_hash(salt: &[u8; 16], site: SiteId, visitor: &Visitor) -> u64 {
    let mut h = siphasher::sip::SipHasher24::new_with_key(salt);
    match visitor.ip {
        IpAddr::V4(ip) => h.write(&ip.octets()),
        IpAddr::V6(ip) => h.write(&ip.octets()),
    }
    h.write_u8(0xff);
    h.write(visitor.user_agent.as_bytes());
    h.write_u8(0xff);
    h.write_i64(site);
    h.finish()
}

/// A new secret salt from the OS's random source.
fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    if getrandom::fill(&mut salt).is_err() {
        // No OS randomness: a time-and-address seed still keeps hashes from
        // being precomputable, and this does not happen on Linux.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        salt = seed.to_le_bytes();
    }
    salt
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::{Metrics, types};

    fn limiter() -> Arc<Limiter> {
        Arc::new(Limiter::new(0, Duration::from_secs(60)))
    }

    #[test]
    fn the_in_process_cache_adds_its_up_gauge() {
        let mut m = Metrics::default();
        LocalCache::new(true).register_metrics(m.registry_mut());
        let text = m.render(0);
        let base = types(&Metrics::default().render(0)).len();
        assert_eq!(types(&text).len(), base + 1, "{text}");
        assert!(text.ends_with(
            "# HELP tally_cache_up 1 when the cache answers (always, in process).\n\
             # TYPE tally_cache_up gauge\n\
             tally_cache_up{backend=\"in-process\"} 1\n"
        ));
    }

    #[tokio::test]
    async fn the_redis_cache_adds_its_up_gauge_and_counters() {
        let mut m = Metrics::default();
        // Nothing listens on port 1: the circuit stays open (down).
        let cache = RedisCache::start(
            "redis://127.0.0.1:1",
            None,
            Duration::from_millis(50),
            limiter(),
        )
        .unwrap();
        cache.register_metrics(m.registry_mut());
        let text = m.render(0);
        let base = types(&Metrics::default().render(0)).len();
        assert_eq!(
            types(&text)[base..],
            [
                ("tally_cache_errors_total", "counter"),
                ("tally_cache_hits_total", "counter"),
                ("tally_cache_misses_total", "counter"),
                ("tally_uniques_dropped_total", "counter"),
                ("tally_cache_up", "gauge"),
            ],
            "{text}"
        );
        assert!(text.contains(
            "# HELP tally_uniques_dropped_total Visits not recorded for unique counts (Redis down or backlog full).\n"
        ));
        assert!(text.contains("\ntally_cache_errors_total 0\n"), "{text}");
        assert!(text.contains("\ntally_cache_hits_total 0\n"), "{text}");
        assert!(text.contains("\ntally_cache_misses_total 0\n"), "{text}");
        assert!(
            text.contains("\ntally_cache_up{backend=\"redis\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn visitor_hashes_depend_on_every_part() {
        let v = Visitor {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: "curl/8".into(),
        };
        let salt = [7u8; 16];
        let base = visitor_hash(&salt, 1, &v);
        assert_eq!(base, visitor_hash(&salt, 1, &v.clone()));
        assert_ne!(base, visitor_hash(&[8u8; 16], 1, &v));
        assert_ne!(base, visitor_hash(&salt, 2, &v));
        let other_ua = Visitor {
            user_agent: "curl/9".into(),
            ..v.clone()
        };
        assert_ne!(base, visitor_hash(&salt, 1, &other_ua));
        let other_ip = Visitor {
            ip: "192.0.2.2".parse().unwrap(),
            ..v
        };
        assert_ne!(base, visitor_hash(&salt, 1, &other_ip));
    }
}
