-- Version 2: Admin Portal one-time links and the sessions they open (see the SQLite migration
-- of the same name). Only SHA-256 hashes of the link token and of the session cookie are kept.
CREATE TABLE portal_links (
    token_hash BYTEA PRIMARY KEY,
    organization_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    email TEXT,
    return_url TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE portal_sessions (
    secret_hash BYTEA PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    email TEXT,
    return_url TEXT,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX portal_links_expiry ON portal_links (expires_at);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
