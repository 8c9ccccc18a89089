-- The same shape as the PostgreSQL schema; site 1 is the default site.
-- AUTOINCREMENT so a deleted site's id is never handed to a new site.
CREATE TABLE visitors (
    site_id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_name TEXT NOT NULL DEFAULT '',
    visitor_count INTEGER NOT NULL DEFAULT 0,
    slug TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL -- unix seconds
);

INSERT INTO visitors (site_id, site_name, visitor_count, slug, created_at)
VALUES (1, 'default', 0, 'default', CAST(strftime('%s', 'now') AS INTEGER));
