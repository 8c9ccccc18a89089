-- Hits per site per UTC hour (unix seconds of the hour's start), written in
-- the same transaction as the count.
CREATE TABLE hits_hourly (
    site_id INTEGER NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    hour INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (site_id, hour)
) WITHOUT ROWID;
