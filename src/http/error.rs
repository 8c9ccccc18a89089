//! The one error type of the HTTP surface, and the codes it answers with.
//!
//! Every error answers `{"error":{"code":...,"message":...}}`, where the
//! code is an [`ErrorCode`]: the codes are a contract (docs/api.md lists
//! them, a test holds the two together) and each has one status. Client
//! errors say what was wrong; store outages are 503 with `Retry-After`;
//! anything else is a bug, logged with its cause chain and shown as a
//! generic 500.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::counting::CountError;

/// Seconds a client should wait before retrying after a 503 or 429 that
/// names no wait of its own.
const RETRY_AFTER_SECS: u64 = 1;

/// Every error code the API answers with.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    ToSchema,
    strum::EnumIter,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// A bad slug, name or count.
    InvalidRequest,
    /// A bad slug in the path.
    InvalidSite,
    /// A body that is not JSON.
    InvalidJson,
    /// JSON of the wrong shape: unknown or missing fields, a key twice.
    InvalidBody,
    /// Bad query parameters.
    InvalidQuery,
    /// Bad badge parameters.
    InvalidBadge,
    /// A page that is not a valid path.
    InvalidPage,
    /// An admin action without the token.
    Unauthorized,
    /// An admin action with a wrong token.
    InvalidToken,
    /// An admin action while no token is configured.
    AdminDisabled,
    /// A hit from a page on a host the site does not allow.
    OriginNotAllowed,
    SiteNotFound,
    /// No such route.
    NotFound,
    MethodNotAllowed,
    SiteExists,
    /// Deleting the default site.
    DefaultSite,
    /// A hit past the maximum count.
    CountLimit,
    BodyTooLarge,
    UnsupportedMediaType,
    /// Too many hits from one client.
    RateLimited,
    /// Too many reads from one client.
    ReadRateLimited,
    /// Too many wrong tokens from one client.
    AuthRateLimited,
    StoreUnavailable,
    /// The store failed part way through an import.
    ImportIncomplete,
    /// The write queue or every connection is full.
    Overloaded,
    ShuttingDown,
    /// A bug.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            C::InvalidRequest
            | C::InvalidSite
            | C::InvalidJson
            | C::InvalidBody
            | C::InvalidQuery
            | C::InvalidBadge
            | C::InvalidPage => S::BAD_REQUEST,
            C::Unauthorized | C::InvalidToken => S::UNAUTHORIZED,
            C::AdminDisabled | C::OriginNotAllowed => S::FORBIDDEN,
            C::SiteNotFound | C::NotFound => S::NOT_FOUND,
            C::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            C::SiteExists | C::DefaultSite | C::CountLimit => S::CONFLICT,
            C::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            C::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            C::RateLimited | C::ReadRateLimited | C::AuthRateLimited => S::TOO_MANY_REQUESTS,
            C::StoreUnavailable | C::ImportIncomplete | C::Overloaded | C::ShuttingDown => {
                S::SERVICE_UNAVAILABLE
            }
            C::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
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

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such route")
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; it has been logged")
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What went wrong, for a person: what the body's `message` says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code a client can match on (see the error table in docs/api.md).
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.into_owned(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = self.retry_after.unwrap_or(RETRY_AFTER_SECS);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<CountError> for ApiError {
    fn from(e: CountError) -> Self {
        match e {
            CountError::InvalidInput(message) => Self::new(ErrorCode::InvalidRequest, message),
            CountError::InvalidPage(message) => Self::new(ErrorCode::InvalidPage, message),
            CountError::OriginRefused(host) if host.is_empty() => Self::new(
                ErrorCode::OriginNotAllowed,
                "this site counts only hits that name the page they come from (an Origin or \
                 Referer header)",
            ),
            CountError::OriginRefused(host) => Self::new(
                ErrorCode::OriginNotAllowed,
                format!("this site does not count hits from pages on {host}"),
            ),
            CountError::NotFound => Self::new(ErrorCode::SiteNotFound, "no site with this slug"),
            CountError::Conflict => Self::new(
                ErrorCode::SiteExists,
                "a site with this slug (or a site's alias) already exists",
            ),
            CountError::AliasTaken => Self::new(
                ErrorCode::SiteExists,
                "an alias given is another site's slug or alias",
            ),
            CountError::DefaultSite => Self::new(
                ErrorCode::DefaultSite,
                "the default site (the one / counts on) cannot be deleted",
            ),
            CountError::CountLimit => Self::new(
                ErrorCode::CountLimit,
                "this hit would take the site's count past its maximum, 2^53 - 1; nothing was \
                 counted (set a lower count to go on counting)",
            ),
            CountError::Overloaded => Self::new(
                ErrorCode::Overloaded,
                "too many hits are waiting to be committed; retry shortly",
            ),
            CountError::Unavailable(why) => {
                tracing::warn!(reason = %why, "answering 503: store unavailable");
                Self::new(
                    ErrorCode::StoreUnavailable,
                    "the database is unavailable; nothing was written; retry shortly",
                )
            }
            CountError::OutcomeUnknown(why) => {
                tracing::warn!(reason = %why, "answering 503: store lost during the commit");
                Self::new(
                    ErrorCode::StoreUnavailable,
                    "the database went away while this hit was being committed, so it may or \
                     may not have been counted; retry shortly (a retry that a trusted proxy \
                     sends with the same X-Request-Id counts once)",
                )
            }
            CountError::ImportIncomplete { done, total, why } => {
                tracing::warn!(reason = %why, done, total, "answering 503: import incomplete");
                Self::new(
                    ErrorCode::ImportIncomplete,
                    format!(
                        "the database failed after the first {done} of {total} sites were \
                         imported; send the same document again to finish (an import sets \
                         counts, it never adds to them)"
                    ),
                )
            }
            CountError::ShuttingDown => Self::new(
                ErrorCode::ShuttingDown,
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
        let limited = || ApiError::new(ErrorCode::RateLimited, "x");
        assert_eq!(
            retry_after(limited().retry_after(72)).as_deref(),
            Some("72")
        );
        assert_eq!(retry_after(limited()).as_deref(), Some("1"));
        let down = || ApiError::new(ErrorCode::StoreUnavailable, "x");
        assert_eq!(retry_after(down()).as_deref(), Some("1"));
        assert_eq!(retry_after(down().retry_after(5)).as_deref(), Some("5"));
        assert_eq!(retry_after(ApiError::not_found()), None);
    }
}
