//! Failed authentication: a budget per client, one per trusted proxy, and
//! a log that stays small.
//!
//! A client (its address as `http::client` derives it; an IPv6 client
//! by its /64) may fail authentication `TALLY_AUTH_FAILURE_LIMIT` times in
//! any 60 seconds. Past that, every attempt that shows a credential, right
//! or wrong, is refused with 429 until its oldest failure is a minute old,
//! and `Retry-After` says exactly when that is. A success does not count.
//! Failures are few per client, so their times are kept exactly, a short
//! list per client, instead of the hit limiter's windowed estimate, which
//! would make the wait a guess.
//!
//! A trusted proxy names the client, and one that passes on whatever
//! `X-Forwarded-For` its client sent (a same-host `proxy_pass`, a client
//! on a trusted private network) lets that client name a new address for
//! every guess. So the failures that came through one trusted proxy,
//! whichever clients it named, have a budget too: [`PROXY_MULTIPLE`] times
//! a client's. Past it, an attempt through that proxy is refused the same
//! way, unless its client showed the right credential within
//! [`KNOWN_FOR`]: such a client is judged by its own budget alone, so an
//! admin who signed in before is not locked out with everyone else.
//!
//! The state is in memory, per replica: behind N replicas a client has at
//! most N × limit tries a minute. At most [`MAX_CLIENTS`] clients and
//! proxies are tracked, and [`MAX_KNOWN`] known clients; the ones seen
//! least recently are forgotten first.
//!
//! Failures are logged at WARN at most once per client per minute: the
//! first failure at once, the rest in one line a minute later (from
//! [`AuthGuard::sweep`]) that says how many failed and how many were
//! refused unchecked. Through a proxy that has already passed on a
//! client's limit of failures within the minute, further failures, and
//! attempts refused by the proxy's budget, are told in the proxy's line
//! instead, on the same terms, so naming a new address each time does not
//! add a line each time.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use crate::sync::lock;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{Source, WINDOW, key};

/// Clients and proxies tracked at most: about 10 000 × (limit × 16 bytes +
/// 100), a few MB at the largest limit.
pub const MAX_CLIENTS: usize = 10_000;

/// The budget of failures through one trusted proxy, in clients' budgets.
pub const PROXY_MULTIPLE: usize = 10;

/// How long a client that showed the right credential is still heard
/// through a proxy past its budget: a dashboard session's lifetime.
pub const KNOWN_FOR: Duration = Duration::from_secs(7 * 86_400);

/// Known clients remembered at most (about 50 bytes each).
pub const MAX_KNOWN: usize = 1_000;

/// What an authentication attempt gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credential is right and the client is within its budget.
    Allowed,
    /// The credential is wrong; the failure counts.
    Failed,
    /// Over budget: refused without looking at the credential, for this
    /// many seconds more.
    Throttled { retry_after: u64 },
}

#[derive(Debug)]
pub struct AuthGuard {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    records: LruCache<Key, Record>,
    /// When each client last showed the right credential.
    known: LruCache<IpAddr, Instant>,
}

/// Whose budget and log line a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    Proxy(IpAddr),
}

#[derive(Debug, Default)]
struct Record {
    /// Times of the failures within the window, oldest first; never more
    /// than the record's limit (a client's, or a proxy's).
    failures: VecDeque<Instant>,
    /// When this record's last log line was written.
    logged: Option<Instant>,
    /// Failures and throttled attempts since that line.
    failed: u64,
    throttled: u64,
}

/// A log line owed for one client or proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    key: Key,
    failed: u64,
    throttled: u64,
}

impl AuthGuard {
    /// `limit` failures per client per [`WINDOW`] (at least 1), and
    /// [`PROXY_MULTIPLE`] times that through one proxy.
    pub fn new(limit: u32) -> Self {
        let capacity = |n| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        AuthGuard {
            limit: (limit as usize).max(1),
            state: Mutex::new(State {
                records: LruCache::new(capacity(MAX_CLIENTS)),
                known: LruCache::new(capacity(MAX_KNOWN)),
            }),
        }
    }

    /// Judges an attempt from `from` whose credential was `valid`, and
    /// records it. The caller compares the credential first, so the
    /// decision and the record happen under one lock: concurrent attempts
    /// cannot both slip under the limit.
    pub fn judge(&self, from: Source, valid: bool) -> Verdict {
        let from = Source {
            client: key(from.client),
            proxy: from.proxy.map(key),
        };
        let (verdict, line) = self.judge_at(from, valid, Instant::now());
        if let Some(line) = line {
            line.write();
        }
        verdict
    }

    /// Writes the lines owed by clients and proxies whose minute is over
    /// and forgets those with nothing left to remember (called every few
    /// seconds).
    pub fn sweep(&self) {
        for line in self.sweep_at(Instant::now()) {
            line.write();
        }
    }

    fn proxy_limit(&self) -> usize {
        self.limit * PROXY_MULTIPLE
    }

    fn judge_at(&self, from: Source, valid: bool, now: Instant) -> (Verdict, Option<Line>) {
        let mut state = self.lock();
        let State { records, known } = &mut *state;
        let known_client = known
            .get(&from.client)
            .is_some_and(|t| now.duration_since(*t) < KNOWN_FOR);
        let proxy = from.proxy.map(Key::Proxy);
        // Whether the proxy has passed on a client's limit of failures this
        // minute: then its failures are told in its own line.
        let mut proxy_busy = false;
        if let Some(key) = proxy {
            if let Some(record) = records.get_mut(&key) {
                record.expire(now);
                proxy_busy = record.failures.len() >= self.limit;
                if let Some(retry_after) = record.wait(self.proxy_limit(), now) {
                    if !known_client {
                        record.throttled += 1;
                        return (Verdict::Throttled { retry_after }, record.due(key, now));
                    }
                }
            }
        }
        let client = Key::Client(from.client);
        // A right credential from a client with no failures is the common
        // case: nothing to remember but that it was right.
        if valid && !records.contains(&client) {
            known.put(from.client, now);
            return (Verdict::Allowed, None);
        }
        let record = records.get_or_insert_mut(client, Record::default);
        record.expire(now);
        if let Some(retry_after) = record.wait(self.limit, now) {
            record.throttled += 1;
            return (Verdict::Throttled { retry_after }, record.due(client, now));
        }
        if valid {
            known.put(from.client, now);
            return (Verdict::Allowed, None);
        }
        record.failures.push_back(now);
        let line = if proxy_busy {
            // Anything this client still owes is written by a sweep.
            None
        } else {
            record.failed += 1;
            record.due(client, now)
        };
        if let Some(key) = proxy {
            let record = records.get_or_insert_mut(key, Record::default);
            record.failures.push_back(now);
            // A known client may fail past the budget; the list stays
            // bounded.
            if record.failures.len() > self.proxy_limit() {
                record.failures.pop_front();
            }
            if proxy_busy {
                record.failed += 1;
                return (Verdict::Failed, record.due(key, now));
            }
        }
        (Verdict::Failed, line)
    }

    fn sweep_at(&self, now: Instant) -> Vec<Line> {
        let mut state = self.lock();
        let mut lines = Vec::new();
        let mut idle = Vec::new();
        for (key, record) in state.records.iter_mut() {
            record.expire(now);
            lines.extend(record.due(*key, now));
            let quiet = record
                .logged
                .is_none_or(|t| now.duration_since(t) >= WINDOW);
            if record.failures.is_empty() && record.failed == 0 && record.throttled == 0 && quiet {
                idle.push(*key);
            }
        }
        for key in idle {
            state.records.pop(&key);
        }
        let stale: Vec<IpAddr> = state
            .known
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= KNOWN_FOR)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in stale {
            state.known.pop(&ip);
        }
        lines
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Record {
    fn expire(&mut self, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.failures.pop_front();
        }
    }

    /// With `limit` failures or more in the window, the seconds until the
    /// oldest is a minute old (at least 1); else `None`.
    fn wait(&self, limit: usize, now: Instant) -> Option<u64> {
        let oldest = self
            .failures
            .front()
            .filter(|_| self.failures.len() >= limit)?;
        let wait = (*oldest + WINDOW).saturating_duration_since(now);
        Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }

    /// The line owed, if there is anything to say and this record's last
    /// line is a minute old.
    fn due(&mut self, key: Key, now: Instant) -> Option<Line> {
        if self.failed == 0 && self.throttled == 0 {
            return None;
        }
        if self.logged.is_some_and(|t| now.duration_since(t) < WINDOW) {
            return None;
        }
        self.logged = Some(now);
        Some(Line {
            key,
            failed: std::mem::take(&mut self.failed),
            throttled: std::mem::take(&mut self.throttled),
        })
    }
}

impl Line {
    fn write(self) {
        match self.key {
            Key::Client(client) => tracing::warn!(
                client = %client,
                failed = self.failed,
                throttled = self.throttled,
                "authentication failed (at most one line per client per minute)"
            ),
            Key::Proxy(proxy) => tracing::warn!(
                proxy = %proxy,
                failed = self.failed,
                throttled = self.throttled,
                "authentication failed through a trusted proxy, for clients past \
                 its first failures (at most one line per proxy per minute)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    /// A client that reached tally directly.
    fn direct(client: IpAddr) -> Source {
        Source {
            client,
            proxy: None,
        }
    }

    fn line(failed: u64, throttled: u64) -> Option<Line> {
        Some(Line {
            key: Key::Client(IP),
            failed,
            throttled,
        })
    }

    #[test]
    fn the_limit_of_failures_then_throttled_until_the_oldest_is_a_minute_old() {
        let g = AuthGuard::new(3);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(
            g.judge_at(direct(IP), false, ms(0)),
            (Verdict::Failed, line(1, 0))
        );
        assert_eq!(
            g.judge_at(direct(IP), false, ms(10_000)),
            (Verdict::Failed, None)
        );
        assert_eq!(g.judge_at(direct(IP), true, ms(15_000)).0, Verdict::Allowed);
        assert_eq!(
            g.judge_at(direct(IP), false, ms(20_000)),
            (Verdict::Failed, None)
        );
        // The oldest failure leaves the window at 60 s: 39.5 s to go.
        for token in [false, true] {
            assert_eq!(
                g.judge_at(direct(IP), token, ms(20_500)).0,
                Verdict::Throttled { retry_after: 40 }
            );
        }
        assert_eq!(
            g.judge_at(direct(IP), true, ms(30_000)).0,
            Verdict::Throttled { retry_after: 30 }
        );
        assert_eq!(
            g.judge_at(direct(IP), false, ms(59_001)).0,
            Verdict::Throttled { retry_after: 1 }
        );
        // Another client is not affected.
        assert_eq!(
            g.judge_at(direct(OTHER), true, ms(30_000)).0,
            Verdict::Allowed
        );
        assert_eq!(
            g.judge_at(direct(OTHER), false, ms(30_000)).0,
            Verdict::Failed
        );
        // At 60 s one failure has left: one more try, then the next wait is
        // until the second failure (at 10 s) is a minute old.
        assert_eq!(g.judge_at(direct(IP), false, ms(60_000)).0, Verdict::Failed);
        assert_eq!(
            g.judge_at(direct(IP), true, ms(60_000)).0,
            Verdict::Throttled { retry_after: 10 }
        );
        assert_eq!(g.judge_at(direct(IP), true, ms(70_000)).0, Verdict::Allowed);
    }

    #[test]
    fn one_line_per_client_per_minute_with_what_it_stands_for() {
        let g = AuthGuard::new(10);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut lines = Vec::new();
        for _ in 0..20 {
            lines.extend(g.judge_at(direct(IP), false, s(1)).1);
        }
        assert_eq!(lines, vec![line(1, 0).unwrap()]);
        // Nothing more within the minute, then the rest in one line.
        assert_eq!(g.sweep_at(s(30)), vec![]);
        assert_eq!(g.sweep_at(s(61)), vec![line(9, 10).unwrap()]);
        assert_eq!(g.sweep_at(s(200)), vec![]);
        // With nothing left to say the client is forgotten.
        assert_eq!(g.lock().records.len(), 0);
        // A failure after a quiet minute is logged at once.
        assert_eq!(g.judge_at(direct(IP), false, s(300)).1, line(1, 0));
    }

    /// A sweep forgets only a client with nothing left to remember: one
    /// whose failures are still in their minute keeps its budget spent,
    /// and one whose line is owed or was written less than a minute ago
    /// keeps it, so a sweep cannot hand a client a fresh budget or a
    /// second line within the minute.
    #[test]
    fn a_sweep_keeps_what_a_client_still_owes() {
        let g = AuthGuard::new(2);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        assert_eq!(
            g.judge_at(direct(IP), false, s(0)),
            (Verdict::Failed, line(1, 0))
        );
        assert_eq!(g.judge_at(direct(IP), false, s(1)), (Verdict::Failed, None));
        assert_eq!(g.sweep_at(s(2)), vec![]);
        assert_eq!(g.lock().records.len(), 1);
        assert_eq!(
            g.judge_at(direct(IP), true, s(3)).0,
            Verdict::Throttled { retry_after: 57 }
        );
        // The failures leave their minute at 61 s; the line written at 0 s
        // and the one owed for the throttled try are due at 60 s.
        assert_eq!(g.sweep_at(s(60)), vec![line(1, 1).unwrap()]);
        assert_eq!(
            g.lock().records.len(),
            1,
            "a failure is still in its minute"
        );
        assert_eq!(g.sweep_at(s(62)), vec![]);
        assert_eq!(
            g.lock().records.len(),
            1,
            "a line was written less than a minute ago"
        );
        assert_eq!(g.sweep_at(s(121)), vec![]);
        assert_eq!(g.lock().records.len(), 0);
    }

    #[test]
    fn an_ipv6_client_spends_the_budget_of_its_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(key(ip("2001:db8:1:3::1")), ip("2001:db8:1:3::"));
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(key(ip("192.0.2.7")), ip("192.0.2.7"));
        let g = AuthGuard::new(1);
        assert_eq!(g.judge(direct(ip("2001:db8::1")), false), Verdict::Failed);
        assert!(matches!(
            g.judge(direct(ip("2001:db8::2")), true),
            Verdict::Throttled { .. }
        ));
        assert_eq!(
            g.judge(direct(ip("2001:db8:0:1::1")), true),
            Verdict::Allowed
        );
    }

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER_PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// Client 203.0.113.`n`, as [`PROXY`] names it.
    fn via(n: u8) -> Source {
        Source {
            client: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, n)),
            proxy: Some(PROXY),
        }
    }

    #[test]
    fn through_one_proxy_failures_have_ten_budgets_then_only_known_clients_are_heard() {
        let g = AuthGuard::new(2);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let admin = via(200);
        assert_eq!(g.judge_at(admin, true, s(0)).0, Verdict::Allowed);
        // A new address for every guess: each within its own budget.
        for n in 0..20 {
            assert_eq!(g.judge_at(via(n), false, s(1)).0, Verdict::Failed, "{n}");
        }
        for valid in [false, true] {
            assert_eq!(
                g.judge_at(via(20), valid, s(2)).0,
                Verdict::Throttled { retry_after: 59 }
            );
        }
        // The admin, known, is judged by its own budget alone.
        assert_eq!(g.judge_at(admin, true, s(2)).0, Verdict::Allowed);
        assert_eq!(g.judge_at(admin, false, s(2)).0, Verdict::Failed);
        assert_eq!(g.judge_at(admin, false, s(2)).0, Verdict::Failed);
        assert_eq!(
            g.judge_at(admin, true, s(2)).0,
            Verdict::Throttled { retry_after: 60 }
        );
        // Directly, or through another proxy: not affected.
        assert_eq!(g.judge_at(direct(OTHER), true, s(2)).0, Verdict::Allowed);
        let elsewhere = Source {
            proxy: Some(OTHER_PROXY),
            ..via(21)
        };
        assert_eq!(g.judge_at(elsewhere, true, s(2)).0, Verdict::Allowed);
        // When the guesses leave their minute, the proxy's clients are
        // heard again.
        assert_eq!(g.judge_at(via(20), true, s(61)).0, Verdict::Allowed);
    }

    #[test]
    fn a_client_is_known_for_a_week_after_its_right_token() {
        let g = AuthGuard::new(1);
        let t0 = Instant::now();
        // A week, as documented (a dashboard session's lifetime).
        let week = 7 * 86_400;
        let s = |n| t0 + Duration::from_secs(n);
        assert_eq!(g.judge_at(via(100), true, s(0)).0, Verdict::Allowed);
        assert_eq!(g.judge_at(via(101), true, s(0)).0, Verdict::Allowed);
        for n in 0..10 {
            assert_eq!(g.judge_at(via(n), false, s(week - 2)).0, Verdict::Failed);
        }
        assert_eq!(g.judge_at(via(100), true, s(week - 1)).0, Verdict::Allowed);
        assert_eq!(
            g.judge_at(via(101), true, s(week)).0,
            Verdict::Throttled { retry_after: 58 }
        );
        // A sweep forgets it too, and keeps the client seen a second ago.
        assert_eq!(g.lock().known.len(), 2);
        g.sweep_at(s(week));
        let state = g.lock();
        let known: Vec<IpAddr> = state.known.iter().map(|(ip, _)| *ip).collect();
        assert_eq!(known, vec![via(100).client]);
    }

    #[test]
    fn through_a_busy_proxy_the_lines_are_the_proxy_s() {
        let g = AuthGuard::new(2);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let client_line = |n| {
            Some(Line {
                key: Key::Client(via(n).client),
                failed: 1,
                throttled: 0,
            })
        };
        let proxy_line = |failed, throttled| {
            Some(Line {
                key: Key::Proxy(PROXY),
                failed,
                throttled,
            })
        };
        assert_eq!(
            g.judge_at(via(0), false, s(0)),
            (Verdict::Failed, client_line(0))
        );
        assert_eq!(
            g.judge_at(via(1), false, s(0)),
            (Verdict::Failed, client_line(1))
        );
        // The proxy has passed on a client's limit: its line from now on.
        assert_eq!(
            g.judge_at(via(2), false, s(1)),
            (Verdict::Failed, proxy_line(1, 0))
        );
        let mut lines = Vec::new();
        for n in 3..30 {
            lines.extend(g.judge_at(via(n), false, s(1)).1);
        }
        assert_eq!(lines, vec![]);
        assert_eq!(g.sweep_at(s(30)), vec![]);
        // 17 more failures fill the budget of 20; 10 more are refused.
        assert_eq!(g.sweep_at(s(61)), vec![proxy_line(17, 10).unwrap()]);
    }

    #[test]
    fn a_client_s_owed_line_outlives_a_failure_told_in_the_proxy_s() {
        let g = AuthGuard::new(2);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let owed = |n, failed| Line {
            key: Key::Client(via(n).client),
            failed,
            throttled: 0,
        };
        assert_eq!(g.judge_at(via(0), false, ms(0)).1, Some(owed(0, 1)));
        assert_eq!(g.judge_at(via(0), false, ms(0)).1, None);
        // A minute on, two others make the proxy busy again.
        assert_eq!(g.judge_at(via(1), false, ms(60_500)).1, Some(owed(1, 1)));
        assert_eq!(g.judge_at(via(2), false, ms(60_500)).1, Some(owed(2, 1)));
        let proxy_line = Line {
            key: Key::Proxy(PROXY),
            failed: 1,
            throttled: 0,
        };
        assert_eq!(
            g.judge_at(via(0), false, ms(61_000)),
            (Verdict::Failed, Some(proxy_line))
        );
        // The first client's second failure, owed since 0 s, still has
        // its line.
        assert_eq!(g.sweep_at(ms(61_000)), vec![owed(0, 1)]);
    }

    #[test]
    fn right_tokens_are_not_remembered_and_clients_are_bounded() {
        let g = AuthGuard::new(1);
        let now = Instant::now();
        assert_eq!(g.judge_at(direct(IP), true, now).0, Verdict::Allowed);
        assert_eq!(g.lock().records.len(), 0);
        for i in 0..(MAX_CLIENTS as u32 + 5) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.judge_at(direct(ip), false, now);
        }
        assert_eq!(g.lock().records.len(), MAX_CLIENTS);
        // The first ones were forgotten, the last ones are still throttled.
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000));
        assert_eq!(g.judge_at(direct(first), true, now).0, Verdict::Allowed);
        let last = IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 + MAX_CLIENTS as u32 + 4,
        ));
        assert_eq!(
            g.judge_at(direct(last), true, now).0,
            Verdict::Throttled { retry_after: 60 }
        );
    }
}
