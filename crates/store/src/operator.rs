//! The console's persisted values: operator accounts and their sessions. Passwords are kept as
//! Argon2id PHC strings and session cookies as their SHA-256 only, so a database read lets no one
//! into the console.

use trailmark_domain::Timestamp;

/// An operator account: someone who runs Trailmark and signs in to `/console`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// `operator_…`, recorded as the actor of what the operator does.
    pub id: String,
    /// Lower-case; unique among operators.
    pub email: String,
    /// The Argon2id PHC string (`$argon2id$v=19$…`), salt and parameters included.
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A console session about to be opened by a successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperatorSession {
    /// `console_session_…`, the public id of the session.
    pub id: String,
    /// SHA-256 of the secret in the session cookie.
    pub secret_hash: [u8; 32],
    pub operator_id: String,
    /// The token every form of the session carries.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An open console session, with its operator's e-mail for the pages and the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    pub id: String,
    pub operator_id: String,
    pub email: String,
    pub csrf_token: String,
    /// When the session was opened: a session ends a fixed time after it, however busy.
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}
