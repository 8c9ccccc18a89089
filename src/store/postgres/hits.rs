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
        page_limit: i64,
        deadline: Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut hits = hits.to_vec();
        self.add_hits_growing(hour, &mut hits, page_limit, deadline, &mut AsGiven)
            .await
    }

    async fn add_hits_growing(
        &self,
        hour: SystemTime,
        hits: &mut [SiteHits],
        page_limit: i64,
        deadline: Instant,
        more: &mut (dyn Grow + Send),
    ) -> Result<Vec<Outcome>, StoreError> {
        self.run_tracked(deadline, async |client, sent| {
            commit::commit(client, sent, &self.recent, hour, hits, page_limit, more).await
        })
        .await
    }

    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError> {
        self.run(async |client| {
            let row = client.query_one(PURGE_IDS, &[&before]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .await
    }
}
