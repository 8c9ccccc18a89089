//! Breakdowns ([`BreakdownStore`]): counted beside a batch's hits, and read
//! per site, page or referrer.

use super::*;

/// The statement that adds the rows `$2..$5`, `$8` (dimension, value, page
/// or NULL, hits, referrer or NULL; see [`BreakdownRow`]) to site `$1`'s
/// breakdowns, its pages' and its referrers' for day `$6`, its input
/// `WHERE` the guard holds. A value the site does not have that day yet,
/// that takes room ([`takes_room`](crate::store::takes_room)), counts as
/// itself only while its dimension has fewer than `$7` such values, the
/// new values ranked by their hits in the batch, then by value; else as
/// `(other)`, in the site's rows, its pages' and its referrers' (a
/// referrer row's referrer too: dimension 0 is the referrer's, see
/// [`Dimension::code`](crate::domain::breakdown::Dimension::code))
/// ([`cap_values`](crate::store::cap_values) is the same rule). Run by the
/// holder of the site's row lock, as a statement of its own (a new
/// snapshot, taken after the lock): no other writer adds a value between
/// its read and its write.
///
/// Which values are new is one primary-key probe per value (`EXISTS` as a
/// scalar subquery, so that it is not planned as an anti-join over the
/// site's whole day), and the room left is counted once per dimension that
/// has new values (`room`, materialized): a batch of 32 hits with 46 rows
/// took 0.5 ms this way against 2.7 ms as one join (`EXPLAIN ANALYZE`,
/// generic plan, a site at its limit of browser versions).
macro_rules! count_breakdowns {
    ($guard:literal) => {
        concat!(
            "\
WITH input AS (
    SELECT * FROM unnest($2::smallint[], $3::text[], $4::text[], $5::bigint[], $8::text[])
        AS i (dimension, value, path, hits, referrer)
    WHERE ",
            $guard,
            "
), fresh AS (
    SELECT i.dimension, i.value, i.hits FROM input i
    WHERE i.path IS NULL AND i.referrer IS NULL
        AND i.value NOT IN ('(none)', '(unknown)', '(other)')
        AND NOT (SELECT EXISTS (
            SELECT 1 FROM site_breakdowns b WHERE b.site_id = $1::bigint
                AND b.dimension = i.dimension AND b.day = $6::bigint AND b.value = i.value))
), room AS MATERIALIZED (
    SELECT d.dimension, $7::bigint - (
        SELECT count(*) FROM site_breakdowns b WHERE b.site_id = $1::bigint
            AND b.dimension = d.dimension AND b.day = $6::bigint
            AND b.value NOT IN ('(none)', '(unknown)', '(other)')) AS room
    FROM (SELECT DISTINCT dimension FROM fresh) d
), refused AS MATERIALIZED (
    SELECT f.dimension, f.value FROM (
        SELECT f.dimension, f.value,
            row_number() OVER (PARTITION BY f.dimension ORDER BY f.hits DESC, f.value COLLATE \"C\")
                AS place
        FROM fresh f
    ) f
    JOIN room r ON r.dimension = f.dimension
    WHERE f.place > r.room
), mapped AS (
    SELECT i.dimension, i.path, i.hits,
        CASE WHEN x.value IS NULL THEN i.value ELSE '(other)' END AS value,
        CASE WHEN y.value IS NULL THEN i.referrer ELSE '(other)' END AS referrer
    FROM input i
    LEFT JOIN refused x ON x.dimension = i.dimension AND x.value = i.value
    LEFT JOIN refused y ON y.dimension = 0 AND y.value = i.referrer
), site AS (
    INSERT INTO site_breakdowns (site_id, dimension, day, value, hits)
    SELECT $1::bigint, m.dimension, $6::bigint, m.value, sum(m.hits)
    FROM mapped m WHERE m.path IS NULL AND m.referrer IS NULL GROUP BY m.dimension, m.value
    ON CONFLICT (site_id, dimension, day, value)
        DO UPDATE SET hits = site_breakdowns.hits + EXCLUDED.hits
), referred AS (
    INSERT INTO referrer_breakdowns (site_id, referrer, dimension, day, value, hits)
    SELECT $1::bigint, m.referrer, m.dimension, $6::bigint, m.value, sum(m.hits)
    FROM mapped m WHERE m.referrer IS NOT NULL GROUP BY m.referrer, m.dimension, m.value
    ON CONFLICT (site_id, dimension, day, referrer, value)
        DO UPDATE SET hits = referrer_breakdowns.hits + EXCLUDED.hits
)
INSERT INTO page_breakdowns (page_id, dimension, day, value, hits)
SELECT p.page_id, m.dimension, $6::bigint, m.value, sum(m.hits)
FROM mapped m JOIN pages p ON p.site_id = $1::bigint AND p.path = m.path
GROUP BY p.page_id, m.dimension, m.value
ON CONFLICT (page_id, dimension, day, value)
    DO UPDATE SET hits = page_breakdowns.hits + EXCLUDED.hits"
        )
    };
}

const _: () = assert!(Dimension::Referrer.code() == 0);

/// For the locking path, which holds the site's lock already.
pub(super) const COUNT_BREAKDOWNS: &str = count_breakdowns!("true");

/// For the one-flight commit, pipelined after its counting statement: it
/// writes only if that statement counted, which then holds the site's row
/// lock (the row's `xmin` is this transaction's), and nothing when the
/// check of that statement failed and the transaction wrote nothing.
pub(super) const COUNT_BREAKDOWNS_IF_COUNTED: &str = count_breakdowns!(
    "EXISTS (SELECT 1 FROM visitors v WHERE v.site_id = $1::bigint
        AND v.xmin = pg_current_xact_id_if_assigned()::xid)"
);

/// Adds a site's fresh hits to its breakdowns with `statement` (one of the
/// two above, prepared); the pages they name are already counted in this
/// transaction. Sends at once, when first polled: pipelined, it runs in
/// the order it was sent.
pub(super) async fn count_breakdowns(
    client: &deadpool_postgres::ClientWrapper,
    statement: &tokio_postgres::Statement,
    site: SiteId,
    rows: &[BreakdownRow<'_>],
    value_limit: i64,
    day: Day,
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let dimensions: Vec<i16> = rows.iter().map(|r| r.dimension).collect();
    let values: Vec<&str> = rows.iter().map(|r| r.value).collect();
    let pages: Vec<Option<&str>> = rows.iter().map(|r| r.page).collect();
    let hits: Vec<i64> = rows.iter().map(|r| r.hits).collect();
    let referrers: Vec<Option<&str>> = rows.iter().map(|r| r.referrer).collect();
    client
        .execute(
            statement,
            &[
                &site,
                &dimensions,
                &values,
                &pages,
                &hits,
                &day,
                &value_limit,
                &referrers,
            ],
        )
        .await?;
    Ok(())
}

/// A site's hits per value of dimension `$2` in the days `[$3, $4)`.
const SITE_BREAKDOWN: &str = "\
SELECT value, sum(hits)::bigint AS n FROM site_breakdowns
WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
GROUP BY value ORDER BY n DESC, value COLLATE \"C\" LIMIT $5 OFFSET $6";

/// Page `$7`'s hits per value of dimension `$2` in the days `[$3, $4)`.
const PAGE_BREAKDOWN: &str = "\
SELECT b.value, sum(b.hits)::bigint AS n FROM pages p
JOIN page_breakdowns b ON b.page_id = p.page_id
WHERE p.site_id = $1 AND p.path = $7 AND b.dimension = $2 AND b.day >= $3 AND b.day < $4
GROUP BY b.value ORDER BY n DESC, b.value COLLATE \"C\" LIMIT $5 OFFSET $6";

/// The hits from referrer `$7` (not `(none)`) per value of dimension `$2`
/// (not the referrer's) in the days `[$3, $4)`.
const REFERRER_BREAKDOWN: &str = "\
SELECT value, sum(hits)::bigint AS n FROM referrer_breakdowns
WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day < $4 AND referrer = $7
GROUP BY value ORDER BY n DESC, value COLLATE \"C\" LIMIT $5 OFFSET $6";

/// The hits from no referrer per value of dimension `$2` (not the
/// referrer's) in the days `[$3, $4)`: the site's less every referrer's.
const DIRECT_BREAKDOWN: &str = "\
SELECT value, n FROM (
    SELECT value, sum(hits)::bigint AS n FROM (
        SELECT value, hits FROM site_breakdowns
        WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
        UNION ALL
        SELECT value, -hits FROM referrer_breakdowns
        WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
    ) r GROUP BY value
) t WHERE n > 0 ORDER BY n DESC, value COLLATE \"C\" LIMIT $5 OFFSET $6";

/// The referrer dimension narrowed to referrer `$7`: its one value.
const ONE_REFERRER: &str = "\
SELECT value, sum(hits)::bigint AS n FROM site_breakdowns
WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day < $4 AND value = $7
GROUP BY value ORDER BY n DESC LIMIT $5 OFFSET $6";

/// Site `$1`'s hits per day under value `$3` of dimension `$2` in the days
/// `[$4, $5)`.
const VALUE_DAYS: &str = "\
SELECT day, hits FROM site_breakdowns
WHERE site_id = $1 AND dimension = $2 AND day >= $4 AND day < $5 AND value = $3
ORDER BY day";

/// The `$6` pages of site `$1` with the most hits under value `$3` of
/// dimension `$2` in the days `[$4, $5)`.
const VALUE_PAGES: &str = "\
SELECT p.path, sum(b.hits)::bigint AS n FROM pages p
JOIN page_breakdowns b ON b.page_id = p.page_id
WHERE p.site_id = $1 AND b.dimension = $2 AND b.day >= $4 AND b.day < $5 AND b.value = $3
GROUP BY p.path ORDER BY n DESC, p.path COLLATE \"C\" LIMIT $6";

/// The statement that answers `query`, and its parameter `$7` if it takes
/// one.
fn breakdown_statement(query: &BreakdownQuery) -> (&'static str, Option<&str>) {
    match query.narrowed() {
        Narrowed::Site => (SITE_BREAKDOWN, None),
        Narrowed::Page(page) => (PAGE_BREAKDOWN, Some(page)),
        Narrowed::OneReferrer(referrer) => (ONE_REFERRER, Some(referrer)),
        Narrowed::Referrer(referrer) => (REFERRER_BREAKDOWN, Some(referrer)),
        Narrowed::Direct => (DIRECT_BREAKDOWN, None),
    }
}

#[async_trait]
impl BreakdownStore for PgStore {
    async fn breakdown(
        &self,
        slug: &Slug,
        query: &BreakdownQuery,
    ) -> Result<Option<BreakdownList>, StoreError> {
        let code = query.dimension.code();
        let limit = query.limit + 1;
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let (statement, narrowed_to) = breakdown_statement(query);
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
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
            let rows = tx.query(statement, &params).await?;
            tx.commit().await?;
            let values = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, i64)>, tokio_postgres::Error>>()?;
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
        let code = dimension.code();
        self.run(async |client| {
            let tx = snapshot(client).await?;
            let Some(site) = site_by_slug(&tx, slug).await? else {
                return Ok(None);
            };
            let (days, top) = futures_util::future::try_join(
                tx.query(VALUE_DAYS, &[&site.id, &code, &value, &from, &to]),
                tx.query(VALUE_PAGES, &[&site.id, &code, &value, &from, &to, &pages]),
            )
            .await?;
            tx.commit().await?;
            Ok(Some(ValueDetail {
                site,
                days: days
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, tokio_postgres::Error>>()?,
                pages: top
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, tokio_postgres::Error>>()?,
            }))
        })
        .await
    }
}
