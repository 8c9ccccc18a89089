//! A site's pages ([`PageStore`]): ranked, one page's days, deleted.

use std::ops::Range;

use super::*;

#[async_trait]
impl PageStore for SqliteStore {
    async fn pages(&self, slug: &Slug, slice: PageSlice) -> Result<Option<PageList>, StoreError> {
        let slug = slug.clone();
        let PageSlice {
            from,
            to,
            limit,
            offset,
        } = slice;
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let pages = tx
                .prepare_cached(
                    "SELECT p.path, p.page_count, coalesce(sum(d.hits), 0) AS range_hits \
                     FROM pages p LEFT JOIN page_hits_daily d \
                         ON d.page_id = p.page_id AND d.day >= ?2 AND d.day < ?3 \
                     WHERE p.site_id = ?1 GROUP BY p.page_id \
                     ORDER BY range_hits DESC, p.page_count DESC, p.path \
                     LIMIT ?4 OFFSET ?5",
                )?
                .query_map(params![site.id, from, to, limit + 1, offset], |r| {
                    Ok(PageStat {
                        page: r.get(0)?,
                        count: r.get(1)?,
                        hits: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(PageList::from_rows(site, pages, limit)))
        })
        .await
    }

    async fn delete_pages(
        &self,
        id: SiteId,
        which: &PageSelector,
    ) -> Result<Option<u64>, StoreError> {
        let which = which.clone();
        self.write(move |conn| {
            // The write lock, taken at BEGIN, is the site's lock here: no
            // hit commits between the choice of pages and the page total.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !tx
                .prepare_cached("SELECT 1 FROM visitors WHERE site_id = ?1")?
                .exists([id])?
            {
                return Ok(None);
            }
            let deleted: Vec<Page> = match &which {
                PageSelector::Named(page) => tx
                    .prepare_cached(
                        "DELETE FROM pages WHERE site_id = ?1 AND path = ?2 RETURNING path",
                    )?
                    .query_map(params![id, page], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                PageSelector::Prefix(prefix) => tx
                    .prepare_cached(
                        "DELETE FROM pages \
                         WHERE site_id = ?1 AND substr(path, 1, length(?2)) = ?2 RETURNING path",
                    )?
                    .query_map(params![id, &**prefix], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                PageSelector::FewerThan { hits, from, to } => tx
                    .prepare_cached(
                        "DELETE FROM pages WHERE page_id IN ( \
                             SELECT p.page_id FROM pages p LEFT JOIN page_hits_daily d \
                                 ON d.page_id = p.page_id AND d.day >= ?2 AND d.day < ?3 \
                             WHERE p.site_id = ?1 AND p.path <> ?5 GROUP BY p.page_id \
                             HAVING coalesce(sum(d.hits), 0) < ?4) \
                         RETURNING path",
                    )?
                    .query_map(params![id, from, to, hits, OVERFLOW_PAGE], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let named = deleted.iter().filter(|p| !p.is_overflow()).count() as i64;
            if named > 0 {
                tx.prepare_cached(
                    "UPDATE visitors SET page_total = page_total - ?2 WHERE site_id = ?1",
                )?
                .execute(params![id, named])?;
            }
            tx.commit()?;
            Ok(Some(deleted.len() as u64))
        })
        .await
    }

    async fn page_series(
        &self,
        slug: &Slug,
        page: &Page,
        days: Range<Day>,
    ) -> Result<Option<PageSeries>, StoreError> {
        let Range {
            start: from,
            end: to,
        } = days;
        let (slug, page) = (slug.clone(), page.clone());
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(site) = site_by_slug(&tx, &slug)? else {
                return Ok(None);
            };
            let row: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT page_id, page_count FROM pages WHERE site_id = ?1 AND path = ?2",
                )?
                .query_row(params![site.id, page], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((page_id, count)) = row else {
                return Ok(Some(PageSeries {
                    site,
                    page,
                    before: 0,
                    days: Vec::new(),
                }));
            };
            let since: i64 = tx
                .prepare_cached(
                    "SELECT coalesce(sum(hits), 0) FROM page_hits_daily \
                     WHERE page_id = ?1 AND day >= ?2",
                )?
                .query_row(params![page_id, from], |r| r.get(0))?;
            let days = tx
                .prepare_cached(
                    "SELECT day, hits FROM page_hits_daily \
                     WHERE page_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day",
                )?
                .query_map(params![page_id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(PageSeries {
                site,
                page,
                before: count - since,
                days,
            }))
        })
        .await
    }
}
