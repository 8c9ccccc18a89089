-- Bumped by every reset and set-count; see the PostgreSQL migration.
ALTER TABLE visitors ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
