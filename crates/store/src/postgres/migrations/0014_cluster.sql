-- Version 14: instances that hand each other their appends (`postgres::cluster`).
--
-- Each instance started with `--cluster-listen` keeps a row here with the address its peers
-- reach it at, renewed every second; the live rows decide which instance sequences each
-- organization. A row whose heartbeat stopped is ignored, and deleted by the next instance
-- to start.
CREATE TABLE cluster_members (
    instance_id  TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- The secret instances prove to each other that they share: made by the first instance to join,
-- readable by whoever can read the database (who could write the log directly anyway).
CREATE TABLE cluster_secret (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    secret   BYTEA NOT NULL
);
