//! One batch of hits, committed lock first.
//!
//! 1. `BEGIN` and the lock of every site of the batch, in site order as
//!    every writer takes them (so none deadlocks), answering each site's
//!    count; with them, for sites whose hits carry request ids, the
//!    `hit_batches` rows this replica has not read yet (see [`Recent`]).
//!    All in one round trip.
//! 2. With the locks held, the hits that queued up meanwhile join the
//!    batch ([`Grow`]): under contention between replicas, the time spent
//!    waiting for a lock fills the batch instead of the next one.
//! 3. Knowing every request id the sites recorded, each hit is fresh or a
//!    repeat ([`SiteHits::plan`]); the fresh ones are counted, their
//!    bucket added, their request ids recorded as one row per site, and
//!    the transaction committed: again one round trip (a batch naming
//!    pages takes one more, to read which pages exist).

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::ClientWrapper as Client;
use futures_util::future::try_join_all;
use tokio_postgres::Row;

use super::failover::CommitSent;
use super::recent::{self, BatchRow, Recent};
use crate::domain::time::day_of;
use crate::domain::{MAX_COUNT, SiteId, Versioned};
use crate::store::{Counted, Grow, Outcome, PageCount, Plan, Recorded, SiteHits};

/// Opens the transaction. Its statements look rows up by key, whatever
/// their parameters: a plan made once serves every execution, where
/// PostgreSQL would otherwise plan some of them anew for each.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Locks the sites `$1` (sorted) and reads their counts.
const LOCK_SITES: &str = "\
SELECT site_id, visitor_count, generation FROM visitors
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

/// Records site `$1`'s fresh request ids (hashes `$2`) with their counts.
const RECORD_BATCH: &str = "\
INSERT INTO hit_batches (site_id, batch_id, keys, counts, page_counts)
VALUES ($1::bigint, nextval('hit_batch_ids'), $2::bigint[], $3::bigint[], $4::bigint[])
RETURNING batch_id";

/// Counts `$2` hits on site `$1` and adds them to the bucket of the hour
/// `$3`. Run by the holder of the site's lock, who checked the maximum.
const COUNT: &str = "\
WITH counted AS (
    UPDATE visitors SET visitor_count = visitor_count + $2::bigint
    WHERE site_id = $1::bigint
    RETURNING visitor_count, generation
), bucket AS (
    INSERT INTO hits_hourly (site_id, hour, hits)
    SELECT $1::bigint, $3::timestamptz, $2::bigint FROM counted WHERE $2::bigint > 0
    ON CONFLICT (site_id, hour) DO UPDATE SET hits = hits_hourly.hits + EXCLUDED.hits
)
SELECT visitor_count, generation FROM counted";

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

    fn any(&self) -> bool {
        self.hashes.iter().any(Option::is_some)
    }
}

/// One locked site as the batch found it.
struct Locked {
    total: Versioned,
    /// Whether its recorded batches were read in this transaction.
    read: bool,
}

/// Commits `hits` (grouped by site, in site order) as described above.
/// On an error the transaction is rolled back (or the connection is
/// dropped by the caller).
pub(super) async fn commit(
    client: &Client,
    sent: &CommitSent,
    recent: &Recent,
    hour: SystemTime,
    hits: &mut [SiteHits],
    page_limit: i64,
    more: &mut (dyn Grow + Send),
) -> Result<Vec<Outcome>, tokio_postgres::Error> {
    let result = locked(client, sent, recent, hour, hits, page_limit, more).await;
    if result.is_err() && !sent.in_flight() && !client.is_closed() {
        // Nothing was committed; leave the connection out of any
        // transaction for its next user.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn locked(
    client: &Client,
    sent: &CommitSent,
    recent: &Recent,
    hour: SystemTime,
    hits: &mut [SiteHits],
    page_limit: i64,
    more: &mut (dyn Grow + Send),
) -> Result<Vec<Outcome>, tokio_postgres::Error> {
    let lock = client.prepare_cached(LOCK_SITES).await?;
    let read = (
        client.prepare_cached(READ_NEW).await?,
        client.prepare_cached(READ_SOME).await?,
    );
    let sites: Vec<SiteId> = hits.iter().map(|h| h.site).collect();
    // Flight 1: BEGIN, the locks, and what the keyed sites recorded since
    // this replica last looked. Each read runs after the locks are granted,
    // so it sees every batch committed before.
    let asks: Vec<(SiteId, recent::ToRead)> = hits
        .iter()
        .filter(|h| h.has_keys())
        .map(|h| {
            let hashes = Keyed::of(h).hashes.into_iter().flatten();
            (h.site, recent.to_read(h.site, hashes))
        })
        .collect();
    let reads = asks
        .iter()
        .map(|(site, ask)| read_batches(client, &read, *site, ask));
    let (_, rows, batches) = futures_util::future::try_join3(
        client.batch_execute(BEGIN),
        client.query(&lock, &[&sites]),
        try_join_all(reads),
    )
    .await?;
    let mut locks: HashMap<SiteId, Locked> = rows
        .iter()
        .map(|r| {
            let site: SiteId = r.get(0);
            let total = Versioned {
                count: r.get(1),
                generation: r.get(2),
            };
            (site, Locked { total, read: false })
        })
        .collect();
    let mut recorded: HashMap<(SiteId, i64), Recorded> = HashMap::new();
    for (site, rows) in batches {
        take_in(recent, site, &rows, &mut recorded);
        if let Some(l) = locks.get_mut(&site) {
            l.read = true;
        }
    }

    // The hits that queued while the locks were awaited join the batch.
    let given: Vec<usize> = hits.iter().map(SiteHits::len).collect();
    more.grow(hits);

    // A site whose hits carry ids only now reads its batches now; so does
    // one whose new hits' hashes were recorded by batches not read yet.
    let keyed: Vec<Keyed> = hits.iter().map(Keyed::of).collect();
    let late: Vec<(SiteId, recent::ToRead)> = hits
        .iter()
        .zip(&keyed)
        .zip(&given)
        .filter_map(|((h, k), &given)| {
            let read = locks.get(&h.site)?.read;
            let new = k.hashes[given.min(k.hashes.len())..].iter().flatten();
            let unknown = new.filter(|x| !recorded.contains_key(&(h.site, **x)));
            let ask = if read {
                recent.to_read(h.site, unknown.copied())
            } else {
                recent.to_read(h.site, k.hashes.iter().flatten().copied())
            };
            let needed = if read {
                !ask.candidates.is_empty()
            } else {
                k.any()
            };
            needed.then_some((h.site, ask))
        })
        .collect();
    if !late.is_empty() {
        let rows = try_join_all(
            late.iter()
                .map(|(site, ask)| read_batches(client, &read, *site, ask)),
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
    let day = day_of(hour);
    let with_pages = hits.iter().any(SiteHits::has_pages);
    let recorded = &recorded;
    let work = hits.iter().zip(&plans).map(|(h, plan)| {
        let (count, record) = (&count, &record);
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
            let counting = async {
                let row = client
                    .query_one(count, &[&h.site, &plan.fresh, &hour])
                    .await?;
                let page_counts = if h.has_pages() {
                    super::count_pages(client, h, plan, page_limit, day, &|k| {
                        find(k).and_then(|r| r.page)
                    })
                    .await?
                } else {
                    vec![None; h.len()]
                };
                Ok::<_, tokio_postgres::Error>((row, page_counts))
            };
            let ((row, page_counts), batch) = if h.has_pages() {
                // The ids are recorded once the page counts are known.
                let (row, page_counts) = counting.await?;
                let batch = record_ids(client, record, h, plan, &counts, &page_counts).await?;
                ((row, page_counts), batch)
            } else {
                let none = vec![None; h.len()];
                futures_util::future::try_join(
                    counting,
                    record_ids(client, record, h, plan, &counts, &none),
                )
                .await?
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
            recent.learn(
                h.site,
                &[BatchRow {
                    batch_id,
                    age: std::time::Duration::ZERO,
                    keys,
                }],
            );
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The batches of `site` that `ask` names: those after `through` and the
/// candidates (only asked for when there are some).
async fn read_batches(
    client: &Client,
    (new, some): &(tokio_postgres::Statement, tokio_postgres::Statement),
    site: SiteId,
    ask: &recent::ToRead,
) -> Result<(SiteId, Vec<Row>), tokio_postgres::Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&site, &ask.through];
    let after = client.query(new, &params);
    if ask.candidates.is_empty() {
        return Ok((site, after.await?));
    }
    let (mut rows, older) =
        futures_util::future::try_join(after, client.query(some, &[&site, &ask.candidates]))
            .await?;
    rows.extend(older);
    Ok((site, rows))
}

/// Records the request ids of a site's fresh hits (one row), if any;
/// answers the batch id.
async fn record_ids(
    client: &Client,
    record: &tokio_postgres::Statement,
    hits: &SiteHits,
    plan: &Plan<'_>,
    counts: &[i64],
    page_counts: &[Option<PageCount>],
) -> Result<Option<i64>, tokio_postgres::Error> {
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
    if keys.is_empty() {
        return Ok(None);
    }
    let pages = hits.has_pages().then_some(pages);
    let row = client
        .query_one(record, &[&hits.site, &keys, &site_counts, &pages])
        .await?;
    Ok(Some(row.get(0)))
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
