//! A batch of hits as the store plans its commit: each site's hits with
//! their request ids and pages ([`SiteHits`]), which of them are fresh and
//! which repeat a recorded id ([`Plan`]), the pages they name
//! ([`PagePlan`]), what each hit is answered ([`Outcome`]), and a commit
//! held open on its sites' locks ([`Opening`], [`HeldCommit`]).

use super::*;

/// One site's hits in a batch, in arrival order, each with the request id
/// it came with (if any) and the page it names (if any): `keys` and `pages`
/// have one entry per hit.
#[derive(Debug, Clone, Default)]
pub struct SiteHits {
    pub site: SiteId,
    pub keys: Vec<Option<Box<str>>>,
    pub pages: Vec<Option<Page>>,
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
        }
    }

    /// Adds one hit.
    pub fn push(&mut self, key: Option<Box<str>>, page: Option<Page>) {
        self.keys.push(key);
        self.pages.push(page);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(keys: &[Option<&str>]) -> SiteHits {
        SiteHits {
            site: 1,
            keys: keys.iter().map(|k| k.map(Into::into)).collect(),
            pages: vec![None; keys.len()],
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
}
