-- Version 11: search blocks replace the search indexes; every event row is rewritten once.
--
-- The filters (action, actor, target, time) are answered from each block's term
-- postings, built behind the appends with its trigram filter (postgres/search_blocks.rs), instead
-- of B-tree indexes and an `event_targets` table that every append updated: most of an append's
-- index entries and WAL, and random-key index pages dirtied at every commit. Every block is
-- rebuilt in the background after the upgrade (each instance's log reports how far along it is);
-- until then searches read those events row by row. Each event's targets move into two arrays on
-- its row, which this migration fills: on a large table it rewrites every row, once.
ALTER TABLE events
    ADD COLUMN target_ids TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN target_types TEXT[] NOT NULL DEFAULT '{}';
UPDATE events e SET target_ids = t.ids, target_types = t.types
FROM (SELECT organization_id, sequence, array_agg(target_id) AS ids, array_agg(target_type) AS types
      FROM event_targets GROUP BY organization_id, sequence) t
WHERE e.organization_id = t.organization_id AND e.sequence = t.sequence;
DROP TABLE event_targets;
DROP INDEX events_by_action, events_by_time, events_by_actor_id, events_by_actor_name,
    events_by_actor_time;

ALTER TABLE text_block_heads RENAME TO search_block_heads;
ALTER TABLE text_blocks RENAME TO search_blocks;
DELETE FROM search_blocks;
UPDATE search_block_heads SET indexed = 0;
-- The range of `occurred_at` in the block, so a time filter skips blocks wholly outside it.
ALTER TABLE search_blocks
    ADD COLUMN min_occurred BIGINT NOT NULL,
    ADD COLUMN max_occurred BIGINT NOT NULL;

-- Each distinct value of a filterable field in a block (field: 1 action, 2 actor id, 3 actor
-- name, 4 target id, 5 target type) with its postings: the offsets in the block of the events
-- holding it, as delta varints (`log::block`, the embedded log's encoding). A block's terms are
-- one contiguous key range, written at once.
CREATE TABLE search_block_terms (
    organization_id TEXT NOT NULL,
    first_sequence BIGINT NOT NULL,
    field SMALLINT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    postings BYTEA NOT NULL,
    PRIMARY KEY (organization_id, first_sequence, field, value)
);
