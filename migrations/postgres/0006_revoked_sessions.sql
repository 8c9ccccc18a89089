-- Dashboard sessions signed out before they expired. A session cookie is
-- signed, not stored, so any replica can check it; signing out records a
-- SHA-256 of the cookie here, which every replica checks too. A row is
-- kept until the cookie would have expired anyway, then pruned.
CREATE TABLE revoked_sessions (
    session_hash text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
