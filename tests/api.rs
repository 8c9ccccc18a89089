//! Every route's exact status and body, every client error, and the admin
//! gate, on the embedded SQLite store (no socket: `oneshot`).

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::app::{TOKEN, TestApp, call, json_of, sqlite_url};

const GREETING_1: &str = "Hello Linode!  This page has been viewed 1 time(s).";
const RESET_BODY: &str = "Successfully deleted redis and postgres counters";

/// Asserts an error response: status, JSON `error.code`, and returns the message.
fn assert_error(
    got: &(StatusCode, axum::http::HeaderMap, String),
    status: StatusCode,
    code: &str,
) -> String {
    assert_eq!(got.0, status, "body: {}", got.2);
    assert_eq!(got.1["content-type"], "application/json");
    let body = json_of(&got.2);
    assert_eq!(body["error"]["code"], code, "body: {}", got.2);
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

#[tokio::test]
async fn index_counts_each_hit_with_the_seed_text() {
    let r = TestApp::sqlite(&[]).await;
    let (status, headers, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, GREETING_1);
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 2 time(s).");
}

#[tokio::test]
async fn greeting_is_configurable() {
    let r = TestApp::sqlite(&["--greeting", "World"]).await;
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello World!  This page has been viewed 1 time(s).");
}

#[tokio::test]
async fn resetcounter_with_the_token_resets_to_zero() {
    let r = TestApp::sqlite(&[]).await;
    for _ in 0..3 {
        call(&r, Method::GET, "/", None, None).await;
    }
    let (status, headers, body) = call(&r, Method::GET, "/resetcounter", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, RESET_BODY);
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, GREETING_1);
}

#[tokio::test]
async fn admin_actions_are_refused_when_no_token_is_configured() {
    let r = TestApp::sqlite(&["--no-token"]).await;
    call(&r, Method::GET, "/", None, None).await;
    let admin_calls: [(Method, &str, Option<&str>); 7] = [
        (Method::GET, "/resetcounter", None),
        (Method::GET, "/api/v1/sites", None),
        (Method::POST, "/api/v1/sites", Some(r#"{"slug":"blog"}"#)),
        (Method::GET, "/api/v1/sites/default", None),
        (Method::DELETE, "/api/v1/sites/default", None),
        (
            Method::PUT,
            "/api/v1/sites/default/count",
            Some(r#"{"count":5}"#),
        ),
        (Method::POST, "/api/v1/sites/default/reset", None),
    ];
    for (method, path, body) in admin_calls {
        // Even a request that guesses a token is refused: there is none.
        let got = call(&r, method.clone(), path, Some("guess"), body).await;
        let message = assert_error(&got, StatusCode::FORBIDDEN, "admin_disabled");
        assert!(
            message.contains("TALLY_ADMIN_TOKEN"),
            "{method} {path}: {message}"
        );
    }
    assert_eq!(r.count("default").await, 1, "nothing was written");
}

#[tokio::test]
async fn admin_actions_need_the_right_bearer_token() {
    let r = TestApp::sqlite(&[]).await;
    call(&r, Method::GET, "/", None, None).await;
    let missing = call(&r, Method::GET, "/resetcounter", None, None).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(missing.1["www-authenticate"], "Bearer");
    // A token that differs in case or length, or is not it at all; none.
    for (method, path, token, body, code) in [
        (
            Method::GET,
            "/resetcounter",
            Some("test-admin-tokeN"),
            None,
            "invalid_token",
        ),
        (
            Method::GET,
            "/resetcounter",
            Some("test-admin-token2"),
            None,
            "invalid_token",
        ),
        (
            Method::POST,
            "/api/v1/sites",
            Some("nope"),
            Some(r#"{"slug":"x"}"#),
            "invalid_token",
        ),
        (
            Method::PUT,
            "/api/v1/sites/default/count",
            None,
            Some(r#"{"count":9}"#),
            "unauthorized",
        ),
    ] {
        let answer = call(&r, method, path, token, body).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, code);
    }
    assert_eq!(r.count("default").await, 1, "nothing was written");
    let list = call(&r, Method::GET, "/api/v1/sites", Some(TOKEN), None).await;
    assert_eq!(json_of(&list.2)["sites"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sites_can_be_created_listed_read_and_deleted() {
    let r = TestApp::sqlite(&[]).await;
    let (status, headers, body) = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog","name":"My blog","count":41}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/api/v1/sites/blog");
    let created = json_of(&body);
    assert_eq!(created["slug"], "blog");
    assert_eq!(created["name"], "My blog");
    assert_eq!(created["count"], 41);
    let stamp = created["created_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");

    let got = call(&r, Method::GET, "/api/v1/sites/blog", Some(TOKEN), None).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(json_of(&got.2), created);

    let list = call(&r, Method::GET, "/api/v1/sites", Some(TOKEN), None).await;
    let slugs: Vec<String> = json_of(&list.2)["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slugs, ["default", "blog"]);

    let dup = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    assert_error(&dup, StatusCode::CONFLICT, "site_exists");

    let (status, _, body) = call(&r, Method::DELETE, "/api/v1/sites/blog", Some(TOKEN), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let gone = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "site_not_found");
    let again = call(&r, Method::DELETE, "/api/v1/sites/blog", Some(TOKEN), None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "site_not_found");
    let default = call(
        &r,
        Method::DELETE,
        "/api/v1/sites/default",
        Some(TOKEN),
        None,
    )
    .await;
    assert_error(&default, StatusCode::CONFLICT, "default_site");
}

#[tokio::test]
async fn a_site_name_defaults_to_its_slug() {
    let r = TestApp::sqlite(&[]).await;
    let (_, _, body) = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"docs.example.org"}"#),
    )
    .await;
    let site = json_of(&body);
    assert_eq!(
        (
            site["slug"].as_str(),
            site["name"].as_str(),
            site["count"].as_i64()
        ),
        (Some("docs.example.org"), Some("docs.example.org"), Some(0))
    );
}

#[tokio::test]
async fn hits_count_and_reads_do_not() {
    let r = TestApp::sqlite(&[]).await;
    call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    for expected in 1..=3 {
        let (status, headers, body) =
            call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(json_of(&body), json!({"site": "blog", "count": expected}));
    }
    for _ in 0..2 {
        let (status, _, body) = call(&r, Method::GET, "/api/v1/sites/blog/count", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body), json!({"site": "blog", "count": 3}));
    }
    // The seed's / counts on the default site only.
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, GREETING_1);
}

#[tokio::test]
async fn a_starting_count_can_be_set_and_reset() {
    let r = TestApp::sqlite(&[]).await;
    call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog"}"#),
    )
    .await;
    let (status, _, body) = call(
        &r,
        Method::PUT,
        "/api/v1/sites/blog/count",
        Some(TOKEN),
        Some(r#"{"count":1000}"#),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)),
        (StatusCode::OK, json!({"site": "blog", "count": 1000}))
    );
    let (_, _, body) = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(json_of(&body), json!({"site": "blog", "count": 1001}));
    let (status, _, body) = call(
        &r,
        Method::POST,
        "/api/v1/sites/blog/reset",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, json_of(&body)),
        (StatusCode::OK, json!({"site": "blog", "count": 0}))
    );
    let (_, _, body) = call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    assert_eq!(json_of(&body), json!({"site": "blog", "count": 1}));
    let max = call(
        &r,
        Method::PUT,
        "/api/v1/sites/blog/count",
        Some(TOKEN),
        Some(r#"{"count":9007199254740991}"#),
    )
    .await;
    assert_eq!(max.0, StatusCode::OK);
    let missing = call(
        &r,
        Method::PUT,
        "/api/v1/sites/nope/count",
        Some(TOKEN),
        Some(r#"{"count":1}"#),
    )
    .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "site_not_found");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let r = TestApp::sqlite(&["--max-body-bytes", "256"]).await;
    call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"blog","count":7}"#),
    )
    .await;
    let t = Some(TOKEN);
    let cases: Vec<(Method, String, Option<String>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"Bad Slug"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"-dash"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(format!(r#"{{"slug":"{}"}}"#, "a".repeat(65))),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"ok","name":"a\nb"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"ok","count":-1}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"ok","count":9007199254740992}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"ok""#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some("not json".into()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":7}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"name":"no slug"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(r#"{"slug":"ok","colour":"red"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/sites".into(),
            Some(format!(r#"{{"slug":"ok","name":"{}"}}"#, "x".repeat(300))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            Method::PUT,
            "/api/v1/sites/blog/count".into(),
            Some(r#"{"count":1.5}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/sites/blog/count".into(),
            Some(r#"{"count":"12"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/sites/blog/count".into(),
            Some(r#"{"count":-5}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::PUT,
            "/api/v1/sites/blog/count".into(),
            Some(r#"{"count":99999999999999999999}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/api/v1/sites/blog/count".into(),
            Some("[]".into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/sites/BLOG/hits".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_site",
        ),
        (
            Method::POST,
            "/api/v1/sites/bl%20og/hits".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_site",
        ),
        (
            Method::POST,
            "/api/v1/sites/%FF/hits".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_site",
        ),
        (
            Method::GET,
            "/api/v1/sites/'%3B%20DROP%20TABLE%20visitors/count".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_site",
        ),
        (
            Method::POST,
            "/api/v1/sites/unknown/hits".into(),
            None,
            StatusCode::NOT_FOUND,
            "site_not_found",
        ),
        (
            Method::GET,
            "/api/v1/sites/unknown/count".into(),
            None,
            StatusCode::NOT_FOUND,
            "site_not_found",
        ),
        (
            Method::GET,
            "/no/such/route".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v2/sites".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::DELETE,
            "/".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/v1/sites/blog/hits".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/healthz".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let got = call(&r, method.clone(), &path, t, body.as_deref()).await;
        assert_eq!(got.0, status, "{method} {path} {body:?}: {}", got.2);
        assert_error(&got, status, code);
    }
    // A body without the JSON content type.
    let request = axum::http::Request::post("/api/v1/sites")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(axum::body::Body::from(r#"{"slug":"ok"}"#))
        .unwrap();
    let response = tower::ServiceExt::oneshot(r.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let list = call(&r, Method::GET, "/api/v1/sites", t, None).await;
    let sites = json_of(&list.2)["sites"].as_array().unwrap().clone();
    assert_eq!(sites.len(), 2, "no site was created: {sites:?}");
    let (_, _, body) = call(&r, Method::GET, "/api/v1/sites/blog/count", None, None).await;
    assert_eq!(
        json_of(&body),
        json!({"site": "blog", "count": 7}),
        "no count changed"
    );
}

#[tokio::test]
async fn operations_endpoints() {
    let r = TestApp::sqlite(&[]).await;
    let (status, headers, body) = call(&r, Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, json_of(&body)),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(headers["content-type"], "application/json");
    let (status, _, body) = call(&r, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_of(&body),
        json!({
            "status": "ready",
            "store": {"backend": "sqlite", "state": "up"},
            "cache": {"backend": "in-process", "state": "up"},
        })
    );
    for _ in 0..3 {
        call(&r, Method::GET, "/", None, None).await;
    }
    let (status, headers, body) = call(&r, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(body.contains("\ntally_hits_total 3\n"), "{body}");
    assert!(
        body.contains("\ntally_commit_batch_size_sum 3.0\n"),
        "{body}"
    );
    assert!(body.contains("\ntally_store_up 1\n"), "{body}");
    assert!(
        body.contains("# TYPE tally_commit_duration_seconds histogram"),
        "{body}"
    );
    assert!(body.contains("tally_store_errors_total 0\n"), "{body}");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let r = TestApp::sqlite(&[]).await;
    let request = axum::http::Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(r.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let (_, headers, _) = call(&r, Method::GET, "/nope", None, None).await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test]
async fn counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    {
        let r = TestApp::spawn(&url, &[]).await;
        for _ in 0..3 {
            call(&r, Method::GET, "/", None, None).await;
        }
        r.state.counting.hits.close().await;
        r.stop().await.expect("a graceful stop");
    }
    let r = TestApp::spawn(&url, &[]).await;
    let (_, _, body) = call(&r, Method::GET, "/", None, None).await;
    assert_eq!(body, "Hello Linode!  This page has been viewed 4 time(s).");
}

#[tokio::test]
async fn a_hit_s_body_may_be_left_out_but_a_body_sent_is_never_ignored() {
    let r = TestApp::sqlite(&[]).await;
    let path = "/api/v1/sites/default/hits";
    let send = async |headers: &[(&str, &str)], body: Option<&str>| {
        let reply = support::web::send(&r.router, Method::POST, path, headers, body).await;
        (reply.status, reply.headers, reply.body)
    };
    // No body, no type: a hit with nothing to say.
    let none = send(&[], None).await;
    assert_eq!(none.0, StatusCode::OK, "{}", none.2);
    assert_eq!(json_of(&none.2)["count"], 1);
    let zero = send(&[("content-length", "0")], Some("")).await;
    assert_eq!(zero.0, StatusCode::OK, "{}", zero.2);
    assert_eq!(json_of(&zero.2)["count"], 2);
    // A body without its type is refused, not read as no body.
    let body = r#"{"page":"/x"}"#;
    let untyped = send(&[("content-length", "13")], Some(body)).await;
    assert_error(
        &untyped,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A type without a body is a JSON document that is not there.
    let typed = send(
        &[
            ("content-type", "application/json"),
            ("content-length", "0"),
        ],
        Some(""),
    )
    .await;
    assert_error(&typed, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(r.count("default").await, 2);
}
