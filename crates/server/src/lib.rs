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
//! - `connections`: the accept loop: header, body and idle timeouts, the connection cap, bounded
//!   shutdown, and JSON for the errors hyper answers before routing.
//! - [`state`]: shared state (the application, HTTP configuration, link signer, metrics).
//! - `auth`: the `Caller` extractor (API key → scope and organization).
//! - `extract`: the JSON-body and query extractors that turn bad input into 4xx JSON.
//! - `middleware`: request ids, metrics, and JSON bodies for every error response.
//! - `rate_limit`: requests a minute per client address and per API key (429, `Retry-After`).
//! - `wire`: hand-written JSON for every object the API returns.
//! - `links`: signed download links for exports.
//! - `portal/`: the Admin Portal, server-rendered pages opened by one-time links.
//! - `console/`: the operators' console at `/console` (sign-in, organizations, schemas, the
//!   log of what operators did); `web`: what the portal and the console share.
//! - `routes/`: one file per resource.

mod auth;
mod connections;
mod console;
pub mod error;
mod extract;
mod links;
mod metrics;
mod middleware;
mod portal;
mod rate_limit;
mod routes;

/// A key as `GET /api_keys` shows it (also `trailmark keys list --json`).
pub use routes::keys::key_object;
pub mod state;
mod web;
mod wire;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use connections::ConnectionLimits;
pub use rate_limit::{Cidr, DEFAULT_PER_ADDRESS, DEFAULT_PER_KEY, RateLimits};
pub use state::{AppState, Clock, ServerConfig};

/// The whole API as an axum router over `state`.
pub fn router(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::by_address,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::around_every_request,
        ))
}

/// Starts the application's background work, serves the API on `listener` until `shutdown`
/// completes, stops accepting connections, lets requests in flight finish for up to the
/// configured grace period, and stops the background work. Timeouts and the connection cap come
/// from [`ServerConfig::connections`].
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
    let limits = state.config.connections;
    let stopping = app.clone();
    let shutdown = async move {
        shutdown.await;
        // Live event streams never finish by themselves: end them, so they close at once.
        stopping.stop_live_readers();
    };
    let served = connections::serve(listener, router(state), limits, shutdown).await;
    app.shutdown().await;
    served
}
