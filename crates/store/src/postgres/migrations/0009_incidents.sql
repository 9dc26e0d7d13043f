-- Alerts. `streams.failing_since`: the first failed attempt since the stream's last delivery
-- (NULL while it delivers), so every instance can tell how long a stream has been failing.
ALTER TABLE streams ADD COLUMN failing_since BIGINT;

-- One row per incident: a stream failing longer than --alert-after (one per failing streak:
-- (kind, subject_id, since) is unique, so instances racing to open it store it once), or a
-- failed export. `notices_done` is rules::pending_notice being none, kept as a column so the
-- notifier's look-up is an index scan; the lease says which instance is sending.
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    organization_id TEXT,
    state TEXT NOT NULL,
    last_error TEXT,
    since BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT,
    opened_notified_at BIGINT,
    resolved_notified_at BIGINT,
    notices_done BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_delivery_error TEXT,
    lease_holder TEXT,
    lease_until BIGINT,
    UNIQUE (kind, subject_id, since)
);
CREATE INDEX incidents_unresolved ON incidents (opened_at) WHERE resolved_at IS NULL;
CREATE INDEX incidents_owing ON incidents (opened_at) WHERE NOT notices_done;
CREATE INDEX incidents_by_opening ON incidents (opened_at);
