-- Version 4: an idempotency record holds what its append stored, not an HTTP response.
--
-- A replay answers with the receipts of the events the first request stored (read back from
-- `events` by `first_sequence` and `event_count`) and the caller's own `outcome` (opaque to the
-- store: the application layer renders the response after the commit). Records written before
-- this version keep their rendered response as `outcome` with `event_count` 0; the application
-- layer recognizes and replays them as they were, until they expire (24 hours).
ALTER TABLE idempotency RENAME COLUMN body TO outcome;
ALTER TABLE idempotency DROP COLUMN status;
ALTER TABLE idempotency ADD COLUMN first_sequence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idempotency ADD COLUMN event_count BIGINT NOT NULL DEFAULT 0;
