//! Trailmark's HTTP API: the WorkOS-compatible audit-log, organization and schema routes, plus
//! Trailmark's own (batch ingest, health, metrics, OpenAPI).
//!
//! This crate is thin on purpose. A handler turns the request into domain values
//! (`trailmark_domain` does the validating), calls the application ([`trailmark_app::Trailmark`]),
//! and writes the WorkOS-shaped response. It is the only crate that knows HTTP;
//! [`error::ApiError`] is the only place that knows statuses and error bodies.
//!
//! Layout:
//! - [`serve`] / [`router`]: the listener, the middleware stack and graceful shutdown.
//! - [`state`]: shared state (the application, HTTP configuration, link signer, metrics).
//! - `auth`: the `Caller` extractor (API key → scope and organization).
//! - `extract`: the JSON-body and query extractors that turn bad input into 4xx JSON.
//! - `middleware`: request ids, metrics, and JSON bodies for every error response.
//! - `wire`: hand-written JSON for every object the API returns.
//! - `links`: signed download links for exports.
//! - `portal/`: the Admin Portal, server-rendered pages opened by one-time links.
//! - `routes/`: one file per resource.

mod auth;
pub mod error;
mod extract;
mod links;
mod metrics;
mod middleware;
mod portal;
mod routes;
pub mod state;
mod wire;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use state::{AppState, ServerConfig};

/// The whole API as an axum router over `state`.
pub fn router(state: AppState) -> Router {
    routes::router(state.clone()).layer(axum::middleware::from_fn_with_state(
        state,
        middleware::around_every_request,
    ))
}

/// Starts the application's background work, serves the API on `listener` until `shutdown`
/// completes, stops accepting connections, waits for in-flight requests to finish, and stops
/// the background work.
///
/// # Errors
///
/// The I/O error that stopped the accept loop.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = state.app.clone();
    app.start();
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    app.shutdown().await;
    served
}
