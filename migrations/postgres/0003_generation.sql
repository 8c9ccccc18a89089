-- Bumped by every reset and set-count. Cached counts are ordered by
-- (generation, count), so a count published late from before a reset can
-- never overwrite the reset, and nothing else can move a count backwards.
ALTER TABLE visitors ADD COLUMN generation bigint NOT NULL DEFAULT 0;
