//! Breakdowns: where a counted hit came from and who read it, one value
//! per [`Dimension`], counted per site, page and UTC day beside the hit.
//!
//! Nothing here keeps an address or a whole user agent: a hit's
//! [`Facets`] are the values it counts under (a host, a campaign's name,
//! a browser's family, a country's code), and only their counts are
//! stored. The rules for what a client sends (a referrer, a campaign's
//! parameters, a screen width, `Accept-Language`) are here; the user
//! agent and the address are read by the `audience` module.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use percent_encoding::percent_decode_str;

/// The value of a dimension the hit said nothing about: no referrer, no
/// campaign.
pub const NONE: &str = "(none)";
/// The value of a dimension that could not be told: no user agent, no
/// country database, a screen width not sent.
pub const UNKNOWN: &str = "(unknown)";
/// The value a hit counts under once its site has the most distinct
/// values a dimension may have in a day.
pub const OTHER: &str = "(other)";

/// Longest value kept, in characters; a longer one (a campaign's name) is
/// cut there.
pub const MAX_VALUE_LEN: usize = 100;

/// Longest referrer a client may send, in bytes.
pub const MAX_REFERRER_LEN: usize = 2048;

/// The widest screen a client may report, in CSS pixels.
pub const MAX_SCREEN_WIDTH: u32 = 100_000;

/// The default for the distinct values a site keeps per dimension per day
/// (`TALLY_BREAKDOWN_LIMIT`).
pub const DEFAULT_VALUE_LIMIT: i64 = 100;

/// What a breakdown counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The referring host.
    Referrer,
    /// `utm_source` (or `ref`) of the page's address.
    Source,
    /// `utm_medium`.
    Medium,
    /// `utm_campaign`.
    Campaign,
    /// The browser's family.
    Browser,
    /// The browser's family and major version (`Firefox 125`): the
    /// browsers drilled down.
    BrowserVersion,
    /// The operating system's family.
    Os,
    /// `desktop`, `mobile` or `tablet`.
    Device,
    /// ISO 3166-1 alpha-2, from the client's address.
    Country,
    /// A class of screen widths (see [`screen_class`]).
    Screen,
    /// The primary subtag of the preferred language.
    Language,
}

impl Dimension {
    pub const ALL: [Dimension; 11] = [
        Dimension::Referrer,
        Dimension::Source,
        Dimension::Medium,
        Dimension::Campaign,
        Dimension::Browser,
        Dimension::BrowserVersion,
        Dimension::Os,
        Dimension::Device,
        Dimension::Country,
        Dimension::Screen,
        Dimension::Language,
    ];

    /// Its name in the API's routes and in exports.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Referrer => "referrer",
            Dimension::Source => "source",
            Dimension::Medium => "medium",
            Dimension::Campaign => "campaign",
            Dimension::Browser => "browser",
            Dimension::BrowserVersion => "browser_version",
            Dimension::Os => "os",
            Dimension::Device => "device",
            Dimension::Country => "country",
            Dimension::Screen => "screen",
            Dimension::Language => "language",
        }
    }

    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The number the stores keep it under: its place in [`Dimension::ALL`],
    /// which only ever grows at the end.
    pub const fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Dimension> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Dimension::ALL.get(i).copied())
    }

    /// The value of a hit that says nothing about this dimension.
    pub fn absent(self) -> &'static str {
        match self {
            Dimension::Referrer | Dimension::Source | Dimension::Medium | Dimension::Campaign => {
                NONE
            }
            _ => UNKNOWN,
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hit's value under every dimension.
#[derive(Clone, PartialEq, Eq)]
pub struct Facets([Value; Dimension::ALL.len()]);

/// One value of a hit's [`Facets`]. Most are names fixed in the code (a
/// browser's family, `(none)`), held without a copy; a browser's version
/// is shared by the hits of one user agent; what a hit brings of its own
/// (a referrer, a campaign) is its own. So a hit's facets cost one
/// allocation for what is its own, not one per dimension.
#[derive(Debug, Clone)]
pub enum Value {
    Fixed(&'static str),
    Shared(Arc<str>),
}

impl Deref for Value {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Value::Fixed(text) => text,
            Value::Shared(text) => text,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        **self == **other
    }
}

impl Eq for Value {}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Value {
        Value::Fixed(text)
    }
}

impl From<Arc<str>> for Value {
    fn from(text: Arc<str>) -> Value {
        Value::Shared(text)
    }
}

impl From<Box<str>> for Value {
    fn from(text: Box<str>) -> Value {
        Value::Shared(text.into())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Shared(text.into())
    }
}

impl Default for Facets {
    /// A hit that says nothing: `(none)` or `(unknown)` everywhere.
    fn default() -> Self {
        Facets(Dimension::ALL.map(|d| d.absent().into()))
    }
}

impl fmt::Debug for Facets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Facets {
    pub fn get(&self, dimension: Dimension) -> &str {
        &self.0[dimension as usize]
    }

    /// Sets a value as it stands: the caller made it with one of the rules
    /// here (or [`value`]).
    pub fn set(&mut self, dimension: Dimension, value: impl Into<Value>) {
        self.0[dimension as usize] = value.into();
    }

    pub fn iter(&self) -> impl Iterator<Item = (Dimension, &str)> {
        Dimension::ALL.into_iter().zip(self.0.iter().map(|v| &**v))
    }

    /// Sets the campaign's three dimensions from the page's address.
    pub fn set_campaign(&mut self, page: &str) {
        let campaign = Campaign::of(page);
        for (dimension, value) in [
            (Dimension::Source, campaign.source),
            (Dimension::Medium, campaign.medium),
            (Dimension::Campaign, campaign.campaign),
        ] {
            match value {
                Some(value) => self.set(dimension, value),
                None => self.set(dimension, NONE),
            }
        }
    }
}

/// A value as a breakdown keeps it: trimmed, cut at [`MAX_VALUE_LEN`]
/// characters, `None` when nothing is left. A value with a control, a
/// bidirectional control or an invisible character is [`UNKNOWN`]: it
/// could show as another.
pub fn value(raw: &str) -> Option<Box<str>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let within =
        |ranges: &[std::ops::RangeInclusive<char>], c: char| ranges.iter().any(|r| r.contains(&c));
    if raw.chars().any(|c| {
        c.is_control() || within(super::page::BIDI_CONTROLS, c) || within(super::page::INVISIBLE, c)
    }) {
        return Some(UNKNOWN.into());
    }
    Some(match raw.char_indices().nth(MAX_VALUE_LEN) {
        Some((at, _)) => raw[..at].trim_end().into(),
        None => raw.into(),
    })
}

/// Why a referrer a client sent is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReferrer {
    #[error("a referrer is at most {MAX_REFERRER_LEN} bytes")]
    TooLong,
    #[error("a referrer is an absolute URL with a host (https://example.com/page)")]
    NotUrl,
}

/// The referring host a client sent (the body's `referrer`, the pixel's
/// `ref=`): an absolute URL with a host, or the empty string for none.
/// The host is lower-case, without its port or a trailing dot.
pub fn referrer_host(raw: &str) -> Result<Option<Box<str>>, InvalidReferrer> {
    if raw.len() > MAX_REFERRER_LEN {
        return Err(InvalidReferrer::TooLong);
    }
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| InvalidReferrer::NotUrl)?;
    let host = url.host_str().ok_or(InvalidReferrer::NotUrl)?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(InvalidReferrer::NotUrl);
    }
    Ok(value(&host))
}

/// The referring host of a `Referer` header, which a browser sends and a
/// client cannot be refused for: `None` when it names no host.
pub fn referer_header_host(raw: &str) -> Option<Box<str>> {
    referrer_host(raw).ok().flatten()
}

/// Whether a referring `host` is the site's own, so that a reader moving
/// between its pages is no referral: the host of the page the hit came
/// from (`page_host`, its `Origin` or `Referer`), a host the site allows
/// (`origins`, `host` or `host:port`), or the site's slug when that is a
/// domain. Hosts compare without case, a port or a leading `www.`.
pub fn is_own_host(host: &str, page_host: Option<&str>, slug: &str, origins: &[String]) -> bool {
    let bare = |h: &str| -> String {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        let h = match h.strip_prefix('[') {
            // An IPv6 literal keeps its colons; only a port follows `]`.
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => h.split(':').next().unwrap_or_default().to_owned(),
        };
        h.strip_prefix("www.").map(str::to_owned).unwrap_or(h)
    };
    let host = bare(host);
    !host.is_empty()
        && page_host
            .into_iter()
            .chain(std::iter::once(slug))
            .chain(origins.iter().map(String::as_str))
            .any(|own| bare(own) == host)
}

/// A campaign's parameters in a page's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    pub source: Option<Box<str>>,
    pub medium: Option<Box<str>>,
    pub campaign: Option<Box<str>>,
}

impl Campaign {
    /// `utm_source` (else `ref`), `utm_medium` and `utm_campaign` of the
    /// page's query string, as a form encodes them (`+` is a space); the
    /// first of each when repeated. A value that is not UTF-8 once decoded
    /// is [`UNKNOWN`].
    pub fn of(page: &str) -> Campaign {
        let page = page.split('#').next().unwrap_or_default();
        let Some((_, query)) = page.split_once('?') else {
            return Campaign::default();
        };
        let mut found = Campaign::default();
        let mut referred = None;
        for pair in query.split('&') {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "utm_source" => &mut found.source,
                "ref" => &mut referred,
                "utm_medium" => &mut found.medium,
                "utm_campaign" => &mut found.campaign,
                _ => continue,
            };
            if slot.is_some() {
                continue;
            }
            let raw = raw.replace('+', " ");
            *slot = match percent_decode_str(&raw).decode_utf8() {
                Ok(text) => value(&text),
                Err(_) => Some(UNKNOWN.into()),
            };
        }
        if found.source.is_none() {
            found.source = referred;
        }
        found
    }
}

/// The classes of screen widths, in CSS pixels: each class's name and the
/// narrowest width in it.
pub const SCREEN_CLASSES: [(&str, u32); 5] = [
    ("phone", 0),
    ("tablet", 600),
    ("laptop", 1024),
    ("desktop", 1440),
    ("wide", 2560),
];

/// The class of a screen `width` CSS pixels wide.
pub fn screen_class(width: u32) -> &'static str {
    SCREEN_CLASSES
        .iter()
        .rev()
        .find(|(_, from)| width >= *from)
        .map_or(SCREEN_CLASSES[0].0, |(name, _)| name)
}

/// Why a screen width a client sent is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("screen is a width in CSS pixels, from 1 to {MAX_SCREEN_WIDTH}")]
pub struct InvalidScreen;

/// A screen width as a client sends it in a query (`screen=1280`).
pub fn screen_width(raw: &str) -> Result<u32, InvalidScreen> {
    let width: u32 = raw.parse().map_err(|_| InvalidScreen)?;
    checked_screen(width)
}

/// A screen width within 1 and [`MAX_SCREEN_WIDTH`].
pub fn checked_screen(width: u32) -> Result<u32, InvalidScreen> {
    if (1..=MAX_SCREEN_WIDTH).contains(&width) {
        Ok(width)
    } else {
        Err(InvalidScreen)
    }
}

/// The primary subtag of the language an `Accept-Language` header prefers
/// (the highest weight, the first of equals), lower-case; `None` when it
/// names none (`*`, a weight of 0, a subtag that is not 2 or 3 letters).
pub fn language(accept_language: &str) -> Option<Box<str>> {
    let mut best: Option<(&str, u16)> = None;
    for entry in accept_language.split(',').take(32) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1000), weight)
            .unwrap_or(0);
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if weight == 0
            || !(2..=3).contains(&primary.len())
            || !primary.bytes().all(|b| b.is_ascii_alphabetic())
        {
            continue;
        }
        if best.is_none_or(|(_, w)| weight > w) {
            best = Some((primary, weight));
        }
    }
    best.map(|(primary, _)| primary.to_ascii_lowercase().into())
}

/// A quality value (`0.8`) in thousandths; `None` when it is not one.
fn weight(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(fraction),
        "1" if fraction == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_have_one_name_and_one_code_each() {
        for (i, d) in Dimension::ALL.into_iter().enumerate() {
            assert_eq!(Dimension::parse(d.name()), Some(d));
            assert_eq!(d.code(), i16::try_from(i).unwrap());
            assert_eq!(Dimension::from_code(d.code()), Some(d));
        }
        assert_eq!(Dimension::parse("Browser"), None);
        assert_eq!(Dimension::parse("pages"), None);
        assert_eq!(Dimension::from_code(11), None);
        assert_eq!(Dimension::from_code(-1), None);
    }

    #[test]
    fn a_hit_that_says_nothing_is_none_or_unknown() {
        let facets = Facets::default();
        let values: Vec<(&str, &str)> = facets.iter().map(|(d, v)| (d.name(), v)).collect();
        assert_eq!(
            values,
            [
                ("referrer", "(none)"),
                ("source", "(none)"),
                ("medium", "(none)"),
                ("campaign", "(none)"),
                ("browser", "(unknown)"),
                ("browser_version", "(unknown)"),
                ("os", "(unknown)"),
                ("device", "(unknown)"),
                ("country", "(unknown)"),
                ("screen", "(unknown)"),
                ("language", "(unknown)"),
            ]
        );
    }

    #[test]
    fn a_site_s_own_hosts_are_no_referrers() {
        let origins = [
            "blog.example.org".to_owned(),
            "shop.example.org:8443".to_owned(),
        ];
        let own = |host: &str, page: Option<&str>| is_own_host(host, page, "example.com", &origins);
        // The page's own host, on any port, with or without www.
        assert!(own("news.example.net", Some("news.example.net:8080")));
        assert!(own("www.news.example.net", Some("News.Example.Net")));
        // An allowed origin, the slug as a domain.
        assert!(own("blog.example.org", None));
        assert!(own("shop.example.org", None));
        assert!(own("example.com", None));
        assert!(own("www.example.com", None));
        assert!(own("example.com.", None));
        // IPv6 literals keep their address.
        assert!(own("[2001:db8::1]", Some("[2001:db8::1]:443")));
        assert!(!own("[2001:db8::2]", Some("[2001:db8::1]:443")));
        // Anyone else's.
        assert!(!own("news.ycombinator.com", Some("blog.example.org")));
        assert!(!own("example.com.evil.test", None));
        assert!(!own("sub.example.com", None));
        assert!(!own("", Some("")));
    }

    #[test]
    fn referrers_are_their_lower_case_host() {
        let host = |raw: &str| referrer_host(raw).map(|h| h.map(String::from));
        assert_eq!(
            host("https://News.YCombinator.com/item?id=1"),
            Ok(Some("news.ycombinator.com".into()))
        );
        assert_eq!(
            host("http://example.org.:8080/a"),
            Ok(Some("example.org".into()))
        );
        assert_eq!(
            host("android-app://com.google.android.gm/"),
            Ok(Some("com.google.android.gm".into()))
        );
        assert_eq!(
            host("https://[2001:DB8::1]/"),
            Ok(Some("[2001:db8::1]".into()))
        );
        assert_eq!(
            host("https://bücher.example/"),
            Ok(Some("xn--bcher-kva.example".into()))
        );
        assert_eq!(host(""), Ok(None));
        assert_eq!(host("  "), Ok(None));
        assert_eq!(host("news.ycombinator.com"), Err(InvalidReferrer::NotUrl));
        assert_eq!(host("/relative/path"), Err(InvalidReferrer::NotUrl));
        assert_eq!(
            host("mailto:someone@example.com"),
            Err(InvalidReferrer::NotUrl)
        );
        assert_eq!(host("data:text/plain,hi"), Err(InvalidReferrer::NotUrl));
        let long = format!("https://example.com/{}", "a".repeat(MAX_REFERRER_LEN));
        assert_eq!(host(&long), Err(InvalidReferrer::TooLong));
        assert_eq!(referer_header_host("not a url"), None);
        assert_eq!(
            referer_header_host("https://a.example/x").as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn campaigns_come_from_the_page_s_query() {
        let c = Campaign::of("/post?utm_source=news&utm_medium=email&utm_campaign=Spring+Sale%21");
        assert_eq!(c.source.as_deref(), Some("news"));
        assert_eq!(c.medium.as_deref(), Some("email"));
        assert_eq!(c.campaign.as_deref(), Some("Spring Sale!"));
        let c = Campaign::of("/post?ref=producthunt&utm_source=&x=1");
        assert_eq!(c.source.as_deref(), Some("producthunt"));
        assert_eq!(c.medium, None);
        let c = Campaign::of("/post?utm_source=a&ref=b&utm_source=c");
        assert_eq!(c.source.as_deref(), Some("a"));
        assert_eq!(Campaign::of("/post#utm_source=a"), Campaign::default());
        assert_eq!(Campaign::of("/post"), Campaign::default());
        let c = Campaign::of("/?utm_source=%FF&utm_medium=%E2%80%AEevil");
        assert_eq!(c.source.as_deref(), Some(UNKNOWN));
        assert_eq!(c.medium.as_deref(), Some(UNKNOWN));
        let c = Campaign::of(&format!("/?utm_campaign={}", "é".repeat(150)));
        assert_eq!(c.campaign.as_deref(), Some("é".repeat(100).as_str()));

        let mut facets = Facets::default();
        facets.set_campaign("/?utm_medium=social");
        assert_eq!(facets.get(Dimension::Source), NONE);
        assert_eq!(facets.get(Dimension::Medium), "social");
        assert_eq!(facets.get(Dimension::Campaign), NONE);
    }

    #[test]
    fn screens_fall_in_documented_classes() {
        let classes: Vec<&str> = [1, 599, 600, 1023, 1024, 1439, 1440, 2559, 2560, 100_000]
            .into_iter()
            .map(screen_class)
            .collect();
        assert_eq!(
            classes,
            [
                "phone", "phone", "tablet", "tablet", "laptop", "laptop", "desktop", "desktop",
                "wide", "wide"
            ]
        );
        assert_eq!(screen_width("1280"), Ok(1280));
        assert_eq!(screen_width("100000"), Ok(100_000));
        for bad in ["0", "100001", "-1", "12.5", "", " 1280", "1e3"] {
            assert_eq!(screen_width(bad), Err(InvalidScreen), "{bad:?}");
        }
    }

    #[test]
    fn the_preferred_language_is_its_primary_subtag() {
        let lang = |raw: &str| language(raw).map(String::from);
        assert_eq!(lang("en-US,en;q=0.9,de;q=0.8"), Some("en".into()));
        assert_eq!(lang("de;q=0.5, FR-ca;q=0.9"), Some("fr".into()));
        assert_eq!(lang("pt_BR"), Some("pt".into()));
        assert_eq!(lang("*"), None);
        assert_eq!(lang("en;q=0"), None);
        assert_eq!(lang("en;q=0, *;q=0.5"), None);
        assert_eq!(lang("x-klingon, fil"), Some("fil".into()));
        assert_eq!(lang("e1, de"), Some("de".into()));
        assert_eq!(lang("en;q=2, de;q=0.1"), Some("de".into()));
        assert_eq!(lang("en;q=0.3333, it;q=0.333"), Some("it".into()));
        assert_eq!(lang(""), None);
    }

    #[test]
    fn values_are_trimmed_cut_and_never_invisible() {
        assert_eq!(value("  spring  ").as_deref(), Some("spring"));
        assert_eq!(value("   "), None);
        assert_eq!(value("a\u{200B}b").as_deref(), Some(UNKNOWN));
        assert_eq!(value("a\nb").as_deref(), Some(UNKNOWN));
        let long = "x".repeat(99) + " yz";
        assert_eq!(value(&long).as_deref(), Some("x".repeat(99).as_str()));
    }
}
