-- Dashboard sessions signed out before they expired; see the PostgreSQL
-- migration.
CREATE TABLE revoked_sessions (
    session_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL -- unix seconds
) WITHOUT ROWID;
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
