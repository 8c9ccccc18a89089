-- Recent hits by request id; see the PostgreSQL migration.
CREATE TABLE hit_requests (
    site_id INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    created_at INTEGER NOT NULL, -- unix seconds
    PRIMARY KEY (site_id, request_id)
) WITHOUT ROWID;
CREATE INDEX hit_requests_created_at ON hit_requests (created_at);
