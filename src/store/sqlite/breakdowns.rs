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
            let limit = query.limit + 1;
            // The page's breakdown takes one parameter more: the page.
            let page = query.page.as_ref().map(Page::as_str);
            let mut params: Vec<&dyn ToSql> = vec![
                &site.id,
                &code,
                &query.from,
                &query.to,
                &limit,
                &query.offset,
            ];
            let sql = match &page {
                None => {
                    "SELECT value, sum(hits) AS n FROM site_breakdowns \
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                     GROUP BY value ORDER BY n DESC, value LIMIT ?5 OFFSET ?6"
                }
                Some(page) => {
                    params.push(page);
                    "SELECT b.value, sum(b.hits) AS n FROM pages p \
                     JOIN page_breakdowns b ON b.page_id = p.page_id \
                     WHERE p.site_id = ?1 AND p.path = ?7 AND b.dimension = ?2 \
                         AND b.day >= ?3 AND b.day < ?4 \
                     GROUP BY b.value ORDER BY n DESC, b.value LIMIT ?5 OFFSET ?6"
                }
            };
            let values = tx
                .prepare_cached(sql)?
                .query_map(&params[..], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
            Ok(Some(BreakdownList::from_rows(site, values, query.limit)))
        })
        .await
    }
}
