//! The dashboard, the job the seed's Dash app did: `/dashboard` lists the
//! sites with their totals; `/dashboard/{slug}` charts one site's hits per
//! hour (last 48 hours) or per day (last 30 days) and its running total.
//!
//! Pages are plain HTML with inline SVG, drawn on the server from one
//! series query; a small script refreshes them every 30 seconds. Who may
//! see them is [`auth`]'s business.

pub mod auth;
pub mod chart;
pub mod html;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::counting::CountError;
use crate::counting::series::{Range, Series, Step};
use crate::domain::time::{format_date, format_timestamp, unix};
use crate::domain::{Site, Slug};
use auth::Viewer;
use chart::Datum;
use html::{Nav, error_page, grouped, page};

/// Sites linked from the top bar; the rest are on the list page.
const NAV_SITES: usize = 12;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/login", get(auth::login_form).post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route("/dashboard/sites/{slug}", get(site))
        .route("/dashboard/{slug}", get(site))
}

/// A site's page. The slugs `login` and `logout` name the sign-in pages, so
/// those two sites are reached through `/dashboard/sites/`.
pub fn site_href(slug: &str) -> String {
    match slug {
        "login" | "logout" => format!("/dashboard/sites/{slug}"),
        _ => format!("/dashboard/{slug}"),
    }
}

/// What a failed store call shows on a page.
fn failure(e: CountError) -> Response {
    let status = ApiError::from(e).status();
    let mut response = match status {
        StatusCode::NOT_FOUND => {
            error_page(status, "No such site", "There is no site with this slug.")
        }
        StatusCode::SERVICE_UNAVAILABLE => error_page(
            status,
            "Unavailable",
            "The database is unavailable right now; this page will work again when it is back.",
        ),
        StatusCode::BAD_REQUEST => error_page(
            status,
            "Bad request",
            "A site slug is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'.",
        ),
        _ => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The error has been logged.",
        ),
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    }
    response
}

fn nav<'a>(sites: &'a [Site], current: Option<&'a str>, viewer: Viewer) -> Nav<'a> {
    let mut linked: Vec<(&str, String)> = sites
        .iter()
        .take(NAV_SITES)
        .map(|s| (s.slug.as_str(), site_href(&s.slug)))
        .collect();
    if let Some(current) = current {
        if !linked.iter().any(|(slug, _)| *slug == current) {
            linked.push((current, site_href(current)));
        }
    }
    Nav {
        sites: linked,
        current,
        sign_out: viewer.session,
    }
}

/// `GET /dashboard`: every site and its total.
pub async fn index(viewer: Viewer, State(state): State<Arc<AppState>>) -> Response {
    let sites = match state.counter.sites().await {
        Ok(sites) => sites,
        Err(e) => return failure(e),
    };
    let total: i64 = sites.iter().map(|s| s.count).sum();
    let main = html! {
        h1 { "Sites" }
        p class="summary" {
            strong { (grouped(total)) }
            " hits on " (sites.len()) " site" @if sites.len() != 1 { "s" }
        }
        table {
            thead { tr { th { "Site" } th { "Slug" } th class="num" { "Hits" } th { "Created" } } }
            tbody {
                @for s in &sites {
                    tr class="site" {
                        td { a href=(site_href(&s.slug)) { (display_name(s)) } }
                        td { code { (s.slug) } }
                        td class="num" { (grouped(s.count)) }
                        td { (format_date(unix(s.created_at))) }
                    }
                }
            }
        }
        (updated())
    };
    page(
        StatusCode::OK,
        "Sites",
        Some(&nav(&sites, None, viewer)),
        main,
    )
}

/// The site's name, or its slug when it has none.
fn display_name(site: &Site) -> &str {
    if site.name.is_empty() {
        site.slug.as_str()
    } else {
        &site.name
    }
}

#[derive(Debug, Deserialize)]
pub struct ViewQuery {
    view: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Hourly,
    Daily,
}

impl View {
    fn step(self) -> Step {
        match self {
            View::Hourly => Step::Hour,
            View::Daily => Step::Day,
        }
    }

    fn points(self) -> i64 {
        match self {
            View::Hourly => 48,
            View::Daily => 30,
        }
    }
}

/// `GET /dashboard/{slug}?view=hourly|daily`
pub async fn site(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    slug: Result<Path<String>, PathRejection>,
    query: Result<Query<ViewQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return failure(CountError::NotFound);
    };
    let slug = match Slug::parse(&slug) {
        Ok(slug) => slug,
        Err(e) => return failure(e.into()),
    };
    let view = match query.ok().and_then(|Query(q)| q.view).as_deref() {
        None | Some("hourly") => View::Hourly,
        Some("daily") => View::Daily,
        Some(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The view is hourly or daily.",
            );
        }
    };
    let range = Range::last(view.step(), view.points(), unix(SystemTime::now()));
    let (sites, series) = tokio::join!(state.counter.sites(), state.counter.series(&slug, range));
    let series = match series {
        Ok(series) => series,
        Err(e) => return failure(e),
    };
    let sites = sites.unwrap_or_default();
    let main = site_main(&series, view, &badge_base(&headers));
    page(
        StatusCode::OK,
        display_name(&series.site),
        Some(&nav(&sites, Some(&series.site.slug), viewer)),
        main,
    )
}

/// `https://host` as the client reached us, for the badge snippet.
fn badge_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("your-host");
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

fn site_main(series: &Series, view: View, base: &str) -> Markup {
    let site = &series.site;
    let slug = &site.slug;
    let step = series.range.step;
    let in_window: i64 = series.points.iter().map(|p| p.hits).sum();
    let peak = series.points.iter().map(|p| p.hits).max().unwrap_or(0);
    let (window, unit) = match view {
        View::Hourly => ("the last 48 hours", "hour"),
        View::Daily => ("the last 30 days", "day"),
    };

    let mut bars = Vec::with_capacity(series.points.len());
    let mut running = Vec::with_capacity(series.points.len());
    let mut total = series.before;
    for (i, p) in series.points.iter().enumerate() {
        total += p.hits;
        let hits = format!(
            "{} hit{}",
            grouped(p.hits),
            if p.hits == 1 { "" } else { "s" }
        );
        let (when, until, tick) = match view {
            View::Hourly => {
                let hour = p.t.rem_euclid(86_400) / 3600;
                let tick = (hour % 6 == 0).then(|| {
                    if hour == 0 {
                        format_date(p.t)[5..].to_owned()
                    } else {
                        format!("{hour:02}:00")
                    }
                });
                (
                    format!(
                        "{} {hour:02}:00–{:02}:00 UTC",
                        format_date(p.t),
                        (hour + 1) % 24
                    ),
                    format_timestamp(p.t + 3600)
                        .replace('T', " ")
                        .replace('Z', " UTC"),
                    tick,
                )
            }
            View::Daily => {
                let tick = ((series.points.len() - 1 - i) % 5 == 0)
                    .then(|| format_date(p.t)[5..].to_owned());
                (
                    format!("{} (UTC)", format_date(p.t)),
                    format!("the end of {}", format_date(p.t)),
                    tick,
                )
            }
        };
        bars.push(Datum {
            value: p.hits,
            title: format!("{when}: {hits}"),
            tick: tick.clone(),
        });
        running.push(Datum {
            value: total,
            title: format!("{} hits in all until {until}", grouped(total)),
            tick,
        });
    }

    let href = site_href(slug);
    let bars_label = format!("Hits per {unit} over {window}, UTC");
    let line_label = format!("Running total over {window}");
    let api = format!("/api/v1/sites/{slug}/series?step={}", step.name());
    html! {
        h1 { (display_name(site)) small { (slug) } }
        p class="summary" {
            strong { (grouped(site.count)) }
            " hits in all · " (grouped(in_window)) " in " (window)
            " · at most " (grouped(peak)) " in one " (unit)
        }
        nav class="tabs" aria-label="Charts" {
            a href={ (href) "?view=hourly" } aria-current=[(view == View::Hourly).then_some("page")] {
                "Hourly · 48 h"
            }
            a href={ (href) "?view=daily" } aria-current=[(view == View::Daily).then_some("page")] {
                "Daily · 30 days"
            }
            a href="#cumulative" { "Running total" }
        }
        figure id={ "per-" (unit) } {
            figcaption { (bars_label) }
            (chart::bars(&bars_label, &bars))
        }
        figure id="cumulative" {
            figcaption { (line_label) }
            (chart::line(&line_label, &running))
        }
        p class="links" {
            "This series as " a href=(api) { "JSON" } " or "
            a href={ (api) "&format=csv" } { "CSV" } ". Badge "
            img src={ "/badge/" (slug) ".svg?readonly=1" } alt={ (slug) " badge" } height="20";
            ": " code { "![views](" (base) "/badge/" (slug) ".svg)" }
        }
        (updated())
    }
}

/// When the page was drawn, for the reader and for the refresh script.
fn updated() -> Markup {
    let now = format_timestamp(unix(SystemTime::now()));
    html! {
        p class="updated" {
            "Updated " time datetime=(now) { (now.replace('T', " ").replace('Z', " UTC")) }
            span class="auto" { " · refreshes every 30 seconds" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_slugs_get_the_long_path() {
        assert_eq!(site_href("blog"), "/dashboard/blog");
        assert_eq!(site_href("login"), "/dashboard/sites/login");
        assert_eq!(site_href("logout"), "/dashboard/sites/logout");
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
        let nav = nav(
            std::slice::from_ref(&series.site),
            Some(&series.site.slug),
            Viewer { session: true },
        );
        let response = page(
            StatusCode::OK,
            display_name(&series.site),
            Some(&nav),
            site_main(&series, View::Hourly, r#"http://h"x"#),
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
            format!(r#"<a href="/dashboard/{slug}?view=hourly" aria-current="page">"#),
            format!(r#"<a href="/api/v1/sites/{slug}/series?step=hour&amp;format=csv">"#),
            format!(r#"<img src="/badge/{slug}.svg?readonly=1" alt="{slug} badge" height="20">"#),
            format!("<code>![views](http://h&quot;x/badge/{slug}.svg)</code>"),
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
}
