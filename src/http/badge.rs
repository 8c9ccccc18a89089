//! `GET /badge/{slug}.svg`: an SVG badge for READMEs and pages.
//!
//! The plain badge counts a hit and shows the new count; `?readonly=1` (and
//! any HEAD request) shows the count without counting. A known bot's fetch
//! of a plain badge is answered as if counted and shows the count as it
//! stands (GitHub's image proxy is no bot: it fetches for the README's
//! readers). Both say `no-cache`, because GitHub's image
//! proxy keeps anything it is allowed to; the read-only one also carries an
//! ETag so that a revalidation costs a 304 when nothing changed.
//!
//! There is no font on the server to measure text with, so widths come from
//! a table of Verdana's advance widths at 11px (the font the badge asks
//! for), and `textLength` makes a browser fit the text to that width if its
//! fallback font is wider or narrower.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::assets::{fnv1a, if_none_match};
use super::client::{self, Client};
use super::error::{ApiError, ErrorCode};
use super::extract::{ApiQuery, PageParam};
use crate::domain::Slug;

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 40;

const DEFAULT_LABEL: &str = "views";
const DEFAULT_COLOR: &str = "#0a7bc2";
const DEFAULT_LABEL_COLOR: &str = "#555";

const COUNTING_CACHE: &str = "max-age=0, no-cache, no-store, must-revalidate";
const READONLY_CACHE: &str = "max-age=0, no-cache";

/// Named colours (the usual badge vocabulary).
const NAMED: &[(&str, &str)] = &[
    ("brightgreen", "#3b1"),
    ("green", "#6a1"),
    ("yellowgreen", "#9a2"),
    ("yellow", "#cb2"),
    ("orange", "#e73"),
    ("red", "#d43"),
    ("blue", "#0a7bc2"),
    ("lightgrey", "#9a9a9a"),
    ("lightgray", "#9a9a9a"),
    ("grey", "#555"),
    ("gray", "#555"),
    ("purple", "#74b"),
    ("pink", "#d5a"),
    ("black", "#222"),
    ("success", "#3b1"),
    ("important", "#e73"),
    ("critical", "#d43"),
    ("informational", "#0a7bc2"),
    ("inactive", "#9a9a9a"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Flat,
    FlatSquare,
    Plastic,
}

/// What a badge shows, all of it validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub label: String,
    pub color: String,
    pub label_color: String,
    pub style: Style,
    pub readonly: bool,
}

impl Options {
    /// Reads `label`, `color`, `label_color`, `style` and `readonly`. Other
    /// parameters are ignored: people add `?v=2` to make a proxy re-fetch.
    pub fn parse(params: &[(String, String)]) -> Result<Options, ApiError> {
        let mut options = Options {
            label: DEFAULT_LABEL.to_owned(),
            color: DEFAULT_COLOR.to_owned(),
            label_color: DEFAULT_LABEL_COLOR.to_owned(),
            style: Style::Flat,
            readonly: false,
        };
        for (key, value) in params {
            match key.as_str() {
                "label" => options.label = label(value)?,
                "color" => options.color = color("color", value)?,
                "label_color" => options.label_color = color("label_color", value)?,
                "style" => options.style = style(value)?,
                "readonly" => options.readonly = flag(value)?,
                _ => {}
            }
        }
        Ok(options)
    }
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidBadge, message)
}

fn label(value: &str) -> Result<String, ApiError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(bad(format!(
            "'label' is 1 to {MAX_LABEL_CHARS} characters with no control characters"
        )));
    }
    Ok(value.to_owned())
}

/// A named colour or 3 or 6 hex digits, with or without `#`; returned as
/// `#` and lower-case hex, so it is safe to put in an attribute as it is.
fn color(name: &str, value: &str) -> Result<String, ApiError> {
    if let Some((_, hex)) = NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(value)) {
        return Ok((*hex).to_owned());
    }
    let hex = value.strip_prefix('#').unwrap_or(value);
    if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(format!("#{}", hex.to_ascii_lowercase()));
    }
    Err(bad(format!(
        "'{name}' is a colour name (brightgreen, green, yellowgreen, yellow, orange, red, \
         blue, lightgrey, grey, purple, pink, black) or 3 or 6 hex digits"
    )))
}

fn style(value: &str) -> Result<Style, ApiError> {
    match value {
        "flat" => Ok(Style::Flat),
        "flat-square" => Ok(Style::FlatSquare),
        "plastic" => Ok(Style::Plastic),
        _ => Err(bad("'style' is flat, flat-square or plastic".into())),
    }
}

fn flag(value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(bad("'readonly' is 1/true/yes or 0/false/no".into())),
    }
}

/// `GET /badge/{slug}.svg`
pub async fn badge(
    method: Method,
    State(state): State<Arc<AppState>>,
    file: Result<Path<String>, PathRejection>,
    ApiQuery(params): ApiQuery<Vec<(String, String)>>,
    PageParam(page): PageParam,
    headers: HeaderMap,
    client: Client,
) -> Result<Response, ApiError> {
    let Ok(Path(file)) = file else {
        return Err(ApiError::not_found());
    };
    let Some(slug) = file.strip_suffix(".svg") else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "badges are at /badge/{slug}.svg",
        ));
    };
    let slug =
        Slug::parse(slug).map_err(|e| ApiError::new(ErrorCode::InvalidSite, e.to_string()))?;
    // Everything is checked before the hit is counted: bad input writes nothing.
    let mut options = Options::parse(&params)?;
    // A HEAD (link checkers, proxies probing) is no view.
    if method == Method::HEAD {
        options.readonly = true;
    }
    let count = match (options.readonly, page.as_deref()) {
        (true, None) => state.counting.hits.count(&slug).await?,
        (true, Some(raw)) => {
            let page = state.counting.pages.page_of(&slug, raw).await?;
            state.counting.pages.page_count(&slug, &page).await?
        }
        (false, page) => {
            let client = client.admit(&state)?;
            let bot = client::is_bot(&state, &headers);
            let told = client::Told {
                page,
                ..Default::default()
            };
            let counted = client.hit_unless_bot(&state, &slug, told, bot).await?;
            counted.page.map_or(counted.count, |(_, count)| count)
        }
    };
    let svg = render(&options, &count.to_string());

    let mut response = if options.readonly {
        let etag = format!("\"{:016x}\"", fnv1a(svg.as_bytes()));
        let mut response = if if_none_match(&headers, &etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            svg_response(svg)
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, v);
        }
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(READONLY_CACHE),
        );
        response
    } else {
        let mut response = svg_response(svg);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(COUNTING_CACHE),
        );
        response
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

fn svg_response(svg: String) -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        svg,
    )
        .into_response()
}

/// Verdana's advance widths at 11px, in tenths of a pixel, for ' ' to '~'.
const WIDTHS: [u16; 95] = [
    39, 44, 51, 91, 70, 119, 80, 30, 49, 49, 70, 91, 40, 47, 40, 67, // ' ' to '/'
    70, 70, 70, 70, 70, 70, 70, 70, 70, 70, // '0' to '9'
    50, 50, 91, 91, 91, 61, 110, // ':' to '@'
    75, 75, 77, 85, 70, 63, 85, 83, 50, 50, 76, 62, 93, // 'A' to 'M'
    83, 87, 67, 87, 77, 75, 67, 81, 75, 109, 75, 67, 75, // 'N' to 'Z'
    49, 67, 49, 91, 70, 70, // '[' to '`'
    66, 69, 57, 69, 66, 39, 69, 70, 30, 38, 65, 30, 107, // 'a' to 'm'
    70, 67, 69, 69, 47, 57, 43, 70, 65, 88, 65, 65, 56, // 'n' to 'z'
    70, 49, 70, 91, // '{' to '~'
];

/// The width of `text` in pixels, estimated per character.
pub fn text_width(text: &str) -> u32 {
    let tenths: u32 = text
        .chars()
        .map(|c| match c {
            ' '..='~' => u32::from(WIDTHS[c as usize - 32]),
            // East Asian wide characters are about a square em.
            '\u{1100}'..='\u{115f}' | '\u{2e80}'..='\u{a4cf}' | '\u{ac00}'..='\u{d7a3}' => 110,
            '\u{f900}'..='\u{faff}' | '\u{fe30}'..='\u{fe4f}' | '\u{ff00}'..='\u{ff60}' => 110,
            '\u{1f300}'..='\u{1faff}' => 110,
            _ => 70,
        })
        .sum();
    tenths.div_ceil(10)
}

/// Escapes text for an XML text node or a double-quoted attribute.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Space either side of each text, in pixels.
const PAD: u32 = 6;

/// The badge: a label on the left, the value on the right.
pub fn render(options: &Options, value: &str) -> String {
    let (label_text, value_text) = (xml_escape(&options.label), xml_escape(value));
    let (label_w, value_w) = (text_width(&options.label), text_width(value));
    let left = label_w + 2 * PAD;
    let right = value_w + 2 * PAD;
    let width = left + right;
    let (height, radius, baseline) = match options.style {
        Style::Flat => (20, 3, 14),
        Style::FlatSquare => (20, 0, 14),
        Style::Plastic => (18, 4, 13),
    };
    let mut svg = String::with_capacity(1200);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{label_text}: {value_text}">"##
    );
    let _ = write!(svg, "<title>{label_text}: {value_text}</title>");
    let gloss = match options.style {
        Style::Flat => Some(
            r##"<stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/>"##,
        ),
        Style::Plastic => Some(
            r##"<stop offset="0" stop-color="#fff" stop-opacity=".7"/><stop offset=".1" stop-color="#aaa" stop-opacity=".1"/><stop offset=".9" stop-opacity=".3"/><stop offset="1" stop-opacity=".5"/>"##,
        ),
        Style::FlatSquare => None,
    };
    if let Some(stops) = gloss {
        let _ = write!(
            svg,
            r##"<linearGradient id="gloss" x2="0" y2="100%">{stops}</linearGradient>"##
        );
    }
    let _ = write!(
        svg,
        r##"<clipPath id="round"><rect width="{width}" height="{height}" rx="{radius}" fill="#fff"/></clipPath><g clip-path="url(#round)"><rect width="{left}" height="{height}" fill="{}"/><rect x="{left}" width="{right}" height="{height}" fill="{}"/>"##,
        options.label_color, options.color
    );
    if gloss.is_some() {
        let _ = write!(
            svg,
            r##"<rect width="{width}" height="{height}" fill="url(#gloss)"/>"##
        );
    }
    svg.push_str(r##"</g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">"##);
    for (text, w, x) in [
        (&label_text, label_w, left / 2),
        (&value_text, value_w, left + right / 2),
    ] {
        // Half-pixel centres keep odd widths crisp.
        let x = format!("{x}.{}", if (w + 2 * PAD) % 2 == 1 { 5 } else { 0 });
        if options.style != Style::FlatSquare {
            let _ = write!(
                svg,
                r##"<text x="{x}" y="{}" fill="#010101" fill-opacity=".3" textLength="{w}" aria-hidden="true">{text}</text>"##,
                baseline + 1
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{x}" y="{baseline}" textLength="{w}">{text}</text>"##
        );
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn widths_come_from_the_table() {
        assert_eq!(text_width(""), 0);
        assert_eq!(text_width("0123456789"), 70);
        assert_eq!(text_width("views"), 31); // 6.5 + 3 + 6.6 + 8.8 + 5.7 = 30.6
        assert_eq!(text_width("iii"), 9);
        assert_eq!(text_width("WWW"), 33);
        assert_eq!(text_width("数"), 11);
    }

    #[test]
    fn options_are_validated() {
        let o = Options::parse(&params(&[
            ("label", "hits"),
            ("color", "ABC"),
            ("label_color", "#123456"),
            ("style", "flat-square"),
            ("readonly", "1"),
            ("v", "anything"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                label: "hits".into(),
                color: "#abc".into(),
                label_color: "#123456".into(),
                style: Style::FlatSquare,
                readonly: true,
            }
        );
        assert_eq!(
            Options::parse(&params(&[("color", "Red")])).unwrap().color,
            "#d43"
        );
        for bad in [
            ("label", ""),
            ("label", &"x".repeat(41)),
            ("label", "a\nb"),
            ("color", "#abcd"),
            ("color", "url(#x)"),
            ("color", "#ggg"),
            ("style", "for-the-badge"),
            ("readonly", "maybe"),
        ] {
            assert!(Options::parse(&params(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            xml_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let o = Options::parse(&params(&[("label", "<&\">")])).unwrap();
        let svg = render(&o, "7");
        assert!(svg.contains(">&lt;&amp;&quot;&gt;</text>"), "{svg}");
        assert!(!svg.contains("<&"));
    }
}
