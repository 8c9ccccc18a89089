//! Breakdowns ([`BreakdownStore`]): a site's, a page's or a referrer's hits
//! per value.

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
            let (sql, narrowed_to) = match query.narrowed() {
                Narrowed::Site => (
                    "SELECT value, sum(hits) AS n FROM site_breakdowns \
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                     GROUP BY value ORDER BY n DESC, value LIMIT ?5 OFFSET ?6",
                    None,
                ),
                Narrowed::Page(page) => (
                    "SELECT b.value, sum(b.hits) AS n FROM pages p \
                     JOIN page_breakdowns b ON b.page_id = p.page_id \
                     WHERE p.site_id = ?1 AND p.path = ?7 AND b.dimension = ?2 \
                         AND b.day >= ?3 AND b.day < ?4 \
                     GROUP BY b.value ORDER BY n DESC, b.value LIMIT ?5 OFFSET ?6",
                    Some(page),
                ),
                Narrowed::OneReferrer(referrer) => (
                    "SELECT value, sum(hits) AS n FROM site_breakdowns \
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                         AND value = ?7 \
                     GROUP BY value ORDER BY n DESC LIMIT ?5 OFFSET ?6",
                    Some(referrer),
                ),
                Narrowed::Referrer(referrer) => (
                    "SELECT value, sum(hits) AS n FROM referrer_breakdowns \
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                         AND referrer = ?7 \
                     GROUP BY value ORDER BY n DESC, value LIMIT ?5 OFFSET ?6",
                    Some(referrer),
                ),
                // The site's less every referrer's.
                Narrowed::Direct => (
                    "SELECT value, n FROM ( \
                         SELECT value, sum(hits) AS n FROM ( \
                             SELECT value, hits FROM site_breakdowns \
                             WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                             UNION ALL \
                             SELECT value, -hits FROM referrer_breakdowns \
                             WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day < ?4 \
                         ) GROUP BY value \
                     ) WHERE n > 0 ORDER BY n DESC, value LIMIT ?5 OFFSET ?6",
                    None,
                ),
            };
            let mut params: Vec<&dyn ToSql> = vec![
                &site.id,
                &code,
                &query.from,
                &query.to,
                &limit,
                &query.offset,
            ];
            if let Some(to) = &narrowed_to {
                params.push(to);
            }
            let values = tx
                .prepare_cached(sql)?
                .query_map(&params[..], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
            Ok(Some(BreakdownList::from_rows(site, values, query.limit)))
        })
        .await
    }

    async fn value_detail(
        &self,
        slug: &Slug,
        dimension: Dimension,
        value: &str,
        (from, to): (Day, Day),
        pages: i64,
    ) -> Result<Option<ValueDetail>, StoreError> {
        let (slug, value) = (slug.clone(), value.to_owned());
        let code = dimension.code();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let days = tx
                .prepare_cached(
                    "SELECT day, hits FROM site_breakdowns \
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?4 AND day < ?5 \
                         AND value = ?3 \
                     ORDER BY day",
                )?
                .query_map(params![site.id, code, value, from, to], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(Day, i64)>>>()?;
            let pages = tx
                .prepare_cached(
                    "SELECT p.path, sum(b.hits) AS n FROM pages p \
                     JOIN page_breakdowns b ON b.page_id = p.page_id \
                     WHERE p.site_id = ?1 AND b.dimension = ?2 AND b.day >= ?4 AND b.day < ?5 \
                         AND b.value = ?3 \
                     GROUP BY p.path ORDER BY n DESC, p.path LIMIT ?6",
                )?
                .query_map(params![site.id, code, value, from, to, pages], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
            Ok(Some(ValueDetail { site, days, pages }))
        })
        .await
    }
}
