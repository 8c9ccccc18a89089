//! Group commit: every hit is durable before it is acknowledged, and hits
//! that arrive while a commit is in flight share the next one.
//!
//! Requests put a [`Pending`] hit on a bounded queue and wait for its reply.
//! One task takes whatever is queued (at least one hit, at most
//! `max_batch`), adds it to the store in one transaction, and answers each
//! waiter with its own count. A lone hit is committed at once: there is no
//! timer, the batch is simply whatever queued up during the previous commit.
//! So batches grow with load, and durability costs one commit per batch
//! rather than one per hit.
//!
//! A commit that fails because the store went away (a primary failover) is
//! tried again within its hits' deadline, on a new connection that may find
//! the new primary: always when nothing was written, and when the outcome
//! is unknown only if every hit carries a request id, so that the store
//! counts a hit that did land once and gives it its first count.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cache::Cache;
use crate::domain::breakdown::Facets;
use crate::domain::time::hour_start;
use crate::domain::{Page, SiteId};
use crate::metrics::Metrics;
use crate::store::{HitStore, Limits, Opening, Outcome, PageCount, SiteHits, StoreError};

/// Why a queued hit was not counted. Cheap to clone: one commit's failure
/// is every waiter's answer.
#[derive(Debug, Clone)]
pub enum CommitError {
    /// Nothing was written.
    Unavailable(Arc<str>),
    /// The store went away during the commit: the hit may have been counted.
    OutcomeUnknown(Arc<str>),
    /// Counting it would take its site past the largest count.
    CountLimit,
    Internal,
}

/// A hit's outcome: the site's count including this hit and its page's
/// count if it named one, or `None` if the site no longer exists.
pub type Reply = Result<Option<(i64, Option<PageCount>)>, CommitError>;

#[derive(Debug)]
pub struct Pending {
    pub site: SiteId,
    /// The request id the hit came with, so a retry is counted once.
    pub key: Option<Box<str>>,
    /// The page the hit names, if any.
    pub page: Option<Page>,
    /// What it counts under in the breakdowns, if they are kept.
    pub facets: Option<Box<Facets>>,
    /// When the hit was queued: its answer is due a store timeout later.
    pub queued: Instant,
    pub reply: oneshot::Sender<Reply>,
}

/// Runs until `stop` turns true, then closes the queue, commits what is
/// still in it, and returns.
pub async fn run(
    mut queue: mpsc::Receiver<Pending>,
    mut stop: watch::Receiver<bool>,
    store: Arc<dyn HitStore>,
    cache: Arc<dyn Cache>,
    settings: super::WriterSettings,
    metrics: Arc<Metrics>,
) {
    let super::WriterSettings {
        max_batch,
        store_timeout,
        page_limit,
        value_limit,
        ..
    } = settings;
    let limits = Limits {
        pages: page_limit,
        values: value_limit,
    };
    let mut batch = Vec::with_capacity(max_batch);
    let mut groups = Vec::new();
    // Hits taken from the queue while a commit held other sites' locks:
    // the next batch starts with them.
    let mut carried = Vec::new();
    let mut stopping = false;
    loop {
        if carried.is_empty() {
            tokio::select! {
                taken = queue.recv_many(&mut batch, max_batch) => {
                    if taken == 0 {
                        return; // closed and drained
                    }
                }
                _ = stop.wait_for(|stop| *stop).map(|r| r.is_ok()), if !stopping => {
                    // New hits are refused from now on; queued ones still land.
                    stopping = true;
                    queue.close();
                    continue;
                }
            }
        } else {
            batch.append(&mut carried);
        }
        let deadline = batch
            .iter()
            .map(|p| p.queued)
            .min()
            .unwrap_or_else(Instant::now)
            + store_timeout;
        let more = Drain {
            queue: &mut queue,
            joined: Vec::new(),
            carried: &mut carried,
            room: max_batch.saturating_sub(batch.len()),
            carry_limit: max_batch,
        };
        let batch = Batch {
            pending: &mut batch,
            groups: &mut groups,
            deadline,
            limits,
            more,
        };
        commit(store.as_ref(), cache.as_ref(), batch, &metrics).await;
    }
}

/// The hits queued while a commit waited for its sites' locks: those of
/// its sites join it (up to the batch limit), the others wait for the next.
struct Drain<'a> {
    queue: &'a mut mpsc::Receiver<Pending>,
    joined: Vec<Pending>,
    carried: &'a mut Vec<Pending>,
    room: usize,
    carry_limit: usize,
}

impl Drain<'_> {
    /// Appends to each group the queued hits of its site, in arrival
    /// order, while there is room; hits of other sites wait for the next
    /// commit (at most `carry_limit` of them are taken off the queue).
    fn grow(&mut self, groups: &mut [SiteHits]) {
        while self.room > 0 && self.carried.len() < self.carry_limit {
            let Ok(mut p) = self.queue.try_recv() else {
                break;
            };
            match groups.binary_search_by_key(&p.site, |g| g.site) {
                Ok(i) => {
                    groups[i].push(p.key.take(), p.page.take(), p.facets.take());
                    self.joined.push(p);
                    self.room -= 1;
                }
                Err(_) => self.carried.push(p),
            }
        }
    }
}

/// One commit's hits, with the buffers it reuses.
struct Batch<'a> {
    pending: &'a mut Vec<Pending>,
    groups: &'a mut Vec<SiteHits>,
    deadline: Instant,
    limits: Limits,
    more: Drain<'a>,
}

async fn commit(store: &dyn HitStore, cache: &dyn Cache, batch: Batch<'_>, metrics: &Metrics) {
    let Batch {
        pending: batch,
        groups,
        deadline,
        limits,
        mut more,
    } = batch;
    if Instant::now() >= deadline {
        // Waited out its time behind a stalled commit: answer now.
        metrics.store_error();
        return fail(
            batch,
            CommitError::Unavailable("timed out waiting for the store".into()),
        );
    }
    // A stable sort groups each site's hits and keeps their arrival order,
    // and sorted sites are the lock order the store relies on.
    batch.sort_by_key(|p| p.site);
    groups.clear();
    for p in batch.iter_mut() {
        let (key, page, facets) = (p.key.take(), p.page.take(), p.facets.take());
        match groups.last_mut() {
            Some(group) if group.site == p.site => group.push(key, page, facets),
            _ => {
                let mut group = SiteHits {
                    site: p.site,
                    ..SiteHits::default()
                };
                group.push(key, page, facets);
                groups.push(group);
            }
        }
    }

    let hour = hour_start(SystemTime::now());
    let mut retry = Retry::new(deadline, groups);
    let result = loop {
        let started = Instant::now();
        let result = match store.open_hits(hour, groups, limits, deadline).await {
            Ok(Opening::Done(outcomes)) => Ok(outcomes),
            Ok(Opening::Held(held)) => {
                // The locks are held: the hits of these sites that queued
                // while they were awaited join this commit.
                more.grow(groups);
                held.finish(groups).await
            }
            Ok(Opening::Unlocked) => store.add_hits(hour, groups, limits, deadline).await,
            Err(e) => Err(e),
        };
        let hits = groups.iter().map(SiteHits::len).sum();
        metrics.commit(hits, started.elapsed(), result.is_ok());
        if let Err(e) = &result {
            // Hits that joined while the locks were held are tried again
            // with the rest, so they too must all carry ids.
            retry.keyed = all_keyed(groups);
            if retry.again(e).await {
                metrics.store_error();
                tracing::info!(hits = batch.len(), error = %e, "commit failed; trying again");
                continue;
            }
        }
        break retry.honest(result);
    };
    // The hits that joined are answered with the rest, in the same order
    // as their groups: by site, then by arrival.
    if !more.joined.is_empty() {
        batch.append(&mut more.joined);
        batch.sort_by_key(|p| p.site);
    }

    let totals = match result {
        Ok(totals) if totals.len() == groups.len() => totals,
        Ok(totals) => {
            tracing::error!(
                sites = groups.len(),
                answers = totals.len(),
                "store answered a batch with the wrong number of counts"
            );
            return fail(batch, CommitError::Internal);
        }
        Err(e) => {
            metrics.store_error();
            let error = match e {
                StoreError::Unavailable(why) | StoreError::Refused(why) => {
                    tracing::warn!(hits = batch.len(), error = %why, "commit failed: store unavailable");
                    CommitError::Unavailable(why.into())
                }
                StoreError::OutcomeUnknown(why) => {
                    tracing::warn!(hits = batch.len(), error = %why, "commit failed: store lost, outcome unknown");
                    CommitError::OutcomeUnknown(why.into())
                }
                other => {
                    tracing::error!(hits = batch.len(), error = ?anyhow::Error::from(other), "commit failed");
                    CommitError::Internal
                }
            };
            return fail(batch, error);
        }
    };

    // Each site's waiters, in arrival order, get the counts the store gave.
    let mut waiters = batch.drain(..);
    for (group, outcome) in groups.iter().zip(totals) {
        if let Outcome::Counted(counted) = &outcome {
            cache.publish(group.site, counted.total);
        }
        if let Outcome::Counted(counted) = &outcome {
            let overflowed = counted
                .page_counts
                .iter()
                .flatten()
                .filter(|p| p.overflow)
                .count();
            metrics.pages_overflowed(overflowed as u64);
        }
        for i in 0..group.len() {
            let Some(p) = waiters.next() else { return };
            let reply = match &outcome {
                Outcome::Counted(c) => Ok(c
                    .counts
                    .get(i)
                    .map(|&count| (count, c.page_counts.get(i).copied().flatten()))),
                Outcome::NoSite => Ok(None),
                Outcome::AtLimit => Err(CommitError::CountLimit),
            };
            let _ = p.reply.send(reply);
        }
    }
}

/// The first wait before a commit is tried again; it doubles up to
/// [`RETRY_MAX`]. A failover takes a few hundred milliseconds at best, so
/// the first tries are quick and later ones do not hammer a store that
/// stays down.
const RETRY_FIRST: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_millis(400);

/// When a failed commit is tried again.
struct Retry {
    deadline: Instant,
    wait: Duration,
    /// Every hit carries a request id: a repeat of a commit that did land
    /// counts nothing and gets the first counts.
    keyed: bool,
    /// An earlier try may have committed: a later "nothing was written"
    /// speaks for that try alone.
    unknown: bool,
}

impl Retry {
    fn new(deadline: Instant, groups: &[SiteHits]) -> Self {
        Retry {
            deadline,
            wait: RETRY_FIRST,
            keyed: all_keyed(groups),
            unknown: false,
        }
    }

    /// The last try's result, unless it says nothing was written while an
    /// earlier try's outcome is unknown: then the batch's is unknown too.
    fn honest<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(StoreError::Unavailable(why)) if self.unknown => Err(StoreError::OutcomeUnknown(
                format!("{why} (after a try whose outcome is unknown)"),
            )),
            other => other,
        }
    }

    /// Whether a commit that failed with `e` is safe to try again, and
    /// there is time to: if so, waits first.
    async fn again(&mut self, e: &StoreError) -> bool {
        self.unknown |= matches!(e, StoreError::OutcomeUnknown(_));
        if !safe_to_retry(e, self.keyed) || Instant::now() + self.wait >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(RETRY_MAX);
        true
    }
}

fn all_keyed(groups: &[SiteHits]) -> bool {
    groups.iter().all(|g| g.keys.iter().all(Option::is_some))
}

/// A commit may be tried again when it wrote nothing, or when every hit in
/// it carries a request id (the store then counts each once).
fn safe_to_retry(e: &StoreError, keyed: bool) -> bool {
    match e {
        StoreError::Unavailable(_) => true,
        StoreError::OutcomeUnknown(_) => keyed,
        StoreError::Refused(_) | StoreError::Conflict | StoreError::Internal(_) => false,
    }
}

fn fail(batch: &mut Vec<Pending>, error: CommitError) {
    for p in batch.drain(..) {
        // A waiter that gave up (client gone) is no one to tell.
        let _ = p.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests;
