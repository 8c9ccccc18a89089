//! Pages: the paths within a site that hits may name.
//!
//! A [`Page`] is made only by [`Page::parse`], which normalises what a
//! client sent (a browser's `location.pathname + location.search`, a path
//! typed into a pixel's URL) into the one name the store keeps: the path
//! percent-decoded, with no fragment and no query string except the
//! parameters the site asked to keep. The hits past a site's page limit
//! land on one [`OVERFLOW_PAGE`], a name no parsed page can take.

use std::fmt;

use percent_encoding::percent_decode_str;

/// Longest page name kept, in bytes, after normalising.
pub const MAX_PAGE_LEN: usize = 512;

/// Longest page a client may send, in bytes, before normalising (a query
/// string that will be dropped may make it longer than the name kept).
pub const MAX_RAW_PAGE_LEN: usize = 2048;

/// Query parameters a site may keep in its page names, at most.
pub const MAX_KEPT_PARAMS: usize = 8;

/// The page that the hits past a site's page limit count on. It does not
/// start with `/`, so no page a client names is ever this one.
pub const OVERFLOW_PAGE: &str = "(other)";

/// The default limit on a site's distinct pages.
pub const DEFAULT_PAGE_LIMIT: i64 = 10_000;

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
}

impl Page {
    /// Normalises `raw`, keeping the query parameters named in `keep` (in
    /// the order `keep` lists them, each at most once).
    pub fn parse(raw: &str, keep: &[String]) -> Result<Page, InvalidPage> {
        if raw.len() > MAX_RAW_PAGE_LEN {
            return Err(InvalidPage::TooLong);
        }
        let raw = raw.split('#').next().unwrap_or_default();
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        if !path.starts_with('/') {
            return Err(InvalidPage::NoLeadingSlash);
        }
        let mut name = decode(path)?;
        let mut first = true;
        for param in keep {
            let value = query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k).ok()?.as_str() == param.as_str()).then_some(v)
            });
            if let Some(value) = value {
                name.push(if first { '?' } else { '&' });
                first = false;
                name.push_str(param);
                name.push('=');
                name.push_str(&decode(&value.replace('+', " "))?);
            }
        }
        if name.len() > MAX_PAGE_LEN {
            return Err(InvalidPage::TooLong);
        }
        Ok(Page(name.into()))
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

/// Percent-decodes `s`, refusing what does not decode to UTF-8 and any
/// control character.
fn decode(s: &str) -> Result<String, InvalidPage> {
    let decoded = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| InvalidPage::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(InvalidPage::Control);
    }
    Ok(decoded.into_owned())
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
        Page::parse(raw, &[]).map(|p| p.as_str().to_owned())
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
        let keep = vec!["lang".to_owned(), "id".to_owned()];
        let p = Page::parse("/doc?x=1&id=7&lang=en+GB&id=8", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc?lang=en GB&id=7");
        let p = Page::parse("/doc?x=1", &keep).unwrap();
        assert_eq!(p.as_str(), "/doc");
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
        assert!(!Page::parse("/", &[]).unwrap().is_overflow());
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
