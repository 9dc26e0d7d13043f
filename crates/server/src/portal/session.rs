//! Portal sessions: the cookie, the [`Portal`] extractor that every page takes, and
//! [`PortalForm`], which every `POST` takes and which checks the session's CSRF token.
//!
//! The cookie (`trailmark_portal`) holds 32 random bytes in hex; the database keeps their
//! SHA-256 only. It is `HttpOnly; SameSite=Strict; Path=/portal`, plus `Secure` when the public
//! URL is `https`. It has no `Max-Age`: it ends with the browser, and the server ends it sooner,
//! after [`IDLE_TIMEOUT`] without a request (each request moves the expiry forward).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use trailmark_domain::Timestamp;
use trailmark_domain::portal::PortalIntent;
use trailmark_store::PortalSession;

use super::PortalError;
use crate::error::ApiError;
use crate::extract::{QueryPairs, decode_query};
use crate::state::AppState;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "trailmark_portal";
/// A session ends after this long without a request.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The form field that carries the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// 32 random bytes, hex-encoded: link tokens, cookie secrets, CSRF tokens.
pub(crate) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for a portal token: {e}")))?;
    Ok(hex::encode(bytes))
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `Set-Cookie` value that opens a session.
pub(crate) fn session_cookie(secret: &str, public_url: &str) -> String {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE_NAME}={secret}; Path=/portal; HttpOnly; SameSite=Strict{secure}")
}

/// The current session's expiry if a request arrives now.
pub(crate) fn renewed_expiry(now: Timestamp) -> Timestamp {
    now.plus_millis(IDLE_TIMEOUT.as_millis() as i64)
}

/// A request made within an open portal session, with its organization's name for the header.
pub(crate) struct Portal {
    pub session: PortalSession,
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
        // A deleted organization closes its portal.
        let (session, organization_name) = state
            .app
            .portal_session(token_hash(&secret), renewed_expiry(now))
            .await
            .map_err(ApiError::from)?
            .ok_or(PortalError::NoSession)?;
        Ok(Portal {
            session,
            organization_name,
        })
    }
}

/// The session cookie's value, if the request carries one.
pub(crate) fn session_secret(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
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
        let is_form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(PortalError::Csrf);
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| {
                PortalError::Api(ApiError::PayloadTooLarge {
                    limit: state.config.max_body_bytes,
                })
            })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| PortalError::Csrf)?;
        let fields = QueryPairs(decode_query(text)?);
        let presented = fields.get(CSRF_FIELD).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), portal.session.csrf_token.as_bytes()) {
            return Err(PortalError::Csrf);
        }
        Ok(PortalForm { portal, fields })
    }
}

/// Compares secrets in time independent of where they differ (lengths are not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_only_behind_https() {
        let plain = session_cookie("ab", "http://127.0.0.1:8080");
        assert_eq!(
            plain,
            "trailmark_portal=ab; Path=/portal; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("ab", "https://audit.example.com").ends_with("; Secure"));
    }

    #[test]
    fn the_session_secret_is_found_among_other_cookies_and_must_look_right() {
        let secret = "a".repeat(64);
        let request = axum::http::Request::builder()
            .header(COOKIE, format!("theme=dark; {COOKIE_NAME}={secret}"))
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        assert_eq!(session_secret(&parts), Some(secret));
        let forged = axum::http::Request::builder()
            .header(COOKIE, format!("{COOKIE_NAME}=../../etc"))
            .body(())
            .expect("request");
        let (parts, ()) = forged.into_parts();
        assert_eq!(session_secret(&parts), None);
    }
}
