-- Trailmark's embedded schema, version 1. Times are Unix milliseconds (INTEGER); JSON columns
-- hold the normalized JSON the domain crate produces.

-- Deleted organizations stay as tombstones (deleted_at set): their events and log outlive them.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    external_id TEXT UNIQUE,
    domains TEXT NOT NULL,              -- JSON array of {"id","domain","state"}
    metadata TEXT NOT NULL,             -- JSON object of string values
    allow_profiles_outside_organization INTEGER NOT NULL,
    retention_period_in_days INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);

-- Only the SHA-256 of a key is stored; lookups go by hash.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    organization_id TEXT,
    created_at INTEGER NOT NULL
);

-- Schema versions are immutable: rows are inserted, never updated.
CREATE TABLE action_schemas (
    action TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (action, version)
) WITHOUT ROWID;

-- The size of each organization's log: the next event gets sequence = size.
CREATE TABLE log_heads (
    organization_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    organization_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (organization_id, sequence)
);

-- Responses of idempotent requests, replayed until they expire (24 h).
CREATE TABLE idempotency (
    identity BLOB PRIMARY KEY,
    organization_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
