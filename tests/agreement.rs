//! The OpenAPI document and the server agree on the parameters of the
//! page routes: what the document leaves out, the server refuses, with
//! the code the document's error table gives.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::app::{TestApp, json_of};
use support::web::{get, hit_page, send};

fn code(body: &str) -> String {
    json_of(body)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_page_routes_refuse_what_the_document_does_not_name() {
    let app = TestApp::sqlite(&[]).await;
    app.create_site(&json!({"slug": "blog", "public": true}))
        .await;
    hit_page(&app, "blog", "/a").await;

    // /pages/count takes `page`, once, and nothing else.
    let one = get(&app, "/api/v1/sites/blog/pages/count?page=/a", &[]).await;
    assert_eq!(
        (one.status, json_of(&one.body)),
        (
            StatusCode::OK,
            json!({"site": "blog", "page": "/a", "count": 1})
        )
    );
    for query in ["page=/a&x=1", "page=/a&page=/b", "page=/a&limit=1"] {
        let reply = get(
            &app,
            &format!("/api/v1/sites/blog/pages/count?{query}"),
            &[],
        )
        .await;
        assert_eq!(
            (reply.status, code(&reply.body)),
            (StatusCode::BAD_REQUEST, "invalid_query".to_owned()),
            "{query}: {}",
            reply.body
        );
    }

    // A hit names its page in its body: one in the query string is a 400
    // that counts nothing, not a hit on the site alone.
    let misplaced = send(
        &app,
        Method::POST,
        "/api/v1/sites/blog/hits?page=/x",
        &[],
        None,
    )
    .await;
    assert_eq!(
        (misplaced.status, code(&misplaced.body)),
        (StatusCode::BAD_REQUEST, "invalid_query".to_owned())
    );
    assert_eq!(app.count("blog").await, 1);

    // A page's series is daily: asking for hours is a bad query.
    let hourly = get(&app, "/api/v1/sites/blog/series?page=/a&step=hour", &[]).await;
    assert_eq!(
        (hourly.status, code(&hourly.body)),
        (StatusCode::BAD_REQUEST, "invalid_query".to_owned()),
        "{}",
        hourly.body
    );

    // The document says so: /pages/count's `page` is required, and as long
    // as the server takes it.
    let doc = json_of(&get(&app, "/api/v1/openapi.json", &[]).await.body);
    let params = &doc["paths"]["/api/v1/sites/{slug}/pages/count"]["get"]["parameters"];
    let page = params
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "page")
        .unwrap();
    assert_eq!(
        (&page["in"], &page["required"], &page["schema"]["maxLength"]),
        (&json!("query"), &json!(true), &json!(1024))
    );
}
