//! Trailmark's HTTP API: the WorkOS-compatible audit-log, organization and schema routes, plus
//! Trailmark's own (batch ingest, health, metrics, OpenAPI).
//!
//! This crate is thin on purpose. A handler turns the request into domain values
//! (`trailmark_domain` does the validating), calls the [`trailmark_store::Store`], and writes the
//! WorkOS-shaped response. It is the only crate that knows HTTP; [`error::ApiError`] is the only
//! place that knows statuses and error bodies.
//!
//! Layout:
//! - [`serve`] / [`router`]: the listener, the middleware stack and graceful shutdown.
//! - [`state`]: shared state (store, configuration, schema cache, metrics).
//! - `auth`: the `Caller` extractor (API key → scope and organization).
//! - `extract`: the JSON-body and query extractors that turn bad input into 4xx JSON.
//! - `middleware`: request ids, metrics, and JSON bodies for every error response.
//! - `wire`: hand-written JSON for every object the API returns.
//! - `exports`: background export jobs; `links`: their signed download links.
//! - `ledger`: checkpoint signing (a background task and on demand); `retention`: the purge job.
//! - `portal/`: the Admin Portal, server-rendered pages opened by one-time links.
//! - `routes/`: one file per resource.

mod auth;
pub mod error;
mod exports;
mod extract;
mod ledger;
mod links;
mod metrics;
mod middleware;
mod portal;
mod retention;
mod routes;
pub mod state;
mod wire;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use metrics::Metrics;
pub use state::{AppState, ServerConfig};

/// The whole API as an axum router over `state`.
pub fn router(state: AppState) -> Router {
    routes::router(state.clone()).layer(axum::middleware::from_fn_with_state(
        state,
        middleware::around_every_request,
    ))
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting connections and
/// waits for in-flight requests to finish.
///
/// # Errors
///
/// The I/O error that stopped the accept loop.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.spawn_maintenance();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
