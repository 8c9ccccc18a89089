//! A site's pages: the ranked list, one page's count, and the pixel that
//! counts a page where no script runs.
//!
//! Reading is public, like a site's count and series: it says no more than
//! a page's badge would.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::access::Reader;
use super::client::{self, Admitted};
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{Admin, ApiQuery, PageParam, SiteSlug, SlugPath};
use super::format::{Format, day_range, link_next, slice};
use crate::counting::series::{Range, Step};
use crate::domain::breakdown;
use crate::domain::{Page, PageList, PageSelector, PageSlice, Slug};

/// Pages listed when `limit` is not given, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// Days the list covers when the range is not given.
const DEFAULT_DAYS: i64 = 30;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PagesQuery {
    /// Start of the range whose hits rank the pages: an RFC 3339 time or a
    /// date, taken to its whole UTC day (default: 30 days before `to`).
    #[param(example = "2026-11-01")]
    from: Option<String>,
    /// End, as `from`, rounded up to a whole day (default: now).
    to: Option<String>,
    /// Pages in this answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Pages to skip: the `next` link of the previous answer gives it.
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// A site's pages, most hits in the range first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PagesBody {
    #[schema(value_type = String, example = "blog")]
    site: Slug,
    #[schema(example = "2026-11-01")]
    from: String,
    #[schema(example = "2026-12-01")]
    to: String,
    pages: Vec<PageBody>,
    /// The URL of the next slice, `null` after the last.
    #[schema(
        example = "/api/v1/sites/blog/pages?from=2026-11-01&to=2026-12-01&limit=100&offset=100"
    )]
    next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody {
    #[schema(value_type = String, example = "/posts/hello")]
    page: Page,
    /// All-time count.
    count: i64,
    /// Hits in the range.
    hits: i64,
}

/// `GET /api/v1/sites/{slug}/pages`
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/pages",
    summary = "A site's pages, ranked by hits in a range of days, then by count.",
    params(SlugPath, PagesQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The pages", content(
            (PagesBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    reader: Reader,
    ApiQuery(query): ApiQuery<PagesQuery>,
) -> Result<Response, ApiError> {
    reader.may_read(&state, &slug).await?;
    let format = Format::parse(query.format.as_deref())?;
    let (limit, offset) = slice(query.limit, query.offset, DEFAULT_LIMIT, MAX_LIMIT)?;
    let range = day_range(query.from.as_deref(), query.to.as_deref(), DEFAULT_DAYS)?;
    let day = Step::Day.seconds();
    let list = state
        .counting
        .pages
        .pages(
            &slug,
            PageSlice {
                from: range.from / day,
                to: range.to / day,
                limit,
                offset,
            },
        )
        .await?;
    let next = list.more.then(|| {
        format!(
            "/api/v1/sites/{slug}/pages?from={}&to={}&limit={limit}&offset={}{}",
            Step::Day.format(range.from),
            Step::Day.format(range.to),
            offset + limit,
            if format == Format::Csv {
                "&format=csv"
            } else {
                ""
            },
        )
    });
    let mut response = match format {
        Format::Json => Json(body(list, &range, next.clone())).into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&list),
        )
            .into_response(),
    };
    link_next(&mut response, next.as_deref());
    Ok(response)
}

fn body(list: PageList, range: &Range, next: Option<String>) -> PagesBody {
    PagesBody {
        site: list.site.slug,
        from: Step::Day.format(range.from),
        to: Step::Day.format(range.to),
        pages: list
            .pages
            .into_iter()
            .map(|p| PageBody {
                page: p.page,
                count: p.count,
                hits: p.hits,
            })
            .collect(),
        next,
    }
}

/// `page,count,hits` then one line per page; page names come from the
/// public, so each goes through the CSV cell writer.
fn csv(list: &PageList) -> String {
    let mut out = String::with_capacity(32 + list.pages.len() * 48);
    out.push_str("page,count,hits\n");
    for p in &list.pages {
        let _ = writeln!(
            out,
            "{},{},{}",
            super::csv::cell(p.page.as_str()),
            p.count,
            p.hits
        );
    }
    out
}

/// Which pages to delete: exactly one of `page`, `prefix` and
/// `fewer_than`. The dashboard's forms send the same fields.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// One page, by the name the list shows (not normalised again);
    /// `(other)` is the overflow page.
    #[param(example = "/posts/hello")]
    pub page: Option<String>,
    /// Every page whose name starts with this, `/` first (never `(other)`).
    #[param(example = "/junk/")]
    pub prefix: Option<String>,
    /// Every page with fewer than this many hits (1 or more) in the days
    /// `from` to `to`; never `(other)`. `fewer_than=1`: the pages not hit
    /// in those days.
    #[param(value_type = Option<i64>, minimum = 1, example = 2)]
    pub fewer_than: Option<String>,
    /// With `fewer_than`: start of the range, as the list takes it
    /// (default: 30 days before `to`).
    #[param(example = "2026-11-01")]
    pub from: Option<String>,
    /// With `fewer_than`: end of the range, as the list takes it (default:
    /// now).
    pub to: Option<String>,
}

impl DeleteQuery {
    /// The selector these parameters name; a bad or missing one is a 400
    /// `invalid_query` that names it, before anything is written.
    pub fn selector(&self) -> Result<PageSelector, ApiError> {
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
        let given: Vec<&str> = [
            ("page", self.page.is_some()),
            ("prefix", self.prefix.is_some()),
            ("fewer_than", self.fewer_than.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if let [first, second, ..] = given[..] {
            return Err(invalid(format!(
                "'{first}' and '{second}' were both given: name the pages to delete with one \
                 of 'page', 'prefix' and 'fewer_than'"
            )));
        }
        if self.fewer_than.is_none() {
            for (name, value) in [("from", &self.from), ("to", &self.to)] {
                if value.is_some() {
                    return Err(invalid(format!("'{name}' goes with 'fewer_than' only")));
                }
            }
        }
        if let Some(page) = &self.page {
            return Page::stored(page)
                .map(PageSelector::Named)
                .map_err(|e| invalid(format!("'page': {e}")));
        }
        if let Some(prefix) = &self.prefix {
            return PageSelector::prefix(prefix).map_err(|e| invalid(format!("'prefix': {e}")));
        }
        let Some(below) = &self.fewer_than else {
            return Err(invalid(
                "name the pages to delete with one of 'page', 'prefix' and 'fewer_than'".into(),
            ));
        };
        let hits = below
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("'fewer_than' is a whole number from 1".into()))?;
        let range = days(self.from.as_deref(), self.to.as_deref())?;
        let day = Step::Day.seconds();
        Ok(PageSelector::FewerThan {
            hits,
            from: range.from / day,
            to: range.to / day,
        })
    }
}

/// The whole UTC days from `from` to `to`, as the list reads them.
fn days(from: Option<&str>, to: Option<&str>) -> Result<Range, ApiError> {
    day_range(from, to, DEFAULT_DAYS)
}

/// How many pages a deletion took.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedBody {
    #[schema(value_type = String, example = "blog")]
    site: Slug,
    #[schema(example = 3)]
    deleted: u64,
}

/// `DELETE /api/v1/sites/{slug}/pages?page=…` (or `prefix=…`, or
/// `fewer_than=…&from=…&to=…`)
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{slug}/pages",
    summary = "Deletes pages: one, those under a prefix, or those with fewer than N hits in a \
               range of days; the site's count and series stay as they are.",
    description = "The pages' rows and daily hits go, and the site's page total (its room \
                   under the page limit) drops by the pages deleted, `(other)` aside.",
    params(SlugPath, DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeletedBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<DeletedBody>, ApiError> {
    let which = query.selector()?;
    let deleted = state.counting.pages.delete_pages(&slug, &which).await?;
    Ok(Json(DeletedBody {
        site: slug,
        deleted,
    }))
}

/// `/pages/count`'s query: `page`, once, and nothing else.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageCountQuery {
    /// The page: a path, `/` first, as it stands in the query string
    /// (decoded once, with the hit body's `page`, so `+` is a `+`), at most
    /// 1024 characters; normalised as a hit's page is.
    #[param(example = "/posts/hello", max_length = 1024)]
    #[allow(dead_code, reason = "for the schema; PageParam reads it as it stands")]
    page: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page: a path, `/` first, as it stands in the query string
    /// (decoded once, with the hit body's `page`, so `+` is a `+`), at most
    /// 1024 characters; normalised as a hit's page is.
    #[param(example = "/posts/hello", max_length = 1024)]
    #[allow(dead_code, reason = "for the schema; PageParam reads it as it stands")]
    page: Option<String>,
}

/// One page's count.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageCountBody {
    #[schema(value_type = String, example = "blog")]
    site: Slug,
    #[schema(value_type = String, example = "/posts/hello")]
    page: Page,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    count: i64,
}

/// `GET /api/v1/sites/{slug}/pages/count?page=/posts/hello`
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/pages/count",
    summary = "Reads one page's count without counting (0 for a page never hit).",
    params(SlugPath, PageCountQuery),
    responses(
        (status = 200, body = PageCountBody),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn count(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    PageParam(page): PageParam,
    ApiQuery(_): ApiQuery<PageCountQuery>,
) -> Result<Json<PageCountBody>, ApiError> {
    let raw = page.ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidQuery, "name the page: ?page=/posts/hello")
    })?;
    let page = state.counting.pages.page_of(&slug, &raw).await?;
    let count = state.counting.pages.page_count(&slug, &page).await?;
    Ok(Json(PageCountBody {
        site: slug,
        page,
        count,
    }))
}

/// The smallest GIF: one transparent pixel.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// What a pixel's query says beside its page: `ref=` (the page the visit
/// came from, a URL) and `screen=` (a width in CSS pixels), each decoded
/// as a form's value, checked as a hit body's `referrer` and `screen` are.
/// Other parameters are left alone (a page may add its own, to defeat a
/// cache).
#[derive(Debug, Default)]
struct PixelFacts {
    referrer: Option<String>,
    screen: Option<u32>,
}

impl PixelFacts {
    fn of(query: Option<&str>) -> Result<PixelFacts, ApiError> {
        let mut facts = PixelFacts::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "ref" if facts.referrer.is_none() => {
                    breakdown::referrer_host(&value)
                        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("ref: {e}")))?;
                    facts.referrer = Some(value.into_owned());
                }
                "screen" if facts.screen.is_none() => {
                    let width = breakdown::screen_width(&value).map_err(|e| {
                        ApiError::new(ErrorCode::InvalidQuery, format!("screen: {e}"))
                    })?;
                    facts.screen = Some(width);
                }
                _ => {}
            }
        }
        Ok(facts)
    }
}

/// `GET /count/{slug}.gif?page=/posts/hello`: counts a hit (on the page,
/// if one is named) and answers a transparent pixel that no cache keeps.
/// `ref=` and `screen=` say where the visit came from and the screen's
/// width. A known bot's hit is answered the same and not counted.
pub async fn pixel(
    State(state): State<Arc<AppState>>,
    file: Result<Path<String>, PathRejection>,
    PageParam(page): PageParam,
    uri: axum::http::Uri,
    headers: HeaderMap,
    client: Admitted,
) -> Result<Response, ApiError> {
    let Ok(Path(file)) = file else {
        return Err(ApiError::not_found());
    };
    let Some(slug) = file.strip_suffix(".gif") else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "pixels are at /count/{slug}.gif",
        ));
    };
    let slug =
        Slug::parse(slug).map_err(|e| ApiError::new(ErrorCode::InvalidSite, e.to_string()))?;
    let facts = PixelFacts::of(uri.query())?;
    let told = client::Told {
        page: page.as_deref(),
        referrer: facts.referrer.as_deref(),
        screen: facts.screen,
    };
    let bot = client::is_bot(&state, &headers);
    client.hit_unless_bot(&state, &slug, told, bot).await?;
    Ok(pixel_response())
}

/// `HEAD /count/{slug}.gif`: the pixel's headers, without counting (a
/// probe is no view).
pub async fn pixel_head() -> Response {
    pixel_response()
}

pub(super) fn pixel_response() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PIXEL,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_is_a_one_by_one_gif() {
        assert_eq!(&PIXEL[..6], b"GIF89a");
        assert_eq!(u16::from_le_bytes([PIXEL[6], PIXEL[7]]), 1);
        assert_eq!(u16::from_le_bytes([PIXEL[8], PIXEL[9]]), 1);
        assert_eq!(PIXEL.last(), Some(&0x3b));
    }
}
