//! The Admin Portal: a small server-rendered web UI that an app opens for its customer's admins
//! with a one-time link (`POST /portal/generate_link`, as WorkOS's), scoped to one organization
//! and one intent: `audit_logs` (browse, filter, inspect and export events) or `log_streams`
//! (manage the organization's log streams).
//!
//! It is a face on the API, not a second implementation: filters parse with the search API's
//! parser, exports and stream changes go through the same functions as their API routes, and
//! organization scoping is the same "another organization's id is not found" rule.
//!
//! - `links`: issuing links and opening them (link → session cookie).
//! - `session`: the session cookie, the [`session::Portal`] extractor, and CSRF-checked forms.
//! - `html`: the page layout (pages are `maud` templates, which escape every value they are
//!   given); `assets/`: the CSS and the little JavaScript, embedded.
//! - `pages/`: one file per section.
//!
//! Every page carries a strict Content-Security-Policy (nothing but this server's own CSS and
//! script), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and `nosniff`. Everything
//! done through the portal that changes something or takes data out (exports, stream changes,
//! replays, test deliveries, opening a session) is recorded in the organization's own log, with
//! the session as actor (`portal_session`, named by the link's e-mail when the app gave one).

mod html;
pub(crate) mod links;
pub(crate) mod pages;
mod session;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;
use trailmark_app::AppError;
use trailmark_app::system::{SystemActor, SystemEvent};
use trailmark_store::PortalSession;

use crate::error::ApiError;
use crate::state::AppState;

/// The portal's pages, under `/portal`, with their security headers.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(links::open))
        .route("/portal/assets/portal.css", get(pages::assets::css))
        .route("/portal/assets/portal.js", get(pages::assets::js))
        .route("/portal/events", get(pages::events::list))
        .route("/portal/events/stream", get(pages::events::stream))
        .route("/portal/events/{id}", get(pages::events::show))
        .route("/portal/exports", post(pages::exports::create))
        .route("/portal/exports/{id}", get(pages::exports::show))
        .route(
            "/portal/streams",
            get(pages::streams::list).post(pages::streams::create),
        )
        .route("/portal/streams/new", get(pages::streams::new_form))
        .route("/portal/streams/{id}", get(pages::streams::show))
        .route(
            "/portal/streams/{id}/edit",
            get(pages::streams::edit_form).post(pages::streams::save),
        )
        .route("/portal/streams/{id}/{action}", post(pages::streams::act))
        .route("/portal/{*rest}", any(not_found))
        .layer(axum::middleware::map_response(crate::web::security_headers))
}

/// An unknown path under `/portal`: a page for a browser, WorkOS's JSON 404 for an API client
/// (an SDK calling a portal endpoint Trailmark does not have, such as `revoke_link`), told apart
/// by whether it asks for HTML.
async fn not_found(headers: HeaderMap, uri: Uri) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("text/html"));
    if wants_html {
        PortalError::NotFound.into_response()
    } else {
        ApiError::NotFound(format!(
            "The requested path '{}' could not be found.",
            uri.path()
        ))
        .into_response()
    }
}

/// Why a portal request was refused; each becomes a friendly HTML page with a 4xx status (a 500
/// for unexpected failures, whose cause is logged and never shown).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PortalError {
    #[error("the portal link was already used")]
    LinkUsed,
    #[error("the portal link expired")]
    LinkExpired,
    #[error("the portal link is not valid")]
    LinkInvalid,
    #[error("no portal session")]
    NoSession,
    #[error("this session was opened for another section")]
    WrongIntent,
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("not found in this organization")]
    NotFound,
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl From<AppError> for PortalError {
    /// Another organization's event, export or stream is simply not found in this one.
    fn from(error: AppError) -> Self {
        match error {
            AppError::NotFound { .. } => PortalError::NotFound,
            other => PortalError::Api(other.into()),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            PortalError::LinkUsed => (
                StatusCode::GONE,
                "This link was already used",
                "Portal links work once. Go back to your app and open the portal again to get a fresh link.",
            ),
            PortalError::LinkExpired => (
                StatusCode::GONE,
                "This link has expired",
                "Portal links work for 5 minutes after they are made. Go back to your app and open the portal again.",
            ),
            PortalError::LinkInvalid => (
                StatusCode::NOT_FOUND,
                "This link is not valid",
                "It may have been copied incompletely. Go back to your app and open the portal again.",
            ),
            PortalError::NoSession => (
                StatusCode::UNAUTHORIZED,
                "Your portal session has ended",
                "Sessions end after 30 minutes without activity. Go back to your app and open the portal again.",
            ),
            PortalError::WrongIntent => (
                StatusCode::FORBIDDEN,
                "Not part of this portal",
                "This portal was opened for another section. Ask your app for a link to this one.",
            ),
            PortalError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Reload the page and try again.",
            ),
            PortalError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address in your organization.",
            ),
            PortalError::Api(error) if error.status().is_server_error() => {
                tracing::error!(%error, "portal request failed");
                (
                    error.status(),
                    "Something went wrong",
                    "The server could not complete this request. Try again in a moment.",
                )
            }
            PortalError::Api(error) => (error.status(), "This request was refused", ""),
        };
        let detail = match &self {
            PortalError::Api(error) if !error.status().is_server_error() => error.body()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => text.to_owned(),
        };
        html::error_page(status, title, &detail)
    }
}

/// Records something done through the portal in the organization's own log, with the session
/// as actor.
///
/// # Errors
///
/// A storage error: the change was made but could not be recorded, and the page says so.
pub(crate) async fn record(
    state: &AppState,
    session: &PortalSession,
    action: &str,
    target: Value,
    metadata: Value,
) -> Result<(), PortalError> {
    let event = SystemEvent {
        action: action.to_owned(),
        actor: SystemActor {
            id: session.id.clone(),
            kind: "portal_session",
            name: session.email.clone(),
        },
        target,
        location: "trailmark portal".into(),
        user_agent: None,
        metadata,
    };
    state
        .app
        .record(&session.organization_id, event)
        .await
        .map_err(ApiError::from)?;
    Ok(())
}
