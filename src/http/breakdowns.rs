//! `GET /api/v1/sites/{slug}/breakdown/{dimension}`: a site's (or one of
//! its pages') hits per referrer, campaign, browser, system, device,
//! country, screen or language over a range of days. Readable where the
//! site's pages are ([`Reader`]): referrers can reveal private links.

// utoipa's derives qualify the types they name.
#![allow(unused_qualifications)]

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::access::Reader;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{ApiQuery, PageParam};
use super::format::{Format, day_range, link_next, slice};
use crate::counting::series::Step;
use crate::domain::breakdown::Dimension;
use crate::domain::{BreakdownQuery, Page, Slug};

/// Values listed when `limit` is not given, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// Days a breakdown covers when the range is not given.
const DEFAULT_DAYS: i64 = 30;

/// The path's parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BreakdownPath {
    /// The site's slug.
    #[param(example = "blog")]
    #[allow(dead_code, reason = "for the schema; SiteSlug reads it")]
    slug: String,
    /// `referrer`, `source`, `medium`, `campaign`, `browser`,
    /// `browser_version`, `os`, `device`, `country`, `screen` or `language`.
    #[allow(dead_code, reason = "for the schema; the handler reads the path")]
    #[param(
        example = "referrer",
        pattern = "^(referrer|source|medium|campaign|browser|browser_version|os|device|country|screen|language)$"
    )]
    dimension: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BreakdownParams {
    /// Start of the range: an RFC 3339 time or a date, taken to its whole
    /// UTC day (default: 30 days before `to`).
    #[param(example = "2026-11-01")]
    from: Option<String>,
    /// End, as `from`, rounded up to a whole day (default: now).
    to: Option<String>,
    /// Only this page's hits: a path as a hit names it, normalised by the
    /// site's rules (`(other)`: the overflow page).
    #[param(example = "/posts/hello", max_length = 1024)]
    #[allow(dead_code, reason = "for the schema; PageParam reads it as it stands")]
    page: Option<String>,
    /// Only the hits from this referrer, as the `referrer` breakdown lists
    /// it: a host, `(none)` (no referrer) or `(other)`. Not with `page`.
    #[param(example = "news.ycombinator.com", max_length = 100)]
    referrer: Option<String>,
    /// Values in this answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Values to skip: the `next` link of the previous answer gives it.
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// A site's hits per value of one dimension, most hits first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakdownBody {
    #[schema(value_type = String, example = "blog")]
    site: Slug,
    #[schema(example = "referrer")]
    dimension: &'static str,
    /// The page, when the breakdown is one page's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "/posts/hello")]
    page: Option<Page>,
    /// The referrer, when the breakdown is of its hits only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "news.ycombinator.com")]
    referrer: Option<String>,
    #[schema(example = "2026-11-01")]
    from: String,
    #[schema(example = "2026-12-01")]
    to: String,
    values: Vec<ValueBody>,
    /// The URL of the next slice, `null` after the last.
    #[schema(
        example = "/api/v1/sites/blog/breakdown/referrer?from=2026-11-01&to=2026-12-01&limit=100&offset=100"
    )]
    next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValueBody {
    /// The value: a host, a campaign's name, a browser's family, a
    /// country's code; `(none)`, `(unknown)` or `(other)`.
    #[schema(example = "news.ycombinator.com")]
    value: String,
    /// Hits in the range.
    hits: i64,
}

/// `GET /api/v1/sites/{slug}/breakdown/{dimension}`
#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/breakdown/{dimension}",
    summary = "A site's (or a page's) hits per value of a dimension in a range of days.",
    description = "Readable with the admin token or a dashboard session, or by anyone when the \
        site is public. For every dimension the values of a day add up to the day's counted hits.",
    params(BreakdownPath, BreakdownParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The values", content(
            (BreakdownBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn breakdown(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    reader: Reader,
    PageParam(page): PageParam,
    ApiQuery(query): ApiQuery<BreakdownParams>,
) -> Result<Response, ApiError> {
    let Ok(Path((slug, dimension))) = path else {
        return Err(ApiError::not_found());
    };
    let slug = Slug::parse(&slug).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidSite,
            "the site slug in the path is not valid",
        )
    })?;
    let dimension = Dimension::parse(&dimension).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no dimension {dimension:?}: one of {}",
                Dimension::ALL.map(Dimension::name).join(", ")
            ),
        )
    })?;
    reader.may_read(&state, &slug).await?;
    let format = Format::parse(query.format.as_deref())?;
    let (limit, offset) = slice(query.limit, query.offset, DEFAULT_LIMIT, MAX_LIMIT)?;
    let range = day_range(query.from.as_deref(), query.to.as_deref(), DEFAULT_DAYS)?;
    let referrer = query.referrer.map(referrer_param).transpose()?;
    if page.is_some() && referrer.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "page and referrer narrow a breakdown one way each: give one of them",
        ));
    }
    let page = match page {
        Some(raw) => Some(state.counting.pages.page_of(&slug, &raw).await?),
        None => None,
    };
    let day = Step::Day.seconds();
    let list = state
        .counting
        .breakdowns
        .breakdown(
            &slug,
            &BreakdownQuery {
                dimension,
                page: page.clone(),
                referrer: referrer.clone(),
                from: range.from / day,
                to: range.to / day,
                limit,
                offset,
            },
        )
        .await?;
    let next = list.more.then(|| {
        let mut next = format!(
            "/api/v1/sites/{slug}/breakdown/{dimension}?from={}&to={}&limit={limit}&offset={}",
            Step::Day.format(range.from),
            Step::Day.format(range.to),
            offset + limit,
        );
        if let Some(page) = &page {
            let encoded: String =
                url::form_urlencoded::byte_serialize(page.as_str().as_bytes()).collect();
            let _ = write!(next, "&page={encoded}");
        }
        if let Some(referrer) = &referrer {
            let encoded: String =
                url::form_urlencoded::byte_serialize(referrer.as_bytes()).collect();
            let _ = write!(next, "&referrer={encoded}");
        }
        if format == Format::Csv {
            next.push_str("&format=csv");
        }
        next
    });
    let mut response = match format {
        Format::Json => Json(BreakdownBody {
            site: list.site.slug.clone(),
            dimension: dimension.name(),
            page,
            referrer,
            from: Step::Day.format(range.from),
            to: Step::Day.format(range.to),
            values: list
                .values
                .iter()
                .map(|(value, hits)| ValueBody {
                    value: value.clone(),
                    hits: *hits,
                })
                .collect(),
            next: next.clone(),
        })
        .into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(dimension, &list.values),
        )
            .into_response(),
    };
    link_next(&mut response, next.as_deref());
    Ok(response)
}

/// `referrer=`: a referrer's value as the breakdowns keep it.
fn referrer_param(raw: String) -> Result<String, ApiError> {
    if crate::domain::breakdown::value(&raw).as_deref() == Some(raw.as_str()) {
        Ok(raw)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "referrer: {raw:?} is not a referrer a breakdown lists (a host, \"(none)\" or \
                 \"(other)\", 1 to {} characters, trimmed, no control or invisible character)",
                crate::domain::breakdown::MAX_VALUE_LEN
            ),
        ))
    }
}

/// `<dimension>,hits` then one line per value; values come from the
/// public, so each goes through the CSV cell writer.
fn csv(dimension: Dimension, values: &[(String, i64)]) -> String {
    let mut out = String::with_capacity(32 + values.len() * 32);
    let _ = writeln!(out, "{},hits", dimension.name());
    for (value, hits) in values {
        let _ = writeln!(out, "{},{hits}", super::csv::cell(value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_names_its_dimension_and_guards_each_value() {
        let values = [("=cmd()".into(), 3), ("example.com".into(), 1)];
        assert_eq!(
            csv(Dimension::Referrer, &values),
            "referrer,hits\n'=cmd(),3\nexample.com,1\n"
        );
    }
}
