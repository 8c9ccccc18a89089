//! Allowed origins: the hosts whose pages may count hits on a site.
//!
//! An entry is what [`SiteRules::allows`](super::SiteRules::allows)
//! compares with the authority of a hit's `Origin` or `Referer`: a host
//! name or an IP address, lower-cased, optionally with a port. A full
//! origin (`https://example.com`, as a browser writes it in `Origin`) is
//! taken too and stands for its authority; its port is dropped when it is
//! the scheme's default, as browsers drop it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Invalid;

/// Allowed origins a site may name, at most.
pub const MAX_ORIGINS: usize = 32;

/// Longest host name, in bytes (DNS's limit).
const MAX_HOST_LEN: usize = 253;

/// Normalises one allowed-origin entry; see the module documentation.
///
/// Refused: an empty entry, a scheme other than `http` or `https`, a path
/// (a full origin may end in one `/`, nothing more), a query or fragment,
/// userinfo (`user@host`), a wildcard, a port that is not 1 to 65535 in
/// plain digits, a bare host with port 80 or 443 (browsers never send
/// those: list the host alone), and anything that is not a host name of
/// letters, digits and inner hyphens (`xn--` for international names) or
/// an IPv4 or bracketed IPv6 address.
pub fn parse_origin(entry: &str) -> Result<String, Invalid> {
    let bad = |why: &str| Invalid(format!("allowed origin {entry:?}: {why}"));
    if entry.is_empty() {
        return Err(bad("an entry is a host name or address, not empty"));
    }
    if entry.contains('*') {
        return Err(bad("wildcards are not taken: list each host"));
    }
    let (scheme, authority) = match entry.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(bad("a full origin starts with http:// or https://"));
            }
            (Some(scheme), rest.strip_suffix('/').unwrap_or(rest))
        }
        None => (None, entry),
    };
    if authority.contains('@') {
        return Err(bad("user names and passwords are not part of an origin"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(bad("an origin has no path, query or fragment"));
    }
    let (host, port) = split_port(authority).map_err(bad)?;
    let host = normalise_host(host).map_err(bad)?;
    let port = match (port, scheme.as_deref()) {
        (Some(80), Some("http")) | (Some(443), Some("https")) => None,
        (Some(80 | 443), None) => {
            return Err(bad(
                "browsers leave ports 80 and 443 out of the origins they send: list the host alone",
            ));
        }
        (port, _) => port,
    };
    Ok(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Normalises a list of entries, in order, each at most once.
pub fn parse_origins(entries: &[String]) -> Result<Vec<String>, Invalid> {
    if entries.len() > MAX_ORIGINS {
        return Err(Invalid(format!(
            "a site names at most {MAX_ORIGINS} allowed origins"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        let origin = parse_origin(entry)?;
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}

/// `host[:port]` into the host and the port, if any.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("an IPv6 address is written in brackets, [2001:db8::1]");
        };
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("an IPv6 address in brackets may be followed by :port only")?,
            ),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => {
            let plain = !digits.is_empty()
                && !digits.starts_with('0')
                && digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit());
            match digits.parse::<u16>() {
                Ok(port) if plain && port > 0 => Some(port),
                _ => return Err("a port is a whole number from 1 to 65535"),
            }
        }
    };
    Ok((host, port))
}

/// A host name or address, lower-cased; addresses in their usual form.
fn normalise_host(host: &str) -> Result<String, &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(format!("[{ip}]")),
            Err(_) => Err("not an IPv6 address"),
        };
    }
    if host.is_empty() {
        return Err("an entry names a host");
    }
    // What a browser would read as an IPv4 address must be one.
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return match host.parse::<Ipv4Addr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => Err("not an IPv4 address"),
        };
    }
    if host.len() > MAX_HOST_LEN {
        return Err("a host name is at most 253 characters");
    }
    let host = host.to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(
            "a host name is dot-separated labels of letters, digits and inner hyphens \
             (an international name in its xn-- form)",
        );
    }
    // `Origin: null` (a sandboxed or local page) is read as the host
    // `null`; no allow-list may name it.
    if host == "null" {
        return Err("null is not a host");
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(entry: &str) -> String {
        parse_origin(entry).unwrap_or_else(|e| panic!("{entry:?}: {e}"))
    }

    #[test]
    fn hosts_and_addresses_are_lower_cased_and_kept_with_their_port() {
        assert_eq!(ok("example.com"), "example.com");
        assert_eq!(ok("WWW.Example.COM"), "www.example.com");
        assert_eq!(ok("www.example.com:8443"), "www.example.com:8443");
        assert_eq!(ok("localhost"), "localhost");
        assert_eq!(ok("xn--caf-dma.example"), "xn--caf-dma.example");
        assert_eq!(ok("a-b.c0"), "a-b.c0");
        assert_eq!(ok("127.0.0.1"), "127.0.0.1");
        assert_eq!(ok("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(ok("[2001:DB8:0::1]"), "[2001:db8::1]");
        assert_eq!(ok("[::1]:3000"), "[::1]:3000");
        assert_eq!(ok("example.com:65535"), "example.com:65535");
        assert_eq!(ok("example.com:1"), "example.com:1");
    }

    #[test]
    fn a_full_origin_stands_for_its_authority() {
        assert_eq!(ok("https://example.com"), "example.com");
        assert_eq!(ok("HTTPS://Example.com/"), "example.com");
        assert_eq!(ok("http://example.com:8080"), "example.com:8080");
        // The scheme's default port is what a browser leaves out.
        assert_eq!(ok("https://example.com:443"), "example.com");
        assert_eq!(ok("http://example.com:80"), "example.com");
        // Not the default for this scheme: a browser sends it.
        assert_eq!(ok("http://example.com:443"), "example.com:443");
        assert_eq!(ok("https://[::1]:8443"), "[::1]:8443");
    }

    #[test]
    fn paths_userinfo_wildcards_and_junk_are_refused() {
        for entry in [
            "",
            "*.example.com",
            "*",
            "example.com/blog",
            "https://example.com/blog",
            "https://example.com//",
            "example.com?x=1",
            "example.com#top",
            "user@example.com",
            "https://user:pw@example.com",
            "ftp://example.com",
            "://example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:080",
            "example.com:+80",
            "example.com:8080:1",
            "example.com:80",
            "example.com:443",
            "exa mple.com",
            " example.com",
            "example.com.",
            ".example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "under_score.com",
            "café.example",
            "1.2.3",
            "999.1.1.1",
            "01.2.3.4",
            "example.123",
            "[2001:db8::1",
            "[not:an:ip]",
            "[::1]x",
            "2001:db8::1",
            "null",
            "https://null",
            "exa\u{7}mple.com",
        ] {
            assert!(parse_origin(entry).is_err(), "{entry:?} was taken");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert!(long.len() > MAX_HOST_LEN);
        assert!(parse_origin(&long).is_err());
        assert!(parse_origin(&format!("{}.com", "a".repeat(64))).is_err());
        assert_eq!(ok(&format!("{}.com", "a".repeat(63))).len(), 67);
    }

    #[test]
    fn the_message_names_the_entry() {
        let e = parse_origin("example.com/blog").unwrap_err();
        assert_eq!(
            e.0,
            "allowed origin \"example.com/blog\": an origin has no path, query or fragment"
        );
    }

    #[test]
    fn a_list_is_normalised_once_per_origin_and_bounded() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_origins(&list(&["B.test", "a.test", "https://b.test"])).unwrap(),
            list(&["b.test", "a.test"])
        );
        assert_eq!(parse_origins(&[]).unwrap(), Vec::<String>::new());
        let many: Vec<String> = (0..MAX_ORIGINS).map(|i| format!("h{i}.test")).collect();
        assert_eq!(parse_origins(&many).unwrap().len(), MAX_ORIGINS);
        let too_many: Vec<String> = (0..=MAX_ORIGINS).map(|i| format!("h{i}.test")).collect();
        assert_eq!(
            parse_origins(&too_many).unwrap_err().0,
            "a site names at most 32 allowed origins"
        );
        assert!(parse_origins(&list(&["ok.test", "bad/path"])).is_err());
    }
}
