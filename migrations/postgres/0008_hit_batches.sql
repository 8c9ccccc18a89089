-- Request ids, one row per committed batch of a site instead of one indexed
-- row per hit: `keys` holds 64-bit hashes of the batch's fresh request ids,
-- `counts` the count each got and `page_counts` its page's count (negative
-- for the overflow page, 0 for a hit naming no page; NULL when no hit of
-- the batch named one). A batch is written under its site's row lock, so a
-- site's batch ids rise in commit order and a writer that holds the lock
-- finds every batch it has not read yet by `batch_id > the last it read`.
-- Rows are deleted a batch at a time once older than the id window.
-- hit_requests stays for the release before, which still writes it.
CREATE SEQUENCE hit_batch_ids;

CREATE TABLE hit_batches (
    site_id bigint NOT NULL,
    batch_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    keys bigint[] NOT NULL,
    counts bigint[] NOT NULL,
    page_counts bigint[],
    PRIMARY KEY (site_id, batch_id)
);
CREATE INDEX hit_batches_created_at ON hit_batches (created_at);
