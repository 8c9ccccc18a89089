//! Counting hits ([`HitStore`]): the commit itself is `commit.rs`; here,
//! the trait's entry points and the request ids' purge.

use super::*;

/// Deletes the `hit_batches` rows older than twice the id window (so
/// clocks that differ a little never drop a batch a replica still relies
/// on), and `hit_requests` rows (the release before's) older than `$1`.
const PURGE_IDS: &str = "\
WITH batches AS (
    DELETE FROM hit_batches WHERE created_at < now() - interval '2 minutes' RETURNING 1
), requests AS (
    DELETE FROM hit_requests WHERE created_at < $1 RETURNING 1
)
SELECT (SELECT count(*) FROM batches) + (SELECT count(*) FROM requests)";

#[async_trait]
impl HitStore for PgStore {
    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        limits: Limits,
        deadline: Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        match self.open_hits(hour, hits, limits, deadline).await? {
            Opening::Done(outcomes) => Ok(outcomes),
            Opening::Held(held) => held.finish(hits).await,
            Opening::Unlocked => unreachable!("PostgreSQL commits lock their sites"),
        }
    }

    async fn open_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        limits: Limits,
        deadline: Instant,
    ) -> Result<Opening<'_>, StoreError> {
        let sent = CommitSent::default();
        let client = self.client_by(deadline).await?;
        let on = commit::On {
            client: &client,
            sent: &sent,
            recent: &self.recent,
            hour,
        };
        let opened = timeout_at(deadline, commit::open(&on, hits, limits)).await;
        let (opened, client) = Self::settle(client, &sent, opened)?;
        Ok(match opened {
            commit::Opened::Done(outcomes) => Opening::Done(outcomes),
            commit::Opened::Held(held) => Opening::Held(Box::new(PgHeld {
                store: self,
                client: Some(client),
                sent,
                hour,
                limits,
                deadline,
                held: Some(held),
            })),
        })
    }

    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError> {
        self.run(async |client| {
            let row = client.query_one(PURGE_IDS, &[&before]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .await
    }
}

/// A commit that holds its sites' locks on `client`, in an open
/// transaction, until [`HeldCommit::finish`].
struct PgHeld<'a> {
    store: &'a PgStore,
    client: Option<Object>,
    sent: CommitSent,
    hour: SystemTime,
    limits: Limits,
    deadline: Instant,
    held: Option<commit::Held>,
}

#[async_trait]
impl HeldCommit for PgHeld<'_> {
    async fn finish(mut self: Box<Self>, hits: &[SiteHits]) -> Result<Vec<Outcome>, StoreError> {
        let (Some(client), Some(held)) = (self.client.take(), self.held.take()) else {
            unreachable!("a held commit is finished once");
        };
        let on = commit::On {
            client: &client,
            sent: &self.sent,
            recent: &self.store.recent,
            hour: self.hour,
        };
        let done = timeout_at(self.deadline, commit::finish(&on, hits, self.limits, held)).await;
        PgStore::settle(client, &self.sent, done).map(|(outcomes, _)| outcomes)
    }
}

impl Drop for PgHeld<'_> {
    /// Unfinished, the connection is still in the transaction holding the
    /// locks: it must not go back to the pool, and closing it rolls the
    /// transaction back.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}
