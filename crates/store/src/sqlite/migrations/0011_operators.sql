-- Console operators (issue 14) and their sessions. Passwords are Argon2id PHC strings; a
-- session is kept as the SHA-256 of its cookie secret, so reading this table lets no one in.
CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Sessions live in the database, so any instance sharing it serves any request; `expires_at`
-- moves forward on every request (inactivity expiry).
CREATE TABLE operator_sessions (
    secret_hash BLOB PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
