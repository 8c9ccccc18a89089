-- Pages within a site, created by their first hit and counted in the same
-- transaction as the site. A site holds at most the page limit of them
-- (`page_total` counts them, the overflow page aside), so no client can grow
-- this table without bound.
CREATE TABLE pages (
    page_id bigserial PRIMARY KEY,
    site_id bigint NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    path text NOT NULL,
    page_count bigint NOT NULL,
    UNIQUE (site_id, path)
);

-- Hits per page per UTC day (days since 1970-01-01): pages are read by day,
-- and a day bucket is a 24th of the rows an hour bucket would be.
CREATE TABLE page_hits_daily (
    page_id bigint NOT NULL REFERENCES pages (page_id) ON DELETE CASCADE,
    day bigint NOT NULL,
    hits bigint NOT NULL,
    PRIMARY KEY (page_id, day)
);

-- New columns with constant defaults: no table rewrite, and a replica of
-- the release before, which names its columns, reads and writes as before.
ALTER TABLE visitors
    ADD COLUMN page_total bigint NOT NULL DEFAULT 0,
    ADD COLUMN keep_params text NOT NULL DEFAULT '',
    ADD COLUMN allowed_origins text NOT NULL DEFAULT '';

ALTER TABLE hit_requests
    ADD COLUMN page_count bigint,
    ADD COLUMN page_overflow boolean;
