//! Export and import of every site ([`TransferStore`]).

use super::*;

/// Every page, by name in byte order (as SQLite orders them), whatever
/// the database's collation: one export order for both stores.
const DUMP_PAGES: &str = "\
SELECT p.site_id, p.path, p.page_count, coalesce(b.days, '{}'), coalesce(b.hits, '{}')
FROM pages p
LEFT JOIN LATERAL (
    SELECT array_agg(d.day ORDER BY d.day) AS days, array_agg(d.hits ORDER BY d.day) AS hits
    FROM page_hits_daily d WHERE d.page_id = p.page_id
) b ON true
ORDER BY p.site_id, p.path COLLATE \"C\"";

/// Every breakdown row: each site's own (no page, no referrer) first,
/// then its referrers' and its pages', each by name in byte order, each by
/// day, dimension and value in byte order (as SQLite orders them).
const DUMP_BREAKDOWNS: &str = "\
SELECT * FROM (
    SELECT site_id, NULL::text AS path, NULL::text AS referrer, day, dimension, value, hits
    FROM site_breakdowns
    UNION ALL
    SELECT site_id, NULL, referrer, day, dimension, value, hits FROM referrer_breakdowns
    UNION ALL
    SELECT p.site_id, p.path, NULL, b.day, b.dimension, b.value, b.hits
    FROM page_breakdowns b JOIN pages p ON p.page_id = b.page_id
) r
ORDER BY r.site_id, r.path COLLATE \"C\" NULLS FIRST, r.referrer COLLATE \"C\" NULLS FIRST,
    r.day, r.dimension, r.value COLLATE \"C\"";

/// Drops the breakdowns of sites `$1`, of their referrers and of their
/// pages.
const IMPORT_CLEAR_BREAKDOWNS: &str = "\
WITH site AS (
    DELETE FROM site_breakdowns b USING unnest($1::bigint[]) AS u(id) WHERE b.site_id = u.id
), referred AS (
    DELETE FROM referrer_breakdowns b USING unnest($1::bigint[]) AS u(id) WHERE b.site_id = u.id
)
DELETE FROM page_breakdowns b USING pages p, unnest($1::bigint[]) AS u(id)
WHERE p.site_id = u.id AND b.page_id = p.page_id";

/// Site rows `(site $1[i], dimension $2[i], day $3[i], value $4[i], hits
/// $5[i])`, a referrer's where `$6[i]` names one.
const IMPORT_SITE_BREAKDOWNS: &str = "\
WITH u AS (
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[], $5::bigint[],
        $6::text[]) AS u(site_id, dimension, day, value, hits, referrer)
), referred AS (
    INSERT INTO referrer_breakdowns (site_id, referrer, dimension, day, value, hits)
    SELECT site_id, referrer, dimension, day, value, hits FROM u WHERE referrer IS NOT NULL
)
INSERT INTO site_breakdowns (site_id, dimension, day, value, hits)
SELECT site_id, dimension, day, value, hits FROM u WHERE referrer IS NULL";

/// Page rows, the page named by its site `$1[i]` and name `$2[i]`.
const IMPORT_PAGE_BREAKDOWNS: &str = "\
INSERT INTO page_breakdowns (page_id, dimension, day, value, hits)
SELECT p.page_id, u.dimension, u.day, u.value, u.hits
FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::bigint[], $5::text[], $6::bigint[])
    AS u(site_id, path, dimension, day, value, hits)
JOIN pages p ON p.site_id = u.site_id AND p.path = u.path";

/// Creates pages `$2[i]` of sites `$1[i]` with counts `$3[i]`.
const IMPORT_PAGES: &str = "\
INSERT INTO pages (site_id, path, page_count)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
RETURNING page_id, site_id, path";

const IMPORT_PAGE_DAYS: &str = "\
INSERT INTO page_hits_daily (page_id, day, hits)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])";

/// Sets the page total `$2[i]` of site `$1[i]`.
const IMPORT_PAGE_TOTALS: &str = "\
UPDATE visitors v SET page_total = u.total
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, total) WHERE v.site_id = u.id";

const DUMP: &str = "\
SELECT v.site_id, v.slug, v.site_name, v.visitor_count, v.generation, v.created_at,
    v.page_total, v.keep_params, v.allowed_origins, v.is_public, v.require_origin,
    v.trailing_slash, v.aliases, v.base_count,
    coalesce(b.hours, '{}'), coalesce(b.hits, '{}')
FROM visitors v
LEFT JOIN LATERAL (
    SELECT array_agg(h.hour ORDER BY h.hour) AS hours, array_agg(h.hits ORDER BY h.hour) AS hits
    FROM hits_hourly h
    WHERE h.site_id = v.site_id
) b ON true
ORDER BY v.site_id";

// The import's statements join an unnested array rather than test
// `= ANY(array)`: with the statistics of a table that the import itself is
// filling, the planner may scan it, and `ANY` then compares every row with
// every element.
const IMPORT_LOCK: &str = "\
SELECT v.site_id, v.slug FROM visitors v JOIN unnest($1::text[]) AS u(slug) ON v.slug = u.slug
ORDER BY v.site_id FOR UPDATE OF v";

const IMPORT_BUCKETED: &str = "\
SELECT h.site_id, sum(h.hits)::bigint
FROM hits_hourly h JOIN unnest($1::bigint[]) AS u(id) ON h.site_id = u.id
GROUP BY h.site_id";

const IMPORT_PAGED: &str = "\
SELECT p.site_id, sum(p.page_count)::bigint
FROM pages p JOIN unnest($1::bigint[]) AS u(id) ON p.site_id = u.id
GROUP BY p.site_id";

const IMPORT_CLEAR: &str = "\
DELETE FROM hits_hourly h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";

/// Sets count `$2[i]` and base `$3[i]` of site `$1[i]`, a new generation each.
const IMPORT_SET: &str = "\
UPDATE visitors v SET visitor_count = u.count, base_count = u.base, generation = v.generation + 1
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, count, base)
WHERE v.site_id = u.id
RETURNING v.site_id, v.generation";

/// The request ids recorded for the sites `$1`, which an import sets anew.
const IMPORT_FORGET_BATCHES: &str = "\
DELETE FROM hit_batches h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";

const IMPORT_FORGET_REQUESTS: &str = "\
DELETE FROM hit_requests h USING unnest($1::bigint[]) AS u(id) WHERE h.site_id = u.id";

/// How many times an import runs when a site it creates is created
/// meanwhile by another request.
const IMPORT_TRIES: u32 = 3;

/// Creates sites in the document's order, so ids (and so an export's
/// order) follow it.
const IMPORT_CREATE: &str = "\
INSERT INTO visitors (slug, site_name, visitor_count, base_count, created_at)
SELECT slug, name, count, base, coalesce(created, now())
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[])
    WITH ORDINALITY AS u(slug, name, count, base, created, i)
ORDER BY i
RETURNING site_id, slug, generation";

const IMPORT_HOURS: &str = "\
INSERT INTO hits_hourly (site_id, hour, hits)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[])";

/// Replaces the pages of every imported site whose entry carries pages,
/// and drops those of the sites in `unpaged`.
async fn import_pages(
    tx: &deadpool_postgres::Transaction<'_>,
    entries: &[ImportEntry],
    done: &[Imported],
    unpaged: &HashSet<SiteId>,
) -> Result<(), tokio_postgres::Error> {
    let (mut ids, mut totals) = (Vec::new(), Vec::new());
    let (mut page_sites, mut paths, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, imported) in entries.iter().zip(done) {
        let pages: &[PageDump] = match &entry.pages {
            Some(pages) => pages,
            None if unpaged.contains(&imported.id) => &[],
            None => continue,
        };
        ids.push(imported.id);
        totals.push(pages.iter().filter(|p| !p.page.is_overflow()).count() as i64);
        for page in pages {
            page_sites.push(imported.id);
            paths.push(page.page.as_str());
            counts.push(page.count);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM pages p USING unnest($1::bigint[]) AS u(id) WHERE p.site_id = u.id",
        &[&ids],
    )
    .await?;
    let created: HashMap<(SiteId, String), i64> = tx
        .query(IMPORT_PAGES, &[&page_sites, &paths, &counts])
        .await?
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect();
    let (mut day_pages, mut days, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, imported) in entries.iter().zip(done) {
        for page in entry.pages.iter().flatten() {
            let key = (imported.id, page.page.as_str().to_owned());
            let Some(&page_id) = created.get(&key) else {
                continue;
            };
            for &(day, n) in &page.days {
                day_pages.push(page_id);
                days.push(day);
                hits.push(n);
            }
        }
    }
    tx.execute(IMPORT_PAGE_DAYS, &[&day_pages, &days, &hits])
        .await?;
    tx.execute(IMPORT_PAGE_TOTALS, &[&ids, &totals]).await?;
    Ok(())
}

/// Writes the breakdown rows of every imported site (their pages are in
/// place; the sites' old rows are gone).
async fn import_breakdowns(
    tx: &deadpool_postgres::Transaction<'_>,
    entries: &[ImportEntry],
    done: &[Imported],
) -> Result<(), tokio_postgres::Error> {
    let (mut sites, mut dims, mut days, mut values, mut hits, mut referrers) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut p_sites, mut p_paths, mut p_dims, mut p_days, mut p_values, mut p_hits) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (entry, imported) in entries.iter().zip(done) {
        for row in &entry.breakdowns {
            match &row.page {
                None => {
                    sites.push(imported.id);
                    dims.push(row.dimension.code());
                    days.push(row.day);
                    values.push(row.value.as_str());
                    hits.push(row.hits);
                    referrers.push(row.referrer.as_deref());
                }
                Some(page) => {
                    p_sites.push(imported.id);
                    p_paths.push(page.as_str());
                    p_dims.push(row.dimension.code());
                    p_days.push(row.day);
                    p_values.push(row.value.as_str());
                    p_hits.push(row.hits);
                }
            }
        }
    }
    if !sites.is_empty() {
        tx.execute(
            IMPORT_SITE_BREAKDOWNS,
            &[&sites, &dims, &days, &values, &hits, &referrers],
        )
        .await?;
    }
    if !p_sites.is_empty() {
        tx.execute(
            IMPORT_PAGE_BREAKDOWNS,
            &[&p_sites, &p_paths, &p_dims, &p_days, &p_values, &p_hits],
        )
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// One try of [`Store::import`], in one transaction.
    async fn import_once(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        // A few set-wide statements per batch, not a few per site: a batch
        // of hundreds of sites is a handful of round trips.
        self.run(async |client| {
            let tx = client.transaction().await?;
            let slugs: Vec<&str> = entries.iter().map(|e| e.slug.as_str()).collect();
            // Locked in id order, the order the hit writer locks them in.
            let existing: HashMap<String, SiteId> = tx
                .query(IMPORT_LOCK, &[&slugs])
                .await?
                .into_iter()
                .map(|r| (r.get(1), r.get(0)))
                .collect();
            let ids: Vec<SiteId> = existing.values().copied().collect();
            let bucketed: HashMap<SiteId, i64> = tx
                .query(IMPORT_BUCKETED, &[&ids])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let paged: HashMap<SiteId, i64> = tx
                .query(IMPORT_PAGED, &[&ids])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let (mut set_ids, mut set_counts, mut set_bases) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cleared, mut new) = (Vec::new(), Vec::new());
            // Sites whose pages go, though their entries carry none.
            let mut unpaged = HashSet::new();
            for entry in entries {
                let Some(&id) = existing.get(entry.slug.as_str()) else {
                    new.push(entry);
                    continue;
                };
                let had = bucketed.get(&id).copied().unwrap_or(0);
                // As set-count, unless a replay replaces the buckets.
                let set = set_count_split(entry.count, had);
                let base = entry.replayed_base().unwrap_or(set.base);
                let drop_hours = entry.hours.is_none() && set.drop_hours;
                if entry.hours.is_some() || set.drop_hours {
                    cleared.push(id);
                }
                let paged = paged.get(&id).copied().unwrap_or(0);
                if entry.pages.is_none() && !keeps_pages(entry.count, paged, drop_hours) {
                    unpaged.insert(id);
                }
                set_ids.push(id);
                set_counts.push(entry.count);
                set_bases.push(base);
            }
            tx.execute(IMPORT_CLEAR, &[&cleared]).await?;
            // The breakdowns count the hours' hits: they go with them.
            tx.execute(IMPORT_CLEAR_BREAKDOWNS, &[&cleared]).await?;
            let mut generations: HashMap<SiteId, i64> = tx
                .query(IMPORT_SET, &[&set_ids, &set_counts, &set_bases])
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // As after a set-count, the ids recorded for these sites are
            // from before their new count: a retry after the import is a
            // new hit.
            tx.execute(IMPORT_FORGET_BATCHES, &[&set_ids]).await?;
            tx.execute(IMPORT_FORGET_REQUESTS, &[&set_ids]).await?;
            let new_slugs: Vec<&str> = new.iter().map(|e| e.slug.as_str()).collect();
            let new_names: Vec<&str> = new.iter().map(|e| e.name.as_str()).collect();
            let new_counts: Vec<i64> = new.iter().map(|e| e.count).collect();
            let new_bases: Vec<i64> = new
                .iter()
                .map(|e| e.replayed_base().unwrap_or(e.count))
                .collect();
            let new_created: Vec<Option<SystemTime>> = new
                .iter()
                .map(|e| e.created_at.map(crate::domain::time::at))
                .collect();
            let mut created: HashMap<String, SiteId> = HashMap::new();
            for row in tx
                .query(
                    IMPORT_CREATE,
                    &[
                        &new_slugs,
                        &new_names,
                        &new_counts,
                        &new_bases,
                        &new_created,
                    ],
                )
                .await?
            {
                generations.insert(row.get(0), row.get(2));
                created.insert(row.get(1), row.get(0));
            }
            let id_of = |slug: &str| existing.get(slug).or_else(|| created.get(slug)).copied();
            let (mut hour_sites, mut hours, mut hits) = (Vec::new(), Vec::new(), Vec::new());
            let mut done = Vec::with_capacity(entries.len());
            for entry in entries {
                let id = id_of(&entry.slug).unwrap_or_default();
                for &(hour, n) in entry.hours.iter().flatten() {
                    hour_sites.push(id);
                    hours.push(crate::domain::time::at(hour));
                    hits.push(n);
                }
                done.push(Imported {
                    id,
                    slug: entry.slug.clone(),
                    count: entry.count,
                    generation: generations.get(&id).copied().unwrap_or_default(),
                    created: !existing.contains_key(entry.slug.as_str()),
                });
            }
            if !created.is_empty() && !hours.is_empty() {
                // The foreign key check of each hour row runs a plan cached
                // when `visitors` was small: a scan, quadratic over a large
                // import (5 s instead of 0.7 s for 10 000 new sites). Fresh
                // statistics replan it. Without the right to analyze, this
                // is a warning, not an error.
                tx.batch_execute("ANALYZE visitors").await?;
            }
            tx.execute(IMPORT_HOURS, &[&hour_sites, &hours, &hits])
                .await?;
            import_pages(&tx, entries, &done, &unpaged).await?;
            import_breakdowns(&tx, entries, &done).await?;
            // As for a set count, the ids deleted stay in this replica's
            // memory until their window passes (see `SiteStore::set_count`).
            tx.commit().await?;
            Ok(done)
        })
        .await
    }
}

#[async_trait]
impl TransferStore for PgStore {
    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError> {
        // Every site and hour in one snapshot: an export that import takes
        // whole may be far larger than one request's work.
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
        self.run_until(deadline, async |client| {
            let tx = snapshot(client).await?;
            let rows = tx.query(DUMP, &[]).await?;
            let n = SITE_COLUMNS_LEN;
            let mut sites = rows
                .into_iter()
                .map(|row| {
                    Ok(SiteDump {
                        base_count: row.try_get(n)?,
                        buckets: buckets_from(row.try_get(n + 1)?, row.try_get(n + 2)?),
                        pages: Vec::new(),
                        breakdowns: Vec::new(),
                        site: site_from_row(row)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            let mut by_site: HashMap<SiteId, Vec<PageDump>> = HashMap::new();
            for row in tx.query(DUMP_PAGES, &[]).await? {
                let days: Vec<i64> = row.try_get(3)?;
                let hits: Vec<i64> = row.try_get(4)?;
                by_site.entry(row.try_get(0)?).or_default().push(PageDump {
                    page: row.try_get(1)?,
                    count: row.try_get(2)?,
                    days: days.into_iter().zip(hits).collect(),
                });
            }
            let mut rows_of: HashMap<SiteId, Vec<BreakdownDump>> = HashMap::new();
            for row in tx.query(DUMP_BREAKDOWNS, &[]).await? {
                let code: i16 = row.try_get(4)?;
                let Some(dimension) = Dimension::from_code(code) else {
                    continue;
                };
                let path: Option<String> = row.try_get(1)?;
                rows_of
                    .entry(row.try_get(0)?)
                    .or_default()
                    .push(BreakdownDump {
                        page: path.as_deref().and_then(|p| Page::stored(p).ok()),
                        referrer: row.try_get(2)?,
                        day: row.try_get(3)?,
                        dimension,
                        value: row.try_get(5)?,
                        hits: row.try_get(6)?,
                    });
            }
            tx.commit().await?;
            for dump in &mut sites {
                dump.pages = by_site.remove(&dump.site.id).unwrap_or_default();
                dump.breakdowns = rows_of.remove(&dump.site.id).unwrap_or_default();
            }
            Ok(sites)
        })
        .await
    }

    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        // A site the import creates may be created meanwhile by another
        // request (its slug is not locked until it exists): the unique
        // constraint refuses the insert, the transaction writes nothing,
        // and the import is run again, finding the site and importing over
        // it, as it would have had the other request come first.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.import_once(entries).await {
                Err(StoreError::Conflict) if tries < IMPORT_TRIES => continue,
                result => return result,
            }
        }
    }
}
