-- Schema version 3: an index for an actor's events over a time range (see SQLite's migration
-- 0005). Filtered searches leave purged stubs out, so it holds live events only.
CREATE INDEX events_by_actor_time ON events (organization_id, actor_id, occurred_at, action, sequence)
    WHERE purged_at IS NULL;
