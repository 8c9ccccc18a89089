//! Where a site's visits came from and who read them, on its dashboard
//! page: the top values of each breakdown over the days of its top pages.

use std::collections::HashMap;

use super::*;
use crate::domain::BreakdownQuery;
use crate::domain::breakdown::Dimension;

/// Values shown per dimension in a panel; its "All values" page lists up
/// to [`LISTED_VALUES`], the API all.
const TOP_VALUES: usize = 6;

/// Values listed on a dimension's own page.
const LISTED_VALUES: usize = 100;

/// The dimensions shown, in order, with their titles. `browser_version`
/// opens under each browser; `medium` and `campaign` are one click away
/// in the API.
const SHOWN: [(Dimension, &str); 8] = [
    (Dimension::Referrer, "Referrers"),
    (Dimension::Source, "Campaign sources"),
    (Dimension::Browser, "Browsers"),
    (Dimension::Os, "Systems"),
    (Dimension::Device, "Devices"),
    (Dimension::Screen, "Screens"),
    (Dimension::Country, "Countries"),
    (Dimension::Language, "Languages"),
];

/// Versions shown under each browser, most hits first.
const TOP_VERSIONS: usize = 5;

/// One dimension's top values over the days, and its hits in all.
#[derive(Debug)]
pub(super) struct Panel {
    dimension: Dimension,
    title: &'static str,
    values: Vec<(String, i64)>,
    total: i64,
    /// How many values it has on these days.
    count: usize,
    /// Per value, the next level down, most hits first: a browser's
    /// major versions (`125`, from `browser_version`'s `Firefox 125`).
    below: HashMap<String, Vec<(String, i64)>>,
}

/// Each shown dimension's top values for `slug` over the whole days
/// `days`, of one of its pages when `page` names it. A dimension's total
/// is the sum of all its values (every hit counts once under each
/// dimension).
pub(super) async fn panels(
    state: &AppState,
    slug: &Slug,
    days: Range,
    page: Option<&Page>,
) -> Result<Vec<Panel>, CountError> {
    let all = |dimension| every_value(dimension, page, days);
    let read = SHOWN.map(|(dimension, title)| async move {
        let mut all = state
            .counting
            .breakdowns
            .breakdown(slug, &all(dimension))
            .await?;
        let total = all.values.iter().map(|(_, n)| n).sum();
        let count = all.values.len();
        all.values.truncate(TOP_VALUES);
        Ok::<_, CountError>(Panel {
            dimension,
            title,
            values: all.values,
            total,
            count,
            below: HashMap::new(),
        })
    });
    let (mut panels, versions) = futures_util::future::try_join(
        futures_util::future::try_join_all(read),
        state
            .counting
            .breakdowns
            .breakdown(slug, &all(Dimension::BrowserVersion)),
    )
    .await?;
    if let Some(browsers) = panels
        .iter_mut()
        .find(|p| p.dimension == Dimension::Browser)
    {
        browsers.below = by_family(versions.values);
    }
    Ok(panels)
}

/// Every value of `dimension` on the whole days `days`, of one page if
/// `page` names it: a dimension holds at most its limit of values a day,
/// and its few values of its own, so the total is theirs.
fn every_value(dimension: Dimension, page: Option<&Page>, days: Range) -> BreakdownQuery {
    let day = Step::Day.seconds();
    BreakdownQuery {
        dimension,
        page: page.cloned(),
        from: days.from / day,
        to: days.to / day,
        limit: 10_000,
        offset: 0,
    }
}

/// `browser_version`'s values (`Firefox 125`, `Samsung Internet 24`,
/// most hits first) as each family's top major versions.
fn by_family(versions: Vec<(String, i64)>) -> HashMap<String, Vec<(String, i64)>> {
    let mut below: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (value, hits) in versions {
        let Some((family, major)) = value.rsplit_once(' ') else {
            continue;
        };
        let versions = below.entry(family.to_owned()).or_default();
        if versions.len() < TOP_VERSIONS {
            versions.push((major.to_owned(), hits));
        }
    }
    below
}

/// The panels, or a word on how to get them when nothing is counted yet;
/// `page` is the page they are narrowed to, if any (its name as the
/// `page` parameter gives it back, [`page_param`]).
pub(super) fn sources(slug: &Slug, days: Range, panels: &[Panel], page: Option<&Page>) -> Markup {
    let (from, to) = (Step::Day.format(days.from), Step::Day.format(days.to));
    let last = Step::Day.format(days.to - Step::Day.seconds());
    let page_part = page
        .map(|page| format!("&page={}", page_param(page.as_str())))
        .unwrap_or_default();
    let whose = if page.is_some() {
        "this page"
    } else {
        "the site"
    };
    html! {
        section id="sources" class="sources" {
            h2 { "Where visits come from" }
            @if panels.iter().all(|p| p.values.is_empty()) {
                p class="empty" {
                    "No breakdowns on these days. Hits counted by "
                    code { "count.js" } " carry their referrer, screen and campaign; "
                    "every hit its browser, system, device and language."
                }
            } @else {
                p class="note" {
                    "Hits on " (whose) " on " (from) " to " (last) " (whole UTC days), by "
                    "where they came from and who read them. Each dimension's values add up "
                    "to the hits counted with breakdowns."
                }
                div class="panels" {
                    @for panel in panels {
                        @let api = format!(
                            "/api/v1/sites/{slug}/breakdown/{}?from={from}&to={to}{page_part}",
                            panel.dimension.name()
                        );
                        @let more = format!(
                            "{}?from={from}&to={last}&values={}",
                            site_href(slug),
                            panel.dimension.name()
                        );
                        table class="panel" {
                            caption { a href=(api) { (panel.title) } }
                            (values_head())
                            tbody {
                                @if panel.values.is_empty() {
                                    tr { td colspan="3" class="empty" { "none yet" } }
                                }
                                @for (value, hits) in &panel.values {
                                    @let name = html! {
                                        @match panel.below.get(value) {
                                            Some(versions) => {
                                                details {
                                                    summary { (value) }
                                                    ul class="below" {
                                                        @for (version, n) in versions {
                                                            li {
                                                                (version) " "
                                                                span class="num" { (grouped(*n)) }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                            None => { (value) }
                                        }
                                    };
                                    (value_row(name, *hits, panel.total))
                                }
                            }
                            @if page.is_none() && panel.count > TOP_VALUES {
                                tfoot {
                                    tr {
                                        td colspan="3" class="more" {
                                            a href=(more) { "All " (panel.count) " values" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The head of a table of values.
fn values_head() -> Markup {
    html! {
        thead {
            tr {
                th { span class="sr-only" { "Value" } }
                th class="num" { "Hits" }
                th class="num" { "Share" }
            }
        }
    }
}

/// One value's row: its name (`name`, with what opens under it) over a
/// line as long as its share of `total`, its hits and that share.
fn value_row(name: Markup, hits: i64, total: i64) -> Markup {
    html! {
        tr {
            td class="name" { (name) (chart::share_line(hits, total)) }
            td class="num" { (grouped(hits)) }
            td class="num" { (percent(hits, total)) }
        }
    }
}

/// A dimension's title on the dashboard: its panel's, or its name.
fn title(dimension: Dimension) -> &'static str {
    SHOWN
        .iter()
        .find(|(d, _)| *d == dimension)
        .map_or_else(|| dimension.name(), |(_, title)| title)
}

/// `GET /dashboard/{slug}?values=referrer` (with a period): a dimension's
/// values on the whole days of the period, the first [`LISTED_VALUES`]
/// with their hits, shares and lines, and the API's list of all.
pub(super) async fn values_view(
    viewer: Viewer,
    state: &AppState,
    slug: &Slug,
    name: &str,
    period: Period,
) -> Response {
    let Some(dimension) = Dimension::parse(name) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!(
                "There is no dimension {name:?}; there are {}.",
                Dimension::ALL.map(Dimension::name).join(", ")
            ),
        );
    };
    let days = whole_days(period.range(unix(SystemTime::now())));
    let query = every_value(dimension, None, days);
    let (sites, list) = tokio::join!(
        state.counting.sites.sites(),
        state.counting.breakdowns.breakdown(slug, &query),
    );
    let mut list = match list {
        Ok(list) => list,
        Err(e) => return failure(e),
    };
    let total: i64 = list.values.iter().map(|(_, n)| n).sum();
    let count = list.values.len();
    list.values.truncate(LISTED_VALUES);
    let sites = shown(state, viewer, sites.unwrap_or_default());
    let site = display_name(&list.site).to_owned();
    let href = site_href(slug);
    let (from, last) = (
        Step::Day.format(days.from),
        Step::Day.format(days.to - Step::Day.seconds()),
    );
    let api = format!(
        "/api/v1/sites/{slug}/breakdown/{}?from={from}&to={}",
        dimension.name(),
        Step::Day.format(days.to)
    );
    let main = html! {
        p class="back" { a href={ (href) "?" (period.query()) } { "← " (site) } }
        h1 { (title(dimension)) small { (slug) } }
        p class="summary" {
            strong { (grouped(total)) } " hits on " (from) " to " (last) " (whole UTC days) · "
            (count) " values"
            @if count > LISTED_VALUES { ", the first " (LISTED_VALUES) " here" }
        }
        (period_picker(&href, Some(&format!("values={}", dimension.name())), period))
        section class="sources" {
            table class="panel values" {
                (values_head())
                tbody {
                    @if list.values.is_empty() {
                        tr { td colspan="3" class="empty" { "none on these days" } }
                    }
                    @for (value, hits) in &list.values {
                        (value_row(html! { (value) }, *hits, total))
                    }
                }
            }
        }
        p class="links" {
            "All of them as " a href=(api) { "JSON" } " or "
            a href={ (api) "&format=csv" } { "CSV" } "."
        }
    };
    let page_title = format!("{} · {site}", title(dimension));
    page(
        StatusCode::OK,
        &page_title,
        Some(&nav(&sites, Some(&list.site.slug), viewer)),
        main,
    )
}
