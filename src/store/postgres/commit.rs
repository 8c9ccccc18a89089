//! One batch of hits, committed lock first.
//!
//! A batch of one site whose hits name no page, where this replica has no
//! sign that another writer counted on the site lately, first tries one
//! round trip ([`at_once`]): `BEGIN`, a statement that counts (and records
//! the request ids) only if the site's newest batch is one this replica
//! has read, and `COMMIT`. The row lock that statement takes makes the
//! check and the write one step. When the check fails the transaction
//! wrote nothing, and the batch takes the locking path:
//!
//! 1. `BEGIN` and the lock of every site of the batch, in site order as
//!    every writer takes them (so none deadlocks), answering each site's
//!    count and its newest `hit_batches` row (`last_batch`). One round
//!    trip; it also reads the batches a hit's hash may be in, and for a
//!    site that another writer committed to lately, every batch this
//!    replica has not read (see [`Recent`]).
//! 2. With the locks held, [`open`] returns, and the writer appends the
//!    hits of those sites that queued up meanwhile before it calls
//!    [`finish`]: under contention between replicas, the time spent
//!    waiting for a lock fills the batch instead of the next one. Batches
//!    that `last_batch` shows unread, and those the new hits' hashes may
//!    be in, are read now (a round trip that a site's hits on one replica
//!    almost never need).
//! 3. Knowing every request id the sites recorded, each hit is fresh or a
//!    repeat ([`SiteHits::plan`]); the fresh ones are counted, their
//!    bucket added, their request ids recorded as one row per site (and
//!    its id as the site's `last_batch`), and the transaction committed:
//!    again one round trip (a batch naming pages takes one more, to read
//!    which pages exist).

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::ClientWrapper as Client;
use futures_util::future::try_join_all;
use tokio_postgres::Row;

use super::breakdowns::{COUNT_BREAKDOWNS, COUNT_BREAKDOWNS_IF_COUNTED, count_breakdowns};
use super::failover::CommitSent;
use super::recent::{self, BatchRow, Recent};
use crate::domain::time::day_of;
use crate::domain::{MAX_COUNT, SiteId, Versioned};
use crate::store::{Counted, Limits, Outcome, PageCount, Plan, Recorded, SiteHits};

/// Opens the transaction. Its statements look rows up by key, whatever
/// their parameters: a plan made once serves every execution, where
/// PostgreSQL would otherwise plan some of them anew for each.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Locks the sites `$1` (sorted) and reads their counts and newest batch.
const LOCK_SITES: &str = "\
SELECT site_id, visitor_count, generation, last_batch FROM visitors
WHERE site_id = ANY($1::bigint[]) ORDER BY site_id FOR UPDATE";

/// The batches of site `$1` after `$2`: an index range read, empty unless
/// another replica (or this one, before a restart) wrote some.
const READ_NEW: &str = "\
SELECT batch_id, keys, counts, page_counts,
    (extract(epoch FROM now() - created_at) * 1000)::bigint
FROM hit_batches WHERE site_id = $1::bigint AND batch_id > $2::bigint";

/// The batches `$2` of site `$1`: older ones that recorded a hash being
/// asked about (a retry, or two ids of one hash). Index lookups.
const READ_SOME: &str = "\
SELECT batch_id, keys, counts, page_counts,
    (extract(epoch FROM now() - created_at) * 1000)::bigint
FROM hit_batches WHERE site_id = $1::bigint AND batch_id = ANY($2::bigint[])";

/// The CTE that adds the `$2` hits counted by the CTE `counted` (on site
/// `$1`) to the bucket of the hour `$3`, shared by the counting statements.
macro_rules! hour_bucket {
    () => {
        "bucket AS (
    INSERT INTO hits_hourly (site_id, hour, hits)
    SELECT $1::bigint, $3::timestamptz, $2::bigint FROM counted WHERE $2::bigint > 0
    ON CONFLICT (site_id, hour) DO UPDATE SET hits = hits_hourly.hits + EXCLUDED.hits
)"
    };
}

/// Records site `$1`'s fresh request ids (hashes `$2`) with their counts
/// and page counts, as the site's newest batch.
const RECORD_BATCH: &str = "\
WITH batch AS (
    INSERT INTO hit_batches (site_id, batch_id, keys, counts, page_counts)
    VALUES ($1::bigint, nextval('hit_batch_ids'), $2::bigint[], $3::bigint[], $4::bigint[])
    RETURNING batch_id
)
UPDATE visitors SET last_batch = batch.batch_id FROM batch
WHERE visitors.site_id = $1::bigint
RETURNING batch.batch_id";

/// [`COUNT`] and [`RECORD_BATCH`] (without pages) in one statement: counts
/// `$2` hits on site `$1`, adds them to the hour `$3`'s bucket and records
/// the fresh request ids `$4` with their counts `$5`.
const COUNT_RECORDED: &str = concat!(
    "\
WITH batch AS (
    INSERT INTO hit_batches (site_id, batch_id, keys, counts)
    VALUES ($1::bigint, nextval('hit_batch_ids'), $4::bigint[], $5::bigint[])
    RETURNING batch_id
), counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint,
        last_batch = (SELECT batch_id FROM batch)
    WHERE site_id = $1::bigint
    RETURNING visitor_count, generation, last_batch
), ",
    hour_bucket!(),
    "
SELECT visitor_count, generation, last_batch FROM counted"
);

/// Counts `$2` hits on site `$1` and adds them to the bucket of the hour
/// `$3`. Run by the holder of the site's lock, who checked the maximum.
const COUNT: &str = concat!(
    "\
WITH counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint
    WHERE site_id = $1::bigint
    RETURNING visitor_count, generation
), ",
    hour_bucket!(),
    "
SELECT visitor_count, generation FROM counted"
);

/// The one-flight form of [`COUNT`] for a lone site whose hits carry no
/// request id: counts `$2` hits on site `$1` (and the hour `$3`'s bucket)
/// unless that would pass `$4`, the largest count. No row when it would,
/// or when there is no such site: then nothing was written.
const COUNT_AT_ONCE: &str = concat!(
    "\
WITH counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint
    WHERE site_id = $1::bigint AND visitor_count <= $4::bigint - $2::bigint
    RETURNING visitor_count, generation
), ",
    hour_bucket!(),
    "
SELECT visitor_count, generation FROM counted"
);

/// The one-flight form of [`COUNT_RECORDED`] for a lone site: counts `$2`
/// hits on site `$1` (and the hour `$3`'s bucket) and records the fresh
/// request ids `$4` as a new batch, each with the count `$5` places it at
/// among the fresh hits (1 for the first); but only if the site's newest
/// batch is still `$6`'s or older (this replica has read every batch
/// before it) and the count stays within `$7`. The row lock the update
/// takes, or waits for, makes that check and the write one step. No row
/// when the check fails: then nothing was written.
const COUNT_RECORDED_AT_ONCE: &str = concat!(
    "\
WITH counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint,
        last_batch = nextval('hit_batch_ids')
    WHERE site_id = $1::bigint AND last_batch <= $6::bigint
        AND visitor_count <= $7::bigint - $2::bigint
    RETURNING visitor_count, generation, last_batch
), batch AS (
    INSERT INTO hit_batches (site_id, batch_id, keys, counts)
    SELECT $1::bigint, counted.last_batch, $4::bigint[],
        ARRAY(SELECT counted.visitor_count - $2::bigint + place
              FROM unnest($5::bigint[]) WITH ORDINALITY AS fresh (place, n) ORDER BY n)
    FROM counted
), ",
    hour_bucket!(),
    "
SELECT visitor_count, generation, last_batch FROM counted"
);

/// A site's request ids, hashed as they are recorded.
struct Keyed {
    /// Per hit, its id's hash.
    hashes: Vec<Option<i64>>,
}

impl Keyed {
    fn of(hits: &SiteHits) -> Self {
        Keyed {
            hashes: hits
                .keys
                .iter()
                .map(|k| k.as_deref().map(recent::hash))
                .collect(),
        }
    }
}

/// One locked site as the batch found it.
struct Locked {
    total: Versioned,
    /// Its newest batch.
    last_batch: i64,
}

/// How [`open`] left a batch.
pub(super) enum Opened {
    /// Committed in one round trip ([`at_once`]).
    Done(Vec<Outcome>),
    /// Its sites locked in an open transaction, which [`finish`] commits.
    Held(Held),
}

/// What the locking path learned in its first flight: each site's count
/// and newest batch, and the request ids read so far.
pub(super) struct Held {
    locks: HashMap<SiteId, Locked>,
    recorded: HashMap<(SiteId, i64), Recorded>,
}

/// Where and when a batch is committed: the connection, its commit's
/// flight, this replica's memory of request ids, and the hour the hits
/// count in.
pub(super) struct On<'a> {
    pub client: &'a Client,
    pub sent: &'a CommitSent,
    pub recent: &'a Recent,
    pub hour: SystemTime,
}

/// Commits `hits` (grouped by site, in site order) in one round trip if
/// it can, else takes the first flight of the locking path (step 1
/// above). On an error the transaction is rolled back (or the connection
/// is dropped by the caller).
pub(super) async fn open(
    on: &On<'_>,
    hits: &[SiteHits],
    limits: Limits,
) -> Result<Opened, tokio_postgres::Error> {
    let result = match at_once(on, hits, limits.values).await {
        Ok(Some(outcomes)) => Ok(Opened::Done(outcomes)),
        Ok(None) => lock(on.client, on.recent, hits).await.map(Opened::Held),
        Err(e) => Err(e),
    };
    rolled_back_on_error(on.client, on.sent, result).await
}

/// Commits `hits` on the locks [`open`] took (steps 2 and 3 above): the
/// groups it was given, with the hits that joined them since.
pub(super) async fn finish(
    on: &On<'_>,
    hits: &[SiteHits],
    limits: Limits,
    held: Held,
) -> Result<Vec<Outcome>, tokio_postgres::Error> {
    let result = count_locked(on, hits, limits, held).await;
    rolled_back_on_error(on.client, on.sent, result).await
}

/// `result`, after a rollback if it is an error and nothing was committed:
/// the connection is left out of any transaction for its next user.
async fn rolled_back_on_error<T>(
    client: &Client,
    sent: &CommitSent,
    result: Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    if result.is_err() && !sent.in_flight() && !client.is_closed() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// A batch of one site whose hits name no page, where nothing suggests
/// that another writer counted on it lately, is committed in one round
/// trip: `BEGIN`, one statement that counts only if the site's newest
/// batch is one this replica has read, and `COMMIT`. `None` when the
/// batch does not qualify or the check failed (the transaction then
/// wrote nothing): the caller takes the locking path.
async fn at_once(
    on: &On<'_>,
    hits: &[SiteHits],
    value_limit: i64,
) -> Result<Option<Vec<Outcome>>, tokio_postgres::Error> {
    let On {
        client,
        sent,
        recent,
        hour,
    } = *on;
    let [h] = hits else { return Ok(None) };
    if h.is_empty() || h.has_pages() {
        return Ok(None);
    }
    // Every hit is fresh unless it repeats an id of this batch: no hash is
    // in this replica's memory of the site, and the statement checks that
    // no batch it has not read was written since.
    let keyed = h.has_keys();
    let through = if keyed {
        if recent.contended(h.site) {
            return Ok(None);
        }
        let ask = recent.to_read(h.site, Keyed::of(h).hashes.into_iter().flatten());
        if !ask.candidates.is_empty() {
            return Ok(None);
        }
        ask.through
    } else {
        0
    };
    let plan = h.plan(&|_| false);
    let (count, ids) = if keyed {
        // Counts relative to the first fresh hit's, placed by the statement.
        let places = plan.counts(plan.fresh, &|_| None);
        let ids = FreshIds::of(h, &plan, &places, &vec![None; h.len()]);
        (
            client.prepare_cached(COUNT_RECORDED_AT_ONCE).await?,
            Some(ids),
        )
    } else {
        (client.prepare_cached(COUNT_AT_ONCE).await?, None)
    };
    let counting = async {
        match &ids {
            Some(ids) => {
                client
                    .query_opt(
                        &count,
                        &[
                            &h.site,
                            &plan.fresh,
                            &hour,
                            &ids.keys,
                            &ids.counts,
                            &through,
                            &MAX_COUNT,
                        ],
                    )
                    .await
            }
            None => {
                client
                    .query_opt(&count, &[&h.site, &plan.fresh, &hour, &MAX_COUNT])
                    .await
            }
        }
    };
    // The breakdowns, if the hits carry them, in a statement of their own
    // after the count's: it reads what the site has once the count holds
    // the site's lock, and writes nothing if the count did not count.
    let rows = h.breakdown_rows(&plan, None);
    let breakdowns = if rows.is_empty() {
        None
    } else {
        Some(client.prepare_cached(COUNT_BREAKDOWNS_IF_COUNTED).await?)
    };
    let day = day_of(hour);
    let breaking_down = async {
        match &breakdowns {
            Some(statement) => {
                count_breakdowns(client, statement, h.site, &rows, value_limit, day).await
            }
            None => Ok(()),
        }
    };
    // As in the locking path's last flight: a failed statement turns the
    // COMMIT into a rollback, and its error is the one returned.
    let (begun, row, broken_down, committed) = futures_util::future::join4(
        client.batch_execute(BEGIN),
        counting,
        breaking_down,
        sent.commit(client.batch_execute("COMMIT")),
    )
    .await;
    begun?;
    let row = row?;
    broken_down?;
    committed?;
    let Some(row) = row else {
        return Ok(None);
    };
    let total = Versioned {
        count: row.get(0),
        generation: row.get(1),
    };
    if let Some(ids) = ids {
        recent.wrote(h.site, row.get(2), ids.keys);
    }
    Ok(Some(vec![Outcome::Counted(Counted {
        total,
        counts: plan.counts(total.count, &|_| None),
        page_counts: vec![None; h.len()],
    })]))
}

/// Flight 1 of the locking path: `BEGIN`, the sites' locks, and the
/// batches to read that are known before the locks are held.
async fn lock(
    client: &Client,
    recent: &Recent,
    hits: &[SiteHits],
) -> Result<Held, tokio_postgres::Error> {
    let lock = client.prepare_cached(LOCK_SITES).await?;
    let read = (
        client.prepare_cached(READ_NEW).await?,
        client.prepare_cached(READ_SOME).await?,
    );
    let sites: Vec<SiteId> = hits.iter().map(|h| h.site).collect();
    // Flight 1: BEGIN, the locks, and the batches the keyed sites' hashes
    // may be in; for a site another writer committed to lately, also what
    // it recorded since this replica last looked (most likely something).
    // Each read runs after the locks are granted, so it sees every batch
    // committed before.
    let asks: Vec<(SiteId, recent::ToRead, bool)> = hits
        .iter()
        .filter(|h| h.has_keys())
        .filter_map(|h| {
            let hashes = Keyed::of(h).hashes.into_iter().flatten();
            let ask = recent.to_read(h.site, hashes);
            let new = recent.contended(h.site);
            (new || !ask.candidates.is_empty()).then_some((h.site, ask, new))
        })
        .collect();
    let reads = asks
        .iter()
        .map(|(site, ask, new)| read_batches(client, &read, *site, ask, *new));
    let (_, rows, batches) = futures_util::future::try_join3(
        client.batch_execute(BEGIN),
        client.query(&lock, &[&sites]),
        try_join_all(reads),
    )
    .await?;
    let locks: HashMap<SiteId, Locked> = rows
        .iter()
        .map(|r| {
            let site: SiteId = r.get(0);
            let total = Versioned {
                count: r.get(1),
                generation: r.get(2),
            };
            let last_batch = r.get(3);
            (site, Locked { total, last_batch })
        })
        .collect();
    let mut recorded: HashMap<(SiteId, i64), Recorded> = HashMap::new();
    for (site, rows) in batches {
        take_in(recent, site, &rows, &mut recorded);
    }
    Ok(Held { locks, recorded })
}

/// Steps 2 and 3 of the locking path, on the locks [`lock`] took.
async fn count_locked(
    on: &On<'_>,
    hits: &[SiteHits],
    limits: Limits,
    held: Held,
) -> Result<Vec<Outcome>, tokio_postgres::Error> {
    let On {
        client,
        sent,
        recent,
        hour,
    } = *on;
    let Held {
        locks,
        mut recorded,
    } = held;
    let read = (
        client.prepare_cached(READ_NEW).await?,
        client.prepare_cached(READ_SOME).await?,
    );
    // Read, for each keyed site, the batches `last_batch` shows this
    // replica has not read, and the older ones its hits' hashes (those
    // not answered yet, and those of the hits that joined) may be in.
    let late: Vec<(SiteId, recent::ToRead, bool)> = hits
        .iter()
        .filter(|h| h.has_keys())
        .filter_map(|h| {
            let lock = locks.get(&h.site)?;
            let unknown = Keyed::of(h)
                .hashes
                .into_iter()
                .flatten()
                .filter(|x| !recorded.contains_key(&(h.site, *x)));
            let ask = recent.to_read(h.site, unknown);
            let new = lock.last_batch > ask.through;
            (new || !ask.candidates.is_empty()).then_some((h.site, ask, new))
        })
        .collect();
    if !late.is_empty() {
        let rows = try_join_all(
            late.iter()
                .map(|(site, ask, new)| read_batches(client, &read, *site, ask, *new)),
        )
        .await?;
        for (site, rows) in rows {
            take_in(recent, site, &rows, &mut recorded);
        }
    }

    // Flight 2: count the fresh hits, record their ids, commit.
    let plans: Vec<Plan<'_>> = hits
        .iter()
        .map(|h| h.plan(&|key| recorded.contains_key(&(h.site, recent::hash(key)))))
        .collect();
    let count = client.prepare_cached(COUNT).await?;
    let record = client.prepare_cached(RECORD_BATCH).await?;
    let count_recorded = client.prepare_cached(COUNT_RECORDED).await?;
    // Prepared before the flight: a statement prepared inside it would be
    // sent after the COMMIT that shares the flight.
    let breakdowns = client.prepare_cached(COUNT_BREAKDOWNS).await?;
    let day = day_of(hour);
    let with_pages = hits.iter().any(SiteHits::has_pages);
    let recorded = &recorded;
    let work = hits.iter().zip(&plans).map(|(h, plan)| {
        let (count, record, count_recorded, breakdowns) =
            (&count, &record, &count_recorded, &breakdowns);
        let lock = locks.get(&h.site).map(|l| l.total);
        async move {
            let Some(before) = lock else {
                return Ok((Outcome::NoSite, None));
            };
            if before.count > MAX_COUNT - plan.fresh {
                return Ok((Outcome::AtLimit, None));
            }
            let total = before.count + plan.fresh;
            let find = |k: &str| recorded.get(&(h.site, recent::hash(k))).copied();
            let counts = plan.counts(total, &|k| find(k).and_then(|r| r.count));
            let (row, page_counts, batch) = if h.has_pages() {
                let row = client
                    .query_one(count, &[&h.site, &plan.fresh, &hour])
                    .await?;
                let (page_counts, pages) =
                    super::count_pages(client, h, plan, limits.pages, day, &|k| {
                        find(k).and_then(|r| r.page)
                    })
                    .await?;
                let rows = h.breakdown_rows(plan, Some(&pages));
                count_breakdowns(client, breakdowns, h.site, &rows, limits.values, day).await?;
                // The ids are recorded once the page counts are known.
                let ids = FreshIds::of(h, plan, &counts, &page_counts);
                let batch = if ids.keys.is_empty() {
                    None
                } else {
                    let row = client
                        .query_one(record, &[&h.site, &ids.keys, &ids.counts, &ids.page_counts])
                        .await?;
                    Some(row.get(0))
                };
                (row, page_counts, batch)
            } else {
                let page_counts = vec![None; h.len()];
                let rows = h.breakdown_rows(plan, None);
                let breakdowns =
                    count_breakdowns(client, breakdowns, h.site, &rows, limits.values, day);
                let ids = FreshIds::of(h, plan, &counts, &page_counts);
                if ids.keys.is_empty() {
                    let (row, ()) = futures_util::future::try_join(
                        client.query_one(count, &[&h.site, &plan.fresh, &hour]),
                        breakdowns,
                    )
                    .await?;
                    (row, page_counts, None)
                } else {
                    let (row, ()) = futures_util::future::try_join(
                        client.query_one(
                            count_recorded,
                            &[&h.site, &plan.fresh, &hour, &ids.keys, &ids.counts],
                        ),
                        breakdowns,
                    )
                    .await?;
                    let batch = Some(row.get(2));
                    (row, page_counts, batch)
                }
            };
            let stored = Versioned {
                count: row.get(0),
                generation: row.get(1),
            };
            debug_assert_eq!(stored.count, total, "the lock holder's count");
            Ok((
                Outcome::Counted(Counted {
                    total: stored,
                    counts,
                    page_counts,
                }),
                batch,
            ))
        }
    });
    let done = if with_pages {
        let done = try_join_all(work).await?;
        sent.commit(client.batch_execute("COMMIT")).await?;
        done
    } else {
        // COMMIT goes in the same flight. If a statement failed, the server
        // answers it with a rollback: awaiting that answer too says nothing
        // was committed, and the statement's error is returned.
        let (done, committed) = futures_util::future::join(
            try_join_all(work),
            sent.commit(client.batch_execute("COMMIT")),
        )
        .await;
        let done = done?;
        committed?;
        done
    };
    let mut outcomes = Vec::with_capacity(done.len());
    for ((outcome, batch), (h, plan)) in done.into_iter().zip(hits.iter().zip(&plans)) {
        if let Some(batch_id) = batch {
            let keys = plan.fresh_keyed(h).map(|(_, k)| recent::hash(k)).collect();
            recent.wrote(h.site, batch_id, keys);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The batches of `site` that `ask` names: those after `through` if `new`,
/// and the candidates if there are some.
async fn read_batches(
    client: &Client,
    (after, some): &(tokio_postgres::Statement, tokio_postgres::Statement),
    site: SiteId,
    ask: &recent::ToRead,
    new: bool,
) -> Result<(SiteId, Vec<Row>), tokio_postgres::Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&site, &ask.through];
    let after = async {
        if new {
            client.query(after, &params).await
        } else {
            Ok(Vec::new())
        }
    };
    let older = async {
        if ask.candidates.is_empty() {
            Ok(Vec::new())
        } else {
            client.query(some, &[&site, &ask.candidates]).await
        }
    };
    let (mut rows, older) = futures_util::future::try_join(after, older).await?;
    rows.extend(older);
    Ok((site, rows))
}

/// A site's fresh request ids as one `hit_batches` row holds them: their
/// hashes, the count each got and its page's count (negative for the
/// overflow page, 0 for none; no array when the site's hits name no page).
struct FreshIds {
    keys: Vec<i64>,
    counts: Vec<i64>,
    page_counts: Option<Vec<i64>>,
}

impl FreshIds {
    fn of(
        hits: &SiteHits,
        plan: &Plan<'_>,
        counts: &[i64],
        page_counts: &[Option<PageCount>],
    ) -> Self {
        let (mut keys, mut site_counts, mut pages) = (Vec::new(), Vec::new(), Vec::new());
        for (i, key) in plan.fresh_keyed(hits) {
            keys.push(recent::hash(key));
            site_counts.push(counts[i]);
            pages.push(match page_counts[i] {
                None => 0,
                Some(PageCount {
                    count,
                    overflow: false,
                }) => count,
                Some(PageCount {
                    count,
                    overflow: true,
                }) => -count,
            });
        }
        FreshIds {
            keys,
            counts: site_counts,
            page_counts: hits.has_pages().then_some(pages),
        }
    }
}

/// Takes in batch rows read for `site`: into what this replica knows, and
/// what each hash asked about was given.
fn take_in(
    recent: &Recent,
    site: SiteId,
    rows: &[Row],
    recorded: &mut HashMap<(SiteId, i64), Recorded>,
) {
    let mut batches = Vec::with_capacity(rows.len());
    for row in rows {
        let keys: Vec<i64> = row.get(1);
        let counts: Vec<i64> = row.get(2);
        let pages: Option<Vec<i64>> = row.get(3);
        let age_ms: i64 = row.get(4);
        for (i, &k) in keys.iter().enumerate() {
            let page = pages
                .as_ref()
                .and_then(|p| p.get(i).copied())
                .filter(|&p| p != 0)
                .map(|p| PageCount {
                    count: p.abs(),
                    overflow: p < 0,
                });
            recorded.insert(
                (site, k),
                Recorded {
                    count: counts.get(i).copied(),
                    page,
                },
            );
        }
        batches.push(BatchRow {
            batch_id: row.get(0),
            age: std::time::Duration::from_millis(age_ms.max(0) as u64),
            keys,
        });
    }
    recent.learn(site, &batches);
}
