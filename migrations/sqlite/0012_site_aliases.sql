-- Other names of a site; see the PostgreSQL migration.
ALTER TABLE visitors ADD COLUMN aliases TEXT NOT NULL DEFAULT '';

CREATE TABLE site_aliases (
    alias TEXT PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX site_aliases_site ON site_aliases (site_id);
