//! Who is asking: the client address (from a trusted proxy's headers only)
//! and user agent, for rate limiting and unique-visitor counting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::AppState;
use super::error::ApiError;
use crate::cache::{Admission, Visitor};
use crate::config::IpNet;
use crate::counting::HitFrom;

/// User agents are cut to this many bytes before hashing.
const MAX_USER_AGENT: usize = 256;

#[derive(Debug)]
pub struct Client(pub Visitor);

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = client_ip(peer, &parts.headers, &state.trusted_proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| {
                let bytes = &v.as_bytes()[..v.as_bytes().len().min(MAX_USER_AGENT)];
                String::from_utf8_lossy(bytes).into_owned()
            })
            .unwrap_or_default();
        Ok(Client(Visitor { ip, user_agent }))
    }
}

impl Client {
    /// This hit's origin: its request id, if the request came with one
    /// (NGINX always sends one, the same on a retry), and the visitor.
    pub fn hit<'a>(&'a self, headers: &'a HeaderMap) -> HitFrom<'a> {
        HitFrom {
            request_id: headers
                .get("x-request-id")
                .filter(|v| super::valid_request_id(v))
                .and_then(|v| v.to_str().ok()),
            visitor: Some(&self.0),
        }
    }

    /// Refuses the request with 429 when this client is over its rate.
    pub fn admit(&self, state: &AppState) -> Result<(), ApiError> {
        match state.counter.cache().admit(self.0.ip) {
            Admission::Allowed => Ok(()),
            Admission::Limited { retry_after } => {
                state.metrics.rate_limited();
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many hits from this client; retry later",
                )
                .retry_after(retry_after))
            }
        }
    }
}

/// The peer itself, unless the peer is a trusted proxy: then the address
/// it reports, `X-Real-IP` first, else the nearest untrusted hop of
/// `X-Forwarded-For`. A request with no peer (in-process tests) is
/// `0.0.0.0`.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ip) = header("x-real-ip").and_then(|v| v.trim().parse().ok()) {
        return ip;
    }
    if let Some(forwarded) = header("x-forwarded-for") {
        let hops: Vec<IpAddr> = forwarded
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        if let Some(ip) = hops.iter().rev().find(|ip| !is_trusted(**ip)) {
            return *ip;
        }
        if let Some(first) = hops.first() {
            return *first;
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoof = headers(&[("x-real-ip", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")]);
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(Some(outsider), &spoof, &trusted), outsider);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(Some(proxy), &spoof, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.0.0.7")]);
        assert_eq!(
            client_ip(Some(proxy), &chain, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let garbage = headers(&[("x-real-ip", "not an ip")]);
        assert_eq!(client_ip(Some(proxy), &garbage, &trusted), proxy);
        assert_eq!(
            client_ip(None, &spoof, &trusted),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }
}
