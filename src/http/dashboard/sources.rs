//! Where a site's visits came from and who read them, on its dashboard
//! page: the top values of each breakdown over the days of its top pages.

use std::collections::HashMap;

use super::*;
use crate::counting::series::Point;
use crate::domain::BreakdownQuery;
use crate::domain::breakdown::{self, Dimension};

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

/// Which of a site's hits a page's panels show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Narrow<'a> {
    /// All of them.
    Site,
    /// One page's.
    Page(&'a Page),
    /// Those from one referrer, as the referrer panel lists it (`(none)`:
    /// from none).
    Referrer(&'a str),
}

impl Narrow<'_> {
    /// The query parameter that narrows the API's breakdowns the same way,
    /// `&` first; nothing for the whole site.
    fn api_part(self) -> String {
        match self {
            Narrow::Site => String::new(),
            Narrow::Page(page) => format!("&page={}", page_param(page.as_str())),
            Narrow::Referrer(referrer) => format!("&referrer={}", form_encoded(referrer)),
        }
    }
}

/// `text` as a query parameter's value.
fn form_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The dashboard's page of the hits from `referrer` on the days `from` to
/// `last` (dates, both included).
fn referrer_href(slug: &Slug, referrer: &str, from: &str, last: &str) -> String {
    format!(
        "{}?from={from}&to={last}&referrer={}",
        site_href(slug),
        form_encoded(referrer)
    )
}

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
/// `days`, of its hits that `narrow` keeps (from one referrer: every
/// dimension but the referrer's). A dimension's total is the sum of all
/// its values (every hit counts once under each dimension).
pub(super) async fn panels(
    state: &AppState,
    slug: &Slug,
    days: Range,
    narrow: Narrow<'_>,
) -> Result<Vec<Panel>, CountError> {
    let all = |dimension| every_value(dimension, narrow, days);
    let shown = SHOWN.into_iter().filter(|(dimension, _)| {
        !matches!(narrow, Narrow::Referrer(_)) || *dimension != Dimension::Referrer
    });
    let read = shown.map(|(dimension, title)| async move {
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

/// Every value of `dimension` on the whole days `days`, of the hits that
/// `narrow` keeps: a dimension holds at most its limit of values a day,
/// and its few values of its own, so the total is theirs.
fn every_value(dimension: Dimension, narrow: Narrow<'_>, days: Range) -> BreakdownQuery {
    let day = Step::Day.seconds();
    BreakdownQuery {
        dimension,
        page: match narrow {
            Narrow::Page(page) => Some(page.clone()),
            _ => None,
        },
        referrer: match narrow {
            Narrow::Referrer(referrer) => Some(referrer.to_owned()),
            _ => None,
        },
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
/// `narrow` says which hits they show. Each referrer opens the hits from
/// it.
pub(super) fn sources(slug: &Slug, days: Range, panels: &[Panel], narrow: Narrow<'_>) -> Markup {
    let (from, to) = (Step::Day.format(days.from), Step::Day.format(days.to));
    let last = Step::Day.format(days.to - Step::Day.seconds());
    let api_part = narrow.api_part();
    let whose = match narrow {
        Narrow::Site => "the site".to_owned(),
        Narrow::Page(_) => "this page".to_owned(),
        Narrow::Referrer(referrer) => format!("the site {}", from_words(referrer)),
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
                            "/api/v1/sites/{slug}/breakdown/{}?from={from}&to={to}{api_part}",
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
                                            None if panel.dimension == Dimension::Referrer => {
                                                a href=(referrer_href(slug, value, &from, &last)) { (value) }
                                            }
                                            None => { (value) }
                                        }
                                    };
                                    (value_row(name, *hits, panel.total))
                                }
                            }
                            @if narrow == Narrow::Site && panel.count > TOP_VALUES {
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
    let query = every_value(dimension, Narrow::Site, days);
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
                        @let name = html! {
                            @if dimension == Dimension::Referrer {
                                a href=(referrer_href(slug, value, &from, &last)) { (value) }
                            } @else {
                                (value)
                            }
                        };
                        (value_row(name, *hits, total))
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

/// "from news.ycombinator.com", or what `(none)` and `(other)` stand for.
fn from_words(referrer: &str) -> String {
    match referrer {
        breakdown::NONE => "from no referrer".into(),
        breakdown::OTHER => "from the referrers past the day's limit".into(),
        host => format!("from {host}"),
    }
}

/// `GET /dashboard/{slug}?referrer=news.ycombinator.com` (with a period):
/// the hits from one referrer (`(none)`: from none) on the whole days of
/// the period, per day and against as many days before, the pages they
/// came to, and every panel narrowed to them.
pub(super) async fn referrer_view(
    viewer: Viewer,
    state: &AppState,
    slug: &Slug,
    referrer: &str,
    period: Period,
) -> Response {
    if breakdown::value(referrer).as_deref() != Some(referrer) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!(
                "No referrer is listed as {referrer:?}: a referrer is a host, (none) or \
                 (other), 1 to {} characters.",
                breakdown::MAX_VALUE_LEN
            ),
        );
    }
    let day = Step::Day.seconds();
    let range = whole_days(period.range(unix(SystemTime::now())));
    let days = Period::Days {
        from: range.from / day,
        to: range.to / day - 1,
    };
    let previous = days.previous(range);
    let breakdowns = &state.counting.breakdowns;
    let (sites, detail, before, panels) = tokio::join!(
        state.counting.sites.sites(),
        breakdowns.value_detail(
            slug,
            Dimension::Referrer,
            referrer,
            (range.from / day, range.to / day),
            TOP_PAGES,
        ),
        async {
            let Some(previous) = previous else {
                return Ok(None);
            };
            let before = breakdowns
                .value_detail(
                    slug,
                    Dimension::Referrer,
                    referrer,
                    (previous.from / day, previous.to / day),
                    0,
                )
                .await?;
            Ok::<_, CountError>(Some((before.days.iter().map(|(_, n)| n).sum(), previous)))
        },
        panels(state, slug, range, Narrow::Referrer(referrer)),
    );
    let (detail, before, panels) = match (detail, before, panels) {
        (Ok(detail), Ok(before), Ok(panels)) => (detail, before, panels),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e),
    };
    let by_day: HashMap<i64, i64> = detail.days.iter().copied().collect();
    let series = Series {
        site: detail.site.clone(),
        range,
        before: 0,
        points: (range.from / day..range.to / day)
            .map(|d| Point {
                t: d * day,
                hits: by_day.get(&d).copied().unwrap_or(0),
            })
            .collect(),
    };
    let sites = shown(state, viewer, sites.unwrap_or_default());
    let site = display_name(&detail.site).to_owned();
    let main = referrer_main(
        &series,
        referrer,
        (period, days),
        before,
        (&detail.pages, &panels),
    );
    page(
        StatusCode::OK,
        &format!("{} · {site}", from_words(referrer)),
        Some(&nav(&sites, Some(&detail.site.slug), viewer)),
        main,
    )
}

/// The hits from one referrer: their sum and comparison, their days as
/// bars and a running total, the pages they came to and the panels.
fn referrer_main(
    series: &Series,
    referrer: &str,
    (period, days): (Period, Period),
    before: Option<(i64, Range)>,
    (pages, panels): (&[(String, i64)], &[Panel]),
) -> Markup {
    let site = &series.site;
    let slug = &site.slug;
    let href = site_href(slug);
    let in_window: i64 = series.points.iter().map(|p| p.hits).sum();
    let peak = series.points.iter().map(|p| p.hits).max().unwrap_or(0);
    let (window, unit) = days.words();
    let (bars, running) = chart_data(series);
    let from = from_words(referrer);
    let bars_label = format!("Hits per {unit} {from} over {window}, UTC");
    let line_label = format!("Running total of the hits {from} over {window}");
    let (first, last) = (
        Step::Day.format(series.range.from),
        Step::Day.format(series.range.to - Step::Day.seconds()),
    );
    let api = format!(
        "/api/v1/sites/{slug}/breakdown/referrer?from={first}&to={}&referrer={}",
        Step::Day.format(series.range.to),
        form_encoded(referrer)
    );
    html! {
        p class="back" { a href={ (href) "?" (period.query()) } { "← " (display_name(site)) } }
        h1 { "Hits " (from) small { (slug) } }
        p class="summary" {
            strong { (grouped(in_window)) } " hits " (from) " in " (window)
            " · at most " (grouped(peak)) " in one " (unit)
        }
        (comparison(days, in_window, before))
        (period_picker(&href, Some(&format!("referrer={}", form_encoded(referrer))), period))
        (charts(unit, (&bars_label, &bars), (&line_label, &running)))
        p class="links" {
            "These hits as " a href=(api) { "JSON" } " or "
            a href={ (api) "&format=csv" } { "CSV" } "."
        }
        section id="pages" class="sources" {
            h2 { "Pages they came to" }
            @if pages.is_empty() {
                p class="empty" { "No page named on these days." }
            } @else {
                p class="note" {
                    "The pages with the most hits " (from) " on " (first) " to " (last)
                    " (whole UTC days; at most " (TOP_PAGES) "), of the hits that named a page."
                }
                table class="panel values" {
                    (values_head())
                    tbody {
                        @for (name, hits) in pages {
                            @let link = html! {
                                a href=(page_href_over(slug, name, days)) { (name) }
                            };
                            (value_row(link, *hits, in_window))
                        }
                    }
                }
            }
        }
        (sources(slug, series.range, panels, Narrow::Referrer(referrer)))
        (updated())
    }
}
