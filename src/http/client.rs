//! Who is asking: the client address (from a trusted proxy's headers only),
//! user agent and, through a trusted proxy, the request id that makes a
//! retried hit count once; the per-client limits; and whether the client
//! is a bot, whose hits are answered and not counted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::audience::Visit;
use crate::counting::{CountError, HitCount, HitFrom};
use crate::domain::breakdown::MAX_REFERRER_LEN;
use crate::domain::{Slug, Visitor};
use crate::limit::{self, Admission, Source};
use crate::net::NetList;

/// User agents are cut to this many bytes before hashing.
const MAX_USER_AGENT: usize = 256;

/// Which peers may say who the client is, and with which header.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    /// Peers whose `X-Forwarded-For` is read.
    pub trusted: NetList,
    /// Trusted peers whose `X-Real-IP` is read first.
    pub real_ip_from: NetList,
}

#[derive(Debug)]
pub struct Client {
    pub visitor: Visitor,
    /// The proxy's request id scoped to this client, when the request came
    /// through a trusted proxy with one; `None` for a client that reached
    /// tally directly, whose ids are its own choice.
    dedup_key: Option<String>,
    /// The authority (`host[:port]`) of the page the request came from:
    /// its `Origin`, else its `Referer`.
    page_host: Option<String>,
    /// The trusted proxy whose headers named the client, if any.
    proxy: Option<IpAddr>,
    /// The `Referer` and `Accept-Language` headers, for the breakdowns.
    referer: Option<String>,
    accept_language: Option<String>,
}

/// What a counting request says about its hit beyond who sent it: the
/// page it names and, for the breakdowns, the referrer and screen width
/// the client reports (checked by the route).
#[derive(Debug, Clone, Copy, Default)]
pub struct Told<'a> {
    pub page: Option<&'a str>,
    pub referrer: Option<&'a str>,
    pub screen: Option<u32>,
}

/// A header's text, cut to `max` bytes; bytes that are not UTF-8 read as
/// U+FFFD.
fn header_text(headers: &HeaderMap, name: header::HeaderName, max: usize) -> Option<String> {
    headers.get(name).map(|v| {
        let bytes = &v.as_bytes()[..v.as_bytes().len().min(max)];
        String::from_utf8_lossy(bytes).into_owned()
    })
}

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts, state))
    }
}

impl Client {
    fn of(parts: &Parts, state: &AppState) -> Client {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let from = client_ip(peer, &parts.headers, &state.proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| {
                let bytes = &v.as_bytes()[..v.as_bytes().len().min(MAX_USER_AGENT)];
                String::from_utf8_lossy(bytes).into_owned()
            })
            .unwrap_or_default();
        let dedup_key = from
            .via_proxy
            .then(|| parts.extensions.get::<super::SentRequestId>())
            .flatten()
            .and_then(|sent| sent.0.to_str().ok())
            // Two clients that send one id (a proxy that passes clients'
            // ids on) never share a record.
            .map(|id| format!("{} {id}", from.ip));
        Client {
            visitor: Visitor {
                ip: from.ip,
                user_agent,
            },
            dedup_key,
            page_host: page_host(&parts.headers),
            proxy: peer.filter(|_| from.via_proxy).map(|ip| ip.to_canonical()),
            referer: header_text(&parts.headers, header::REFERER, MAX_REFERRER_LEN),
            accept_language: header_text(&parts.headers, header::ACCEPT_LANGUAGE, 256),
        }
    }

    /// Who this is to the budget of failed authentications.
    pub fn source(&self) -> Source {
        Source {
            client: self.visitor.ip,
            proxy: self.proxy,
        }
    }

    /// The client, if it is under its rate of counted hits; else a 429.
    /// The one way to an [`Admitted`] client, and so to a hit.
    pub fn admit(self, state: &AppState) -> Result<Admitted, ApiError> {
        match state.limits.admit_hit(self.visitor.ip) {
            Admission::Allowed => Ok(Admitted(self)),
            Admission::Limited { retry_after } => {
                state.metrics.rate_limited();
                Err(ApiError::new(
                    ErrorCode::RateLimited,
                    "too many hits from this client; retry later",
                )
                .retry_after(retry_after))
            }
        }
    }
}

/// A client that may count a hit now: what a counting handler extracts
/// (or, when it counts only sometimes, gets from [`Client::admit`]). Only
/// an admitted client gives the [`HitFrom`] that counting takes, so no
/// counting route can skip the per-client limit.
#[derive(Debug)]
pub struct Admitted(Client);

impl FromRequestParts<Arc<AppState>> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        Client::of(parts, state).admit(state)
    }
}

impl Admitted {
    /// This hit's origin: the proxy's request id for it (NGINX sends one
    /// with every request, the same on a retry), and the visitor.
    pub fn hit(&self) -> HitFrom<'_> {
        HitFrom {
            request_id: self.0.dedup_key.as_deref(),
            visitor: Some(&self.0.visitor),
            page: None,
            origin: self.0.page_host.as_deref(),
            client: Some(limit::key(self.0.visitor.ip)),
            visit: Visit {
                referrer: None,
                referer_header: self.0.referer.as_deref(),
                page: None,
                user_agent: Some(self.0.visitor.user_agent.as_str()),
                accept_language: self.0.accept_language.as_deref(),
                screen: None,
                client: Some(self.0.visitor.ip),
            },
        }
    }

    /// This hit, with what the request says of it.
    pub fn hit_on<'a>(&'a self, told: Told<'a>) -> HitFrom<'a> {
        let hit = self.hit();
        HitFrom {
            page: told.page,
            visit: Visit {
                referrer: told.referrer,
                screen: told.screen,
                ..hit.visit
            },
            ..hit
        }
    }

    /// Counts this hit on `slug` (and on `page`, if it names one) and
    /// returns the new counts; or, when `bot` (from [`is_bot`]), counts
    /// nothing and returns the counts as they stand, after the same checks
    /// (page, origin), for an answer of the same shape as a counted hit's
    /// (a crawler sees nothing different), and notes the hit in
    /// `tally_bot_hits_ignored_total`. A bot is admitted first all the
    /// same: over its limit it gets the 429 that any client would.
    pub async fn hit_unless_bot(
        &self,
        state: &AppState,
        slug: &Slug,
        told: Told<'_>,
        bot: bool,
    ) -> Result<HitCount, CountError> {
        let hit = self.hit_on(told);
        if !bot {
            return state.counting.hits.hit(slug, &hit).await;
        }
        let counts = state.counting.hits.as_if_counted(slug, &hit).await?;
        // After the read: a slug that is no site is a 404 and no label.
        state.metrics.bot_hit_ignored(slug.as_str());
        Ok(counts)
    }
}

/// The authority of the page a browser sent this request from: the
/// `Origin` header (a script's request), else the `Referer` (an image's).
/// An `Origin` of `null` (a sandboxed or file page), like any value that
/// names no host, is kept as it is, which no allow-list names.
fn page_host(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))?;
    // A header that names no host is kept as it is, so that no allow-list
    // matches it: a site with one then refuses the hit rather than taking
    // it as if no page had sent it.
    let unnamed = || Some(String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
    let Ok(url) = value.to_str() else {
        return unnamed();
    };
    let Some(authority) = url
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| uri.authority().cloned())
    else {
        return unnamed();
    };
    Some(
        authority
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase(),
    )
}

/// Whether the request with these headers comes from a known bot (a
/// crawler, a link previewer, a headless browser) by its `User-Agent`;
/// always `false` with `TALLY_BOT_FILTER=false`. What a counting route that
/// pages and READMEs call asks before it counts; a user agent that is
/// missing or blank tells nothing, and is no bot. Bytes that are not UTF-8
/// are read as U+FFFD, so that one such byte cannot hide a crawler's name.
pub fn is_bot(state: &AppState, headers: &HeaderMap) -> bool {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    state.bots.is_bot(user_agent.as_deref())
}

/// A layer for the routes that read: each client gets
/// `TALLY_READ_RATE_LIMIT` requests a minute, so that one client cannot
/// turn a small request into a large answer many times a second.
pub async fn limit_reads(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let client = Client::of(&parts, &state);
    if let Admission::Limited { retry_after } = state.limits.admit_read(client.visitor.ip) {
        state.metrics.read_limited();
        return ApiError::new(
            ErrorCode::ReadRateLimited,
            "too many reads from this client; retry later",
        )
        .retry_after(retry_after)
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub ip: IpAddr,
    /// Whether the peer was a trusted proxy (its headers were read).
    pub via_proxy: bool,
}

/// The peer itself, unless the peer is a trusted proxy. Then, if the peer
/// is also in `real_ip_from` and sent a valid `X-Real-IP`, that address;
/// else `X-Forwarded-For` read from the right: trusted hops are skipped and
/// the first untrusted one is the client. A hop that is not an address
/// ends the walk at the last address read (what a proxy appended is never
/// garbage; what is left of it may be). If every hop is trusted, the
/// left-most; with no usable header, the peer. A request with no peer
/// (in-process tests) is `0.0.0.0`.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &Proxies) -> Origin {
    let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
        return Origin {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            via_proxy: false,
        };
    };
    if !proxies.trusted.contains(peer) {
        return Origin {
            ip: peer,
            via_proxy: false,
        };
    }
    let via = |ip: IpAddr| Origin {
        ip: ip.to_canonical(),
        via_proxy: true,
    };
    let real_ip = headers
        .get("x-real-ip")
        .filter(|_| proxies.real_ip_from.contains(peer))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_hop);
    if let Some(ip) = real_ip {
        return via(ip);
    }
    // Several X-Forwarded-For headers are one list, in order.
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
    for hop in hops {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip.to_canonical();
        if !proxies.trusted.contains(client) {
            break;
        }
    }
    via(client)
}

/// One address of a forwarding header: `1.2.3.4`, `2001:db8::1`, and the
/// forms with a port (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(trusted: &str, real_ip_from: &str) -> Proxies {
        Proxies {
            trusted: trusted.parse().unwrap(),
            real_ip_from: real_ip_from.parse().unwrap(),
        }
    }

    fn client(peer: &str, h: &HeaderMap, p: &Proxies) -> (String, bool) {
        let from = client_ip(Some(ip(peer)), h, p);
        (from.ip.to_string(), from.via_proxy)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = proxies("10.0.0.0/8", "10.0.0.0/8");
        let spoof = headers(&[("x-real-ip", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")]);
        assert_eq!(
            client("203.0.113.9", &spoof, &p),
            ("203.0.113.9".into(), false)
        );
    }

    #[test]
    fn x_real_ip_is_read_only_from_peers_named_for_it() {
        let spoof = headers(&[("x-real-ip", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")]);
        let p = proxies("10.0.0.0/8,127.0.0.0/8", "10.0.0.0/8");
        assert_eq!(client("10.0.0.2", &spoof, &p), ("1.2.3.4".into(), true));
        // A same-host proxy that passed the client's X-Real-IP through.
        assert_eq!(client("127.0.0.1", &spoof, &p), ("5.6.7.8".into(), true));
        // real_ip_from alone is not trust.
        let p = proxies("127.0.0.0/8", "10.0.0.0/8");
        assert_eq!(client("10.0.0.2", &spoof, &p), ("10.0.0.2".into(), false));
        let garbage = headers(&[("x-real-ip", "not an ip")]);
        let p = proxies("10.0.0.0/8", "10.0.0.0/8");
        assert_eq!(client("10.0.0.2", &garbage, &p), ("10.0.0.2".into(), true));
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_hops() {
        let p = proxies("10.0.0.0/8", "");
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.0.0.7")]);
        assert_eq!(client("10.0.0.2", &chain, &p), ("203.0.113.5".into(), true));
        // Two headers are one list; ports and brackets are read.
        let split = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "[2001:db8::5]:4711, 10.0.0.9:80"),
        ]);
        assert_eq!(client("10.0.0.2", &split, &p), ("2001:db8::5".into(), true));
        // Every hop trusted: the left-most.
        let inside = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.7")]);
        assert_eq!(client("10.0.0.2", &inside, &p), ("10.1.1.1".into(), true));
        // Garbage stops the walk at the last address read.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.7")]);
        assert_eq!(client("10.0.0.2", &junk, &p), ("10.0.0.7".into(), true));
        let junk_first = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(
            client("10.0.0.2", &junk_first, &p),
            ("10.0.0.2".into(), true)
        );
        // No header: the proxy itself.
        assert_eq!(
            client("10.0.0.2", &HeaderMap::new(), &p),
            ("10.0.0.2".into(), true)
        );
    }

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let p = proxies("10.0.0.0/8", "");
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.5")]);
        assert_eq!(
            client("::ffff:10.0.0.2", &h, &p),
            ("203.0.113.5".into(), true)
        );
        assert_eq!(
            client_ip(None, &h, &p),
            Origin {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                via_proxy: false
            }
        );
    }
}
