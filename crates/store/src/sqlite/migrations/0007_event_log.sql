-- Schema version 7: events live in the log (`<name>.log/` beside this file), not in tables.
--
-- The log's segment files hold every event, its sequence and idempotency identity, written
-- once and acknowledged after one fdatasync per group of appends. These tables hold only what
-- is derived from the log, written behind it in large pieces and rebuilt from it after a crash
-- (see crates/store/src/log). Events recorded by earlier versions in `events` are moved into the
-- log when the store opens (`log::legacy`), after which the old tables are dropped.

-- Every organization's number, used in place of its id in the log's derived tables. Numbered
-- here (an INTEGER PRIMARY KEY keeps its values through VACUUM) when the organization is
-- created; deleted organizations keep theirs, as their logs remain.
CREATE TABLE log_organizations (
    number INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE
);
INSERT INTO log_organizations (id) SELECT id FROM organizations ORDER BY rowid;

-- One row per block: up to 4,096 consecutive events of one organization, written once. The
-- columns are encoded by `log::block` (delta varints): where each event's record lies in the
-- log, when each occurred and was received, which retention purged. `bloom` is a trigram filter
-- over the events' search text, `text_values` its distinct values with their events (free-text
-- search).
CREATE TABLE log_blocks (
    organization INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    count INTEGER NOT NULL,
    min_occurred INTEGER NOT NULL,
    max_occurred INTEGER NOT NULL,
    min_received INTEGER NOT NULL,
    max_received INTEGER NOT NULL,
    locations BLOB NOT NULL,
    occurred BLOB NOT NULL,
    received BLOB NOT NULL,
    purged BLOB NOT NULL,
    bloom BLOB NOT NULL,
    text_values BLOB NOT NULL,
    UNIQUE (organization, first_sequence)
);

-- A block's terms: for each value of a filterable field (1 action, 2 actor id, 3 actor name,
-- 4 target id, 5 target type) the offsets of its events within the block. Keyed block first, so
-- a block's terms are written as one contiguous range of keys.
CREATE TABLE log_terms (
    organization INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    field INTEGER NOT NULL,
    value TEXT NOT NULL,
    postings BLOB NOT NULL,
    PRIMARY KEY (organization, first_sequence, field, value)
) WITHOUT ROWID;

-- The Merkle tree as C2SP tlog tiles: the hashes of tree level 8 * level, 256 to a tile. A full
-- tile never changes; the last tile of a level is replaced as it fills.
CREATE TABLE log_tiles (
    organization INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    UNIQUE (organization, level, idx)
);

-- `replay_from`: the log position from which a start reads events back into memory (every
-- event before it is in a block).
CREATE TABLE log_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Blocks whose purged events' bodies may still be on disk (a crash between marking them and
-- erasing them): the next start erases them.
CREATE TABLE log_redactions (
    organization INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    PRIMARY KEY (organization, first_sequence)
) WITHOUT ROWID;
