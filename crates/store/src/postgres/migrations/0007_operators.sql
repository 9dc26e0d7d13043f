-- Version 7: console operators and their sessions (see the SQLite migration of the same name).
-- Passwords are Argon2id PHC strings; sessions are kept as the SHA-256 of their cookie secret.
CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE operator_sessions (
    secret_hash BYTEA PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
