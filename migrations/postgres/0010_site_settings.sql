-- Three settings per site: whether its details (pages, series, unique
-- visitors) are public (NULL: the instance's default,
-- TALLY_DASHBOARD_PUBLIC), whether a counting hit must carry an Origin or
-- a Referer, and whether a page's trailing slash is kept ('keep') or
-- dropped ('merge'). Constant defaults: no table rewrite.
ALTER TABLE visitors ADD COLUMN is_public boolean;
ALTER TABLE visitors ADD COLUMN require_origin boolean NOT NULL DEFAULT false;
ALTER TABLE visitors ADD COLUMN trailing_slash text NOT NULL DEFAULT 'keep';
