//! Hourly series and their retention ([`SeriesStore`]).

use super::*;

fn bucket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(SystemTime, i64)> {
    Ok((at(row.get(0)?), row.get(1)?))
}

#[async_trait]
impl SeriesStore for SqliteStore {
    async fn series(
        &self,
        slug: &Slug,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Option<SeriesData>, StoreError> {
        let slug = slug.clone();
        let (from, to) = (unix_seconds(from), unix_seconds(to));
        self.read(move |conn| {
            // One read transaction: both statements see the same snapshot.
            let tx = conn.unchecked_transaction()?;
            let head = tx
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS}, base_count + coalesce( \
                         (SELECT sum(h.hits) FROM hits_hourly h \
                          WHERE h.site_id = v.site_id AND h.hour < ?2), 0) \
                     FROM visitors v WHERE slug = ?1"
                ))?
                .query_row(params![slug, from], |r| {
                    Ok((site_from_row(r)?, r.get(SITE_COLUMNS_LEN)?))
                })
                .optional()?;
            let Some((site, before)) = head else {
                return Ok(None);
            };
            let buckets = tx
                .prepare_cached(
                    "SELECT hour, hits FROM hits_hourly \
                     WHERE site_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
                )?
                .query_map(params![site.id, from, to], bucket_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(SeriesData {
                site,
                before,
                buckets,
            }))
        })
        .await
    }

    async fn prune_series(&self, before: SystemTime) -> Result<u64, StoreError> {
        let before = unix_seconds(before);
        self.write(move |conn| {
            // SQLite has one writer at a time, so one transaction for all
            // sites cannot deadlock with anything.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE visitors SET base_count = base_count + \
                     (SELECT sum(h.hits) FROM hits_hourly h \
                      WHERE h.site_id = visitors.site_id AND h.hour < ?1) \
                 WHERE site_id IN (SELECT site_id FROM hits_hourly WHERE hour < ?1)",
                [before],
            )?;
            let folded = tx.execute("DELETE FROM hits_hourly WHERE hour < ?1", [before])?;
            let day = day_of(at(before));
            tx.execute("DELETE FROM page_hits_daily WHERE day < ?1", [day])?;
            tx.execute("DELETE FROM site_breakdowns WHERE day < ?1", [day])?;
            tx.execute("DELETE FROM page_breakdowns WHERE day < ?1", [day])?;
            tx.execute("DELETE FROM referrer_breakdowns WHERE day < ?1", [day])?;
            tx.commit()?;
            Ok(folded as u64)
        })
        .await
    }
}
