//! Requests with arbitrary headers through a router, for the HTML and SVG
//! surfaces (cookies, conditional requests, forms).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use tower::ServiceExt;

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

/// `method path` with `headers` and an optional body.
pub async fn send(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    let response = router
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(router: &Router, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(router, Method::GET, path, headers, None).await
}

/// `POST /api/v1/sites/{slug}/hits` with `{"page": page}`; it must count.
#[allow(dead_code, reason = "not every test crate counts pages")]
pub async fn hit_page(router: &Router, slug: &str, page: &str) -> Reply {
    let body = serde_json::json!({ "page": page }).to_string();
    let reply = send(
        router,
        Method::POST,
        &format!("/api/v1/sites/{slug}/hits"),
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
}
