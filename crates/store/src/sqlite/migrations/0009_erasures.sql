-- The bodies of events an erasure rewrote. An event's record in the log cannot grow, and its
-- erased body (each erased value replaced, with the salts and commitments that keep its leaf
-- hash) is longer than the original: the record is rewritten as zeros, like a purged one, and
-- reads take the body from here instead.
CREATE TABLE log_erasures (
    organization INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (organization, sequence)
) WITHOUT ROWID;
