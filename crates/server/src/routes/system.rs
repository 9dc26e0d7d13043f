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

/// `GET /metrics`: the OpenMetrics text format, which Prometheus reads. No key needed (bind the
/// server to a private interface or filter this path at the proxy if metrics are sensitive).
/// Everything comes from memory: a scrape never queries the database.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(state.app.metrics()),
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
