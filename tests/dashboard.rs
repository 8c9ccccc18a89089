//! The dashboard: who may see it (public, token, session cookie), what the
//! pages hold (one bar and one point per hour or day, escaped names), and
//! the static files it links.

mod support;

use axum::http::{Method, StatusCode};
use support::app::{RouterApp, TOKEN, call};
use support::web::{Reply, get, send};

/// A name that breaks any page that forgets to escape it.
const EVIL_NAME: &str = "<script>alert(1)</script> & \"Bob's\"";

async fn app(extra: &[&str]) -> RouterApp {
    let app = RouterApp::sqlite(extra).await;
    if !extra.contains(&"--no-token") {
        app.create_site(&serde_json::json!({ "slug": "blog", "name": EVIL_NAME }))
            .await;
    }
    app
}

const BEARER: (&str, &str) = ("authorization", "Bearer test-admin-token");

fn assert_page(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(
        reply
            .header("content-security-policy")
            .contains("script-src 'self'")
    );
    assert!(reply.body.starts_with("<!doctype html>"));
}

#[tokio::test]
async fn private_by_default_signed_out_viewers_are_sent_to_the_login_form() {
    let r = app(&[]).await;
    for path in [
        "/dashboard",
        "/dashboard/blog",
        "/dashboard/blog?view=daily",
    ] {
        let reply = get(&r, path, &[]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        let location = reply.header("location");
        assert!(
            location.starts_with("/dashboard/login?next=%2Fdashboard")
                || location.starts_with("/dashboard/login?next=/dashboard"),
            "{location}"
        );
        assert!(!reply.body.contains("blog"));
    }
    let form = get(&r, "/dashboard/login?next=/dashboard/blog", &[]).await;
    assert_page(&form);
    assert!(
        form.body
            .contains("<form class=\"login\" method=\"post\" action=\"/dashboard/login\">")
    );
    assert!(
        form.body
            .contains("name=\"next\" value=\"/dashboard/blog\"")
    );
    // The form never sends anyone to another site.
    let form = get(&r, "/dashboard/login?next=https://evil.example/", &[]).await;
    assert!(form.body.contains("name=\"next\" value=\"/dashboard\""));
}

#[tokio::test]
async fn signing_in_sets_a_signed_httponly_strict_cookie_that_opens_the_pages() {
    let r = app(&[]).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let wrong = send(
        &r,
        Method::POST,
        "/dashboard/login",
        &form,
        Some("token=nope&next=%2Fdashboard%2Fblog"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get("set-cookie").is_none());
    assert!(wrong.body.contains("That is not the admin token."));

    let body = format!("token={TOKEN}&next=%2Fdashboard%2Fblog");
    let ok = send(&r, Method::POST, "/dashboard/login", &form, Some(&body)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header("location"), "/dashboard/blog");
    let cookie = ok.header("set-cookie").to_owned();
    assert!(cookie.starts_with("tally_session="), "{cookie}");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie must not hold the token: {cookie}"
    );

    let session = cookie.split(';').next().unwrap().to_owned();
    let page = get(&r, "/dashboard/blog", &[("cookie", &session)]).await;
    assert_page(&page);
    assert!(
        page.body.contains("action=\"/dashboard/logout\""),
        "sign-out offered"
    );

    // A tampered cookie is refused.
    let tampered = format!("{}0", &session[..session.len() - 1]);
    let tampered = if tampered == session {
        format!("{}1", &session[..session.len() - 1])
    } else {
        tampered
    };
    assert_eq!(
        get(&r, "/dashboard/blog", &[("cookie", &tampered)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    // Behind HTTPS the cookie is Secure.
    let https = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-forwarded-proto", "https"),
    ];
    let ok = send(&r, Method::POST, "/dashboard/login", &https, Some(&body)).await;
    assert!(ok.header("set-cookie").contains("; Secure"));

    let out = send(
        &r,
        Method::POST,
        "/dashboard/logout",
        &[
            ("cookie", &session),
            ("host", "tally.test"),
            ("origin", "http://tally.test"),
        ],
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").starts_with("tally_session=; "));
    assert!(out.header("set-cookie").contains("Max-Age=0"));
}

#[tokio::test]
async fn a_session_from_another_token_is_refused() {
    let r = app(&[]).await;
    let other = app(&["--no-token", "--admin-token", "another-admin-token"]).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let ok = send(
        &other,
        Method::POST,
        "/dashboard/login",
        &form,
        Some("token=another-admin-token"),
    )
    .await;
    let session = ok
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(&other, "/dashboard", &[("cookie", &session)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&r, "/dashboard", &[("cookie", &session)]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_bearer_token_also_opens_the_pages() {
    let r = app(&[]).await;
    assert_page(&get(&r, "/dashboard", &[BEARER]).await);
    let wrong = get(&r, "/dashboard", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn without_a_token_a_private_dashboard_says_how_to_open_it() {
    let r = app(&["--no-token"]).await;
    for path in ["/dashboard", "/dashboard/default", "/dashboard/login"] {
        let reply = get(&r, path, &[]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(reply.body.contains("TALLY_ADMIN_TOKEN"));
        assert!(reply.body.contains("TALLY_DASHBOARD_PUBLIC"));
    }
}

#[tokio::test]
async fn a_public_dashboard_needs_no_sign_in() {
    let r = app(&["--dashboard-public"]).await;
    assert_page(&get(&r, "/dashboard", &[]).await);
    let page = get(&r, "/dashboard/blog", &[]).await;
    assert_page(&page);
    assert!(!page.body.contains("/dashboard/logout"));
    let login = get(&r, "/dashboard/login", &[]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let r = app(&["--dashboard-public", "false"]).await;
    assert_eq!(
        get(&r, "/dashboard", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_site_list_shows_totals_and_escapes_names() {
    let r = app(&[]).await;
    for _ in 0..3 {
        call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    }
    let page = get(&r, "/dashboard", &[BEARER]).await;
    assert_page(&page);
    assert_eq!(page.body.matches("<tr class=\"site\">").count(), 2);
    assert!(page.body.contains(
        "<a href=\"/dashboard/blog\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Bob's&quot;</a>"
    ), "{}", page.body);
    assert!(page.body.contains("<td class=\"num\">3</td>"));
    assert!(!page.body.contains("<script>alert"));
}

#[tokio::test]
async fn the_hourly_view_has_48_bars_and_48_points() {
    let r = app(&[]).await;
    for _ in 0..5 {
        call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    }
    let page = get(&r, "/dashboard/blog", &[BEARER]).await;
    assert_page(&page);
    let html = &page.body;
    assert_eq!(html.matches("<svg class=\"chart bars\"").count(), 1);
    assert_eq!(html.matches("<svg class=\"chart cumulative\"").count(), 1);
    assert_eq!(html.matches("<g class=\"bar\">").count(), 48);
    assert_eq!(html.matches("<g class=\"point\">").count(), 48);
    assert_eq!(html.matches("<title>").count(), 1 + 48 + 48);
    assert!(html.contains(": 5 hits</title>"), "the current hour's bar");
    assert!(
        html.contains("<title>5 hits in all until"),
        "the last point"
    );
    assert!(html.contains("<strong>5</strong> hits in all"));
    assert!(html.contains("href=\"/dashboard/blog?view=daily\""));
    assert!(html.contains(
        "<h1>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Bob's&quot;<small>blog</small></h1>"
    ));
    assert!(!html.contains("<script>alert"));
}

#[tokio::test]
async fn the_daily_view_has_30_bars_and_30_points() {
    let r = app(&[]).await;
    let page = get(&r, "/dashboard/blog?view=daily", &[BEARER]).await;
    assert_page(&page);
    assert_eq!(page.body.matches("<g class=\"bar\">").count(), 30);
    assert_eq!(page.body.matches("<g class=\"point\">").count(), 30);
    assert!(
        page.body
            .contains("href=\"/dashboard/blog?view=daily\" aria-current=\"page\"")
    );
}

#[tokio::test]
async fn bad_views_and_unknown_sites_are_html_errors() {
    let r = app(&[]).await;
    let bad = get(&r, "/dashboard/blog?view=weekly", &[BEARER]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        get(&r, "/dashboard/nope", &[BEARER]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&r, "/dashboard/Nope!", &[BEARER]).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn sites_named_like_the_sign_in_pages_are_reachable() {
    let r = app(&[]).await;
    let created = call(
        &r,
        Method::POST,
        "/api/v1/sites",
        Some(TOKEN),
        Some(r#"{"slug":"login"}"#),
    )
    .await;
    assert_eq!(created.0, StatusCode::CREATED);
    let list = get(&r, "/dashboard", &[BEARER]).await;
    assert!(list.body.contains("href=\"/dashboard/sites/login\""));
    let page = get(&r, "/dashboard/sites/login", &[BEARER]).await;
    assert_page(&page);
    assert_eq!(page.body.matches("<g class=\"bar\">").count(), 48);
}

#[tokio::test]
async fn static_files_are_served_with_types_long_caching_and_etags() {
    let r = app(&[]).await;
    let page = get(&r, "/dashboard/blog", &[BEARER]).await;
    for (name, content_type, file) in [
        (
            "dashboard.css",
            "text/css; charset=utf-8",
            "static/dashboard.css",
        ),
        (
            "dashboard.js",
            "text/javascript; charset=utf-8",
            "static/dashboard.js",
        ),
        ("favicon.svg", "image/svg+xml", "static/favicon.svg"),
    ] {
        // The page links each file with a version.
        let link = format!("/static/{name}?v=");
        let start = page
            .body
            .find(&link)
            .unwrap_or_else(|| panic!("{name} not linked"));
        let href: String = page.body[start..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        let reply = get(&r, &href, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{href}");
        assert_eq!(reply.header("content-type"), content_type);
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file)
                .unwrap();
        assert_eq!(reply.body, on_disk);
        let etag = reply.header("etag").to_owned();
        let cached = get(&r, &href, &[("if-none-match", &etag)]).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        assert_eq!(cached.body, "");
    }
    let missing = get(&r, "/static/nope.css", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&r, "/static/..%2FCargo.toml", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}
