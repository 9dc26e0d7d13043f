//! The Admin Portal's persisted values: one-time links and the sessions they open. Only hashes
//! of the link token and of the session cookie are stored, so a database read does not hand
//! anyone a way into a portal.

use trailmark_domain::Timestamp;
use trailmark_domain::portal::PortalIntent;

/// A portal link as issued by `POST /portal/generate_link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLink {
    /// SHA-256 of the token in the link.
    pub token_hash: [u8; 32],
    pub organization_id: String,
    pub intent: PortalIntent,
    /// The e-mail the app named for the person it sent the link to, if any; it becomes the
    /// actor name of what that person does in the portal.
    pub email: Option<String>,
    /// Where the portal's "back" link leads (an `http(s)` URL, checked when issued).
    pub return_url: Option<String>,
    /// Where the admin is sent after finishing what the link was for (WorkOS's `success_url`).
    pub success_url: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What the server chooses for a session about to be opened from a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPortalSession {
    /// The public id (`portal_session_…`), recorded as the actor of the session's changes.
    pub id: String,
    /// SHA-256 of the secret in the session cookie.
    pub secret_hash: [u8; 32],
    /// The token every form of the session carries.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// An open portal session: the link's scope plus the session's own keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    pub id: String,
    pub organization_id: String,
    pub intent: PortalIntent,
    pub email: Option<String>,
    pub return_url: Option<String>,
    pub success_url: Option<String>,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// What opening a portal link came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalRedemption {
    /// The link was unused and current; it is now used, and this session is open.
    Opened(PortalSession),
    /// The link was opened before.
    AlreadyUsed,
    /// The link's time ran out before it was opened.
    Expired,
    /// No such link was issued (or it was purged long after expiring).
    Unknown,
}
