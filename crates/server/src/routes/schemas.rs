//! Action schemas (wire doc §2.4–2.6). Schemas belong to the whole environment, so creating one
//! needs an unrestricted `admin` key; any `read` key may list them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use trailmark_domain::api_key::Scope;
use trailmark_domain::schema::{ActionName, SchemaDefinition};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::state::AppState;
use crate::wire;

/// `POST /audit_logs/actions/{action}/schemas` → 201 `audit_log_schema`: the next version, or
/// the latest one unchanged when the body equals it.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_unrestricted()?;
    let action =
        ActionName::parse(&action).map_err(|problem| ApiError::Malformed(vec![problem]))?;
    let definition = SchemaDefinition::parse(&body).map_err(ApiError::Malformed)?;
    let schema = state.app.create_schema(action, definition).await?;
    Ok((StatusCode::CREATED, Json(wire::schema(&schema))))
}

/// `GET /audit_logs/actions/{action}/schemas`: versions, newest first by default. The cursors
/// are version numbers. An action without schemas is a 404.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let page = state.app.list_schemas(&action, query.page()?).await?;
    if page.items.is_empty()
        && !page.more_before
        && !page.more_after
        && query.get("before").is_none()
        && query.get("after").is_none()
    {
        return Err(ApiError::NotFound(format!(
            "Audit Log Action not found: '{action}'."
        )));
    }
    Ok(Json(wire::list(
        &page,
        |s| s.version.to_string(),
        wire::schema,
    )))
}

/// `GET /audit_logs/actions`: every action with its latest schema, by name.
pub async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let page = state.app.list_actions(query.page()?).await?;
    Ok(Json(wire::list(
        &page,
        |a| a.latest.action.as_str().to_owned(),
        wire::action,
    )))
}
