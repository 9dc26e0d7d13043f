//! The operators' console at `/console`: for the people who run Trailmark, not their customers.
//! Operators (made with `trailmark operators create`) sign in with their e-mail and password;
//! the console lists, creates, renames, re-domains and deletes organizations, shows one
//! organization's events with the search API's filters, its exports, retention, legal hold
//! and log streams, makes Admin Portal links, manages event schemas (a new version beside the
//! old, a sample checked before saving), shows Trailmark's own log of what operators did, and
//! the alert incidents (failing streams, failed exports).
//!
//! Like the portal, it is a face on the application, not a second implementation: every page
//! calls `Trailmark` (`trailmark_app::console` and the use cases the API calls), filters parse
//! with the search API's parser, and every change is recorded by the application with the
//! operator as actor ([`trailmark_app::audit::Origin::Operator`]).
//!
//! - `session`: the session cookie (`trailmark_console`, `Path=/console`), the [`session::Operator`]
//!   extractor and CSRF-checked forms ([`session::OperatorForm`]), built on `crate::web`.
//! - `html`: the layout; `pages/`: one file per section; `assets/`: the stylesheet (the
//!   portal's plus a few rules) and the script, embedded.

mod html;
mod pages;
mod session;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use trailmark_app::AppError;

use crate::error::ApiError;
use crate::state::AppState;

/// The console's pages, under `/console`, with the same security headers as the portal's.
pub(crate) fn router() -> Router<AppState> {
    use pages::{alerts, assets, keys, log, organizations, schemas, sign_in};
    Router::new()
        .route("/console", get(sign_in::home))
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .route("/console/sign_in", get(sign_in::form).post(sign_in::submit))
        .route("/console/sign_out", post(sign_in::sign_out))
        .route("/console/sign_in/oidc", get(sign_in::oidc_start))
        .route("/console/oidc/callback", get(sign_in::oidc_callback))
        .route(
            "/console/organizations",
            get(organizations::list).post(organizations::create),
        )
        .route(
            "/console/organizations/{id}",
            get(organizations::show).post(organizations::update),
        )
        .route(
            "/console/organizations/{id}/{action}",
            post(organizations::act),
        )
        .route(
            "/console/organizations/{id}/exports/{export}",
            get(organizations::export),
        )
        .route("/console/schemas", get(schemas::list).post(schemas::save))
        .route("/console/schemas/new", get(schemas::new_form))
        .route("/console/schemas/{action}", get(schemas::show))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{id}/revoke", post(keys::revoke))
        .route(
            "/console/organizations/{id}/events/stream",
            get(organizations::stream),
        )
        .route("/console/log", get(log::show))
        .route("/console/alerts", get(alerts::show))
        .route("/console/{*rest}", any(not_found))
        .layer(axum::middleware::map_response(crate::web::security_headers))
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}

/// Why a console request was refused; each becomes an HTML page (a 500's cause is logged and
/// never shown). No session sends the browser to the sign-in page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    #[error("no console session")]
    NoSession,
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl From<AppError> for ConsoleError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::NotFound { .. } | AppError::OrganizationNotFound(_) => ConsoleError::NotFound,
            other => ConsoleError::Api(other.into()),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            ConsoleError::NoSession => {
                return crate::web::see_other("/console/sign_in?ended=1");
            }
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Reload the page and try again.".to_owned(),
            ),
            ConsoleError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address.".to_owned(),
            ),
            ConsoleError::Api(error) if error.status().is_server_error() => {
                tracing::error!(%error, "console request failed");
                (
                    error.status(),
                    "Something went wrong",
                    "The server could not complete this request. Try again in a moment.".to_owned(),
                )
            }
            ConsoleError::Api(error) => (
                error.status(),
                "This request was refused",
                error.body()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        };
        html::page(
            status,
            title,
            None,
            maud::html! { p class="notice error" role="alert" { (detail) } },
        )
    }
}
