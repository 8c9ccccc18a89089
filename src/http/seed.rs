//! The seed app's two routes, byte for byte: `GET /` and `GET /resetcounter`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::client::Admitted;
use super::error::{ApiError, ErrorCode};
use super::extract::Admin;

const TEXT: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];

/// Counts a hit on the default site.
pub async fn index(
    State(state): State<Arc<AppState>>,
    client: Admitted,
) -> Result<impl IntoResponse, ApiError> {
    let count = state.counting.hits.hit_default(&client.hit()).await?;
    Ok((TEXT, greeting(&state.greeting, count)))
}

pub fn greeting(greeting: &str, count: i64) -> String {
    // Two spaces after the '!', as the seed wrote it.
    format!("Hello {greeting}!  This page has been viewed {count} time(s).")
}

/// `HEAD /`: what `GET /` would answer now, without counting (link
/// checkers and monitors probe with HEAD; a probe is no view).
pub async fn peek(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let count = state.counting.sites.default_site().await?.count;
    Ok((TEXT, greeting(&state.greeting, count)))
}

/// `HEAD /resetcounter`: a reset has no side-effect-free form, so HEAD is
/// refused rather than taken as a GET.
pub async fn reset_head() -> impl IntoResponse {
    let refused = ApiError::new(
        ErrorCode::MethodNotAllowed,
        "a reset is GET only; HEAD changes nothing",
    );
    ([(header::ALLOW, "GET")], refused)
}

/// Sets the default site's count to 0 (an admin action).
pub async fn reset(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    state.counting.sites.reset_default().await?;
    tracing::debug!("reset visitor count");
    Ok((TEXT, "Successfully deleted redis and postgres counters"))
}
