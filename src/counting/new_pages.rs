//! The budget for new pages: how many pages one client, and one site, may
//! create per window, each replica on its own.
//!
//! A page costs a row for good, and a site holds at most its page limit, so
//! new names are rarer than hits: a client past its budget, or a site past
//! its rate, still counts every hit, but a hit naming a page the site does
//! not have yet counts on the overflow page `(other)` until the window
//! turns. Pages the site has keep counting by name. Behind N replicas, a
//! client or a site has up to N times the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::SiteId;
use crate::sync::lock;

/// Clients (or sites) remembered at most; past it, those of past windows
/// go first, then (for an attacker with more addresses than this) the
/// oldest.
const MAX_KEYS: usize = 100_000;

/// The budget's settings; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPageBudget {
    /// New pages one client (by its rate-limit key) may create per window.
    pub per_client: u64,
    /// New pages one site may get per window, from all its clients.
    pub per_site: u64,
    pub window: Duration,
}

impl NewPageBudget {
    /// No limit.
    pub const OFF: NewPageBudget = NewPageBudget {
        per_client: 0,
        per_site: 0,
        window: Duration::from_secs(3600),
    };
}

#[derive(Debug)]
pub struct NewPages {
    budget: NewPageBudget,
    clients: Mutex<HashMap<IpAddr, Used>>,
    sites: Mutex<HashMap<SiteId, Used>>,
}

/// Pages created in one window.
#[derive(Debug, Clone, Copy)]
struct Used {
    window: u64,
    pages: u64,
}

impl NewPages {
    pub fn new(budget: NewPageBudget) -> Self {
        NewPages {
            budget: NewPageBudget {
                window: budget.window.max(Duration::from_secs(1)),
                ..budget
            },
            clients: Mutex::default(),
            sites: Mutex::default(),
        }
    }

    /// Whether a hit from `client` on `site` may create a page now.
    pub fn room(&self, client: Option<IpAddr>, site: SiteId) -> bool {
        self.room_at(client, site, SystemTime::now())
    }

    /// Notes that a hit from `client` created a page on `site`.
    pub fn charge(&self, client: Option<IpAddr>, site: SiteId) {
        self.charge_at(client, site, SystemTime::now());
    }

    fn window(&self, now: SystemTime) -> u64 {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        secs / self.budget.window.as_secs()
    }

    fn room_at(&self, client: Option<IpAddr>, site: SiteId, now: SystemTime) -> bool {
        let window = self.window(now);
        let site_ok = under(&self.sites, &site, self.budget.per_site, window);
        site_ok && client.is_none_or(|c| under(&self.clients, &c, self.budget.per_client, window))
    }

    fn charge_at(&self, client: Option<IpAddr>, site: SiteId, now: SystemTime) {
        let window = self.window(now);
        if self.budget.per_site > 0 {
            add(&self.sites, site, window);
        }
        if let Some(client) = client.filter(|_| self.budget.per_client > 0) {
            add(&self.clients, client, window);
        }
    }
}

fn under<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Used>>,
    key: &K,
    limit: u64,
    window: u64,
) -> bool {
    limit == 0
        || lock(map)
            .get(key)
            .is_none_or(|u| u.window != window || u.pages < limit)
}

fn add<K: std::hash::Hash + Eq + Copy>(map: &Mutex<HashMap<K, Used>>, key: K, window: u64) {
    let mut map = lock(map);
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, u| u.window == window);
        if map.len() >= MAX_KEYS {
            // All in this window: forget the one with the fewest pages,
            // which costs an attacker the least.
            if let Some(k) = map.iter().min_by_key(|(_, u)| u.pages).map(|(k, _)| *k) {
                map.remove(&k);
            }
        }
    }
    let used = map.entry(key).or_insert(Used { window, pages: 0 });
    if used.window != window {
        *used = Used { window, pages: 0 };
    }
    used.pages += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_client_and_a_site_each_have_their_budget_per_window() {
        let pages = NewPages::new(NewPageBudget {
            per_client: 2,
            per_site: 3,
            window: Duration::from_secs(60),
        });
        let t = at(6_000);
        assert!(pages.room_at(ip(1), 1, t));
        pages.charge_at(ip(1), 1, t);
        pages.charge_at(ip(1), 1, t);
        // Client 1 is out; another client still has room on the site.
        assert!(!pages.room_at(ip(1), 1, t));
        assert!(!pages.room_at(ip(1), 2, t));
        assert!(pages.room_at(ip(2), 1, t));
        pages.charge_at(ip(2), 1, t);
        // The site is out, for every client; another site is not.
        assert!(!pages.room_at(ip(3), 1, t));
        assert!(!pages.room_at(None, 1, t));
        assert!(pages.room_at(ip(3), 2, t));
        // The next window starts afresh.
        let next = at(6_060);
        assert!(pages.room_at(ip(1), 1, next));
        assert!(!pages.room_at(ip(3), 1, at(6_059)));
    }

    #[test]
    fn zero_is_no_limit() {
        let pages = NewPages::new(NewPageBudget::OFF);
        for _ in 0..1000 {
            pages.charge_at(ip(1), 1, at(0));
        }
        assert!(pages.room_at(ip(1), 1, at(0)));
        assert!(lock(&pages.clients).is_empty());
        assert!(lock(&pages.sites).is_empty());
    }

    #[test]
    fn clients_are_bounded() {
        let pages = NewPages::new(NewPageBudget {
            per_client: 1,
            per_site: 0,
            window: Duration::from_secs(60),
        });
        for i in 0..(MAX_KEYS as u32 + 10) {
            pages.charge_at(Some(IpAddr::from(i.to_be_bytes())), 1, at(0));
        }
        assert_eq!(lock(&pages.clients).len(), MAX_KEYS);
        // A window later, the old ones go first.
        pages.charge_at(ip(9), 1, at(60));
        assert_eq!(lock(&pages.clients).len(), 1);
    }
}
