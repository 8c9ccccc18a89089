//! Time series: steps, ranges and UTC calendar arithmetic.
//!
//! The store keeps hits per UTC hour. A series sums them per hour or per
//! day over a range and fills the hours or days without hits with zeros.
//! Instants are unix seconds here ([`crate::domain::time`]).

use std::time::SystemTime;

use super::{CountError, Counter};
use crate::domain::time::{END_OF_TIME, at, format_date, format_timestamp, unix};
use crate::domain::{
    ImportEntry, Imported, MAX_COUNT, Page, PageDump, Site, SiteDump, Slug, Versioned,
    validate_count, validate_name,
};
use crate::store::StoreError;

/// Most points one series may hold, so one request cannot ask for millions.
pub const MAX_POINTS: i64 = 10_000;

/// An import is written in batches of at most this many sites or rows
/// (hours, pages and page days; a site's are never split), one transaction
/// each, so that each batch fits in the store timeout and hits on other
/// sites wait for no more than one batch.
const IMPORT_BATCH_SITES: usize = 500;
const IMPORT_BATCH_ROWS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
}

impl Step {
    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "hour" => Some(Step::Hour),
            "day" => Some(Step::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Step::Hour => 3600,
            Step::Day => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Hour => "hour",
            Step::Day => "day",
        }
    }

    /// A point's time as the API writes it: a timestamp per hour, a date
    /// per day.
    pub fn format(self, unix: i64) -> String {
        match self {
            Step::Hour => format_timestamp(unix),
            Step::Day => format_date(unix),
        }
    }

    /// The latest end a range of this step may have: the start of the last
    /// step that begins in 9999, since the end is written too and rounding
    /// up could otherwise make it year 10000. No range holds the step that
    /// starts there.
    pub fn last_end(self) -> i64 {
        floor(END_OF_TIME - 1, self.seconds())
    }

    /// Whether an hour or day that starts at `t` may be stored, `now`
    /// being the current time: it starts a step, no earlier than 1970,
    /// within what a range can hold (before [`Step::last_end`]) and no
    /// later than the step that holds `now`. Else, why not.
    pub fn check_start(self, t: i64, now: i64) -> Result<(), String> {
        let (s, name) = (self.seconds(), self.name());
        let one = match self {
            Step::Hour => "an hour",
            Step::Day => "a day",
        };
        if t < 0 {
            return Err(format!("{one} starts in 1970 at the earliest"));
        }
        if t % s != 0 {
            return Err(format!("{} is not the start of {one}", self.format(t)));
        }
        let last = self.last_end();
        if t >= last {
            return Err(format!(
                "{} is past the last {name} a series can show, {}",
                self.format(t),
                self.format(last - s)
            ));
        }
        if t > floor(now, s) {
            return Err(format!("{} is after the current {name}", self.format(t)));
        }
        Ok(())
    }
}

/// A half-open range `[from, to)` of whole steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub step: Step,
    pub from: i64,
    pub to: i64,
}

impl Range {
    /// `from` rounded down and `to` rounded up to whole steps, so every point
    /// covers a whole hour or day. A missing end makes a range of
    /// `default_points` steps that ends with the step holding `now`.
    pub fn new(
        step: Step,
        from: Option<i64>,
        to: Option<i64>,
        now: i64,
        default_points: i64,
    ) -> Result<Range, CountError> {
        let s = step.seconds();
        let span = default_points * s;
        let to = match (from, to) {
            (_, Some(to)) => ceil(to, s),
            (Some(from), None) => ceil(now + 1, s).max(ceil(from + 1, s)),
            (None, None) => ceil(now + 1, s),
        };
        let last = step.last_end();
        if to > last {
            return Err(CountError::InvalidInput(format!(
                "the range must end by {} (a later end cannot be written as an RFC 3339 \
                 time): give an earlier 'to'",
                step.format(last)
            )));
        }
        let from = match from {
            Some(from) => floor(from, s),
            None => (to - span).max(0),
        };
        if from >= to {
            return Err(CountError::InvalidInput(
                "'from' must be before 'to'".into(),
            ));
        }
        let range = Range { step, from, to };
        if range.len() > MAX_POINTS {
            return Err(CountError::InvalidInput(format!(
                "the range holds {} points of one {}; at most {MAX_POINTS} are returned: \
                 narrow it or use a longer step",
                range.len(),
                step.name()
            )));
        }
        Ok(range)
    }

    /// The `points` steps that end with the one holding `now`.
    pub fn last(step: Step, points: i64, now: i64) -> Range {
        let to = ceil(now + 1, step.seconds());
        Range {
            step,
            from: to - points * step.seconds(),
            to,
        }
    }

    /// The number of points.
    pub fn len(&self) -> i64 {
        (self.to - self.from) / self.step.seconds()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn from_time(&self) -> SystemTime {
        at(self.from)
    }

    pub fn to_time(&self) -> SystemTime {
        at(self.to)
    }
}

fn floor(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

fn ceil(t: i64, step: i64) -> i64 {
    floor(t + step - 1, step)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The start of the hour or day, unix seconds.
    pub t: i64,
    pub hits: i64,
}

/// A site's hits over a range.
#[derive(Debug, Clone)]
pub struct Series {
    pub site: Site,
    pub range: Range,
    /// Hits before the range, including those in no bucket (imported and
    /// folded by retention): `before + sum(points)` is the count at `to`.
    pub before: i64,
    pub points: Vec<Point>,
}

impl Series {
    /// The count at the end of the range.
    pub fn total(&self) -> i64 {
        self.before + self.points.iter().map(|p| p.hits).sum::<i64>()
    }
}

/// Sums hourly buckets into the range's steps, with zeros where no bucket
/// falls. Buckets outside the range are ignored.
pub fn fill(range: &Range, buckets: &[(i64, i64)]) -> Vec<Point> {
    let step = range.step.seconds();
    let mut points: Vec<Point> = (0..range.len())
        .map(|i| Point {
            t: range.from + i * step,
            hits: 0,
        })
        .collect();
    for &(hour, hits) in buckets {
        if (range.from..range.to).contains(&hour) {
            let i = ((hour - range.from) / step) as usize;
            if let Some(point) = points.get_mut(i) {
                point.hits += hits;
            }
        }
    }
    points
}

impl Counter {
    /// A site's series over `range`: one store query.
    pub async fn series(&self, slug: &Slug, range: Range) -> Result<Series, CountError> {
        self.check_ready()?;
        let data = self
            .store
            .series(slug, range.from_time(), range.to_time())
            .await?
            .ok_or(CountError::NotFound)?;
        let buckets: Vec<(i64, i64)> = data
            .buckets
            .iter()
            .map(|&(hour, hits)| (unix(hour), hits))
            .collect();
        Ok(Series {
            site: data.site,
            range,
            before: data.before,
            points: fill(&range, &buckets),
        })
    }

    /// One page's hits per day over a range of whole days.
    pub async fn page_series(
        &self,
        slug: &Slug,
        page: &Page,
        range: Range,
    ) -> Result<Series, CountError> {
        if range.step != Step::Day {
            return Err(CountError::InvalidInput(
                "a page's hits are kept per day: ask for step=day".into(),
            ));
        }
        self.check_ready()?;
        let day = Step::Day.seconds();
        let data = self
            .store
            .page_series(slug, page, range.from / day, range.to / day)
            .await?
            .ok_or(CountError::NotFound)?;
        let buckets: Vec<(i64, i64)> = data.days.iter().map(|&(d, hits)| (d * day, hits)).collect();
        Ok(Series {
            site: data.site,
            range,
            before: data.before,
            points: fill(&range, &buckets),
        })
    }

    /// Every site with its base count and buckets.
    pub async fn export(&self) -> Result<Vec<SiteDump>, CountError> {
        self.check_ready()?;
        Ok(self.store.dump().await?)
    }

    /// Sets each site's count (or replays its hours), creating missing
    /// sites. Every entry is checked first, so bad input writes nothing;
    /// then an entry's pages past the page limit are folded into its
    /// overflow page ([`fold_past_limit`]), and batches are committed in
    /// order. If the store fails part way, the batches before are kept and
    /// the error says so: an import sets counts rather than adding to them,
    /// so running it again is safe.
    pub async fn import(&self, mut entries: Vec<ImportEntry>) -> Result<Vec<Imported>, CountError> {
        if entries.is_empty() {
            return Err(CountError::InvalidInput(
                "an import holds at least one site".into(),
            ));
        }
        let now = unix(SystemTime::now());
        let mut seen = std::collections::HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            let at = |e: CountError| CountError::InvalidInput(format!("site {}: {e}", i + 1));
            validate_name(&e.name).map_err(|e| at(e.into()))?;
            validate_count(e.count).map_err(|e| at(e.into()))?;
            if let Some(hours) = &e.hours {
                validate_hours(hours, e.count, now).map_err(at)?;
            }
            if let Some(pages) = &e.pages {
                validate_pages(&e.slug, pages, e.count, now)?;
            }
            if !seen.insert(e.slug.as_str()) {
                return Err(CountError::InvalidInput(format!(
                    "site {}: the slug {:?} appears more than once",
                    i + 1,
                    e.slug
                )));
            }
        }
        for pages in entries.iter_mut().filter_map(|e| e.pages.as_mut()) {
            fold_past_limit(pages, self.page_limit);
        }
        self.check_ready()?;
        let mut ordered = Vec::with_capacity(entries.len());
        for batch in import_batches(&entries) {
            let done = match self.store.import(batch).await {
                Ok(done) => done,
                Err(e) if ordered.is_empty() => return Err(e.into()),
                Err(e) => return Err(partial_import(e, ordered.len(), entries.len())),
            };
            let mut by_slug: std::collections::HashMap<Slug, Imported> =
                done.into_iter().map(|d| (d.slug.clone(), d)).collect();
            for e in batch {
                // A created site may reuse a slug whose old id is remembered.
                self.forget(&e.slug);
                if let Some(done) = by_slug.remove(&e.slug) {
                    // Each set count is a new generation: it outranks the cache.
                    self.cache.publish(
                        done.id,
                        Versioned {
                            generation: done.generation,
                            count: done.count,
                        },
                    );
                    ordered.push(done);
                }
            }
        }
        Ok(ordered)
    }

    /// Folds buckets of hours before `before` into base counts.
    pub async fn prune_series(&self, before: SystemTime) -> Result<u64, CountError> {
        self.check_ready()?;
        Ok(self.store.prune_series(before).await?)
    }
}

/// Hours to replay: each one that may be stored at `now`
/// ([`Step::check_start`]), strictly ascending, each with hits, adding up
/// to at most the count (the rest is the base count).
fn validate_hours(hours: &[(i64, i64)], count: i64, now: i64) -> Result<(), CountError> {
    let bad = |why: &str| Err(CountError::InvalidInput(format!("hourly: {why}")));
    let mut sum: i64 = 0;
    let mut last = None;
    for &(t, hits) in hours {
        if let Err(why) = Step::Hour.check_start(t, now) {
            return bad(&why);
        }
        if last.is_some_and(|l| l >= t) {
            return bad("hours are ascending, each at most once");
        }
        if !(1..=MAX_COUNT).contains(&hits) {
            return bad(&format!("hits is a whole number from 1 to {}", MAX_COUNT));
        }
        last = Some(t);
        sum = sum.saturating_add(hits);
    }
    if sum > count {
        return bad("the hours hold more hits than count");
    }
    Ok(())
}

/// A site's pages to import: each named once, each count from 0 to
/// [`MAX_COUNT`], each page's days ones that may be stored at `now`
/// ([`Step::check_start`]), ascending, each at most once and with hits,
/// adding up to at most the page's count; and the pages' counts adding up
/// to at most the site's `count` (every hit on a page is a hit on its
/// site). The message names the site and the page.
fn validate_pages(slug: &Slug, pages: &[PageDump], count: i64, now: i64) -> Result<(), CountError> {
    let mut names = std::collections::HashSet::with_capacity(pages.len());
    let mut total: i64 = 0;
    for p in pages {
        let bad = |why: String| {
            Err(CountError::InvalidInput(format!(
                "site {slug:?}, page {:?}: {why}",
                p.page.as_str()
            )))
        };
        if !names.insert(p.page.as_str()) {
            return bad("the page appears more than once".into());
        }
        if !(0..=MAX_COUNT).contains(&p.count) {
            return bad(format!("count is a whole number from 0 to {MAX_COUNT}"));
        }
        let (mut sum, mut last): (i64, Option<i64>) = (0, None);
        for &(day, hits) in &p.days {
            let start = day.saturating_mul(Step::Day.seconds());
            if let Err(why) = Step::Day.check_start(start, now) {
                return bad(format!("d: {why}"));
            }
            if last.is_some_and(|l| l >= day) {
                return bad("days are ascending, each at most once".into());
            }
            if !(1..=MAX_COUNT).contains(&hits) {
                return bad(format!("hits is a whole number from 1 to {MAX_COUNT}"));
            }
            last = Some(day);
            sum = sum.saturating_add(hits);
        }
        if sum > p.count {
            return bad(format!(
                "its days hold {sum} hits, more than its count {}",
                p.count
            ));
        }
        total = total.saturating_add(p.count);
    }
    if total > count {
        return Err(CountError::InvalidInput(format!(
            "site {slug:?}: its pages' counts add up to {total}, more than its count {count}"
        )));
    }
    Ok(())
}

/// Keeps at most `limit` of a site's pages besides its overflow page: those
/// with the most hits, by name among equal counts. The others are counted
/// on the overflow page `(other)`, their counts and their hits day by day,
/// as counting counts the hits on a page that finds the site full; a
/// document holds no order in which its pages came, so the largest stay.
/// The pages' total count and each day's hits are unchanged.
fn fold_past_limit(pages: &mut Vec<PageDump>, limit: i64) {
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut named: Vec<usize> = (0..pages.len())
        .filter(|&i| !pages[i].page.is_overflow())
        .collect();
    if named.len() <= limit {
        return;
    }
    named.sort_by(|&a, &b| {
        let (a, b) = (&pages[a], &pages[b]);
        b.count.cmp(&a.count).then_with(|| a.page.cmp(&b.page))
    });
    let mut folded = vec![false; pages.len()];
    for &i in &named[limit..] {
        folded[i] = true;
    }
    let mut other = PageDump {
        page: Page::overflow(),
        count: 0,
        days: Vec::new(),
    };
    let mut days = std::collections::BTreeMap::new();
    let mut kept = Vec::with_capacity(limit + 1);
    for (page, fold) in std::mem::take(pages).into_iter().zip(folded) {
        if fold || page.page.is_overflow() {
            other.count += page.count;
            for (day, hits) in page.days {
                *days.entry(day).or_insert(0) += hits;
            }
        } else {
            kept.push(page);
        }
    }
    other.days = days.into_iter().collect();
    kept.push(other);
    *pages = kept;
}

/// The rows an entry writes beside its site's: hours, pages, page days.
fn import_rows(e: &ImportEntry) -> usize {
    let hours = e.hours.as_ref().map_or(0, Vec::len);
    let pages = e
        .pages
        .iter()
        .flatten()
        .map(|p| 1 + p.days.len())
        .sum::<usize>();
    hours + pages
}

/// Consecutive runs of entries, each within the batch bounds.
fn import_batches(entries: &[ImportEntry]) -> Vec<&[ImportEntry]> {
    let mut batches = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, e) in entries.iter().enumerate() {
        let n = import_rows(e);
        if i > start && (i - start == IMPORT_BATCH_SITES || rows + n > IMPORT_BATCH_ROWS) {
            batches.push(&entries[start..i]);
            (start, rows) = (i, 0);
        }
        rows += n;
    }
    batches.push(&entries[start..]);
    batches
}

/// A store failure after some batches were committed: say what was kept.
fn partial_import(e: StoreError, done: usize, total: usize) -> CountError {
    let why = match e {
        StoreError::Unavailable(why)
        | StoreError::Refused(why)
        | StoreError::OutcomeUnknown(why) => why,
        StoreError::Conflict => "a site in the import was created meanwhile".into(),
        StoreError::Internal(e) => return CountError::Internal(e),
    };
    CountError::ImportIncomplete { done, total, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86_400;
    /// 2026-11-23T02:30:00Z
    const NOW: i64 = 1_795_401_000;

    fn entry(i: usize, hours: usize) -> ImportEntry {
        ImportEntry {
            slug: Slug::parse(&format!("s{i}")).unwrap(),
            name: String::new(),
            count: hours as i64,
            hours: Some((0..hours as i64).map(|h| (h * H, 1)).collect()),
            created_at: None,
            pages: None,
        }
    }

    #[test]
    fn imports_are_cut_at_500_sites_or_20_000_hours_never_inside_a_site() {
        let sizes = |entries: &[ImportEntry]| -> Vec<usize> {
            import_batches(entries).iter().map(|b| b.len()).collect()
        };
        let many: Vec<ImportEntry> = (0..1001).map(|i| entry(i, 0)).collect();
        assert_eq!(sizes(&many), vec![500, 500, 1]);
        let hourly: Vec<ImportEntry> = (0..5).map(|i| entry(i, 9600)).collect();
        assert_eq!(sizes(&hourly), vec![2, 2, 1]);
        // A site with more hours than a batch holds is a batch of its own.
        let big = vec![entry(0, 10), entry(1, 30_000), entry(2, 10)];
        assert_eq!(sizes(&big), vec![1, 1, 1]);
        assert_eq!(sizes(&[entry(0, 20_000)]), vec![1]);
    }

    fn with_pages(i: usize, pages: &[(usize, usize)]) -> ImportEntry {
        ImportEntry {
            pages: Some(
                pages
                    .iter()
                    .map(|&(n, days)| PageDump {
                        page: Page::stored(&format!("/p{n}")).unwrap(),
                        count: days as i64,
                        days: (0..days as i64).map(|d| (d, 1)).collect(),
                    })
                    .collect(),
            ),
            ..entry(i, 0)
        }
    }

    #[test]
    fn pages_and_their_days_count_towards_a_batch() {
        let sizes = |entries: &[ImportEntry]| -> Vec<usize> {
            import_batches(entries).iter().map(|b| b.len()).collect()
        };
        // 1 page row + 9 999 day rows: two sites a batch.
        let paged: Vec<ImportEntry> = (0..5).map(|i| with_pages(i, &[(0, 9_999)])).collect();
        assert_eq!(sizes(&paged), vec![2, 2, 1]);
        // 10 000 pages with no days are 10 000 rows.
        let many: Vec<(usize, usize)> = (0..10_000).map(|n| (n, 0)).collect();
        let wide: Vec<ImportEntry> = (0..3).map(|i| with_pages(i, &many)).collect();
        assert_eq!(sizes(&wide), vec![2, 1]);
        // Hours and page rows add up.
        let mixed = vec![
            ImportEntry {
                pages: with_pages(0, &[(0, 9_999)]).pages,
                ..entry(0, 10_000)
            },
            with_pages(1, &[(0, 0)]),
        ];
        assert_eq!(sizes(&mixed), vec![1, 1]);
        assert_eq!(import_rows(&mixed[0]), 20_000);
    }

    #[test]
    fn imported_pages_are_named_once_and_fit_their_counts() {
        let slug = Slug::parse("blog").unwrap();
        let page = |name: &str, count: i64, days: &[(i64, i64)]| PageDump {
            page: Page::stored(name).unwrap(),
            count,
            days: days.to_vec(),
        };
        let check = |pages: &[PageDump], count: i64| {
            validate_pages(&slug, pages, count, NOW).map_err(|e| e.to_string())
        };
        assert_eq!(check(&[], 0), Ok(()));
        let good = [
            page("/a", 5, &[(1, 2), (3, 3)]),
            page("(other)", 2, &[]),
            page("/b", 0, &[]),
        ];
        assert_eq!(check(&good, 7), Ok(()));
        assert_eq!(
            check(&good, 6),
            Err("site \"blog\": its pages' counts add up to 7, more than its count 6".into())
        );
        let want = |page: &str, why: &str| Err(format!("site \"blog\", page \"{page}\": {why}"));
        assert_eq!(
            check(&[page("/a", 4, &[(1, 2), (3, 3)])], 9),
            want("/a", "its days hold 5 hits, more than its count 4")
        );
        assert_eq!(
            check(&[page("/a", 1, &[]), page("/a", 1, &[])], 9),
            want("/a", "the page appears more than once")
        );
        assert_eq!(
            check(&[page("/a", -1, &[])], 9),
            want("/a", "count is a whole number from 0 to 9007199254740991")
        );
        assert_eq!(
            check(&[page("/a", 9, &[(3, 1), (1, 1)])], 9),
            want("/a", "days are ascending, each at most once")
        );
        assert_eq!(
            check(&[page("/a", 9, &[(3, 1), (3, 1)])], 9),
            want("/a", "days are ascending, each at most once")
        );
        assert_eq!(
            check(&[page("/a", 9, &[(3, 0)])], 9),
            want("/a", "hits is a whole number from 1 to 9007199254740991")
        );
        assert_eq!(
            check(&[page("/a", 9, &[(-1, 1)])], 9),
            want("/a", "d: a day starts in 1970 at the earliest")
        );
        // Sums that would overflow are still refused.
        assert!(
            check(
                &[page("/a", MAX_COUNT, &[(1, MAX_COUNT), (2, MAX_COUNT)])],
                MAX_COUNT
            )
            .is_err()
        );
        assert!(
            check(
                &[page("/a", MAX_COUNT, &[]), page("/b", MAX_COUNT, &[])],
                MAX_COUNT
            )
            .is_err()
        );
    }

    #[test]
    fn replayed_hours_are_whole_ascending_and_within_the_count() {
        assert!(validate_hours(&[], 0, NOW).is_ok());
        assert!(validate_hours(&[(0, 2), (H, 3)], 5, NOW).is_ok());
        assert!(validate_hours(&[(0, 2), (H, 3)], 4, NOW).is_err());
        assert!(validate_hours(&[(H, 2), (0, 3)], 9, NOW).is_err());
        assert!(validate_hours(&[(H, 2), (H, 3)], 9, NOW).is_err());
        assert!(validate_hours(&[(H + 60, 2)], 9, NOW).is_err());
        assert!(validate_hours(&[(H, 0)], 9, NOW).is_err());
        assert!(validate_hours(&[(-H, 1)], 9, NOW).is_err());
        assert!(validate_hours(&[(END_OF_TIME, 1)], 9, NOW).is_err());
        assert!(validate_hours(&[(0, MAX_COUNT), (H, 1)], MAX_COUNT, NOW).is_err());
        // Up to the current hour, not after it.
        let this_hour = NOW - NOW % H;
        assert!(validate_hours(&[(this_hour, 1)], 9, NOW).is_ok());
        assert!(validate_hours(&[(this_hour + H, 1)], 9, NOW).is_err());
    }

    #[test]
    fn a_stored_hour_or_day_is_one_that_a_range_can_hold_up_to_now() {
        let check = |step: Step, t: i64, now: i64| step.check_start(t, now);
        let this_hour = NOW - NOW % H;
        assert_eq!(check(Step::Hour, 0, NOW), Ok(()));
        assert_eq!(check(Step::Hour, this_hour, NOW), Ok(()));
        assert_eq!(
            check(Step::Hour, this_hour + H, NOW),
            Err("2026-11-23T03:00:00Z is after the current hour".into())
        );
        assert_eq!(
            check(Step::Hour, this_hour + 30 * 60, NOW),
            Err("2026-11-23T02:30:00Z is not the start of an hour".into())
        );
        assert_eq!(
            check(Step::Hour, -H, NOW),
            Err("an hour starts in 1970 at the earliest".into())
        );
        // The last hour a range holds ends where a range may end at the
        // latest; the hour after it is in no range, whatever the time.
        let last = Step::Hour.last_end();
        assert_eq!(Step::Hour.format(last), "9999-12-31T23:00:00Z");
        assert!(Range::new(Step::Hour, Some(last - H), Some(last), NOW, 48).is_ok());
        assert_eq!(check(Step::Hour, last - H, END_OF_TIME), Ok(()));
        assert_eq!(
            check(Step::Hour, last, END_OF_TIME),
            Err(
                "9999-12-31T23:00:00Z is past the last hour a series can show, \
                 9999-12-31T22:00:00Z"
                    .into()
            )
        );
        let today = NOW - NOW % D;
        assert_eq!(check(Step::Day, today, NOW), Ok(()));
        assert_eq!(
            check(Step::Day, today + D, NOW),
            Err("2026-11-24 is after the current day".into())
        );
        assert_eq!(
            check(Step::Day, Step::Day.last_end(), END_OF_TIME),
            Err("9999-12-31 is past the last day a series can show, 9999-12-30".into())
        );
    }

    #[test]
    fn pages_past_the_limit_are_counted_on_the_overflow_page_with_their_days() {
        let page = |name: &str, count: i64, days: &[(i64, i64)]| PageDump {
            page: Page::stored(name).unwrap(),
            count,
            days: days.to_vec(),
        };
        let pages = vec![
            page("/a", 1, &[(3, 1)]),
            page("(other)", 2, &[(1, 1), (3, 1)]),
            page("/b", 5, &[(1, 2), (2, 3)]),
            page("/c", 3, &[(2, 1)]),
            page("/d", 3, &[]),
            page("/e", 4, &[(1, 1), (4, 2)]),
        ];
        let folded = |limit: i64| {
            let mut pages = pages.clone();
            fold_past_limit(&mut pages, limit);
            pages
        };
        // Within the limit, as they are.
        assert_eq!(folded(5), pages);
        // The most hits stay, by name among equals (/c before /d).
        assert_eq!(
            folded(3),
            vec![
                page("/b", 5, &[(1, 2), (2, 3)]),
                page("/c", 3, &[(2, 1)]),
                page("/e", 4, &[(1, 1), (4, 2)]),
                page("(other)", 6, &[(1, 1), (3, 2)]),
            ]
        );
        // Without an overflow page, one is made.
        let mut two = vec![page("/x", 1, &[(7, 1)]), page("/y", 2, &[(7, 2)])];
        fold_past_limit(&mut two, 1);
        assert_eq!(
            two,
            vec![page("/y", 2, &[(7, 2)]), page("(other)", 1, &[(7, 1)])]
        );
        // The total and each day's hits are kept.
        let total = |pages: &[PageDump]| pages.iter().map(|p| p.count).sum::<i64>();
        let day = |pages: &[PageDump], d: i64| {
            pages
                .iter()
                .flat_map(|p| &p.days)
                .filter(|(at, _)| *at == d)
                .map(|(_, hits)| hits)
                .sum::<i64>()
        };
        for limit in 0..6 {
            let got = folded(limit);
            assert_eq!(total(&got), total(&pages), "{limit}");
            for d in 1..5 {
                assert_eq!(day(&got, d), day(&pages, d), "{limit} {d}");
            }
            let named = got.iter().filter(|p| !p.page.is_overflow()).count();
            assert_eq!(named, 5.min(limit as usize), "{limit}");
        }
    }

    #[test]
    fn ranges_round_outwards_and_default_to_the_recent_past() {
        let now = 100 * D + 5 * H + 17;
        let r = Range::new(Step::Hour, None, None, now, 48).unwrap();
        assert_eq!(
            (r.from, r.to, r.len()),
            (100 * D + 6 * H - 48 * H, 100 * D + 6 * H, 48)
        );
        let r = Range::new(Step::Day, None, None, now, 30).unwrap();
        assert_eq!((r.from, r.to), (71 * D, 101 * D));
        let r = Range::new(Step::Hour, Some(10 * H + 1), Some(12 * H + 1), now, 48).unwrap();
        assert_eq!((r.from, r.to), (10 * H, 13 * H));
        let r = Range::new(Step::Day, Some(D), Some(2 * D), now, 30).unwrap();
        assert_eq!((r.from, r.to, r.len()), (D, 2 * D, 1));
        assert!(Range::new(Step::Hour, Some(2 * H), Some(2 * H), now, 48).is_err());
        assert!(Range::new(Step::Hour, Some(3 * H), Some(2 * H), now, 48).is_err());
        assert!(Range::new(Step::Hour, Some(0), Some(MAX_POINTS * H), now, 48).is_ok());
        let too_many = Range::new(Step::Hour, Some(0), Some(MAX_POINTS * H + 1), now, 48);
        assert!(too_many.unwrap_err().to_string().contains("10000"));
        assert_eq!(
            Range::last(Step::Hour, 48, now),
            Range::new(Step::Hour, None, None, now, 48).unwrap()
        );
    }

    #[test]
    fn ranges_end_where_a_four_digit_year_can_still_write_the_end() {
        let now = 100 * D;
        let last_hour = END_OF_TIME - H; // 9999-12-31T23:00:00Z
        let r = Range::new(Step::Hour, Some(last_hour - H), Some(last_hour), now, 48).unwrap();
        assert_eq!(Step::Hour.format(r.to), "9999-12-31T23:00:00Z");
        // One second later rounds up to 10000-01-01: refused, not written.
        let past = Range::new(
            Step::Hour,
            Some(last_hour - H),
            Some(last_hour + 1),
            now,
            48,
        );
        let why = past.unwrap_err().to_string();
        assert!(why.contains("must end by 9999-12-31T23:00:00Z"), "{why}");
        let last_day = END_OF_TIME - D;
        let r = Range::new(Step::Day, Some(last_day - D), Some(last_day), now, 30).unwrap();
        assert_eq!(Step::Day.format(r.to), "9999-12-31");
        let past = Range::new(Step::Day, Some(last_day - D), Some(last_day + 1), now, 30);
        assert!(
            past.unwrap_err()
                .to_string()
                .contains("must end by 9999-12-31 ")
        );
        // With no 'to', a 'from' in the last step would end it in 10000.
        assert!(Range::new(Step::Hour, Some(last_hour + 1), None, now, 48).is_err());
    }

    #[test]
    fn fill_sums_hours_into_steps_with_zeros_between() {
        let hours = Range {
            step: Step::Hour,
            from: 10 * H,
            to: 14 * H,
        };
        let buckets = [(9 * H, 100), (10 * H, 1), (12 * H, 3), (14 * H, 100)];
        let got: Vec<(i64, i64)> = fill(&hours, &buckets)
            .iter()
            .map(|p| (p.t, p.hits))
            .collect();
        assert_eq!(
            got,
            vec![(10 * H, 1), (11 * H, 0), (12 * H, 3), (13 * H, 0)]
        );
        let days = Range {
            step: Step::Day,
            from: D,
            to: 3 * D,
        };
        let buckets = [(D, 1), (D + 23 * H, 2), (2 * D + H, 4)];
        let got: Vec<(i64, i64)> = fill(&days, &buckets)
            .iter()
            .map(|p| (p.t, p.hits))
            .collect();
        assert_eq!(got, vec![(D, 3), (2 * D, 4)]);
    }
}
