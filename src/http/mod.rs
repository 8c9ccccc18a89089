//! The HTTP surface: one module per surface, one error type, one router.
//!
//! - [`seed`]: the seed app's `/` and `/resetcounter`, byte for byte;
//! - [`api`]: the JSON API under `/api/v1`;
//! - [`series`]: a site's hits per hour or day, `/api/v1/sites/{slug}/series`;
//! - [`transfer`]: `/api/v1/export` and `/api/v1/import`;
//! - [`badge`]: SVG badges, `/badge/{slug}.svg`;
//! - [`dashboard`]: the HTML dashboard and its sign-in, `/dashboard`;
//! - [`assets`]: the dashboard's static files, `/static/…`;
//! - [`openapi`]: the OpenAPI document of `/api/v1`, from the handlers;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`error`]: [`ApiError`], the JSON error every failure answers with;
//! - [`extract`]: extractors that reject with [`ApiError`] (JSON bodies,
//!   slugs, the admin token);
//! - [`guard`]: the per-client budget of failed authentications and their
//!   rate-bounded log.
//! - `csv`: CSV cells written so that a spreadsheet shows them as text.

pub mod api;
pub mod assets;
pub mod badge;
pub mod client;
pub(crate) mod csv;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod guard;
pub mod openapi;
pub mod ops;
pub mod seed;
pub mod series;
pub mod transfer;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::config::Secret;
use crate::counting::Counter;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
pub use error::{ApiError, ErrorCode};

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub counter: Arc<Counter>,
    pub greeting: String,
    pub admin_token: Option<Secret>,
    pub proxies: client::Proxies,
    /// Per-client limit on the routes that read (in process, per replica).
    pub read_limiter: Limiter,
    pub metrics: Arc<Metrics>,
    /// Whether `/dashboard` is open to anyone (else it needs the admin token).
    pub dashboard_public: bool,
    /// Failed authentications per client.
    pub auth_guard: guard::AuthGuard,
    /// Largest import body (`TALLY_MAX_IMPORT_BYTES`).
    pub max_import_bytes: usize,
}

/// The whole HTTP surface, ready to serve or to call with `oneshot`.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let reads = || middleware::from_fn_with_state(state.clone(), client::limit_reads);
    let sites = Router::new()
        .route("/", get(api::list).post(api::create))
        .route("/{slug}", get(api::get).delete(api::delete))
        .route("/{slug}/hits", post(api::hit))
        .route("/{slug}/count", get(api::count).put(api::set_count))
        .route("/{slug}/uniques", get(api::uniques))
        .route("/{slug}/reset", post(api::reset))
        .route("/{slug}/series", get(series::series))
        // Hits are POSTs, which the read limit lets through.
        .route_layer(reads());

    Router::new()
        // axum answers HEAD with a route's GET handler unless told
        // otherwise; on routes whose GET writes, HEAD must not.
        .route("/", get(seed::index).head(seed::peek))
        .route("/resetcounter", get(seed::reset).head(seed::reset_head))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1/sites", sites)
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/export", get(transfer::export).route_layer(reads()))
        .route(
            "/api/v1/import",
            // The import streams its body under its own limit.
            post(transfer::import).layer(DefaultBodyLimit::disable()),
        )
        .route("/badge/{file}", get(badge::badge))
        .route("/static/{file}", get(assets::serve))
        .merge(dashboard::routes().route_layer(reads()))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Around every request: a request id (NGINX's `X-Request-Id`, or a new one)
/// on every log line and echoed back, a panic turned into a logged 500, and
/// the response counted in the metrics.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.request_started();
    let id = request_id(request.headers());
    let span = tracing::info_span!(
        "request",
        id = %id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let outcome = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut response = outcome.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        span.in_scope(|| tracing::error!(panic = what, "handler panicked"));
        ApiError::internal().into_response()
    });
    state
        .metrics
        .response(response.status().as_u16(), started.elapsed());
    response.headers_mut().insert("x-request-id", id);
    response
}

/// A request id is 1 to 128 visible ASCII characters.
fn valid_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
}

/// The client's (or NGINX's) request id when it is sane, else a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| valid_request_id(v))
        .cloned()
        .unwrap_or_else(|| {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-"))
        })
}
