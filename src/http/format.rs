//! What the read routes share: the answer's format (`?format=json|csv`)
//! and the instants of a range (`from`, `to`).

use axum::http::{HeaderValue, header};
use axum::response::Response;

use super::error::{ApiError, ErrorCode};
use crate::counting::series::{Range, Step};
use crate::domain::time::{parse_instant, unix};

/// The format of an answer that can be a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    pub fn parse(value: Option<&str>) -> Result<Format, ApiError> {
        match value {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "'format' is json or csv",
            )),
        }
    }
}

/// A query's instant `name`: an RFC 3339 time or a date, as seconds since
/// the epoch; `None` if it was not given.
pub fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            parse_instant(v).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!(
                        "'{name}' is an RFC 3339 time (2026-11-23T01:00:00Z) or a date \
                         (2026-11-23), in years 1970 to 9999"
                    ),
                )
            })
        })
        .transpose()
}

/// One slice of a ranked list: `limit` items (1 to `max`, `default` when
/// not given) from the `offset`th (0 when not given).
pub fn slice(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
    max: i64,
) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("'limit' is 1 to {max}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if !(0..=i64::from(u32::MAX)).contains(&offset) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "'offset' is a whole number from 0",
        ));
    }
    Ok((limit, offset))
}

/// The whole days a list ranks by, from a query's `from` and `to` (by
/// default the `days` days up to now).
pub fn day_range(from: Option<&str>, to: Option<&str>, days: i64) -> Result<Range, ApiError> {
    let from = instant("from", from)?;
    let to = instant("to", to)?;
    Range::new(
        Step::Day,
        from,
        to,
        unix(std::time::SystemTime::now()),
        days,
    )
    .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))
}

/// Names the next slice in a `Link` header, when there is one.
pub fn link_next(response: &mut Response, next: Option<&str>) {
    if let Some(v) = next.and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok())
    {
        response.headers_mut().insert(header::LINK, v);
    }
}
