//! HTML building blocks: the page layout, numbers for people.
//!
//! Markup is built with [`maud`], which escapes every spliced value, in
//! text and in (always double-quoted) attributes alike; only
//! [`PreEscaped`] is written as is, and it is used for constant text alone.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

use crate::http::assets;

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

/// `part` as a percentage of `whole`, to one decimal, rounded half up:
/// `33.3%`; a dash when `whole` is not positive.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "–".to_owned();
    }
    // Counts go up to 2^53: a thousand times one fits in 128 bits.
    let tenths = (i128::from(part) * 2000 + i128::from(whole)) / (i128::from(whole) * 2);
    format!("{}.{}%", tenths.div_euclid(10), tenths.rem_euclid(10))
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

/// A whole page around `main`. The line breaks between the parts keep the
/// source readable; browsers ignore them.
pub fn page(status: StatusCode, title: &str, nav: Option<&Nav<'_>>, main: Markup) -> Response {
    let favicon = assets::FAVICON.href();
    let refresh = if nav.is_some() { 30 } else { 0 };
    let markup = html! {
        // maud's own DOCTYPE is upper case; this is the same declaration.
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tally" }
                link rel="icon" href=(favicon) type="image/svg+xml";
                link rel="stylesheet" href=(assets::CSS.href());
                script src=(assets::JS.href()) defer {}
            }
            "\n"
            body data-refresh=(refresh) {
                "\n"
                header class="top" {
                    a class="brand" href="/dashboard" {
                        img src=(favicon) alt="" width="22" height="22";
                        "tally"
                    }
                    @if let Some(nav) = nav {
                        nav class="sites" aria-label="Sites" {
                            a href="/dashboard" aria-current=[nav.current.is_none().then_some("page")] {
                                "All sites"
                            }
                            @for (slug, href) in &nav.sites {
                                a href=(href) aria-current=[(nav.current == Some(*slug)).then_some("page")] {
                                    (slug)
                                }
                            }
                        }
                        @if nav.sign_out {
                            form method="post" action="/dashboard/logout" {
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                "\n"
                main id="content" { "\n" (main) "\n" }
                "\n"
            }
        }
        "\n"
    };
    html_response(status, markup.into_string())
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
    let main = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/dashboard" { "All sites" } }
    };
    page(status, title, None, main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(-1234), "-1,234");
    }

    #[test]
    fn percentages_have_one_decimal_rounded_half_up() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%");
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(1, 16), "6.3%");
        assert_eq!(percent(1, 2001), "0.0%");
        assert_eq!(percent(0, 5), "0.0%");
        assert_eq!(percent(5, 5), "100.0%");
        assert_eq!(percent(3, 0), "–");
        let max = (1i64 << 53) - 1;
        assert_eq!(percent(max, max), "100.0%");
        assert_eq!(percent(max / 4, max), "25.0%");
    }
}
