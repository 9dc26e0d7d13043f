//! API keys (Trailmark; WorkOS keys live in its dashboard): `POST /api_keys` creates one and
//! answers its text once, in `key`; `GET /api_keys` lists them (a short prefix, never the text
//! or its hash); `DELETE /api_keys/{id}` revokes one, refused by every instance over the
//! database within 5 seconds. Only unrestricted admin keys manage keys. Revoking the last live
//! unrestricted admin key needs `?force=true` (409 `last_admin_key` otherwise): without one,
//! only `TRAILMARK_API_KEY` or `trailmark keys create` could make keys again.
//!
//! Rotation is create-then-revoke: create the new key, deploy it, revoke the old one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_app::keys::NewApiKey;
use trailmark_domain::api_key::Scope;
use trailmark_domain::{FieldProblem, Timestamp};
use trailmark_store::ApiKeyRecord;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::state::AppState;

/// `POST /api_keys` `{"name", "scope", "organization_id"?, "expires_at"?}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    require_key_manager(&caller)?;
    let new = parse_new_key(&body)?;
    let created = state.app.create_api_key(new, &caller.origin()).await?;
    let mut object = key_object(&created.record);
    object["key"] = json!(created.secret.expose());
    Ok((StatusCode::CREATED, Json(object)))
}

/// `GET /api_keys`: every key, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_key_manager(&caller)?;
    let keys = state.app.api_keys().await?;
    Ok(Json(json!({
        "object": "list",
        "data": keys.iter().map(key_object).collect::<Vec<_>>(),
        "list_metadata": {"before": null, "after": null},
    })))
}

/// `DELETE /api_keys/{id}[?force=true]`: the revoked key.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    require_key_manager(&caller)?;
    query.refuse_unknown(&["force"])?;
    let force = match query.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::field(
                "invalid_value",
                "force",
                format!("force must be true or false, got '{other}'"),
            ));
        }
    };
    let revoked = state
        .app
        .revoke_api_key(&id, force, &caller.origin())
        .await?;
    let mut object = key_object(&revoked);
    object["revoked"] = json!(true);
    Ok(Json(object))
}

/// Keys manage keys only when they could do anything anyway: admin scope, no organization.
fn require_key_manager(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_unrestricted()
}

/// A key as the API shows it: never its text or its hash. Also `trailmark keys list --json`.
pub fn key_object(key: &ApiKeyRecord) -> Value {
    json!({
        "object": "api_key",
        "id": key.id,
        "name": key.name,
        "scope": key.scope.as_str(),
        "organization_id": key.organization_id,
        "prefix": key.prefix,
        "created_at": key.created_at.to_string(),
        "expires_at": key.expires_at.map(|at| at.to_string()),
        "last_used_at": key.last_used_at.map(|at| at.to_string()),
    })
}

/// The body of `POST /api_keys`, every problem named by its field.
fn parse_new_key(body: &Value) -> Result<NewApiKey, ApiError> {
    let mut problems = Vec::new();
    let mut problem = |code, field: &str, message: String| {
        problems.push(FieldProblem {
            code,
            field: field.into(),
            message,
        });
    };
    let name = match &body["name"] {
        Value::String(name) => name.clone(),
        Value::Null => {
            problem("required", "name", "name is required".into());
            String::new()
        }
        _ => {
            problem("invalid_type", "name", "name must be a string".into());
            String::new()
        }
    };
    let scope = match &body["scope"] {
        Value::String(text) => Scope::parse(text).or_else(|| {
            problem(
                "invalid_value",
                "scope",
                format!("scope must be ingest, read or admin, got '{text}'"),
            );
            None
        }),
        Value::Null => {
            problem(
                "required",
                "scope",
                "scope is required (ingest, read or admin)".into(),
            );
            None
        }
        _ => {
            problem("invalid_type", "scope", "scope must be a string".into());
            None
        }
    };
    let organization_id = match &body["organization_id"] {
        Value::Null => None,
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        _ => {
            problem(
                "invalid_type",
                "organization_id",
                "organization_id must be an organization's id".into(),
            );
            None
        }
    };
    let expires_at = match &body["expires_at"] {
        Value::Null => None,
        Value::String(text) => Timestamp::parse(text)
            .map_err(|e| {
                problem(
                    "invalid_date",
                    "expires_at",
                    format!("expires_at is not an ISO-8601 date-time: {e}"),
                );
            })
            .ok(),
        _ => {
            problem(
                "invalid_type",
                "expires_at",
                "expires_at must be an ISO-8601 date-time string".into(),
            );
            None
        }
    };
    match scope {
        Some(scope) if problems.is_empty() => Ok(NewApiKey {
            name,
            scope,
            organization_id,
            expires_at,
        }),
        _ => Err(ApiError::Malformed(problems)),
    }
}
