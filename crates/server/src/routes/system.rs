//! Operational routes: liveness, readiness, metrics, the OpenAPI document, and the JSON 404.

use axum::Json;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3.1 description of every route, kept beside the code it describes.
const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /healthz`: the process is up. No key needed.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: storage answers. No key needed.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.app.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text format. No key needed (bind the server to a private
/// interface or filter this path at the proxy if metrics are sensitive).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render(state.app.metrics());
    // Stream health comes from storage; if it does not answer, the process's own series still do.
    match crate::routes::streams::metrics(&state).await {
        Ok(streams) => text.push_str(&streams),
        Err(error) => tracing::warn!(%error, "cannot read stream health for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /openapi.json`. No key needed.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Any unknown path: a WorkOS-style 404 naming it.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "The requested path '{}' could not be found.",
        uri.path()
    ))
}
