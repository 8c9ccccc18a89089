-- Other names of a site (a domain, an id such as a UUID), by which other
-- counters' trackers name it: `visitors.aliases` lists them as the site's
-- settings are listed (separated by spaces), and `site_aliases` holds each
-- once across all sites and finds a site by one. Both are written in one
-- transaction. A constant default and a new table: no table rewrite, and
-- a replica of the release before counts as it did.
ALTER TABLE visitors ADD COLUMN aliases text NOT NULL DEFAULT '';

CREATE TABLE site_aliases (
    alias text PRIMARY KEY,
    site_id bigint NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE
);

CREATE INDEX site_aliases_site ON site_aliases (site_id);
