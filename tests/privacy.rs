//! Who may read a site's details. A site's count, a page's count and
//! badges are public, as counters are; its pages list, series and unique
//! visitors are readable with the admin token, a dashboard session, or by
//! anyone once the site is public (its own `public` setting, else the
//! instance's `TALLY_DASHBOARD_PUBLIC`).

mod support;

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, json_of, listed_counts, sqlite_url};
use support::web::{Reply, get, hit_page, send};

/// The three routes of a site's details.
const DETAILS: [&str; 3] = [
    "/api/v1/sites/blog/pages",
    "/api/v1/sites/blog/series",
    "/api/v1/sites/blog/uniques",
];

/// Routes anyone may read whatever the site's setting (no badge counts
/// here: `readonly`).
const PUBLIC: [&str; 3] = [
    "/api/v1/sites/blog/count",
    "/api/v1/sites/blog/pages/count?page=/a",
    "/badge/blog.svg?readonly=1",
];

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn admin(r: &Router, method: Method, path: &str, body: &Value) -> Value {
    let auth = bearer();
    let reply = send(
        r,
        method,
        path,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Some(&body.to_string()),
    )
    .await;
    assert!(reply.status.is_success(), "{path}: {}", reply.body);
    json_of(&reply.body)
}

/// The status and error code (`""` for a success) of each route.
async fn statuses(r: &Router, routes: &[&str], headers: &[(&str, &str)]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for route in routes {
        let reply = get(r, route, headers).await;
        out.push((reply.status.as_u16(), code(&reply)));
    }
    out
}

fn code(reply: &Reply) -> String {
    if reply.status.is_success() {
        return String::new();
    }
    json_of(&reply.body)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn all(n: usize, status: u16, code: &str) -> Vec<(u16, String)> {
    vec![(status, code.to_owned()); n]
}

/// A session cookie from the dashboard's sign-in.
async fn session(r: &Router) -> String {
    let body = format!("token={TOKEN}&next=%2Fdashboard");
    let reply = send(
        r,
        Method::POST,
        "/dashboard/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let cookie = reply.header("set-cookie");
    cookie.split(';').next().unwrap().to_owned()
}

async fn details_are_private_until_the_site_is_public(r: &TestApp) {
    let site = admin(r, Method::POST, "/api/v1/sites", &json!({"slug": "blog"})).await;
    assert_eq!(site["public"], json!(false));
    hit_page(r, "blog", "/a").await;

    // Anyone: the counts, not the details.
    assert_eq!(statuses(r, &PUBLIC, &[]).await, all(3, 200, ""));
    assert_eq!(
        statuses(r, &DETAILS, &[]).await,
        all(3, 401, "unauthorized")
    );
    let refused = get(r, DETAILS[0], &[]).await;
    assert_eq!(
        json_of(&refused.body)["error"]["message"],
        "site blog's pages, series and unique visitors are private: send 'Authorization: \
         Bearer <admin token>', or make the site public (PATCH /api/v1/sites/blog \
         {\"public\": true})"
    );
    // A wrong token is told so, not read as anyone.
    assert_eq!(
        statuses(r, &DETAILS, &[("authorization", "Bearer wrong-token")]).await,
        all(3, 401, "invalid_token")
    );
    // The admin token, or a dashboard session, reads them.
    let auth = bearer();
    assert_eq!(
        statuses(r, &DETAILS, &[("authorization", &auth)]).await,
        all(3, 200, "")
    );
    let cookie = session(r).await;
    assert_eq!(
        statuses(r, &DETAILS, &[("cookie", &cookie)]).await,
        all(3, 200, "")
    );
    let pages = get(r, DETAILS[0], &[("cookie", &cookie)]).await;
    let listed: Vec<(String, i64)> = listed_counts(&json_of(&pages.body)["pages"], "page")
        .into_iter()
        .collect();
    assert_eq!(listed, vec![("/a".to_owned(), 1)]);

    // Public: anyone reads them; private again: no one without the token.
    let site = admin(
        r,
        Method::PATCH,
        "/api/v1/sites/blog",
        &json!({"public": true}),
    )
    .await;
    assert_eq!(site["public"], json!(true));
    assert_eq!(statuses(r, &DETAILS, &[]).await, all(3, 200, ""));
    admin(
        r,
        Method::PATCH,
        "/api/v1/sites/blog",
        &json!({"public": false}),
    )
    .await;
    assert_eq!(
        statuses(r, &DETAILS, &[]).await,
        all(3, 401, "unauthorized")
    );
    assert_eq!(statuses(r, &PUBLIC, &[]).await, all(3, 200, ""));
    // A site that does not exist is a 404 for anyone.
    let missing = get(r, "/api/v1/sites/nope/pages", &[]).await;
    assert_eq!(
        (missing.status, code(&missing)),
        (StatusCode::NOT_FOUND, "site_not_found".to_owned())
    );
}

on_both_stores!(details_are_private_until_the_site_is_public);

/// `TALLY_DASHBOARD_PUBLIC` is the default of a site with no setting of its
/// own (every site an older release created, and a new site created without
/// one); a site's own setting wins either way.
#[tokio::test]
async fn the_instance_default_applies_to_sites_without_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &["--dashboard-public"]).await;
    let site = create(&r, "blog", None).await;
    assert_eq!(site["public"], json!(true));
    assert_eq!(statuses(&r, &DETAILS, &[]).await, all(3, 200, ""));
    let hidden = create(&r, "hidden", Some(false)).await;
    assert_eq!(hidden["public"], json!(false));
    assert_eq!(
        statuses(&r, &["/api/v1/sites/hidden/pages"], &[]).await,
        all(1, 401, "unauthorized")
    );
    // The public dashboard shows the public sites; a private one asks for
    // a sign-in, after which it is there.
    let index = get(&r, "/dashboard", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(
        index.body.contains("href=\"/dashboard/blog\""),
        "{}",
        index.body
    );
    assert!(!index.body.contains("hidden"), "{}", index.body);
    let hidden = get(&r, "/dashboard/hidden", &[]).await;
    assert_eq!(
        (hidden.status, hidden.header("location")),
        (
            StatusCode::SEE_OTHER,
            "/dashboard/login?next=/dashboard/hidden"
        )
    );
    let form = get(&r, "/dashboard/login?next=/dashboard/hidden", &[]).await;
    assert_eq!(form.status, StatusCode::OK);
    let cookie = session(&r).await;
    let hidden = get(&r, "/dashboard/hidden", &[("cookie", &cookie)]).await;
    assert_eq!(hidden.status, StatusCode::OK);
    let index = get(&r, "/dashboard", &[("cookie", &cookie)]).await;
    assert!(
        index.body.contains("href=\"/dashboard/hidden\""),
        "{}",
        index.body
    );

    // Without an admin token, the instance's default is all there is.
    let dir = tempfile::tempdir().unwrap();
    let r = TestApp::spawn(&sqlite_url(dir.path()), &["--no-token"]).await;
    assert_eq!(
        statuses(&r, &["/api/v1/sites/default/pages"], &[]).await,
        all(1, 401, "unauthorized")
    );
    assert_eq!(
        statuses(&r, &["/api/v1/sites/default/count"], &[]).await,
        all(1, 200, "")
    );
}

async fn create(r: &Router, slug: &str, public: Option<bool>) -> Value {
    let mut body = json!({ "slug": slug });
    if let Some(public) = public {
        body["public"] = json!(public);
    }
    admin(r, Method::POST, "/api/v1/sites", &body).await
}
