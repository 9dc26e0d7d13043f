//! `POST /audit_logs/erasures` (Trailmark): removes a person's data from an organization's log,
//! keeping every proof (see `trailmark_app::erasure`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use trailmark_app::erasure::Erasure;
use trailmark_app::system::SystemActor;
use trailmark_domain::api_key::Scope;
use trailmark_domain::erasable::ErasureRequest;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// `{"organization_id": "org_…", "subject": {"actor_id" | "target_id" | "value": "…"},
/// "fields": ["name", …], "force": true, "reason": "…"}`; `fields`, `force` and `reason` are
/// optional, `reason` required with `force` (erasing under a legal hold). Answers with what was
/// done once it is done: `erased_events` rewritten, `purged_events` (stored before leaf version
/// 2) purged whole.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let organization_id = match body.get("organization_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::field(
                "required",
                "organization_id",
                "organization_id is required",
            ));
        }
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "organization_id",
                "organization_id must be a non-empty string",
            ));
        }
    };
    caller.require_organization(&organization_id)?;
    let request = ErasureRequest::parse(&body)?;
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "force",
                "force must be a boolean",
            ));
        }
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(reason)) if !reason.trim().is_empty() => Some(reason.clone()),
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "reason",
                "reason must be a non-empty string",
            ));
        }
    };
    if force && reason.is_none() {
        return Err(ApiError::field(
            "required",
            "reason",
            "an erasure forced past a legal hold needs a reason",
        ));
    }
    let fields: Vec<&str> = request.fields.iter().map(|f| f.as_str()).collect();
    let subject = request.subject.kind();
    let outcome = state
        .app
        .erase(Erasure {
            organization_id: organization_id.clone(),
            request: request.clone(),
            forced_because: reason.filter(|_| force),
            actor: SystemActor {
                id: caller.key_id.clone(),
                kind: "api_key",
                name: None,
            },
            location: "trailmark".into(),
        })
        .await?;
    Ok(Json(json!({
        "object": "audit_log_erasure",
        "organization_id": organization_id,
        "subject": subject,
        "fields": fields,
        "erased_events": outcome.erased_events,
        "purged_events": outcome.purged_events,
    })))
}
