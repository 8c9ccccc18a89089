//! HTML building blocks: escaping, the page layout, numbers for people.
//!
//! Pages are built with `write!` rather than a template engine: there are
//! four of them, and every interpolation goes through [`Esc`] or is a number.

use std::fmt::{self, Write as _};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::assets;

/// Displays its text HTML-escaped, for text and double-quoted attributes.
#[derive(Debug, Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the top bar shows.
#[derive(Debug, Default)]
pub struct Nav<'a> {
    /// (slug, href) of the sites to link, and which one is shown.
    pub sites: Vec<(&'a str, String)>,
    pub current: Option<&'a str>,
    /// Whether to offer "Sign out" (signed in with the session cookie).
    pub sign_out: bool,
}

/// A whole page. `main` is trusted HTML; everything else is escaped here.
pub fn page(status: StatusCode, title: &str, nav: Option<&Nav<'_>>, main: &str) -> Response {
    let mut html = String::with_capacity(main.len() + 2048);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · tally</title>\
         <link rel=\"icon\" href=\"{}\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"{}\">\
         <script src=\"{}\" defer></script></head>\n",
        Esc(title),
        assets::FAVICON.href(),
        assets::CSS.href(),
        assets::JS.href(),
    );
    let refresh = if nav.is_some() { 30 } else { 0 };
    let _ = write!(
        html,
        "<body data-refresh=\"{refresh}\">\n<header class=\"top\">"
    );
    let _ = write!(
        html,
        "<a class=\"brand\" href=\"/dashboard\"><img src=\"{}\" alt=\"\" width=\"22\" height=\"22\">tally</a>",
        assets::FAVICON.href()
    );
    if let Some(nav) = nav {
        html.push_str("<nav class=\"sites\" aria-label=\"Sites\">");
        let all = if nav.current.is_none() {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(html, "<a href=\"/dashboard\"{all}>All sites</a>");
        for (slug, href) in &nav.sites {
            let current = if nav.current == Some(*slug) {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(html, "<a href=\"{}\"{current}>{}</a>", Esc(href), Esc(slug));
        }
        html.push_str("</nav>");
        if nav.sign_out {
            html.push_str(
                "<form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form>",
            );
        }
    }
    html.push_str("</header>\n<main id=\"content\">\n");
    html.push_str(main);
    html.push_str("\n</main>\n</body></html>\n");
    html_response(status, html)
}

/// An HTML response with the headers every dashboard page carries: no
/// caching (counts change), and a policy that allows only our own files.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let main = format!(
        "<h1>{}</h1><p>{}</p><p><a href=\"/dashboard\">All sites</a></p>",
        Esc(title),
        Esc(message)
    );
    page(status, title, None, &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            Esc(r#"<b class="x">Tom & 'Jerry'</b>"#).to_string(),
            "&lt;b class=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
        assert_eq!(Esc("plain é").to_string(), "plain é");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(-1234), "-1,234");
    }
}
