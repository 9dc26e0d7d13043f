-- Schema version 2: the indexes behind search filters hold live events only.
--
-- Filtered searches leave retention's purged stubs out (`purged_at IS NULL`). With full
-- indexes, SQLite had to read each candidate's table row to check that, so a filter matching
-- many events read all of them; partial indexes answer from the index alone. Unfiltered reads go
-- by sequence (the primary key) and still see every stub.
DROP INDEX events_by_action;
DROP INDEX events_by_time;
DROP INDEX events_by_actor_id;
DROP INDEX events_by_actor_name;
CREATE INDEX events_by_action ON events (organization_id, action, sequence) WHERE purged_at IS NULL;
CREATE INDEX events_by_time ON events (organization_id, occurred_at, sequence) WHERE purged_at IS NULL;
CREATE INDEX events_by_actor_id ON events (organization_id, actor_id, sequence) WHERE purged_at IS NULL;
CREATE INDEX events_by_actor_name ON events (organization_id, actor_name, sequence) WHERE purged_at IS NULL;
