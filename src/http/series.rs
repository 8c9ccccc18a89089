//! `GET /api/v1/sites/{slug}/series`: a site's hits per hour or per day.
//!
//! Public, like reading a count: a series says no more than the counts a
//! badge shows over time.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::access::Reader;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{ApiQuery, PageParam, SiteSlug, SlugPath};
use super::format::{Format, instant};
use crate::counting::series::{Range, Series, Step};
use crate::domain::Page;
use crate::domain::time::unix;

/// Points a series has when the range is not given: the dashboard's views.
pub fn default_points(step: Step) -> i64 {
    match step {
        Step::Hour => 48,
        Step::Day => 30,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Start: an RFC 3339 time or a date, years 1970 to 9999 (default: 48
    /// hours or 30 days before `to`).
    #[param(example = "2026-11-22")]
    from: Option<String>,
    /// End, as `from` (default: now).
    to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(pattern = "^(hour|day)$")]
    step: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
    /// One page's series instead of the site's (kept per day: `step` is
    /// `day`, the default with a page): as it stands in the query string,
    /// at most 1024 characters, normalised as a hit's page is.
    #[param(example = "/posts/hello", max_length = 1024)]
    #[allow(
        dead_code,
        reason = "for the schema and the unknown-field check; PageParam reads it as it stands"
    )]
    page: Option<String>,
}

/// Hits per step over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesBody {
    site: String,
    /// The page, for a page's series.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    page: Option<Page>,
    step: &'static str,
    from: String,
    to: String,
    /// Hits before `from` (including those in no hour: imported starting
    /// counts, folded old hours), so `before + sum(hits)` is the count at `to`.
    before: i64,
    points: Vec<PointBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PointBody {
    t: String,
    hits: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/sites/{slug}/series",
    summary = "A site's hits per hour or per day over a range.",
    params(
        SlugPath,
        SeriesQuery,
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The series", content(
            (SeriesBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn series(
    State(state): State<Arc<AppState>>,
    SiteSlug(slug): SiteSlug,
    reader: Reader,
    ApiQuery(query): ApiQuery<SeriesQuery>,
    PageParam(page): PageParam,
) -> Result<Response, ApiError> {
    reader.may_read(&state, &slug).await?;
    let step = match query.step.as_deref() {
        None if page.is_some() => Step::Day,
        None => Step::Hour,
        Some(s) => Step::parse(s)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "'step' is hour or day"))?,
    };
    let format = Format::parse(query.format.as_deref())?;
    let from = instant("from", query.from.as_deref())?;
    let to = instant("to", query.to.as_deref())?;
    let now = unix(SystemTime::now());
    let range = Range::new(step, from, to, now, default_points(step))
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))?;
    if page.is_some() && step != Step::Day {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "a page's hits are kept per day: ask for step=day",
        ));
    }
    let (page, series) = match page {
        None => (None, state.counting.series.series(&slug, range).await?),
        Some(raw) => {
            let page = state.counting.pages.page_of(&slug, &raw).await?;
            let series = state
                .counting
                .series
                .page_series(&slug, &page, range)
                .await?;
            (Some(page), series)
        }
    };
    Ok(match format {
        Format::Json => Json(body(&series, page)).into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&series),
        )
            .into_response(),
    })
}

fn body(series: &Series, page: Option<Page>) -> SeriesBody {
    let step = series.range.step;
    SeriesBody {
        site: series.site.slug.to_string(),
        page,
        step: step.name(),
        from: step.format(series.range.from),
        to: step.format(series.range.to),
        before: series.before,
        points: series
            .points
            .iter()
            .map(|p| PointBody {
                t: step.format(p.t),
                hits: p.hits,
            })
            .collect(),
    }
}

/// `t,hits` then one line per point. The times are dates or timestamps,
/// which never need quoting or neutralising, but go through the one CSV
/// cell writer all the same.
fn csv(series: &Series) -> String {
    let mut out = String::with_capacity(16 + series.points.len() * 28);
    out.push_str("t,hits\n");
    for p in &series.points {
        let t = series.range.step.format(p.t);
        let _ = writeln!(out, "{},{}", super::csv::cell(&t), p.hits);
    }
    out
}
