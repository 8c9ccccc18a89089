//! Pages: the paths within a site that hits may name.
//!
//! A [`Page`] is made only by [`Page::parse`], which normalises what a
//! client sent (a browser's `location.pathname + location.search`, a path
//! typed into a pixel's URL, the `page` of a query string as it stands
//! there) into the one name the store keeps, by the rule docs/pages.md states
//! under "Paths": the path percent-decoded once, in Unicode NFC, its dot
//! segments resolved and its repeated slashes merged, its trailing slash
//! kept or dropped as the site says, and `%`, `?` and `#` encoded again;
//! no fragment and no query string except the parameters the site asked
//! to keep. Bidirectional controls and invisible characters are refused,
//! so that no name looks like another. The hits past a site's page limit
//! land on one [`OVERFLOW_PAGE`], a name no parsed page can take.

use std::fmt;
use std::ops::RangeInclusive;

use percent_encoding::percent_decode_str;
use unicode_normalization::UnicodeNormalization;

use super::SiteRules;

/// Longest page name kept, in bytes, after normalising.
pub const MAX_PAGE_LEN: usize = 512;

/// Longest page a client may send, in characters (Unicode scalar values,
/// as JSON Schema's `maxLength` counts them), before normalising (a query
/// string that will be dropped may make it longer than the name kept). Any
/// page within it fits in a body or a request head whatever its encoding.
pub const MAX_RAW_PAGE_LEN: usize = 1024;

/// Query parameters a site may keep in its page names, at most.
pub const MAX_KEPT_PARAMS: usize = 8;

/// The page that the hits past a site's page limit count on. It does not
/// start with `/`, so no page a client names is ever this one.
pub const OVERFLOW_PAGE: &str = "(other)";

/// The default limit on a site's distinct pages.
pub const DEFAULT_PAGE_LIMIT: i64 = 10_000;

/// The bidirectional controls, which no page may hold: they reorder the
/// text around them, so a name could show as another.
pub const BIDI_CONTROLS: &[RangeInclusive<char>] = &[
    '\u{061C}'..='\u{061C}',
    '\u{200E}'..='\u{200F}',
    '\u{202A}'..='\u{202E}',
    '\u{2066}'..='\u{2069}',
];

/// The invisible characters, which no page may hold either: every format
/// character (Unicode's general category Cf) and every default-ignorable
/// code point (`Default_Ignorable_Code_Point`) that is not a bidirectional
/// control, as of Unicode 16.
pub const INVISIBLE: &[RangeInclusive<char>] = &[
    '\u{00AD}'..='\u{00AD}',
    '\u{034F}'..='\u{034F}',
    '\u{0600}'..='\u{0605}',
    '\u{06DD}'..='\u{06DD}',
    '\u{070F}'..='\u{070F}',
    '\u{0890}'..='\u{0891}',
    '\u{08E2}'..='\u{08E2}',
    '\u{115F}'..='\u{1160}',
    '\u{17B4}'..='\u{17B5}',
    '\u{180B}'..='\u{180F}',
    '\u{200B}'..='\u{200D}',
    '\u{2060}'..='\u{2065}',
    '\u{206A}'..='\u{206F}',
    '\u{3164}'..='\u{3164}',
    '\u{FE00}'..='\u{FE0F}',
    '\u{FEFF}'..='\u{FEFF}',
    '\u{FFA0}'..='\u{FFA0}',
    '\u{FFF0}'..='\u{FFFB}',
    '\u{110BD}'..='\u{110BD}',
    '\u{110CD}'..='\u{110CD}',
    '\u{13430}'..='\u{1343F}',
    '\u{1BCA0}'..='\u{1BCA3}',
    '\u{1D173}'..='\u{1D17A}',
    '\u{E0000}'..='\u{E0FFF}',
];

/// Whether a page's name keeps the `/` that ends its path (`/posts/hello/`
/// and `/posts/hello` two pages) or drops it (one page, `/posts/hello`).
/// The root `/` is `/` either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrailingSlash {
    #[default]
    Keep,
    Merge,
}

impl TrailingSlash {
    pub fn parse(text: &str) -> Option<TrailingSlash> {
        match text {
            "keep" => Some(TrailingSlash::Keep),
            "merge" => Some(TrailingSlash::Merge),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrailingSlash::Keep => "keep",
            TrailingSlash::Merge => "merge",
        }
    }
}

/// A normalised page name; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Page(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPage {
    #[error("a page is a path that starts with /")]
    NoLeadingSlash,
    #[error("a page is at most {MAX_PAGE_LEN} bytes")]
    TooLong,
    #[error("a page may not contain control characters")]
    Control,
    #[error("a page's percent-encoding must decode to UTF-8")]
    NotUtf8,
    #[error(
        "a page may not contain bidirectional controls (U+061C, U+200E, U+200F, U+202A to \
         U+202E, U+2066 to U+2069)"
    )]
    Bidi,
    #[error(
        "a page may not contain invisible characters (format characters such as U+200B to \
         U+200D, U+2060 and U+FEFF, and other default-ignorable code points)"
    )]
    Invisible,
}

impl Page {
    /// Normalises `raw` by the site's `rules`: its path as the module
    /// documentation says, with a trailing slash as
    /// [`SiteRules::trailing_slash`] says, then the query parameters named
    /// in [`SiteRules::keep_params`] (in that order, each at most once,
    /// its value percent-decoded with `+` a space).
    pub fn parse(raw: &str, rules: &SiteRules) -> Result<Page, InvalidPage> {
        if raw.len() > 4 * MAX_RAW_PAGE_LEN || raw.chars().count() > MAX_RAW_PAGE_LEN {
            return Err(InvalidPage::TooLong);
        }
        let raw = raw.split('#').next().unwrap_or_default();
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        let path: Vec<u8> = percent_decode_str(path).collect();
        if path.first() != Some(&b'/') {
            return Err(InvalidPage::NoLeadingSlash);
        }
        let mut name = resolved(&text(path)?, rules.trailing_slash);
        let mut first = true;
        for param in &rules.keep_params {
            let value = query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = percent_decode_str(k).decode_utf8().ok()?;
                (k == param.as_str()).then_some(v)
            });
            if let Some(value) = value {
                name.push(if first { '?' } else { '&' });
                first = false;
                name.push_str(param);
                name.push('=');
                let value = value.replace('+', " ");
                name.push_str(&text(percent_decode_str(&value).collect())?);
            }
        }
        if name.len() > MAX_PAGE_LEN {
            return Err(InvalidPage::TooLong);
        }
        Ok(Page(name.into()))
    }

    /// The page a reader names with `raw` (`/pages/count`, a series, a
    /// read-only badge, the dashboard): `(other)`, percent-encoded or not,
    /// is the overflow page, which no hit can name; anything else is read
    /// as [`Page::parse`] reads a hit's page.
    pub fn named(raw: &str, rules: &SiteRules) -> Result<Page, InvalidPage> {
        if percent_decode_str(raw).eq(OVERFLOW_PAGE.bytes()) {
            return Ok(Page::overflow());
        }
        Page::parse(raw, rules)
    }

    /// A page name read back from the store, or from an export: checked as
    /// a name is (a leading `/` or the overflow page, bounded, no control
    /// characters) but not normalised again.
    pub fn stored(name: &str) -> Result<Page, InvalidPage> {
        if name != OVERFLOW_PAGE {
            if !name.starts_with('/') {
                return Err(InvalidPage::NoLeadingSlash);
            }
            if name.len() > MAX_PAGE_LEN {
                return Err(InvalidPage::TooLong);
            }
            if name.chars().any(char::is_control) {
                return Err(InvalidPage::Control);
            }
        }
        Ok(Page(name.into()))
    }

    pub fn overflow() -> Page {
        Page(OVERFLOW_PAGE.into())
    }

    pub fn is_overflow(&self) -> bool {
        &*self.0 == OVERFLOW_PAGE
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Page {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Percent-decoded bytes as text in Unicode NFC, refusing what is not
/// UTF-8, control characters, bidirectional controls and invisible
/// characters.
fn text(decoded: Vec<u8>) -> Result<String, InvalidPage> {
    let text = String::from_utf8(decoded).map_err(|_| InvalidPage::NotUtf8)?;
    let within = |ranges: &[RangeInclusive<char>], c: char| ranges.iter().any(|r| r.contains(&c));
    for c in text.chars() {
        if c.is_control() {
            return Err(InvalidPage::Control);
        }
        if within(BIDI_CONTROLS, c) {
            return Err(InvalidPage::Bidi);
        }
        if within(INVISIBLE, c) {
            return Err(InvalidPage::Invisible);
        }
    }
    Ok(text.nfc().collect())
}

/// A decoded path (`/` first) as a page's name: its empty and `.`
/// segments dropped and each `..` taking the segment before it away (none
/// past the root), which is RFC 3986's remove_dot_segments once repeated
/// slashes are merged; a `/` at the end when the path ended in `/`, `/.`
/// or `/..` and the site keeps trailing slashes; `%`, `?` and `#` encoded
/// again (`%25`, `%3F`, `%23`), so that a name never holds them bare.
fn resolved(path: &str, trailing: TrailingSlash) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut last = "";
    for segment in path.split('/').skip(1) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
        last = segment;
    }
    let mut name = String::with_capacity(path.len() + 1);
    for segment in &segments {
        name.push('/');
        for c in segment.chars() {
            match c {
                '%' => name.push_str("%25"),
                '?' => name.push_str("%3F"),
                '#' => name.push_str("%23"),
                c => name.push(c),
            }
        }
    }
    let directory = matches!(last, "" | "." | "..");
    if segments.is_empty() || (directory && trailing == TrailingSlash::Keep) {
        name.push('/');
    }
    name
}

/// Checks a query parameter name a site asks to keep.
pub fn validate_kept_param(name: &str) -> Result<(), super::Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(super::Invalid(format!(
            "a kept query parameter is 1 to 64 of A-Z a-z 0-9 _ - . (got {name:?})"
        )))
    }
}

/// Checks a list of kept query parameters; each is kept once, in the
/// order first given.
pub fn parse_kept_params(names: &[String]) -> Result<Vec<String>, super::Invalid> {
    if names.len() > MAX_KEPT_PARAMS {
        return Err(super::Invalid(format!(
            "a site keeps at most {MAX_KEPT_PARAMS} query parameters"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        validate_kept_param(name)?;
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(raw: &str) -> Result<String, InvalidPage> {
        Page::parse(raw, &SiteRules::default()).map(|p| p.as_str().to_owned())
    }

    fn merged(raw: &str) -> Result<String, InvalidPage> {
        let rules = SiteRules {
            trailing_slash: TrailingSlash::Merge,
            ..SiteRules::default()
        };
        Page::parse(raw, &rules).map(|p| p.as_str().to_owned())
    }

    fn keeping(keep: &[&str]) -> SiteRules {
        SiteRules {
            keep_params: keep.iter().map(|k| k.to_string()).collect(),
            ..SiteRules::default()
        }
    }

    #[test]
    fn a_path_is_decoded_and_loses_its_query_and_fragment() {
        assert_eq!(page("/posts/hello").unwrap(), "/posts/hello");
        assert_eq!(page("/posts/hello?utm=x#top").unwrap(), "/posts/hello");
        assert_eq!(page("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(page("/").unwrap(), "/");
        assert_eq!(page("/a b").unwrap(), "/a b");
    }

    #[test]
    fn kept_parameters_stay_in_the_site_s_order() {
        let keep = keeping(&["lang", "id"]);
        let p = Page::parse("/doc?x=1&id=7&lang=en+GB&id=8", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc?lang=en GB&id=7");
        let p = Page::parse("/doc?x=1", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc");
        // After the normalised path; a value is checked and in NFC too.
        let p = Page::parse("//doc/./x/../?lang=e%CC%81", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc/?lang=\u{e9}");
        assert_eq!(
            Page::parse("/doc?lang=%E2%80%AE", &keep),
            Err(InvalidPage::Bidi)
        );
        // An encoded `?` is part of the path, not the start of a query.
        let p = Page::parse("/doc%3Flang=en", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc%3Flang=en");
    }

    #[test]
    fn dot_segments_and_repeated_slashes_are_resolved() {
        assert_eq!(page("//a/./b/../c").unwrap(), "/a/c");
        assert_eq!(page("/a//../b").unwrap(), "/b");
        assert_eq!(page("/../../x").unwrap(), "/x");
        assert_eq!(page("/..").unwrap(), "/");
        assert_eq!(page("//").unwrap(), "/");
        assert_eq!(page("/a/b/..").unwrap(), "/a/");
        assert_eq!(page("/a/.").unwrap(), "/a/");
        assert_eq!(page("/%2E%2e/a/%2e").unwrap(), "/a/");
        assert_eq!(page("/a/.../..b").unwrap(), "/a/.../..b");
        assert_eq!(page("/a%2Fb").unwrap(), "/a/b");
        assert_eq!(page("%2Fa").unwrap(), "/a");
    }

    #[test]
    fn a_trailing_slash_is_kept_or_merged() {
        assert_eq!(page("/posts/hello/").unwrap(), "/posts/hello/");
        assert_eq!(merged("/posts/hello/").unwrap(), "/posts/hello");
        assert_eq!(merged("/posts/hello//").unwrap(), "/posts/hello");
        assert_eq!(merged("/posts/hello/..").unwrap(), "/posts");
        assert_eq!(merged("/").unwrap(), "/");
        assert_eq!(merged("/..").unwrap(), "/");
        assert_eq!(page("/").unwrap(), "/");
    }

    #[test]
    fn names_are_in_nfc() {
        assert_eq!(page("/cafe\u{301}").unwrap(), "/caf\u{e9}");
        assert_eq!(page("/cafe%CC%81").unwrap(), "/caf\u{e9}");
        assert_eq!(page("/\u{212B}").unwrap(), "/\u{C5}");
    }

    #[test]
    fn percent_question_mark_and_hash_stay_encoded() {
        assert_eq!(page("/a%3Fb").unwrap(), "/a%3Fb");
        assert_eq!(page("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(page("/a%23b").unwrap(), "/a%23b");
        assert_eq!(page("/a%25").unwrap(), "/a%25");
        assert_eq!(page("/a%").unwrap(), "/a%25");
        assert_eq!(page("/a%zz").unwrap(), "/a%25zz");
        assert_eq!(page("/a%253Fb").unwrap(), "/a%253Fb");
        assert_eq!(page("/a?b").unwrap(), "/a");
        assert_eq!(page("/a+b").unwrap(), "/a+b");
        // A name is its own normalisation.
        for name in ["/a%3Fb", "/a%253Fb", "/a%23b%25", "/caf\u{e9}/", "/a+b c"] {
            assert_eq!(page(name).unwrap(), name);
        }
    }

    #[test]
    fn bidirectional_controls_and_invisible_characters_are_refused() {
        for bidi in [
            "\u{61C}", "\u{200E}", "\u{200F}", "\u{202A}", "\u{202E}", "\u{2066}", "\u{2069}",
        ] {
            assert_eq!(page(&format!("/a{bidi}b")), Err(InvalidPage::Bidi));
        }
        assert_eq!(page("/a%E2%80%AEb"), Err(InvalidPage::Bidi));
        for invisible in [
            "\u{AD}",
            "\u{200B}",
            "\u{200C}",
            "\u{200D}",
            "\u{2060}",
            "\u{FEFF}",
            "\u{FE0F}",
            "\u{3164}",
            "\u{E0041}",
            "\u{1343F}",
        ] {
            assert_eq!(
                page(&format!("/a{invisible}b")),
                Err(InvalidPage::Invisible)
            );
        }
        assert_eq!(page("/a%E2%80%8Bb"), Err(InvalidPage::Invisible));
        // Visible neighbours of those are names.
        for visible in ["\u{A0}", "\u{2010}", "\u{2028}", "\u{FFFD}"] {
            assert!(page(&format!("/a{visible}b")).is_ok(), "{visible:?}");
        }
        // What is dropped is not read.
        assert_eq!(page("/a?x=\u{202E}#\u{200B}").unwrap(), "/a");
    }

    #[test]
    fn a_reader_names_the_overflow_page_encoded_or_not() {
        let rules = SiteRules::default();
        assert!(Page::named("(other)", &rules).unwrap().is_overflow());
        assert!(Page::named("%28other%29", &rules).unwrap().is_overflow());
        assert_eq!(Page::named("/a/../b", &rules).unwrap().as_str(), "/b");
        assert_eq!(
            Page::named("(other", &rules),
            Err(InvalidPage::NoLeadingSlash)
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        assert_eq!(page("posts/hello"), Err(InvalidPage::NoLeadingSlash));
        assert_eq!(page(""), Err(InvalidPage::NoLeadingSlash));
        assert_eq!(
            page("https://example.com/"),
            Err(InvalidPage::NoLeadingSlash)
        );
        assert_eq!(page("/a\u{7}b"), Err(InvalidPage::Control));
        assert_eq!(page("/a%0Ab"), Err(InvalidPage::Control));
        assert_eq!(page("/a%FFb"), Err(InvalidPage::NotUtf8));
        assert_eq!(
            page(&format!("/{}", "a".repeat(MAX_PAGE_LEN))),
            Err(InvalidPage::TooLong)
        );
        assert_eq!(
            page(&format!("/{}", "a".repeat(MAX_PAGE_LEN - 1)))
                .unwrap()
                .len(),
            MAX_PAGE_LEN
        );
        assert_eq!(
            page(&format!("/?{}", "a".repeat(MAX_RAW_PAGE_LEN))),
            Err(InvalidPage::TooLong)
        );
    }

    #[test]
    fn the_overflow_page_cannot_be_named_by_a_client() {
        assert_eq!(page(OVERFLOW_PAGE), Err(InvalidPage::NoLeadingSlash));
        assert!(Page::stored(OVERFLOW_PAGE).unwrap().is_overflow());
        assert!(
            !Page::parse("/", &SiteRules::default())
                .unwrap()
                .is_overflow()
        );
        assert_eq!(Page::stored("x"), Err(InvalidPage::NoLeadingSlash));
    }

    #[test]
    fn kept_parameter_names_are_checked() {
        assert!(validate_kept_param("lang").is_ok());
        assert!(validate_kept_param("").is_err());
        assert!(validate_kept_param("a b").is_err());
        assert!(validate_kept_param(&"a".repeat(65)).is_err());
    }

    #[test]
    fn a_kept_parameter_list_is_checked_bounded_and_kept_once_per_name() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_kept_params(&list(&["lang", "id", "lang"])).unwrap(),
            list(&["lang", "id"])
        );
        let most: Vec<String> = (0..MAX_KEPT_PARAMS).map(|i| format!("p{i}")).collect();
        assert_eq!(parse_kept_params(&most).unwrap(), most);
        let too_many: Vec<String> = (0..=MAX_KEPT_PARAMS).map(|i| format!("p{i}")).collect();
        assert_eq!(
            parse_kept_params(&too_many).unwrap_err().0,
            "a site keeps at most 8 query parameters"
        );
        assert_eq!(
            parse_kept_params(&list(&["lang", "a b"])).unwrap_err().0,
            "a kept query parameter is 1 to 64 of A-Z a-z 0-9 _ - . (got \"a b\")"
        );
    }
}
