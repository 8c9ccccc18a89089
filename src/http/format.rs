//! What the read routes share: the answer's format (`?format=json|csv`)
//! and the instants of a range (`from`, `to`).

use super::error::{ApiError, ErrorCode};
use crate::domain::time::parse_instant;

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
