-- Breakdowns: a counted hit's value under each dimension (referrer,
-- campaign, browser, system, device, country, screen, language), counted
-- per site and per page per UTC day (days since 1970-01-01), in the same
-- transaction as the hit. `dimension` is the dimension's code; `value` is
-- never an address or a whole user agent. A site keeps a bounded number of
-- distinct values per dimension per day (past it, `(other)`), so no client
-- can grow these tables without bound. New tables only: a replica of the
-- release before counts as it did, without breakdowns.
CREATE TABLE site_breakdowns (
    site_id bigint NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    dimension smallint NOT NULL,
    day bigint NOT NULL,
    value text NOT NULL,
    hits bigint NOT NULL,
    PRIMARY KEY (site_id, dimension, day, value)
);

CREATE TABLE page_breakdowns (
    page_id bigint NOT NULL REFERENCES pages (page_id) ON DELETE CASCADE,
    dimension smallint NOT NULL,
    day bigint NOT NULL,
    value text NOT NULL,
    hits bigint NOT NULL,
    PRIMARY KEY (page_id, dimension, day, value)
);

-- A site's hits from one referrer (never `(none)`) per value of every
-- other dimension: what the dashboard's referrer filter reads. A site's
-- `(none)` is its own rows less every referrer's. `referrer` and `value`
-- are capped as the site's are (a referrer the site has no room for is
-- `(other)` here too). Keyed by dimension and day before the referrer:
-- one referrer's values and the `(none)` subtraction read the same range.
CREATE TABLE referrer_breakdowns (
    site_id bigint NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    referrer text NOT NULL,
    dimension smallint NOT NULL,
    day bigint NOT NULL,
    value text NOT NULL,
    hits bigint NOT NULL,
    PRIMARY KEY (site_id, dimension, day, referrer, value)
);

-- Retention deletes by day.
CREATE INDEX site_breakdowns_day ON site_breakdowns (day);
CREATE INDEX page_breakdowns_day ON page_breakdowns (day);
CREATE INDEX referrer_breakdowns_day ON referrer_breakdowns (day);
