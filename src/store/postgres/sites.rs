//! Sites ([`SiteStore`]): their rows, rules and counts.

use super::*;

/// Sets the count of a site, keeping `count = base + buckets`, and starts a
/// new generation; `None` if there is no such site. The row is locked before the buckets are summed:
/// in READ COMMITTED the sum then sees every hit committed before the lock,
/// and no hit on this site can commit until we do.
async fn set_count_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: SiteId,
    count: i64,
) -> Result<Option<Versioned>, tokio_postgres::Error> {
    if !lock_site(tx, id).await? {
        return Ok(None);
    }
    let sums = tx
        .query_one(
            "SELECT (SELECT coalesce(sum(hits), 0)::bigint FROM hits_hourly WHERE site_id = $1), \
                 (SELECT coalesce(sum(page_count), 0)::bigint FROM pages WHERE site_id = $1)",
            &[&id],
        )
        .await?;
    let (bucketed, paged): (i64, i64) = (sums.get(0), sums.get(1));
    // The counts recorded for retried requests are from before this count:
    // a retry after it is a new hit.
    tx.execute("DELETE FROM hit_batches WHERE site_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM hit_requests WHERE site_id = $1", &[&id])
        .await?;
    let set = set_count_split(count, bucketed);
    if set.drop_hours {
        // The breakdowns count the hours' hits: they go with them.
        tx.batch_execute(&format!(
            "DELETE FROM hits_hourly WHERE site_id = {id}; \
             DELETE FROM site_breakdowns WHERE site_id = {id}; \
             DELETE FROM referrer_breakdowns WHERE site_id = {id}; \
             DELETE FROM page_breakdowns WHERE page_id IN \
                 (SELECT page_id FROM pages WHERE site_id = {id});"
        ))
        .await?;
    }
    if !keeps_pages(count, paged, set.drop_hours) {
        tx.execute("DELETE FROM pages WHERE site_id = $1", &[&id])
            .await?;
        tx.execute(
            "UPDATE visitors SET page_total = 0 WHERE site_id = $1",
            &[&id],
        )
        .await?;
    }
    let row = tx
        .query_one(
            "UPDATE visitors SET visitor_count = $2, base_count = $3, \
             generation = generation + 1 WHERE site_id = $1 \
             RETURNING visitor_count, generation",
            &[&id, &count, &set.base],
        )
        .await?;
    Ok(Some(versioned(&row)))
}

#[async_trait]
impl SiteStore for PgStore {
    async fn site(&self, slug: &Slug) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE slug = $1"
                ))
                .await?;
            client
                .query_opt(&stmt, &[&slug.as_str()])
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }

    async fn site_by_id(&self, id: SiteId) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = $1"
                ))
                .await?;
            client
                .query_opt(&stmt, &[&id])
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.run(async |client| {
            let rows = client
                .query(
                    &format!("SELECT {SITE_COLUMNS} FROM visitors ORDER BY site_id"),
                    &[],
                )
                .await?;
            rows.into_iter().map(site_from_row).collect()
        })
        .await
    }

    async fn create_site(&self, new: &NewSite) -> Result<Site, StoreError> {
        let row = self
            .run(async |client| {
                client
                    .query_opt(
                        &format!(
                            "INSERT INTO visitors (slug, site_name, visitor_count, base_count, \
                             keep_params, allowed_origins, is_public, require_origin, \
                             trailing_slash) \
                             SELECT $1, $2, $3, $3, $4, $5, $6, $7, $8 \
                             WHERE NOT EXISTS (SELECT 1 FROM site_aliases WHERE alias = $1) \
                             ON CONFLICT (slug) DO NOTHING RETURNING {SITE_COLUMNS}"
                        ),
                        &[
                            &new.slug.as_str(),
                            &new.name,
                            &new.count,
                            &SiteRules::join(&new.rules.keep_params),
                            &SiteRules::join(&new.rules.origins),
                            &new.rules.public,
                            &new.rules.require_origin,
                            &new.rules.trailing_slash.as_str(),
                        ],
                    )
                    .await
            })
            .await?;
        match row {
            Some(row) => site_from_row(row).map_err(pg_error),
            None => Err(StoreError::Conflict),
        }
    }

    async fn delete_site(&self, id: SiteId) -> Result<bool, StoreError> {
        self.run(async |client| {
            let n = client
                .execute("DELETE FROM visitors WHERE site_id = $1", &[&id])
                .await?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_count(&self, id: SiteId, count: i64) -> Result<Option<Versioned>, StoreError> {
        self.run(async |client| {
            let tx = client.transaction().await?;
            let set = set_count_in(&tx, id, count).await?;
            // The ids it deleted stay in this replica's memory until their
            // window passes: a retry of one finds its batch gone and counts
            // as a fresh hit. Forgetting them here, after the commit, would
            // also forget a batch that a waiting commit wrote in between.
            tx.commit().await?;
            Ok(set)
        })
        .await
    }

    async fn set_rules(&self, id: SiteId, patch: &RulesPatch) -> Result<Option<Site>, StoreError> {
        let keep = patch.keep_params.as_deref().map(SiteRules::join);
        let origins = patch.origins.as_deref().map(SiteRules::join);
        let trailing = patch.trailing_slash.map(TrailingSlash::as_str);
        let aliases = patch.aliases.as_deref().map(SiteRules::join);
        self.run(async |client| {
            let tx = client.transaction().await?;
            if let Some(list) = &patch.aliases
                && !claim_aliases(&tx, id, list).await?
            {
                return Ok(Err(StoreError::Conflict));
            }
            let site = tx
                .query_opt(
                    &format!(
                        "UPDATE visitors SET keep_params = coalesce($2, keep_params), \
                             allowed_origins = coalesce($3, allowed_origins), \
                             is_public = coalesce($4, is_public), \
                             require_origin = coalesce($5, require_origin), \
                             trailing_slash = coalesce($6, trailing_slash), \
                             aliases = coalesce($7, aliases) \
                             WHERE site_id = $1 RETURNING {SITE_COLUMNS}"
                    ),
                    &[
                        &id,
                        &keep,
                        &origins,
                        &patch.public,
                        &patch.require_origin,
                        &trailing,
                        &aliases,
                    ],
                )
                .await?
                .map(site_from_row)
                .transpose()?;
            tx.commit().await?;
            Ok(Ok(site))
        })
        .await?
    }

    async fn site_by_alias(&self, alias: &Slug) -> Result<Option<Site>, StoreError> {
        self.run(async |client| {
            client
                .query_opt(
                    &format!(
                        "SELECT {SITE_COLUMNS} FROM visitors WHERE site_id = \
                         (SELECT site_id FROM site_aliases WHERE alias = $1)"
                    ),
                    &[&alias.as_str()],
                )
                .await?
                .map(site_from_row)
                .transpose()
        })
        .await
    }
}

/// Makes `aliases` site `id`'s, in its transaction `tx`: `false` (and the
/// transaction is to be rolled back) if one of them is another site's slug
/// or alias.
async fn claim_aliases(
    tx: &deadpool_postgres::Transaction<'_>,
    id: SiteId,
    aliases: &[String],
) -> Result<bool, tokio_postgres::Error> {
    let slugs = tx
        .query_opt(
            "SELECT 1 FROM visitors WHERE slug = ANY($1) AND site_id <> $2 LIMIT 1",
            &[&aliases, &id],
        )
        .await?;
    if slugs.is_some() {
        return Ok(false);
    }
    tx.execute("DELETE FROM site_aliases WHERE site_id = $1", &[&id])
        .await?;
    let claimed = tx
        .execute(
            "INSERT INTO site_aliases (alias, site_id) SELECT unnest($1::text[]), $2 \
             ON CONFLICT (alias) DO NOTHING",
            &[&aliases, &id],
        )
        .await?;
    Ok(claimed == aliases.len() as u64)
}
