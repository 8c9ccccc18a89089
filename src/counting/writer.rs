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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::store::{Outcome, SiteHits, SiteId, Store, StoreError};

/// Why a queued hit was not counted. Cheap to clone: one commit's failure
/// is every waiter's answer.
#[derive(Debug, Clone)]
pub enum CommitError {
    Unavailable(Arc<str>),
    /// Counting it would take its site past the largest count.
    CountLimit,
    Internal,
}

/// A hit's outcome: the site's count including this hit, or `None` if the
/// site no longer exists.
pub type Reply = Result<Option<i64>, CommitError>;

#[derive(Debug)]
pub struct Pending {
    pub site: SiteId,
    /// The request id the hit came with, so a retry is counted once.
    pub key: Option<Box<str>>,
    /// When the hit was queued: its answer is due a store timeout later.
    pub queued: Instant,
    pub reply: oneshot::Sender<Reply>,
}

/// Runs until `stop` turns true, then closes the queue, commits what is
/// still in it, and returns.
pub async fn run(
    mut queue: mpsc::Receiver<Pending>,
    mut stop: watch::Receiver<bool>,
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    max_batch: usize,
    store_timeout: Duration,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut groups = Vec::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            taken = queue.recv_many(&mut batch, max_batch) => {
                if taken == 0 {
                    return; // closed and drained
                }
                let deadline = batch.iter().map(|p| p.queued).min().unwrap_or_else(Instant::now)
                    + store_timeout;
                commit(store.as_ref(), cache.as_ref(), &mut batch, &mut groups, deadline, &metrics).await;
            }
            _ = stop.wait_for(|stop| *stop).map(|r| r.is_ok()), if !stopping => {
                // New hits are refused from now on; queued ones still land.
                stopping = true;
                queue.close();
            }
        }
    }
}

async fn commit(
    store: &dyn Store,
    cache: &dyn Cache,
    batch: &mut Vec<Pending>,
    groups: &mut Vec<SiteHits>,
    deadline: Instant,
    metrics: &Metrics,
) {
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
        let key = p.key.take();
        match groups.last_mut() {
            Some(group) if group.site == p.site => group.keys.push(key),
            _ => groups.push(SiteHits {
                site: p.site,
                keys: vec![key],
            }),
        }
    }

    let started = Instant::now();
    let result = store
        .add_hits(hour_start(SystemTime::now()), groups, deadline)
        .await;
    metrics.commit(batch.len(), started.elapsed(), result.is_ok());

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
                StoreError::Unavailable(why) => {
                    tracing::warn!(hits = batch.len(), error = %why, "commit failed: store unavailable");
                    CommitError::Unavailable(why.into())
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
        for i in 0..group.keys.len() {
            let Some(p) = waiters.next() else { return };
            let reply = match &outcome {
                Outcome::Counted(c) => Ok(c.counts.get(i).copied()),
                Outcome::NoSite => Ok(None),
                Outcome::AtLimit => Err(CommitError::CountLimit),
            };
            let _ = p.reply.send(reply);
        }
    }
}

fn fail(batch: &mut Vec<Pending>, error: CommitError) {
    for p in batch.drain(..) {
        // A waiter that gave up (client gone) is no one to tell.
        let _ = p.reply.send(Err(error.clone()));
    }
}

/// The start of the UTC hour holding `t`.
pub fn hour_start(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs - secs % 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_start_truncates_to_the_hour() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 59 * 60 + 59);
        assert_eq!(hour_start(t), UNIX_EPOCH + Duration::from_secs(3 * 3600));
        let exact = UNIX_EPOCH + Duration::from_secs(7200);
        assert_eq!(hour_start(exact), exact);
    }
}
