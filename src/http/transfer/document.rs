//! The export document, as `GET /api/v1/export` writes it and
//! `POST /api/v1/import` takes it back, and its CSV form.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::time::{format_date, format_timestamp, unix};
use crate::domain::{Page, SiteDump};
use crate::http::csv;

/// Every site with its count, base count, hours and pages: what import
/// takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportBody {
    #[schema(format = DateTime)]
    exported_at: String,
    sites: Vec<SiteExport>,
}

impl ExportBody {
    /// The export of `sites`, made at `at`.
    pub(super) fn of(sites: Vec<SiteDump>, at: SystemTime) -> ExportBody {
        ExportBody {
            exported_at: format_timestamp(unix(at)),
            sites: sites.into_iter().map(site_export).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteExport {
    slug: String,
    name: String,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    count: i64,
    /// Hits in no hour below: `count = base_count + sum(hourly hits)`.
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    base_count: i64,
    #[schema(format = DateTime)]
    created_at: String,
    hourly: Vec<HourExport>,
    /// Every page by name, the overflow page `(other)` too.
    pages: Vec<PageExport>,
    /// Every breakdown row: the site's own first, then each referrer's,
    /// then each page's, each by day, dimension and value. Imported with
    /// the hours (`?hours=replay`), they replace the site's.
    breakdowns: Vec<BreakdownExport>,
}

/// One breakdown row: hits under one value of one dimension on one day,
/// of the site or, with `page`, of one of its pages (one of `pages`), or,
/// with `referrer`, of the site's hits from that referrer (which the
/// dashboard's referrer filter reads).
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakdownExport {
    /// A UTC date: an import takes none later than the current day.
    #[schema(format = Date, example = "2026-11-23")]
    d: String,
    #[schema(example = "referrer")]
    dimension: &'static str,
    #[schema(example = "news.ycombinator.com", max_length = 100)]
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "/posts/hello")]
    page: Option<Page>,
    /// A referring host or `(other)`, never `(none)`; not with `page`, nor
    /// under the `referrer` dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "news.ycombinator.com", max_length = 100)]
    referrer: Option<String>,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    hits: i64,
}

/// An hour: an import takes none later than the current hour, nor the
/// last hour of 9999, which no series can show.
#[derive(Debug, Serialize, ToSchema)]
pub struct HourExport {
    #[schema(format = DateTime, example = "2026-11-23T01:00:00Z")]
    t: String,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    hits: i64,
}

/// A page: its count, and its hits on each day that had any and that
/// retention has not dropped (so they add up to at most its count).
#[derive(Debug, Serialize, ToSchema)]
pub struct PageExport {
    #[schema(value_type = String, example = "/posts/hello")]
    page: Page,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    count: i64,
    daily: Vec<DayExport>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayExport {
    /// A UTC date: an import takes none later than the current day.
    #[schema(format = Date, example = "2026-11-23")]
    d: String,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    hits: i64,
}

fn site_export(dump: SiteDump) -> SiteExport {
    SiteExport {
        slug: dump.site.slug.into(),
        name: dump.site.name,
        count: dump.site.count,
        base_count: dump.base_count,
        created_at: format_timestamp(unix(dump.site.created_at)),
        hourly: dump
            .buckets
            .into_iter()
            .map(|(t, hits)| HourExport {
                t: format_timestamp(unix(t)),
                hits,
            })
            .collect(),
        pages: dump
            .pages
            .into_iter()
            .map(|p| PageExport {
                page: p.page,
                count: p.count,
                daily: p
                    .days
                    .into_iter()
                    .map(|(day, hits)| DayExport {
                        d: format_date(day * 86_400),
                        hits,
                    })
                    .collect(),
            })
            .collect(),
        breakdowns: dump
            .breakdowns
            .into_iter()
            .map(|b| BreakdownExport {
                d: format_date(b.day * 86_400),
                dimension: b.dimension.name(),
                value: b.value,
                page: b.page,
                referrer: b.referrer,
                hits: b.hits,
            })
            .collect(),
    }
}

/// `site,name,count,t,hits`: per site, a row with an empty `t` holding the
/// base count, then one row per hour, so a site's `hits` add up to `count`.
pub(super) fn export_csv(sites: &[SiteDump]) -> String {
    let mut out = String::from("site,name,count,t,hits\n");
    for dump in sites {
        let name = csv::cell(&dump.site.name);
        let (slug, count) = (&dump.site.slug, dump.site.count);
        let _ = writeln!(out, "{slug},{name},{count},,{}", dump.base_count);
        for (t, hits) in &dump.buckets {
            let t = format_timestamp(unix(*t));
            let _ = writeln!(out, "{slug},{name},{count},{t},{hits}");
        }
    }
    out
}

/// One site to import, in the plain form. An export's document (an object
/// with `sites`, each also with `base_count`, `created_at`, `hourly`,
/// `pages` and `breakdowns`: `ExportBody`) is taken too, with its counts, base counts and
/// hits from 0 to 2^53 − 1, its timestamps RFC 3339, and no hour or page
/// day later than the current one. The reader (`import.rs`) is the
/// authority; this type only describes it.
#[derive(Debug, ToSchema)]
pub struct ImportSite {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "blog")]
    pub slug: String,
    #[schema(minimum = 0, maximum = 9007199254740991.0)]
    pub count: i64,
    /// Default: the slug.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
}
