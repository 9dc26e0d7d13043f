-- Schema version 5: an index for an actor's events over a time range.
--
-- A search by actor and time range (often with an action filter) read the actor's index in
-- sequence order and the table row of each entry to test its time, back through the actor's
-- whole history when few of their events fell in the range. This index seeks straight to the
-- actor's events in the range, and holds the action and sequence too, so the page's sequences
-- are picked from the index alone.
CREATE INDEX events_by_actor_time ON events (organization_id, actor_id, occurred_at, action, sequence)
    WHERE purged_at IS NULL;
