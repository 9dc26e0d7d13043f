use thiserror::Error;

/// What can go wrong in storage. Variants say what happened; the HTTP edge decides statuses.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("organization not found: '{0}'")]
    OrganizationNotFound(String),
    /// A uniqueness rule was broken; the string names the field.
    #[error("{0} is already in use")]
    Conflict(&'static str),
    /// A pagination cursor (`before` or `after`, named here) is not one this list issues.
    #[error("{0} is not a valid cursor for this list")]
    InvalidCursor(&'static str),
    /// The database could not be reached or refused the operation.
    #[error("database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    /// A PostgreSQL connection URL with an unknown parameter or a bad value (named).
    #[error("invalid PostgreSQL connection URL: {0}")]
    Settings(crate::SettingsError),
    /// Stored data that Trailmark wrote no longer parses: it was changed outside Trailmark.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A ledger request outside the tree, or a tree missing nodes it must have.
    #[error(transparent)]
    Ledger(#[from] trailmark_ledger::LedgerError),
    /// Another process writes this embedded log (a second `trailmark serve` on one data
    /// directory).
    #[error(
        "another Trailmark process is writing the log at {0}; stop it first (readers such as `trailmark verify` may run beside it)"
    )]
    Locked(String),
    /// The storage worker is gone (the store is shutting down or a worker panicked).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for StoreError {
    /// A database another process holds locked past the busy timeout is a transient condition
    /// (callers may retry), not a failure of the request.
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Database(Box::new(error)),
        }
    }
}
