-- Breakdowns per site and per page per UTC day; see the PostgreSQL
-- migration.
CREATE TABLE site_breakdowns (
    site_id INTEGER NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    dimension INTEGER NOT NULL,
    day INTEGER NOT NULL,
    value TEXT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (site_id, dimension, day, value)
) WITHOUT ROWID;

CREATE TABLE page_breakdowns (
    page_id INTEGER NOT NULL REFERENCES pages (page_id) ON DELETE CASCADE,
    dimension INTEGER NOT NULL,
    day INTEGER NOT NULL,
    value TEXT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (page_id, dimension, day, value)
) WITHOUT ROWID;

CREATE TABLE referrer_breakdowns (
    site_id INTEGER NOT NULL REFERENCES visitors (site_id) ON DELETE CASCADE,
    referrer TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    day INTEGER NOT NULL,
    value TEXT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (site_id, dimension, day, referrer, value)
) WITHOUT ROWID;

CREATE INDEX site_breakdowns_day ON site_breakdowns (day);
CREATE INDEX page_breakdowns_day ON page_breakdowns (day);
CREATE INDEX referrer_breakdowns_day ON referrer_breakdowns (day);
