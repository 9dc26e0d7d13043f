-- Version 14: instances that hand each other their appends (`postgres::cluster`).
--
-- Each instance started with `--cluster-listen` keeps a row here with the address its peers
-- reach it at, renewed every second; the live rows decide which instance sequences each
-- organization. A row whose heartbeat stopped is ignored, and deleted by the next instance
-- to start an hour later.
CREATE TABLE cluster_members (
    instance_id  TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
