-- Trailmark's PostgreSQL schema, version 1: the same tables as the embedded SQLite schema, in
-- plain SQL that PostgreSQL-compatible engines also run. Times are Unix milliseconds (BIGINT),
-- as on SQLite, so both backends share one encoding; JSON columns hold the normalized JSON text
-- the domain crate produces (TEXT, not JSONB: nothing queries inside it, and text keeps the
-- bytes exactly as hashed).

-- Deleted organizations stay as tombstones (deleted_at set): their events and log outlive them.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    external_id TEXT UNIQUE,
    domains TEXT NOT NULL,
    metadata TEXT NOT NULL,
    allow_profiles_outside_organization BOOLEAN NOT NULL,
    retention_period_in_days INTEGER,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash BYTEA NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    organization_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE action_schemas (
    action TEXT COLLATE "C" NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (action, version)
);

-- The head of each organization's log. Every append locks this row (SELECT … FOR UPDATE), so
-- the instances over one database take turns extending a log: sequence numbers and Merkle
-- nodes are never computed twice. A row lock, not an advisory lock, because distributed
-- PostgreSQL-compatible engines support the former everywhere.
CREATE TABLE log_heads (
    organization_id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);

CREATE TABLE merkle_nodes (
    organization_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (organization_id, level, idx)
);

CREATE TABLE checkpoints (
    organization_id TEXT NOT NULL,
    tree_size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, tree_size)
);

-- `search_text` is the lower-cased text the `q` filter matches as a substring (indexed with
-- pg_trgm where the database has it: see search.rs). Text compared by range or sorted (action
-- names) is COLLATE "C": byte order, as on SQLite, so `user.*` is a simple index range.
CREATE TABLE events (
    organization_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    action TEXT COLLATE "C" NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT,
    leaf_hash BYTEA NOT NULL,
    body TEXT NOT NULL,
    search_text TEXT NOT NULL,
    purged_at BIGINT,
    PRIMARY KEY (organization_id, sequence)
);
CREATE INDEX events_by_action ON events (organization_id, action, sequence);
CREATE INDEX events_by_time ON events (organization_id, occurred_at, sequence);
CREATE INDEX events_by_actor_id ON events (organization_id, actor_id, sequence);
CREATE INDEX events_by_actor_name ON events (organization_id, actor_name, sequence);
CREATE INDEX events_by_received ON events (organization_id, received_at) WHERE purged_at IS NULL;

CREATE TABLE event_targets (
    organization_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    target_id TEXT NOT NULL,
    target_type TEXT NOT NULL
);
CREATE INDEX event_targets_by_id ON event_targets (organization_id, target_id, sequence);
CREATE INDEX event_targets_by_type ON event_targets (organization_id, target_type, sequence);

CREATE TABLE legal_holds (
    organization_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    set_at BIGINT NOT NULL
);

-- Export jobs. The file lives in the (shared) data directory under exports/<id>.<csv|ndjson>.
-- `runner` holds the lease of the instance generating a pending export until `run_until`.
CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    state TEXT NOT NULL,
    format TEXT NOT NULL,
    filter TEXT NOT NULL,
    row_count BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    runner TEXT,
    run_until BIGINT
);
CREATE INDEX exports_by_state ON exports (state);

CREATE TABLE idempotency (
    identity BYTEA PRIMARY KEY,
    organization_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);

CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secrets BYTEA NOT NULL,
    enabled BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    cursor BIGINT,
    last_synced_at BIGINT,
    last_error TEXT,
    lease_holder TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX streams_by_organization ON streams (organization_id);
