//! The dashboard, the job the seed's Dash app did: `/dashboard` lists the
//! sites with their totals; `/dashboard/{slug}` charts one site's hits and
//! running total over one [`period`] (48 hours by default), compares them
//! with the stretch before, and ranks its top pages over the whole days the
//! period touches; `/dashboard/{slug}?page=/posts/hello` charts one page
//! per day.
//!
//! A page is named in the query as on every route that takes one: the
//! `page` parameter as it stands in the query string, normalised once by
//! the site's rules ([`Page::named`]); a listed page links to the text
//! that reads back its name ([`page_href`]), the overflow page's too.
//!
//! Pages are plain HTML with inline SVG, drawn on the server from a few
//! store queries; a small script refreshes them every 30 seconds. Who may
//! see them is [`auth`]'s business.
//!
//! A signed-in admin also gets, under the top pages, a button per page and
//! two small forms (pages under a prefix, pages with fewer than N hits on
//! the table's days) that delete pages: `POST`s taken as sign-out is
//! ([`auth::AdminForm`]), which go back to the site's page saying how many
//! pages went.

pub mod auth;
pub mod chart;
pub mod html;
pub mod period;
mod sources;
mod top_pages;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::raw_page_param;
use super::pages::DeleteQuery;
use crate::counting::CountError;
use crate::counting::series::{Range, Series, Step};
use crate::domain::page::OVERFLOW_PAGE;
use crate::domain::time::{format_date, format_timestamp, today, unix};
use crate::domain::{Page, PageList, PageSlice, Site, Slug};
use auth::{AdminForm, Viewer};
use chart::Datum;
use html::{Nav, error_page, grouped, page, percent};
use period::{Asked, PRESETS, Period, change};
use top_pages::{TopPages, delete_pages, top_pages};

/// Sites linked from the top bar; the rest are on the list page.
const NAV_SITES: usize = 12;

/// Rows of a site's top pages table; the API lists them all.
const TOP_PAGES: i64 = 20;

/// What a page name keeps unencoded in a link's query string: letters,
/// digits, `/` and the unreserved marks. Everything else, `&`, `=`, `#`,
/// `+`, `%` and quotes among it, is percent-encoded.
const PAGE_IN_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same for a name's path, but for `%`: a normalised path holds it
/// only as the start of `%25`, `%3F` or `%23`, which read back as they are.
const PATH_IN_QUERY: &AsciiSet = &PAGE_IN_QUERY.remove(b'%');

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/login", get(auth::login_form).post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route("/dashboard/sites/{slug}", get(site))
        .route("/dashboard/sites/{slug}/pages/delete", post(delete_pages))
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

/// The page of one of a site's pages: its name written so that the
/// query string reads back exactly this name, as [`Page::named`] reads a
/// `page` parameter. The path is percent-encoded but for its `%`; the kept
/// parameters, if any, follow a bare `?` as one parameter (the first, its
/// `=` bare) whose value is the rest of the name, encoded whole: decoded
/// once, it is that text again. A name stored under an earlier rule that
/// the rule no longer gives reads back as the name the rule gives.
pub fn page_href(slug: &str, page: &str) -> String {
    format!("{}?page={}", site_href(slug), page_param(page))
}

/// The same page shown over `period`: its dates first, then the page.
pub fn page_href_over(slug: &str, page: &str, period: Period) -> String {
    format!(
        "{}?{}&page={}",
        site_href(slug),
        period.query(),
        page_param(page)
    )
}

/// The value of the `page` parameter that reads back as `page` (see
/// [`page_href`]).
fn page_param(page: &str) -> String {
    match page.split_once('?') {
        None => utf8_percent_encode(page, PATH_IN_QUERY).to_string(),
        Some((path, kept)) => {
            let (name, value) = kept.split_once('=').unwrap_or((kept, ""));
            format!(
                "{}?{}={}",
                utf8_percent_encode(path, PATH_IN_QUERY),
                utf8_percent_encode(name, PAGE_IN_QUERY),
                utf8_percent_encode(value, PAGE_IN_QUERY)
            )
        }
    }
}

/// The slug in the path, or why it names no site.
fn path_slug(slug: Result<Path<String>, PathRejection>) -> Result<Slug, CountError> {
    let Ok(Path(slug)) = slug else {
        return Err(CountError::NotFound);
    };
    Ok(Slug::parse(&slug)?)
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

/// The sites `viewer` may see the details of.
fn shown(state: &AppState, viewer: Viewer, mut sites: Vec<Site>) -> Vec<Site> {
    if !viewer.sees_private(state) {
        sites.retain(|s| s.rules.public.unwrap_or(state.dashboard_public));
    }
    sites
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
    let sites = match state.counting.sites.sites().await {
        Ok(sites) => shown(&state, viewer, sites),
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
            thead {
                tr {
                    th { "Site" } th { "Slug" } th class="num" { "Hits" } th class="num" { "Pages" }
                    th { "Created" }
                }
            }
            tbody {
                @for s in &sites {
                    tr class="site" {
                        td { a href=(site_href(&s.slug)) { (display_name(s)) } }
                        td { code { (s.slug) } }
                        td class="num" { (grouped(s.count)) }
                        td class="num" { (grouped(s.pages)) }
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
    /// `hourly` or `daily`: the 48-hour and 30-day periods.
    view: Option<String>,
    /// A preset period ([`period`]).
    range: Option<String>,
    /// The first and last of the days shown, both included.
    from: Option<String>,
    to: Option<String>,
    /// One of the site's pages, by its listed name.
    page: Option<String>,
    /// A dimension whose values are all listed ([`sources::values_view`]).
    values: Option<String>,
    /// A referrer whose hits are shown ([`sources::referrer_view`]).
    referrer: Option<String>,
    /// Pages just deleted, said above the table.
    deleted: Option<String>,
}

impl ViewQuery {
    fn asked(&self) -> Asked<'_> {
        Asked {
            view: self.view.as_deref(),
            range: self.range.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
        }
    }
}

/// `GET /dashboard/{slug}?range=…` (or `?from=…&to=…`), and `&page=/posts/hello`
pub async fn site(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    slug: Result<Path<String>, PathRejection>,
    query: Result<Query<ViewQuery>, QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let slug = match path_slug(slug) {
        Ok(slug) => slug,
        Err(e) => return failure(e),
    };
    if !viewer.sees_private(&state) {
        match state.counting.sites.rules(&slug).await {
            Ok(rules) if rules.public.unwrap_or(state.dashboard_public) => {}
            // No token: no one can sign in to see it.
            Ok(_) if state.admin_token.is_none() => {
                return error_page(
                    StatusCode::FORBIDDEN,
                    "This site is private",
                    "Its details are shown to a signed-in admin only, and no admin token is \
                     configured. Set TALLY_ADMIN_TOKEN to sign in, or make the site public.",
                );
            }
            Ok(_) => return auth::to_sign_in(&format!("/dashboard/{slug}")),
            Err(e) => return failure(e),
        }
    }
    let Ok(Query(query)) = query else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The query string names the dates and a page, each at most once.",
        );
    };
    let narrowed = [
        query.page.is_some(),
        query.values.is_some(),
        query.referrer.is_some(),
    ];
    if narrowed.into_iter().filter(|n| *n).count() > 1 {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The query string names a page, a referrer or the values of a dimension: one of them.",
        );
    }
    if (query.page.is_some() || query.referrer.is_some()) && query.view.as_deref() == Some("hourly")
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "A page's hits and a referrer's are kept per day: their view is daily.",
        );
    }
    let default = if query.page.is_some() || query.referrer.is_some() {
        Period::Days30
    } else {
        Period::Hours48
    };
    let period = match Period::read(query.asked(), default, today()) {
        Ok(period) => period,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, "Bad request", &why),
    };
    if let Some(name) = &query.values {
        return sources::values_view(viewer, &state, &slug, name, period).await;
    }
    if let Some(referrer) = &query.referrer {
        return sources::referrer_view(viewer, &state, &slug, referrer, period).await;
    }
    if query.page.is_some() {
        let raw = raw_query.as_deref().and_then(raw_page_param);
        return page_view(viewer, &state, &slug, raw.unwrap_or_default(), period).await;
    }
    let range = period.range(unix(SystemTime::now()));
    let previous = period.previous(range);
    let days = whole_days(range);
    let day = Step::Day.seconds();
    let (sites, series, before, pages, day_series) = tokio::join!(
        state.counting.sites.sites(),
        state.counting.series.series(&slug, range),
        hits_in(previous, |r| state.counting.series.series(&slug, r)),
        state.counting.pages.pages(
            &slug,
            PageSlice {
                from: days.from / day,
                to: days.to / day,
                limit: TOP_PAGES,
                offset: 0,
            }
        ),
        async {
            // The daily view's range is whole days already.
            if days == range {
                None
            } else {
                Some(state.counting.series.series(&slug, days).await)
            }
        },
    );
    let series = match series {
        Ok(series) => series,
        Err(e) => return failure(e),
    };
    let list = match pages {
        Ok(list) => list,
        Err(e) => return failure(e),
    };
    let site_hits = match day_series {
        None => series.points.iter().map(|p| p.hits).sum(),
        Some(Ok(in_days)) => in_days.points.iter().map(|p| p.hits).sum(),
        Some(Err(e)) => return failure(e),
    };
    let before = match before {
        Ok(before) => before.zip(previous),
        Err(e) => return failure(e),
    };
    let sources = match sources::panels(&state, &slug, days, sources::Narrow::Site).await {
        Ok(panels) => panels,
        Err(e) => return failure(e),
    };
    let top = TopPages {
        days,
        site_hits,
        list,
        manage: viewer.session,
        deleted: query.deleted.and_then(|n| n.parse().ok()),
        period,
    };
    let sites = shown(&state, viewer, sites.unwrap_or_default());
    let main = site_main(
        &series,
        period,
        before,
        (&top, &sources),
        &badge_base(&headers),
    );
    page(
        StatusCode::OK,
        display_name(&series.site),
        Some(&nav(&sites, Some(&series.site.slug), viewer)),
        main,
    )
}

/// The hits of a series that `read` gives for `range`, when there is a
/// range: the sum of its points.
async fn hits_in<F>(
    range: Option<Range>,
    read: impl FnOnce(Range) -> F,
) -> Result<Option<i64>, CountError>
where
    F: Future<Output = Result<Series, CountError>>,
{
    let Some(range) = range else {
        return Ok(None);
    };
    let series = read(range).await?;
    Ok(Some(series.points.iter().map(|p| p.hits).sum()))
}

/// The whole UTC days that `range` touches.
fn whole_days(range: Range) -> Range {
    let day = Step::Day.seconds();
    Range {
        step: Step::Day,
        from: range.from - range.from.rem_euclid(day),
        to: range.to + (day - range.to.rem_euclid(day)) % day,
    }
}

/// `GET /dashboard/{slug}?page=…`: one page's hits per day over the
/// whole days of `period` (the last 30 by default), and its count; `raw`
/// is the `page` parameter as it stands in the query string.
async fn page_view(
    viewer: Viewer,
    state: &AppState,
    slug: &Slug,
    raw: &str,
    period: Period,
) -> Response {
    let page_name = match state.counting.pages.page_of(slug, raw).await {
        Ok(page) => page,
        Err(CountError::InvalidPage(why)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &format!("No page can have this name: {why}."),
            );
        }
        Err(e) => return failure(e),
    };
    // A page's hits are kept per day: the days the period touches, and as
    // many days before them.
    let range = whole_days(period.range(unix(SystemTime::now())));
    let days = Period::Days {
        from: range.from / Step::Day.seconds(),
        to: range.to / Step::Day.seconds() - 1,
    };
    let previous = days.previous(range);
    let (sites, series, before, panels) = tokio::join!(
        state.counting.sites.sites(),
        state.counting.series.page_series(slug, &page_name, range),
        hits_in(previous, |r| state
            .counting
            .series
            .page_series(slug, &page_name, r)),
        sources::panels(state, slug, range, sources::Narrow::Page(&page_name)),
    );
    let series = match series {
        Ok(series) => series,
        Err(e) => return failure(e),
    };
    let before = match before {
        Ok(before) => before.zip(previous),
        Err(e) => return failure(e),
    };
    let panels = match panels {
        Ok(panels) => panels,
        Err(e) => return failure(e),
    };
    let sites = shown(state, viewer, sites.unwrap_or_default());
    let title = format!("{} · {}", page_name.as_str(), display_name(&series.site));
    page(
        StatusCode::OK,
        &title,
        Some(&nav(&sites, Some(&series.site.slug), viewer)),
        page_main(&series, &page_name, (period, days), before, &panels),
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

/// Every how many days a daily chart of `points` days writes its date
/// under the axis: about ten dates at most.
fn day_tick_every(points: usize) -> usize {
    [1, 2, 5, 7, 14, 30, 61, 91]
        .into_iter()
        .find(|every| points.div_ceil(*every) <= 10)
        .unwrap_or(182)
}

/// The bars (hits per step) and the running total of a series.
fn chart_data(series: &Series) -> (Vec<Datum>, Vec<Datum>) {
    let mut bars = Vec::with_capacity(series.points.len());
    let mut running = Vec::with_capacity(series.points.len());
    let mut total = series.before;
    let every = day_tick_every(series.points.len());
    for (i, p) in series.points.iter().enumerate() {
        total += p.hits;
        let hits = format!(
            "{} hit{}",
            grouped(p.hits),
            if p.hits == 1 { "" } else { "s" }
        );
        let (when, until, tick) = match series.range.step {
            Step::Hour => {
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
            Step::Day => {
                let tick = ((series.points.len() - 1 - i) % every == 0)
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
    (bars, running)
}

/// The tabs of the presets and, on a site's page, the form for chosen
/// dates; `href` is the page they go to, and `keep` the rest of the query
/// the tabs keep (`page=…` as it stands in the query, or `values=…`).
/// (A page's page takes chosen dates from the site's page's links: a form
/// would send its name encoded as forms encode, which reads back
/// otherwise.)
fn period_picker(href: &str, keep: Option<&str>, current: Period) -> Markup {
    let today = today() * Step::Day.seconds();
    let (from, to) = match current {
        Period::Days { from, to } => (
            format_date(from * Step::Day.seconds()),
            format_date(to * Step::Day.seconds()),
        ),
        _ => (
            format_date(today - 29 * Step::Day.seconds()),
            format_date(today),
        ),
    };
    let kept = keep.map(|rest| format!("&{rest}")).unwrap_or_default();
    html! {
        nav class="tabs" aria-label="Dates" {
            @for preset in PRESETS {
                a href={ (href) "?" (preset.query()) (kept) }
                    aria-current=[(preset == current).then_some("page")] {
                    (preset.label())
                }
            }
            a href="#cumulative" { "Running total" }
        }
        @if keep.is_none() {
            form class="dates" method="get" action=(href) {
                label { "From " input type="date" name="from" value=(from) max=(format_date(today)); }
                " "
                label { "to " input type="date" name="to" value=(to) max=(format_date(today)); }
                " " button type="submit" { "Show these days" }
            }
        }
    }
}

/// How the period compares with the one before it: its hits and the
/// change in percent.
fn comparison(period: Period, in_window: i64, before: Option<(i64, Range)>) -> Markup {
    html! {
        @if let Some((hits, range)) = before {
            p class="compare" {
                (grouped(hits)) " in " (period.previous_words(range))
                @match change(in_window, hits) {
                    Some(change) => { " · " strong class="change" { (change) } }
                    None => { " · none then" }
                }
            }
        }
    }
}

/// The series API's address for `range`.
fn series_api(slug: &Slug, range: Range) -> String {
    let step = range.step;
    format!(
        "/api/v1/sites/{slug}/series?step={}&from={}&to={}",
        step.name(),
        step.format(range.from),
        step.format(range.to)
    )
}

fn site_main(
    series: &Series,
    period: Period,
    before: Option<(i64, Range)>,
    (top, panels): (&TopPages, &[sources::Panel]),
    base: &str,
) -> Markup {
    let site = &series.site;
    let slug = &site.slug;
    let in_window: i64 = series.points.iter().map(|p| p.hits).sum();
    let peak = series.points.iter().map(|p| p.hits).max().unwrap_or(0);
    let (window, unit) = period.words();
    let (bars, running) = chart_data(series);

    let href = site_href(slug);
    let bars_label = format!("Hits per {unit} over {window}, UTC");
    let line_label = format!("Running total over {window}");
    let api = series_api(slug, series.range);
    html! {
        h1 { (display_name(site)) small { (slug) } }
        p class="summary" {
            strong { (grouped(site.count)) }
            " hits in all · " (grouped(in_window)) " in " (window)
            " · at most " (grouped(peak)) " in one " (unit)
        }
        (comparison(period, in_window, before))
        (period_picker(&href, None, period))
        (charts(unit, (&bars_label, &bars), (&line_label, &running)))
        p class="links" {
            "This series as " a href=(api) { "JSON" } " or "
            a href={ (api) "&format=csv" } { "CSV" } ". Badge "
            img src={ "/badge/" (slug) ".svg?readonly=1" } alt={ (slug) " badge" } height="20";
            ": " code { "![views](" (base) "/badge/" (slug) ".svg)" }
        }
        (top_pages(slug, top, base))
        (sources::sources(slug, top.days, panels, sources::Narrow::Site))
        (updated())
    }
}

/// One page: its count and its hits per day over the days its period
/// touches (`periods`: the one asked for, for the tabs, and those days).
fn page_main(
    series: &Series,
    name: &Page,
    (period, days): (Period, Period),
    before: Option<(i64, Range)>,
    panels: &[sources::Panel],
) -> Markup {
    let site = &series.site;
    let in_window: i64 = series.points.iter().map(|p| p.hits).sum();
    let peak = series.points.iter().map(|p| p.hits).max().unwrap_or(0);
    // The presets in days read as they are; today and the 48 hours by
    // the days they touch.
    let words = if series.range.step == Step::Day && period.range(0).step == Step::Day {
        period
    } else {
        days
    };
    let (window, unit) = words.words();
    let (bars, running) = chart_data(series);
    let bars_label = format!("Hits per {unit} on this page over {window}, UTC");
    let line_label = format!("This page's running total over {window}");
    let href = site_href(&site.slug);
    html! {
        p class="back" {
            a href={ (href) "?" (period.query()) } { "← " (display_name(site)) }
        }
        h1 class="page" { (name.as_str()) small { (site.slug) } }
        p class="summary" {
            strong { (grouped(series.total())) }
            " hits on this page in all · " (grouped(in_window)) " in " (window)
            " · at most " (grouped(peak)) " in one " (unit)
        }
        (comparison(days, in_window, before))
        (period_picker(&href, Some(&format!("page={}", page_param(name.as_str()))), period))
        @if name.is_overflow() {
            p class="note" {
                "The hits on pages past the site's page limit (TALLY_PAGE_LIMIT) are counted here."
            }
        }
        (charts(unit, (&bars_label, &bars), (&line_label, &running)))
        (sources::sources(&site.slug, series.range, panels, sources::Narrow::Page(name)))
        (updated())
    }
}

/// A series' two charts: hits per step as bars, the running total as a
/// line, each with its label.
fn charts(unit: &str, bars: (&str, &[Datum]), line: (&str, &[Datum])) -> Markup {
    html! {
        figure id={ "per-" (unit) } {
            figcaption { (bars.0) }
            (chart::bars(bars.0, bars.1))
        }
        figure id="cumulative" {
            figcaption { (line.0) }
            (chart::line(line.0, line.1))
        }
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
mod tests;
