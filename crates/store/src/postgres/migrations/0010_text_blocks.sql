-- Version 10: free text (`q`) is searched through a trigram filter per block of 4,096 events,
-- built behind the appends (postgres/text_blocks.rs), instead of a pg_trgm GIN index that every
-- append updated (most of an append's WAL). Filters for the events already stored are built by
-- every instance in the background after the upgrade, and its log reports how far along it is;
-- until then `q` reads those events' text directly.
DROP INDEX IF EXISTS events_search_text;

-- How far each organization's log has filters: its events 0 … indexed-1. The instance building
-- the next block holds this row's lock.
CREATE TABLE text_block_heads (
    organization_id TEXT PRIMARY KEY,
    indexed BIGINT NOT NULL
);

-- One blocked Bloom filter over the trigrams of the search text of the events
-- first_sequence … end_sequence-1; version rises when erasure or retention rewrites it.
CREATE TABLE text_blocks (
    organization_id TEXT NOT NULL,
    first_sequence BIGINT NOT NULL,
    end_sequence BIGINT NOT NULL,
    version BIGINT NOT NULL,
    bloom BYTEA NOT NULL,
    PRIMARY KEY (organization_id, first_sequence)
);
-- Random bits do not compress: store them out of line as they are.
ALTER TABLE text_blocks ALTER COLUMN bloom SET STORAGE EXTERNAL;
