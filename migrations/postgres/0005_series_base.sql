-- Hits that are in no hourly bucket: counts set or imported by an admin, and
-- hours folded in by retention. After every transaction, for every site,
--     visitor_count = base_count + sum(hits_hourly.hits)
-- so a site's series always adds up to its count.
ALTER TABLE visitors ADD COLUMN base_count bigint NOT NULL DEFAULT 0;

-- Before this version a count could be set below the hits already bucketed;
-- such a site loses its buckets, as a set-count below them does from now on.
DELETE FROM hits_hourly
WHERE site_id IN (
    SELECT v.site_id
    FROM visitors v
    JOIN (SELECT site_id, sum(hits) AS n FROM hits_hourly GROUP BY site_id) s
      ON s.site_id = v.site_id
    WHERE v.visitor_count < s.n
);

UPDATE visitors v
SET base_count = v.visitor_count - coalesce(
    (SELECT sum(h.hits) FROM hits_hourly h WHERE h.site_id = v.site_id), 0);

ALTER TABLE visitors ADD CONSTRAINT visitors_base_count_check CHECK (base_count >= 0);

-- Retention looks for old hours across all sites.
CREATE INDEX hits_hourly_hour ON hits_hourly (hour);
