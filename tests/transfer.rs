//! Export and import: every site's count and hours out, as JSON and CSV;
//! starting counts in, creating missing sites, all or nothing.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, call, router, sqlite_url};
use tally::http::AppState;

/// 2026-01-10T05:00:00Z
const HOUR: u64 = 1_768_021_200;

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn app() -> (Router, std::sync::Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (router, state) = router(&sqlite_url(dir.path()), &[]).await;
    (router, state, dir)
}

/// Site `blog` ("Blog, \"mine\"") with a base of 10 and 3 + 2 hits in two hours.
async fn with_blog(r: &Router, state: &AppState) {
    let body = json!({ "slug": "blog", "name": "Blog, \"mine\"", "count": 10 }).to_string();
    let got = call(r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(&body)).await;
    assert_eq!(got.0, StatusCode::CREATED);
    let id = state
        .counter
        .store()
        .site("blog")
        .await
        .unwrap()
        .unwrap()
        .id;
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    state
        .counter
        .store()
        .add_anonymous_hits(at(HOUR), &[(id, 3)])
        .await
        .unwrap();
    state
        .counter
        .store()
        .add_anonymous_hits(at(HOUR + 7200), &[(id, 2)])
        .await
        .unwrap();
}

async fn counts(r: &Router) -> Vec<(String, i64)> {
    let got = call(r, Method::GET, "/api/v1/sites", Some(TOKEN), None).await;
    json_of(&got.2)["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["slug"].as_str().unwrap().to_owned(),
                s["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn export_json_holds_counts_bases_and_hours() {
    let (r, state, _dir) = app().await;
    with_blog(&r, &state).await;
    let (status, headers, body) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let mut body = json_of(&body);
    assert!(body["exported_at"].as_str().unwrap().ends_with('Z'));
    for site in body["sites"].as_array_mut().unwrap() {
        site.as_object_mut()
            .unwrap()
            .remove("created_at")
            .expect("created_at");
    }
    assert_eq!(
        body["sites"],
        json!([
            {"slug": "default", "name": "default", "count": 0, "base_count": 0, "hourly": []},
            {"slug": "blog", "name": "Blog, \"mine\"", "count": 15, "base_count": 10, "hourly": [
                {"t": "2026-01-10T05:00:00Z", "hits": 3},
                {"t": "2026-01-10T07:00:00Z", "hits": 2},
            ]},
        ])
    );
}

#[tokio::test]
async fn export_csv_is_exact_and_each_site_adds_up() {
    let (r, state, _dir) = app().await;
    with_blog(&r, &state).await;
    let (status, headers, body) = call(
        &r,
        Method::GET,
        "/api/v1/export?format=csv",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        body,
        "site,name,count,t,hits\n\
         default,default,0,,0\n\
         blog,\"Blog, \"\"mine\"\"\",15,,10\n\
         blog,\"Blog, \"\"mine\"\"\",15,2026-01-10T05:00:00Z,3\n\
         blog,\"Blog, \"\"mine\"\"\",15,2026-01-10T07:00:00Z,2\n"
    );
}

#[tokio::test]
async fn export_and_import_are_admin_actions() {
    let (r, _state, _dir) = app().await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/export", None),
        (
            Method::POST,
            "/api/v1/import",
            Some(r#"[{"slug":"a","count":1}]"#),
        ),
    ] {
        let got = call(&r, method.clone(), path, None, body).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{path}");
        let got = call(&r, method, path, Some("wrong"), body).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(counts(&r).await, vec![("default".to_owned(), 0)]);
    let got = call(
        &r,
        Method::GET,
        "/api/v1/export?format=xml",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn import_sets_counts_and_creates_missing_sites() {
    let (r, state, _dir) = app().await;
    with_blog(&r, &state).await;
    let body = r#"[{"slug":"blog","count":1000},{"slug":"docs","count":7,"name":"Docs"},{"slug":"default","count":3}]"#;
    let (status, _, reply) =
        call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        json_of(&reply),
        json!({"imported": [
            {"slug": "blog", "count": 1000, "created": false},
            {"slug": "docs", "count": 7, "created": true},
            {"slug": "default", "count": 3, "created": false},
        ]})
    );
    assert_eq!(
        counts(&r).await,
        vec![
            ("default".to_owned(), 3),
            ("blog".to_owned(), 1000),
            ("docs".to_owned(), 7)
        ]
    );
    // Blog keeps its hours; the base takes the rest.
    let dump = state.counter.export().await.unwrap();
    assert_eq!(dump[1].base_count, 995);
    assert_eq!(dump[1].buckets.len(), 2);
    assert_eq!(dump[2].site.name, "Docs");
    assert_eq!(dump[2].base_count, 7);
    // A new site counts hits on top of its imported count.
    let (_, _, hit) = call(&r, Method::POST, "/api/v1/sites/docs/hits", None, None).await;
    assert_eq!(json_of(&hit)["count"], 8);
}

#[tokio::test]
async fn an_export_imports_into_a_fresh_instance() {
    let (r, state, _dir) = app().await;
    with_blog(&r, &state).await;
    let (_, _, export) = call(&r, Method::GET, "/api/v1/export", Some(TOKEN), None).await;
    let (fresh, _state, _dir2) = app().await;
    let (status, _, reply) = call(
        &fresh,
        Method::POST,
        "/api/v1/import",
        Some(TOKEN),
        Some(&export),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(counts(&fresh).await, counts(&r).await);
    let (_, _, site) = call(&fresh, Method::GET, "/api/v1/sites/blog", Some(TOKEN), None).await;
    assert_eq!(json_of(&site)["name"], "Blog, \"mine\"");
}

#[tokio::test]
async fn a_bad_entry_anywhere_writes_nothing() {
    let (r, state, _dir) = app().await;
    with_blog(&r, &state).await;
    let before = counts(&r).await;
    for body in [
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":-1}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"Bad Slug","count":1}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"new1","count":6}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":9007199254740992}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog","count":1.5}]"#,
        r#"[{"slug":"new1","count":5},{"slug":"blog"}]"#,
        r#"[{"slug":"new1","count":5,"colour":"red"}]"#,
        r#"[{"slug":"new1","count":5,"name":"a\nb"}]"#,
        r#"{"sites":[{"slug":"new1","count":5}],"extra":1}"#,
        r#"[]"#,
        r#"42"#,
        r#"[{"slug":"new1","count":5}"#,
    ] {
        let (status, headers, reply) =
            call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(json_of(&reply)["error"]["message"].as_str().is_some());
    }
    assert_eq!(counts(&r).await, before);
}

#[tokio::test]
async fn imports_may_be_larger_than_other_bodies() {
    let (r, _state, _dir) = app().await;
    let sites: Vec<Value> = (0..2000)
        .map(|i| json!({ "slug": format!("site-{i:04}"), "count": i, "name": "x".repeat(20) }))
        .collect();
    let body = Value::Array(sites).to_string();
    assert!(body.len() > 16 * 1024);
    let (status, _, reply) =
        call(&r, Method::POST, "/api/v1/import", Some(TOKEN), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{}", &reply[..reply.len().min(300)]);
    let all = counts(&r).await;
    assert_eq!(all.len(), 2001);
    assert_eq!(all[2000], ("site-1999".to_owned(), 1999));
    // Other routes keep the small limit.
    let big = json!({ "slug": "x", "name": "y".repeat(20_000) }).to_string();
    let (status, _, _) = call(&r, Method::POST, "/api/v1/sites", Some(TOKEN), Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
