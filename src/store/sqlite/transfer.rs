//! Export and import of every site ([`TransferStore`]).

use super::*;

/// Replaces a site's pages with `pages`. The caller holds the write lock.
pub(super) fn replace_pages(
    tx: &rusqlite::Transaction<'_>,
    id: SiteId,
    pages: &[PageDump],
) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM pages WHERE site_id = ?1")?
        .execute([id])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO pages (site_id, path, page_count) VALUES (?1, ?2, ?3) RETURNING page_id",
    )?;
    let mut day =
        tx.prepare_cached("INSERT INTO page_hits_daily (page_id, day, hits) VALUES (?1, ?2, ?3)")?;
    for page in pages {
        let page_id: i64 = insert.query_row(params![id, page.page, page.count], |r| r.get(0))?;
        for (d, hits) in &page.days {
            day.execute(params![page_id, d, hits])?;
        }
    }
    let total = pages.iter().filter(|p| !p.page.is_overflow()).count() as i64;
    tx.prepare_cached("UPDATE visitors SET page_total = ?2 WHERE site_id = ?1")?
        .execute(params![id, total])?;
    Ok(())
}

#[async_trait]
impl TransferStore for SqliteStore {
    async fn dump(&self) -> Result<Vec<SiteDump>, StoreError> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut sites = tx
                .prepare(&format!(
                    "SELECT {SITE_COLUMNS}, base_count FROM visitors ORDER BY site_id"
                ))?
                .query_map([], |r| {
                    Ok(SiteDump {
                        site: site_from_row(r)?,
                        base_count: r.get(SITE_COLUMNS_LEN)?,
                        buckets: Vec::new(),
                        pages: Vec::new(),
                        breakdowns: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            each_site_row(
                &tx,
                "SELECT site_id, hour, hits FROM hits_hourly ORDER BY site_id, hour",
                &mut sites,
                |dump, row| {
                    dump.buckets.push((at(row.get(1)?), row.get(2)?));
                    Ok(())
                },
            )?;
            each_site_row(
                &tx,
                "SELECT p.site_id, p.path, p.page_count, d.day, d.hits FROM pages p \
                 LEFT JOIN page_hits_daily d ON d.page_id = p.page_id \
                 ORDER BY p.site_id, p.path, d.day",
                &mut sites,
                |dump, row| {
                    let page: Page = row.get(1)?;
                    if dump.pages.last().is_none_or(|p| p.page != page) {
                        dump.pages.push(PageDump {
                            page,
                            count: row.get(2)?,
                            days: Vec::new(),
                        });
                    }
                    let day: Option<Day> = row.get(3)?;
                    if let (Some(day), Some(last)) = (day, dump.pages.last_mut()) {
                        last.days.push((day, row.get(4)?));
                    }
                    Ok(())
                },
            )?;
            each_site_row(
                &tx,
                "SELECT site_id, NULL AS path, NULL AS referrer, day, dimension, value, hits \
                 FROM site_breakdowns \
                 UNION ALL \
                 SELECT site_id, NULL, referrer, day, dimension, value, hits \
                 FROM referrer_breakdowns \
                 UNION ALL \
                 SELECT p.site_id, p.path, NULL, b.day, b.dimension, b.value, b.hits \
                 FROM page_breakdowns b JOIN pages p ON p.page_id = b.page_id \
                 ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST, 4, 5, 6",
                &mut sites,
                |dump, row| {
                    if let Some(dimension) = Dimension::from_code(row.get(4)?) {
                        dump.breakdowns.push(BreakdownDump {
                            page: row.get(1)?,
                            referrer: row.get(2)?,
                            day: row.get(3)?,
                            dimension,
                            value: row.get(5)?,
                            hits: row.get(6)?,
                        });
                    }
                    Ok(())
                },
            )?;
            Ok(sites)
        })
        .await
    }

    async fn import(&self, entries: &[ImportEntry]) -> Result<Vec<Imported>, StoreError> {
        let entries = entries.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut done = Vec::with_capacity(entries.len());
            let now = unix_seconds(SystemTime::now());
            for entry in &entries {
                let existing: Option<SiteId> = tx
                    .prepare_cached("SELECT site_id FROM visitors WHERE slug = ?1")?
                    .query_row([&entry.slug], |r| r.get(0))
                    .optional()?;
                let (id, generation) = match (existing, entry.replayed_base()) {
                    (Some(id), None) => {
                        let set = set_count_in(&tx, id, entry.count)?;
                        (id, set.map_or(0, |v| v.generation))
                    }
                    (Some(id), Some(base)) => {
                        tx.prepare_cached("DELETE FROM hits_hourly WHERE site_id = ?1")?
                            .execute([id])?;
                        // The breakdowns count the hours' hits: they go
                        // with them.
                        tx.prepare_cached("DELETE FROM site_breakdowns WHERE site_id = ?1")?
                            .execute([id])?;
                        tx.prepare_cached("DELETE FROM referrer_breakdowns WHERE site_id = ?1")?
                            .execute([id])?;
                        tx.prepare_cached(
                            "DELETE FROM page_breakdowns WHERE page_id IN \
                             (SELECT page_id FROM pages WHERE site_id = ?1)",
                        )?
                        .execute([id])?;
                        tx.prepare_cached(
                            "UPDATE visitors SET visitor_count = ?2, base_count = ?3, \
                             generation = generation + 1 WHERE site_id = ?1 RETURNING generation",
                        )?
                        .query_row(params![id, entry.count, base], |r| Ok((id, r.get(0)?)))?
                    }
                    (None, base) => tx
                        .prepare_cached(
                            "INSERT INTO visitors \
                             (slug, site_name, visitor_count, base_count, created_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING site_id, generation",
                        )?
                        .query_row(
                            params![
                                entry.slug,
                                entry.name,
                                entry.count,
                                base.unwrap_or(entry.count),
                                entry.created_at.unwrap_or(now)
                            ],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?,
                };
                let mut bucket = tx.prepare_cached(
                    "INSERT INTO hits_hourly (site_id, hour, hits) VALUES (?1, ?2, ?3)",
                )?;
                for (hour, hits) in entry.hours.iter().flatten() {
                    bucket.execute(params![id, hour, hits])?;
                }
                match &entry.pages {
                    Some(pages) => replace_pages(&tx, id, pages)?,
                    // Replayed over a site that was there: set-count's rule
                    // did not run.
                    None if existing.is_some() && entry.hours.is_some() => {
                        let paged: i64 = tx
                            .prepare_cached(
                                "SELECT coalesce(sum(page_count), 0) FROM pages WHERE site_id = ?1",
                            )?
                            .query_row([id], |r| r.get(0))?;
                        if !keeps_pages(entry.count, paged, false) {
                            replace_pages(&tx, id, &[])?;
                        }
                    }
                    None => {}
                }
                let mut site_row = tx.prepare_cached(
                    "INSERT INTO site_breakdowns (site_id, dimension, day, value, hits) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut page_row = tx.prepare_cached(
                    "INSERT INTO page_breakdowns (page_id, dimension, day, value, hits) \
                     SELECT page_id, ?3, ?4, ?5, ?6 FROM pages WHERE site_id = ?1 AND path = ?2",
                )?;
                let mut referrer_row = tx.prepare_cached(
                    "INSERT INTO referrer_breakdowns (site_id, referrer, dimension, day, value, hits) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for row in &entry.breakdowns {
                    let code = row.dimension.code();
                    match (&row.page, &row.referrer) {
                        (None, None) => {
                            site_row.execute(params![id, code, row.day, row.value, row.hits])?
                        }
                        (Some(page), _) => page_row
                            .execute(params![id, page, code, row.day, row.value, row.hits])?,
                        (None, Some(from)) => referrer_row
                            .execute(params![id, from, code, row.day, row.value, row.hits])?,
                    };
                }
                done.push(Imported {
                    id,
                    slug: entry.slug.clone(),
                    count: entry.count,
                    generation,
                    created: existing.is_none(),
                });
            }
            tx.commit()?;
            Ok(done)
        })
        .await
    }
}

/// Runs `sql`, whose rows come in site order with the site's id first,
/// and hands each row to `each` with its site's dump (`sites`, in site
/// order too: the two lists are walked side by side). Rows of a site not
/// in `sites` are skipped.
fn each_site_row(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    sites: &mut [SiteDump],
    mut each: impl FnMut(&mut SiteDump, &rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut i = 0;
    while let Some(row) = rows.next()? {
        if let Some(dump) = dump_of(sites, &mut i, row.get(0)?) {
            each(dump, row)?;
        }
    }
    Ok(())
}

/// The dump of site `id` in `sites` (in site order), looked for from the
/// `i`th on, which is left at it: rows read in site order find their
/// sites in one walk.
fn dump_of<'a>(sites: &'a mut [SiteDump], i: &mut usize, id: SiteId) -> Option<&'a mut SiteDump> {
    while sites.get(*i).is_some_and(|d| d.site.id < id) {
        *i += 1;
    }
    sites.get_mut(*i).filter(|d| d.site.id == id)
}
