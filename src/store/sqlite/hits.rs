//! Counting hits ([`HitStore`]): one transaction per batch on the one
//! writer connection, and the request ids' purge.

use super::*;

/// Counts a site's fresh hits on their pages (see [`PagePlan`]) and adds
/// them to the pages' buckets for `day`; returns each hit's page count,
/// and where each landed. The caller holds SQLite's write lock, so the
/// page limit cannot be passed by another writer between the read of
/// `page_total` and the insert.
fn count_pages<'a>(
    tx: &rusqlite::Transaction<'_>,
    hits: &'a SiteHits,
    plan: &Plan<'_>,
    page_limit: i64,
    day: Day,
    recorded: &dyn Fn(&str) -> Option<PageCount>,
) -> rusqlite::Result<(Vec<Option<PageCount>>, PagePlan<'a>)> {
    let pages_now: i64 = tx
        .prepare_cached("SELECT page_total FROM visitors WHERE site_id = ?1")?
        .query_row([hits.site], |r| r.get(0))?;
    let mut exists = tx.prepare_cached("SELECT 1 FROM pages WHERE site_id = ?1 AND path = ?2")?;
    let mut known = std::collections::HashSet::new();
    for name in PagePlan::names(hits) {
        if exists.exists(params![hits.site, name])? {
            known.insert(name);
        }
    }
    let pages = PagePlan::new(
        hits,
        plan,
        &|name| known.contains(name),
        (page_limit - pages_now).max(0),
    );
    let mut upsert = tx.prepare_cached(
        "INSERT INTO pages (site_id, path, page_count) VALUES (?1, ?2, ?3) \
         ON CONFLICT (site_id, path) DO UPDATE SET page_count = page_count + excluded.page_count \
         RETURNING page_id, page_count",
    )?;
    let mut bucket = tx.prepare_cached(
        "INSERT INTO page_hits_daily (page_id, day, hits) VALUES (?1, ?2, ?3) \
         ON CONFLICT (page_id, day) DO UPDATE SET hits = hits + excluded.hits",
    )?;
    let mut totals = Vec::with_capacity(pages.tallies.len());
    for (name, n) in &pages.tallies {
        let (page_id, total): (i64, i64) =
            upsert.query_row(params![hits.site, name, n], |r| Ok((r.get(0)?, r.get(1)?)))?;
        bucket.execute(params![page_id, day, n])?;
        totals.push(total);
    }
    if pages.created > 0 {
        tx.prepare_cached("UPDATE visitors SET page_total = page_total + ?2 WHERE site_id = ?1")?
            .execute(params![hits.site, pages.created])?;
    }
    Ok((pages.counts(plan, &totals, recorded), pages))
}

/// Adds a site's fresh hits to its breakdowns, its pages' and its
/// referrers' for `day`, each value new to the site that day only while
/// there is room for it ([`cap_values`]). The caller holds SQLite's write lock, so no other
/// writer adds a value between the reads and the inserts.
fn count_breakdowns(
    tx: &rusqlite::Transaction<'_>,
    site: SiteId,
    mut rows: Vec<BreakdownRow<'_>>,
    value_limit: i64,
    day: Day,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut exists = tx.prepare_cached(
        "SELECT 1 FROM site_breakdowns \
         WHERE site_id = ?1 AND dimension = ?2 AND day = ?3 AND value = ?4",
    )?;
    let mut known = std::collections::HashSet::new();
    let mut fresh_dimensions = std::collections::HashSet::new();
    for r in rows.iter().filter(|r| r.is_site() && takes_room(r.value)) {
        if exists.exists(params![site, r.dimension, day, r.value])? {
            known.insert((r.dimension, r.value));
        } else {
            fresh_dimensions.insert(r.dimension);
        }
    }
    let mut used = std::collections::HashMap::new();
    if !fresh_dimensions.is_empty() {
        let mut count = tx.prepare_cached(
            "SELECT count(*) FROM site_breakdowns WHERE site_id = ?1 AND dimension = ?2 \
             AND day = ?3 AND value NOT IN (?4, ?5, ?6)",
        )?;
        for d in fresh_dimensions {
            let n: i64 = count.query_row(
                params![
                    site,
                    d,
                    day,
                    breakdown::NONE,
                    breakdown::UNKNOWN,
                    breakdown::OTHER
                ],
                |r| r.get(0),
            )?;
            used.insert(d, n);
        }
    }
    cap_values(
        &mut rows,
        &|d, v| known.contains(&(d, v)),
        &|d| used.get(&d).copied().unwrap_or(0),
        value_limit,
    );
    let mut site_row = tx.prepare_cached(
        "INSERT INTO site_breakdowns (site_id, dimension, day, value, hits) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (site_id, dimension, day, value) \
         DO UPDATE SET hits = hits + excluded.hits",
    )?;
    let mut page_row = tx.prepare_cached(
        "INSERT INTO page_breakdowns (page_id, dimension, day, value, hits) \
         SELECT page_id, ?3, ?4, ?5, ?6 FROM pages WHERE site_id = ?1 AND path = ?2 \
         ON CONFLICT (page_id, dimension, day, value) DO UPDATE SET hits = hits + excluded.hits",
    )?;
    let mut referrer_row = tx.prepare_cached(
        "INSERT INTO referrer_breakdowns (site_id, dimension, day, referrer, value, hits) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (site_id, dimension, day, referrer, value) \
         DO UPDATE SET hits = hits + excluded.hits",
    )?;
    for r in &rows {
        match (r.page, r.referrer) {
            (None, None) => site_row.execute(params![site, r.dimension, day, r.value, r.hits])?,
            (Some(page), _) => {
                page_row.execute(params![site, page, r.dimension, day, r.value, r.hits])?
            }
            (None, Some(referrer)) => {
                referrer_row.execute(params![site, r.dimension, day, referrer, r.value, r.hits])?
            }
        };
    }
    Ok(())
}

fn recorded_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Recorded> {
    let page_count: Option<i64> = row.get(1)?;
    let overflow: Option<bool> = row.get(2)?;
    Ok(Recorded {
        count: row.get(0)?,
        page: page_count.map(|count| PageCount {
            count,
            overflow: overflow.unwrap_or(false),
        }),
    })
}

#[async_trait]
impl HitStore for SqliteStore {
    async fn add_hits(
        &self,
        hour: SystemTime,
        hits: &[SiteHits],
        limits: Limits,
        // A local file has no network to hang on; SQLite's own busy
        // timeout (the store timeout) bounds lock waits.
        _deadline: tokio::time::Instant,
    ) -> Result<Vec<Outcome>, StoreError> {
        let hits = hits.to_vec();
        let day = day_of(hour);
        let hour = unix_seconds(hour);
        let now = unix_seconds(SystemTime::now());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(hits.len());
            {
                let mut count = tx.prepare_cached(
                    "UPDATE visitors SET visitor_count = visitor_count + ?2 \
                     WHERE site_id = ?1 AND visitor_count + ?2 <= ?3 \
                     RETURNING visitor_count, generation",
                )?;
                let mut exists = tx.prepare_cached("SELECT 1 FROM visitors WHERE site_id = ?1")?;
                let mut bucket = tx.prepare_cached(
                    "INSERT INTO hits_hourly (site_id, hour, hits) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (site_id, hour) DO UPDATE SET hits = hits + excluded.hits",
                )?;
                let mut recorded = tx.prepare_cached(
                    "SELECT count, page_count, page_overflow FROM hit_requests \
                     WHERE site_id = ?1 AND request_id = ?2",
                )?;
                let mut record = tx.prepare_cached(
                    "INSERT INTO hit_requests \
                     (site_id, request_id, count, page_count, page_overflow, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for h in &hits {
                    let mut known = std::collections::HashMap::new();
                    for key in h.distinct_keys() {
                        if let Some(r) = recorded
                            .query_row(params![h.site, key], recorded_from_row)
                            .optional()?
                        {
                            known.insert(key.to_owned(), r);
                        }
                    }
                    let plan = h.plan(&|k| known.contains_key(k));
                    let Some(total) = count
                        .query_row(params![h.site, plan.fresh, MAX_COUNT], versioned)
                        .optional()?
                    else {
                        out.push(if exists.exists([h.site])? {
                            Outcome::AtLimit
                        } else {
                            Outcome::NoSite
                        });
                        continue;
                    };
                    if plan.fresh > 0 {
                        bucket.execute(params![h.site, hour, plan.fresh])?;
                    }
                    let counts = plan.counts(total.count, &|k| known.get(k).and_then(|r| r.count));
                    let (page_counts, pages) = if h.has_pages() {
                        let (counts, pages) =
                            count_pages(&tx, h, &plan, limits.pages, day, &|k| {
                                known.get(k).and_then(|r| r.page)
                            })?;
                        (counts, Some(pages))
                    } else {
                        (vec![None; h.len()], None)
                    };
                    if h.has_facets() {
                        let rows = h.breakdown_rows(&plan, pages.as_ref());
                        count_breakdowns(&tx, h.site, rows, limits.values, day)?;
                    }
                    for (i, key) in plan.fresh_keyed(h) {
                        let page = page_counts[i];
                        record.execute(params![
                            h.site,
                            key,
                            counts[i],
                            page.map(|p| p.count),
                            page.map(|p| p.overflow),
                            now
                        ])?;
                    }
                    out.push(Outcome::Counted(Counted {
                        total,
                        counts,
                        page_counts,
                    }));
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn purge_requests(&self, before: SystemTime) -> Result<u64, StoreError> {
        let before = unix_seconds(before);
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM hit_requests WHERE created_at < ?1", [before])?;
            Ok(n as u64)
        })
        .await
    }
}
