//! Organizations (wire doc §4), their audit-log retention (§2.7, §11) and their audit-log
//! configuration (§2.8).
//!
//! Creating, updating and deleting organizations needs an unrestricted `admin` key; reading
//! needs `read`, and a key restricted to one organization sees only that one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::organization::{Organization, OrganizationChanges};
use trailmark_domain::retention::parse_retention_update;
use trailmark_store::OrganizationFilter;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
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
    let organization = state
        .store
        .insert_organization(changes.into_new_organization(Timestamp::now()))
        .await?;
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
    };
    let page = state
        .store
        .list_organizations(filter, query.page()?)
        .await?;
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
    let changes = OrganizationChanges::parse(&body, false).map_err(ApiError::Malformed)?;
    let mut organization = find(&state, &caller, &id).await?;
    changes.apply_to(&mut organization, Timestamp::now());
    if !state
        .store
        .update_organization(organization.clone())
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(wire::organization(&organization)))
}

/// `DELETE /organizations/{id}` → 204. The organization's events stay in its log.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    caller.require_organization(&id)?;
    if !state
        .store
        .delete_organization(&id, Timestamp::now())
        .await?
    {
        return Err(not_found(&id));
    }
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
    let organization = state
        .store
        .set_retention(&id, days, Timestamp::now())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(wire::retention(&organization)))
}

/// `GET /organizations/{id}/audit_log_configuration`. Log streams arrive with a later release;
/// until then no `log_stream` key is present, as for a WorkOS organization without one.
pub async fn configuration(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let organization = find(&state, &caller, &id).await?;
    Ok(Json(json!({
        "organization_id": organization.id,
        "retention_period_in_days": organization.retention_period_in_days,
        "state": "active",
    })))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Organization, ApiError> {
    caller.require_organization(id)?;
    state
        .store
        .get_organization(id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Organization not found: '{id}'."))
}
