-- Version 12: the filters read each event's body, not columns copied from it.
--
-- The action, actor, targets and lower-cased search text were stored beside the body so that
-- SQL could check a search's conditions on each row: about 40% more bytes in every events row
-- and in the WAL of every append. The search blocks' postings and text values now name exactly
-- the events a filter matches, and the rows a search reads are checked in Rust, from their body,
-- by the rule the embedded log uses (`log::block::IndexedEvent::matches`).
--
-- Dropping a column only marks it dropped: the rows are not rewritten, and their space is
-- reused as they are. Every block is rebuilt in the background to hold its text values (each
-- instance's log reports how far along it is); until then searches read those events' bodies.
ALTER TABLE events
    DROP COLUMN action,
    DROP COLUMN actor_id,
    DROP COLUMN actor_name,
    DROP COLUMN search_text,
    DROP COLUMN target_ids,
    DROP COLUMN target_types;

DROP TABLE search_block_terms;
DELETE FROM search_blocks;
UPDATE search_block_heads SET indexed = 0;
-- Every distinct value the free text of the block's events is made of, with the offsets of the
-- events holding each (`log::block`'s encoding): a text search reads the blocks that contain its
-- text (tested in SQL first) and takes their events' offsets, without reading a body. And a
-- number for each block, by which its terms are keyed: a term row and its key entry no longer
-- repeat the organization's id: half their bytes (measured by `trailmark-bench postgres`). And
-- each event's `occurred_at` (delta varints, about 3 bytes an event): a time filter takes the
-- events in its range from a block whose range straddles it, rather than reading its rows.
ALTER TABLE search_blocks
    ADD COLUMN text_values BYTEA NOT NULL,
    ADD COLUMN occurred BYTEA NOT NULL,
    ADD COLUMN block BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE;

-- Each distinct value of a filterable field in a block (field: 1 action, 2 actor id, 3 actor
-- name, 4 target id, 5 target type) with its postings, as before, keyed by the block's number.
CREATE TABLE search_block_terms (
    block BIGINT NOT NULL,
    field SMALLINT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    postings BYTEA NOT NULL,
    PRIMARY KEY (block, field, value)
);
