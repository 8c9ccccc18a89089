-- Hits per site per UTC hour, written in the same transaction as the count.
CREATE TABLE hits_hourly (
    site_id bigint NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    hour timestamptz NOT NULL,
    hits bigint NOT NULL,
    PRIMARY KEY (site_id, hour)
);
