-- Pages within a site; see the PostgreSQL migration.
CREATE TABLE pages (
    page_id INTEGER PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    page_count INTEGER NOT NULL,
    UNIQUE (site_id, path)
);

-- Hits per page per UTC day (days since 1970-01-01).
CREATE TABLE page_hits_daily (
    page_id INTEGER NOT NULL REFERENCES pages (page_id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (page_id, day)
) WITHOUT ROWID;

ALTER TABLE visitors ADD COLUMN page_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE visitors ADD COLUMN keep_params TEXT NOT NULL DEFAULT '';
ALTER TABLE visitors ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
ALTER TABLE hit_requests ADD COLUMN page_count INTEGER;
ALTER TABLE hit_requests ADD COLUMN page_overflow INTEGER;
