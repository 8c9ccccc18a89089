//! Breakdowns ([`BreakdownStore`]): a site's or a page's hits per value.

use super::*;

#[async_trait]
impl BreakdownStore for SqliteStore {
    async fn breakdown(
        &self,
        slug: &Slug,
        query: &BreakdownQuery,
    ) -> Result<Option<BreakdownList>, StoreError> {
        let (slug, query) = (slug.clone(), query.clone());
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let code = query.dimension.code();
            let range = params![
                site.id,
                code,
                query.from,
                query.to,
                query.limit + 1,
                query.offset
            ];
            let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
            let values = match &query.page {
                None => tx
                    .prepare_cached(
                        "SELECT value, sum(hits) AS n FROM site_breakdowns \
                         WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                         GROUP BY value ORDER BY n DESC, value LIMIT ?5 OFFSET ?6",
                    )?
                    .query_map(range, row)?
                    .collect::<rusqlite::Result<Vec<(String, i64)>>>()?,
                Some(page) => tx
                    .prepare_cached(
                        "SELECT b.value, sum(b.hits) AS n FROM pages p \
                         JOIN page_breakdowns b ON b.page_id = p.page_id \
                         WHERE p.site_id = ?1 AND p.path = ?7 AND b.dimension = ?2 \
                             AND b.day >= ?3 AND b.day < ?4 \
                         GROUP BY b.value ORDER BY n DESC, b.value LIMIT ?5 OFFSET ?6",
                    )?
                    .query_map(
                        params![
                            site.id,
                            code,
                            query.from,
                            query.to,
                            query.limit + 1,
                            query.offset,
                            page.as_str()
                        ],
                        row,
                    )?
                    .collect::<rusqlite::Result<Vec<(String, i64)>>>()?,
            };
            Ok(Some(BreakdownList::from_rows(site, values, query.limit)))
        })
        .await
    }
}
