//! Portal sessions: the cookie, the [`Portal`] extractor that every page takes, and
//! [`PortalForm`], which every `POST` takes and which checks the session's CSRF token.
//!
//! The cookie (`trailmark_portal`) holds 32 random bytes in hex (`crate::web` makes the tokens,
//! cookies and CSRF checks the console shares); the database keeps their
//! SHA-256 only. It is `HttpOnly; SameSite=Strict; Path=/portal`, plus `Secure` when the public
//! URL is `https`. It has no `Max-Age`: it ends with the browser, and the server ends it sooner,
//! after [`IDLE_TIMEOUT`] without a request (each request moves the expiry forward).

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use trailmark_domain::Timestamp;
use trailmark_domain::portal::PortalIntent;
use trailmark_store::PortalSession;

use super::PortalError;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::state::AppState;
use crate::web::{self, FormRefusal, token_hash};

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "trailmark_portal";
/// A session ends after this long without a request.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The `Set-Cookie` value that opens a session.
pub(crate) fn session_cookie(secret: &str, public_url: &str) -> String {
    web::session_cookie(COOKIE_NAME, "/portal", secret, public_url)
}

/// The current session's expiry if a request arrives now.
pub(crate) fn renewed_expiry(now: Timestamp) -> Timestamp {
    now.plus_millis(IDLE_TIMEOUT.as_millis() as i64)
}

/// A request made within an open portal session, with its organization's name for the header.
pub(crate) struct Portal {
    pub session: PortalSession,
    /// The hash of the session's cookie secret (what a live stream checks the session by).
    pub secret_hash: [u8; 32],
    pub organization_name: String,
}

impl Portal {
    /// # Errors
    ///
    /// [`PortalError::WrongIntent`] when the session was opened for another section.
    pub fn require(&self, intent: PortalIntent) -> Result<(), PortalError> {
        if self.session.intent == intent {
            Ok(())
        } else {
            Err(PortalError::WrongIntent)
        }
    }
}

impl FromRequestParts<AppState> for Portal {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = session_secret(parts).ok_or(PortalError::NoSession)?;
        let now = Timestamp::now();
        let secret_hash = token_hash(&secret);
        // A deleted organization closes its portal.
        let (session, organization_name) = state
            .app
            .portal_session(secret_hash, renewed_expiry(now))
            .await
            .map_err(ApiError::from)?
            .ok_or(PortalError::NoSession)?;
        Ok(Portal {
            session,
            secret_hash,
            organization_name,
        })
    }
}

/// The session cookie's value, if the request carries one.
pub(crate) fn session_secret(parts: &Parts) -> Option<String> {
    web::cookie_token(parts, COOKIE_NAME)
}

/// A form posted within a session, whose CSRF token matched the session's.
pub(crate) struct PortalForm {
    pub portal: Portal,
    pub fields: QueryPairs,
}

impl FromRequest<AppState> for PortalForm {
    type Rejection = PortalError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let portal = Portal::from_request_parts(&mut parts, state).await?;
        let fields = web::csrf_checked_form(parts, body, state, &portal.session.csrf_token)
            .await
            .map_err(|refusal| match refusal {
                FormRefusal::Csrf => PortalError::Csrf,
                FormRefusal::Api(error) => PortalError::Api(error),
            })?;
        Ok(PortalForm { portal, fields })
    }
}
