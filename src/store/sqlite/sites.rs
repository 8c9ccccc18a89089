//! Sites ([`SiteStore`]): their rows, rules and counts.

use super::*;

/// Sets the count of a site, keeping `count = base + buckets`; `false` if
/// there is no such site. The caller holds SQLite's write lock.
pub(super) fn set_count_in(
    tx: &rusqlite::Transaction<'_>,
    id: SiteId,
    count: i64,
) -> rusqlite::Result<Option<Versioned>> {
    let sums: Option<(i64, i64)> = tx
        .query_row(
            "SELECT (SELECT coalesce(sum(hits), 0) FROM hits_hourly WHERE site_id = ?1), \
                 (SELECT coalesce(sum(page_count), 0) FROM pages WHERE site_id = ?1) \
             FROM visitors WHERE site_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((bucketed, paged)) = sums else {
        return Ok(None);
    };
    // The counts recorded for retried requests are from before this count:
    // a retry after it is a new hit.
    tx.execute("DELETE FROM hit_requests WHERE site_id = ?1", [id])?;
    let set = set_count_split(count, bucketed);
    if set.drop_hours {
        // The breakdowns count the hours' hits: they go with them.
        tx.execute("DELETE FROM hits_hourly WHERE site_id = ?1", [id])?;
        tx.execute("DELETE FROM site_breakdowns WHERE site_id = ?1", [id])?;
        tx.execute("DELETE FROM referrer_breakdowns WHERE site_id = ?1", [id])?;
        tx.execute(
            "DELETE FROM page_breakdowns WHERE page_id IN \
             (SELECT page_id FROM pages WHERE site_id = ?1)",
            [id],
        )?;
    }
    if !keeps_pages(count, paged, set.drop_hours) {
        replace_pages(tx, id, &[])?;
    }
    tx.query_row(
        "UPDATE visitors SET visitor_count = ?2, base_count = ?3, generation = generation + 1 \
         WHERE site_id = ?1 RETURNING visitor_count, generation",
        params![id, count, set.base],
        versioned,
    )
    .map(Some)
}

#[async_trait]
impl SiteStore for SqliteStore {
    async fn site(&self, slug: &Slug) -> Result<Option<Site>, StoreError> {
        let slug = slug.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = ?1"
            ))?
            .query_row([slug], site_from_row)
            .optional()
        })
        .await
    }

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = ?1"
            ))?
            .query_row([id], site_from_row)
            .optional()
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SITE_COLUMNS} FROM visitors ORDER BY site_id"
            ))?
            .query_map([], site_from_row)?
            .collect()
        })
        .await
    }

    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError> {
        let new = new.clone();
        let created = self
            .write(move |conn| {
                conn.query_row(
                    &format!(
                        "INSERT INTO visitors (slug, site_name, visitor_count, base_count, created_at, \
                         keep_params, allowed_origins, is_public, require_origin, trailing_slash) \
                         SELECT ?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
                         WHERE NOT EXISTS (SELECT 1 FROM site_aliases WHERE alias = ?1) \
                         ON CONFLICT (slug) DO NOTHING RETURNING {SITE_COLUMNS}"
                    ),
                    params![
                        new.slug,
                        new.name,
                        new.count,
                        unix_seconds(SystemTime::now()),
                        SiteRules::join(&new.rules.keep_params),
                        SiteRules::join(&new.rules.origins),
                        new.rules.public,
                        new.rules.require_origin,
                        new.rules.trailing_slash.as_str(),
                    ],
                    site_from_row,
                )
                .optional()
            })
            .await?;
        created.ok_or(StoreError::Conflict)
    }

    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError> {
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM visitors WHERE site_id = ?1", [id])? > 0)
        })
        .await
    }

    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<Versioned>, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let set = set_count_in(&tx, id, count)?;
            tx.commit()?;
            Ok(set)
        })
        .await
    }

    async fn set_rules(&self, id: SiteId, patch: &RulesPatch) -> Result<Option<Site>, StoreError> {
        let keep = patch.keep_params.as_deref().map(SiteRules::join);
        let origins = patch.origins.as_deref().map(SiteRules::join);
        let (public, require) = (patch.public, patch.require_origin);
        let trailing = patch.trailing_slash.map(TrailingSlash::as_str);
        let claimed = patch.aliases.clone();
        let aliases = patch.aliases.as_deref().map(SiteRules::join);
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(list) = &claimed
                && !claim_aliases(&tx, id, list)?
            {
                return Ok(Err(StoreError::Conflict));
            }
            let site = tx
                .query_row(
                    &format!(
                        "UPDATE visitors SET keep_params = coalesce(?2, keep_params), \
                             allowed_origins = coalesce(?3, allowed_origins), \
                             is_public = coalesce(?4, is_public), \
                             require_origin = coalesce(?5, require_origin), \
                             trailing_slash = coalesce(?6, trailing_slash), \
                             aliases = coalesce(?7, aliases) \
                             WHERE site_id = ?1 RETURNING {SITE_COLUMNS}"
                    ),
                    params![id, keep, origins, public, require, trailing, aliases],
                    site_from_row,
                )
                .optional()?;
            tx.commit()?;
            Ok(Ok(site))
        })
        .await?
    }

    async fn site_by_alias(&self, alias: &Slug) -> Result<Option<Site>, StoreError> {
        let alias = alias.clone();
        self.read(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = \
                     (SELECT site_id FROM site_aliases WHERE alias = ?1)"
                ),
                [alias.as_str()],
                site_from_row,
            )
            .optional()
        })
        .await
    }
}

/// Makes `aliases` site `id`'s, in its transaction `tx`: `false` (and the
/// transaction is to be rolled back) if one of them is another site's slug
/// or alias.
fn claim_aliases(
    tx: &rusqlite::Transaction<'_>,
    id: SiteId,
    aliases: &[String],
) -> rusqlite::Result<bool> {
    let mut slug = tx.prepare_cached("SELECT 1 FROM visitors WHERE slug = ?1 AND site_id <> ?2")?;
    for alias in aliases {
        if slug.exists(params![alias, id])? {
            return Ok(false);
        }
    }
    tx.execute("DELETE FROM site_aliases WHERE site_id = ?1", [id])?;
    let mut claim = tx.prepare_cached(
        "INSERT INTO site_aliases (alias, site_id) VALUES (?1, ?2) ON CONFLICT (alias) DO NOTHING",
    )?;
    for alias in aliases {
        if claim.execute(params![alias, id])? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}
