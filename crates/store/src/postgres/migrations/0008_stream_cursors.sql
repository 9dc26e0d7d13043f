-- Operator-wide log streams: a stream with no organization (stored with organization_id '')
-- delivers every organization's log, each in its own order, so it keeps a cursor per log here
-- (the last sequence its destination acknowledged; no row: nothing yet). An organization's
-- stream keeps using `streams.cursor`.
CREATE TABLE stream_cursors (
    stream_id TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    PRIMARY KEY (stream_id, organization_id)
);
