//! Operations: liveness, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ErrorCode;
use crate::metrics;

/// The process is alive and serving HTTP; says nothing of its dependencies.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store is migrated and answers now.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let health = &state.counting.health;
    let store = health.store_backend();
    let cache = cache_json(&state);
    if !health.is_ready() {
        return not_ready(
            store,
            cache,
            "migrating",
            "the store's schema is not ready yet",
        );
    }
    match health.ping_store().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "store": { "backend": store, "state": "up" },
            "cache": cache,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unavailable");
            not_ready(store, cache, "down", "the store does not answer")
        }
    }
}

/// The cache's state: reported, never a reason to be unready (tally
/// answers correctly without it).
fn cache_json(state: &AppState) -> serde_json::Value {
    let cache = state.counting.health.cache_status();
    json!({ "backend": cache.backend, "state": if cache.up { "up" } else { "down" } })
}

fn not_ready(store: &str, cache: serde_json::Value, state: &str, message: &str) -> Response {
    let body = json!({
        "status": "unavailable",
        "store": { "backend": store, "state": state },
        "cache": cache,
        "error": { "code": ErrorCode::StoreUnavailable, "message": message },
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(1u64));
    response
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = state.metrics.render(state.counting.hits.queue_depth());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text)
}
