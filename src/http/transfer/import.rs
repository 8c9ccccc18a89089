//! The import document's reader: a list of sites or an export, read as
//! it streams in and checked value by value.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::counting::series::Step;
use crate::domain::breakdown::{self, Dimension};
use crate::domain::time::{Day, parse_instant};
use crate::domain::{BreakdownDump, ImportEntry, MAX_COUNT, Page, PageDump, Slug};
use crate::http::extract::strict;

/// Pages one import document may hold, over all its sites: the parsed
/// pages are held until the import is written, at several times the bytes
/// of their JSON, so their number is bounded well below what the largest
/// document could hold.
pub const MAX_IMPORT_PAGES: usize = 1_000_000;

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
    let pages = Cell::new(0);
    let document = Document {
        replay,
        now,
        pages: &pages,
        max_pages,
    };
    strict::from_reader(reader, document)
}

// The import document is read through the strict layer, which refuses a
// key given twice in an object and an array in place of an object, as it
// does for every JSON body. Its visitors are hand-written rather than
// derived: each carries where it stands (`sites[1].hourly[0]`) to name a
// bad value in its error, the pages read so far to bound them, and says
// in its own words what it expects; and the document is either a list or
// an object, told apart as it streams in rather than read whole into a
// `Value` first.

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
    Breakdowns,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BreakdownField {
    D,
    Dimension,
    Value,
    Page,
    Referrer,
    Hits,
}

/// The `breakdowns` of `sites[site]`: kept only when hours are replayed.
/// Each row counts against the document's bound, as a page does.
struct Breakdowns<'a> {
    doc: Document<'a>,
    keep: bool,
    site: usize,
}

/// `sites[site].breakdowns[index]`, `{"d": "<date>", "dimension": …,
/// "value": …, "page": …, "referrer": …, "hits": n}` (`page` only for a
/// page's row, `referrer` only for a referrer's).
struct BreakdownEntry {
    site: usize,
    index: usize,
    now: i64,
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
        let mut sites = None;
        while let Some(field) = map.next_key()? {
            match field {
                DocumentField::Sites => sites = Some(map.next_value_seed(Sites(self))?),
                DocumentField::ExportedAt => {
                    map.next_value_seed(Time {
                        field: &|| "exported_at".into(),
                        date: false,
                    })?;
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
        let mut breakdowns: Option<Vec<BreakdownDump>> = None;
        while let Some(field) = map.next_key()? {
            match field {
                SiteField::Slug => slug = Some(map.next_value::<String>()?),
                SiteField::Name => name = Some(map.next_value()?),
                SiteField::Count => {
                    count = Some(whole(map.next_value()?, || format!("sites[{i}].count"))?);
                }
                SiteField::BaseCount => {
                    base = Some(whole(map.next_value()?, || {
                        format!("sites[{i}].base_count")
                    })?);
                }
                SiteField::CreatedAt => {
                    created_at = Some(map.next_value_seed(Time {
                        field: &|| format!("sites[{i}].created_at"),
                        date: false,
                    })?);
                }
                SiteField::Hourly => {
                    hourly = Some(map.next_value_seed(Hours {
                        keep: replay,
                        site: i,
                        now: doc.now,
                    })?);
                }
                SiteField::Pages => {
                    pages = Some(map.next_value_seed(Pages {
                        doc,
                        site: slug.as_deref(),
                        index: i,
                    })?);
                }
                SiteField::Breakdowns => {
                    breakdowns = Some(map.next_value_seed(Breakdowns {
                        doc,
                        keep: replay,
                        site: i,
                    })?);
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
        let breakdowns = breakdowns.unwrap_or_default();
        checked_breakdowns(&slug, &breakdowns, pages.as_deref())?;
        Ok(ImportEntry {
            name: name.unwrap_or(text),
            slug,
            count,
            hours,
            created_at,
            pages,
            breakdowns,
        })
    }
}

/// A site's breakdown rows hold each (page, referrer, day, dimension,
/// value) once, and a page's rows name a page the site's entry carries.
fn checked_breakdowns<E: de::Error>(
    slug: &Slug,
    rows: &[BreakdownDump],
    pages: Option<&[PageDump]>,
) -> Result<(), E> {
    let mut seen = std::collections::HashSet::new();
    let named: std::collections::HashSet<&str> = pages
        .unwrap_or_default()
        .iter()
        .map(|p| p.page.as_str())
        .collect();
    for row in rows {
        let page = row.page.as_ref().map(Page::as_str);
        if let Some(page) = page.filter(|p| !named.contains(p)) {
            return Err(E::custom(format!(
                "site {slug:?}: a breakdown names page {page:?}, which is not in its pages"
            )));
        }
        let referrer = row.referrer.as_deref();
        if !seen.insert((page, referrer, row.day, row.dimension, row.value.as_str())) {
            let of = match (page, referrer) {
                (Some(page), _) => format!("page {page:?}"),
                (None, Some(from)) => format!("referrer {from:?}"),
                (None, None) => "the site".into(),
            };
            return Err(E::custom(format!(
                "site {slug:?}: the breakdown row {} {:?} of {of} on {} is given twice",
                row.dimension,
                row.value,
                crate::domain::time::format_date(row.day * Step::Day.seconds())
            )));
        }
    }
    Ok(())
}

impl<'de> DeserializeSeed<'de> for Breakdowns<'_> {
    type Value = Vec<BreakdownDump>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Breakdowns<'_> {
    type Value = Vec<BreakdownDump>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a list of breakdown rows, {\"d\": …, \"dimension\": …, \"value\": …, \"hits\": …}",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        let mut index = 0;
        while let Some(row) = seq.next_element_seed(BreakdownEntry {
            site: self.site,
            index,
            now: self.doc.now,
        })? {
            index += 1;
            let read = self.doc.pages.get() + 1;
            if read > self.doc.max_pages {
                return Err(de::Error::custom(format!(
                    "an import holds at most {} pages and breakdown rows",
                    self.doc.max_pages
                )));
            }
            self.doc.pages.set(read);
            if self.keep {
                rows.push(row);
            }
        }
        rows.shrink_to_fit();
        Ok(rows)
    }
}

impl<'de> DeserializeSeed<'de> for BreakdownEntry {
    type Value = BreakdownDump;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BreakdownEntry {
    type Value = BreakdownDump;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a breakdown row, {\"d\": …, \"dimension\": …, \"value\": …, \"hits\": …}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (site, i) = (self.site, self.index);
        let field = |name: &str| format!("sites[{site}].breakdowns[{i}].{name}");
        let (mut d, mut dimension, mut value, mut page, mut hits) = (None, None, None, None, None);
        let mut referrer = None;
        while let Some(key) = map.next_key()? {
            match key {
                BreakdownField::D => {
                    let t = read_start(&mut map, Step::Day, self.now, &|| field("d"))?;
                    d = Some(t / Step::Day.seconds());
                }
                BreakdownField::Dimension => {
                    let name = map.next_value::<String>()?;
                    dimension = Some(Dimension::parse(&name).ok_or_else(|| {
                        de::Error::custom(format!(
                            "{}: no dimension {name:?}: one of {}",
                            field("dimension"),
                            Dimension::ALL.map(Dimension::name).join(", ")
                        ))
                    })?);
                }
                BreakdownField::Value => {
                    let raw = map.next_value::<String>()?;
                    // A value as a breakdown keeps it, and no other.
                    if breakdown::value(&raw).as_deref() != Some(raw.as_str()) {
                        return Err(de::Error::custom(format!(
                            "{}: {raw:?} is not a value a breakdown keeps (1 to {} characters, \
                             trimmed, no control or invisible character)",
                            field("value"),
                            breakdown::MAX_VALUE_LEN
                        )));
                    }
                    value = Some(raw);
                }
                BreakdownField::Page => {
                    let name = map.next_value::<String>()?;
                    page = Some(Page::stored(&name).map_err(|e| {
                        de::Error::custom(format!("{}: {name:?}: {e}", field("page")))
                    })?);
                }
                BreakdownField::Referrer => {
                    let raw = map.next_value::<String>()?;
                    // A referrer's value as the breakdowns keep it, and not
                    // `(none)`: the site's own rows count those.
                    if breakdown::value(&raw).as_deref() != Some(raw.as_str())
                        || raw == breakdown::NONE
                    {
                        return Err(de::Error::custom(format!(
                            "{}: {raw:?} is not a referrer a breakdown keeps (a host or \
                             \"(other)\", 1 to {} characters, not \"(none)\")",
                            field("referrer"),
                            breakdown::MAX_VALUE_LEN
                        )));
                    }
                    referrer = Some(raw);
                }
                BreakdownField::Hits => {
                    hits = Some(whole(map.next_value()?, || field("hits"))?);
                }
            }
        }
        let dimension = dimension.ok_or_else(|| de::Error::missing_field("dimension"))?;
        if referrer.is_some() && page.is_some() {
            return Err(de::Error::custom(format!(
                "{}: a row is a page's or a referrer's, not both",
                field("referrer")
            )));
        }
        if referrer.is_some() && dimension == Dimension::Referrer {
            return Err(de::Error::custom(format!(
                "{}: a referrer's row counts another dimension than referrer",
                field("referrer")
            )));
        }
        Ok(BreakdownDump {
            day: d.ok_or_else(|| de::Error::missing_field("d"))?,
            dimension,
            value: value.ok_or_else(|| de::Error::missing_field("value"))?,
            page,
            referrer,
            hits: hits.ok_or_else(|| de::Error::missing_field("hits"))?,
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
                    page = Some(parsed);
                }
                PageField::Count => {
                    count = Some(whole(map.next_value()?, || {
                        format!("sites[{site}].pages[{i}].count")
                    })?);
                }
                PageField::Daily => {
                    daily = Some(map.next_value_seed(Days {
                        site,
                        page: i,
                        now: self.now,
                    })?);
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
                    d = Some(t / Step::Day.seconds());
                }
                DayField::Hits => {
                    hits = Some(whole(map.next_value()?, || field("hits"))?);
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
                    t = Some(read_start(&mut map, Step::Hour, self.now, &|| field("t"))?);
                }
                HourField::Hits => {
                    hits = Some(whole(map.next_value()?, || field("hits"))?);
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
mod tests;
