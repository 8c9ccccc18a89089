//! What this replica knows of the request ids its sites recorded lately.
//!
//! PostgreSQL holds one `hit_batches` row per committed batch of a site,
//! with the 64-bit hashes of its fresh request ids. A batch is written by
//! the holder of its site's row lock, so a site's batch ids rise in commit
//! order. Each replica keeps, per site, every hash of the batches it has
//! read (by any replica) within the id window and the highest batch id it
//! has read: once it holds a site's lock, the batches with a higher id are
//! all it has not seen, and reading them makes its knowledge of the site
//! complete. So a fresh hit costs 8 bytes in one row per batch and a hash
//! lookup here, not an indexed row; only a hash found here (a retry, or a
//! collision of two hashes) costs a read of the batch that holds it.
//!
//! This is a cache of the table, never the truth: a hash found here whose
//! batch is gone (a reset, or the window passed) is a fresh hit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::SiteId;

/// How long a request id is remembered after its batch committed. NGINX
/// resends a request only within `proxy_next_upstream_timeout` (5 s in the
/// shipped configuration) of its first try; a minute leaves room for any
/// proxy's retries while bounding this replica's memory to a minute of
/// keyed hits (about 40 bytes each: the hash in a map and in its batch's
/// list, to forget it by).
pub const WINDOW: Duration = Duration::from_secs(60);

/// How long after a site's batches were last found written by another
/// writer its commits still read new batches in their first round trip
/// (guessing they will find some) rather than after the lock answers.
pub const CONTENDED: Duration = Duration::from_secs(1);

/// The hash a request id is recorded by: SipHash-1-3 under a fixed key, the
/// same in every replica and release.
pub fn hash(key: &str) -> i64 {
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x7461_6c6c_795f_6964, 0x6261_7463_6865_7321);
    h.write(key.as_bytes());
    h.finish() as i64
}

/// One batch row as read from `hit_batches`.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub batch_id: i64,
    /// How long ago it committed, by the database's clock.
    pub age: Duration,
    pub keys: Vec<i64>,
}

#[derive(Debug, Default)]
struct SiteLog {
    /// The highest batch id read for the site: every batch up to it that
    /// is still in the window is in `ids`.
    through: i64,
    /// Hash → the newest batch that recorded it.
    ids: HashMap<i64, i64>,
    /// The batches whose hashes are in `ids`.
    held: HashSet<i64>,
    /// Batches in the order they expire, with when and their hashes.
    expiry: VecDeque<(Instant, i64, Vec<i64>)>,
    /// When `ids` was last pruned.
    pruned: Option<Instant>,
    /// When a read under the lock last found batches that another writer
    /// (another replica, or this one before a restart) had committed.
    others: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Recent {
    sites: Mutex<HashMap<SiteId, SiteLog>>,
}

/// What a writer holding the lock of a site must read: batches above
/// `through`, and `candidates` (older batches that recorded one of its
/// hashes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToRead {
    pub through: i64,
    pub candidates: Vec<i64>,
}

impl Recent {
    fn with<T>(&self, site: SiteId, f: impl FnOnce(&mut SiteLog) -> T) -> T {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        f(sites.entry(site).or_default())
    }

    /// The batches of `site` to read for hits with these hashes.
    pub fn to_read(&self, site: SiteId, hashes: impl IntoIterator<Item = i64>) -> ToRead {
        self.with(site, |log| {
            let mut candidates: Vec<i64> = hashes
                .into_iter()
                .filter_map(|h| log.ids.get(&h).copied())
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            ToRead {
                through: log.through,
                candidates,
            }
        })
    }

    /// Takes in committed batches of `site` read under its lock; forgets
    /// what the window has passed. Batches above the last one read were
    /// written by another writer: for [`CONTENDED`], [`Recent::contended`]
    /// says so.
    pub fn learn(&self, site: SiteId, rows: &[BatchRow]) {
        self.take(site, rows, true);
    }

    /// Takes in the batch this replica has just committed for `site`.
    pub fn wrote(&self, site: SiteId, batch_id: i64, keys: Vec<i64>) {
        let row = BatchRow {
            batch_id,
            age: Duration::ZERO,
            keys,
        };
        self.take(site, &[row], false);
    }

    /// Takes in `rows` in batch order, whatever order they came in: a
    /// read returns them in the order they lie in the table, and another
    /// commit of this replica may have told of a later batch first. A
    /// batch below `through` that is not held yet is taken in all the
    /// same, or its hashes would pass for fresh.
    fn take(&self, site: SiteId, rows: &[BatchRow], read: bool) {
        let now = Instant::now();
        let mut rows: Vec<&BatchRow> = rows.iter().collect();
        rows.sort_unstable_by_key(|r| r.batch_id);
        self.with(site, |log| {
            for row in rows {
                if row.batch_id > log.through {
                    log.through = row.batch_id;
                    if read {
                        log.others = Some(now);
                    }
                } else if log.held.contains(&row.batch_id) {
                    continue; // a candidate, read again: known already
                }
                let Some(left) = WINDOW.checked_sub(row.age) else {
                    continue;
                };
                log.held.insert(row.batch_id);
                for &k in &row.keys {
                    // A hash recorded again is held by its newest batch,
                    // which leaves the window last.
                    let held = log.ids.entry(k).or_insert(row.batch_id);
                    *held = (*held).max(row.batch_id);
                }
                log.expiry
                    .push_back((now + left, row.batch_id, row.keys.clone()));
            }
            log.prune(now);
        });
    }

    /// Whether another writer committed batches of `site` lately, so that
    /// a commit should read new batches at once.
    pub fn contended(&self, site: SiteId) -> bool {
        self.with(site, |log| {
            log.others.is_some_and(|at| Instant::now() < at + CONTENDED)
        })
    }

    /// How many hashes are held, over all sites.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites.values().map(|l| l.ids.len()).sum()
    }
}

impl SiteLog {
    /// Drops the batches whose window is over, at most once a second:
    /// a pass over the site's batches, and over the hashes of those that
    /// expired.
    fn prune(&mut self, now: Instant) {
        if self
            .pruned
            .is_some_and(|at| now < at + Duration::from_secs(1))
        {
            return;
        }
        self.pruned = Some(now);
        // Expiry times are not quite in batch order (ages come from the
        // database's clock): take every batch that is due.
        let (ids, held) = (&mut self.ids, &mut self.held);
        self.expiry.retain(|(at, batch, keys)| {
            if *at > now {
                return true;
            }
            held.remove(batch);
            for k in keys {
                if ids.get(k) == Some(batch) {
                    ids.remove(k);
                }
            }
            false
        });
        if oversized(self.ids.capacity(), self.ids.len()) {
            self.ids.shrink_to_fit();
        }
        if oversized(self.held.capacity(), self.held.len()) {
            self.held.shrink_to_fit();
        }
    }
}

/// Whether a map that holds `len` entries in room for `capacity` should
/// give memory back: when it has room for more than four times its entries
/// (and for more than 4 096), as after a burst of keyed hits has left the
/// window.
fn oversized(capacity: usize, len: usize) -> bool {
    capacity > 4 * len.max(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(batch_id: i64, age_secs: u64, keys: &[i64]) -> BatchRow {
        BatchRow {
            batch_id,
            age: Duration::from_secs(age_secs),
            keys: keys.to_vec(),
        }
    }

    #[test]
    fn the_hash_is_fixed_across_releases() {
        // Replicas of every release must agree on it: a change here makes
        // retries across an upgrade count twice.
        assert_eq!(hash("127.0.0.1 abc"), hash("127.0.0.1 abc"));
        assert_ne!(hash("127.0.0.1 abc"), hash("127.0.0.1 abd"));
        assert_eq!(hash("127.0.0.1 abc"), 5_777_981_560_315_328_746);
    }

    #[tokio::test(start_paused = true)]
    async fn a_site_s_batches_are_read_once_then_only_their_hashes_are_asked() {
        let recent = Recent::default();
        assert_eq!(recent.to_read(7, [1, 2]), ToRead::default());
        recent.learn(7, &[row(10, 0, &[1, 2]), row(12, 0, &[3])]);
        assert_eq!(
            recent.to_read(7, [3, 4, 1]),
            ToRead {
                through: 12,
                candidates: vec![10, 12]
            }
        );
        // Other sites know nothing of it.
        assert_eq!(recent.to_read(8, [1]), ToRead::default());
        assert_eq!(recent.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn ids_are_forgotten_when_the_window_passes_by_the_database_s_clock() {
        let recent = Recent::default();
        recent.learn(1, &[row(5, 50, &[1]), row(6, 0, &[2]), row(7, 61, &[3])]);
        // Batch 7 was already older than the window: not kept, but read.
        assert_eq!(recent.to_read(1, [3]).through, 7);
        assert_eq!(recent.len(), 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.to_read(1, [1, 2]).candidates, vec![6]);
        tokio::time::advance(Duration::from_secs(50)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.len(), 0);
        assert_eq!(recent.to_read(1, [2]).through, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_read_out_of_order_are_all_held() {
        // A bitmap heap scan returns a site's batches in the order their
        // rows lie in the table, which concurrent writers fill out of
        // batch order.
        let recent = Recent::default();
        recent.learn(7, &[row(12, 0, &[3]), row(10, 0, &[1]), row(11, 0, &[2])]);
        assert_eq!(
            recent.to_read(7, [1, 2, 3]),
            ToRead {
                through: 12,
                candidates: vec![10, 11, 12]
            }
        );
        assert_eq!(recent.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_this_replica_wrote_is_held_though_a_later_one_was_read_first() {
        // Two commits of one site on two connections: the second's read
        // under the lock (batch 11) is taken in before the first tells of
        // its own batch (10).
        let recent = Recent::default();
        recent.learn(7, &[row(11, 0, &[2])]);
        recent.wrote(7, 10, vec![1]);
        assert_eq!(
            recent.to_read(7, [1, 2]),
            ToRead {
                through: 11,
                candidates: vec![10, 11]
            }
        );
        // Taken in again, a batch is held once.
        recent.learn(7, &[row(10, 0, &[1]), row(11, 0, &[2])]);
        assert_eq!(recent.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_batch_taken_in_late_does_not_shadow_a_newer_record_of_its_hash() {
        let recent = Recent::default();
        recent.learn(1, &[row(6, 0, &[1])]);
        recent.learn(1, &[row(5, 50, &[1])]);
        assert_eq!(recent.to_read(1, [1]).candidates, vec![6]);
        // Batch 5 leaves the window; hash 1 stays, held by batch 6.
        tokio::time::advance(Duration::from_secs(11)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.to_read(1, [1]).candidates, vec![6]);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_batches_are_dropped_at_most_once_a_second() {
        let recent = Recent::default();
        // Read at t0 (a prune then), batch 5 is due at t0 + 500 ms.
        recent.learn(1, &[row(5, 0, &[1]), row(6, 0, &[2])]);
        recent.learn(
            1,
            &[BatchRow {
                batch_id: 7,
                age: WINDOW - Duration::from_millis(500),
                keys: vec![3],
            }],
        );
        tokio::time::advance(Duration::from_millis(700)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.len(), 3, "due, but pruned less than a second ago");
        tokio::time::advance(Duration::from_millis(300)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.len(), 2, "a second after the last prune");
        assert_eq!(recent.to_read(1, [3]).candidates, Vec::<i64>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_due_exactly_at_a_prune_is_dropped_by_it() {
        let recent = Recent::default();
        recent.learn(
            1,
            &[BatchRow {
                batch_id: 5,
                age: WINDOW - Duration::from_secs(1),
                keys: vec![1],
            }],
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn a_map_gives_memory_back_past_four_times_its_entries_and_4096() {
        assert!(!oversized(4096, 0));
        assert!(oversized(4097, 0));
        assert!(!oversized(4096, 1024));
        assert!(oversized(4097, 1024));
        assert!(!oversized(8000, 2000));
        assert!(oversized(8001, 2000));
        assert!(!oversized(100, 50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_that_left_the_window_gives_its_memory_back() {
        let recent = Recent::default();
        let keys: Vec<i64> = (0..20_000).collect();
        recent.learn(1, &[row(5, 0, &keys)]);
        tokio::time::advance(WINDOW).await;
        recent.learn(1, &[row(6, 0, &[1])]);
        let sites = recent.sites.lock().unwrap();
        let log = &sites[&1];
        assert_eq!((log.ids.len(), log.held.len()), (1, 1));
        assert!(log.ids.capacity() < 4096, "{}", log.ids.capacity());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hash_recorded_again_outlives_its_first_batch() {
        let recent = Recent::default();
        recent.learn(1, &[row(5, 50, &[1, 2]), row(6, 0, &[1])]);
        tokio::time::advance(Duration::from_secs(11)).await;
        recent.learn(1, &[]);
        assert_eq!(recent.to_read(1, [1, 2]).candidates, vec![6]);
        assert_eq!(recent.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_read_from_another_writer_mark_the_site_contended_for_a_while() {
        let recent = Recent::default();
        recent.wrote(1, 3, vec![1]);
        assert!(!recent.contended(1));
        // A candidate read again is not news.
        recent.learn(1, &[row(3, 0, &[1])]);
        assert!(!recent.contended(1));
        recent.learn(1, &[row(4, 0, &[2])]);
        assert!(recent.contended(1));
        assert!(!recent.contended(2));
        tokio::time::advance(CONTENDED).await;
        assert!(!recent.contended(1));
    }
}
