//! A batch of hits as the store plans its commit: each site's hits with
//! their request ids and pages ([`SiteHits`]), which of them are fresh and
//! which repeat a recorded id ([`Plan`]), the pages they name
//! ([`PagePlan`]), what each hit is answered ([`Outcome`]), and a commit
//! held open on its sites' locks ([`Opening`], [`HeldCommit`]).

use super::*;

/// One site's hits in a batch, in arrival order, each with the request id
/// it came with (if any), the page it names (if any) and what it counts
/// under in the breakdowns (if they are kept): `keys` and `pages` have one
/// entry per hit, `facets` one per hit or none at all.
#[derive(Debug, Clone, Default)]
pub struct SiteHits {
    pub site: SiteId,
    pub keys: Vec<Option<Box<str>>>,
    pub pages: Vec<Option<Page>>,
    pub facets: Vec<Option<Box<Facets>>>,
}

/// What a batch may add to a site: pages up to `pages`, and breakdown
/// values up to `values` distinct ones per dimension per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub pages: i64,
    pub values: i64,
}

impl Limits {
    /// `pages` pages, and the default number of breakdown values.
    pub fn pages(pages: i64) -> Self {
        Limits {
            pages,
            values: crate::domain::breakdown::DEFAULT_VALUE_LIMIT,
        }
    }
}

/// A count a batch adds to one breakdown value on the batch's day: of its
/// site's, of one of its pages' (`page`), or of its hits from one
/// referrer (`referrer`, never `(none)`; never with a page or under the
/// referrer dimension itself), which a referrer's filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BreakdownRow<'a> {
    pub dimension: i16,
    pub value: &'a str,
    pub page: Option<&'a str>,
    pub referrer: Option<&'a str>,
    pub hits: i64,
}

impl BreakdownRow<'_> {
    /// A row of the site's own: neither a page's nor a referrer's.
    pub fn is_site(&self) -> bool {
        self.page.is_none() && self.referrer.is_none()
    }
}

/// What [`HitStore::open_hits`] did with a batch.
pub enum Opening<'a> {
    /// It committed the batch at once.
    Done(Vec<Outcome>),
    /// It holds the locks of the batch's sites, in a transaction open
    /// until [`HeldCommit::finish`]: hits of those sites that queued up
    /// while the locks were awaited may join the batch first.
    Held(Box<dyn HeldCommit + 'a>),
    /// It holds nothing (a store with one writer has no lock to wait
    /// for): the batch is committed with [`HitStore::add_hits`].
    Unlocked,
}

impl fmt::Debug for Opening<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opening::Done(outcomes) => f.debug_tuple("Done").field(outcomes).finish(),
            Opening::Held(_) => f.write_str("Held"),
            Opening::Unlocked => f.write_str("Unlocked"),
        }
    }
}

/// A commit that holds its sites' locks and waits for the batch's last
/// hits. Dropped unfinished, it writes nothing.
#[async_trait]
pub trait HeldCommit: Send {
    /// Commits `hits`: the groups the commit was opened with, in the same
    /// order, each with the hits that joined it appended in arrival order.
    /// Answers as [`HitStore::add_hits`] does.
    async fn finish(self: Box<Self>, hits: &[SiteHits]) -> Result<Vec<Outcome>, StoreError>;
}

/// A site's new total and, in arrival order, the count each hit got and
/// the count of its page (for hits that named one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub total: Versioned,
    pub counts: Vec<i64>,
    pub page_counts: Vec<Option<PageCount>>,
}

/// The count a hit gave its page, and whether that was the overflow page
/// (its site had reached its page limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCount {
    pub count: i64,
    pub overflow: bool,
}

/// What a store recorded for a request id: the count its hit got, and its
/// page's count if it named a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub count: Option<i64>,
    pub page: Option<PageCount>,
}

/// What a batch did to one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Counted(Counted),
    /// There is no such site; nothing was written for it.
    NoSite,
    /// These hits would take the count past [`MAX_COUNT`](crate::domain::MAX_COUNT): none of them
    /// was counted, and nothing was written for this site.
    AtLimit,
}

impl Outcome {
    pub fn counted(&self) -> Option<&Counted> {
        match self {
            Outcome::Counted(c) => Some(c),
            Outcome::NoSite | Outcome::AtLimit => None,
        }
    }
}

/// How one site's hits split into fresh hits (counted now) and repeats of
/// requests already counted.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    slots: Vec<Slot<'a>>,
    /// Fresh hits in all; they get the last `fresh` counts of the new total.
    pub fresh: i64,
    /// Request ids of fresh hits with their 1-based position among them.
    pub fresh_keys: Vec<(&'a str, i64)>,
}

#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Fresh(i64),
    /// Counted before, in an earlier transaction.
    Recorded(&'a str),
    /// The same request id as the hit at this index of this batch.
    SameAs(usize),
}

impl SiteHits {
    pub fn anonymous(site: SiteId, n: usize) -> Self {
        SiteHits {
            site,
            keys: vec![None; n],
            pages: vec![None; n],
            facets: Vec::new(),
        }
    }

    /// Adds one hit.
    pub fn push(&mut self, key: Option<Box<str>>, page: Option<Page>, facets: Option<Box<Facets>>) {
        // Facets are kept for every hit once one has them.
        if facets.is_some() && self.facets.len() < self.keys.len() {
            self.facets.resize(self.keys.len(), None);
        }
        if facets.is_some() || !self.facets.is_empty() {
            self.facets.push(facets);
        }
        self.keys.push(key);
        self.pages.push(page);
    }

    /// Whether any hit carries breakdown values.
    pub fn has_facets(&self) -> bool {
        self.facets.iter().any(Option::is_some)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_pages(&self) -> bool {
        self.pages.iter().any(Option::is_some)
    }

    pub fn has_keys(&self) -> bool {
        self.keys.iter().any(Option::is_some)
    }

    /// The distinct request ids, sorted: inserted in this order by every
    /// writer, they are locked in one order and never deadlock.
    pub fn distinct_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.keys.iter().flatten().map(|k| &**k).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Splits the hits, given which request ids the store already holds.
    pub(crate) fn plan(&self, recorded: &dyn Fn(&str) -> bool) -> Plan<'_> {
        let mut first: std::collections::HashMap<&str, usize> = Default::default();
        let mut plan = Plan {
            slots: Vec::with_capacity(self.keys.len()),
            fresh: 0,
            fresh_keys: Vec::new(),
        };
        for (i, key) in self.keys.iter().enumerate() {
            let slot = match key.as_deref() {
                Some(k) if recorded(k) => Slot::Recorded(k),
                Some(k) => match first.get(k) {
                    Some(j) => Slot::SameAs(*j),
                    None => {
                        first.insert(k, i);
                        plan.fresh += 1;
                        plan.fresh_keys.push((k, plan.fresh));
                        Slot::Fresh(plan.fresh)
                    }
                },
                None => {
                    plan.fresh += 1;
                    Slot::Fresh(plan.fresh)
                }
            };
            plan.slots.push(slot);
        }
        plan
    }
}

impl Plan<'_> {
    /// Each fresh hit that carries a request id: its index among the
    /// site's hits, and its id.
    pub fn fresh_keyed<'b>(&'b self, hits: &'b SiteHits) -> impl Iterator<Item = (usize, &'b str)> {
        self.slots
            .iter()
            .zip(&hits.keys)
            .enumerate()
            .filter_map(|(i, (slot, key))| match slot {
                Slot::Fresh(_) => key.as_deref().map(|k| (i, k)),
                Slot::Recorded(_) | Slot::SameAs(_) => None,
            })
    }

    /// Every hit's count, once the new total and the counts recorded for
    /// repeated request ids are known.
    pub fn counts(&self, total: i64, recorded: &dyn Fn(&str) -> Option<i64>) -> Vec<i64> {
        let mut counts: Vec<i64> = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let count = match *slot {
                Slot::Fresh(pos) => total - self.fresh + pos,
                // A repeat whose first count is unknown gets the total: it
                // was counted, and no later than now.
                Slot::Recorded(k) => recorded(k).unwrap_or(total),
                Slot::SameAs(j) => counts[j],
            };
            counts.push(count);
        }
        counts
    }
}

/// Where one site's fresh hits land among its pages: on the page each
/// names if the store holds it or there is room for a new one under the
/// site's page limit, else on the overflow page.
#[derive(Debug)]
pub(crate) struct PagePlan<'a> {
    /// Per hit: the index in `tallies` of the page it counts on and its
    /// 1-based position among that page's fresh hits; `None` for a hit
    /// naming no page and for repeats.
    spots: Vec<Option<(usize, i64)>>,
    /// Each page counted on, in order of first arrival, with its fresh hits.
    pub tallies: Vec<(&'a str, i64)>,
    /// How many of `tallies` are new pages that take room under the limit.
    pub created: i64,
}

impl<'a> PagePlan<'a> {
    /// `known` says which page names the store already holds for this site;
    /// `room` is how many new pages the site may still have.
    pub fn new(
        hits: &'a SiteHits,
        plan: &Plan<'_>,
        known: &dyn Fn(&str) -> bool,
        room: i64,
    ) -> Self {
        let mut index: std::collections::HashMap<&str, usize> = Default::default();
        let mut out = PagePlan {
            spots: Vec::with_capacity(hits.len()),
            tallies: Vec::new(),
            created: 0,
        };
        for (slot, page) in plan.slots.iter().zip(&hits.pages) {
            let (Slot::Fresh(_), Some(page)) = (slot, page) else {
                out.spots.push(None);
                continue;
            };
            let mut name = page.as_str();
            // A hit may name the overflow page itself (a client past its
            // budget of new pages): it takes no room under the limit.
            let overflow = name == crate::domain::page::OVERFLOW_PAGE;
            if !overflow && !index.contains_key(name) && !known(name) {
                if out.created < room {
                    out.created += 1;
                } else {
                    name = crate::domain::page::OVERFLOW_PAGE;
                }
            }
            let t = *index.entry(name).or_insert_with(|| {
                out.tallies.push((name, 0));
                out.tallies.len() - 1
            });
            out.tallies[t].1 += 1;
            out.spots.push(Some((t, out.tallies[t].1)));
        }
        out
    }

    /// The page names the store is asked about (the overflow page too,
    /// since any hit may land there).
    pub fn names(hits: &SiteHits) -> Vec<&str> {
        let mut names: Vec<&str> = hits.pages.iter().flatten().map(Page::as_str).collect();
        names.push(crate::domain::page::OVERFLOW_PAGE);
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every hit's page count, given each tallied page's new count (in the
    /// order of `tallies`) and what was recorded for repeated request ids.
    pub fn counts(
        &self,
        plan: &Plan<'_>,
        totals: &[i64],
        recorded: &dyn Fn(&str) -> Option<PageCount>,
    ) -> Vec<Option<PageCount>> {
        let mut counts: Vec<Option<PageCount>> = Vec::with_capacity(self.spots.len());
        for (spot, slot) in self.spots.iter().zip(&plan.slots) {
            let count = match (*spot, *slot) {
                (Some((t, pos)), _) => totals.get(t).map(|total| {
                    let (name, n) = self.tallies[t];
                    PageCount {
                        count: total - n + pos,
                        overflow: name == crate::domain::page::OVERFLOW_PAGE,
                    }
                }),
                (None, Slot::Recorded(k)) => recorded(k),
                (None, Slot::SameAs(j)) => counts[j],
                (None, Slot::Fresh(_)) => None,
            };
            counts.push(count);
        }
        counts
    }
}

impl SiteHits {
    /// What the batch's fresh hits add to the breakdowns: per dimension,
    /// value and page (the one each hit counted on, `pages` if it names
    /// pages), their hits; and per referrer other than `(none)`, its hits'
    /// values of every other dimension (the site's `(none)` is the site's
    /// rows less every referrer's). Sorted. Repeats of a request already
    /// counted add nothing, as they add nothing to the count.
    pub(crate) fn breakdown_rows<'a>(
        &'a self,
        plan: &Plan<'_>,
        pages: Option<&PagePlan<'a>>,
    ) -> Vec<BreakdownRow<'a>> {
        type Key<'a> = (i16, &'a str, Option<&'a str>, Option<&'a str>);
        let mut tally: std::collections::HashMap<Key<'a>, i64> = Default::default();
        let referrer_dimension = Dimension::Referrer;
        for (i, (slot, facets)) in plan.slots.iter().zip(&self.facets).enumerate() {
            let (Slot::Fresh(_), Some(facets)) = (slot, facets) else {
                continue;
            };
            let page = pages.and_then(|p| {
                p.spots
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|(t, _)| p.tallies[t].0)
            });
            let referrer = Some(facets.get(referrer_dimension))
                .filter(|r| *r != crate::domain::breakdown::NONE);
            for (dimension, value) in facets.iter() {
                let code = dimension.code();
                *tally.entry((code, value, None, None)).or_default() += 1;
                if page.is_some() {
                    *tally.entry((code, value, page, None)).or_default() += 1;
                }
                if referrer.is_some() && dimension != referrer_dimension {
                    *tally.entry((code, value, None, referrer)).or_default() += 1;
                }
            }
        }
        let mut rows: Vec<BreakdownRow<'a>> = tally
            .into_iter()
            .map(|((dimension, value, page, referrer), hits)| BreakdownRow {
                dimension,
                value,
                page,
                referrer,
                hits,
            })
            .collect();
        rows.sort_unstable();
        rows
    }
}

/// Whether a value takes room under a site's limit of values per
/// dimension per day: `(none)`, `(unknown)` and `(other)` do not.
pub fn takes_room(value: &str) -> bool {
    ![
        crate::domain::breakdown::NONE,
        crate::domain::breakdown::UNKNOWN,
        crate::domain::breakdown::OTHER,
    ]
    .contains(&value)
}

/// Puts the values a site has no room for under `(other)`: a value counts
/// as itself if the site has it that day already (`known`), if it takes no
/// room ([`takes_room`]), or if it is among the first `limit - used` new
/// values of its dimension (`used`: the values the site has that day that
/// take room), the new values ranked by their hits in the batch, then by
/// name. `rows` are a site's rows, its pages' and its referrers'
/// ([`SiteHits::breakdown_rows`]); a page's or a referrer's value is its
/// site's, and so is a referrer row's referrer.
pub fn cap_values(
    rows: &mut [BreakdownRow<'_>],
    known: &dyn Fn(i16, &str) -> bool,
    used: &dyn Fn(i16) -> i64,
    limit: i64,
) {
    let mut fresh: Vec<(i16, i64, &str)> = rows
        .iter()
        .filter(|r| r.is_site() && takes_room(r.value) && !known(r.dimension, r.value))
        .map(|r| (r.dimension, r.hits, r.value))
        .collect();
    if fresh.is_empty() {
        return;
    }
    fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    let mut refused: std::collections::HashSet<(i16, &str)> = Default::default();
    let mut place = 0;
    for (i, &(dimension, _, value)) in fresh.iter().enumerate() {
        if i == 0 || fresh[i - 1].0 != dimension {
            place = 0;
        }
        place += 1;
        if place > limit - used(dimension) {
            refused.insert((dimension, value));
        }
    }
    let referrer = Dimension::Referrer.code();
    for row in rows.iter_mut() {
        if refused.contains(&(row.dimension, row.value)) {
            row.value = crate::domain::breakdown::OTHER;
        }
        if let Some(from) = row.referrer
            && refused.contains(&(referrer, from))
        {
            row.referrer = Some(crate::domain::breakdown::OTHER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(keys: &[Option<&str>]) -> SiteHits {
        SiteHits {
            site: 1,
            keys: keys.iter().map(|k| k.map(Into::into)).collect(),
            pages: vec![None; keys.len()],
            facets: Vec::new(),
        }
    }

    #[test]
    fn an_outcome_is_counted_only_when_it_counted() {
        let counted = Counted {
            total: Versioned {
                generation: 2,
                count: 7,
            },
            counts: vec![6, 7],
            page_counts: vec![None, None],
        };
        assert_eq!(Outcome::Counted(counted.clone()).counted(), Some(&counted));
        assert_eq!(Outcome::NoSite.counted(), None);
        assert_eq!(Outcome::AtLimit.counted(), None);
    }

    #[test]
    fn only_hits_with_a_request_id_have_keys() {
        assert!(!SiteHits::anonymous(1, 3).has_keys());
        assert!(!hits(&[None]).has_keys());
        assert!(hits(&[None, Some("a")]).has_keys());
    }

    #[test]
    fn fresh_hits_take_the_last_counts_in_arrival_order() {
        let h = hits(&[None, Some("a"), None]);
        let plan = h.plan(&|_| false);
        assert_eq!(plan.fresh, 3);
        assert_eq!(plan.fresh_keys, vec![("a", 2)]);
        assert_eq!(plan.counts(10, &|_| None), vec![8, 9, 10]);
    }

    #[test]
    fn repeats_get_their_first_count_and_count_nothing() {
        let h = hits(&[Some("old"), Some("b"), None, Some("b")]);
        let plan = h.plan(&|k| k == "old");
        assert_eq!(plan.fresh, 2);
        assert_eq!(plan.fresh_keys, vec![("b", 1)]);
        let counts = plan.counts(20, &|k| (k == "old").then_some(7));
        assert_eq!(counts, vec![7, 19, 20, 19]);
        assert_eq!(h.distinct_keys(), vec!["b", "old"]);
    }

    fn row(
        dimension: i16,
        value: &'static str,
        page: Option<&'static str>,
        hits: i64,
    ) -> BreakdownRow<'static> {
        BreakdownRow {
            dimension,
            value,
            page,
            referrer: None,
            hits,
        }
    }

    #[test]
    fn new_values_past_the_room_are_other_the_most_hit_kept_first() {
        // Dimension 0 has one value that day ("old") and room for one
        // more: of the new values, the most hit ("b", 3 hits) is kept.
        let mut rows = vec![
            row(0, "a", None, 2),
            row(0, "a", Some("/x"), 2),
            row(0, "b", None, 3),
            row(0, "old", None, 1),
            row(0, "(none)", None, 4),
            row(1, "a", None, 1),
        ];
        cap_values(
            &mut rows,
            &|d, v| d == 0 && v == "old",
            &|d| if d == 0 { 1 } else { 0 },
            2,
        );
        let values: Vec<(i16, &str, Option<&str>)> = rows
            .iter()
            .map(|r| (r.dimension, r.value, r.page))
            .collect();
        assert_eq!(
            values,
            [
                (0, "(other)", None),
                (0, "(other)", Some("/x")),
                (0, "b", None),
                (0, "old", None),
                (0, "(none)", None),
                (1, "a", None),
            ]
        );
    }

    #[test]
    fn equal_hits_keep_the_first_value_bytewise() {
        let mut rows = vec![row(3, "z.test", None, 1), row(3, "a.test", None, 1)];
        cap_values(&mut rows, &|_, _| false, &|_| 0, 1);
        assert_eq!(rows[0].value, "(other)");
        assert_eq!(rows[1].value, "a.test");
    }

    #[test]
    fn only_fresh_hits_with_facets_add_to_breakdowns() {
        use crate::domain::breakdown::{Dimension, Facets};
        let facets = |referrer: &'static str| {
            let mut f = Facets::default();
            f.set(Dimension::Referrer, referrer);
            Some(Box::new(f))
        };
        let page = Page::parse("/p", &Default::default()).unwrap();
        let mut h = SiteHits {
            site: 1,
            ..SiteHits::default()
        };
        h.push(Some("old".into()), Some(page.clone()), facets("a.test"));
        h.push(None, Some(page.clone()), facets("a.test"));
        h.push(Some("new".into()), None, facets("b.test"));
        h.push(Some("new".into()), None, facets("b.test"));
        let plan = h.plan(&|k| k == "old");
        let pages = PagePlan::new(&h, &plan, &|_| true, 10);
        let rows = h.breakdown_rows(&plan, Some(&pages));
        let referrer = Dimension::Referrer.code();
        let got: Vec<(&str, Option<&str>, i64)> = rows
            .iter()
            .filter(|r| r.dimension == referrer)
            .map(|r| (r.value, r.page, r.hits))
            .collect();
        assert_eq!(
            got,
            [
                ("a.test", None, 1),
                ("a.test", Some("/p"), 1),
                ("b.test", None, 1)
            ]
        );
        // Every dimension of each fresh hit, once per hit: 2 hits, 11
        // dimensions, each on the site and one of them on a page too.
        assert_eq!(
            rows.iter()
                .filter(|r| r.is_site())
                .map(|r| r.hits)
                .sum::<i64>(),
            2 * Dimension::ALL.len() as i64
        );
        // Each referrer's hit under the 10 other dimensions, on no page.
        let by_referrer: Vec<(&str, i16, &str, i64)> = rows
            .iter()
            .filter_map(|r| Some((r.referrer?, r.dimension, r.value, r.hits)))
            .filter(|r| r.1 == Dimension::Browser.code() || r.1 == Dimension::Os.code())
            .collect();
        assert_eq!(
            by_referrer,
            [
                ("a.test", Dimension::Browser.code(), "(unknown)", 1),
                ("b.test", Dimension::Browser.code(), "(unknown)", 1),
                ("a.test", Dimension::Os.code(), "(unknown)", 1),
                ("b.test", Dimension::Os.code(), "(unknown)", 1),
            ]
        );
        for from in ["a.test", "b.test"] {
            let of = |r: &&BreakdownRow<'_>| r.referrer == Some(from);
            assert_eq!(rows.iter().filter(of).map(|r| r.hits).sum::<i64>(), 10);
            assert!(
                rows.iter()
                    .filter(of)
                    .all(|r| r.page.is_none() && r.dimension != referrer)
            );
        }
    }

    #[test]
    fn hits_without_a_referrer_add_no_referrer_rows() {
        use crate::domain::breakdown::Facets;
        let mut h = SiteHits::default();
        h.push(None, None, Some(Box::new(Facets::default())));
        let plan = h.plan(&|_| false);
        let rows = h.breakdown_rows(&plan, None);
        assert_eq!(rows.len(), 11);
        assert!(rows.iter().all(BreakdownRow::is_site));
    }

    #[test]
    fn a_referrer_past_the_room_is_other_in_its_rows_too() {
        let referrer = Dimension::Referrer.code();
        let mut rows = vec![
            row(referrer, "a.test", None, 2),
            row(referrer, "b.test", None, 1),
            BreakdownRow {
                referrer: Some("a.test"),
                ..row(4, "Firefox", None, 2)
            },
            BreakdownRow {
                referrer: Some("b.test"),
                ..row(4, "Firefox", None, 1)
            },
            row(4, "Firefox", None, 3),
        ];
        cap_values(&mut rows, &|_, _| false, &|_| 0, 1);
        let got: Vec<(i16, &str, Option<&str>)> = rows
            .iter()
            .map(|r| (r.dimension, r.value, r.referrer))
            .collect();
        assert_eq!(
            got,
            [
                (referrer, "a.test", None),
                (referrer, "(other)", None),
                (4, "Firefox", Some("a.test")),
                (4, "Firefox", Some("(other)")),
                (4, "Firefox", None),
            ]
        );
    }

    #[test]
    fn a_hit_without_facets_before_one_with_them_keeps_its_place() {
        let mut h = SiteHits::default();
        h.push(None, None, None);
        h.push(None, None, Some(Box::default()));
        assert_eq!(h.facets.len(), 2);
        assert!(h.facets[0].is_none());
        assert!(h.has_facets());
        assert!(!SiteHits::anonymous(1, 2).has_facets());
    }
}
