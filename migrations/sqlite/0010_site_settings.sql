-- Three settings per site; see the PostgreSQL migration.
ALTER TABLE visitors ADD COLUMN is_public INTEGER;
ALTER TABLE visitors ADD COLUMN require_origin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE visitors ADD COLUMN trailing_slash TEXT NOT NULL DEFAULT 'keep';
