//! Per-client rate limiting with a sliding window.
//!
//! Each client has a count for the current fixed window and the previous
//! one; the estimate weights the previous window by how much of it still
//! overlaps the sliding window, which smooths the burst a plain fixed window
//! allows at its edges. Decisions are always local (no network on the
//! request path). With Redis, every replica adds its local counts to a
//! shared per-window counter a few times a second and learns the total, so
//! the limit holds across replicas to within one sync interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::lock;

/// Clients tracked at most; past this the oldest windows are dropped first.
const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over the limit: retry after this many seconds.
    Limited {
        retry_after: u64,
    },
}

#[derive(Debug)]
pub struct Limiter {
    /// Hits per window per client; 0 turns limiting off.
    limit: u64,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Client {
    window: u64,
    /// This window's hits known from the shared counter (all replicas).
    shared: u64,
    /// This window's hits admitted here and not yet added to the shared counter.
    unsynced: u64,
    /// The previous window's total.
    previous: u64,
}

/// What one replica adds to the shared counter for one client and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub client: IpAddr,
    pub window: u64,
    pub hits: u64,
}

impl Limiter {
    pub fn new(limit_per_window: u64, window: Duration) -> Self {
        Limiter {
            limit: limit_per_window,
            window: window.max(Duration::from_secs(1)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    pub fn window_secs(&self) -> u64 {
        self.window.as_secs()
    }

    pub fn admit(&self, client: IpAddr) -> Admission {
        self.admit_at(client, SystemTime::now())
    }

    fn admit_at(&self, client: IpAddr, now: SystemTime) -> Admission {
        if self.limit == 0 {
            return Admission::Allowed;
        }
        let (window, elapsed) = self.position(now);
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, c| c.window >= window);
        }
        let c = clients.entry(client).or_default();
        roll(c, window);
        let w = self.window.as_secs_f64();
        let overlap = 1.0 - elapsed / w;
        let current = c.shared + c.unsynced;
        let estimate = c.previous as f64 * overlap + current as f64;
        if estimate + 1.0 > self.limit as f64 {
            return Admission::Limited {
                retry_after: self.retry_after(c.previous, current, elapsed),
            };
        }
        c.unsynced += 1;
        Admission::Allowed
    }

    /// Seconds until one more hit would be admitted, if no new hits come:
    /// the first `t` seconds into a window with `old` hits in the window
    /// before it and `now` in its own where `old * (1 - t/w) + now + 1 <=
    /// limit`. Rounded up, so a client that waits exactly this long is let in.
    fn retry_after(&self, previous: u64, current: u64, elapsed: f64) -> u64 {
        let w = self.window.as_secs_f64();
        let admitted_at = |old: u64, now: u64| {
            // `old > 0` here: with no old hits, `now + 1 <= limit` would
            // already admit.
            w * (1.0 - (self.limit - now - 1) as f64 / old as f64)
        };
        let wait = if current < self.limit {
            // Later in this window, once enough of the previous one has slid out.
            admitted_at(previous, current) - elapsed
        } else {
            // Not in this window: in the next, this window's hits are the old
            // ones, and they slide out the same way.
            w - elapsed + admitted_at(current, 0)
        };
        (wait.max(0.0).ceil() as u64).max(1)
    }

    /// The window index and seconds into it.
    fn position(&self, now: SystemTime) -> (u64, f64) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let w = self.window.as_secs();
        (
            since.as_secs() / w,
            (since.as_secs() % w) as f64 + f64::from(since.subsec_millis()) / 1000.0,
        )
    }

    /// The hits admitted here since the last sync, to add to the shared
    /// counters. Clients with none are included while their window is
    /// current, so their total from other replicas is learned too.
    pub fn take_deltas(&self) -> Vec<Delta> {
        let (window, _) = self.position(SystemTime::now());
        let mut clients = self.lock();
        clients.retain(|_, c| c.window + 1 >= window);
        clients
            .iter_mut()
            .filter(|(_, c)| c.window == window)
            .map(|(ip, c)| {
                let hits = std::mem::take(&mut c.unsynced);
                c.shared += hits;
                Delta {
                    client: *ip,
                    window,
                    hits,
                }
            })
            .collect()
    }

    /// The shared counter's total after adding a delta.
    pub fn learn(&self, client: IpAddr, window: u64, total: u64) {
        if let Some(c) = self.lock().get_mut(&client) {
            if c.window == window {
                c.shared = c.shared.max(total);
            }
        }
    }

    /// Deltas that could not be delivered count locally again.
    pub fn restore(&self, deltas: &[Delta]) {
        let mut clients = self.lock();
        for d in deltas {
            if let Some(c) = clients.get_mut(&d.client) {
                if c.window == d.window {
                    c.shared -= d.hits.min(c.shared);
                    c.unsynced += d.hits;
                }
            }
        }
    }

    /// Forgets clients whose windows are over (called periodically).
    pub fn prune(&self) {
        let (window, _) = self.position(SystemTime::now());
        self.lock().retain(|_, c| c.window + 1 >= window);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        lock(&self.clients)
    }
}

fn roll(c: &mut Client, window: u64) {
    if c.window == window {
        return;
    }
    c.previous = if c.window + 1 == window {
        c.shared + c.unsynced
    } else {
        0
    };
    c.window = window;
    c.shared = 0;
    c.unsynced = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Admits `n` hits from [`IP`] at `t`; each must be allowed.
    fn allow(l: &Limiter, n: usize, t: SystemTime) {
        for _ in 0..n {
            assert_eq!(l.admit_at(IP, t), Admission::Allowed);
        }
    }

    /// The `Retry-After` a hit from [`IP`] at `t` is told; `None` if admitted.
    fn wait(l: &Limiter, t: SystemTime) -> Option<u64> {
        match l.admit_at(IP, t) {
            Admission::Allowed => None,
            Admission::Limited { retry_after } => Some(retry_after),
        }
    }

    #[test]
    fn admits_up_to_the_limit_per_client() {
        let l = Limiter::new(5, Duration::from_secs(60));
        allow(&l, 5, at(600));
        // In the next window the 5 weigh 5 * (1 - t/60); a sixth hit fits
        // once that is 4, 12 s into it: 72 s from now.
        assert_eq!(wait(&l, at(600)), Some(72));
        assert_eq!(l.admit_at(OTHER, at(600)), Admission::Allowed);
        assert_eq!(wait(&l, at(671)), Some(1));
        assert_eq!(wait(&l, at(672)), None);
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap() {
        let l = Limiter::new(10, Duration::from_secs(60));
        allow(&l, 10, at(600));
        // 30 s into the next window half of the previous 10 still count:
        // 10 * 0.5 + 5 = 10, full. One more fits once
        // 10 * (1 - t/60) + 5 + 1 <= 10, at t = 36: 6 s from now.
        allow(&l, 5, at(690));
        assert_eq!(wait(&l, at(690)), Some(6));
        // Part of a second in: 5.5 s, rounded up.
        assert_eq!(wait(&l, at(690) + Duration::from_millis(500)), Some(6));
        assert_eq!(wait(&l, at(695)), Some(1));
        allow(&l, 1, at(696));
        // Now 10 * 0.4 + 6 = 10: full again until t = 42.
        assert_eq!(wait(&l, at(696)), Some(6));
        // A window later the old hits are gone.
        assert_eq!(wait(&l, at(780)), None);
    }

    #[test]
    fn retry_after_a_full_window_with_old_hits_waits_into_the_next() {
        let l = Limiter::new(4, Duration::from_secs(60));
        allow(&l, 2, at(600));
        allow(&l, 1, at(690));
        // Other replicas admitted 3 more in this window: 4 here, at the limit.
        l.learn(IP, 690 / 60, 3);
        // The 2 old hits do not matter past this window; the 4 new ones
        // weigh 4 * (1 - t/60) in the next, and 3 + 1 fits at t = 15:
        // 30 s to the next window, then 15.
        assert_eq!(wait(&l, at(690)), Some(45));
        assert_eq!(wait(&l, at(734)), Some(1));
        assert_eq!(wait(&l, at(735)), None);
    }

    #[test]
    fn zero_means_off() {
        let l = Limiter::new(0, Duration::from_secs(60));
        for _ in 0..1000 {
            assert_eq!(l.admit(IP), Admission::Allowed);
        }
        assert!(!l.enabled());
    }

    #[test]
    fn shared_totals_count_against_the_limit() {
        let l = Limiter::new(10, Duration::from_secs(3600));
        assert_eq!(l.admit(IP), Admission::Allowed);
        let deltas = l.take_deltas();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].hits, 1);
        // Other replicas admitted 9 more.
        l.learn(IP, deltas[0].window, 10);
        assert!(matches!(l.admit(IP), Admission::Limited { .. }));
        // A failed delivery counts locally again.
        let l = Limiter::new(10, Duration::from_secs(3600));
        l.admit(IP);
        let deltas = l.take_deltas();
        l.restore(&deltas);
        assert_eq!(l.take_deltas()[0].hits, 1);
    }

    fn tracked(l: &Limiter) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = l.lock().keys().copied().collect();
        ips.sort();
        ips
    }

    fn client(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn at_the_client_cap_a_new_client_drops_the_windows_that_are_over() {
        let l = Limiter::new(10, Duration::from_secs(60));
        for n in 0..MAX_CLIENTS as u32 {
            assert_eq!(l.admit_at(client(n), at(600)), Admission::Allowed);
        }
        // In the same window nothing is over: the cap is a soft one.
        assert_eq!(l.admit_at(IP, at(619)), Admission::Allowed);
        assert_eq!(l.lock().len(), MAX_CLIENTS + 1);
        // A known client in the next window drops nobody.
        assert_eq!(l.admit_at(IP, at(660)), Admission::Allowed);
        assert_eq!(l.lock().len(), MAX_CLIENTS + 1);
        // A new one does: every window before its own goes.
        assert_eq!(l.admit_at(OTHER, at(661)), Admission::Allowed);
        assert_eq!(tracked(&l), vec![IP, OTHER]);
        // Its own count starts afresh, and IP's survives.
        assert_eq!(l.lock()[&OTHER].unsynced, 1);
        assert_eq!(l.lock()[&IP].unsynced, 1);
        assert_eq!(l.lock()[&IP].previous, 1);
    }

    #[test]
    fn pruning_forgets_clients_whose_windows_are_over() {
        let l = Limiter::new(10, Duration::from_secs(60));
        let now = SystemTime::now();
        let (gone, kept, current) = (client(1), client(2), client(3));
        // Two windows ago, one window ago (its hits still weigh), now.
        l.admit_at(gone, now - Duration::from_secs(120));
        l.admit_at(kept, now - Duration::from_secs(60));
        l.admit_at(current, now);
        l.prune();
        assert_eq!(tracked(&l), vec![kept, current]);
        // take_deltas prunes the same way, and reports the current window.
        l.admit_at(gone, now - Duration::from_secs(120));
        let deltas = l.take_deltas();
        assert_eq!(tracked(&l), vec![kept, current]);
        let (window, _) = l.position(now);
        assert_eq!(
            deltas,
            vec![Delta {
                client: current,
                window,
                hits: 1
            }]
        );
        // Delivered hits move to the shared count, and only once.
        assert_eq!(l.lock()[&current].shared, 1);
        assert_eq!(l.take_deltas()[0].hits, 0);
    }

    #[test]
    fn learning_and_restoring_touch_only_the_same_window() {
        let l = Limiter::new(10, Duration::from_secs(60));
        allow(&l, 2, at(600));
        // A total for another window, or another client, changes nothing.
        l.learn(IP, 9, 7);
        l.learn(OTHER, 10, 7);
        assert_eq!(l.lock()[&IP].shared, 0);
        l.learn(IP, 10, 7);
        assert_eq!(l.lock()[&IP].shared, 7);
        // A lower total never lowers what is known.
        l.learn(IP, 10, 3);
        assert_eq!(l.lock()[&IP].shared, 7);
        // Restoring a delta of another window changes nothing; of this one,
        // moves its hits back to unsynced (never below zero shared).
        l.restore(&[Delta {
            client: IP,
            window: 9,
            hits: 5,
        }]);
        let counts = |l: &Limiter| {
            let c = l.lock()[&IP];
            (c.shared, c.unsynced)
        };
        assert_eq!(counts(&l), (7, 2));
        l.restore(&[Delta {
            client: IP,
            window: 10,
            hits: 9,
        }]);
        assert_eq!(counts(&l), (0, 11));
        // A window skipped entirely leaves nothing to weigh.
        allow(&l, 1, at(780));
        assert_eq!(l.lock()[&IP].previous, 0);
        assert_eq!(l.window_secs(), 60);
        assert!(l.enabled());
    }
}
