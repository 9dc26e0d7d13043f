-- Admin Portal: one-time links and the sessions they open (issue 7). Only SHA-256 hashes of
-- the link token and the session cookie are kept, so reading this table lets no one in.

-- A link is used once: `used_at` is set in the same commit that creates its session.
CREATE TABLE portal_links (
    token_hash BLOB PRIMARY KEY,
    organization_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    email TEXT,
    return_url TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) WITHOUT ROWID;

-- Sessions live in the database, not in one server's memory, so any instance sharing the
-- database serves any request. `expires_at` moves forward on every request (inactivity expiry).
CREATE TABLE portal_sessions (
    secret_hash BLOB PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    email TEXT,
    return_url TEXT,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX portal_links_expiry ON portal_links (expires_at);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
