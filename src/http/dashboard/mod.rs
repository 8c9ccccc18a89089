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

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::counting::CountError;
use crate::counting::series::{Range, Series, Step};
use crate::domain::time::{format_date, format_timestamp, unix};
use crate::domain::{Site, Slug};
use auth::Viewer;
use chart::Datum;
use html::{Esc, Nav, error_page, grouped, page};

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
    let mut main = String::with_capacity(512 + sites.len() * 200);
    let _ = write!(
        main,
        "<h1>Sites</h1><p class=\"summary\"><strong>{}</strong> hits on {} site{}</p>\
         <table><thead><tr><th>Site</th><th>Slug</th><th class=\"num\">Hits</th>\
         <th>Created</th></tr></thead><tbody>",
        grouped(total),
        sites.len(),
        if sites.len() == 1 { "" } else { "s" }
    );
    for s in &sites {
        let name = if s.name.is_empty() {
            s.slug.as_str()
        } else {
            &s.name
        };
        let _ = write!(
            main,
            "<tr class=\"site\"><td><a href=\"{}\">{}</a></td><td><code>{}</code></td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            Esc(&site_href(&s.slug)),
            Esc(name),
            Esc(&s.slug),
            grouped(s.count),
            format_date(unix(s.created_at)),
        );
    }
    main.push_str("</tbody></table>");
    updated(&mut main);
    page(
        StatusCode::OK,
        "Sites",
        Some(&nav(&sites, None, viewer)),
        &main,
    )
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
    let name = if series.site.name.is_empty() {
        series.site.slug.as_str()
    } else {
        &series.site.name
    };
    let main = site_main(&series, view, &badge_base(&headers));
    page(
        StatusCode::OK,
        name,
        Some(&nav(&sites, Some(&series.site.slug), viewer)),
        &main,
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

fn site_main(series: &Series, view: View, base: &str) -> String {
    let site = &series.site;
    let slug = &site.slug;
    let name = if site.name.is_empty() {
        slug.as_str()
    } else {
        &site.name
    };
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

    let mut main = String::with_capacity(32_000);
    let _ = write!(
        main,
        "<h1>{}<small>{}</small></h1>\
         <p class=\"summary\"><strong>{}</strong> hits in all · {} in {window} · \
         at most {} in one {unit}</p>",
        Esc(name),
        Esc(slug),
        grouped(site.count),
        grouped(in_window),
        grouped(peak),
    );
    let href = Esc(&site_href(slug)).to_string();
    let (hourly, daily) = match view {
        View::Hourly => (" aria-current=\"page\"", ""),
        View::Daily => ("", " aria-current=\"page\""),
    };
    let _ = write!(
        main,
        "<nav class=\"tabs\" aria-label=\"Charts\">\
         <a href=\"{href}?view=hourly\"{hourly}>Hourly · 48 h</a>\
         <a href=\"{href}?view=daily\"{daily}>Daily · 30 days</a>\
         <a href=\"#cumulative\">Running total</a></nav>"
    );
    let bars_label = format!("Hits per {unit} over {window}, UTC");
    let _ = write!(
        main,
        "<figure id=\"per-{unit}\"><figcaption>{}</figcaption>{}</figure>",
        Esc(&bars_label),
        chart::bars(&bars_label, &bars)
    );
    let line_label = format!("Running total over {window}");
    let _ = write!(
        main,
        "<figure id=\"cumulative\"><figcaption>{}</figcaption>{}</figure>",
        Esc(&line_label),
        chart::line(&line_label, &running)
    );
    let api = format!("/api/v1/sites/{slug}/series?step={}", step.name());
    let _ = write!(
        main,
        "<p class=\"links\">This series as <a href=\"{0}\">JSON</a> or \
         <a href=\"{0}&amp;format=csv\">CSV</a>. \
         Badge <img src=\"/badge/{1}.svg?readonly=1\" alt=\"{1} badge\" height=\"20\">: \
         <code>![views]({2}/badge/{1}.svg)</code></p>",
        Esc(&api),
        Esc(slug),
        Esc(base),
    );
    updated(&mut main);
    main
}

fn updated(main: &mut String) {
    let now = format_timestamp(unix(SystemTime::now()));
    let _ = write!(
        main,
        "<p class=\"updated\">Updated <time datetime=\"{now}\">{}</time>\
         <span class=\"auto\"> · refreshes every 30 seconds</span></p>",
        now.replace('T', " ").replace('Z', " UTC")
    );
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
}
