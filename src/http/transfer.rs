//! Export and import, both admin actions: `GET /api/v1/export` writes every
//! site's count, hourly series and pages; `POST /api/v1/import` takes what
//! export writes (or a plain list of counts), streamed, checked whole
//! before any write, and creates missing sites.

// utoipa's generated path items name the parameter types in full.
#![allow(unused_qualifications)]

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{Admin, ApiQuery};
use super::format::Format;
use crate::counting::series::Step;
use crate::domain::time::{Day, format_date, format_timestamp, parse_instant, unix};
use crate::domain::{ImportEntry, MAX_COUNT, Page, PageDump, SiteDump, Slug};

/// Pages one import document may hold, over all its sites: the parsed
/// pages are held until the import is written, at several times the bytes
/// of their JSON, so their number is bounded well below what the largest
/// document could hold.
pub const MAX_IMPORT_PAGES: usize = 1_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// Every site with its count, base count, hours and pages: what import
/// takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportBody {
    #[schema(format = DateTime)]
    exported_at: String,
    sites: Vec<SiteExport>,
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

/// `GET /api/v1/export?format=json|csv`
#[utoipa::path(
    get,
    path = "/api/v1/export",
    summary = "Every site's count, hourly series and pages.",
    params(ExportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The export", content(
            (ExportBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn export(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = Format::parse(query.format.as_deref())?;
    let sites = state.counter.export().await?;
    let disposition = |ext: &str| format!("attachment; filename=\"tally-export.{ext}\"");
    Ok(match format {
        Format::Json => (
            [(header::CONTENT_DISPOSITION, disposition("json"))],
            Json(ExportBody {
                exported_at: format_timestamp(unix(SystemTime::now())),
                sites: sites.into_iter().map(site_export).collect(),
            }),
        )
            .into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition("csv")),
            ],
            export_csv(&sites),
        )
            .into_response(),
    })
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
    }
}

/// `site,name,count,t,hits`: per site, a row with an empty `t` holding the
/// base count, then one row per hour, so a site's `hits` add up to `count`.
fn export_csv(sites: &[SiteDump]) -> String {
    let mut out = String::from("site,name,count,t,hits\n");
    for dump in sites {
        let name = super::csv::cell(&dump.site.name);
        let (slug, count) = (&dump.site.slug, dump.site.count);
        let _ = writeln!(out, "{slug},{name},{count},,{}", dump.base_count);
        for (t, hits) in &dump.buckets {
            let t = format_timestamp(unix(*t));
            let _ = writeln!(out, "{slug},{name},{count},{t},{hits}");
        }
    }
    out
}

/// `?hours=replay` replays an export's hours; by default (`base`) each
/// count lands in the base count and the site's hours are kept.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `base` (default): each count lands in the base count; `replay`: an
    /// export's hours replace the site's hours.
    #[param(pattern = "^(base|replay)$")]
    hours: Option<String>,
}

/// One site to import, in the plain form. An export's document (an object
/// with `sites`, each also with `base_count`, `created_at`, `hourly` and
/// `pages`: `ExportBody`) is taken too, with its counts, base counts and
/// hits from 0 to 2^53 − 1, its timestamps RFC 3339, and no hour or page
/// day later than the current one. The parser in this module is the
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

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedBody {
    slug: String,
    count: i64,
    /// Whether the import created the site.
    created: bool,
}

/// What an import set.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReply {
    imported: Vec<ImportedBody>,
}

/// `POST /api/v1/import` with an export's JSON or `[{"slug":…,"count":…}]`.
#[utoipa::path(
    post,
    path = "/api/v1/import",
    summary = "Sets counts, creating missing sites: an export's document or a list of sites.",
    params(ImportQuery),
    request_body(content = Vec<ImportSite>, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ImportReply),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn import(
    _: Admin,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let replay = match query.hours.as_deref() {
        None | Some("base") => false,
        Some("replay") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "hours is \"replay\" (replace each site's hours by the document's) or \"base\"",
            ));
        }
    };
    if !is_json(request.headers()) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ));
    }
    let limit = state.max_import_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let entries = read_import(request.into_body(), limit, replay).await?;
    let done = state.counter.import(entries).await?;
    let imported: Vec<ImportedBody> = done
        .into_iter()
        .map(|d| ImportedBody {
            slug: d.slug.into(),
            count: d.count,
            created: d.created,
        })
        .collect();
    Ok(Json(ImportReply { imported }))
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(ty, suffix)| {
            ty.starts_with("application/") && suffix.eq_ignore_ascii_case("json")
        })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("an import is at most {limit} bytes (TALLY_MAX_IMPORT_BYTES)"),
    )
}

/// Parses the body as it arrives, on a blocking thread, so that only the
/// parsed entries are held (a fraction of the body's size), never the body.
async fn read_import(body: Body, limit: usize, replay: bool) -> Result<Vec<ImportEntry>, ApiError> {
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen = 0;
    let chunks = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(
                "the body is larger than the import limit",
            ));
        }
        Ok(chunk)
    });
    let reader = SyncIoBridge::new(StreamReader::new(chunks));
    let now = unix(SystemTime::now());
    let parsed = tokio::task::spawn_blocking(move || {
        parse_import(
            std::io::BufReader::with_capacity(64 << 10, reader),
            replay,
            now,
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the import parser failed");
        ApiError::internal()
    })?;
    parsed.map_err(|e| {
        if over.load(Ordering::Relaxed) {
            too_large(limit)
        } else if e.is_io() {
            ApiError::new(
                ErrorCode::InvalidBody,
                "the body could not be read to its end",
            )
        } else if e.is_data() {
            ApiError::new(ErrorCode::InvalidBody, e.to_string())
        } else {
            ApiError::new(ErrorCode::InvalidJson, e.to_string())
        }
    })
}

/// Reads an import document: a list of sites or an export, with each
/// site's hours when `replay` (else they are checked and dropped) and its
/// pages when it has them. Checked here, as each value is read, so that
/// the error names it (`sites[1].hourly[0].t`, counting sites from 0 in
/// either form): the shape, slugs and page names, timestamps, counts and
/// hits (whole numbers from 0 to [`MAX_COUNT`]), and each hour and page
/// day, which must be one that a series can hold and no later than the
/// step that holds `now` (unix seconds). The counting domain checks the
/// rest: names, order, sums.
pub fn parse_import<R: std::io::Read>(
    reader: R,
    replay: bool,
    now: i64,
) -> Result<Vec<ImportEntry>, serde_json::Error> {
    parse_bounded(reader, replay, now, MAX_IMPORT_PAGES)
}

/// [`parse_import`] with at most `max_pages` pages.
fn parse_bounded<R: std::io::Read>(
    reader: R,
    replay: bool,
    now: i64,
    max_pages: usize,
) -> Result<Vec<ImportEntry>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let pages = Cell::new(0);
    let entries = Document {
        replay,
        now,
        pages: &pages,
        max_pages,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(entries)
}

// The import document is read by hand-written visitors rather than derived
// ones: a derived struct also accepts an array of its fields in place of an
// object, which must be a 400 here, and reading into a `Value` first (to
// tell a list from an export) would let a repeated key win silently and
// hold the whole document. Each visitor accepts only an object (or, for the
// lists, an array) and refuses a key that it has already seen.

/// The whole body: a list of sites, or an export's `{"sites": [...]}`
/// (whose `exported_at` must be a timestamp, and is otherwise ignored).
/// `now` is the time of the import, unix seconds; `pages` counts the
/// pages read so far, in all sites, against `max_pages`.
#[derive(Clone, Copy)]
struct Document<'a> {
    replay: bool,
    now: i64,
    pages: &'a Cell<usize>,
    max_pages: usize,
}

/// One site, `sites[index]`: `slug` and `count`, and `name` and
/// `created_at` for a site that is created. An export's `hourly` is
/// replayed when asked, else only checked, and its `base_count` must then
/// add up; its `pages`, when given, replace the site's.
struct SiteEntry<'a> {
    doc: Document<'a>,
    index: usize,
}

struct Sites<'a>(Document<'a>);

/// The `hourly` of `sites[site]`: kept only when replayed.
struct Hours {
    keep: bool,
    site: usize,
    now: i64,
}

/// `sites[site].hourly[index]`, `{"t": "<hour start>", "hits": n}`, as
/// unix seconds and hits.
struct Hour {
    site: usize,
    index: usize,
    now: i64,
}

/// The `pages` of `sites[index]`; `site` is its slug when it came first
/// (as export writes it), to name it in a bad page name's error.
struct Pages<'a> {
    doc: Document<'a>,
    site: Option<&'a str>,
    index: usize,
}

/// `sites[site].pages[index]`, `{"page": "/posts/hello", "count": n,
/// "daily": [...]}`; `slug` as in [`Pages`].
struct PageEntry<'a> {
    slug: Option<&'a str>,
    site: usize,
    index: usize,
    now: i64,
}

/// The `daily` of `sites[site].pages[page]`.
struct Days {
    site: usize,
    page: usize,
    now: i64,
}

/// `sites[site].pages[page].daily[index]`, `{"d": "<date>", "hits": n}`,
/// as a day and hits.
struct DayEntry {
    site: usize,
    page: usize,
    index: usize,
    now: i64,
}

/// An RFC 3339 instant, or with `date` a date such as `2026-11-23` (its
/// midnight UTC), as unix seconds, read without copying the string;
/// `field` names it in an error.
struct Time<'a> {
    field: &'a dyn Fn() -> String,
    date: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DocumentField {
    Sites,
    ExportedAt,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum SiteField {
    Slug,
    Name,
    Count,
    BaseCount,
    CreatedAt,
    Hourly,
    Pages,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum HourField {
    T,
    Hits,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum PageField {
    Page,
    Count,
    Daily,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DayField {
    D,
    Hits,
}

/// A count or hits as read: a whole number from 0 to [`MAX_COUNT`]; `field`
/// names it in an error.
fn whole<E: de::Error>(n: i64, field: impl FnOnce() -> String) -> Result<i64, E> {
    if (0..=MAX_COUNT).contains(&n) {
        return Ok(n);
    }
    Err(E::custom(format!(
        "{}: {n} is not a whole number from 0 to {MAX_COUNT}",
        field()
    )))
}

/// The next value of `map`, the start of an hour (a timestamp) or of a
/// day (a date) as unix seconds: one that may be stored at `now`
/// ([`Step::check_start`]); `field` names it in an error.
fn read_start<'de, A: MapAccess<'de>>(
    map: &mut A,
    step: Step,
    now: i64,
    field: &dyn Fn() -> String,
) -> Result<i64, A::Error> {
    let t = map.next_value_seed(Time {
        field,
        date: step == Step::Day,
    })?;
    step.check_start(t, now)
        .map(|()| t)
        .map_err(|why| de::Error::custom(format!("{}: {why}", field())))
}

/// Fills a field once; a second value for it is an error.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Vec<ImportEntry>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Vec<ImportEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of {\"slug\", \"count\"} or an export's {\"sites\": [...]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Sites(self).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut sites, mut exported_at) = (None, None);
        while let Some(field) = map.next_key()? {
            match field {
                DocumentField::Sites => {
                    let list = map.next_value_seed(Sites(self))?;
                    once(&mut sites, list, "sites")?;
                }
                DocumentField::ExportedAt => {
                    let at = map.next_value_seed(Time {
                        field: &|| "exported_at".into(),
                        date: false,
                    })?;
                    once(&mut exported_at, at, "exported_at")?;
                }
            }
        }
        sites.ok_or_else(|| de::Error::missing_field("sites"))
    }
}

impl<'de> DeserializeSeed<'de> for Sites<'_> {
    type Value = Vec<ImportEntry>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Sites<'_> {
    type Value = Vec<ImportEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of sites")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut sites = Vec::new();
        while let Some(site) = seq.next_element_seed(SiteEntry {
            doc: self.0,
            index: sites.len(),
        })? {
            sites.push(site);
        }
        Ok(sites)
    }
}

impl<'de> DeserializeSeed<'de> for SiteEntry<'_> {
    type Value = ImportEntry;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SiteEntry<'_> {
    type Value = ImportEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a site, {\"slug\": …, \"count\": …}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (doc, i) = (self.doc, self.index);
        let replay = doc.replay;
        let (mut slug, mut name, mut count) = (None::<String>, None, None);
        let (mut base, mut created_at, mut hourly, mut pages) = (None, None, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                SiteField::Slug => once(&mut slug, map.next_value::<String>()?, "slug")?,
                SiteField::Name => once(&mut name, map.next_value::<String>()?, "name")?,
                SiteField::Count => {
                    let n = whole(map.next_value()?, || format!("sites[{i}].count"))?;
                    once(&mut count, n, "count")?;
                }
                SiteField::BaseCount => {
                    let n = whole(map.next_value()?, || format!("sites[{i}].base_count"))?;
                    once(&mut base, n, "base_count")?;
                }
                SiteField::CreatedAt => {
                    let at = map.next_value_seed(Time {
                        field: &|| format!("sites[{i}].created_at"),
                        date: false,
                    })?;
                    once(&mut created_at, at, "created_at")?;
                }
                SiteField::Hourly => {
                    let hours = map.next_value_seed(Hours {
                        keep: replay,
                        site: i,
                        now: doc.now,
                    })?;
                    once(&mut hourly, hours, "hourly")?;
                }
                SiteField::Pages => {
                    let list = map.next_value_seed(Pages {
                        doc,
                        site: slug.as_deref(),
                        index: i,
                    })?;
                    once(&mut pages, list, "pages")?;
                }
            }
        }
        let text = slug.ok_or_else(|| de::Error::missing_field("slug"))?;
        // Parsed here, as the document is read: nothing of an import with
        // a bad slug in it is written.
        let slug =
            Slug::parse(&text).map_err(|e| de::Error::custom(format!("site {text:?}: {e}")))?;
        let count = count.ok_or_else(|| de::Error::missing_field("count"))?;
        let hours = replay.then(|| hourly.unwrap_or_default());
        if let (Some(base), Some(hours)) = (base, &hours) {
            // Exact: no sum of i64 hits that memory can hold overflows i128.
            let sum: i128 = hours.iter().map(|(_, n)| i128::from(*n)).sum();
            if i128::from(base) + sum != i128::from(count) {
                return Err(de::Error::custom(format!(
                    "site {slug:?}: base_count {base} and {sum} hits in its hours are not its count {count}"
                )));
            }
        }
        Ok(ImportEntry {
            name: name.unwrap_or(text),
            slug,
            count,
            hours,
            created_at,
            pages,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Pages<'_> {
    type Value = Vec<PageDump>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Pages<'_> {
    type Value = Vec<PageDump>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of pages, {\"page\": …, \"count\": …, \"daily\": […]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pages = Vec::new();
        while let Some(page) = seq.next_element_seed(PageEntry {
            slug: self.site,
            site: self.index,
            index: pages.len(),
            now: self.doc.now,
        })? {
            let read = self.doc.pages.get() + 1;
            if read > self.doc.max_pages {
                return Err(de::Error::custom(format!(
                    "an import holds at most {} pages",
                    self.doc.max_pages
                )));
            }
            self.doc.pages.set(read);
            pages.push(page);
        }
        pages.shrink_to_fit();
        Ok(pages)
    }
}

impl<'de> DeserializeSeed<'de> for PageEntry<'_> {
    type Value = PageDump;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageEntry<'_> {
    type Value = PageDump;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page, {\"page\": …, \"count\": …, \"daily\": […]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (site, i) = (self.site, self.index);
        let (mut page, mut count, mut daily) = (None, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                PageField::Page => {
                    let name = map.next_value::<String>()?;
                    let parsed = Page::stored(&name).map_err(|e| {
                        let site = match self.slug {
                            Some(slug) => format!("site {slug:?}, "),
                            None => String::new(),
                        };
                        de::Error::custom(format!("{site}page {name:?}: {e}"))
                    })?;
                    once(&mut page, parsed, "page")?;
                }
                PageField::Count => {
                    let n = whole(map.next_value()?, || {
                        format!("sites[{site}].pages[{i}].count")
                    })?;
                    once(&mut count, n, "count")?;
                }
                PageField::Daily => {
                    let days = map.next_value_seed(Days {
                        site,
                        page: i,
                        now: self.now,
                    })?;
                    once(&mut daily, days, "daily")?;
                }
            }
        }
        Ok(PageDump {
            page: page.ok_or_else(|| de::Error::missing_field("page"))?,
            count: count.ok_or_else(|| de::Error::missing_field("count"))?,
            days: daily.unwrap_or_default(),
        })
    }
}

impl<'de> DeserializeSeed<'de> for Days {
    type Value = Vec<(Day, i64)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Days {
    type Value = Vec<(Day, i64)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of days, {\"d\": …, \"hits\": …}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut days = Vec::new();
        while let Some(day) = seq.next_element_seed(DayEntry {
            site: self.site,
            page: self.page,
            index: days.len(),
            now: self.now,
        })? {
            days.push(day);
        }
        days.shrink_to_fit();
        Ok(days)
    }
}

impl<'de> DeserializeSeed<'de> for DayEntry {
    type Value = (Day, i64);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DayEntry {
    type Value = (Day, i64);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a day, {\"d\": …, \"hits\": …}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (site, page, i) = (self.site, self.page, self.index);
        let field = |name: &str| format!("sites[{site}].pages[{page}].daily[{i}].{name}");
        let (mut d, mut hits) = (None, None);
        while let Some(key) = map.next_key()? {
            match key {
                DayField::D => {
                    let t = read_start(&mut map, Step::Day, self.now, &|| field("d"))?;
                    once(&mut d, t / Step::Day.seconds(), "d")?;
                }
                DayField::Hits => {
                    let n = whole(map.next_value()?, || field("hits"))?;
                    once(&mut hits, n, "hits")?;
                }
            }
        }
        let d = d.ok_or_else(|| de::Error::missing_field("d"))?;
        let hits = hits.ok_or_else(|| de::Error::missing_field("hits"))?;
        Ok((d, hits))
    }
}

impl<'de> DeserializeSeed<'de> for Hours {
    type Value = Vec<(i64, i64)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Hours {
    type Value = Vec<(i64, i64)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of hours, {\"t\": …, \"hits\": …}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut hours = Vec::new();
        let mut index = 0;
        while let Some(hour) = seq.next_element_seed(Hour {
            site: self.site,
            index,
            now: self.now,
        })? {
            index += 1;
            if self.keep {
                hours.push(hour);
            }
        }
        // Held until the import is written: no room to spare per site.
        hours.shrink_to_fit();
        Ok(hours)
    }
}

impl<'de> DeserializeSeed<'de> for Hour {
    type Value = (i64, i64);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Hour {
    type Value = (i64, i64);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an hour, {\"t\": …, \"hits\": …}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (site, i) = (self.site, self.index);
        let field = |name: &str| format!("sites[{site}].hourly[{i}].{name}");
        let (mut t, mut hits) = (None, None);
        while let Some(key) = map.next_key()? {
            match key {
                HourField::T => {
                    let at = read_start(&mut map, Step::Hour, self.now, &|| field("t"))?;
                    once(&mut t, at, "t")?;
                }
                HourField::Hits => {
                    let n = whole(map.next_value()?, || field("hits"))?;
                    once(&mut hits, n, "hits")?;
                }
            }
        }
        let t = t.ok_or_else(|| de::Error::missing_field("t"))?;
        let hits = hits.ok_or_else(|| de::Error::missing_field("hits"))?;
        Ok((t, hits))
    }
}

impl<'de> DeserializeSeed<'de> for Time<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_str(self)
    }
}

impl Time<'_> {
    fn what(&self) -> &'static str {
        if self.date {
            "a date such as \"2026-11-23\""
        } else {
            "an RFC 3339 timestamp such as \"2026-11-23T01:00:00Z\""
        }
    }
}

impl Visitor<'_> for Time<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        match parse_instant(s) {
            Some(t) if !self.date || s.len() == 10 => Ok(t),
            _ => Err(E::custom(format!(
                "{}: {s:?} is not {}",
                (self.field)(),
                self.what()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T02:30:00Z
    const NOW: i64 = 1_795_401_000;

    fn parse(doc: &str, replay: bool) -> Result<Vec<ImportEntry>, String> {
        parse_import(doc.as_bytes(), replay, NOW).map_err(|e| e.to_string())
    }

    #[test]
    fn an_export_parses_with_its_hours_when_replayed() {
        let doc = r#"{"exported_at":"2026-11-23T02:00:00Z","sites":[
            {"slug":"blog","name":"My blog","count":1204,"base_count":1200,
             "created_at":"2026-11-20T09:12:00Z",
             "hourly":[{"t":"2026-11-23T01:00:00Z","hits":3},{"hits":1,"t":"2026-11-23T02:00:00Z"}]}]}"#;
        let blog = ImportEntry {
            slug: Slug::parse("blog").unwrap(),
            name: "My blog".into(),
            count: 1204,
            hours: Some(vec![(1_795_395_600, 3), (1_795_399_200, 1)]),
            created_at: Some(1_795_165_920),
            pages: None,
        };
        assert_eq!(parse(doc, true), Ok(vec![blog.clone()]));
        let plain = ImportEntry {
            hours: None,
            ..blog
        };
        assert_eq!(parse(doc, false), Ok(vec![plain]));
        let list = parse(r#"[{"slug":"a","count":1}]"#, true).unwrap();
        assert_eq!(
            (list[0].name.as_str(), &list[0].hours),
            ("a", &Some(vec![]))
        );
    }

    #[test]
    fn pages_are_read_with_their_days_whatever_the_hours() {
        let doc = r#"{"sites":[{"slug":"blog","count":9,"hourly":[],"pages":[
            {"page":"/posts/café","count":5,"daily":[{"d":"2026-11-22","hits":2},{"hits":3,"d":"2026-11-23"}]},
            {"count":1,"page":"(other)"}]},
            {"slug":"docs","count":0,"pages":[]},{"slug":"plain","count":1}]}"#;
        for replay in [false, true] {
            let entries = parse(doc, replay).unwrap();
            let pages: Vec<Option<Vec<PageDump>>> =
                entries.iter().map(|e| e.pages.clone()).collect();
            assert_eq!(
                pages,
                vec![
                    Some(vec![
                        PageDump {
                            page: Page::stored("/posts/café").unwrap(),
                            count: 5,
                            days: vec![(20_779, 2), (20_780, 3)],
                        },
                        PageDump {
                            page: Page::overflow(),
                            count: 1,
                            days: vec![],
                        },
                    ]),
                    Some(vec![]),
                    None,
                ]
            );
        }
        assert_eq!(
            crate::domain::time::format_date(20_780 * 86_400),
            "2026-11-23"
        );
    }

    #[test]
    fn bad_pages_are_refused_naming_their_site() {
        for (doc, error) in [
            (
                r#"[{"slug":"blog","count":1,"pages":[{"page":"posts","count":1}]}]"#,
                "site \"blog\", page \"posts\": a page is a path that starts with / at line 1 column 51",
            ),
            (
                r#"[{"pages":[{"page":"/a\u0007","count":1}],"slug":"blog","count":1}]"#,
                "page \"/a\\u{7}\": a page may not contain control characters at line 1 column 30",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"page":"/b"}]}]"#,
                "duplicate field `page` at line 1 column 67",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"hits":1}]}]"#,
                "unknown field `hits`, expected one of `page`, `count`, `daily` at line 1 column 62",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"count":1}]}]"#,
                "missing field `page` at line 1 column 43",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[{"d":"2026-11-23T00:00:00Z","hits":1}]}]}]"#,
                "sites[0].pages[0].daily[0].d: \"2026-11-23T00:00:00Z\" is not a date such as \"2026-11-23\" at line 1 column 91",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[{"d":"2026-02-30","hits":1}]}]}]"#,
                "sites[0].pages[0].daily[0].d: \"2026-02-30\" is not a date such as \"2026-11-23\" at line 1 column 81",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":[{"page":"/a","count":1,"daily":[["2026-11-23",1]]}]}]"#,
                "invalid type: sequence, expected a day, {\"d\": …, \"hits\": …} at line 1 column 65",
            ),
            (
                r#"[{"slug":"b","count":1,"pages":{"page":"/a"}}]"#,
                "invalid type: map, expected a list of pages, {\"page\": …, \"count\": …, \"daily\": […]} at line 1 column 32",
            ),
        ] {
            assert_eq!(parse(doc, true), Err(error.to_owned()), "{doc}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_their_field_replayed_or_not() {
        let hour = |t: &str| {
            format!(
                r#"[{{"slug":"a","count":1}},{{"slug":"b","count":1,"hourly":[{{"t":"2026-11-23T01:00:00Z","hits":1}},{{"t":"{t}","hits":1}}]}}]"#
            )
        };
        let day = |d: &str| {
            format!(
                r#"[{{"slug":"b","count":1,"pages":[{{"page":"/a","count":1}},{{"page":"/b","count":1,"daily":[{{"d":"{d}","hits":1}}]}}]}}]"#
            )
        };
        for (doc, error) in [
            (
                r#"[{"slug":"a","count":-1}]"#.to_owned(),
                "sites[0].count: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 24",
            ),
            (
                r#"[{"slug":"a","count":9007199254740992}]"#.to_owned(),
                "sites[0].count: 9007199254740992 is not a whole number from 0 to 9007199254740991 at line 1 column 38",
            ),
            (
                r#"{"sites":[{"slug":"a","count":1,"base_count":-2}]}"#.to_owned(),
                "sites[0].base_count: -2 is not a whole number from 0 to 9007199254740991 at line 1 column 48",
            ),
            (
                r#"[{"slug":"a","count":1,"hourly":[{"hits":-1,"t":"2026-11-23T01:00:00Z"}]}]"#
                    .to_owned(),
                "sites[0].hourly[0].hits: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 44",
            ),
            (
                day("2026-11-23").replace(r#""hits":1}]"#, r#""hits":-1}]"#),
                "sites[0].pages[1].daily[0].hits: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 116",
            ),
            (
                r#"[{"slug":"a","count":1,"pages":[{"page":"/a","count":-1}]}]"#.to_owned(),
                "sites[0].pages[0].count: -1 is not a whole number from 0 to 9007199254740991 at line 1 column 56",
            ),
            (
                r#"{"sites":[],"exported_at":"now"}"#.to_owned(),
                "exported_at: \"now\" is not an RFC 3339 timestamp such as \"2026-11-23T01:00:00Z\" at line 1 column 31",
            ),
            (
                hour("2026-11-23T03:00:00Z"),
                "sites[1].hourly[1].t: 2026-11-23T03:00:00Z is after the current hour at line 1 column 122",
            ),
            (
                hour("2026-11-23T02:00:00+00:30"),
                "sites[1].hourly[1].t: 2026-11-23T01:30:00Z is not the start of an hour at line 1 column 127",
            ),
            (
                hour("9999-12-31T23:00:00Z"),
                "sites[1].hourly[1].t: 9999-12-31T23:00:00Z is past the last hour a series can show, 9999-12-31T22:00:00Z at line 1 column 122",
            ),
            (
                day("2026-11-24"),
                "sites[0].pages[1].daily[0].d: 2026-11-24 is after the current day at line 1 column 106",
            ),
        ] {
            for replay in [false, true] {
                assert_eq!(parse(&doc, replay), Err(error.to_owned()), "{doc}");
            }
        }
        // The current hour and day, and an export's own timestamp, are taken.
        assert!(parse(&hour("2026-11-23T02:00:00Z"), true).is_ok());
        assert!(parse(&day("2026-11-23"), true).is_ok());
        assert!(parse(r#"{"exported_at":"2026-11-23T02:00:00Z","sites":[]}"#, true).is_ok());
    }

    #[test]
    fn the_openapi_document_bounds_what_an_import_takes() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::http::openapi::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("ImportSite", "count"),
            ("SiteExport", "count"),
            ("SiteExport", "base_count"),
            ("HourExport", "hits"),
            ("PageExport", "count"),
            ("DayExport", "hits"),
        ] {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(
                (&property["minimum"], &property["maximum"]),
                (&serde_json::json!(0), &serde_json::json!(MAX_COUNT)),
                "{schema}.{field}"
            );
        }
        for (schema, field, format) in [
            ("ExportBody", "exported_at", "date-time"),
            ("SiteExport", "created_at", "date-time"),
            ("HourExport", "t", "date-time"),
            ("DayExport", "d", "date"),
        ] {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(property["format"], format, "{schema}.{field}");
        }
    }

    #[test]
    fn a_document_holds_a_bounded_number_of_pages_over_all_its_sites() {
        let doc = |pages: [usize; 2]| {
            let site = |slug: &str, n: usize| {
                let list: Vec<String> = (0..n)
                    .map(|i| format!(r#"{{"page":"/{i}","count":0}}"#))
                    .collect();
                format!(
                    r#"{{"slug":"{slug}","count":0,"pages":[{}]}}"#,
                    list.join(",")
                )
            };
            format!("[{},{}]", site("a", pages[0]), site("b", pages[1]))
        };
        let read = |d: &str| parse_bounded(d.as_bytes(), false, NOW, 3).map_err(|e| e.to_string());
        assert!(read(&doc([2, 1])).is_ok());
        let error = read(&doc([2, 2])).unwrap_err();
        assert!(
            error.starts_with("an import holds at most 3 pages at line 1 column"),
            "{error}"
        );
        assert!(read(&doc([4, 0])).is_err());
    }

    #[test]
    fn repeated_keys_and_arrays_for_objects_are_refused_where_they_stand() {
        for (doc, error) in [
            (
                r#"{"sites":[],"sites":[]}"#,
                "duplicate field `sites` at line 1 column 23",
            ),
            (
                r#"[{"slug":"a","count":1,"slug":"b"}]"#,
                "duplicate field `slug` at line 1 column 34",
            ),
            (
                r#"[{"slug":"a","count":1,"hourly":[{"t":"2026-11-23T01:00:00Z","hits":1,"hits":2}]}]"#,
                "duplicate field `hits` at line 1 column 79",
            ),
            (
                r#"[["a",1]]"#,
                "invalid type: sequence, expected a site, {\"slug\": …, \"count\": …} at line 1 column 2",
            ),
            (
                r#"{"sites":{"slug":"a"}}"#,
                "invalid type: map, expected a list of sites at line 1 column 10",
            ),
            (
                r#"[{"slug":"a","count":1,"hourly":[[1,2]]}]"#,
                "invalid type: sequence, expected an hour, {\"t\": …, \"hits\": …} at line 1 column 34",
            ),
            (
                "42",
                "invalid type: integer `42`, expected a list of {\"slug\", \"count\"} or an export's {\"sites\": [...]} at line 1 column 2",
            ),
        ] {
            assert_eq!(parse(doc, true), Err(error.to_owned()), "{doc}");
        }
    }
}
