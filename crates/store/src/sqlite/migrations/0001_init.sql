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

-- The head of each organization's log: the next event gets sequence = size. The frontier is
-- the Merkle tree's complete subtrees left to right (32-byte hashes, concatenated, one per set
-- bit of size): all an append needs to compute the new nodes without reading any.
CREATE TABLE log_heads (
    organization_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    frontier BLOB NOT NULL
) WITHOUT ROWID;

-- Every complete subtree of every organization's Merkle tree: level L, index i covers leaves
-- [i*2^L, (i+1)*2^L). Written once when completed, never changed, never deleted (retention
-- removes event contents, not these), so roots and proofs cost O(log n) reads.
CREATE TABLE merkle_nodes (
    organization_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (organization_id, level, idx)
) WITHOUT ROWID;

-- Signed checkpoints (C2SP signed notes), one per signed tree size.
CREATE TABLE checkpoints (
    organization_id TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (organization_id, tree_size)
) WITHOUT ROWID;

-- One row per event; body is the normalized event JSON. The columns beside it exist to be
-- indexed for search; every index leads with organization_id so one tenant's queries never
-- scan another's rows, and ends with sequence so results come out in log order.
CREATE TABLE events (
    organization_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT,
    leaf_hash BLOB NOT NULL,            -- SHA-256(0x00 || RFC 8785 JSON of the event object)
    body TEXT NOT NULL,
    -- Set when retention removed the event's contents; the row stays as a stub (id, sequence,
    -- received_at, leaf_hash) so the Merkle log and every proof remain intact.
    purged_at INTEGER,
    PRIMARY KEY (organization_id, sequence)
);
CREATE INDEX events_by_action ON events (organization_id, action, sequence);
CREATE INDEX events_by_time ON events (organization_id, occurred_at, sequence);
CREATE INDEX events_by_actor_id ON events (organization_id, actor_id, sequence);
CREATE INDEX events_by_actor_name ON events (organization_id, actor_name, sequence);

-- Targets, one row each, for the target_ids and target_types filters.
CREATE TABLE event_targets (
    organization_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    target_id TEXT NOT NULL,
    target_type TEXT NOT NULL
);
CREATE INDEX event_targets_by_id ON event_targets (organization_id, target_id, sequence);
CREATE INDEX event_targets_by_type ON event_targets (organization_id, target_type, sequence);

-- Free-text search: a trigram index (substring matching, case-insensitive) over each event's
-- search text, keyed by the events rowid. Contentless: the text is not stored twice;
-- contentless_delete lets retention remove an event's entry.
CREATE VIRTUAL TABLE events_fts USING fts5 (text, content = '', contentless_delete = 1, tokenize = 'trigram');

-- Legal holds: while an organization has one, retention purges none of its events.
CREATE TABLE legal_holds (
    organization_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    set_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Export jobs. The file lives in the data directory under exports/<id>.<csv|ndjson>.
CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    state TEXT NOT NULL,                -- pending | ready | error
    format TEXT NOT NULL,               -- csv | ndjson
    filter TEXT NOT NULL,               -- JSON of the filters
    row_count INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX exports_by_state ON exports (state);

-- Responses of idempotent requests, replayed until they expire (24 h).
CREATE TABLE idempotency (
    identity BLOB PRIMARY KEY,
    organization_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);

-- Log streams: each is a durable cursor into its organization's log. `cursor` is the last
-- sequence the destination acknowledged (NULL: none yet); it only moves forward on delivery, or
-- wherever a replay puts it. `config` holds the non-secret settings as JSON; `secrets` the
-- credentials, encrypted by the streams crate (the store never sees them in clear). The lease
-- makes one worker at a time deliver a stream.
CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secrets BLOB NOT NULL,
    enabled INTEGER NOT NULL,
    state TEXT NOT NULL,                -- active | inactive | error | invalid
    cursor INTEGER,
    last_synced_at INTEGER,
    last_error TEXT,
    lease_holder TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX streams_by_organization ON streams (organization_id);
