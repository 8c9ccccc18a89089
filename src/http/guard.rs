//! Failed authentication: a budget per client, and a log that stays small.
//!
//! A client (its address as [`super::client`] derives it; an IPv6 client
//! by its /64) may fail authentication `TALLY_AUTH_FAILURE_LIMIT` times in
//! any 60 seconds. Past that, every attempt that shows a credential, right
//! or wrong, is refused with 429 until its oldest failure is a minute old,
//! and `Retry-After` says exactly when that is. A success does not count.
//! Failures are few per client, so their times are kept exactly, a short
//! list per client, instead of the hit limiter's windowed estimate, which
//! would make the wait a guess.
//!
//! The state is in memory, per replica: behind N replicas a client has at
//! most N × limit tries a minute. At most [`MAX_CLIENTS`] clients are
//! tracked; the one seen least recently is forgotten first.
//!
//! Failures are logged at WARN at most once per client per minute: the
//! first failure at once, the rest in one line a minute later (from
//! [`AuthGuard::sweep`]) that says how many failed and how many were
//! refused unchecked.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use crate::sync::lock;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::client::limit_key;

/// The span over which failures are counted, and between two log lines of
/// one client.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Clients tracked at most: about 10 000 × (limit × 16 bytes + 100), a few
/// MB at the largest limit.
pub const MAX_CLIENTS: usize = 10_000;

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
    clients: Mutex<LruCache<IpAddr, Record>>,
}

#[derive(Debug, Default)]
struct Record {
    /// Times of the failures within the window, oldest first; never more
    /// than the limit.
    failures: VecDeque<Instant>,
    /// When this client's last log line was written.
    logged: Option<Instant>,
    /// Failures and throttled attempts since that line.
    failed: u64,
    throttled: u64,
}

/// A log line owed for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    client: IpAddr,
    failed: u64,
    throttled: u64,
}

impl AuthGuard {
    /// `limit` failures per client per [`WINDOW`] (at least 1).
    pub fn new(limit: u32) -> Self {
        AuthGuard {
            limit: (limit as usize).max(1),
            clients: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_CLIENTS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Judges an attempt from `client` whose credential was `valid`, and
    /// records it. The caller compares the credential first, so the
    /// decision and the record happen under one lock: concurrent attempts
    /// cannot both slip under the limit.
    pub fn judge(&self, client: IpAddr, valid: bool) -> Verdict {
        let (verdict, line) = self.judge_at(limit_key(client), valid, Instant::now());
        if let Some(line) = line {
            line.write();
        }
        verdict
    }

    /// Writes the lines owed by clients whose minute is over and forgets
    /// clients with nothing left to remember (called every few seconds).
    pub fn sweep(&self) {
        for line in self.sweep_at(Instant::now()) {
            line.write();
        }
    }

    fn judge_at(&self, client: IpAddr, valid: bool, now: Instant) -> (Verdict, Option<Line>) {
        let mut clients = self.lock();
        // A right credential from a client with no failures is the common
        // case: nothing to remember.
        if valid && !clients.contains(&client) {
            return (Verdict::Allowed, None);
        }
        let record = clients.get_or_insert_mut(client, Record::default);
        record.expire(now);
        if let Some(oldest) = record
            .failures
            .front()
            .filter(|_| record.failures.len() >= self.limit)
        {
            let wait = (*oldest + WINDOW).saturating_duration_since(now);
            record.throttled += 1;
            let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            return (Verdict::Throttled { retry_after }, record.due(client, now));
        }
        if valid {
            return (Verdict::Allowed, None);
        }
        record.failures.push_back(now);
        record.failed += 1;
        (Verdict::Failed, record.due(client, now))
    }

    fn sweep_at(&self, now: Instant) -> Vec<Line> {
        let mut clients = self.lock();
        let mut lines = Vec::new();
        let mut idle = Vec::new();
        for (ip, record) in clients.iter_mut() {
            record.expire(now);
            lines.extend(record.due(*ip, now));
            let quiet = record
                .logged
                .is_none_or(|t| now.duration_since(t) >= WINDOW);
            if record.failures.is_empty() && record.failed == 0 && record.throttled == 0 && quiet {
                idle.push(*ip);
            }
        }
        for ip in idle {
            clients.pop(&ip);
        }
        lines
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<IpAddr, Record>> {
        lock(&self.clients)
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

    /// The line owed, if there is anything to say and this client's last
    /// line is a minute old.
    fn due(&mut self, client: IpAddr, now: Instant) -> Option<Line> {
        if self.failed == 0 && self.throttled == 0 {
            return None;
        }
        if self.logged.is_some_and(|t| now.duration_since(t) < WINDOW) {
            return None;
        }
        self.logged = Some(now);
        Some(Line {
            client,
            failed: std::mem::take(&mut self.failed),
            throttled: std::mem::take(&mut self.throttled),
        })
    }
}

impl Line {
    fn write(self) {
        tracing::warn!(
            client = %self.client,
            failed = self.failed,
            throttled = self.throttled,
            "authentication failed (at most one line per client per minute)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn line(failed: u64, throttled: u64) -> Option<Line> {
        Some(Line {
            client: IP,
            failed,
            throttled,
        })
    }

    #[test]
    fn the_limit_of_failures_then_throttled_until_the_oldest_is_a_minute_old() {
        let g = AuthGuard::new(3);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(g.judge_at(IP, false, ms(0)), (Verdict::Failed, line(1, 0)));
        assert_eq!(g.judge_at(IP, false, ms(10_000)), (Verdict::Failed, None));
        assert_eq!(g.judge_at(IP, true, ms(15_000)).0, Verdict::Allowed);
        assert_eq!(g.judge_at(IP, false, ms(20_000)), (Verdict::Failed, None));
        // The oldest failure leaves the window at 60 s: 39.5 s to go.
        for token in [false, true] {
            assert_eq!(
                g.judge_at(IP, token, ms(20_500)).0,
                Verdict::Throttled { retry_after: 40 }
            );
        }
        assert_eq!(
            g.judge_at(IP, true, ms(30_000)).0,
            Verdict::Throttled { retry_after: 30 }
        );
        assert_eq!(
            g.judge_at(IP, false, ms(59_001)).0,
            Verdict::Throttled { retry_after: 1 }
        );
        // Another client is not affected.
        assert_eq!(g.judge_at(OTHER, true, ms(30_000)).0, Verdict::Allowed);
        assert_eq!(g.judge_at(OTHER, false, ms(30_000)).0, Verdict::Failed);
        // At 60 s one failure has left: one more try, then the next wait is
        // until the second failure (at 10 s) is a minute old.
        assert_eq!(g.judge_at(IP, false, ms(60_000)).0, Verdict::Failed);
        assert_eq!(
            g.judge_at(IP, true, ms(60_000)).0,
            Verdict::Throttled { retry_after: 10 }
        );
        assert_eq!(g.judge_at(IP, true, ms(70_000)).0, Verdict::Allowed);
    }

    #[test]
    fn one_line_per_client_per_minute_with_what_it_stands_for() {
        let g = AuthGuard::new(10);
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut lines = Vec::new();
        for _ in 0..20 {
            lines.extend(g.judge_at(IP, false, s(1)).1);
        }
        assert_eq!(lines, vec![line(1, 0).unwrap()]);
        // Nothing more within the minute, then the rest in one line.
        assert_eq!(g.sweep_at(s(30)), vec![]);
        assert_eq!(g.sweep_at(s(61)), vec![line(9, 10).unwrap()]);
        assert_eq!(g.sweep_at(s(200)), vec![]);
        // With nothing left to say the client is forgotten.
        assert_eq!(g.lock().len(), 0);
        // A failure after a quiet minute is logged at once.
        assert_eq!(g.judge_at(IP, false, s(300)).1, line(1, 0));
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
        assert_eq!(g.judge_at(IP, false, s(0)), (Verdict::Failed, line(1, 0)));
        assert_eq!(g.judge_at(IP, false, s(1)), (Verdict::Failed, None));
        assert_eq!(g.sweep_at(s(2)), vec![]);
        assert_eq!(g.lock().len(), 1);
        assert_eq!(
            g.judge_at(IP, true, s(3)).0,
            Verdict::Throttled { retry_after: 57 }
        );
        // The failures leave their minute at 61 s; the line written at 0 s
        // and the one owed for the throttled try are due at 60 s.
        assert_eq!(g.sweep_at(s(60)), vec![line(1, 1).unwrap()]);
        assert_eq!(g.lock().len(), 1, "a failure is still in its minute");
        assert_eq!(g.sweep_at(s(62)), vec![]);
        assert_eq!(
            g.lock().len(),
            1,
            "a line was written less than a minute ago"
        );
        assert_eq!(g.sweep_at(s(121)), vec![]);
        assert_eq!(g.lock().len(), 0);
    }

    #[test]
    fn an_ipv6_client_spends_the_budget_of_its_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(limit_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:3::"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(limit_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let g = AuthGuard::new(1);
        assert_eq!(g.judge(ip("2001:db8::1"), false), Verdict::Failed);
        assert!(matches!(
            g.judge(ip("2001:db8::2"), true),
            Verdict::Throttled { .. }
        ));
        assert_eq!(g.judge(ip("2001:db8:0:1::1"), true), Verdict::Allowed);
    }

    #[test]
    fn right_tokens_are_not_remembered_and_clients_are_bounded() {
        let g = AuthGuard::new(1);
        let now = Instant::now();
        assert_eq!(g.judge_at(IP, true, now).0, Verdict::Allowed);
        assert_eq!(g.lock().len(), 0);
        for i in 0..(MAX_CLIENTS as u32 + 5) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.judge_at(ip, false, now);
        }
        assert_eq!(g.lock().len(), MAX_CLIENTS);
        // The first ones were forgotten, the last ones are still throttled.
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000));
        assert_eq!(g.judge_at(first, true, now).0, Verdict::Allowed);
        let last = IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 + MAX_CLIENTS as u32 + 4,
        ));
        assert_eq!(
            g.judge_at(last, true, now).0,
            Verdict::Throttled { retry_after: 60 }
        );
    }
}
