//! The documented rules of tally's parsers, written again from the README
//! (and, where the README is silent, from the public API's documentation)
//! without calling the code they judge. Each function says what a parser
//! must answer for one input: `None` for an input it must refuse, else the
//! exact value it must produce.
//!
//! Where a rule needs an IP address or JSON syntax, the standard library
//! and serde_json read them: the rules here are about what tally does with
//! them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// README, "API": "A slug is 1 to 64 characters of `a-z 0-9 . _ -`,
/// starting with a letter or digit".
pub fn slug(text: &str) -> Option<String> {
    const SET: &str = "abcdefghijklmnopqrstuvwxyz0123456789._-";
    let chars: Vec<char> = text.chars().collect();
    let first_ok = chars.first().is_some_and(char::is_ascii_alphanumeric);
    let ok = (1..=64).contains(&chars.len()) && first_ok && chars.iter().all(|c| SET.contains(*c));
    ok.then(|| text.to_owned())
}

/// A control character: Unicode's general category Cc, U+0000 to U+001F
/// and U+007F to U+009F.
pub fn is_control(c: char) -> bool {
    let n = u32::from(c);
    n < 0x20 || (0x7f..=0x9f).contains(&n)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding as URLs define it: `%` and two hex digits is that
/// byte; a `%` without them stays as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The pairs of a query string, in order, as forms read them: `&`
/// separates pairs, the first `=` a name from its value; empty pairs are
/// skipped. The name is decoded (lossily: a name that is not UTF-8 names
/// nothing tally reads); the value is kept raw.
pub fn query_pairs(query: &str) -> Vec<(String, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.find('=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, ""),
            };
            let name =
                String::from_utf8_lossy(&percent_decode(&name.replace('+', " "))).into_owned();
            (name, value)
        })
        .collect()
}

/// README, "Count your pages", **Paths**, step 3: the bidirectional
/// controls, and the invisible characters (format characters and
/// default-ignorable code points), as the README lists them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(u32::from(c), 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

pub fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200D
            | 0x2060..=0x2065
            | 0x206A..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// README, "Count your pages", **Paths**, steps 2 to 4 (and 8 for a kept
/// value): decoded bytes must be UTF-8 with no control character,
/// bidirectional control or invisible character; the text is then put in
/// NFC (by the `unicode-normalization` crate, the standard's algorithm:
/// not the rule under test).
fn checked_text(bytes: Vec<u8>) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let text = String::from_utf8(bytes).ok()?;
    let refused = |c: char| is_control(c) || is_bidi_control(c) || is_invisible(c);
    if text.chars().any(refused) {
        return None;
    }
    Some(text.nfc().collect())
}

/// RFC 3986, section 5.2.4, remove_dot_segments, step by step as the RFC
/// writes it (rules A to E), for a path that starts with `/`.
pub fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_owned();
    let mut output = String::new();
    // Removes the last segment of `output` and its `/`, if any.
    let pop = |output: &mut String| match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("/./") {
            input = format!("/{rest}");
        } else if input == "/." {
            input = "/".to_owned();
        } else if let Some(rest) = input.strip_prefix("/../") {
            input = format!("/{rest}");
            pop(&mut output);
        } else if input == "/.." {
            input = "/".to_owned();
            pop(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            // E: the first segment, with its leading `/` if it has one.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    output
}

/// README, "Count your pages", **Paths**: the name a page is counted on
/// (`None`: refused) on a site that keeps the query parameters `keep` and
/// merges trailing slashes if `merge`:
///
/// 1. at most 1024 characters as sent; the fragment (from the first `#`)
///    dropped, the query string (from the first `?` left) set aside;
/// 2. the path percent-decoded once, UTF-8, starting with `/`;
/// 3. no control characters, bidirectional controls or invisible
///    characters;
/// 4. NFC;
/// 5. repeated slashes merged, then RFC 3986's remove_dot_segments;
/// 6. a trailing `/` dropped when the site merges them, `/` staying `/`;
/// 7. `%`, `?` and `#` encoded as `%25`, `%3F`, `%23`;
/// 8. the kept parameters, `?name=value&…` in the site's order (README,
///    "Site settings"), each value decoded with `+` a space, checked as in
///    3 and in NFC; a parameter given twice is kept with its first value,
///    as `URLSearchParams.get` reads it;
/// 9. at most 512 bytes.
///
/// What is dropped is not read, so only the path and the kept parameters
/// can make a page bad.
pub fn page(raw: &str, keep: &[String], merge: bool) -> Option<String> {
    if raw.chars().count() > 1024 {
        return None;
    }
    let without_fragment = raw.find('#').map_or(raw, |i| &raw[..i]);
    let (path, query) = match without_fragment.find('?') {
        Some(i) => (&without_fragment[..i], &without_fragment[i + 1..]),
        None => (without_fragment, ""),
    };
    let path = checked_text(percent_decode(path))?;
    if !path.starts_with('/') {
        return None;
    }
    let mut merged = path;
    while merged.contains("//") {
        merged = merged.replace("//", "/");
    }
    let mut resolved = remove_dot_segments(&merged);
    if merge && resolved.len() > 1 && resolved.ends_with('/') {
        resolved.pop();
    }
    let mut name = resolved
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    let pairs = query_pairs(query);
    let mut kept = Vec::new();
    for param in keep {
        if let Some((_, value)) = pairs.iter().find(|(k, _)| k == param) {
            let value = checked_text(percent_decode(&value.replace('+', " ")))?;
            kept.push(format!("{param}={value}"));
        }
    }
    if !kept.is_empty() {
        name.push('?');
        name.push_str(&kept.join("&"));
    }
    (name.len() <= 512).then_some(name)
}

/// README, "Count your pages": the overflow page `(other)` is a page name
/// no path can name; an export's names are checked as names: a leading
/// `/` (or the overflow page), at most 512 bytes, no control characters.
pub fn stored_page(name: &str) -> Option<String> {
    let ok = name == "(other)"
        || (name.starts_with('/') && name.len() <= 512 && !name.chars().any(is_control));
    ok.then(|| name.to_owned())
}

/// README, "Site settings": a kept query parameter is 1 to 64 of
/// `A-Z a-z 0-9 _ - .`, at most 8, each kept once, in the order given.
pub fn kept_params(names: &[String]) -> Option<Vec<String>> {
    if names.len() > 8 {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return None;
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Some(out)
}

fn is_leap(year: i64) -> bool {
    year % 400 == 0 || (year % 4 == 0 && year % 100 != 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if month == 2 && is_leap(year) {
        29
    } else {
        DAYS[(month - 1) as usize]
    }
}

/// Days from 1970-01-01 to a valid date, counted year by year.
pub fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let years: i64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

/// `10000-01-01T00:00:00Z`: instants end before it (README, "Time series":
/// "in years 1970 to 9999").
pub fn end_of_time() -> i64 {
    days_since_epoch(10_000, 1, 1) * 86_400
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

/// RFC 3339's `full-date`, in years 1970 to 9999, as days since
/// 1970-01-01.
pub fn date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..])?);
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day);
    valid.then(|| days_since_epoch(year, month, day))
}

/// README, "Time series": "an RFC 3339 time (`2026-11-23T01:00:00Z`, any
/// offset) or a date (`2026-11-23`)", a date standing for its midnight
/// UTC, in years 1970 to 9999, as unix seconds. RFC 3339's grammar:
///
/// ```text
/// date-time = full-date ("T" / "t" / " ") partial-time time-offset
/// partial-time = 2DIGIT ":" 2DIGIT ":" 2DIGIT ["." 1*DIGIT]
/// time-offset = "Z" / "z" / ("+" / "-") 2DIGIT ":" 2DIGIT
/// ```
///
/// (its section 5.6 allows the lower-case letters and a space for `T`),
/// hours 00-23, minutes 00-59, seconds 00-60 (a leap second is taken as
/// the second before it); fractions are dropped.
pub fn instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let days = date(s.get(..10)?)?;
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let time = &b[11..];
    if time.len() < 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..8])?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &time[8..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &rest[1 + n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h @ .., b':', m1, m2] if h.len() == 2 => {
            let (oh, om) = (digits(h)?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return None,
    };
    let t = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    (0..end_of_time()).contains(&t).then_some(t)
}

/// An IP network of a proxy list, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u32,
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    if let IpAddr::V6(v6) = ip {
        let s = v6.segments();
        if s[..5] == [0; 5] && s[5] == 0xffff {
            let [a, b] = s[6].to_be_bytes();
            let [c, d] = s[7].to_be_bytes();
            return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        }
    }
    ip
}

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4)) << 96),
        IpAddr::V6(v6) => (false, u128::from(v6)),
    }
}

/// Whether `ip` is in one of `nets`.
pub fn within(ip: IpAddr, nets: &[Net]) -> bool {
    let (v4, ip) = bits(canonical(ip));
    nets.iter().any(|net| {
        let (net_v4, addr) = bits(net.addr);
        let width = if net_v4 { 32 } else { 128 };
        let prefix = net.prefix.min(width);
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        net_v4 == v4 && (addr & mask) == (ip & mask)
    })
}

/// A port: decimal digits, at most 65535.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.trim_start_matches('0')
        .parse::<u16>()
        .ok()
        .or_else(|| {
            // All zeros.
            text.bytes().all(|b| b == b'0').then_some(0)
        })
}

/// One hop of `X-Forwarded-For` (or an `X-Real-IP`), spaces around it
/// aside: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678` or
/// `[2001:db8::1]:5678` (`client_ip`'s documentation).
pub fn hop(text: &str) -> Option<IpAddr> {
    let t = text.trim_matches([' ', '\t']);
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (inner, p) = rest.split_once("]:")?;
        port(p)?;
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, p) = t.rsplit_once(':')?;
    port(p)?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A header value that is text (visible ASCII, spaces and tabs).
pub fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// README, "Client addresses". The peer is the client unless it is a
/// trusted proxy. Behind one: its `X-Real-IP`, if it is in `real_ip_from`
/// (and the header is an address); else `X-Forwarded-For` read from the
/// right (several headers are one list, in order), trusted hops skipped,
/// the first untrusted one the client; a hop that is not an address ends
/// the walk at the last one read (a header that is not text is one such
/// hop); every hop trusted: the left-most read; none read: the proxy
/// itself. Addresses are canonical (IPv4-mapped ones as IPv4). With no
/// peer (an in-process request), `0.0.0.0`. The flag: whether the peer
/// was a trusted proxy.
pub fn client(
    peer: Option<IpAddr>,
    forwarded: &[Vec<u8>],
    real_ip: Option<&[u8]>,
    trusted: &[Net],
    real_ip_from: &[Net],
) -> (IpAddr, bool) {
    let Some(peer) = peer.map(canonical) else {
        return (IpAddr::V4(Ipv4Addr::UNSPECIFIED), false);
    };
    if !within(peer, trusted) {
        return (peer, false);
    }
    if within(peer, real_ip_from) {
        if let Some(ip) = real_ip.and_then(header_text).and_then(hop) {
            return (canonical(ip), true);
        }
    }
    let mut from_the_right: Vec<Option<IpAddr>> = Vec::new();
    for header in forwarded.iter().rev() {
        match header_text(header) {
            Some(text) => {
                let hops: Vec<&str> = text.split(',').collect();
                from_the_right.extend(hops.iter().rev().map(|h| hop(h).map(canonical)));
            }
            None => from_the_right.push(None),
        }
    }
    let read: Vec<IpAddr> = from_the_right.iter().map_while(|h| *h).collect();
    let client = read
        .iter()
        .find(|ip| !within(**ip, trusted))
        .or(read.last())
        .copied()
        .unwrap_or(peer);
    (client, true)
}

/// A badge colour: a name (README's list, and shields.io's spellings and
/// aliases that tally also takes), compared without case, or 3 or 6 hex
/// digits after an optional `#`, written lower-case after a `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Colour {
    /// The README's name this one stands for.
    Named(&'static str),
    Hex(String),
}

/// README, "Badges": the colour names.
pub const COLOUR_NAMES: [&str; 12] = [
    "brightgreen",
    "green",
    "yellowgreen",
    "yellow",
    "orange",
    "red",
    "blue",
    "lightgrey",
    "grey",
    "purple",
    "pink",
    "black",
];

fn colour(value: &str) -> Option<Colour> {
    const ALIASES: [(&str, &str); 7] = [
        ("lightgray", "lightgrey"),
        ("gray", "grey"),
        ("success", "brightgreen"),
        ("important", "orange"),
        ("critical", "red"),
        ("informational", "blue"),
        ("inactive", "lightgrey"),
    ];
    let lower = value.to_ascii_lowercase();
    if let Some(name) = COLOUR_NAMES.iter().find(|n| **n == lower) {
        return Some(Colour::Named(name));
    }
    if let Some((_, name)) = ALIASES.iter().find(|(alias, _)| *alias == lower) {
        return Some(Colour::Named(name));
    }
    let hex = value.strip_prefix('#').unwrap_or(value);
    let ok = (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| hex_value(b).is_some());
    ok.then(|| Colour::Hex(format!("#{}", hex.to_ascii_lowercase())))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    pub label: String,
    pub color: Colour,
    pub label_color: Colour,
    pub style: &'static str,
    pub readonly: bool,
}

/// README, "Badges": `label` 1 to 40 characters (none a control
/// character, as the parser's own message says), the colours as above,
/// `style` one of three, `readonly` `1`/`true`/`yes` or `0`/`false`/`no`
/// (or given with no value, as a flag); other parameters ignored; a
/// parameter given twice is the last one, and every one given must be
/// good.
pub fn badge(params: &[(String, String)]) -> Option<Badge> {
    let mut badge = Badge {
        label: "views".into(),
        color: Colour::Named("blue"),
        label_color: Colour::Named("grey"),
        style: "flat",
        readonly: false,
    };
    for (key, value) in params {
        match key.as_str() {
            "label" => {
                let n = value.chars().count();
                if !(1..=40).contains(&n) || value.chars().any(is_control) {
                    return None;
                }
                badge.label = value.clone();
            }
            "color" => badge.color = colour(value)?,
            "label_color" => badge.label_color = colour(value)?,
            "style" => {
                badge.style = ["flat", "flat-square", "plastic"]
                    .into_iter()
                    .find(|s| s == value)?;
            }
            "readonly" => {
                badge.readonly = match value.as_str() {
                    "1" | "true" | "yes" | "" => true,
                    "0" | "false" | "no" => false,
                    _ => return None,
                };
            }
            _ => {}
        }
    }
    Some(badge)
}

/// README, "Site settings", **Allowed origins**, and `parse_origin`'s
/// documentation: a host name (dot-separated labels of 1 to 63 letters,
/// digits and inner hyphens, at most 253 bytes; not `null`) or an IPv4
/// address or a bracketed IPv6 one, lower-cased, addresses in their usual
/// form; an optional port, 1 to 65535 in plain digits; or a full origin,
/// `http://` or `https://` (any case) and such an authority, with at most
/// one `/` after it, standing for its host and its port unless that is
/// the scheme's default. A bare port 80 or 443 is refused. Paths, queries,
/// fragments, user names, wildcards and empty entries are refused. A name
/// whose last label is all digits must be an IPv4 address.
pub fn origin_entry(entry: &str) -> Option<String> {
    if entry.is_empty() || entry.contains('*') {
        return None;
    }
    let (scheme, authority) = match entry.find("://") {
        Some(i) => {
            let scheme = entry[..i].to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return None;
            }
            let rest = &entry[i + 3..];
            (Some(scheme), rest.strip_suffix('/').unwrap_or(rest))
        }
        None => (None, entry),
    };
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port_text) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port_text = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        let v6 = rest[..end].parse::<Ipv6Addr>().ok()?;
        (format!("[{v6}]"), port_text)
    } else {
        let (host, port_text) = match authority.find(':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        };
        (host_name(host)?, port_text)
    };
    let port = match port_text {
        None => None,
        Some(p) => {
            let plain = (1..=5).contains(&p.len())
                && !p.starts_with('0')
                && p.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = if plain { p.parse().ok()? } else { return None };
            if !(1..=65_535).contains(&n) {
                return None;
            }
            Some(n)
        }
    };
    let port = match (scheme.as_deref(), port) {
        (Some("http"), Some(80)) | (Some("https"), Some(443)) => None,
        (None, Some(80 | 443)) => return None,
        (_, port) => port,
    };
    Some(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

fn host_name(host: &str) -> Option<String> {
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return host.parse::<Ipv4Addr>().ok().map(|ip| ip.to_string());
    }
    let host = host.to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let ok =
        !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) && host != "null";
    ok.then_some(host)
}

/// README, "Site settings": at most 32 allowed origins, each kept once
/// (normalised), in the order given.
pub fn origin_list(entries: &[String]) -> Option<Vec<String>> {
    if entries.len() > 32 {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for entry in entries {
        let origin = origin_entry(entry)?;
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Some(out)
}

/// README, "Site settings": a counting request is checked by the host of
/// its `Origin` or, without one, its `Referer`: a listed `host` allows
/// that host on any port, a listed `host:port` on that port only; an empty
/// list allows every page, and so does a request with neither header.
/// `page` is `None` for no header, `Some(None)` for one that names no
/// host, else the authority (`host[:port]`, lower-case) of its URL.
pub fn page_allowed(listed: &[String], page: Option<Option<&str>>) -> bool {
    let Some(page) = page else { return true };
    if listed.is_empty() {
        return true;
    }
    let Some(authority) = page else { return false };
    let host = match authority.rsplit_once(':') {
        Some((host, p)) if !host.ends_with(':') && port(p).is_some() && !host.is_empty() => host,
        _ => authority,
    };
    listed
        .iter()
        .any(|entry| entry == authority || entry == host)
}

/// RFC 6750's `credentials = "Bearer" 1*SP token`, the scheme in any case
/// (RFC 9110): the token, exactly as sent, or `None` when the header is
/// not that.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let text = header_text(value)?;
    let space = text.find(' ')?;
    if !text[..space].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = text[space..].trim_start_matches(' ');
    (!token.is_empty()).then_some(token)
}

/// A request id kept and echoed (the request-id layer's documentation in
/// `src/http/mod.rs`): 1 to 128 visible ASCII characters.
pub fn request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len()) && value.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// RFC 9110's `If-None-Match` for a GET: `*`, or a list of entity tags
/// one of which is `etag` by the weak comparison (a `W/` prefix ignored).
/// Headers that are not text say nothing.
pub fn if_none_match(headers: &[Vec<u8>], etag: &str) -> bool {
    headers.iter().filter_map(|h| header_text(h)).any(|h| {
        h.split(',').any(|tag| {
            let tag = tag.trim_matches([' ', '\t']);
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// README, "Time series": a range of hours or days, `from` rounded down
/// and `to` up to whole steps; `to` defaults to the end of the current
/// step, `from` to `to` minus 48 hours or 30 days (not before 1970); a
/// range past 9999-12-31T23:00:00Z (hours) or 9999-12-31 (days), empty,
/// or of more than 10 000 points is refused. `from` alone, after now,
/// ends the range with its own step. As (from, to) in unix seconds.
pub fn range(step: i64, from: Option<i64>, to: Option<i64>, now: i64) -> Option<(i64, i64)> {
    let down = |t: i64| t.div_euclid(step) * step;
    let up = |t: i64| down(t + step - 1);
    let end_of_now = up(now + 1);
    let to = match (from, to) {
        (_, Some(to)) => up(to),
        (Some(from), None) => end_of_now.max(up(from + 1)),
        (None, None) => end_of_now,
    };
    let last = down(end_of_time() - 1);
    if to > last {
        return None;
    }
    let default_points = if step == 3600 { 48 } else { 30 };
    let from = from.map_or((to - default_points * step).max(0), down);
    let points = (to - from) / step;
    (from < to && points <= 10_000).then_some((from, to))
}

/// `next` after signing in: a dashboard page of this host, else the
/// dashboard (`safe_next`'s documentation: "a dashboard path, never
/// another site"): `/dashboard`, or under `/dashboard/` or its query,
/// visible ASCII, with no `//` or `\` that a browser could read as
/// another host.
pub fn next_page(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if (n == "/dashboard"
                || n.starts_with("/dashboard/")
                || n.starts_with("/dashboard?"))
                && n.bytes().all(|b| (b'!'..=b'~').contains(&b))
                && !n.contains("//")
                && !n.contains('\\') =>
        {
            n
        }
        _ => "/dashboard",
    }
}

/// JSON as written, an object's keys in order and repeated ones kept: what
/// a reader that refuses repeated keys must look at.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Reads `bytes` as serde_json reads JSON, or `None`.
    pub fn read(bytes: &[u8]) -> Option<Json> {
        serde_json::from_slice(bytes).ok()
    }

    /// Writes the document back as JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Float(f) => {
                out.push_str(&serde_json::to_string(f).unwrap_or_else(|_| "0.5".into()))
            }
            Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap_or_default());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(n)))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
        Ok(Json::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            fields.push((key, value));
        }
        Ok(Json::Obj(fields))
    }
}

/// One page of an import, as it must be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPage {
    pub page: String,
    pub count: i64,
    pub days: Vec<(i64, i64)>,
}

/// One site of an import, as it must be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSite {
    pub slug: String,
    pub name: String,
    pub count: i64,
    pub hours: Option<Vec<(i64, i64)>>,
    pub created_at: Option<i64>,
    pub pages: Option<Vec<ImportPage>>,
}

/// The fields of an object, each at most once and each one of `known`;
/// `None` for anything else.
fn fields<'a>(value: &'a Json, known: &[&str]) -> Option<Vec<(&'a str, &'a Json)>> {
    let Json::Obj(pairs) = value else { return None };
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in pairs {
        if !known.contains(&key.as_str()) || seen.contains(&key.as_str()) {
            return None;
        }
        seen.push(key);
    }
    Some(pairs.iter().map(|(k, v)| (k.as_str(), v)).collect())
}

fn field<'a>(fields: &[(&str, &'a Json)], name: &str) -> Option<&'a Json> {
    fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// A whole number that fits in 64 bits (JSON `1.0` is not one).
fn whole(value: &Json) -> Option<i64> {
    match value {
        Json::Int(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn text(value: &Json) -> Option<&str> {
    match value {
        Json::Str(s) => Some(s),
        _ => None,
    }
}

fn list(value: &Json) -> Option<&[Json]> {
    match value {
        Json::Arr(items) => Some(items),
        _ => None,
    }
}

/// An optional field: absent is `Some(None)`, present and good
/// `Some(Some(v))`, present and bad `None`.
fn optional<'a, T>(
    fields: &[(&str, &'a Json)],
    name: &str,
    read: impl Fn(&'a Json) -> Option<T>,
) -> Option<Option<T>> {
    match field(fields, name) {
        None => Some(None),
        Some(value) => read(value).map(Some),
    }
}

/// README, "Export and import": a count or hits in an import is a whole
/// number from 0 to 2^53 − 1.
fn import_count(value: &Json) -> Option<i64> {
    whole(value).filter(|n| (0..=9_007_199_254_740_991).contains(n))
}

/// README, "Export and import": an hour or a page's day (`step` seconds
/// long, starting at `t`) is on the hour (on the day), no later than the
/// one holding `now`, and one a series can show: a range ends by
/// 9999-12-31T23:00:00Z (days: 9999-12-31) at the latest, so the last
/// step it can hold starts one step before.
fn storable(t: i64, step: i64, now: i64) -> bool {
    let last_end = days_since_epoch(9999, 12, 31) * 86_400 + 86_400 - step;
    t >= 0 && t % step == 0 && t < last_end && t <= now - now.rem_euclid(step)
}

/// A `{"t": instant, "hits": n}` entry, an hour that can be stored at `now`.
fn import_hour(value: &Json, now: i64) -> Option<(i64, i64)> {
    let f = fields(value, &["t", "hits"])?;
    let t = instant(text(field(&f, "t")?)?).filter(|&t| storable(t, 3600, now))?;
    let hits = import_count(field(&f, "hits")?)?;
    Some((t, hits))
}

/// A `{"d": date, "hits": n}` entry, a day that can be stored at `now`.
fn import_day(value: &Json, now: i64) -> Option<(i64, i64)> {
    let f = fields(value, &["d", "hits"])?;
    let d = date(text(field(&f, "d")?)?).filter(|&d| storable(d * 86_400, 86_400, now))?;
    let hits = import_count(field(&f, "hits")?)?;
    Some((d, hits))
}

fn import_page(value: &Json, now: i64) -> Option<ImportPage> {
    let f = fields(value, &["page", "count", "daily"])?;
    let page = stored_page(text(field(&f, "page")?)?)?;
    let count = import_count(field(&f, "count")?)?;
    let days = optional(&f, "daily", |v| {
        list(v)?
            .iter()
            .map(|d| import_day(d, now))
            .collect::<Option<Vec<_>>>()
    })?
    .unwrap_or_default();
    Some(ImportPage { page, count, days })
}

fn import_site(value: &Json, replay: bool, now: i64) -> Option<ImportSite> {
    let f = fields(
        value,
        &[
            "slug",
            "name",
            "count",
            "base_count",
            "created_at",
            "hourly",
            "pages",
        ],
    )?;
    let slug_text = text(field(&f, "slug")?)?;
    let slug = slug(slug_text)?;
    let count = import_count(field(&f, "count")?)?;
    let name = optional(&f, "name", |v| text(v).map(str::to_owned))?;
    let base = optional(&f, "base_count", import_count)?;
    let created_at = optional(&f, "created_at", |v| instant(text(v)?))?;
    let hourly = optional(&f, "hourly", |v| {
        list(v)?
            .iter()
            .map(|h| import_hour(h, now))
            .collect::<Option<Vec<_>>>()
    })?;
    let pages = optional(&f, "pages", |v| {
        list(v)?
            .iter()
            .map(|p| import_page(p, now))
            .collect::<Option<Vec<_>>>()
    })?;
    let hours = replay.then(|| hourly.unwrap_or_default());
    if let (Some(base), Some(hours)) = (base, &hours) {
        let sum: i128 = hours.iter().map(|(_, n)| i128::from(*n)).sum();
        if i128::from(base) + sum != i128::from(count) {
            return None;
        }
    }
    Some(ImportSite {
        name: name.unwrap_or_else(|| slug.clone()),
        slug,
        count,
        hours,
        created_at,
        pages,
    })
}

/// README, "Export and import": an import is a list of sites or an
/// export's `{"sites": [...]}` (with its `exported_at`, an instant, which
/// is otherwise ignored). A site: `slug` (a slug) and `count`, and
/// optionally `name` (default: the slug), `base_count`, `created_at` (an
/// instant), `hourly` (`{"t": instant, "hits": n}`; kept only when
/// replayed, and then `base_count`, when given, must be `count` minus
/// their hits) and `pages` (`{"page": name, "count": n, "daily": [{"d":
/// date, "hits": n}]}`). Counts, base counts and hits are whole numbers
/// from 0 to 2^53 − 1; each hour and day one that can be stored at `now`
/// (unix seconds), replayed or not. Refused: JSON that is not, a key given
/// twice, an unknown key, an array in place of an object, a missing or
/// mistyped field, a bad slug or page name, a count, hour or day outside
/// those bounds.
pub fn import(bytes: &[u8], replay: bool, now: i64) -> Option<Vec<ImportSite>> {
    let doc = Json::read(bytes)?;
    let sites = match &doc {
        Json::Arr(sites) => sites,
        Json::Obj(_) => {
            let f = fields(&doc, &["sites", "exported_at"])?;
            optional(&f, "exported_at", |v| instant(text(v)?))?;
            list(field(&f, "sites")?)?
        }
        _ => return None,
    };
    sites.iter().map(|s| import_site(s, replay, now)).collect()
}
