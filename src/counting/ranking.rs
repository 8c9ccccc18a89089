//! A site's pages ranked over a range of days, kept a few seconds in this
//! replica, so that reading a slice of the list costs the same at 10 000
//! pages as at 10.
//!
//! The store can only rank pages by their hits in a range by adding up
//! every page's days in it: no index gives the top of that order, so each
//! read would cost the site's whole page table, whatever its `limit` and
//! `offset`. Instead a read takes the whole ranking once, in one snapshot,
//! and keeps it under its site and range; every slice of the list, the
//! first and the later ones alike, is then cut from it.
//!
//! A ranking is kept with the site as its snapshot showed it (generation,
//! count, page total), and it serves a read while the site still shows
//! the same, for at most [`KEPT`]. Every hit adds to the count, and every
//! set count and import starts a new generation, so a read after any of
//! them ranks anew and is exact; so is one after a page deletion that
//! changed the page total. A deletion through this replica forgets the
//! site's rankings at once. What changes pages but none of those (deleting
//! only the overflow page through another replica, a retention pass
//! dropping old page days) is seen within [`KEPT`].
//!
//! A large ranking (more than [`LARGE`] pages) also serves reads after
//! new hits for [`LAG`] from when its snapshot began, as long as the
//! generation is the same and the page total has not dropped: on a busy
//! site every read would otherwise rank anew, and a client reading the
//! list as fast as its read limit allows would cost the store as much as
//! before. Its list may then miss the hits of the last [`LAG`].
//!
//! The rankings kept are bounded: [`MAX_KEPT`] of them, [`MAX_BYTES`] in
//! all (a ranking larger than that is not kept), the oldest dropped first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::time::Day;
use crate::domain::{PageList, PageStat, Site, SiteId};
use crate::sync::lock;

/// How long a ranking is kept at most.
pub const KEPT: Duration = Duration::from_secs(5);

/// How long a large ranking serves reads after new hits.
pub const LAG: Duration = Duration::from_secs(1);

/// Rankings of more pages than this are large.
pub const LARGE: usize = 1_000;

/// Rankings kept at most, and their bytes in all.
pub const MAX_KEPT: usize = 32;
pub const MAX_BYTES: usize = 16 << 20;

/// Sites with this many pages or more are not ranked whole: the store
/// ranks them anew for each slice.
pub const MAX_ROWS: i64 = 100_000;

/// A site's pages in the days `[from, to)`.
type Key = (SiteId, Day, Day);

/// A whole ranking and the site as its snapshot showed it.
#[derive(Debug)]
pub struct Ranking {
    site: Site,
    pages: Vec<PageStat>,
    /// When the snapshot was asked for: it is no older than this.
    since: Instant,
    bytes: usize,
}

impl Ranking {
    /// A whole ranking: `list` holds every page of its site.
    pub fn new(list: PageList, since: Instant) -> Ranking {
        let bytes = size_of::<Ranking>()
            + list
                .pages
                .iter()
                .map(|p| size_of::<PageStat>() + p.page.as_str().len())
                .sum::<usize>();
        Ranking {
            site: list.site,
            pages: list.pages,
            since,
            bytes,
        }
    }

    /// `limit` pages from `offset` on.
    pub fn slice(&self, limit: i64, offset: i64) -> PageList {
        let len = self.pages.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start
            .saturating_add(usize::try_from(limit).unwrap_or(0))
            .min(len);
        PageList {
            site: self.site.clone(),
            pages: self.pages[start..end].to_vec(),
            more: end < len,
        }
    }

    /// Whether it may answer a read that found the site as `now` shows it,
    /// at `at` (see the module documentation).
    fn serves(&self, now: &Site, at: Instant) -> bool {
        let age = at.saturating_duration_since(self.since);
        let kept = &self.site;
        if kept.generation != now.generation {
            return false;
        }
        if kept.count == now.count && kept.pages == now.pages {
            return age < KEPT;
        }
        self.pages.len() > LARGE && age < LAG && now.count >= kept.count && now.pages >= kept.pages
    }
}

/// The rankings this replica keeps.
#[derive(Debug, Default)]
pub struct Rankings {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    rankings: HashMap<Key, Arc<Ranking>>,
    bytes: usize,
}

impl Kept {
    fn remove(&mut self, key: &Key) {
        if let Some(gone) = self.rankings.remove(key) {
            self.bytes -= gone.bytes;
        }
    }
}

impl Rankings {
    /// The kept ranking of `site` over `[from, to)` that may answer a read
    /// that found the site as `site` shows it now.
    pub fn find(&self, site: &Site, from: Day, to: Day) -> Option<Arc<Ranking>> {
        self.find_at(site, from, to, Instant::now())
    }

    fn find_at(&self, site: &Site, from: Day, to: Day, at: Instant) -> Option<Arc<Ranking>> {
        let kept = lock(&self.kept);
        let ranking = kept.rankings.get(&(site.id, from, to))?;
        ranking.serves(site, at).then(|| ranking.clone())
    }

    /// Keeps `ranking`, over `[from, to)`, unless a newer one of the same
    /// site and range is kept or it is too large; gives it back either way.
    pub fn keep(&self, from: Day, to: Day, ranking: Ranking) -> Arc<Ranking> {
        self.keep_at(from, to, ranking, Instant::now())
    }

    fn keep_at(&self, from: Day, to: Day, ranking: Ranking, at: Instant) -> Arc<Ranking> {
        let ranking = Arc::new(ranking);
        if ranking.bytes > MAX_BYTES {
            return ranking;
        }
        let key = (ranking.site.id, from, to);
        let mut kept = lock(&self.kept);
        if kept
            .rankings
            .get(&key)
            .is_some_and(|k| k.since > ranking.since)
        {
            return ranking;
        }
        kept.remove(&key);
        let old: Vec<Key> = kept
            .rankings
            .iter()
            .filter(|(_, r)| at.saturating_duration_since(r.since) >= KEPT)
            .map(|(k, _)| *k)
            .collect();
        for key in &old {
            kept.remove(key);
        }
        while kept.rankings.len() >= MAX_KEPT || kept.bytes + ranking.bytes > MAX_BYTES {
            let Some(oldest) = kept
                .rankings
                .iter()
                .min_by_key(|(_, r)| r.since)
                .map(|(k, _)| *k)
            else {
                break;
            };
            kept.remove(&oldest);
        }
        kept.bytes += ranking.bytes;
        kept.rankings.insert(key, ranking.clone());
        ranking
    }

    /// Forgets every ranking of site `id` (its pages were deleted, or it was).
    pub fn forget(&self, id: SiteId) {
        let mut kept = lock(&self.kept);
        let gone: Vec<Key> = kept
            .rankings
            .keys()
            .filter(|(site, _, _)| *site == id)
            .copied()
            .collect();
        for key in &gone {
            kept.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Page;

    fn site(id: SiteId, generation: i64, count: i64, pages: i64) -> Site {
        Site {
            id,
            slug: crate::domain::Slug::parse("blog").unwrap(),
            name: String::new(),
            count,
            generation,
            created_at: std::time::SystemTime::UNIX_EPOCH,
            pages,
            rules: Default::default(),
        }
    }

    fn ranking(site: Site, n: usize, since: Instant) -> Ranking {
        let pages = (0..n)
            .map(|i| PageStat {
                page: Page::stored(&format!("/p/{i}")).unwrap(),
                count: 1,
                hits: 1,
            })
            .collect();
        Ranking::new(
            PageList {
                site,
                pages,
                more: false,
            },
            since,
        )
    }

    fn names(list: &PageList) -> Vec<&str> {
        list.pages.iter().map(|p| p.page.as_str()).collect()
    }

    #[test]
    fn every_slice_is_cut_from_the_whole_ranking() {
        let r = ranking(site(1, 1, 5, 5), 5, Instant::now());
        let first = r.slice(2, 0);
        assert_eq!((names(&first), first.more), (vec!["/p/0", "/p/1"], true));
        let last = r.slice(2, 4);
        assert_eq!((names(&last), last.more), (vec!["/p/4"], false));
        let exact = r.slice(5, 0);
        assert_eq!((exact.pages.len(), exact.more), (5, false));
        let past = r.slice(100, u32::MAX.into());
        assert_eq!((past.pages.len(), past.more), (0, false));
    }

    #[test]
    fn a_ranking_serves_only_the_site_it_was_read_with_for_a_few_seconds() {
        let t = Instant::now();
        let rankings = Rankings::default();
        rankings.keep_at(10, 20, ranking(site(1, 1, 5, 5), 5, t), t);
        let found = |s: &Site, from, at| rankings.find_at(s, from, 20, at).is_some();
        assert!(found(
            &site(1, 1, 5, 5),
            10,
            t + KEPT - Duration::from_millis(1)
        ));
        assert!(!found(&site(1, 1, 5, 5), 10, t + KEPT), "too old");
        assert!(!found(&site(1, 1, 5, 5), 11, t), "another range");
        assert!(!found(&site(2, 1, 5, 5), 10, t), "another site");
        assert!(!found(&site(1, 1, 6, 5), 10, t), "a hit since");
        assert!(
            !found(&site(1, 2, 5, 5), 10, t),
            "a set count or import since"
        );
        assert!(!found(&site(1, 1, 5, 4), 10, t), "a page deleted since");
        rankings.forget(1);
        assert!(!found(&site(1, 1, 5, 5), 10, t), "forgotten");
    }

    #[test]
    fn a_large_ranking_serves_reads_after_new_hits_for_its_lag() {
        let t = Instant::now();
        let rankings = Rankings::default();
        rankings.keep_at(10, 20, ranking(site(1, 1, 5000, 2000), LARGE + 1, t), t);
        let found = |s: &Site, at| rankings.find_at(s, 10, 20, at).is_some();
        let soon = t + LAG - Duration::from_millis(1);
        assert!(found(&site(1, 1, 5100, 2001), soon), "hits since");
        assert!(!found(&site(1, 1, 5100, 2001), t + LAG), "past the lag");
        assert!(found(&site(1, 1, 5000, 2000), t + LAG), "nothing since");
        assert!(
            !found(&site(1, 1, 5100, 1999), soon),
            "a page deleted since"
        );
        assert!(!found(&site(1, 2, 5100, 2001), soon), "a new generation");
    }

    #[test]
    fn rankings_kept_are_bounded_and_the_oldest_go_first() {
        let t = Instant::now();
        let rankings = Rankings::default();
        for i in 0..=MAX_KEPT as i64 {
            let at = t + Duration::from_millis(i as u64);
            rankings.keep_at(0, 1, ranking(site(i, 1, 1, 1), 1, at), at);
        }
        let kept = lock(&rankings.kept);
        assert_eq!(kept.rankings.len(), MAX_KEPT);
        assert!(!kept.rankings.contains_key(&(0, 0, 1)));
        assert!(kept.rankings.contains_key(&(MAX_KEPT as i64, 0, 1)));
        let bytes: usize = kept.rankings.values().map(|r| r.bytes).sum();
        assert_eq!(kept.bytes, bytes);
        drop(kept);

        // A ranking past the byte budget is given back, not kept.
        let huge = Ranking {
            bytes: MAX_BYTES + 1,
            ..ranking(site(99, 1, 1, 1), 1, t)
        };
        rankings.keep_at(0, 1, huge, t);
        assert!(!lock(&rankings.kept).rankings.contains_key(&(99, 0, 1)));
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let t = Instant::now();
        let later = t + Duration::from_millis(5);
        let rankings = Rankings::default();
        rankings.keep_at(0, 1, ranking(site(1, 1, 7, 1), 1, later), later);
        rankings.keep_at(0, 1, ranking(site(1, 1, 6, 1), 1, t), later);
        assert!(rankings.find_at(&site(1, 1, 7, 1), 0, 1, later).is_some());
    }
}
