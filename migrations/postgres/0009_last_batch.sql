-- Each site's newest hit_batches row (0 before its first), set by the
-- transaction that writes the batch, under the site's row lock. A writer
-- that holds the lock gets it with the count, and reads hit_batches only
-- when it names a batch that writer has not read: with a site's hits on
-- one replica, that is almost never.
ALTER TABLE visitors ADD COLUMN last_batch bigint NOT NULL DEFAULT 0;
