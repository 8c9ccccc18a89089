//! A site's pages ([`PageStore`]): ranked, one page's days, deleted.

use std::ops::Range;

use super::*;

/// Counts `$3[i]` hits on page `$2[i]` of site `$1` (creating the pages
/// not there yet), adds them to the pages' buckets for day `$4`, and adds
/// `$5` new pages to the site's page total. Run only by the holder of the
/// site's row lock, who has read which pages exist and how many.
const COUNT_PAGES: &str = "\
WITH up AS (
    INSERT INTO pages (site_id, path, page_count)
    SELECT $1::bigint, u.path, u.n FROM unnest($2::text[], $3::bigint[]) AS u(path, n)
    ON CONFLICT (site_id, path) DO UPDATE SET page_count = pages.page_count + EXCLUDED.page_count
    RETURNING page_id, path, page_count
), bucket AS (
    INSERT INTO page_hits_daily (page_id, day, hits)
    SELECT up.page_id, $4::bigint, u.n
    FROM up JOIN unnest($2::text[], $3::bigint[]) AS u(path, n) ON u.path = up.path
    ON CONFLICT (page_id, day) DO UPDATE SET hits = page_hits_daily.hits + EXCLUDED.hits
), total AS (
    UPDATE visitors SET page_total = page_total + $5::bigint
    WHERE site_id = $1::bigint AND $5::bigint > 0
)
SELECT path, page_count FROM up";

/// A site's pages ranked by their hits in the days `[$2, $3)`.
const PAGES: &str = "\
SELECT p.path, p.page_count, coalesce(sum(d.hits), 0)::bigint AS range_hits
FROM pages p
LEFT JOIN page_hits_daily d ON d.page_id = p.page_id AND d.day >= $2 AND d.day < $3
WHERE p.site_id = $1
GROUP BY p.page_id
ORDER BY range_hits DESC, p.page_count DESC, p.path COLLATE \"C\"
LIMIT $4 OFFSET $5";

/// Deletes page `$2` of site `$1`.
const DELETE_PAGE: &str = "DELETE FROM pages WHERE site_id = $1 AND path = $2 RETURNING path";

/// Deletes the pages of site `$1` whose names start with `$2`.
const DELETE_PREFIX: &str =
    "DELETE FROM pages WHERE site_id = $1 AND starts_with(path, $2) RETURNING path";

/// Deletes the pages of site `$1` but `$5` (the overflow page) with fewer
/// than `$4` hits in the days `[$2, $3)`.
const DELETE_FEWER: &str = "\
DELETE FROM pages WHERE page_id IN (
    SELECT p.page_id FROM pages p
    LEFT JOIN page_hits_daily d ON d.page_id = p.page_id AND d.day >= $2::bigint
        AND d.day < $3::bigint
    WHERE p.site_id = $1::bigint AND p.path <> $5::text
    GROUP BY p.page_id
    HAVING coalesce(sum(d.hits), 0) < $4::bigint
)
RETURNING path";

/// One page's count, its hits since day `$3`, and its days in `[$3, $4)`.
const PAGE_SERIES: &str = "\
SELECT p.page_count,
    coalesce((SELECT sum(d.hits) FROM page_hits_daily d WHERE d.page_id = p.page_id AND d.day >= $3), 0)::bigint,
    coalesce(b.days, '{}'), coalesce(b.hits, '{}')
FROM pages p
LEFT JOIN LATERAL (
    SELECT array_agg(d.day ORDER BY d.day) AS days, array_agg(d.hits ORDER BY d.day) AS hits
    FROM page_hits_daily d WHERE d.page_id = p.page_id AND d.day >= $3 AND d.day < $4
) b ON true
WHERE p.site_id = $1 AND p.path = $2";

/// Counts a site's fresh hits on their pages (see [`PagePlan`]) and adds
/// them to the pages' buckets for `day`; returns each hit's page count,
/// and where each landed. The caller holds the site's row lock.
pub(super) async fn count_pages<'a>(
    tx: &tokio_postgres::Client,
    hits: &'a SiteHits,
    plan: &Plan<'_>,
    page_limit: i64,
    day: i64,
    recorded: &(dyn Fn(&str) -> Option<PageCount> + Sync),
) -> Result<(Vec<Option<PageCount>>, PagePlan<'a>), tokio_postgres::Error> {
    let names = PagePlan::names(hits);
    let (total, known) = futures_util::future::try_join(
        tx.query_one(
            "SELECT page_total FROM visitors WHERE site_id = $1",
            &[&hits.site],
        ),
        tx.query(
            "SELECT path FROM pages WHERE site_id = $1 AND path = ANY($2::text[])",
            &[&hits.site, &names],
        ),
    )
    .await?;
    let pages_now: i64 = total.get(0);
    let known: HashSet<String> = known.iter().map(|r| r.get(0)).collect();
    let pages = PagePlan::new(
        hits,
        plan,
        &|name| known.contains(name),
        (page_limit - pages_now).max(0),
    );
    let (names, ns): (Vec<&str>, Vec<i64>) = pages.tallies.iter().copied().unzip();
    let counted: HashMap<String, i64> = tx
        .query(
            COUNT_PAGES,
            &[&hits.site, &names, &ns, &day, &pages.created],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let totals: Vec<i64> = names
        .iter()
        .map(|n| counted.get(*n).copied().unwrap_or_default())
        .collect();
    Ok((pages.counts(plan, &totals, recorded), pages))
}

#[async_trait]
impl PageStore for PgStore {
    async fn pages(&self, slug: &Slug, slice: PageSlice) -> Result<Option<PageList>, StoreError> {
        let PageSlice {
            from,
            to,
            limit,
            offset,
        } = slice;
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let rows = tx
                .query(PAGES, &[&site.id, &from, &to, &(limit + 1), &offset])
                .await?;
            tx.commit().await?;
            let pages = rows
                .into_iter()
                .map(|r| {
                    Ok(PageStat {
                        page: r.try_get(0)?,
                        count: r.try_get(1)?,
                        hits: r.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            Ok(Some(PageList::from_rows(site, pages, limit)))
        })
        .await
    }

    async fn delete_pages(
        &self,
        id: SiteId,
        which: &PageSelector,
    ) -> Result<Option<u64>, StoreError> {
        self.run(async |client| {
            let tx = client.transaction().await?;
            // The site's row first, as a commit of hits on it takes it: the
            // pages chosen and the page total are those no hit is changing.
            if !lock_site(&tx, id).await? {
                return Ok(None);
            }
            let rows = match which {
                PageSelector::Named(page) => tx.query(DELETE_PAGE, &[&id, &page.as_str()]).await?,
                PageSelector::Prefix(prefix) => tx.query(DELETE_PREFIX, &[&id, &&**prefix]).await?,
                PageSelector::FewerThan { hits, from, to } => {
                    tx.query(DELETE_FEWER, &[&id, from, to, hits, &OVERFLOW_PAGE])
                        .await?
                }
            };
            let named = rows
                .iter()
                .filter(|r| r.get::<_, &str>(0) != OVERFLOW_PAGE)
                .count() as i64;
            if named > 0 {
                tx.execute(
                    "UPDATE visitors SET page_total = page_total - $2 WHERE site_id = $1",
                    &[&id, &named],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(Some(rows.len() as u64))
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
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let row = tx
                .query_opt(PAGE_SERIES, &[&site.id, &page.as_str(), &from, &to])
                .await?;
            tx.commit().await?;
            let (before, days) = match row {
                None => (0, Vec::new()),
                Some(row) => {
                    let count: i64 = row.try_get(0)?;
                    let since: i64 = row.try_get(1)?;
                    let days: Vec<i64> = row.try_get(2)?;
                    let hits: Vec<i64> = row.try_get(3)?;
                    (count - since, days.into_iter().zip(hits).collect())
                }
            };
            Ok(Some(PageSeries {
                site,
                page: page.clone(),
                before,
                days,
            }))
        })
        .await
    }
}
