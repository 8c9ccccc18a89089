//! CORS on the routes that a script on another site's page calls:
//! `POST /api/v1/sites/{slug}/hits`, what `/count.js` sends, and the
//! routes of other counters' trackers (`/api/event`, `/api/send`). No other
//! route answers CORS headers, so no other route is readable from other
//! origins.
//!
//! `Access-Control-Allow-Origin` is `*`, not the request's `Origin`
//! echoed: the route is public and the script sends no credentials, so
//! there is nothing that only some origins may read; and `*` is one answer
//! for every page, which caches keep without `Vary: Origin`. Which pages
//! may count on a site is not CORS's to say: the site's allowed origins
//! are checked on the hit itself (a `403 origin_not_allowed`, which the
//! script can read like any other answer).

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use tower_http::cors::{Any, CorsLayer};

/// How long a browser may keep a preflight's answer: a day.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The hits route with CORS: every answer (errors too) allows any origin,
/// and a preflight `OPTIONS` is answered `204` before the handler, so it
/// counts nothing and takes nothing from the client's hit limit.
pub fn hits<S: Clone + Send + Sync + 'static>(route: MethodRouter<S>) -> MethodRouter<S> {
    with(route, layer())
}

/// Umami's route: as [`hits`], and its tracker sends back what the last
/// answer said in `x-umami-cache`, which the preflight must allow or every
/// view after a page's first is blocked.
pub fn umami<S: Clone + Send + Sync + 'static>(route: MethodRouter<S>) -> MethodRouter<S> {
    with(
        route,
        layer().allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("x-umami-cache"),
        ]),
    )
}

/// `route` behind `cors`, its preflights answered `204`.
fn with<S: Clone + Send + Sync + 'static>(
    route: MethodRouter<S>,
    cors: CorsLayer,
) -> MethodRouter<S> {
    route
        // The CORS layer answers every OPTIONS itself, so this handler
        // never runs. It makes OPTIONS a method of the route: without it
        // the router would answer 405 before any layer of the route ran.
        .options(|| async { StatusCode::NO_CONTENT })
        .route_layer(cors)
        .route_layer(middleware::from_fn(preflight_no_content))
}

fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(PREFLIGHT_MAX_AGE)
        // The answer is the same whatever the request says.
        .vary([] as [HeaderName; 0])
}

/// The CORS layer answers a preflight `200` with an empty body; `204`
/// says what it is.
async fn preflight_no_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}
