//! One file per resource; this file assembles them into the router.

mod events;
mod exports;
mod ledger;
mod organizations;
mod schemas;
pub(crate) mod search;
pub(crate) mod streams;
mod system;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use trailmark_domain::organization::Organization;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::state::{AppState, BATCH_BODY_FACTOR};

/// The organization `id` if it exists and is not deleted.
///
/// # Errors
///
/// WorkOS's 404 otherwise.
pub(crate) async fn live_organization(
    state: &AppState,
    id: &str,
) -> Result<Organization, ApiError> {
    Ok(state.app.live_organization(id).await?)
}

/// The live organization a read concerns: `organization_id` from the query, or the key's own
/// organization when the key is restricted and the query names none.
///
/// # Errors
///
/// 422 if neither names one, 403 if the key is restricted to another, 404 if it does not exist.
pub(crate) async fn readable_organization(
    state: &AppState,
    caller: &Caller,
    query: &QueryPairs,
) -> Result<String, ApiError> {
    let organization_id = match (
        query.get("organization_id").filter(|id| !id.is_empty()),
        &caller.organization,
    ) {
        (Some(id), _) => id.to_owned(),
        (None, Some(own)) => own.clone(),
        (None, None) => {
            return Err(ApiError::field(
                "required",
                "organization_id",
                "organization_id is required",
            ));
        }
    };
    caller.require_organization(&organization_id)?;
    live_organization(state, &organization_id).await?;
    Ok(organization_id)
}

/// Every route, as `(method, path)`; the test below checks each one is documented.
#[cfg(test)]
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/audit_logs/events"),
    ("POST", "/audit_logs/events/batch"),
    ("GET", "/audit_logs/events"),
    ("GET", "/audit_logs/events/{id}"),
    ("POST", "/audit_logs/exports"),
    ("GET", "/audit_logs/exports/{id}"),
    ("GET", "/audit_logs/exports/{id}/download"),
    ("POST", "/audit_logs/actions/{action}/schemas"),
    ("GET", "/audit_logs/actions/{action}/schemas"),
    ("GET", "/audit_logs/actions"),
    ("POST", "/organizations"),
    ("GET", "/organizations"),
    ("GET", "/organizations/{id}"),
    ("PUT", "/organizations/{id}"),
    ("DELETE", "/organizations/{id}"),
    ("GET", "/organizations/{id}/audit_logs_retention"),
    ("PUT", "/organizations/{id}/audit_logs_retention"),
    ("GET", "/organizations/{id}/audit_log_configuration"),
    ("GET", "/organizations/{id}/legal_hold"),
    ("PUT", "/organizations/{id}/legal_hold"),
    ("POST", "/audit_logs/streams"),
    ("GET", "/audit_logs/streams"),
    ("GET", "/audit_logs/streams/{id}"),
    ("PATCH", "/audit_logs/streams/{id}"),
    ("DELETE", "/audit_logs/streams/{id}"),
    ("POST", "/audit_logs/streams/{id}/replay"),
    ("POST", "/audit_logs/streams/{id}/test"),
    ("GET", "/audit_logs/ledger/public_key"),
    ("GET", "/audit_logs/ledger/checkpoint"),
    ("GET", "/audit_logs/ledger/inclusion"),
    ("GET", "/audit_logs/ledger/consistency"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/portal/generate_link"),
];

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route(
            "/audit_logs/events",
            post(events::create).get(search::search),
        )
        .route("/audit_logs/events/{id}", get(search::get))
        .route("/audit_logs/exports", post(exports::create))
        .route("/audit_logs/exports/{id}", get(exports::get))
        .route("/audit_logs/exports/{id}/download", get(exports::download))
        .route(
            "/audit_logs/events/batch",
            post(events::create_batch).layer(DefaultBodyLimit::max(
                limit.saturating_mul(BATCH_BODY_FACTOR),
            )),
        )
        .route(
            "/audit_logs/actions/{action}/schemas",
            post(schemas::create).get(schemas::list),
        )
        .route("/audit_logs/actions", get(schemas::list_actions))
        .route(
            "/organizations",
            post(organizations::create).get(organizations::list),
        )
        .route(
            "/organizations/{id}",
            get(organizations::get)
                .put(organizations::update)
                .delete(organizations::delete),
        )
        .route(
            "/organizations/{id}/audit_logs_retention",
            get(organizations::get_retention).put(organizations::set_retention),
        )
        .route(
            "/organizations/{id}/legal_hold",
            get(organizations::get_legal_hold).put(organizations::set_legal_hold),
        )
        .route(
            "/organizations/{id}/audit_log_configuration",
            get(organizations::configuration),
        )
        .route(
            "/audit_logs/streams",
            post(streams::create).get(streams::list),
        )
        .route(
            "/audit_logs/streams/{id}",
            get(streams::get)
                .patch(streams::update)
                .delete(streams::delete),
        )
        .route("/audit_logs/streams/{id}/replay", post(streams::replay))
        .route("/audit_logs/streams/{id}/test", post(streams::test))
        .route("/audit_logs/ledger/public_key", get(ledger::public_key))
        .route("/audit_logs/ledger/checkpoint", get(ledger::checkpoint))
        .route("/audit_logs/ledger/inclusion", get(ledger::inclusion))
        .route("/audit_logs/ledger/consistency", get(ledger::consistency))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .route(
            "/portal/generate_link",
            post(crate::portal::links::generate),
        )
        .merge(crate::portal::router())
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::ROUTES;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json parses");
        for (method, path) in ROUTES {
            let operation = &document["paths"][path][method.to_ascii_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {path} is missing from openapi.json"
            );
            assert!(
                operation["summary"].is_string(),
                "{method} {path} has no summary"
            );
        }
    }
}
