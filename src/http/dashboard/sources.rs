//! Where a site's visits came from and who read them, on its dashboard
//! page: the top values of each breakdown over the days of its top pages.

use std::collections::HashMap;

use super::*;
use crate::domain::BreakdownQuery;
use crate::domain::breakdown::Dimension;

/// Values shown per dimension; the API lists them all.
const TOP_VALUES: usize = 6;

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
    let day = Step::Day.seconds();
    // Every value, for the total: a dimension holds at most its limit of
    // values a day, and its few values of its own.
    let all = |dimension| BreakdownQuery {
        dimension,
        page: page.cloned(),
        from: days.from / day,
        to: days.to / day,
        limit: 10_000,
        offset: 0,
    };
    let read = SHOWN.map(|(dimension, title)| async move {
        let mut all = state
            .counting
            .breakdowns
            .breakdown(slug, &all(dimension))
            .await?;
        let total = all.values.iter().map(|(_, n)| n).sum();
        all.values.truncate(TOP_VALUES);
        Ok::<_, CountError>(Panel {
            dimension,
            title,
            values: all.values,
            total,
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
                        table class="panel" {
                            caption { a href=(api) { (panel.title) } }
                            thead {
                                tr {
                                    th { span class="sr-only" { "Value" } }
                                    th class="num" { "Hits" }
                                    th class="num" { "Share" }
                                }
                            }
                            tbody {
                                @if panel.values.is_empty() {
                                    tr { td colspan="3" class="empty" { "none yet" } }
                                }
                                @for (value, hits) in &panel.values {
                                    tr {
                                        td class="name" {
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
                                        }
                                        td class="num" { (grouped(*hits)) }
                                        td class="num" { (percent(*hits, panel.total)) }
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
