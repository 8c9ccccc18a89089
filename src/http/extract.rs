//! Extractors whose rejections are [`ApiError`]s, so bad input always gets
//! the same JSON error shape (axum's own rejections are plain text).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use utoipa::IntoParams;

use super::AppState;
use super::client::Client;
use super::error::{ApiError, ErrorCode};
use crate::domain::Slug;
use crate::limit::{Source, Verdict};

pub(super) mod strict;

/// The `{slug}` of a site's routes, as the OpenAPI document describes it
/// (the `SiteSlug` extractor is what checks it).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SlugPath {
    /// 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "blog")]
    pub slug: String,
}

/// A JSON body; `Content-Type: application/json` required. Read with
/// [`strict_json`]: a key given twice, or an array where an object belongs,
/// is a 400.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // axum checks the content type, the size and the syntax; the raw
        // text is then read strictly.
        match Json::<Box<RawValue>>::from_request(req, state).await {
            Ok(Json(raw)) => strict_json(raw.get().as_bytes()).map(ApiJson),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The `page` parameter of a query string (the first, if it is given
/// twice; its name decoded as the query's other readers decode it, so
/// that `%70age` is `page` to all of them), its value as it stands in the
/// query string: not decoded here, so that [`crate::domain::Page::parse`]
/// decodes it once, as it does a hit body's `page` (a `+` stays a `+`,
/// `%2568` is the text `%68`).
#[derive(Debug)]
pub struct PageParam(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PageParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let page = parts.uri.query().and_then(raw_page_param);
        Ok(PageParam(page.map(str::to_owned)))
    }
}

/// The raw value of the first `page` parameter of `query` (see
/// [`PageParam`]).
pub fn raw_page_param(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.replace('+', " ");
        let key = percent_encoding::percent_decode_str(&key).decode_utf8_lossy();
        (key == "page").then_some(value)
    })
}

/// A JSON body that may be left out: no body at all is `None`; a body is
/// read as [`ApiJson`] reads it.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() == b"0");
        if !typed && (empty || axum::body::HttpBody::is_end_stream(req.body())) {
            return Ok(OptionalJson(None));
        }
        ApiJson::from_request(req, state)
            .await
            .map(|ApiJson(body)| OptionalJson(Some(body)))
    }
}

/// Reads a JSON document into `T`, refusing what serde_json would let pass
/// with a meaning of its own choosing: a key given twice in an object (it
/// keeps the last) and an array in place of an object (it takes the fields
/// in order). The errors are those of every JSON body: `invalid_json`,
/// `invalid_body`.
pub(crate) fn strict_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    strict::from_slice(body).map_err(|refusal| match refusal {
        strict::Refusal::Syntax(why) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not JSON: {why}"),
        ),
        strict::Refusal::Shape(why) => ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body does not fit this request: {why}"),
        ),
    })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(ErrorCode::InvalidJson, e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::new(ErrorCode::InvalidBody, e.body_text()),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::BodyTooLarge,
            "the request body is larger than TALLY_MAX_BODY_BYTES allows",
        ),
        other => ApiError::new(ErrorCode::InvalidBody, other.body_text()),
    }
}

/// A query string; unknown or malformed parameters are a 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                rejection.body_text(),
            )),
        }
    }
}

/// The `{slug}` path segment, parsed.
#[derive(Debug)]
pub struct SiteSlug(pub Slug);

impl<S: Send + Sync> FromRequestParts<S> for SiteSlug {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(slug) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidSite,
                    "the site slug in the path is not valid",
                )
            })?;
        Slug::parse(&slug)
            .map(SiteSlug)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSite, e.to_string()))
    }
}

/// Proof that the request carries the admin bearer token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Some(token) = &state.admin_token else {
            return Err(ApiError::new(
                ErrorCode::AdminDisabled,
                "admin actions are disabled until an admin token is configured: set \
                 TALLY_ADMIN_TOKEN (or TALLY_ADMIN_TOKEN_FILE) and send \
                 'Authorization: Bearer <token>'",
            ));
        };
        let Some(given) = bearer_token(parts) else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this is an admin action: send 'Authorization: Bearer <admin token>'",
            ));
        };
        judge_bearer(parts, state, &given, token.expose()).await?;
        Ok(Admin)
    }
}

/// The token of the request's `Authorization: Bearer` header, if any.
pub(crate) fn bearer_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
}

/// Checks a bearer token `given` against the admin `token`, through the
/// budget of failed authentications: a wrong token is a 401, and a client
/// past its budget gets a 429 whatever it sends.
pub(crate) async fn judge_bearer(
    parts: &mut Parts,
    state: &Arc<AppState>,
    given: &str,
    token: &str,
) -> Result<(), ApiError> {
    let valid = constant_time_eq(given.as_bytes(), token.as_bytes());
    match state
        .limits
        .judge_sign_in(auth_source(parts, state).await, valid)
    {
        Verdict::Allowed => Ok(()),
        Verdict::Failed => Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the bearer token is not the admin token",
        )),
        Verdict::Throttled { retry_after } => Err(ApiError::new(
            ErrorCode::AuthRateLimited,
            format!("too many failed authentications from this client; retry in {retry_after} s"),
        )
        .retry_after(retry_after)),
    }
}

/// Who is asking, as the budget of failed authentications sees it.
pub(crate) async fn auth_source(parts: &mut Parts, state: &Arc<AppState>) -> Source {
    let Ok(client) = Client::from_request_parts(parts, state).await;
    client.source()
}

/// The token of an `Authorization: Bearer <token>` header (scheme is
/// case-insensitive, as RFC 9110 says). The spaces after the scheme are
/// the separator (`1*SP` in RFC 6750); the rest is the token, exactly as
/// sent, compared with the configured one exactly.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
        .filter(|t| !t.is_empty())
}

/// Compares in time that depends only on the secret's length, never on
/// where the first difference is.
pub(crate) fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut same = given.len().ct_eq(&secret.len());
    for (i, s) in secret.iter().enumerate() {
        same &= given.get(i).copied().unwrap_or(0).ct_eq(s);
    }
    same.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc"), Some("abc"));
        // Nothing is trimmed from the token itself.
        assert_eq!(bearer("Bearer abc "), Some("abc "));
        assert_eq!(bearer("Bearer abc\t"), Some("abc\t"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    /// Why a JSON POST with this body is refused.
    async fn refusal(body: axum::body::Body) -> ApiError {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        ApiJson::<serde_json::Value>::from_request(request, &())
            .await
            .unwrap_err()
    }

    /// A body that fails part way (a connection reset, a broken chunk) is
    /// a bad body, not one that is too large.
    #[tokio::test]
    async fn a_body_that_breaks_off_is_invalid_body() {
        let broken = futures_util::stream::iter([
            Ok(axum::body::Bytes::from_static(b"{\"count\":")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let refused = refusal(axum::body::Body::from_stream(broken)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(refused.code(), ErrorCode::InvalidBody);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_body_too_large() {
        let refused = refusal(axum::body::Body::from(vec![b' '; 3 << 20])).await;
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.code(), ErrorCode::BodyTooLarge);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret!", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
