use super::*;
use crate::cache::LocalCache;
use crate::domain::Versioned;
use crate::store::Counted;
use std::sync::Mutex;
use std::time::Duration;

/// A store that records the groups it is given and answers each with
/// counts from 100 up, or with `answers` outcomes if set.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<(SiteId, usize)>>,
    short_answer: bool,
    /// The failures the first commits give, in order.
    failures: Mutex<std::collections::VecDeque<StoreError>>,
    /// Every commit fails as unavailable.
    down: bool,
    /// How many commits were asked for.
    calls: std::sync::atomic::AtomicUsize,
}

impl Recorder {
    fn failing(failures: Vec<StoreError>) -> Self {
        Recorder {
            failures: Mutex::new(failures.into()),
            ..Recorder::default()
        }
    }

    fn commits(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl HitStore for Recorder {
    async fn add_hits(
        &self,
        _hour: SystemTime,
        hits: &[SiteHits],
        _limits: Limits,
        _deadline: Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap();
        seen.extend(hits.iter().map(|h| (h.site, h.keys.len())));
        if self.down {
            return Err(StoreError::Unavailable("down".into()));
        }
        if let Some(failure) = self.failures.lock().unwrap().pop_front() {
            return Err(failure);
        }
        let mut out: Vec<Outcome> = hits
            .iter()
            .map(|h| {
                let n = h.keys.len() as i64;
                Outcome::Counted(Counted {
                    total: Versioned {
                        generation: 0,
                        count: 100 + n,
                    },
                    counts: (101..=100 + n).collect(),
                    page_counts: vec![None; h.len()],
                })
            })
            .collect();
        if self.short_answer {
            out.pop();
        }
        Ok(out)
    }
    async fn purge_requests(&self, _: SystemTime) -> Result<u64, StoreError> {
        unreachable!()
    }
}

/// Commits hits for `sites` (in arrival order) as one batch; returns
/// what each waiter was told.
async fn batch(store: &Recorder, sites: &[SiteId]) -> Vec<Reply> {
    batch_keyed(store, sites, false, Duration::from_secs(5)).await
}

/// As [`batch`], each hit with a request id if `keyed`, due `within`.
async fn batch_keyed(
    store: &Recorder,
    sites: &[SiteId],
    keyed: bool,
    within: Duration,
) -> Vec<Reply> {
    let cache = LocalCache::new(false);
    let mut waiting = Vec::new();
    let mut batch: Vec<Pending> = sites
        .iter()
        .enumerate()
        .map(|(i, &site)| {
            let (reply, answer) = oneshot::channel();
            waiting.push(answer);
            Pending {
                site,
                key: keyed.then(|| format!("request-{i}").into()),
                page: None,
                facets: None,
                queued: Instant::now(),
                reply,
            }
        })
        .collect();
    let deadline = Instant::now() + within;
    let (_sender, mut queue) = mpsc::channel(1);
    let batch = Batch {
        pending: &mut batch,
        groups: &mut Vec::new(),
        deadline,
        limits: Limits::pages(10),
        more: Drain {
            queue: &mut queue,
            joined: Vec::new(),
            carried: &mut Vec::new(),
            room: 0,
            carry_limit: 0,
        },
    };
    commit(store, &cache, batch, &Metrics::default()).await;
    let mut replies = Vec::new();
    for w in waiting {
        replies.push(w.await.expect("every waiter is answered"));
    }
    replies
}

#[tokio::test]
async fn a_batch_goes_to_the_store_as_one_group_per_site_in_site_order() {
    let store = Recorder::default();
    let replies = batch(&store, &[3, 1, 3, 2, 3]).await;
    assert_eq!(*store.seen.lock().unwrap(), vec![(1, 1), (2, 1), (3, 3)]);
    // Each site's waiters get its counts in arrival order.
    let counts: Vec<Option<i64>> = replies
        .into_iter()
        .map(|r| r.unwrap().map(|(count, _)| count))
        .collect();
    assert_eq!(
        counts,
        vec![Some(101), Some(101), Some(102), Some(101), Some(103)]
    );
}

#[tokio::test]
async fn hits_queued_while_locks_were_awaited_join_their_site_s_group_or_wait() {
    let (sender, mut queue) = mpsc::channel(16);
    let mut waiting = Vec::new();
    for (i, site) in [2, 5, 2, 3, 2].into_iter().enumerate() {
        let (reply, answer) = oneshot::channel();
        waiting.push(answer);
        sender
            .try_send(Pending {
                site,
                key: Some(format!("id-{i}").into()),
                page: None,
                facets: None,
                queued: Instant::now(),
                reply,
            })
            .unwrap();
    }
    let mut groups = vec![SiteHits::anonymous(2, 1), SiteHits::anonymous(3, 0)];
    let mut carried = Vec::new();
    let mut drain = Drain {
        queue: &mut queue,
        joined: Vec::new(),
        carried: &mut carried,
        room: 3,
        carry_limit: 8,
    };
    drain.grow(&mut groups);
    // Room for three: sites 2, 2 and 3 joined; site 5 (not locked)
    // waits for the next batch; the last hit stays queued.
    let keys = |g: &SiteHits| -> Vec<Option<String>> {
        g.keys
            .iter()
            .map(|k| k.as_deref().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        keys(&groups[0]),
        vec![None, Some("id-0".into()), Some("id-2".into())]
    );
    assert_eq!(keys(&groups[1]), vec![Some("id-3".into())]);
    let joined: Vec<SiteId> = drain.joined.iter().map(|p| p.site).collect();
    assert_eq!(joined, vec![2, 2, 3]);
    assert_eq!(drain.room, 0);
    assert_eq!(carried.iter().map(|p| p.site).collect::<Vec<_>>(), vec![5]);
    assert_eq!(queue.try_recv().map(|p| p.site).ok(), Some(2));
}

#[tokio::test]
async fn a_waiting_commit_carries_at_most_its_carry_limit_of_other_sites_hits() {
    let (sender, mut queue) = mpsc::channel(16);
    let mut waiting = Vec::new();
    for site in [5, 6, 7, 2] {
        let (reply, answer) = oneshot::channel();
        waiting.push(answer);
        sender
            .try_send(Pending {
                site,
                key: None,
                page: None,
                facets: None,
                queued: Instant::now(),
                reply,
            })
            .unwrap();
    }
    let mut groups = vec![SiteHits::anonymous(2, 1)];
    let mut carried = Vec::new();
    let mut drain = Drain {
        queue: &mut queue,
        joined: Vec::new(),
        carried: &mut carried,
        room: 4,
        carry_limit: 2,
    };
    drain.grow(&mut groups);
    // Two carried fill the carry: site 7 and site 2 stay queued, and
    // the room is untouched.
    assert!(drain.joined.is_empty());
    assert_eq!(drain.room, 4);
    assert_eq!(
        carried.iter().map(|p| p.site).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert_eq!(queue.try_recv().map(|p| p.site).ok(), Some(7));
    assert_eq!(queue.try_recv().map(|p| p.site).ok(), Some(2));
}

#[tokio::test]
async fn a_store_answer_of_the_wrong_length_fails_the_whole_batch() {
    let store = Recorder {
        short_answer: true,
        ..Recorder::default()
    };
    let replies = batch(&store, &[1, 2]).await;
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Err(CommitError::Internal))),
        "{replies:?}"
    );
}

fn counts(replies: Vec<Reply>) -> Vec<Option<i64>> {
    replies
        .into_iter()
        .map(|r| r.unwrap().map(|(count, _)| count))
        .collect()
}

#[tokio::test]
async fn a_commit_that_wrote_nothing_is_tried_again() {
    let store = Recorder::failing(vec![
        StoreError::Unavailable("no primary".into()),
        StoreError::Unavailable("no primary".into()),
    ]);
    let replies = batch(&store, &[1, 1]).await;
    assert_eq!(store.commits(), 3);
    assert_eq!(counts(replies), vec![Some(101), Some(102)]);
}

#[tokio::test]
async fn a_commit_of_unknown_outcome_without_request_ids_is_not_repeated() {
    let store = Recorder::failing(vec![StoreError::OutcomeUnknown("lost".into())]);
    let replies = batch(&store, &[1, 2]).await;
    assert_eq!(store.commits(), 1);
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Err(CommitError::OutcomeUnknown(why)) if &**why == "lost")),
        "{replies:?}"
    );
    // One hit without an id is enough to keep the whole batch from a
    // repeat that could count the others twice.
    let store = Recorder::failing(vec![StoreError::OutcomeUnknown("lost".into())]);
    let mut retry = Retry::new(
        Instant::now() + Duration::from_secs(5),
        &[SiteHits {
            site: 1,
            keys: vec![Some("a".into()), None],
            pages: vec![None, None],
            ..SiteHits::default()
        }],
    );
    assert!(
        !retry
            .again(&StoreError::OutcomeUnknown("lost".into()))
            .await
    );
    assert_eq!(store.commits(), 0);
}

#[tokio::test]
async fn a_commit_of_unknown_outcome_whose_hits_all_carry_request_ids_is_tried_again() {
    let store = Recorder::failing(vec![StoreError::OutcomeUnknown("lost".into())]);
    let replies = batch_keyed(&store, &[1, 2], true, Duration::from_secs(5)).await;
    assert_eq!(store.commits(), 2);
    assert_eq!(counts(replies), vec![Some(101), Some(101)]);
}

#[tokio::test]
async fn a_batch_that_may_have_committed_is_never_answered_nothing_was_written() {
    // The first try is cut off mid-commit; every later one finds no
    // primary until the deadline.
    let mut failures = vec![StoreError::OutcomeUnknown("lost".into())];
    failures.extend((0..50).map(|_| StoreError::Unavailable("no primary".into())));
    let store = Recorder::failing(failures);
    let replies = batch_keyed(&store, &[1, 2], true, Duration::from_millis(300)).await;
    assert!(store.commits() > 1, "{}", store.commits());
    assert!(
        replies.iter().all(|r| matches!(
            r,
            Err(CommitError::OutcomeUnknown(why))
                if &**why == "no primary (after a try whose outcome is unknown)"
        )),
        "{replies:?}"
    );
}

#[tokio::test]
async fn bugs_and_refusals_are_not_tried_again() {
    let store = Recorder::failing(vec![StoreError::Internal(anyhow::anyhow!("bug"))]);
    let replies = batch_keyed(&store, &[1], true, Duration::from_secs(5)).await;
    assert_eq!(store.commits(), 1);
    assert!(
        matches!(replies[..], [Err(CommitError::Internal)]),
        "{replies:?}"
    );
}

#[tokio::test]
async fn retries_stop_at_the_hits_deadline() {
    let store = Recorder {
        down: true,
        ..Recorder::default()
    };
    let within = Duration::from_millis(300);
    let started = Instant::now();
    let replies = batch_keyed(&store, &[1], true, within).await;
    let took = started.elapsed();
    assert!(took < within, "answered after {took:?}, past its deadline");
    assert!(
        matches!(&replies[..], [Err(CommitError::Unavailable(why))] if &**why == "down"),
        "{replies:?}"
    );
    // Waits of 25, 50 and 100 ms fit in 300 ms, a fourth of 200 ms
    // would not: four tries.
    assert_eq!(store.commits(), 4);
}
