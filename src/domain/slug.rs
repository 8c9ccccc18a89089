//! Site slugs: parsed once where they enter, then carried as [`Slug`].

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Longest site slug.
pub const MAX_SLUG_LEN: usize = 64;

/// A valid site slug: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter
/// or digit (so a domain name such as the seed's `linodeexample.com` is
/// one). The only way to get one is [`Slug::parse`], so a function that
/// takes a `Slug` never checks it again.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(Box<str>);

/// Why a text is not a slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a site slug is 1 to {MAX_SLUG_LEN} characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
)]
pub struct InvalidSlug;

impl Slug {
    pub fn parse(text: &str) -> Result<Slug, InvalidSlug> {
        let bytes = text.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_SLUG_LEN
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
        if ok {
            Ok(Slug(text.into()))
        } else {
            Err(InvalidSlug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Slug {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl TryFrom<String> for Slug {
    type Error = InvalidSlug;

    fn try_from(text: String) -> Result<Slug, InvalidSlug> {
        Slug::parse(&text)
    }
}

impl TryFrom<&str> for Slug {
    type Error = InvalidSlug;

    fn try_from(text: &str) -> Result<Slug, InvalidSlug> {
        Slug::parse(text)
    }
}

impl std::str::FromStr for Slug {
    type Err = InvalidSlug;

    fn from_str(text: &str) -> Result<Slug, InvalidSlug> {
        Slug::parse(text)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0.into()
    }
}

impl PartialEq<str> for Slug {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Slug {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_names_that_start_with_a_letter_or_digit() {
        for good in ["a", "blog", "linodeexample.com", "0-9_.x", &"a".repeat(64)] {
            assert_eq!(Slug::parse(good).map(String::from), Ok(good.to_owned()));
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "Blog",
            "a b",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert_eq!(Slug::parse(bad), Err(InvalidSlug), "{bad:?}");
        }
    }

    #[test]
    fn a_slug_reads_from_json_only_when_valid() {
        let slug: Slug = serde_json::from_str("\"blog\"").unwrap();
        assert_eq!(slug, "blog");
        assert_eq!(serde_json::to_string(&slug).unwrap(), "\"blog\"");
        assert!(serde_json::from_str::<Slug>("\"Blog\"").is_err());
    }
}
