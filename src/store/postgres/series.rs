//! Hourly series and their retention ([`SeriesStore`]).

use super::*;

/// One statement, so one snapshot: the site, the hits before `$2`, and the
/// buckets in `[$2, $3)` as two parallel arrays.
const SERIES: &str = "\
SELECT v.site_id, v.slug, v.site_name, v.visitor_count, v.generation, v.created_at,
    v.page_total, v.keep_params, v.allowed_origins, v.is_public, v.require_origin,
    v.trailing_slash, v.aliases,
    v.base_count + coalesce(
        (SELECT sum(h.hits) FROM hits_hourly h WHERE h.site_id = v.site_id AND h.hour < $2),
        0)::bigint,
    coalesce(b.hours, '{}'), coalesce(b.hits, '{}')
FROM visitors v
LEFT JOIN LATERAL (
    SELECT array_agg(h.hour ORDER BY h.hour) AS hours, array_agg(h.hits ORDER BY h.hour) AS hits
    FROM hits_hourly h
    WHERE h.site_id = v.site_id AND h.hour >= $2 AND h.hour < $3
) b ON true
WHERE v.slug = $1";

/// Deletes site `$1`'s breakdowns, its referrers' and its pages' of the
/// days before `$2`.
const DROP_BREAKDOWNS: &str = "\
WITH site AS (
    DELETE FROM site_breakdowns WHERE site_id = $1 AND day < $2
), referred AS (
    DELETE FROM referrer_breakdowns WHERE site_id = $1 AND day < $2
)
DELETE FROM page_breakdowns b USING pages p
WHERE p.site_id = $1 AND b.page_id = p.page_id AND b.day < $2";

/// Folds one site's old buckets into its base count in one statement.
const FOLD: &str = "\
WITH old AS (
    DELETE FROM hits_hourly WHERE site_id = $1 AND hour < $2 RETURNING hits
), folded AS (
    SELECT count(*) AS buckets, coalesce(sum(hits), 0)::bigint AS hits FROM old
)
UPDATE visitors SET base_count = base_count + folded.hits
FROM folded
WHERE site_id = $1
RETURNING folded.buckets";

#[async_trait]
impl SeriesStore for PgStore {
    async fn series(
        &self,
        slug: &Slug,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Option<SeriesData>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(SERIES).await?;
            let Some(row) = client
                .query_opt(&stmt, &[&slug.as_str(), &from, &to])
                .await?
            else {
                return Ok(None);
            };
            let n = SITE_COLUMNS_LEN;
            Ok(Some(SeriesData {
                before: row.try_get(n)?,
                buckets: buckets_from(row.try_get(n + 1)?, row.try_get(n + 2)?),
                site: site_from_row(row)?,
            }))
        })
        .await
    }

    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError> {
        let sites: Vec<SiteId> = self
            .run(async |client| {
                let rows = client
                    .query(
                        "SELECT site_id FROM hits_hourly WHERE hour < $1 \
                         UNION SELECT site_id FROM site_breakdowns WHERE day < $2 \
                         ORDER BY site_id",
                        &[&before, &day_of(before)],
                    )
                    .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            })
            .await?;
        // A page's count is whole in its row: its old days just go.
        self.run(async |client| {
            client
                .execute(
                    "DELETE FROM page_hits_daily WHERE day < $1",
                    &[&day_of(before)],
                )
                .await
        })
        .await?;
        // One short transaction per site, so hits on other sites never wait
        // for a long one.
        let mut folded = 0;
        for site in sites {
            folded += self
                .run(async |client| {
                    let tx = client.transaction().await?;
                    // The site row first, like every other writer: no deadlock
                    // with a set-count that deletes these buckets.
                    tx.execute(
                        "SELECT 1 FROM visitors WHERE site_id = $1 FOR UPDATE",
                        &[&site],
                    )
                    .await?;
                    let n: i64 = tx
                        .query_opt(FOLD, &[&site, &before])
                        .await?
                        .map_or(0, |r| r.get(0));
                    // The breakdowns of the days gone, under the site's
                    // lock as a commit of hits writes them: never a
                    // deadlock with one.
                    tx.execute(DROP_BREAKDOWNS, &[&site, &day_of(before)])
                        .await?;
                    tx.commit().await?;
                    Ok(n.unsigned_abs())
                })
                .await?;
        }
        Ok(folded)
    }
}
