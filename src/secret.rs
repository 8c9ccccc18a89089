//! Secrets in settings, and what logs may show of them: a [`Secret`]
//! prints as a placeholder, and [`redact_url`] hides the passwords of a
//! connection string (a database or Redis URL) so that it can be logged.

use std::fmt;
use std::str::FromStr;

/// A string that must not be shown: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Connection parameters that hold a secret, in a URL's query or a
/// key=value connection string.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "pass"];

/// Redacts the passwords of a connection string for logs: a URL's
/// (`postgres://u:***@h1:5432,h2:5432/db`, and a `password` parameter) or
/// a libpq key=value string's (`host=a,b port=1,2 password=***`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_values(url).unwrap_or_else(|| "[unparseable url]".to_owned());
    };
    // The user info ends at the first '@', as PostgreSQL's parsers read it;
    // if the hosts still hold one, the password had an unescaped '@'.
    let Some(first) = rest.find('@') else {
        return format!("{scheme}://{}", redact_params(rest));
    };
    let after = &rest[first + 1..];
    let authority = after.find(['/', '?']).map_or(after, |end| &after[..end]);
    let at = authority.rfind('@').map_or(first, |i| first + 1 + i);
    let user = rest[..first].split(':').next().unwrap_or("");
    format!(
        "{scheme}://{}:***@{}",
        redact_params(user),
        redact_params(&rest[at + 1..])
    )
}

fn is_secret(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s))
}

/// Hides the secret parameters of a URL's query.
fn redact_params(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_secret(key) => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

/// A key=value connection string with its secret values hidden; `None`
/// if it is not one (values are bare words or single-quoted, with
/// backslash escapes, as libpq reads them).
fn redact_key_values(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let end = value_end(rest)?;
        let value = if is_secret(key) { "***" } else { &rest[..end] };
        out.push(format!("{key}={value}"));
        rest = rest[end..].trim_start();
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// Where the value at the start of `text` ends: after its closing quote,
/// or at the first unescaped whitespace; `None` if a quote is left open.
fn value_end(text: &str) -> Option<usize> {
    let quoted = text.starts_with('\'');
    let mut chars = text.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return Some(i + 1),
            c if !quoted && c.is_whitespace() => return Some(i),
            _ => {}
        }
    }
    (!quoted).then_some(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_url_hides_password_only() {
        assert_eq!(
            redact_url("postgres://tally:s3cret@db:5432/linode"),
            "postgres://tally:***@db:5432/linode"
        );
        assert_eq!(
            redact_url("sqlite://data/tally.db"),
            "sqlite://data/tally.db"
        );
        assert_eq!(redact_url("nonsense"), "[unparseable url]");
        assert_eq!(
            redact_url("postgres://db/t?sslmode=require&password=s3cret&user=u"),
            "postgres://db/t?sslmode=require&password=***&user=u"
        );
    }

    #[test]
    fn redact_url_hides_passwords_of_multi_host_urls_and_key_value_strings() {
        let cases = [
            (
                "postgres://tally:s3cret@h1:5432,h2:5432/db?target_session_attrs=read-write",
                "postgres://tally:***@h1:5432,h2:5432/db?target_session_attrs=read-write",
            ),
            // Unescaped '/' and '@' in the password.
            (
                "postgres://tally:s3/cr@t@h1,h2/db",
                "postgres://tally:***@h1,h2/db",
            ),
            (
                "postgresql://h1,h2/db?user=tally&password=s3cret&sslmode=require",
                "postgresql://h1,h2/db?user=tally&password=***&sslmode=require",
            ),
            (
                "host=a,b port=1,2 user=tally password='s3 cret' dbname=db",
                "host=a,b port=1,2 user=tally password=*** dbname=db",
            ),
            (
                "host = a  password=s3\\ cret sslpassword=s3cret target_session_attrs=read-write",
                "host=a password=*** sslpassword=*** target_session_attrs=read-write",
            ),
            ("host=a password='s3cret", "[unparseable url]"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("s3"), "{url}");
        }
    }

    #[test]
    fn redact_url_hides_redis_passwords_in_every_form() {
        for (url, shown) in [
            // An ACL user and its password, over TLS and in plain text.
            (
                "rediss://tally:s3cret@redis.example:6380/0",
                "rediss://tally:***@redis.example:6380/0",
            ),
            (
                "redis://tally:s3cret@127.0.0.1:6379/2",
                "redis://tally:***@127.0.0.1:6379/2",
            ),
            // The default user's password only.
            ("redis://:s3cret@redis:6379", "redis://:***@redis:6379"),
            ("rediss://:s3cret@redis", "rediss://:***@redis"),
            // No password at all: nothing to hide.
            ("redis://redis:6379", "redis://redis:6379"),
            ("rediss://redis:6380/1", "rediss://redis:6380/1"),
            // A password that was not percent-encoded.
            (
                "redis://tally:s3/cr?et#x@redis:6379/0",
                "redis://tally:***@redis:6379/0",
            ),
            ("redis://:s3cr@et@redis/0", "redis://:***@redis/0"),
            // A Unix socket's password is a query parameter.
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "postgres://tally@db/linode?password=s3cret&sslmode=require",
                "postgres://tally:***@db/linode?password=***&sslmode=require",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("s3"), "{url}");
        }
        // A '/' before the '@': the user info still ends at the '@'.
        assert_eq!(
            redact_url("redis://us/er:s3cret@redis"),
            "redis://us/er:***@redis"
        );
    }
}
