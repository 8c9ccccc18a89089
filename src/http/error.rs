//! The one error type of the HTTP surface.
//!
//! Every error answers `{"error":{"code":...,"message":...}}`. Client errors
//! say what was wrong; store outages are 503 with `Retry-After`; anything
//! else is a bug, logged with its cause chain and shown as a generic 500.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::counting::CountError;

/// Seconds a client should wait before retrying after a 503 or 429 that
/// names no wait of its own.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Seconds for `Retry-After` (503s and 429s default to 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            let seconds = self.retry_after.unwrap_or(RETRY_AFTER_SECS);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<CountError> for ApiError {
    fn from(e: CountError) -> Self {
        use StatusCode as S;
        match e {
            CountError::InvalidInput(message) => Self::bad_request("invalid_request", message),
            CountError::NotFound => {
                Self::new(S::NOT_FOUND, "site_not_found", "no site with this slug")
            }
            CountError::Conflict => Self::new(
                S::CONFLICT,
                "site_exists",
                "a site with this slug already exists",
            ),
            CountError::DefaultSite => Self::new(
                S::CONFLICT,
                "default_site",
                "the default site (the one / counts on) cannot be deleted",
            ),
            CountError::CountLimit => Self::new(
                S::CONFLICT,
                "count_limit",
                "this hit would take the site's count past its maximum, 2^53 - 1; nothing was \
                 counted (set a lower count to go on counting)",
            ),
            CountError::Overloaded => Self::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many hits are waiting to be committed; retry shortly",
            ),
            CountError::Unavailable(why) => {
                tracing::warn!(reason = %why, "answering 503: store unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is unavailable; nothing was written; retry shortly",
                )
            }
            CountError::ImportIncomplete { done, total, why } => {
                tracing::warn!(reason = %why, done, total, "answering 503: import incomplete");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "import_incomplete",
                    format!(
                        "the database failed after the first {done} of {total} sites were \
                         imported; send the same document again to finish (an import sets \
                         counts, it never adds to them)"
                    ),
                )
            }
            CountError::ShuttingDown => Self::new(
                S::SERVICE_UNAVAILABLE,
                "shutting_down",
                "this instance is shutting down; retry on another",
            ),
            CountError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(error: ApiError) -> Option<String> {
        let response = error.into_response();
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn retry_after_is_the_given_wait_or_one_second() {
        let limited = || ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "x");
        assert_eq!(
            retry_after(limited().retry_after(72)).as_deref(),
            Some("72")
        );
        assert_eq!(retry_after(limited()).as_deref(), Some("1"));
        let down = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "x");
        assert_eq!(retry_after(down()).as_deref(), Some("1"));
        assert_eq!(retry_after(down().retry_after(5)).as_deref(), Some("5"));
        assert_eq!(retry_after(ApiError::not_found()), None);
    }
}
