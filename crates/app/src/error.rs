//! [`AppError`]: what can go wrong in a use case. Variants say what happened; the HTTP edge
//! (`trailmark_server::error::ApiError`) and the CLI decide how to show it.

use trailmark_domain::{FieldProblem, Problems};
use trailmark_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is malformed or the event invalid; every problem is named.
    #[error(transparent)]
    Problems(#[from] Problems),
    /// No live organization has this id.
    #[error("organization not found: '{0}'")]
    OrganizationNotFound(String),
    /// No such thing (of the kind named) exists, or it belongs to another organization.
    #[error("{kind} not found: '{id}'")]
    NotFound { kind: NotFoundKind, id: String },
    /// A uniqueness rule was broken; the string names the field.
    #[error("{0} is already in use")]
    Conflict(&'static str),
    /// A limit on work piled up is reached (`code` and the message name it); the request may be
    /// retried once earlier work finished.
    #[error("{message}")]
    TooMuchWork { code: &'static str, message: String },
    /// Refused for a moment (`code` says why); the request may be retried shortly.
    #[error("{message}")]
    Busy { code: &'static str, message: String },
    /// The organization is under a legal hold (for this reason), which the change needs to be
    /// forced past.
    #[error("the organization is under a legal hold: {0}")]
    LegalHold(String),
    /// The key is the last live unrestricted admin key: revoking it would leave no key that can
    /// manage keys, which the request did not force.
    #[error("'{0}' is the last unrestricted admin key")]
    LastAdminKey(String),
    /// Storage could not be reached; the request may be retried.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A failure that is Trailmark's, not the caller's (logged; shown generically).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of thing was not found, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundKind {
    Event,
    Export,
    LogStream,
    ApiKey,
    /// A tlog tile or entry bundle the latest checkpoint's tree does not (yet) hold.
    Tile,
}

impl std::fmt::Display for NotFoundKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotFoundKind::Event => "event",
            NotFoundKind::Export => "export",
            NotFoundKind::LogStream => "log stream",
            NotFoundKind::ApiKey => "API key",
            NotFoundKind::Tile => "tile",
        })
    }
}

impl AppError {
    /// A malformed-input error naming one field.
    pub fn field(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Problems(Problems::Malformed(vec![FieldProblem {
            code,
            field: field.into(),
            message: message.into(),
        }]))
    }

    pub fn not_found(kind: NotFoundKind, id: impl Into<String>) -> Self {
        AppError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::OrganizationNotFound(id) => AppError::OrganizationNotFound(id),
            StoreError::Conflict(field) => AppError::Conflict(field),
            StoreError::InvalidCursor(field) => AppError::field(
                "invalid_value",
                field,
                format!("{field} is not a cursor this list returned"),
            ),
            StoreError::Unavailable(reason) => AppError::Unavailable(reason),
            other => AppError::Internal(other.to_string()),
        }
    }
}
