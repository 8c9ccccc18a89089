use super::*;

#[test]
fn sign_in_slugs_get_the_long_path() {
    assert_eq!(site_href("blog"), "/dashboard/blog");
    assert_eq!(site_href("login"), "/dashboard/sites/login");
    assert_eq!(site_href("logout"), "/dashboard/sites/logout");
}

#[test]
fn page_links_encode_the_name_so_the_query_gives_it_back() {
    let rules = crate::domain::SiteRules {
        keep_params: vec!["lang".into(), "id".into()],
        ..Default::default()
    };
    for (name, href) in [
        ("/posts/hello", "/dashboard/blog?page=/posts/hello"),
        ("/a&b=c%3Fx%23y", "/dashboard/blog?page=/a%26b%3Dc%3Fx%23y"),
        (
            r#"/"><script>alert(1)</script>"#,
            "/dashboard/blog?page=/%22%3E%3Cscript%3Ealert%281%29%3C/script%3E",
        ),
        ("/a b+c%2520", "/dashboard/blog?page=/a%20b%2Bc%2520"),
        ("/café/", "/dashboard/blog?page=/caf%C3%A9/"),
        ("(other)", "/dashboard/blog?page=%28other%29"),
        (
            "/doc?lang=en GB&id=7",
            "/dashboard/blog?page=/doc?lang=en%20GB%26id%3D7",
        ),
        (
            "/doc%3F?id=a&b+c%#",
            "/dashboard/blog?page=/doc%3F?id=a%26b%2Bc%25%23",
        ),
    ] {
        let got = page_href("blog", name);
        assert_eq!(got, href);
        let query = got.split_once('?').unwrap().1;
        let raw = raw_page_param(query).unwrap();
        assert_eq!(Page::named(raw, &rules).unwrap().as_str(), name);
    }
    assert_eq!(page_href("login", "/x"), "/dashboard/sites/login?page=/x");
}

#[test]
fn tables_cover_the_whole_days_of_the_range() {
    const D: i64 = 86_400;
    let now = 1000 * D + 5 * 3600 + 17;
    let hours = Range::last(Step::Hour, 48, now);
    assert_eq!(
        whole_days(hours),
        Range {
            step: Step::Day,
            from: 998 * D,
            to: 1001 * D
        }
    );
    // 48 hours ending at midnight are two whole days.
    let hours = Range::last(Step::Hour, 48, 1000 * D - 1);
    assert_eq!(
        (whole_days(hours).from, whole_days(hours).to),
        (998 * D, 1000 * D)
    );
    let days = Range::last(Step::Day, 30, now);
    assert_eq!(whole_days(days), days);
}

fn series(name: &str, slug: &str) -> Series {
    let range = Range::last(Step::Hour, 48, 1_800_000_000);
    Series {
        site: Site {
            id: 7,
            slug: Slug::parse(slug).unwrap(),
            name: name.to_owned(),
            count: 1234,
            generation: 1,
            created_at: SystemTime::UNIX_EPOCH,
            pages: 0,
            rules: Default::default(),
        },
        points: (0..48)
            .map(|i| crate::counting::series::Point {
                t: range.from + i * 3600,
                hits: i % 3,
            })
            .collect(),
        range,
        before: 1000,
    }
}

#[tokio::test]
async fn names_and_hosts_are_escaped_in_the_page_and_its_charts() {
    // A slug holds nothing to escape: `Slug` admits only a-z 0-9 . _ -.
    let series = series(r#"<script>alert("x")</script> & 'Bob'"#, "a.b_c-d");
    let top = TopPages {
        days: whole_days(series.range),
        site_hits: 0,
        list: PageList {
            site: series.site.clone(),
            pages: Vec::new(),
            more: false,
        },
        manage: false,
        deleted: None,
        period: Period::Hours48,
    };
    let nav = nav(
        std::slice::from_ref(&series.site),
        Some(&series.site.slug),
        Viewer { session: true },
    );
    let response = page(
        StatusCode::OK,
        display_name(&series.site),
        Some(&nav),
        site_main(
            &series,
            Period::Hours48,
            Some((5, series.range)),
            (&top, &[]),
            r#"http://h"x"#,
        ),
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let html = std::str::from_utf8(&body).unwrap();
    let name = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'Bob'";
    let slug = "a.b_c-d";
    for expected in [
        format!("<title>{name} · tally</title>"),
        format!("<h1>{name}<small>{slug}</small></h1>"),
        format!(r#"<a href="/dashboard/{slug}" aria-current="page">{slug}</a>"#),
        format!(r#"<a href="/dashboard/{slug}?range=48h" aria-current="page">48 hours</a>"#),
        format!(r#"<a href="/dashboard/{slug}?range=7d">7 days</a>"#),
        format!(r#"<form class="dates" method="get" action="/dashboard/{slug}">"#),
        format!(
            "<a href=\"/api/v1/sites/{slug}/series?step=hour&amp;from=2027-01-13T09:00:00Z\
             &amp;to=2027-01-15T09:00:00Z&amp;format=csv\">"
        ),
        // 48 points of 0, 1, 2 hits: 48 hits against 5 before.
        "<p class=\"compare\">5 in the 48 hours before · <strong class=\"change\">+860.0%</strong></p>".to_owned(),
        format!(r#"<img src="/badge/{slug}.svg?readonly=1" alt="{slug} badge" height="20">"#),
        format!("<code>![views](http://h&quot;x/badge/{slug}.svg)</code>"),
        format!(
            "<code>&lt;img src=&quot;http://h&quot;x/count/{slug}.gif?page=/posts/hello&quot; \
             alt=&quot;&quot;&gt;</code>"
        ),
    ] {
        assert!(html.contains(&expected), "{expected} in {html}");
    }
    assert!(!html.contains("<script>alert"));
    assert!(!html.contains("h\"x"));
    // Only the page's own script element.
    assert_eq!(html.matches("<script").count(), 1);
    // Both charts are whole, and their hover titles are the page's.
    assert_eq!(html.matches("<svg class=\"chart ").count(), 2);
    assert_eq!(html.matches("</svg>").count(), 2);
    assert_eq!(html.matches("<title>").count(), 1 + 48 + 48);
}

#[test]
fn daily_charts_write_about_ten_dates() {
    for (points, every) in [
        (7, 1),
        (10, 1),
        (11, 2),
        (30, 5),
        (50, 5),
        (51, 7),
        (365, 61),
        (731, 91),
    ] {
        assert_eq!(day_tick_every(points), every, "{points} days");
    }
}
