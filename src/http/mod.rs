//! The HTTP surface: one module per surface, one error type, one router.
//!
//! - [`seed`]: the seed app's `/` and `/resetcounter`, byte for byte;
//! - [`api`]: the JSON API under `/api/v1`;
//! - [`series`]: a site's hits per hour or day, `/api/v1/sites/{slug}/series`;
//! - [`transfer`]: `/api/v1/export` and `/api/v1/import`;
//! - [`badge`]: SVG badges, `/badge/{slug}.svg`;
//! - [`dashboard`]: the HTML dashboard and its sign-in, `/dashboard`;
//! - [`assets`]: the dashboard's static files, `/static/…`, and the
//!   counting script pages embed, `/count.js`;
//! - [`cors`]: the CORS headers of the hits route, the one route a page's
//!   script calls from another origin;
//! - [`openapi`]: the OpenAPI document of `/api/v1`, from the handlers;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`error`]: [`ApiError`], the JSON error every failure answers with,
//!   and [`ErrorCode`], every code it can carry;
//! - [`extract`]: extractors that reject with [`ApiError`] (JSON bodies,
//!   slugs parsed into a [`Slug`](crate::domain::Slug), the admin token);
//! - [`client`]: who is asking, and [`client::Admitted`], the client under
//!   its hit limit that every counting handler takes; whether it is a bot;
//! - `csv`: CSV cells written so that a spreadsheet shows them as text.

pub mod access;
pub mod api;
pub mod assets;
pub mod badge;
pub mod breakdowns;
pub mod client;
pub mod cors;
pub(crate) mod csv;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod format;
#[cfg(test)]
mod json_parity;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod peers;
pub mod seed;
pub mod series;
pub mod session;
pub mod transfer;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::bots::Bots;
use crate::counting::Services;
use crate::limit::ClientLimits;
use crate::metrics::Metrics;
use crate::secret::Secret;
pub use error::{ApiError, ErrorCode};

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub counting: Arc<Services>,
    pub greeting: String,
    pub admin_token: Option<Secret>,
    pub proxies: client::Proxies,
    /// Per-client limits: counted hits, reads, failed sign-ins.
    pub limits: Arc<ClientLimits>,
    pub metrics: Arc<Metrics>,
    /// Whether `/dashboard` is open to anyone (else it needs the admin token).
    pub dashboard_public: bool,
    /// Largest import body (`TALLY_MAX_IMPORT_BYTES`).
    pub max_import_bytes: usize,
    /// Which hits are bots' (`TALLY_BOT_FILTER`); see [`client::is_bot`].
    pub bots: Bots,
}

/// The whole HTTP surface, ready to serve or to call with `oneshot`.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let reads = || middleware::from_fn_with_state(state.clone(), client::limit_reads);
    let sites = Router::new()
        .route("/", get(api::list).post(api::create))
        .route(
            "/{slug}",
            get(api::get).patch(api::update).delete(api::delete),
        )
        // The one route a page's script calls from another origin.
        .route("/{slug}/hits", cors::hits(post(api::hit)))
        .route("/{slug}/count", get(api::count).put(api::set_count))
        .route("/{slug}/uniques", get(api::uniques))
        .route("/{slug}/reset", post(api::reset))
        .route("/{slug}/series", get(series::series))
        .route("/{slug}/pages", get(pages::list).delete(pages::delete))
        .route("/{slug}/pages/count", get(pages::count))
        .route("/{slug}/breakdown/{dimension}", get(breakdowns::breakdown))
        // Hits are POSTs, which the read limit lets through.
        .route_layer(reads());

    let routes = Router::new()
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
        .route("/count/{file}", get(pages::pixel).head(pages::pixel_head))
        // Other counters' trackers: Plausible's, Umami's, GoatCounter's.
        .route("/api/event", cors::hits(post(peers::plausible)))
        .route("/api/send", cors::umami(post(peers::umami)))
        .route("/count", get(peers::goatcounter).head(pages::pixel_head))
        .route("/static/{file}", get(assets::serve))
        .route("/count.js", get(assets::counter))
        .merge(dashboard::routes().route_layer(reads()))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes));
    edge(routes)
        // Outermost: the metrics see every answer, a panic's 500 too.
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The request id, screened, made up if missing, echoed back and on every
/// log line of the request; a panic caught inside the request's span.
fn edge<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(screen_request_id))
            .layer(SetRequestIdLayer::x_request_id(NewRequestId))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(())
                    .on_body_chunk(())
                    .on_eos(())
                    .on_failure(()),
            )
            .layer(CatchPanicLayer::custom(panicked)),
    )
}

/// Around every request: the in-flight gauge and the response counted by
/// status class and time. tally's own metrics, so hand-written: the
/// library layers below have no hook that sees both ends of a request.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.request_started();
    let response = next.run(request).await;
    state
        .metrics
        .response(response.status().as_u16(), started.elapsed());
    response
}

/// The request id that came with the request, when it was sane: what a
/// trusted proxy's id is read from (a missing one is made up below, and a
/// made-up id must never be taken for the proxy's).
#[derive(Debug, Clone)]
pub(crate) struct SentRequestId(pub HeaderValue);

/// Before tower-http's request-id layer, which keeps any id it is given:
/// an id that is not 1 to 128 visible characters is dropped (and a new one
/// made), and a sane one is kept aside as [`SentRequestId`].
async fn screen_request_id(mut request: Request, next: Next) -> Response {
    match request.headers_mut().remove(X_REQUEST_ID) {
        Some(id) if valid_request_id(&id) => {
            request.extensions_mut().insert(SentRequestId(id.clone()));
            request.headers_mut().insert(X_REQUEST_ID, id);
        }
        _ => {}
    }
    next.run(request).await
}

const X_REQUEST_ID: &str = "x-request-id";

/// A new request id: 32 hex digits.
#[derive(Debug, Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Every log line of a request carries its id, method and path.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// A panic in a handler: logged in the request's span, answered 500.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "handler panicked");
    ApiError::internal().into_response()
}

/// A request id is 1 to 128 visible ASCII characters.
fn valid_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    fn app() -> Router {
        edge(Router::new().route("/boom", get(boom)).route(
            "/sent",
            get(|sent: Option<Extension<SentRequestId>>| async move {
                sent.map_or("none".to_owned(), |Extension(s)| {
                    s.0.to_str().unwrap().to_owned()
                })
            }),
        ))
    }

    async fn get_with(path: &str, id: Option<&str>) -> (StatusCode, String, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = app()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, echoed, String::from_utf8(body.to_vec()).unwrap())
    }

    fn made_up(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500_with_its_request_id() {
        let (status, echoed, body) = get_with("/boom", Some("abc-123")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(echoed, "abc-123");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
    }

    #[tokio::test]
    async fn a_sane_id_is_kept_and_set_aside_and_others_are_replaced() {
        assert_eq!(
            get_with("/sent", Some("abc-123")).await,
            (StatusCode::OK, "abc-123".into(), "abc-123".into())
        );
        let long = "a".repeat(129);
        for bad in [None, Some("has space"), Some(long.as_str())] {
            let (status, echoed, sent) = get_with("/sent", bad).await;
            assert_eq!((status, sent.as_str()), (StatusCode::OK, "none"), "{bad:?}");
            assert!(made_up(&echoed), "{bad:?} -> {echoed}");
        }
        let longest = "a".repeat(128);
        assert_eq!(get_with("/sent", Some(&longest)).await.2, longest);
    }
}
