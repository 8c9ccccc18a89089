//! Per-client limits, all of them: what one client may do in a minute.
//!
//! - **Counted hits**, `TALLY_RATE_LIMIT` a minute: a sliding window
//!   ([`Limiter`]) kept in process and, when Redis is configured, added up
//!   across replicas a few times a second (the Redis cache delivers the
//!   window's [`Delta`]s and hands back the totals).
//! - **Reads** of the API and dashboard, `TALLY_READ_RATE_LIMIT` a minute:
//!   the same window, per replica.
//! - **Failed sign-ins**, `TALLY_AUTH_FAILURE_LIMIT` a minute, with a
//!   budget per trusted proxy too ([`AuthGuard`]): failures are few, so
//!   their times are kept exactly and `Retry-After` is exact.
//!
//! [`ClientLimits`] holds the three; every check goes through it, and each
//! takes the client's address as `http::client` derives it and keys it by
//! [`key`], so no route can limit by another rule.

mod failures;
mod window;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

pub use failures::{AuthGuard, KNOWN_FOR, MAX_KNOWN, PROXY_MULTIPLE, Verdict};
pub use window::{Admission, Delta, Limiter};

/// The span every limit is counted over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Who made an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The client, as `http::client` derives it.
    pub client: IpAddr,
    /// The trusted proxy whose headers named the client; `None` for a
    /// client that reached tally directly.
    pub proxy: Option<IpAddr>,
}

/// The address limits are kept for: IPv4 addresses as they are, IPv6 by
/// their /64, which one host or home network usually holds whole.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(net))
        }
        v4 => v4,
    }
}

/// The limits of one replica.
#[derive(Debug)]
pub struct ClientLimits {
    hits: Arc<Limiter>,
    reads: Limiter,
    sign_in: AuthGuard,
}

impl ClientLimits {
    /// `hits` and `reads` a minute per client (0: no limit), and
    /// `auth_failures` failed sign-ins a minute.
    pub fn new(hits: u32, reads: u32, auth_failures: u32) -> Self {
        ClientLimits {
            hits: Arc::new(Limiter::new(u64::from(hits), WINDOW)),
            reads: Limiter::new(u64::from(reads), WINDOW),
            sign_in: AuthGuard::new(auth_failures),
        }
    }

    /// The window of counted hits, for the cache that shares it between
    /// replicas.
    pub fn hits(&self) -> Arc<Limiter> {
        self.hits.clone()
    }

    /// Whether the client at `ip` may count another hit now.
    pub fn admit_hit(&self, ip: IpAddr) -> Admission {
        self.hits.admit(key(ip))
    }

    /// Whether the client at `ip` may read now.
    pub fn admit_read(&self, ip: IpAddr) -> Admission {
        self.reads.admit(key(ip))
    }

    /// Judges a sign-in from `from` whose credential was `valid`, and
    /// records it ([`AuthGuard::judge`]).
    pub fn judge_sign_in(&self, from: Source, valid: bool) -> Verdict {
        self.sign_in.judge(from, valid)
    }

    /// Forgets what no limit needs any more and writes the sign-in log
    /// lines that are due (called every few seconds).
    pub fn sweep(&self) {
        self.sign_in.sweep();
        self.hits.prune();
        self.reads.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_ipv4_ones_by_their_address() {
        assert_eq!(key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("2001:db8:1:2:ffff::1")), ip("2001:db8:1:2::"));
        assert_ne!(key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn every_check_keys_the_client_the_same_way() {
        let limits = ClientLimits::new(1, 1, 1);
        assert_eq!(limits.admit_hit(ip("2001:db8::1")), Admission::Allowed);
        assert!(matches!(
            limits.admit_hit(ip("2001:db8::2")),
            Admission::Limited { .. }
        ));
        assert_eq!(
            limits.admit_read(ip("::ffff:192.0.2.7")),
            Admission::Allowed
        );
        assert!(matches!(
            limits.admit_read(ip("192.0.2.7")),
            Admission::Limited { .. }
        ));
        let direct = |client| Source {
            client: ip(client),
            proxy: None,
        };
        assert_eq!(
            limits.judge_sign_in(direct("2001:db8::1"), false),
            Verdict::Failed
        );
        assert!(matches!(
            limits.judge_sign_in(direct("2001:db8::3"), true),
            Verdict::Throttled { .. }
        ));
    }
}
