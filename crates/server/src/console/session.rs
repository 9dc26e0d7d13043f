//! Console sessions: the cookie, the [`Operator`] extractor every page takes, and
//! [`OperatorForm`], which every `POST` takes and which checks the session's CSRF token.
//!
//! The cookie (`trailmark_console`) holds 32 random bytes in hex; the database keeps their
//! SHA-256 only. It is `HttpOnly; SameSite=Strict; Path=/console`, plus `Secure` behind `https`
//! (`crate::web::session_cookie`, as the portal's). The application ends a session after
//! `--console-idle-timeout-secs` (30 minutes) without a request and 12 hours after sign-in,
//! judged by the state's clock.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use trailmark_app::audit::Origin;
use trailmark_store::OperatorSession;

use super::ConsoleError;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::rate_limit::ClientAddress;
use crate::state::AppState;
use crate::web::{self, FormRefusal, token_hash};

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "trailmark_console";
/// The cookie's path: the browser sends it to the console only.
pub(crate) const COOKIE_PATH: &str = "/console";
/// The longest user agent recorded (the rest is cut off).
const USER_AGENT_MAX_CHARS: usize = 300;

/// A request made within an open console session.
pub(crate) struct Operator {
    pub session: OperatorSession,
    pub secret_hash: [u8; 32],
    /// The operator as the application records them: id, e-mail, address, browser.
    pub origin: Origin,
}

/// Where a request came from, as the records name it: the client's address and its browser.
pub(crate) fn whence(parts: &Parts) -> (String, Option<String>) {
    let address = parts
        .extensions
        .get::<ClientAddress>()
        .map_or_else(|| "unknown".to_owned(), |ClientAddress(ip)| ip.to_string());
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(|value| value.chars().take(USER_AGENT_MAX_CHARS).collect());
    (address, user_agent)
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = web::cookie_token(parts, COOKIE_NAME).ok_or(ConsoleError::NoSession)?;
        let secret_hash = token_hash(&secret);
        let session = state
            .app
            .operator_session(secret_hash, state.clock.now(), state.console_idle_timeout)
            .await
            .map_err(ApiError::from)?
            .ok_or(ConsoleError::NoSession)?;
        let (address, user_agent) = whence(parts);
        let origin = Origin::Operator {
            operator_id: session.operator_id.clone(),
            email: session.email.clone(),
            address,
            user_agent,
        };
        Ok(Operator {
            session,
            secret_hash,
            origin,
        })
    }
}

/// A form posted within a session, whose CSRF token matched the session's.
pub(crate) struct OperatorForm {
    pub operator: Operator,
    pub fields: QueryPairs,
}

impl FromRequest<AppState> for OperatorForm {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let fields = web::csrf_checked_form(parts, body, state, &operator.session.csrf_token)
            .await
            .map_err(|refusal| match refusal {
                FormRefusal::Csrf => ConsoleError::Csrf,
                FormRefusal::Api(error) => ConsoleError::Api(error),
            })?;
        Ok(OperatorForm { operator, fields })
    }
}
