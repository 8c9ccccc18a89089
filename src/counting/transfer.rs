//! Export and import: every site with its count, hours and pages out,
//! and back in, checked whole before any write and written in batches.

use std::sync::Arc;
use std::time::SystemTime;

use super::directory::Directory;
use super::series::Step;
use super::{CountError, Ready};
use crate::cache::Cache;
use crate::domain::time::unix;
use crate::domain::{
    ImportEntry, Imported, MAX_COUNT, Page, PageDump, SiteDump, Slug, Versioned, validate_count,
    validate_name,
};
use crate::store::{StoreError, TransferStore};

/// An import is written in batches of at most this many sites or rows
/// (hours, pages and page days; a site's are never split), one transaction
/// each, so that each batch fits in the store timeout and hits on other
/// sites wait for no more than one batch.
const IMPORT_BATCH_SITES: usize = 500;
const IMPORT_BATCH_ROWS: usize = 20_000;

#[derive(Debug)]
pub struct TransferService {
    pub(super) store: Arc<dyn TransferStore>,
    pub(super) cache: Arc<dyn Cache>,
    pub(super) directory: Arc<Directory>,
    pub(super) ready: Ready,
    /// Distinct pages a site may have, which an import holds to as
    /// counting does.
    pub(super) page_limit: i64,
}

impl TransferService {
    /// Every site with its base count and buckets.
    pub async fn export(&self) -> Result<Vec<SiteDump>, CountError> {
        self.ready.check()?;
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
        self.ready.check()?;
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
                self.directory.forget(&e.slug);
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
    hours + pages + e.breakdowns.len()
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
    use crate::domain::time::END_OF_TIME;

    const H: i64 = 3600;
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
            breakdowns: Vec::new(),
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
}
