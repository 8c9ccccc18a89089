//! The store's contract as a property, on SQLite and on a real PostgreSQL
//! (two replicas on one database).
//!
//! Each case is a schedule generated from the seed: steps run strictly one
//! after another, and a step is one operation, a group of operations sent
//! together, an outage of the store with operations sent into it, or a
//! restart (a replica's, or PostgreSQL killed and started again). The
//! operations are hits (with or without a page, with or without a request
//! id, from one of three clients), requests sent again with their id (a
//! retry, or another client's request with the same id), set-count,
//! reset, import (with or without pages), page deletions and retention.
//!
//! The order the store sees is the schedule's: a group's hits are put on
//! each replica's write queue in the group's order (each request is driven
//! until it waits for its commit before the next one starts), so the
//! group-commit writer batches them as it likes but every batch keeps that
//! order. A group may be sent while the store does not answer for a few
//! milliseconds (PostgreSQL frozen, SQLite's write lock held), so that its
//! hits queue up and share commits. A group's admin operations, and the
//! two replicas' writers, race by design.
//!
//! A model (a reference implementation of the contract: count = base +
//! hours, pages under the page limit, request ids per client and site,
//! set-count, reset, import, page deletions and retention as the docs
//! define them)
//! says what every answer must be. A step's answers must be exactly those
//! of one order of its changes that keeps each replica's hits in the
//! schedule's order (for one operation, or a group of one replica's hits,
//! there is one such order), and the store must then show exactly that
//! order's state: every site's count through every replica, its base
//! count, its hours, its pages with their counts and days, and its number
//! of pages. In an outage every operation must get `503 store_unavailable`
//! with `Retry-After: 1` (or the `404` that a read still working gives),
//! and nothing may change.
//!
//! Replay: each run prints its seed (`PROPTEST_RNG_SEED=…`); the same seed
//! draws the same schedules (`PROPTEST_CASES` sets how many). A failing
//! case is also saved to `tests/store_contract.proptest-regressions` and
//! run first from then on.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp, migrated_store, sqlite_url};
use support::pg::{PgOptions, PgServer};
use tally::counting::CountError;
use tower::ServiceExt;

/// The sites: `default` is in every new database, the next two are
/// created when a case starts, and the last one only by an import.
const SLUGS: [&str; 4] = ["default", "alpha", "beta", "gamma"];
const EXISTS_AT_START: [bool; 4] = [true, true, true, false];

/// Pages as hits name them, and the page each counts on.
const PAGES: [(&str, &str); 5] = [
    ("/a", "/a"),
    ("/b", "/b"),
    ("/c", "/c"),
    ("/b?utm_source=feed", "/b"),
    ("/%61#top", "/a"),
];
/// Page names an import may carry.
const IMPORT_PAGES: [&str; 4] = ["/a", "/b", "/c", OVERFLOW];
const OVERFLOW: &str = "(other)";
/// Distinct pages a site may have: the third one counts on `(other)`.
const PAGE_LIMIT: usize = 2;
/// Clients, each behind the trusted proxy with its own address.
const CLIENTS: u8 = 3;

/// Settings of every replica, besides the test defaults. A hit waits at
/// most the store timeout for its 503 in an outage.
const SETTINGS: [&str; 6] = [
    "--trusted-proxies",
    "127.0.0.1/32",
    "--page-limit",
    "2",
    "--store-timeout",
    "1s",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// How long a request id is certainly remembered after its commit:
    /// PostgreSQL keeps ids for 60 s, SQLite for 10 minutes (less a margin
    /// for the clocks).
    fn remembered(self) -> Duration {
        match self {
            Backend::Sqlite => Duration::from_secs(598),
            Backend::Postgres => Duration::from_secs(58),
        }
    }

    /// Instances serving one database: one process owns a SQLite file.
    fn replicas(self) -> u8 {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        }
    }
}

// ---------------------------------------------------------------------------
// The schedule

/// One operation, sent through replica `via`.
#[derive(Debug, Clone)]
enum Op {
    /// A hit on `SLUGS[site]` from client `client`, naming `PAGES[page]`
    /// if any, with a request id of its own if `keyed`.
    Hit {
        via: u8,
        site: u8,
        page: Option<u8>,
        client: u8,
        keyed: bool,
    },
    /// The `nth` (modulo how many) keyed hit sent so far, sent again with
    /// its id: by its own client (a retry), or by the next client.
    Resend {
        via: u8,
        nth: u16,
        stranger: bool,
    },
    SetCount {
        via: u8,
        site: u8,
        count: i64,
    },
    Reset {
        via: u8,
        site: u8,
    },
    /// An import of one site (`POST /api/v1/import`, a plain list).
    Import {
        via: u8,
        site: u8,
        count: i64,
        pages: Option<Vec<ImportPage>>,
    },
    /// `DELETE /api/v1/sites/{slug}/pages` with one selector.
    DeletePages {
        via: u8,
        site: u8,
        which: Which,
    },
    /// Folds every hour into the base counts, and drops the pages' days
    /// before today (before tomorrow if `today_too`).
    Retention {
        via: u8,
        today_too: bool,
    },
}

/// Which pages a deletion takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    /// `IMPORT_PAGES[i]`, by name (`(other)` too).
    Page(usize),
    /// Every page whose name starts with this.
    Prefix(&'static str),
    /// Every page but `(other)` with fewer than this many hits in the last
    /// 30 days (the default range).
    FewerThan(i64),
}

impl Which {
    fn query(self) -> String {
        match self {
            Which::Page(i) => format!("page={}", IMPORT_PAGES[i]),
            Which::Prefix(prefix) => format!("prefix={prefix}"),
            Which::FewerThan(n) => format!("fewer_than={n}"),
        }
    }

    /// Whether it takes `name`, a page with `page`'s count and days.
    fn takes(self, name: &str, page: &PageModel, today: i64) -> bool {
        match self {
            Which::Page(i) => name == IMPORT_PAGES[i],
            Which::Prefix(prefix) => name.starts_with(prefix),
            Which::FewerThan(n) => {
                let hits: i64 = page.days.range(today - 29..=today).map(|(_, h)| h).sum();
                name != OVERFLOW && hits < n
            }
        }
    }
}

/// A page in an import: its count and its hits on days before today.
#[derive(Debug, Clone, PartialEq)]
struct ImportPage {
    name: &'static str,
    count: i64,
    /// (days ago, hits), oldest first.
    days: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
enum Step {
    /// One operation.
    Solo(Op),
    /// Operations sent together; with a stall, while the store does not
    /// answer for that many milliseconds.
    Together { ops: Vec<Op>, stall_ms: Option<u64> },
    /// Operations sent while the store cannot be reached.
    Outage(Vec<Op>),
    /// A replica stopped gracefully and started again on the database.
    RestartReplica(u8),
    /// PostgreSQL killed with SIGKILL and started again.
    CrashStore,
}

fn count() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 0i64..12, 1 => 0i64..1000]
}

/// A page of an import as drawn: which name, its count, and (days ago,
/// hits) pairs.
type RawPage = (usize, i64, Vec<(i64, i64)>);

/// An import's pages made valid for its count: each name once, page
/// counts adding up to at most the count, days oldest first, each day's
/// hits adding up to at most its page's count.
fn import_pages(count: i64, raw: Vec<RawPage>) -> Vec<ImportPage> {
    let mut budget = count;
    let mut pages: Vec<ImportPage> = Vec::new();
    for (name, wanted, mut days) in raw {
        let name = IMPORT_PAGES[name];
        if pages.iter().any(|p| p.name == name) {
            continue;
        }
        let count = wanted.min(budget);
        budget -= count;
        days.sort_by_key(|&(ago, _)| std::cmp::Reverse(ago));
        days.dedup_by_key(|&mut (ago, _)| ago);
        let mut left = count;
        let days = days
            .into_iter()
            .filter_map(|(ago, hits)| {
                let hits = hits.min(left);
                left -= hits;
                (hits > 0).then_some((ago, hits))
            })
            .collect();
        pages.push(ImportPage { name, count, days });
    }
    pages
}

fn op(backend: Backend) -> BoxedStrategy<Op> {
    let via = 0..backend.replicas();
    let site = 0..SLUGS.len() as u8;
    let raw_pages = prop::collection::vec(
        (
            0..IMPORT_PAGES.len(),
            0i64..6,
            prop::collection::vec((1i64..4, 1i64..4), 0..3),
        ),
        0..4,
    );
    prop_oneof![
        8 => (
            via.clone(),
            site.clone(),
            prop::option::weighted(0.4, 0..PAGES.len() as u8),
            0..CLIENTS,
            any::<bool>(),
        )
            .prop_map(|(via, site, page, client, keyed)| Op::Hit {
                via,
                site,
                page,
                client,
                keyed,
            }),
        3 => (via.clone(), any::<u16>(), prop::bool::weighted(0.2))
            .prop_map(|(via, nth, stranger)| Op::Resend { via, nth, stranger }),
        1 => (via.clone(), site.clone(), count())
            .prop_map(|(via, site, count)| Op::SetCount { via, site, count }),
        1 => (via.clone(), site.clone()).prop_map(|(via, site)| Op::Reset { via, site }),
        1 => (via.clone(), site.clone(), count(), prop::option::of(raw_pages)).prop_map(
            |(via, site, count, raw)| Op::Import {
                via,
                site,
                count,
                pages: raw.map(|raw| import_pages(count, raw)),
            }
        ),
        1 => (
            via.clone(),
            site,
            prop_oneof![
                (0..IMPORT_PAGES.len()).prop_map(Which::Page),
                prop::sample::select(&["/", "/a", "/b", "/z"][..]).prop_map(Which::Prefix),
                (1i64..4).prop_map(Which::FewerThan),
            ],
        )
            .prop_map(|(via, site, which)| Op::DeletePages { via, site, which }),
        1 => (via, any::<bool>()).prop_map(|(via, today_too)| Op::Retention { via, today_too }),
    ]
    .boxed()
}

/// How often each kind of step is drawn. Outages cost a store timeout and
/// a crash a PostgreSQL restart, so they are rarer.
struct Weights {
    solo: u32,
    together: u32,
    outage: u32,
    restart: u32,
    crash: u32,
}

fn weights(backend: Backend) -> Weights {
    match backend {
        Backend::Sqlite => Weights {
            solo: 90,
            together: 90,
            outage: 2,
            restart: 10,
            crash: 0,
        },
        Backend::Postgres => Weights {
            solo: 90,
            together: 90,
            outage: 3,
            restart: 10,
            crash: 4,
        },
    }
}

fn step(backend: Backend) -> BoxedStrategy<Step> {
    let w = weights(backend);
    let ops = op(backend);
    let mut kinds = vec![
        (w.solo, ops.clone().prop_map(Step::Solo).boxed()),
        (
            w.together,
            (
                prop::collection::vec(ops.clone(), 2..7),
                prop::option::weighted(0.25, 5u64..60),
            )
                .prop_map(|(ops, stall_ms)| Step::Together { ops, stall_ms })
                .boxed(),
        ),
        (
            w.outage,
            prop::collection::vec(ops, 1..4)
                .prop_map(Step::Outage)
                .boxed(),
        ),
        (
            w.restart,
            (0..backend.replicas())
                .prop_map(Step::RestartReplica)
                .boxed(),
        ),
    ];
    if w.crash > 0 {
        kinds.push((w.crash, Just(Step::CrashStore).boxed()));
    }
    Union::new_weighted(kinds).boxed()
}

fn schedule(backend: Backend) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(backend), 1..20)
}

// ---------------------------------------------------------------------------
// The model

/// What a store recorded for a request id: the count its hit got, the
/// page it counted on with that page's count, and when (the start of its
/// step, in milliseconds from the start of the case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Recorded {
    count: i64,
    page: Option<(String, i64)>,
    at_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct PageModel {
    count: i64,
    /// Hits by UTC day (days since 1970-01-01) that retention kept.
    days: BTreeMap<i64, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct SiteModel {
    count: i64,
    /// Hits in the hourly buckets; the rest of the count is the base.
    hours: i64,
    pages: BTreeMap<String, PageModel>,
    /// Request ids by (client, id).
    ids: BTreeMap<(u8, String), Recorded>,
}

impl SiteModel {
    /// Distinct pages, `(other)` not included.
    fn page_total(&self) -> usize {
        self.pages.keys().filter(|p| *p != OVERFLOW).count()
    }

    /// Set-count's rule: the ids go; the hours stay and the base takes the
    /// rest, unless the count is below them (then they go too); the pages
    /// go with the hours, or if they hold more than the count.
    fn set_count(&mut self, count: i64) {
        self.ids.clear();
        let drop_hours = count < self.hours;
        if drop_hours {
            self.hours = 0;
        }
        let paged: i64 = self.pages.values().map(|p| p.count).sum();
        if drop_hours || paged > count {
            self.pages.clear();
        }
        self.count = count;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Model {
    sites: [Option<SiteModel>; 4],
}

/// What a step's changes are applied with.
#[derive(Debug, Clone, Copy)]
struct Context {
    /// The UTC day of the step (it straddles no midnight).
    today: i64,
    /// When the step started and ended, in ms from the start of the case.
    started_ms: u64,
    ended_ms: u64,
    /// How long a request id is certainly remembered after its commit.
    remembered_ms: u64,
}

/// A hit as sent: its site, the page it names, its client and its id.
#[derive(Debug, Clone, PartialEq)]
struct HitReq {
    site: usize,
    page: Option<usize>,
    client: u8,
    id: Option<String>,
}

/// One indivisible change to the store. A retention is several: PostgreSQL
/// folds each site's hours in a transaction of its own, after it drops the
/// pages' old days.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Hit(HitReq),
    SetCount(usize, i64),
    Import(usize, i64, Option<Vec<ImportPage>>),
    DeletePages(usize, Which),
    Fold(usize),
    /// Drops the pages' days before this day.
    DropDays(i64),
}

impl Change {
    /// The site it reads or writes; `None` for every site.
    fn site(&self) -> Option<usize> {
        match self {
            Change::Hit(hit) => Some(hit.site),
            Change::SetCount(site, _)
            | Change::Import(site, ..)
            | Change::DeletePages(site, _)
            | Change::Fold(site) => Some(*site),
            Change::DropDays(_) => None,
        }
    }

    /// Whether it writes pages' days (or, a deletion, reads them), which
    /// dropping days does not commute with.
    fn writes_days(&self) -> bool {
        match self {
            Change::Hit(hit) => hit.page.is_some(),
            Change::Import(_, _, pages) => pages.is_some(),
            Change::DeletePages(..) => true,
            Change::SetCount(..) | Change::Fold(_) | Change::DropDays(_) => false,
        }
    }

    /// Whether its operation's answer says nothing of where it fell.
    fn silent(&self) -> bool {
        matches!(self, Change::Fold(_) | Change::DropDays(_))
    }
}

/// Whether the order of `a` and `b` can matter.
fn conflict(a: &Change, b: &Change) -> bool {
    match (a, b) {
        (Change::Fold(_), Change::Fold(_)) | (Change::DropDays(_), Change::DropDays(_)) => false,
        (Change::DropDays(_), other) | (other, Change::DropDays(_)) => other.writes_days(),
        _ => a.site() == b.site(),
    }
}

/// The answer an operation must get.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Ok(Value),
    Error(u16, &'static str),
    /// A retention that reached no store.
    Unreachable,
}

impl Expect {
    fn unavailable() -> Expect {
        Expect::Error(503, "store_unavailable")
    }

    fn matches(&self, reply: &Reply) -> bool {
        match (self, reply) {
            (Expect::Ok(want), Reply::Http { status, body, .. }) => *status == 200 && body == want,
            (
                Expect::Error(code, name),
                Reply::Http {
                    status,
                    body,
                    retry_after,
                },
            ) => {
                *status == *code
                    && body["error"]["code"] == *name
                    && (*code != 503 || retry_after.as_deref() == Some("1"))
            }
            (Expect::Unreachable, Reply::Retention(Err(why))) => why == "unavailable",
            _ => false,
        }
    }
}

fn hit_body(site: usize, count: i64, page: Option<(String, i64)>) -> Value {
    match page {
        None => json!({"site": SLUGS[site], "count": count}),
        Some((name, n)) => {
            json!({"site": SLUGS[site], "count": count, "page": name, "page_count": n})
        }
    }
}

impl Model {
    fn start() -> Model {
        Model {
            sites: EXISTS_AT_START.map(|exists| exists.then(SiteModel::default)),
        }
    }

    /// Every way `change` may go: the state after it and the answer its
    /// operation must then get, if it has one of its own.
    fn apply(&self, change: &Change, cx: &Context) -> Vec<(Model, Option<Expect>)> {
        let mut next = self.clone();
        let missing = Some(Expect::Error(404, "site_not_found"));
        match change {
            Change::Hit(hit) => {
                let Some(site) = &next.sites[hit.site] else {
                    return vec![(next, missing)];
                };
                let key = hit.id.clone().map(|id| (hit.client, id));
                match key.as_ref().and_then(|k| site.ids.get(k)) {
                    None => vec![next.hit(hit, key, cx)],
                    Some(recorded) => {
                        let page = match (hit.page, &recorded.page) {
                            (Some(p), Some((name, n))) => {
                                let name = if name == OVERFLOW {
                                    OVERFLOW
                                } else {
                                    PAGES[p].1
                                };
                                Some((name.to_owned(), *n))
                            }
                            _ => None,
                        };
                        let again = hit_body(hit.site, recorded.count, page);
                        let mut ways = vec![(next.clone(), Some(Expect::Ok(again)))];
                        // Past its time an id may be forgotten: a new hit.
                        if cx.ended_ms.saturating_sub(recorded.at_ms) >= cx.remembered_ms {
                            if let (Some(site), Some(k)) = (&mut next.sites[hit.site], &key) {
                                site.ids.remove(k);
                            }
                            ways.push(next.hit(hit, key, cx));
                        }
                        ways
                    }
                }
            }
            Change::SetCount(i, count) => {
                let Some(site) = &mut next.sites[*i] else {
                    return vec![(next, missing)];
                };
                site.set_count(*count);
                let reply = json!({"site": SLUGS[*i], "count": count});
                vec![(next, Some(Expect::Ok(reply)))]
            }
            Change::Import(i, count, pages) => {
                let created = next.sites[*i].is_none();
                let site = next.sites[*i].get_or_insert_with(SiteModel::default);
                site.ids.clear();
                site.set_count(*count);
                if let Some(pages) = pages {
                    site.pages = pages
                        .iter()
                        .map(|p| {
                            let days = p.days.iter().map(|&(ago, n)| (cx.today - ago, n)).collect();
                            let page = PageModel {
                                count: p.count,
                                days,
                            };
                            (p.name.to_owned(), page)
                        })
                        .collect();
                    // Past the page limit, the pages with the most hits
                    // stay (by name among equal counts); the others are
                    // counted on `(other)`, their counts and days with them.
                    let mut named: Vec<(i64, String)> = site
                        .pages
                        .iter()
                        .filter(|(name, _)| *name != OVERFLOW)
                        .map(|(name, page)| (-page.count, name.clone()))
                        .collect();
                    named.sort();
                    for (_, name) in named.into_iter().skip(PAGE_LIMIT) {
                        let Some(folded) = site.pages.remove(&name) else {
                            continue;
                        };
                        let other = site.pages.entry(OVERFLOW.to_owned()).or_default();
                        other.count += folded.count;
                        for (day, hits) in folded.days {
                            *other.days.entry(day).or_default() += hits;
                        }
                    }
                }
                let reply = json!({"imported": [
                    {"slug": SLUGS[*i], "count": count, "created": created}
                ]});
                vec![(next, Some(Expect::Ok(reply)))]
            }
            Change::DeletePages(i, which) => {
                let Some(site) = &mut next.sites[*i] else {
                    return vec![(next, missing)];
                };
                let before = site.pages.len();
                site.pages
                    .retain(|name, page| !which.takes(name, page, cx.today));
                let reply = json!({"site": SLUGS[*i], "deleted": before - site.pages.len()});
                vec![(next, Some(Expect::Ok(reply)))]
            }
            Change::Fold(i) => {
                if let Some(site) = &mut next.sites[*i] {
                    site.hours = 0;
                }
                vec![(next, None)]
            }
            Change::DropDays(before) => {
                for site in next.sites.iter_mut().flatten() {
                    for page in site.pages.values_mut() {
                        page.days.retain(|day, _| day >= before);
                    }
                }
                vec![(next, None)]
            }
        }
    }

    /// A hit counted anew on an existing site.
    fn hit(
        mut self,
        hit: &HitReq,
        key: Option<(u8, String)>,
        cx: &Context,
    ) -> (Model, Option<Expect>) {
        let site = self.sites[hit.site].as_mut().expect("an existing site");
        site.count += 1;
        site.hours += 1;
        let page = hit.page.map(|p| {
            let name = PAGES[p].1;
            let room = site.page_total() < PAGE_LIMIT;
            let target = if site.pages.contains_key(name) || room {
                name
            } else {
                OVERFLOW
            };
            let page = site.pages.entry(target.to_owned()).or_default();
            page.count += 1;
            *page.days.entry(cx.today).or_default() += 1;
            (target.to_owned(), page.count)
        });
        if let Some(key) = key {
            let recorded = Recorded {
                count: site.count,
                page: page.clone(),
                at_ms: cx.started_ms,
            };
            site.ids.insert(key, recorded);
        }
        let reply = hit_body(hit.site, site.count, page);
        (self, Some(Expect::Ok(reply)))
    }

    /// What the store must show: every site that exists.
    fn view(&self, replicas: usize) -> View {
        let mut view = View::new();
        for (i, site) in self.sites.iter().enumerate() {
            let Some(site) = site else { continue };
            let pages = site
                .pages
                .iter()
                .map(|(name, p)| (name.clone(), (p.count, p.days.clone())))
                .collect();
            view.insert(
                SLUGS[i].to_owned(),
                SiteView {
                    count: site.count,
                    base: site.count - site.hours,
                    hours: site.hours,
                    page_total: site.page_total() as i64,
                    pages,
                    read: vec![site.count; replicas],
                },
            );
        }
        view
    }
}

/// A site as the store shows it: through the export (count, base count,
/// the sum of its hours, its pages with their counts and days), the site
/// list (its number of pages) and each replica's count API.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SiteView {
    count: i64,
    base: i64,
    hours: i64,
    page_total: i64,
    pages: BTreeMap<String, (i64, BTreeMap<i64, i64>)>,
    read: Vec<i64>,
}

type View = BTreeMap<String, SiteView>;

/// One change of a step, with the operation whose answer it must give.
#[derive(Debug)]
struct Event {
    change: Change,
    /// The replica whose write queue took this hit in schedule order.
    queue: Option<usize>,
    op: usize,
}

/// Every state the step's answers can come from: an order of `events`
/// that keeps each queue's hits in order and gives every operation the
/// answer it got.
fn explain(start: &[Model], events: &[Event], replies: &[Reply], cx: &Context) -> Vec<Model> {
    assert!(events.len() <= 64, "a step of {} changes", events.len());
    let mut search = Search {
        events,
        replies,
        cx,
        visited: HashSet::new(),
        ends: HashSet::new(),
    };
    for model in start {
        search.from(model.clone(), 0);
    }
    search.ends.into_iter().collect()
}

/// A depth-first search over the orders of a step's changes. Changes whose
/// order cannot matter are not tried in every order: one that conflicts
/// with none left is applied at once, and of two identical silent changes
/// the first is taken first.
struct Search<'a> {
    events: &'a [Event],
    replies: &'a [Reply],
    cx: &'a Context,
    visited: HashSet<(u64, Model)>,
    ends: HashSet<Model>,
}

impl Search<'_> {
    fn ready(&self, done: u64, i: usize) -> bool {
        let event = &self.events[i];
        if done & (1 << i) != 0 {
            return false;
        }
        let queued_before = |j: usize| {
            let other = &self.events[j];
            other.queue.is_some() && other.queue == event.queue && done & (1 << j) == 0
        };
        if event.queue.is_some() && (0..i).any(queued_before) {
            return false;
        }
        let twin = |j: usize| done & (1 << j) == 0 && self.events[j].change == event.change;
        !(event.change.silent() && (0..i).any(twin))
    }

    fn free(&self, done: u64, i: usize) -> bool {
        let event = &self.events[i];
        (0..self.events.len())
            .filter(|&j| j != i && done & (1 << j) == 0)
            .all(|j| !conflict(&event.change, &self.events[j].change))
    }

    fn from(&mut self, model: Model, done: u64) {
        if done.count_ones() as usize == self.events.len() {
            self.ends.insert(model);
            return;
        }
        if !self.visited.insert((done, model.clone())) {
            return;
        }
        let ready: Vec<usize> = (0..self.events.len())
            .filter(|&i| self.ready(done, i))
            .collect();
        let tries = match ready.iter().find(|&&i| self.free(done, i)) {
            Some(&i) => vec![i],
            None => ready,
        };
        for i in tries {
            let event = &self.events[i];
            for (next, expect) in model.apply(&event.change, self.cx) {
                if expect.is_none_or(|e| e.matches(&self.replies[event.op])) {
                    self.from(next, done | (1 << i));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Days

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn day_of(date: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 {
        date.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a date: {date:?}"))
    };
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day since 1970-01-01.
fn date(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Waits past midnight (UTC) if it is near, so that no step straddles it:
/// the day a hit lands on is then the day its step started.
async fn clear_of_midnight() {
    let left = 86_400 - unix_now() % 86_400;
    if left < 30 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

// ---------------------------------------------------------------------------
// Stores and their faults

/// The PostgreSQL server of the run, with one database: each case has a
/// schema of its own in it (a new database costs a second).
struct Postgres {
    server: Mutex<PgServer>,
    cases: AtomicU32,
}

const PG_DATABASE: &str = "contract";

fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| {
        // Without fsync an acknowledged commit is in the OS's cache, which
        // a SIGKILL of PostgreSQL does not lose (no step cuts the power).
        let server = PgServer::start_with(PgOptions {
            settings: vec!["fsync=off".into()],
            ..PgOptions::default()
        });
        server.psql("postgres", &format!("CREATE DATABASE {PG_DATABASE}"));
        Postgres {
            server: Mutex::new(server),
            cases: AtomicU32::new(0),
        }
    })
}

impl Postgres {
    fn server(&self) -> MutexGuard<'_, PgServer> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the server where it may block.
    async fn with<T: Send + 'static>(
        &'static self,
        f: impl FnOnce(&mut PgServer) -> T + Send + 'static,
    ) -> T {
        tokio::task::spawn_blocking(move || f(&mut self.server()))
            .await
            .expect("PostgreSQL harness")
    }
}

/// One case's database.
enum Store {
    Sqlite {
        path: PathBuf,
        dir: tempfile::TempDir,
    },
    Postgres {
        pg: &'static Postgres,
        url: String,
        schema: String,
    },
}

/// A fault in force until it is lifted.
enum Held {
    /// A SQLite transaction holding the write lock until told (or dropped).
    WriteLock {
        release: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    },
    Frozen(&'static Postgres),
    Stopped(&'static Postgres),
}

impl Held {
    async fn lift(self) {
        match self {
            Held::WriteLock { release, thread } => {
                drop(release);
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .expect("join")
                    .expect("the lock holder");
            }
            Held::Frozen(pg) => pg.server().thaw(),
            Held::Stopped(pg) => pg.with(PgServer::restart).await,
        }
    }
}

impl Store {
    async fn new(backend: Backend) -> Store {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                Store::Sqlite {
                    path: dir.path().join("tally.db"),
                    dir,
                }
            }
            Backend::Postgres => {
                let pg = postgres();
                let schema = format!("case_{}", pg.cases.fetch_add(1, Ordering::Relaxed));
                let create = format!("CREATE SCHEMA {schema}");
                let url = pg
                    .with(move |server| {
                        // A case that failed may have left a fault behind.
                        server.thaw();
                        if !server.is_running() {
                            server.restart();
                        }
                        server.psql(PG_DATABASE, &create);
                        server.url(PG_DATABASE)
                    })
                    .await;
                let url = format!("{url}?options=-c%20search_path%3D{schema}");
                Store::Postgres { pg, url, schema }
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Store::Sqlite { dir, .. } => sqlite_url(dir.path()),
            Store::Postgres { url, .. } => url.clone(),
        }
    }

    fn write_lock(path: PathBuf) -> (Held, tokio::sync::oneshot::Receiver<()>) {
        let (locked, taken) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).expect("open the database");
            conn.busy_timeout(Duration::from_secs(10))
                .expect("busy timeout");
            conn.execute_batch("BEGIN IMMEDIATE")
                .expect("take the write lock");
            let _ = locked.send(());
            let _ = released.recv();
            conn.execute_batch("ROLLBACK").expect("release the lock");
        });
        (Held::WriteLock { release, thread }, taken)
    }

    /// The store stops answering (PostgreSQL frozen, SQLite's write lock
    /// taken) until the fault is lifted: what waits on it then goes on.
    async fn stall(&self) -> Held {
        match self {
            Store::Sqlite { path, .. } => {
                let (held, taken) = Store::write_lock(path.clone());
                taken.await.expect("the write lock");
                held
            }
            Store::Postgres { pg, .. } => {
                pg.server().freeze();
                Held::Frozen(pg)
            }
        }
    }

    /// The store cannot be written to: PostgreSQL is stopped (until the
    /// fault is lifted, when it starts again); SQLite's write lock is held
    /// (reads still work).
    async fn cut_off(&self) -> Held {
        match self {
            Store::Sqlite { .. } => self.stall().await,
            Store::Postgres { pg, .. } => {
                pg.with(PgServer::stop).await;
                Held::Stopped(pg)
            }
        }
    }

    /// PostgreSQL killed (SIGKILL) and started again.
    async fn crash(&self) {
        let &Store::Postgres { pg, .. } = self else {
            unreachable!("only PostgreSQL crashes")
        };
        pg.with(PgServer::restart).await;
    }

    async fn drop_schema(&self) {
        if let &Store::Postgres { pg, ref schema, .. } = self {
            let sql = format!("DROP SCHEMA {schema} CASCADE");
            pg.with(move |server| server.psql(PG_DATABASE, &sql)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Replicas and requests

/// A replica: a tally serving (on a port nobody uses) so that it can be
/// stopped as a process is; requests reach its router directly.
async fn start_replica(url: &str) -> TestApp {
    TestApp::spawn(url, &SETTINGS).await
}

/// Graceful stop: it must commit what it holds and exit cleanly.
async fn stop_replica(replica: TestApp) {
    replica.stop().await.expect("a graceful stop");
}

#[derive(Debug, Clone)]
enum Reply {
    Http {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
    Retention(Result<u64, String>),
}

/// A request as a replica gets it, or a retention pass on it.
#[derive(Debug, Clone)]
enum Call {
    Http {
        via: usize,
        method: Method,
        path: String,
        headers: Vec<(&'static str, String)>,
        body: Option<String>,
    },
    Retention {
        via: usize,
        before: SystemTime,
    },
}

type Running = Pin<Box<dyn Future<Output = Reply> + Send>>;

async fn http(router: Router, request: Request<Body>) -> Reply {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Reply::Http {
        status,
        retry_after,
        body,
    }
}

// ---------------------------------------------------------------------------
// A case

/// What a failure message shows of a step.
#[derive(Debug)]
struct Record<'a> {
    step: usize,
    /// When the step ended, from the start of the case.
    after: Duration,
    what: &'a Step,
    calls: Vec<Call>,
    replies: Vec<Reply>,
}

impl<'a> Record<'a> {
    /// A step that sent no request.
    fn quiet(step: usize, after: Duration, what: &'a Step) -> Record<'a> {
        Record {
            step,
            after,
            what,
            calls: Vec::new(),
            replies: Vec::new(),
        }
    }
}

struct Case {
    backend: Backend,
    store: Store,
    url: String,
    replicas: Vec<TestApp>,
    /// Every state the store may be in; all show the same.
    models: Vec<Model>,
    /// The keyed hits sent so far, for resends.
    sent: Vec<HitReq>,
    /// Per replica and site, what the replica knows of the site.
    known: Vec<[Known; 4]>,
    started: Instant,
}

/// How long a replica uses a site's id and rules without reading them
/// again (`RULES_FRESH` in `src/counting`). While it does, a hit on the
/// site goes on the write queue without waiting on the store.
const KNOWN_FOR: Duration = Duration::from_secs(5);

/// When a replica last read a site from the store, as far as the test can
/// tell: at some time in `[from, to]`, or (if `maybe_not`) never since it
/// started or forgot the site; `None`: never.
#[derive(Debug, Clone, Copy)]
struct Read {
    from: Instant,
    to: Instant,
    maybe_not: bool,
}

type Known = Option<Read>;

/// What a replica knows after it looked the site up (the site exists) at
/// some time in `[a, b]`: it read the site then if it had not, or had for
/// too long; else it kept what it had.
fn looked_up(known: Known, a: Instant, b: Instant) -> Known {
    let fresh = Read {
        from: a,
        to: b,
        maybe_not: false,
    };
    let Some(read) = known else {
        return Some(fresh);
    };
    let kept = read.to + KNOWN_FOR > a;
    let renewed = read.maybe_not || read.from + KNOWN_FOR <= b;
    Some(match (kept, renewed) {
        (true, false) => read,
        (false, _) => fresh,
        (true, true) => Read {
            from: read.from,
            to: b,
            maybe_not: false,
        },
    })
}

/// Either of two states.
fn either(x: Known, y: Known) -> Known {
    match (x, y) {
        (None, None) => None,
        (Some(r), None) | (None, Some(r)) => Some(Read {
            maybe_not: true,
            ..r
        }),
        (Some(r), Some(q)) => Some(Read {
            from: r.from.min(q.from),
            to: r.to.max(q.to),
            maybe_not: r.maybe_not || q.maybe_not,
        }),
    }
}

impl Case {
    async fn start(backend: Backend) -> Case {
        let store = Store::new(backend).await;
        let url = store.url();
        let mut replicas = Vec::new();
        for _ in 0..backend.replicas() {
            replicas.push(start_replica(&url).await);
        }
        let mut case = Case {
            backend,
            store,
            url,
            replicas,
            models: vec![Model::start()],
            sent: Vec::new(),
            known: vec![[None; 4]; usize::from(backend.replicas())],
            started: Instant::now(),
        };
        for (slug, exists) in SLUGS.iter().zip(EXISTS_AT_START).skip(1) {
            if exists {
                let body = json!({ "slug": slug }).to_string();
                let a = Instant::now();
                let reply = case
                    .admin(0, Method::POST, "/api/v1/sites", Some(body))
                    .await;
                assert_eq!(reply.0, 201, "create {slug}: {}", reply.1);
                // The replica that creates a site knows it from then.
                let site = SLUGS.iter().position(|s| s == slug).expect("a site");
                case.known[0][site] = looked_up(None, a, Instant::now());
            }
        }
        case
    }

    /// Milliseconds since the case started.
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn finish(self) {
        for replica in self.replicas {
            stop_replica(replica).await;
        }
        self.store.drop_schema().await;
    }

    async fn admin(
        &self,
        via: usize,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let call = Call::Http {
            via,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body,
        };
        match self.perform(&call).await {
            Reply::Http { status, body, .. } => (status, body),
            Reply::Retention(_) => unreachable!("an HTTP call"),
        }
    }

    /// A call as a future that owns what it needs.
    fn perform(&self, call: &Call) -> Running {
        match call.clone() {
            Call::Http {
                via,
                method,
                path,
                headers,
                body,
            } => {
                let mut request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                if body.is_some() {
                    request = request.header("content-type", "application/json");
                }
                let request = request
                    .body(body.map_or_else(Body::empty, Body::from))
                    .expect("request");
                Box::pin(http(self.replicas[via].router.clone(), request))
            }
            Call::Retention { via, before } => {
                let state = Arc::clone(&self.replicas[via].state);
                Box::pin(async move {
                    Reply::Retention(state.counting.series.prune_series(before).await.map_err(
                        |e| match e {
                            CountError::Unavailable(_) => "unavailable".to_owned(),
                            other => format!("{other:?}"),
                        },
                    ))
                })
            }
        }
    }

    /// Starts the calls one by one, each driven until it waits (a hit: on
    /// its commit, so it is on its replica's queue before the next starts).
    async fn launch(&self, calls: &[Call]) -> Vec<Result<Reply, Running>> {
        let mut launched = Vec::with_capacity(calls.len());
        for call in calls {
            let mut running = self.perform(call);
            launched.push(match futures::poll!(&mut running) {
                Poll::Ready(reply) => Ok(reply),
                Poll::Pending => Err(running),
            });
        }
        launched
    }

    async fn complete(launched: Vec<Result<Reply, Running>>) -> Vec<Reply> {
        futures::future::join_all(launched.into_iter().map(|l| async move {
            match l {
                Ok(reply) => reply,
                Err(running) => running.await,
            }
        }))
        .await
    }

    /// The request an operation makes, and what it changes.
    fn resolve(&mut self, step: usize, index: usize, op: &Op, today: i64) -> (Call, Vec<Change>) {
        let http = |via: u8, method, path: String, headers, body| Call::Http {
            via: usize::from(via),
            method,
            path,
            headers,
            body,
        };
        let hit_call = |via: u8, hit: &HitReq| {
            let mut headers = vec![("x-forwarded-for", format!("203.0.113.{}", 10 + hit.client))];
            if let Some(id) = &hit.id {
                headers.push(("x-request-id", id.clone()));
            }
            let body = hit.page.map(|p| json!({ "page": PAGES[p].0 }).to_string());
            let path = format!("/api/v1/sites/{}/hits", SLUGS[hit.site]);
            http(via, Method::POST, path, headers, body)
        };
        match op {
            Op::Hit {
                via,
                site,
                page,
                client,
                keyed,
            } => {
                let hit = HitReq {
                    site: usize::from(*site),
                    page: page.map(usize::from),
                    client: *client,
                    id: keyed.then(|| format!("s{step}-o{index}")),
                };
                if hit.id.is_some() {
                    self.sent.push(hit.clone());
                }
                (hit_call(*via, &hit), vec![Change::Hit(hit)])
            }
            Op::Resend { via, nth, stranger } => {
                let hit = match self.sent.get(usize::from(*nth) % self.sent.len().max(1)) {
                    Some(first) => {
                        let mut hit = first.clone();
                        if *stranger {
                            hit.client = (hit.client + 1) % CLIENTS;
                        }
                        hit
                    }
                    None => HitReq {
                        site: 1,
                        page: None,
                        client: 0,
                        id: Some(format!("s{step}-o{index}")),
                    },
                };
                self.sent.push(hit.clone());
                (hit_call(*via, &hit), vec![Change::Hit(hit)])
            }
            Op::SetCount { via, site, count } => {
                let site = usize::from(*site);
                let path = format!("/api/v1/sites/{}/count", SLUGS[site]);
                let body = Some(json!({ "count": count }).to_string());
                let call = http(*via, Method::PUT, path, Vec::new(), body);
                (call, vec![Change::SetCount(site, *count)])
            }
            Op::Reset { via, site } => {
                let site = usize::from(*site);
                let path = format!("/api/v1/sites/{}/reset", SLUGS[site]);
                let call = http(*via, Method::POST, path, Vec::new(), None);
                (call, vec![Change::SetCount(site, 0)])
            }
            Op::Import {
                via,
                site,
                count,
                pages,
            } => {
                let site = usize::from(*site);
                let mut entry = json!({ "slug": SLUGS[site], "count": count });
                if let Some(pages) = pages {
                    entry["pages"] = pages
                        .iter()
                        .map(|p| {
                            let daily: Vec<Value> = p
                                .days
                                .iter()
                                .map(|&(ago, hits)| json!({"d": date(today - ago), "hits": hits}))
                                .collect();
                            json!({"page": p.name, "count": p.count, "daily": daily})
                        })
                        .collect();
                }
                let body = Some(json!([entry]).to_string());
                let call = http(
                    *via,
                    Method::POST,
                    "/api/v1/import".into(),
                    Vec::new(),
                    body,
                );
                (call, vec![Change::Import(site, *count, pages.clone())])
            }
            Op::DeletePages { via, site, which } => {
                let site = usize::from(*site);
                let path = format!("/api/v1/sites/{}/pages?{}", SLUGS[site], which.query());
                let call = http(*via, Method::DELETE, path, Vec::new(), None);
                (call, vec![Change::DeletePages(site, *which)])
            }
            Op::Retention { via, today_too } => {
                let before = if *today_too {
                    UNIX_EPOCH + Duration::from_secs((unix_now() / 86_400 + 1) * 86_400)
                } else {
                    SystemTime::now() + Duration::from_secs(1)
                };
                let cut = today + i64::from(*today_too);
                // Pages' old days go first, then each site's old hours
                // (PostgreSQL folds them site by site after dropping the
                // days; SQLite does it all at once).
                let mut changes = vec![Change::DropDays(cut)];
                changes.extend((0..SLUGS.len()).map(Change::Fold));
                let call = Call::Retention {
                    via: usize::from(*via),
                    before,
                };
                (call, changes)
            }
        }
    }

    async fn run(&mut self, n: usize, step: &Step) {
        clear_of_midnight().await;
        let today = (unix_now() / 86_400) as i64;
        let record = match step {
            Step::Solo(op) => {
                self.together(n, step, std::slice::from_ref(op), None, today)
                    .await
            }
            Step::Together { ops, stall_ms } => self.together(n, step, ops, *stall_ms, today).await,
            Step::Outage(ops) => self.outage(n, step, ops, today).await,
            Step::RestartReplica(r) => {
                let r = usize::from(*r);
                stop_replica(self.replicas.remove(r)).await;
                let fresh = start_replica(&self.url).await;
                self.replicas.insert(r, fresh);
                self.known[r] = [None; 4];
                Record::quiet(n, self.started.elapsed(), step)
            }
            Step::CrashStore => {
                self.store.crash().await;
                Record::quiet(n, self.started.elapsed(), step)
            }
        };
        self.check(&record).await;
    }

    async fn together<'a>(
        &mut self,
        n: usize,
        step: &'a Step,
        ops: &[Op],
        stall_ms: Option<u64>,
        today: i64,
    ) -> Record<'a> {
        let started_ms = self.millis();
        let mut calls = Vec::new();
        let mut events = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (call, changes) = self.resolve(n, i, op, today);
            for change in changes {
                // A hit on a site the replica knows is queued at once; one
                // on a site that does not exist yet asks the store first.
                let queue = match (&change, &call) {
                    (Change::Hit(hit), Call::Http { via, .. })
                        if self.models[0].sites[hit.site].is_some() =>
                    {
                        Some(*via)
                    }
                    _ => None,
                };
                events.push(Event {
                    change,
                    queue,
                    op: i,
                });
            }
            calls.push(call);
        }
        for event in &events {
            if let (Some(via), Some(site)) = (event.queue, event.change.site()) {
                self.know(via, site).await;
            }
        }
        let stall = match stall_ms {
            Some(_) => Some(self.store.stall().await),
            None => None,
        };
        let existed = self.models[0].sites.each_ref().map(Option::is_some);
        let sent = Instant::now();
        let launched = self.launch(&calls).await;
        if let (Some(held), Some(ms)) = (stall, stall_ms) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            held.lift().await;
        }
        let replies = Case::complete(launched).await;
        let record = Record {
            step: n,
            after: self.started.elapsed(),
            what: step,
            calls,
            replies,
        };
        for (call, reply) in record.calls.iter().zip(&record.replies) {
            if let (Call::Retention { .. }, Reply::Retention(Err(e))) = (call, reply) {
                panic!("retention failed: {e}\n{record:#?}");
            }
        }
        let cx = Context {
            today,
            started_ms,
            ended_ms: self.millis(),
            remembered_ms: self.backend.remembered().as_millis() as u64,
        };
        let next = explain(&self.models, &events, &record.replies, &cx);
        assert!(
            !next.is_empty(),
            "no order of the step's operations gives these answers\n{record:#?}\nfrom any of {:#?}",
            self.models
        );
        self.models = next;
        self.looked_up_by(&record.calls, sent, existed, false);
        record
    }

    async fn outage<'a>(&mut self, n: usize, step: &'a Step, ops: &[Op], today: i64) -> Record<'a> {
        let mut calls = Vec::new();
        let mut expected = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (call, changes) = self.resolve(n, i, op, today);
            let missing = match &changes[0] {
                Change::Hit(hit) => self.models[0].sites[hit.site].is_none(),
                Change::SetCount(site, _) | Change::DeletePages(site, _) => {
                    self.models[0].sites[*site].is_none()
                }
                Change::Import(..) | Change::Fold(_) | Change::DropDays(_) => false,
            };
            expected.push(match (&call, self.backend) {
                (Call::Retention { .. }, _) => Expect::Unreachable,
                // SQLite still reads: a site that is not there is a 404.
                (Call::Http { .. }, Backend::Sqlite) if missing => {
                    Expect::Error(404, "site_not_found")
                }
                (Call::Http { .. }, _) => Expect::unavailable(),
            });
            calls.push(call);
        }
        let cut = self.store.cut_off().await;
        let existed = self.models[0].sites.each_ref().map(Option::is_some);
        let sent = Instant::now();
        let launched = self.launch(&calls).await;
        let replies = Case::complete(launched).await;
        self.looked_up_by(&calls, sent, existed, true);
        cut.lift().await;
        let record = Record {
            step: n,
            after: self.started.elapsed(),
            what: step,
            calls,
            replies,
        };
        for (i, (want, got)) in expected.iter().zip(&record.replies).enumerate() {
            assert!(
                want.matches(got),
                "operation {i} in the outage: expected {want:?}, got {got:?}\n{record:#?}"
            );
        }
        record
    }

    /// A site's count through a replica's count API, which has the replica
    /// read the site from the store if what it knows is too old.
    async fn read_count(&mut self, via: usize, slug: &str) -> i64 {
        let site = SLUGS.iter().position(|s| *s == slug).expect("a site");
        let a = Instant::now();
        let path = format!("/api/v1/sites/{slug}/count");
        let (status, body) = self.admin(via, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        self.known[via][site] = looked_up(self.known[via][site], a, Instant::now());
        body["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("not a count: {body}"))
    }

    /// Makes sure the replica knows the site for the next half second at
    /// least, so that a hit on it goes on the queue at once: if it may
    /// not, waits until what it knows is certainly too old (a look-up
    /// then reads the site anew), and looks the site up.
    async fn know(&mut self, via: usize, site: usize) {
        let margin = Duration::from_millis(500);
        loop {
            let now = Instant::now();
            match self.known[via][site] {
                Some(read) if !read.maybe_not && read.from + KNOWN_FOR > now + margin => return,
                Some(read) if read.to + KNOWN_FOR > now => {
                    let stale = read.to + KNOWN_FOR - now;
                    tokio::time::sleep(stale + Duration::from_millis(1)).await;
                }
                _ => {}
            }
            self.read_count(via, SLUGS[site]).await;
        }
    }

    /// What the replicas know after a step's hits (sent from `a` on)
    /// looked their sites up: a hit on a site that exists now looked it up
    /// (in an outage, perhaps in vain); one on a site that is not there
    /// made the replica forget it.
    fn looked_up_by(&mut self, calls: &[Call], a: Instant, existed: [bool; 4], outage: bool) {
        let b = Instant::now();
        for call in calls {
            let Call::Http {
                via, path, method, ..
            } = call
            else {
                continue;
            };
            let hit = path
                .strip_prefix("/api/v1/sites/")
                .and_then(|p| p.strip_suffix("/hits"));
            let (Some(slug), &Method::POST) = (hit, method) else {
                continue;
            };
            let site = SLUGS.iter().position(|s| *s == slug).expect("a site");
            let known = self.known[*via][site];
            let exists = self.models[0].sites[site].is_some();
            self.known[*via][site] = match (existed[site], exists, outage) {
                (true, _, false) => looked_up(known, a, b),
                (true, _, true) => either(known, looked_up(known, a, b)),
                (false, true, _) => either(None, looked_up(None, a, b)),
                (false, false, _) => None,
            };
        }
    }

    /// What the store shows now.
    async fn observe(&mut self) -> View {
        let (status, export) = self.admin(0, Method::GET, "/api/v1/export", None).await;
        assert_eq!(status, 200, "{export}");
        let (status, list) = self.admin(0, Method::GET, "/api/v1/sites", None).await;
        assert_eq!(status, 200, "{list}");
        let mut view = View::new();
        for site in export["sites"].as_array().expect("sites") {
            let slug = site["slug"].as_str().expect("slug").to_owned();
            let int = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"));
            let hours = site["hourly"]
                .as_array()
                .expect("hourly")
                .iter()
                .map(|h| int(&h["hits"]))
                .sum();
            let pages = site["pages"]
                .as_array()
                .expect("pages")
                .iter()
                .map(|p| {
                    let days = p["daily"]
                        .as_array()
                        .expect("daily")
                        .iter()
                        .map(|d| (day_of(d["d"].as_str().expect("d")), int(&d["hits"])))
                        .collect();
                    (
                        p["page"].as_str().expect("page").to_owned(),
                        (int(&p["count"]), days),
                    )
                })
                .collect();
            let listed = list["sites"]
                .as_array()
                .expect("sites")
                .iter()
                .find(|s| s["slug"] == slug.as_str())
                .unwrap_or_else(|| panic!("{slug} exported, not listed: {list}"));
            let mut read = Vec::new();
            for via in 0..self.replicas.len() {
                read.push(self.read_count(via, &slug).await);
            }
            view.insert(
                slug,
                SiteView {
                    count: int(&site["count"]),
                    base: int(&site["base_count"]),
                    hours,
                    page_total: int(&listed["pages"]),
                    pages,
                    read,
                },
            );
        }
        view
    }

    /// Keeps the states that show what the store shows; there must be one.
    async fn check(&mut self, record: &Record<'_>) {
        let seen = self.observe().await;
        let replicas = self.replicas.len();
        let before = self.models.clone();
        self.models.retain(|m| m.view(replicas) == seen);
        if self.models.is_empty() {
            let expected: Vec<View> = before.iter().map(|m| m.view(replicas)).collect();
            panic!(
                "after step {} ({:?}), {:?} into the case, the store shows\n{seen:#?}\nbut the model allows only\n{expected:#?}\n{record:#?}",
                record.step, record.what, record.after
            );
        }
        assert!(self.models.len() <= 64, "{} states", self.models.len());
    }
}

async fn run_case(backend: Backend, steps: Vec<Step>) {
    let mut case = Case::start(backend).await;
    let start = Step::Together {
        ops: Vec::new(),
        stall_ms: None,
    };
    case.check(&Record {
        step: 0,
        after: Duration::ZERO,
        what: &start,
        calls: Vec::new(),
        replies: Vec::new(),
    })
    .await;
    for (n, step) in steps.iter().enumerate() {
        case.run(n + 1, step).await;
    }
    case.finish().await;
}

// ---------------------------------------------------------------------------
// The properties

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// What a run tried, for its last line.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    steps: usize,
    ops: usize,
    groups: usize,
    stalled: usize,
    outages: usize,
    restarts: usize,
    crashes: usize,
}

impl Tally {
    fn add(&mut self, steps: &[Step]) {
        self.cases += 1;
        self.steps += steps.len();
        for step in steps {
            match step {
                Step::Solo(_) => self.ops += 1,
                Step::Together { ops, stall_ms } => {
                    self.ops += ops.len();
                    self.groups += 1;
                    self.stalled += usize::from(stall_ms.is_some());
                }
                Step::Outage(ops) => {
                    self.ops += ops.len();
                    self.outages += 1;
                }
                Step::RestartReplica(_) => self.restarts += 1,
                Step::CrashStore => self.crashes += 1,
            }
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cases, {} steps, {} operations ({} groups, {} of them stalled; {} outages, \
             {} replica restarts, {} crashes)",
            self.cases,
            self.steps,
            self.ops,
            self.groups,
            self.stalled,
            self.outages,
            self.restarts,
            self.crashes
        )
    }
}

/// Runs `cases` schedules (`PROPTEST_CASES` overrides it) from the seed
/// in `PROPTEST_RNG_SEED`, or from a fresh one, which is printed.
fn holds(backend: Backend, cases: u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let persist = std::env::var_os("PROPTEST_DISABLE_FAILURE_PERSISTENCE").is_none();
    let mut config = Config {
        cases,
        failure_persistence: persist.then(|| {
            Box::new(FileFailurePersistence::Direct(
                "tests/store_contract.proptest-regressions",
            )) as Box<dyn proptest::test_runner::FailurePersistence>
        }),
        // Each shrink runs a whole case against a real database.
        max_shrink_time: 120_000,
        ..Config::default()
    };
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(fastrand::u64(..));
    }
    eprintln!(
        "store contract on {}: {cases} cases, PROPTEST_RNG_SEED={}",
        backend.name(),
        config.rng_seed
    );
    let started = Instant::now();
    let tally = std::cell::RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&schedule(backend), |steps| {
        tally.borrow_mut().add(&steps);
        runtime().block_on(run_case(backend, steps));
        Ok(())
    });
    eprintln!(
        "store contract on {}: {} in {:.1} s",
        backend.name(),
        tally.borrow(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
}

#[test]
fn the_contract_holds_on_sqlite() {
    holds(Backend::Sqlite, 128);
}

#[test]
fn the_contract_holds_on_postgres() {
    holds(Backend::Postgres, 64);
}

/// Opening a SQLite store makes its file's directory, however deep, as
/// `tally serve` does for the data directory it is given.
#[tokio::test]
async fn a_sqlite_store_makes_the_directory_of_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data").join("sites").join("tally.db");
    migrated_store(&format!("sqlite://{}", file.display())).await;
    assert!(file.is_file(), "{} is no file", file.display());
}

/// Runs `check` on a fresh store of each backend, its migrations applied,
/// with its URL.
async fn on_each_backend(check: impl AsyncFn(Arc<dyn tally::store::Store>, &str)) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    for url in [sqlite_url(dir.path()), pg.create_database()] {
        check(migrated_store(&url).await, &url).await;
    }
}

/// A new site `slug` with one hit on each of `pages` (a name once per hit),
/// written to `store` directly.
async fn site_with_pages(
    store: &dyn tally::store::Store,
    slug: &str,
    pages: &[&str],
) -> tally::domain::Site {
    use tally::domain::{NewSite, Page, SiteRules, Slug};
    use tally::store::{Limits, SiteHits};

    let rules = SiteRules::default();
    let site = store
        .create_site(&NewSite {
            slug: Slug::parse(slug).unwrap(),
            name: slug.to_uppercase(),
            count: 0,
            rules: rules.clone(),
        })
        .await
        .unwrap();
    let pages: Vec<Option<Page>> = pages
        .iter()
        .map(|p| Some(Page::parse(p, &rules).unwrap()))
        .collect();
    let hits = SiteHits {
        site: site.id,
        keys: vec![None; pages.len()],
        pages,
        ..SiteHits::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    store
        .add_hits(SystemTime::now(), &[hits], Limits::pages(100), deadline)
        .await
        .unwrap();
    site
}

/// A slice of a site's pages read from the store says whether more follow
/// it: the rows past the slice, not its being full. (A site's pages are
/// mostly ranked in memory from one whole read; a site with more pages
/// than a ranking keeps is sliced by the store, and its `next` link is
/// this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_s_page_slice_says_whether_more_pages_follow() {
    use tally::domain::time::today;
    use tally::domain::{PageSlice, Slug};

    on_each_backend(async |store, url| {
        let slug = Slug::parse("sliced").unwrap();
        site_with_pages(&*store, "sliced", &["/a", "/b", "/b", "/c", "/c", "/c"]).await;
        let day = today();
        let slice = |limit, offset| PageSlice {
            from: day - 1,
            to: day + 1,
            limit,
            offset,
        };
        for (limit, offset, names, more) in [
            (2, 0, vec!["/c", "/b"], true),
            (3, 0, vec!["/c", "/b", "/a"], false),
            (1, 1, vec!["/b"], true),
            (2, 1, vec!["/b", "/a"], false),
            (5, 3, vec![], false),
        ] {
            let got = store
                .pages(&slug, slice(limit, offset))
                .await
                .unwrap()
                .unwrap();
            let got_names: Vec<&str> = got.pages.iter().map(|p| p.page.as_str()).collect();
            assert_eq!(
                (got_names, got.more),
                (names, more),
                "{url}: limit {limit}, offset {offset}"
            );
        }
    })
    .await;
}

/// `add_anonymous_hits`, which tools and tests use to write history,
/// counts its hits on each backend within its own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_hits_are_counted_on_both_backends() {
    use tally::store::{Counted, Outcome};

    on_each_backend(async |store, url| {
        let outcomes = store
            .add_anonymous_hits(SystemTime::now(), &[(1, 3)])
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let [Outcome::Counted(Counted { total, counts, .. })] = outcomes.as_slice() else {
            panic!("{url}: {outcomes:?}");
        };
        assert_eq!(
            (total.count, counts.as_slice()),
            (3, &[1, 2, 3][..]),
            "{url}"
        );
    })
    .await;
}

/// One owner per SQLite file: a claim on a file that another claim holds
/// is refused, and dropping the owner frees it. PostgreSQL has none.
#[test]
fn a_sqlite_file_has_one_owner_at_a_time() {
    use tally::secret::Secret;

    let dir = tempfile::tempdir().unwrap();
    let url = Secret::new(sqlite_url(dir.path()));
    let owner = tally::store::claim(&url).unwrap();
    assert!(owner.is_some());
    assert!(tally::store::claim(&url).is_err());
    drop(owner);
    assert!(tally::store::claim(&url).unwrap().is_some());
    let pg = Secret::new("postgres://tally@127.0.0.1:1/tally");
    assert!(tally::store::claim(&pg).unwrap().is_none());
}

/// SQLite forgets the request ids older than the purge's cutoff: the
/// purge says how many, and a hit with a forgotten id counts anew, while
/// one with a kept id is still a repeat. (PostgreSQL purges by batch and
/// keeps each site's newest; `postgres::old_request_ids_are_deleted_by_batch_and_young_ones_kept`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_request_ids_are_forgotten_on_sqlite() {
    use tally::store::{Counted, Limits, Outcome, SiteHits};

    let dir = tempfile::tempdir().unwrap();
    {
        let url = sqlite_url(dir.path());
        let store = migrated_store(&url).await;
        let hit = |key: &str| SiteHits {
            site: 1,
            keys: vec![Some(key.into())],
            pages: vec![None],
            ..SiteHits::default()
        };
        let count = async |key: &str| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let outcomes = store
                .add_hits(SystemTime::now(), &[hit(key)], Limits::pages(100), deadline)
                .await
                .unwrap();
            let [Outcome::Counted(Counted { counts, .. })] = outcomes.as_slice() else {
                panic!("{outcomes:?}");
            };
            counts[0]
        };
        assert_eq!((count("a").await, count("b").await), (1, 2), "{url}");
        assert_eq!(count("a").await, 1, "{url}: a repeat before the purge");
        let purged = store
            .purge_requests(SystemTime::now() + Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(purged, 2, "{url}");
        assert_eq!(count("a").await, 3, "{url}: a forgotten id counts anew");
        assert_eq!(count("a").await, 3, "{url}: and is remembered again");
    }
}

/// A signed-out session is remembered by its hash until it expires, on
/// each backend: another hash is not, and a record past its expiry is
/// forgotten by the next sign-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_sessions_are_remembered_until_they_expire() {
    on_each_backend(async |store, url| {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        store.revoke_session("expired", now - hour).await.unwrap();
        store
            .revoke_session("signed-out", now + hour)
            .await
            .unwrap();
        let revoked = async |hash: &str| store.session_revoked(hash).await.unwrap();
        assert_eq!(
            (
                revoked("signed-out").await,
                revoked("never").await,
                revoked("expired").await
            ),
            (true, false, false),
            "{url}"
        );
        // The same session signed out twice is one record.
        store
            .revoke_session("signed-out", now + hour)
            .await
            .unwrap();
        assert!(revoked("signed-out").await, "{url}");
    })
    .await;
}

/// Deleting a site says whether there was one to delete, on each backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_site_says_whether_it_was_there() {
    on_each_backend(async |store, url| {
        let site = site_with_pages(&*store, "doomed", &["/"]).await;
        let missing = site.id + 1000;
        assert_eq!(
            (
                store.delete_site(missing).await.unwrap(),
                store.delete_site(site.id).await.unwrap(),
                store.delete_site(site.id).await.unwrap(),
            ),
            (false, true, false),
            "{url}"
        );
    })
    .await;
}

/// An import that replays a site's hours but leaves its pages out keeps
/// the pages while the new count holds their hits, and drops them when it
/// cannot, on each backend (the store's half of
/// `transfer::pages_left_out_are_kept`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_without_pages_keeps_them_while_the_count_holds_them() {
    use tally::domain::time::today;
    use tally::domain::{ImportEntry, PageSlice, Slug};

    on_each_backend(async |store, url| {
        let slug = Slug::parse("replayed").unwrap();
        site_with_pages(&*store, "replayed", &["/a", "/a", "/a", "/b", "/b"]).await;
        let listed = async || {
            let slice = PageSlice {
                from: today() - 1,
                to: today() + 1,
                limit: 10,
                offset: 0,
            };
            let list = store.pages(&slug, slice).await.unwrap().unwrap();
            list.pages
                .iter()
                .map(|p| (p.page.as_str().to_owned(), p.count))
                .collect::<Vec<_>>()
        };
        let both = vec![("/a".to_owned(), 3), ("/b".to_owned(), 2)];
        assert_eq!(listed().await, both, "{url}");
        let replay = |count| ImportEntry {
            slug: slug.clone(),
            name: "REPLAYED".into(),
            count,
            hours: Some(Vec::new()),
            created_at: None,
            pages: None,
            breakdowns: Vec::new(),
        };
        // 5 holds the pages' 5 hits: they stay.
        let done = store.import(&[replay(5)]).await.unwrap();
        assert_eq!((done.len(), done[0].created), (1, false), "{url}");
        assert_eq!(listed().await, both, "{url}");
        // 4 cannot: they go.
        store.import(&[replay(4)]).await.unwrap();
        assert_eq!(listed().await, vec![], "{url}");
        let site = store.site(&slug).await.unwrap().unwrap();
        assert_eq!(site.count, 4, "{url}");
    })
    .await;
}

/// Retention folds every hour bucket before its cutoff into its site's
/// base count and says how many it folded, on each backend; the counts do
/// not change, and the buckets after the cutoff stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_folds_old_hours_and_says_how_many() {
    use std::time::Duration;
    use tally::domain::time::hour_start;

    on_each_backend(async |store, url| {
        let other = site_with_pages(&*store, "other", &[]).await;
        let now = hour_start(SystemTime::now());
        let hours_ago = |h: u64| now - Duration::from_secs(h * 3600);
        for (hour, site, hits) in [(72, 1, 2), (50, 1, 3), (60, other.id, 4), (1, other.id, 5)] {
            store
                .add_anonymous_hits(hours_ago(hour), &[(site, hits)])
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let counts = async || {
            let mut counts = Vec::new();
            for site in [1, other.id] {
                counts.push(store.site_by_id(site).await.unwrap().unwrap().count);
            }
            counts
        };
        assert_eq!(counts().await, [5, 9], "{url}");
        let folded = store.prune_series(hours_ago(24)).await.unwrap();
        assert_eq!(folded, 3, "{url}");
        assert_eq!(counts().await, [5, 9], "{url}");
        // Nothing is left before the cutoff.
        assert_eq!(store.prune_series(hours_ago(24)).await.unwrap(), 0, "{url}");
    })
    .await;
}
