//! The dashboard: who may see it (public, token, session cookie), what the
//! pages hold (one bar and one point per hour or day, escaped names), and
//! the static files it links.

mod support;

use axum::http::{Method, StatusCode};
use support::app::{TOKEN, TestApp, call};
use support::web::{Reply, get, send};

/// A name that breaks any page that forgets to escape it.
const EVIL_NAME: &str = "<script>alert(1)</script> & \"Bob's\"";

async fn app(extra: &[&str]) -> TestApp {
    let app = TestApp::sqlite(extra).await;
    if !extra.contains(&"--no-token") {
        app.create_site(&serde_json::json!({ "slug": "blog", "name": EVIL_NAME }))
            .await;
    }
    app
}

const BEARER: (&str, &str) = ("authorization", "Bearer test-admin-token");

/// What a browser says of a form sent from a page of the same host; the
/// sign-in form is taken from none other.
const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

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
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        SAME_ORIGIN,
    ];
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
        SAME_ORIGIN,
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
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        SAME_ORIGIN,
    ];
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
    // The sign-in form is there for the sites made private
    // (tests/privacy.rs).
    let login = get(&r, "/dashboard/login", &[]).await;
    assert_eq!(login.status, StatusCode::OK);
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
    assert!(html.contains("href=\"/dashboard/blog?range=30d\""));
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
            .contains("href=\"/dashboard/blog?range=30d\" aria-current=\"page\"")
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

/// `n` hits on `page` of `blog` through the API, now.
async fn page_hits(r: &TestApp, page: &str, n: usize) {
    let body = serde_json::json!({ "page": page }).to_string();
    for _ in 0..n {
        let (status, _, reply) = call(
            r,
            Method::POST,
            "/api/v1/sites/blog/hits",
            None,
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
}

/// `n` hits on `page` of `blog` in the hour 40 days ago: outside the 48
/// hours and the 30 days, inside the all-time counts.
async fn old_page_hits(r: &TestApp, page: &str, n: usize) {
    page_hits_days_ago(r, page, n, 40).await;
}

/// `n` hits on `page` of `blog` in this hour of the day `days` days ago.
async fn page_hits_days_ago(r: &TestApp, page: &str, n: usize, days: u64) {
    let blog = r
        .store
        .site(&tally::domain::Slug::parse("blog").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let hour = tally::domain::time::hour_start(std::time::SystemTime::now())
        - std::time::Duration::from_secs(days * 86_400);
    let hits = tally::store::SiteHits {
        site: blog,
        keys: vec![None; n],
        pages: vec![Some(tally::domain::Page::parse(page, &Default::default()).unwrap()); n],
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    r.store
        .add_hits(hour, &[hits], tally::store::Limits::pages(10_000), deadline)
        .await
        .unwrap();
}

/// The rows of the top pages table, each as its cells' HTML.
fn page_rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr class=\"page\">")
        .skip(1)
        .map(|row| {
            let row = &row[..row.find("</tr>").unwrap()];
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = &cell[cell.find('>').unwrap() + 1..];
                    cell[..cell.rfind("</td>").unwrap()].to_owned()
                })
                .collect()
        })
        .collect()
}

/// Page, hits, share and count of each row; the bar's width as drawn.
fn page_table(html: &str) -> Vec<(String, String, String, String, String)> {
    page_rows(html)
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), 5, "{cells:?}");
            let link = &cells[0];
            let text = &link[link.find('>').unwrap() + 1..link.rfind("</a>").unwrap()];
            let bar = &cells[4];
            let fill = "<rect class=\"fill\" width=\"";
            let width = &bar[bar.find(fill).unwrap() + fill.len()..];
            let width = &width[..width.find('"').unwrap()];
            (
                text.to_owned(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
                width.to_owned(),
            )
        })
        .collect()
}

fn row(
    page: &str,
    hits: &str,
    share: &str,
    count: &str,
    bar: &str,
) -> (String, String, String, String, String) {
    (
        page.into(),
        hits.into(),
        share.into(),
        count.into(),
        bar.into(),
    )
}

/// Three pages hit now in the proportions 6 : 3 : 1, two hits that name no
/// page, and old hits on one of them and on a fourth page.
async fn app_with_pages() -> TestApp {
    let r = app(&[]).await;
    page_hits(&r, "/posts/hello", 6).await;
    page_hits(&r, "/about?utm_source=x#team", 3).await;
    page_hits(&r, "/", 1).await;
    for _ in 0..2 {
        call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    }
    old_page_hits(&r, "/about", 10).await;
    old_page_hits(&r, "/old", 5).await;
    r
}

#[tokio::test]
async fn the_site_page_ranks_its_top_pages_with_hits_shares_counts_and_bars() {
    let r = app_with_pages().await;
    for (path, link) in [
        ("/dashboard/blog", "/dashboard/blog?page=/posts/hello"),
        (
            "/dashboard/blog?view=daily",
            "/dashboard/blog?range=30d&amp;page=/posts/hello",
        ),
    ] {
        let page = get(&r, path, &[BEARER]).await;
        assert_page(&page);
        let html = &page.body;
        // Ranked by hits in the range, then by all-time count. The site had
        // 12 hits in the range (the 2 with no page among them): 6 of them
        // are 50.0%; bars are against the top page's 6.
        assert_eq!(
            page_table(html),
            vec![
                row("/posts/hello", "6", "50.0%", "6", "120"),
                row("/about", "3", "25.0%", "13", "60"),
                row("/", "1", "8.3%", "1", "20"),
                row("/old", "0", "0.0%", "5", "0"),
            ],
            "{path}"
        );
        assert!(html.contains("<h2>Top pages</h2>"), "{path}");
        assert!(
            html.contains("Share is of the site's 12 hits on those days: the sum of the points of its <a href=\"/api/v1/sites/blog/series?step=day&amp;from="),
            "{path}: {html}"
        );
        assert!(
            html.contains(&format!(
                "<td class=\"name\"><a href=\"{link}\">/posts/hello</a></td>"
            )),
            "{path}"
        );
        assert!(
            html.contains("All pages on these days as <a href=\"/api/v1/sites/blog/pages?from=")
        );
        assert!(!html.contains("No pages yet"));
        assert!(!html.contains("The top 20"));
        // The table's bars are not charts: still one bar per hour or day.
        let bars = if path.ends_with("daily") { 30 } else { 48 };
        assert_eq!(html.matches("<g class=\"bar\">").count(), bars, "{path}");
        assert_eq!(html.matches("<svg class=\"share\"").count(), 4, "{path}");
    }

    // The links say which days: the hourly view's 48 hours touch two or
    // three UTC days, the daily view's are 30. The API agrees on the ranking.
    let page = get(&r, "/dashboard/blog?view=daily", &[BEARER]).await;
    let start = page.body.find("/api/v1/sites/blog/pages?from=").unwrap();
    let href: String = page.body[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect::<String>()
        .replace("&amp;", "&");
    let (status, _, body) = call(&r, Method::GET, &href, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<(&str, i64, i64)> = body["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["page"].as_str().unwrap(),
                p["hits"].as_i64().unwrap(),
                p["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("/posts/hello", 6, 6),
            ("/about", 3, 13),
            ("/", 1, 1),
            ("/old", 0, 5)
        ]
    );
    let from = body["from"].as_str().unwrap();
    let to = body["to"].as_str().unwrap();
    let series = format!("/api/v1/sites/blog/series?step=day&amp;from={from}&amp;to={to}");
    assert!(page.body.contains(&series), "{series}");
}

#[tokio::test]
async fn a_page_view_charts_the_page_per_day_with_its_count() {
    let r = app_with_pages().await;
    let page = get(&r, "/dashboard/blog?page=/about", &[BEARER]).await;
    assert_page(&page);
    let html = &page.body;
    assert!(
        html.contains("<h1 class=\"page\">/about<small>blog</small></h1>"),
        "{html}"
    );
    assert!(html.contains(
        "<title>/about · &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Bob's&quot; · tally</title>"
    ));
    assert!(html.contains(
        "<strong>13</strong> hits on this page in all · 3 in the last 30 days · at most 3 in one day"
    ));
    // 30 days: the last has the 3 hits of today, the 29 before none; the
    // running total starts from the 10 hits of 40 days ago.
    assert_eq!(html.matches("<svg class=\"chart bars\"").count(), 1);
    assert_eq!(html.matches("<svg class=\"chart cumulative\"").count(), 1);
    assert_eq!(html.matches("<g class=\"bar\">").count(), 30);
    assert_eq!(html.matches("<g class=\"point\">").count(), 30);
    assert_eq!(html.matches(" (UTC): 0 hits</title>").count(), 29);
    assert_eq!(html.matches(" (UTC): 3 hits</title>").count(), 1);
    assert_eq!(html.matches("<title>10 hits in all until").count(), 29);
    assert_eq!(html.matches("<title>13 hits in all until").count(), 1);
    assert_eq!(html.matches("<title>").count(), 1 + 30 + 30);
    // Back to the site, at the same daily range; the site stays current.
    assert!(
        html.contains("<p class=\"back\"><a href=\"/dashboard/blog?range=30d\">← &lt;script&gt;")
    );
    assert!(html.contains("<a href=\"/dashboard/blog\" aria-current=\"page\">blog</a>"));
    assert!(!html.contains("<script>alert"));

    // A page never hit is all zeros.
    let never = get(&r, "/dashboard/blog?page=/never", &[BEARER]).await;
    assert_page(&never);
    assert!(
        never
            .body
            .contains("<strong>0</strong> hits on this page in all · 0 in the last 30 days")
    );
    assert_eq!(never.body.matches(" (UTC): 0 hits</title>").count(), 30);
    // Daily is its only view.
    assert_page(&get(&r, "/dashboard/blog?page=/about&view=daily", &[BEARER]).await);
}

#[tokio::test]
async fn page_names_from_the_public_are_escaped_in_text_and_encoded_in_links() {
    let r = app(&[]).await;
    let script = r#"/"><script>alert(1)</script>"#;
    page_hits(&r, script, 2).await;
    // Encoded in the hit, `?` and `#` are part of the name, not its query
    // string and fragment, and stay encoded there: the page kept is
    // `/a&b=c%3Fx%23y`.
    page_hits(&r, "/a&b=c%3Fx%23y", 1).await;
    let page = get(&r, "/dashboard/blog", &[BEARER]).await;
    assert_page(&page);
    let html = &page.body;
    let script_href = "/dashboard/blog?page=/%22%3E%3Cscript%3Ealert%281%29%3C/script%3E";
    let amp_href = "/dashboard/blog?page=/a%26b%3Dc%3Fx%23y";
    let rows: Vec<String> = page_rows(html).into_iter().map(|c| c[0].clone()).collect();
    assert_eq!(
        rows,
        vec![
            format!(
                "<a href=\"{script_href}\">/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</a>"
            ),
            format!("<a href=\"{amp_href}\">/a&amp;b=c%3Fx%23y</a>"),
        ]
    );
    assert!(!html.contains("<script>alert"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "the page's own script only"
    );

    // Each link opens its page, whose name is escaped there too.
    let view = get(&r, script_href, &[BEARER]).await;
    assert_page(&view);
    assert!(view.body.contains(
        "<h1 class=\"page\">/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;<small>blog</small></h1>"
    ));
    assert!(
        view.body
            .contains("<title>/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt; · &lt;script&gt;")
    );
    assert!(
        view.body
            .contains("<strong>2</strong> hits on this page in all")
    );
    assert!(!view.body.contains("<script>alert"));
    let view = get(&r, amp_href, &[BEARER]).await;
    assert_page(&view);
    assert!(
        view.body
            .contains("<h1 class=\"page\">/a&amp;b=c%3Fx%23y<small>blog</small></h1>")
    );
    assert!(
        view.body
            .contains("<strong>1</strong> hits on this page in all")
    );
    // Unencoded, `&` ends the name: this is `/a`, never hit.
    let other = get(&r, "/dashboard/blog?page=/a&b=c%3Fx", &[BEARER]).await;
    assert_page(&other);
    assert!(
        other
            .body
            .contains("<h1 class=\"page\">/a<small>blog</small></h1>")
    );
    assert!(
        other
            .body
            .contains("<strong>0</strong> hits on this page in all")
    );
}

#[tokio::test]
async fn a_site_without_pages_says_how_to_name_them() {
    let r = app(&[]).await;
    call(&r, Method::POST, "/api/v1/sites/blog/hits", None, None).await;
    let page = get(&r, "/dashboard/blog", &[BEARER, ("host", "tally.test")]).await;
    assert_page(&page);
    assert!(page.body.contains(
        "<p class=\"empty\"><strong>No pages yet.</strong> Hits name their page with \
         <code>{&quot;page&quot;:&quot;/posts/hello&quot;}</code> in the body of a hit, or \
         through the pixel <code>&lt;img src=&quot;http://tally.test/count/blog.gif?page=/posts/hello&quot; \
         alt=&quot;&quot;&gt;</code>.</p>"
    ), "{}", page.body);
    assert_eq!(page_rows(&page.body).len(), 0);
    // No pages table (the hit has its breakdowns, below it).
    let pages = &page.body[page.body.find("id=\"pages\"").unwrap()..];
    let pages = &pages[..pages.find("id=\"sources\"").unwrap()];
    assert!(!pages.contains("<table"), "{pages}");
    assert_eq!(panel_rows(&page.body, "Referrers"), ["(none)|1|100.0%"]);
}

#[tokio::test]
async fn the_table_shows_the_top_20_and_the_overflow_page_has_a_view() {
    let r = app(&["--page-limit", "21"]).await;
    for i in 0..22 {
        page_hits(&r, &format!("/p/{i:02}"), if i == 3 { 2 } else { 1 }).await;
    }
    let page = get(&r, "/dashboard/blog", &[BEARER]).await;
    let table = page_table(&page.body);
    assert_eq!(table.len(), 20);
    // 23 hits: /p/03 has 2, the 22nd page went to the overflow page.
    assert_eq!(table[0], row("/p/03", "2", "8.7%", "2", "120"));
    assert_eq!(table[1], row("(other)", "1", "4.3%", "1", "60"));
    assert_eq!(table[2], row("/p/00", "1", "4.3%", "1", "60"));
    assert_eq!(table[19].0, "/p/18");
    // The site's pages, as in the site list, do not include the overflow.
    assert!(page.body.contains(
        "The top 20 rows; the site has 21 pages, (other) aside. All pages on these days as"
    ));
    assert!(
        page.body
            .contains("<a href=\"/dashboard/blog?page=%28other%29\">(other)</a>")
    );
    let other = get(&r, "/dashboard/blog?page=%28other%29", &[BEARER]).await;
    assert_page(&other);
    assert!(
        other
            .body
            .contains("<h1 class=\"page\">(other)<small>blog</small></h1>")
    );
    assert!(
        other
            .body
            .contains("<strong>1</strong> hits on this page in all")
    );
    assert!(
        other
            .body
            .contains("past the site's page limit (TALLY_PAGE_LIMIT)")
    );
}

#[tokio::test]
async fn bad_page_queries_are_html_errors_never_500s() {
    let r = app(&[]).await;
    for (path, status, says) in [
        (
            "/dashboard/blog?page=posts",
            StatusCode::BAD_REQUEST,
            "starts with /",
        ),
        (
            "/dashboard/blog?page=",
            StatusCode::BAD_REQUEST,
            "starts with /",
        ),
        (
            "/dashboard/blog?page=/a%0Ab",
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            "/dashboard/blog?page=/a%FF",
            StatusCode::BAD_REQUEST,
            "must decode to UTF-8",
        ),
        (
            "/dashboard/blog?page=/a%E2%80%AE",
            StatusCode::BAD_REQUEST,
            "bidirectional controls",
        ),
        (
            "/dashboard/blog?page=/x&view=hourly",
            StatusCode::BAD_REQUEST,
            "kept per day",
        ),
        (
            "/dashboard/blog?page=/x&view=weekly",
            StatusCode::BAD_REQUEST,
            "hourly or daily",
        ),
        (
            "/dashboard/blog?page=/x&page=/y",
            StatusCode::BAD_REQUEST,
            "at most once",
        ),
        (
            "/dashboard/blog?view=daily&view=daily",
            StatusCode::BAD_REQUEST,
            "at most once",
        ),
        (
            "/dashboard/nope?page=/x",
            StatusCode::NOT_FOUND,
            "No such site",
        ),
        (
            "/dashboard/Nope!?page=/x",
            StatusCode::BAD_REQUEST,
            "A site slug is",
        ),
    ] {
        let reply = get(&r, path, &[BEARER]).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    let long = format!("/dashboard/blog?page=/{}", "a".repeat(512));
    let reply = get(&r, &long, &[BEARER]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("at most 512 bytes"));
}

/// The session cookie of an admin signed in with the form.
async fn sign_in(r: &TestApp) -> String {
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        SAME_ORIGIN,
    ];
    let body = format!("token={TOKEN}&next=%2Fdashboard");
    let ok = send(r, Method::POST, "/dashboard/login", &form, Some(&body)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    ok.header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// What deleting `blog`'s pages changes and what it must leave alone:
/// its pages as the API lists them in CSV; its count; its hourly series.
async fn blog_pages(r: &TestApp) -> (String, i64, String) {
    let mut read = Vec::new();
    for path in [
        "/api/v1/sites/blog/pages?format=csv",
        "/api/v1/sites/blog/series",
    ] {
        let (status, _, body) = call(r, Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        read.push(body);
    }
    let series = read.pop().unwrap();
    (read.pop().unwrap(), r.count("blog").await, series)
}

/// The pages list in CSV of pages hit today only (as many hits today as
/// in all).
fn csv(pages: &[(&str, i64)]) -> String {
    let rows: String = pages
        .iter()
        .map(|(p, n)| format!("{p},{n},{n}\n"))
        .collect();
    format!("page,count,hits\n{rows}")
}

/// The value of the hidden field `name` of a form of `html`.
fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let at = format!("type=\"hidden\" name=\"{name}\" value=\"");
    let start = html
        .find(&at)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + at.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

#[tokio::test]
async fn a_signed_in_admin_deletes_pages_from_the_site_page_and_no_one_else_can() {
    let r = app(&[]).await;
    for (page, n) in [
        ("/keep", 3),
        ("/junk/1", 1),
        ("/junk/2", 1),
        ("/once", 1),
        ("/x", 2),
    ] {
        page_hits(&r, page, n).await;
    }
    let cookie = sign_in(&r).await;
    let session = ("cookie", cookie.as_str());
    let action = "action=\"/dashboard/sites/blog/pages/delete\"";

    // A button per page and the two small forms, for a signed-in admin only.
    let page = get(&r, "/dashboard/blog", &[session]).await;
    assert_page(&page);
    assert_eq!(page.body.matches(action).count(), 5 + 2, "{}", page.body);
    assert!(
        page.body
            .contains("<input type=\"hidden\" name=\"page\" value=\"/junk/1\">")
    );
    assert!(
        page.body
            .contains("<button type=\"submit\" aria-label=\"Delete /junk/1\">Delete</button>")
    );
    assert!(page.body.contains("<input name=\"prefix\" required"));
    assert!(
        page.body
            .contains("<input name=\"fewer_than\" type=\"number\" min=\"1\" required>")
    );
    let (from, to) = (
        field(&page.body, "from").to_owned(),
        field(&page.body, "to").to_owned(),
    );
    assert!(
        !get(&r, "/dashboard/blog", &[BEARER])
            .await
            .body
            .contains(action)
    );
    let public = app(&["--dashboard-public"]).await;
    page_hits(&public, "/a", 1).await;
    assert!(
        !get(&public, "/dashboard/blog", &[])
            .await
            .body
            .contains(action)
    );

    let before = blog_pages(&r).await;
    let all = csv(&[
        ("/keep", 3),
        ("/x", 2),
        ("/junk/1", 1),
        ("/junk/2", 1),
        ("/once", 1),
    ]);
    assert_eq!(before.0, all);
    let path = "/dashboard/sites/blog/pages/delete";
    let form = ("content-type", "application/x-www-form-urlencoded");
    // Refused, as sign-out is: from another site's page, even with the
    // session; with the bearer token but no session; signed out.
    for (headers, status) in [
        (
            vec![
                form,
                session,
                ("host", "tally.test"),
                ("origin", "https://evil.example"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![form, session, ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![form, session, ("host", "tally.test")],
            StatusCode::FORBIDDEN,
        ),
        (vec![form, SAME_ORIGIN, BEARER], StatusCode::FORBIDDEN),
        (vec![form, SAME_ORIGIN], StatusCode::SEE_OTHER),
    ] {
        let reply = send(&r, Method::POST, path, &headers, Some("page=%2Fx")).await;
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.body);
        if status == StatusCode::SEE_OTHER {
            assert!(reply.header("location").starts_with("/dashboard/login"));
        }
    }
    let public_reply = send(
        &public,
        Method::POST,
        path,
        &[form, SAME_ORIGIN],
        Some("page=%2Fa"),
    )
    .await;
    assert_eq!(public_reply.status, StatusCode::FORBIDDEN);
    assert_eq!(blog_pages(&r).await, before);

    // One page, then back to the site's page, which says how many went.
    let signed = [form, SAME_ORIGIN, session];
    let reply = send(&r, Method::POST, path, &signed, Some("page=%2Fx")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.header("location"), "/dashboard/blog?deleted=1#pages");
    let shown = get(&r, "/dashboard/blog?deleted=1", &[session]).await;
    assert!(
        shown
            .body
            .contains("<p class=\"notice\" role=\"status\">Deleted 1 page.</p>")
    );
    assert_eq!(
        blog_pages(&r).await,
        (
            csv(&[("/keep", 3), ("/junk/1", 1), ("/junk/2", 1), ("/once", 1)]),
            before.1,
            before.2.clone()
        )
    );
    // Every page under a prefix.
    let reply = send(&r, Method::POST, path, &signed, Some("prefix=%2Fjunk%2F")).await;
    assert_eq!(reply.header("location"), "/dashboard/blog?deleted=2#pages");
    // Fewer than 2 hits on the table's days, as the form sends them.
    let body = format!("fewer_than=2&from={from}&to={to}");
    let reply = send(&r, Method::POST, path, &signed, Some(&body)).await;
    assert_eq!(reply.header("location"), "/dashboard/blog?deleted=1#pages");
    assert_eq!(
        blog_pages(&r).await,
        (csv(&[("/keep", 3)]), before.1, before.2.clone())
    );
    // A bad form is a page that says what is wrong; nothing goes.
    for (body, says) in [
        ("prefix=junk", "'prefix'"),
        ("fewer_than=0", "fewer_than"),
        ("", "fewer_than"),
        ("page=%2Fkeep&prefix=%2F", "both given"),
    ] {
        let reply = send(&r, Method::POST, path, &signed, Some(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert!(reply.body.contains("Nothing deleted"), "{}", reply.body);
        assert!(reply.body.contains(says), "{body}: {}", reply.body);
    }
    let reply = send(
        &r,
        Method::POST,
        "/dashboard/sites/nope/pages/delete",
        &signed,
        Some("page=%2Fx"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        blog_pages(&r).await,
        (csv(&[("/keep", 3)]), before.1, before.2)
    );
}

#[tokio::test]
async fn the_site_list_shows_each_site_s_pages() {
    let r = app_with_pages().await;
    let page = get(&r, "/dashboard", &[BEARER]).await;
    assert_page(&page);
    assert!(
        page.body
            .contains("<th class=\"num\">Hits</th><th class=\"num\">Pages</th>")
    );
    // 12 hits now and 15 from 40 days ago, on 4 pages.
    assert!(
        page.body.contains(
            "<td><code>blog</code></td><td class=\"num\">27</td><td class=\"num\">4</td>"
        ),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(
            "<td><code>default</code></td><td class=\"num\">0</td><td class=\"num\">0</td>"
        )
    );
}

/// One period for the whole page: each preset and chosen dates chart their
/// own steps, rank the pages over their days, and compare the site's hits
/// with the stretch before; a page's link and its page keep the dates.
#[tokio::test]
async fn the_dates_are_chosen_for_the_whole_page_and_compared_with_those_before() {
    use tally::domain::time::{format_date, today, unix};
    // Clear of midnight, so that "today" and the days ago stay put.
    let into_day = unix(std::time::SystemTime::now()).rem_euclid(86_400);
    if into_day > 86_400 - 30 {
        tokio::time::sleep(std::time::Duration::from_secs(
            (86_400 - into_day + 1) as u64,
        ))
        .await;
    }
    let r = app(&[]).await;
    page_hits(&r, "/a", 4).await;
    page_hits_days_ago(&r, "/a", 2, 3).await;
    page_hits_days_ago(&r, "/b", 5, 10).await;
    page_hits_days_ago(&r, "/b", 7, 40).await;
    let date = |days_ago: i64| format_date((today() - days_ago) * 86_400);
    let hours_today = unix(std::time::SystemTime::now()).rem_euclid(86_400) / 3600 + 1;

    let custom = format!("from={}&to={}", date(10), date(3));
    for (query, bars, summary, compare, top) in [
        (
            "range=today".to_owned(),
            hours_today as usize,
            "4 in today · at most 4 in one hour".to_owned(),
            "0 in the same hours yesterday · none then".to_owned(),
            ("/a", "4"),
        ),
        (
            "range=7d".to_owned(),
            7,
            "6 in the last 7 days · at most 4 in one day".to_owned(),
            format!(
                "5 in the 7 days before ({} to {}) · <strong class=\"change\">+20.0%</strong>",
                date(13),
                date(7)
            ),
            ("/a", "6"),
        ),
        (
            "range=30d".to_owned(),
            30,
            "11 in the last 30 days · at most 5 in one day".to_owned(),
            format!(
                "7 in the 30 days before ({} to {}) · <strong class=\"change\">+57.1%</strong>",
                date(59),
                date(30)
            ),
            ("/a", "6"),
        ),
        (
            "range=12m".to_owned(),
            365,
            "18 in the last 12 months · at most 7 in one day".to_owned(),
            format!(
                "0 in the 365 days before ({} to {}) · none then",
                date(729),
                date(365)
            ),
            ("/b", "12"),
        ),
        (
            custom.clone(),
            8,
            format!(
                "7 in the days {} to {} · at most 5 in one day",
                date(10),
                date(3)
            ),
            format!(
                "0 in the 8 days before ({} to {}) · none then",
                date(18),
                date(11)
            ),
            ("/b", "5"),
        ),
    ] {
        let path = format!("/dashboard/blog?{query}");
        let page = get(&r, &path, &[BEARER]).await;
        assert_page(&page);
        let html = &page.body;
        assert_eq!(html.matches("<g class=\"bar\">").count(), bars, "{path}");
        assert!(
            html.contains(&format!("<strong>18</strong> hits in all · {summary}</p>")),
            "{path}: {summary} in {html}"
        );
        assert!(
            html.contains(&format!("<p class=\"compare\">{compare}</p>")),
            "{path}: {compare} in {html}"
        );
        let rows = page_table(html);
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1.as_str()),
            top,
            "{path}: {rows:?}"
        );
        let link = format!(
            "<a href=\"/dashboard/blog?{}&amp;page=/a\">/a</a>",
            query.replace('&', "&amp;")
        );
        assert!(html.contains(&link), "{path}: {link}");
    }

    // The chosen dates fill the form, and no preset is current.
    let page = get(&r, &format!("/dashboard/blog?{custom}"), &[BEARER]).await;
    assert!(
        page.body
            .contains(&format!("name=\"from\" value=\"{}\"", date(10)))
    );
    assert!(
        page.body
            .contains(&format!("name=\"to\" value=\"{}\"", date(3)))
    );
    assert!(!page.body.contains("aria-current=\"page\">7 days"));

    // A page's page over 7 days: none of /b's hits, against 5 before; its
    // tabs keep the page, and the way back keeps the dates.
    let page = get(&r, "/dashboard/blog?range=7d&page=/b", &[BEARER]).await;
    assert_page(&page);
    let html = &page.body;
    assert_eq!(html.matches("<g class=\"bar\">").count(), 7);
    assert!(html.contains(&format!(
        "<p class=\"compare\">5 in the 7 days before ({} to {}) · <strong class=\"change\">-100.0%</strong></p>",
        date(13),
        date(7)
    )), "{html}");
    assert!(html.contains("<a href=\"/dashboard/blog?range=12m&amp;page=/b\">12 months</a>"));
    assert!(html.contains("<p class=\"back\"><a href=\"/dashboard/blog?range=7d\">"));
    assert!(!html.contains("<form class=\"dates\""));

    // Dates that cannot be shown are a 400 that says why.
    for (query, why) in [
        ("range=1y", "The range is today, 48h, 7d, 30d or 12m."),
        ("from=2026-02-30&amp;to=2026-03-01", "is not a date"),
        ("range=7d&view=daily", "Name the dates once"),
    ] {
        let path = format!("/dashboard/blog?{}", query.replace("&amp;", "&"));
        let reply = get(&r, &path, &[BEARER]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(reply.body.contains(why), "{path}: {}", reply.body);
    }
}

/// `html` without its links' tags: `<a href="…">a.test</a>` is `a.test`.
fn unlinked(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<a href=\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        rest = &after[after.find('>').unwrap() + 1..];
    }
    out.push_str(rest);
    out.replace("</a>", "")
}

/// The names of the rows of the tables of values in `html`, unlinked.
fn names(html: &str) -> Vec<String> {
    html.split("<td class=\"name\">")
        .skip(1)
        .map(|row| {
            let row = unlinked(row);
            row[..row.find('<').unwrap()].to_owned()
        })
        .collect()
}

/// The text of the table captioned `title` in the section "Where visits
/// come from": each row's cells, joined by `|`.
fn panel_rows(body: &str, title: &str) -> Vec<String> {
    let section = &body[body.find("id=\"sources\"").expect("the sources section")..];
    let start = section
        .find(&format!(">{title}</a></caption>"))
        .unwrap_or_else(|| panic!("no panel {title}"));
    let table = &section[start..section[start..].find("</table>").unwrap() + start];
    let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    let text = &text[..text.find("</td>").unwrap()];
                    // The share line under a value, and the link a
                    // referrer opens, are checked on their own.
                    let text = match (text.find("<svg class=\"share line\""), text.rfind("</svg>"))
                    {
                        (Some(start), Some(end)) => {
                            format!("{}{}", &text[..start], &text[end + 6..])
                        }
                        _ => text.to_owned(),
                    };
                    unlinked(&text)
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[tokio::test]
async fn the_site_page_shows_where_its_visits_come_from() {
    let r = app(&["--dashboard-public"]).await;
    let page = get(&r, "/dashboard/blog", &[]).await;
    assert!(
        page.body.contains("No breakdowns on these days."),
        "{}",
        page.body
    );
    for referrer in [
        "https://a.test/x",
        "https://a.test/y",
        "https://b.test/<z>",
        "",
    ] {
        hit_blog(
            &r,
            serde_json::json!({"page": "/p", "referrer": referrer, "screen": 390}),
        )
        .await;
    }
    let page = get(&r, "/dashboard/blog", &[]).await;
    assert_page(&page);
    assert_eq!(
        panel_rows(&page.body, "Referrers"),
        ["a.test|2|50.0%", "(none)|1|25.0%", "b.test|1|25.0%"]
    );
    assert_eq!(panel_rows(&page.body, "Screens"), ["phone|4|100.0%"]);
    // Each value has a line as long as its share: a.test's half.
    assert!(
        page.body.contains(
            "\">a.test</a><svg class=\"share line\" width=\"100%\" height=\"4\" \
             viewBox=\"0 0 1000 4\" preserveAspectRatio=\"none\" aria-hidden=\"true\" \
             xmlns=\"http://www.w3.org/2000/svg\"><rect class=\"track\" width=\"1000\" height=\"4\">\
             </rect><rect class=\"fill\" width=\"500\" height=\"4\"></rect></svg></td>"
        ),
        "{}",
        page.body
    );
    assert_eq!(panel_rows(&page.body, "Countries"), ["(unknown)|4|100.0%"]);
    assert!(
        page.body
            .contains("href=\"/api/v1/sites/blog/breakdown/referrer?from=")
    );
    r.stop().await.unwrap();
}

/// A browser's row opens on its major versions, most hits first.
#[tokio::test]
async fn a_browser_opens_on_its_versions() {
    let r = app(&["--dashboard-public"]).await;
    let firefox =
        |v: u32| format!("Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0");
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    for ua in [firefox(125), firefox(124), firefox(125), chrome.to_owned()] {
        let reply = send(
            &r,
            Method::POST,
            "/api/v1/sites/blog/hits",
            &[("content-type", "application/json"), ("user-agent", &ua)],
            Some("{}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let page = get(&r, "/dashboard/blog", &[]).await;
    assert_page(&page);
    assert_eq!(
        panel_rows(&page.body, "Browsers"),
        [
            "<details><summary>Firefox</summary><ul class=\"below\">\
             <li>125 <span class=\"num\">2</span></li><li>124 <span class=\"num\">1</span></li>\
             </ul></details>|3|75.0%",
            "<details><summary>Chrome</summary><ul class=\"below\">\
             <li>124 <span class=\"num\">1</span></li></ul></details>|1|25.0%",
        ]
    );
    r.stop().await.unwrap();
}

/// A panel with more values than it shows links to a page of all of them.
#[tokio::test]
async fn a_panel_links_to_all_its_values() {
    let r = app(&["--dashboard-public"]).await;
    for (i, n) in [3, 1, 1, 1, 1, 1, 1, 2].into_iter().enumerate() {
        for _ in 0..n {
            let referrer = format!("https://r{i}.test/");
            hit_blog(&r, serde_json::json!({"referrer": referrer})).await;
        }
    }
    let site = get(&r, "/dashboard/blog", &[]).await;
    assert_page(&site);
    assert_eq!(panel_rows(&site.body, "Referrers").len(), 6);
    let more = site
        .body
        .find(">All 8 values</a>")
        .expect("a link to all the values");
    let start = site.body[..more].rfind("href=\"").unwrap() + "href=\"".len();
    let href = &site.body[start..more - 1];
    assert!(href.starts_with("/dashboard/blog?from="), "{href}");
    assert!(href.ends_with("&amp;values=referrer"), "{href}");
    assert!(site.body.contains(">All 8 values</a>"), "{}", site.body);
    // Six values or fewer: no such link.
    assert!(!site.body.contains("values=browser"));

    let all = get(&r, &href.replace("&amp;", "&"), &[]).await;
    assert_page(&all);
    assert!(
        all.body.contains("<h1>Referrers<small>blog</small></h1>"),
        "{}",
        all.body
    );
    assert!(all.body.contains("</strong> hits on "), "{}", all.body);
    assert!(all.body.contains(" · 8 values</p>"), "{}", all.body);
    let rows = names(&all.body);
    assert_eq!(
        rows,
        [
            "r0.test", "r7.test", "r1.test", "r2.test", "r3.test", "r4.test", "r5.test", "r6.test"
        ]
    );
    // The tabs keep the dimension.
    assert!(
        all.body.contains("?range=7d&amp;values=referrer\""),
        "{}",
        all.body
    );

    for bad in [
        "/dashboard/blog?values=nope",
        "/dashboard/blog?values=referrer&page=/",
    ] {
        let reply = get(&r, bad, &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    r.stop().await.unwrap();
}

/// One hit on site `blog` with this body, counted.
async fn hit_blog(r: &TestApp, body: serde_json::Value) {
    let (status, _, text) = r
        .call(
            Method::POST,
            "/api/v1/sites/blog/hits",
            None,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// A public dashboard's blog with one hit per `(page, referrer, screen)`.
async fn visited(hits: &[(&str, &str, u32)]) -> TestApp {
    let r = app(&["--dashboard-public"]).await;
    for (page, referrer, screen) in hits {
        hit_blog(
            &r,
            serde_json::json!({"page": page, "referrer": referrer, "screen": screen}),
        )
        .await;
    }
    r
}

/// A page's own page shows the panels narrowed to its hits, and links the
/// API's lists narrowed the same way.
#[tokio::test]
async fn a_page_s_page_shows_where_its_own_visits_come_from() {
    let r = visited(&[
        ("/a", "https://x.test/1", 390),
        ("/a", "https://x.test/2", 1920),
        ("/a", "", 1920),
        ("/b", "https://y.test/", 390),
    ])
    .await;
    let site = get(&r, "/dashboard/blog", &[]).await;
    assert_eq!(
        panel_rows(&site.body, "Referrers"),
        ["x.test|2|50.0%", "(none)|1|25.0%", "y.test|1|25.0%"]
    );
    let page = get(&r, "/dashboard/blog?page=/a", &[]).await;
    assert_page(&page);
    assert_eq!(
        panel_rows(&page.body, "Referrers"),
        ["x.test|2|66.7%", "(none)|1|33.3%"]
    );
    assert_eq!(
        panel_rows(&page.body, "Screens"),
        ["desktop|2|66.7%", "phone|1|33.3%"]
    );
    assert!(page.body.contains("Hits on this page on "), "{}", page.body);
    assert!(
        page.body
            .contains("/api/v1/sites/blog/breakdown/referrer?from="),
        "{}",
        page.body
    );
    assert!(page.body.contains("&amp;page=/a\""), "{}", page.body);
    let other = get(&r, "/dashboard/blog?page=/b", &[]).await;
    assert_eq!(panel_rows(&other.body, "Referrers"), ["y.test|1|100.0%"]);
    r.stop().await.unwrap();
}

/// A referrer's row opens the hits from it: their days, the pages they
/// came to, and every other panel narrowed to them; `(none)` opens the
/// hits from no referrer.
#[tokio::test]
async fn a_referrer_s_page_narrows_every_panel_to_its_hits() {
    let r = visited(&[
        ("/a", "https://x.test/1", 390),
        ("/a", "https://x.test/2", 390),
        ("/b", "https://x.test/3", 1920),
        ("/a", "", 1920),
        ("/b", "https://y.test/", 390),
    ])
    .await;
    let site = get(&r, "/dashboard/blog", &[]).await;
    assert_eq!(
        panel_rows(&site.body, "Referrers"),
        ["x.test|3|60.0%", "(none)|1|20.0%", "y.test|1|20.0%"]
    );
    let start = site
        .body
        .find("<a href=\"/dashboard/blog?from=")
        .expect("a referrer's link")
        + "<a href=\"".len();
    let href = &site.body[start..start + site.body[start..].find('"').unwrap()];
    assert!(href.ends_with("&amp;referrer=x.test"), "{href}");

    let from = get(&r, &href.replace("&amp;", "&"), &[]).await;
    assert_page(&from);
    assert!(
        from.body
            .contains("<h1>Hits from x.test<small>blog</small></h1>"),
        "{}",
        from.body
    );
    assert!(
        from.body
            .contains("<strong>3</strong> hits from x.test in ")
    );
    assert_eq!(
        panel_rows(&from.body, "Screens"),
        ["phone|2|66.7%", "desktop|1|33.3%"]
    );
    assert!(!from.body.contains(">Referrers</a></caption>"));
    // The pages they came to, each opening its page over the same days.
    let pages = &from.body[from.body.find("id=\"pages\"").unwrap()..];
    let pages = &pages[..pages.find("</table>").unwrap()];
    let rows = names(pages);
    assert_eq!(rows, ["/a", "/b"]);
    assert!(pages.contains("&amp;page=/a\">/a</a>"), "{pages}");
    // The API's lists, narrowed the same way; the tabs keep the referrer.
    assert!(
        from.body
            .contains("/api/v1/sites/blog/breakdown/screen?from=")
            && from.body.contains("&amp;referrer=x.test\">Screens</a>"),
        "{}",
        from.body
    );
    assert!(from.body.contains("?range=7d&amp;referrer=x.test\""));

    let direct = get(&r, "/dashboard/blog?referrer=(none)", &[]).await;
    assert_page(&direct);
    assert!(
        direct
            .body
            .contains("<h1>Hits from no referrer<small>blog</small></h1>"),
        "{}",
        direct.body
    );
    assert_eq!(panel_rows(&direct.body, "Screens"), ["desktop|1|100.0%"]);
    let y = get(&r, "/dashboard/blog?referrer=y.test&range=7d", &[]).await;
    assert_eq!(panel_rows(&y.body, "Screens"), ["phone|1|100.0%"]);

    for (bad, why) in [
        (
            "/dashboard/blog?referrer=%20x.test",
            "No referrer is listed as",
        ),
        ("/dashboard/blog?referrer=x.test&page=/a", "one of them"),
        (
            "/dashboard/blog?referrer=x.test&values=screen",
            "one of them",
        ),
        (
            "/dashboard/blog?referrer=x.test&view=hourly",
            "their view is daily",
        ),
    ] {
        let reply = get(&r, bad, &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.body.contains(why), "{bad}: {}", reply.body);
    }
    r.stop().await.unwrap();
}
