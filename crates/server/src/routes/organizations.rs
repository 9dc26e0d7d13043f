//! Organizations (wire doc §4), their audit-log retention (§2.7, §11) and their audit-log
//! configuration (§2.8).
//!
//! Creating, updating and deleting organizations needs an unrestricted `admin` key (a key
//! restricted to an organization may not rename, re-domain or delete even its own); reading
//! needs `read`, and a key restricted to one organization sees only that one. Retention and the
//! legal hold of an organization are managed with an `admin` key unrestricted or restricted to
//! it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_domain::api_key::Scope;
use trailmark_domain::organization::{Organization, OrganizationChanges};
use trailmark_domain::retention::parse_retention_update;
use trailmark_store::{LegalHold, Order, OrganizationFilter, PageRequest};
use trailmark_streams::settings::StreamKind;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::routes::live_organization;
use crate::state::AppState;
use crate::wire;

/// `POST /organizations` → 201 `organization`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_unrestricted()?;
    let changes = OrganizationChanges::parse(&body, true).map_err(ApiError::Malformed)?;
    let organization = state.app.create_organization(changes).await?;
    Ok((StatusCode::CREATED, Json(wire::organization(&organization))))
}

/// `GET /organizations/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let organization = find(&state, &caller, &id).await?;
    Ok(Json(wire::organization(&organization)))
}

/// `GET /organizations/external_id/{external_id}`: the live organization your system knows by
/// that id (WorkOS's lookup; both official SDKs call it).
pub async fn get_by_external_id(
    State(state): State<AppState>,
    caller: Caller,
    Path(external_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let filter = OrganizationFilter {
        domains: Vec::new(),
        search: None,
        // A key restricted to another organization learns nothing: the same 404.
        only: caller.organization.clone(),
        external_id: Some(external_id.clone()),
    };
    let page = PageRequest {
        limit: 1,
        order: Order::Desc,
        before: None,
        after: None,
    };
    let found = state.app.list_organizations(filter, page).await?;
    let organization = found.items.first().ok_or_else(|| {
        ApiError::NotFound(format!(
            "Organization not found with external_id: '{external_id}'."
        ))
    })?;
    Ok(Json(wire::organization(organization)))
}

/// `GET /organizations?domains=…&search=…&limit=…&order=…&before|after=…`, newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let filter = OrganizationFilter {
        domains: query.list("domains"),
        search: query
            .get("search")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        only: caller.organization.clone(),
        external_id: None,
    };
    let page = state.app.list_organizations(filter, query.page()?).await?;
    Ok(Json(wire::list(
        &page,
        |o| o.id.clone(),
        wire::organization,
    )))
}

/// `PUT /organizations/{id}`: changes only the fields given.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    // Renaming or re-domaining an organization is the environment's business, not the tenant's:
    // a key restricted to the organization may not, even its own.
    caller.require_unrestricted()?;
    let changes = OrganizationChanges::parse(&body, false).map_err(ApiError::Malformed)?;
    let organization = state.app.update_organization(&id, changes).await?;
    Ok(Json(wire::organization(&organization)))
}

/// `DELETE /organizations/{id}` → 204. The organization's events stay in its log.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_unrestricted()?;
    state.app.delete_organization(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /organizations/{id}/audit_logs_retention` → `{"retention_period_in_days": N | null}`.
pub async fn get_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let organization = find(&state, &caller, &id).await?;
    Ok(Json(wire::retention(&organization)))
}

/// `PUT /organizations/{id}/audit_logs_retention` with either body form.
pub async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_organization(&id)?;
    let days = parse_retention_update(&body).map_err(ApiError::Malformed)?;
    let organization = state.app.set_retention(&id, days, &caller.origin()).await?;
    Ok(Json(wire::retention(&organization)))
}

/// `GET /organizations/{id}/audit_log_configuration`, with `log_stream` when the organization
/// has a stream (WorkOS's type names: `GenericHttps`, `Datadog`, `Splunk`).
pub async fn configuration(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let organization = find(&state, &caller, &id).await?;
    let mut configuration = json!({
        "organization_id": organization.id,
        "retention_period_in_days": organization.retention_period_in_days,
        "state": "active",
    });
    // WorkOS reports one stream; with several, the oldest stands for them.
    if let Some(stream) = state.app.first_stream(&id).await? {
        let kind = StreamKind::parse(&stream.kind)
            .map_or_else(|| stream.kind.clone(), |k| k.workos_name().to_owned());
        configuration["log_stream"] = json!({
            "id": stream.id,
            "type": kind,
            "state": stream.state.as_str(),
            "last_synced_at": stream.last_synced_at.map(|t| t.to_string()),
            "created_at": stream.created_at.to_string(),
        });
    }
    Ok(Json(configuration))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Organization, ApiError> {
    caller.require_organization(id)?;
    live_organization(state, id).await
}

/// `GET /organizations/{id}/legal_hold` (Trailmark).
pub async fn get_legal_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    find(&state, &caller, &id).await?;
    let hold = state.app.legal_hold(&id).await?;
    Ok(Json(legal_hold_json(&id, hold.as_ref())))
}

/// `PUT /organizations/{id}/legal_hold` with `{"active": true, "reason": "…"}` to set a hold
/// (retention then purges nothing of the organization's) or `{"active": false}` to lift it. The
/// change is recorded as an event in the organization's own log (`trailmark.legal_hold.set` or
/// `trailmark.legal_hold.lifted`, with the key as actor), in the same commit.
pub async fn set_legal_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    find(&state, &caller, &id).await?;
    let active = match body.get("active") {
        Some(Value::Bool(active)) => *active,
        None | Some(Value::Null) => {
            return Err(ApiError::field("required", "active", "active is required"));
        }
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "active",
                "active must be a boolean",
            ));
        }
    };
    let reason = match body.get("reason") {
        Some(Value::String(reason)) if !reason.trim().is_empty() => Some(reason.clone()),
        None | Some(Value::Null) => None,
        Some(Value::String(_)) => {
            return Err(ApiError::field(
                "empty",
                "reason",
                "reason must not be empty",
            ));
        }
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "reason",
                "reason must be a string",
            ));
        }
    };
    let hold = state
        .app
        .set_legal_hold(&id, active, reason, &caller.origin())
        .await?;
    Ok(Json(legal_hold_json(&id, hold.as_ref())))
}

fn legal_hold_json(organization_id: &str, hold: Option<&LegalHold>) -> Value {
    json!({
        "object": "legal_hold",
        "organization_id": organization_id,
        "active": hold.is_some(),
        "reason": hold.map(|h| h.reason.clone()),
        "set_at": hold.map(|h| h.set_at.to_string()),
    })
}
