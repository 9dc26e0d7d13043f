//! One file per resource; this file assembles them into the router.

mod erasures;
mod events;
mod exports;
pub mod keys;
mod ledger;
pub(crate) mod live;
mod organizations;
mod schemas;
pub(crate) mod search;
pub(crate) mod streams;
mod system;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post};

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

/// Every API route, as `(path, methods)`: the router is built from this list, and the OpenAPI
/// test probes each path of it for the methods it answers. The portal's HTML pages are not
/// part of the API and are merged in [`router`].
fn api(body_limit: usize) -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        (
            "/audit_logs/events",
            post(events::create).get(search::search),
        ),
        ("/audit_logs/events/stream", get(live::stream)),
        ("/audit_logs/events/{id}", get(search::get)),
        ("/audit_logs/exports", post(exports::create)),
        ("/audit_logs/exports/{id}", get(exports::get)),
        ("/audit_logs/exports/{id}/download", get(exports::download)),
        ("/audit_logs/erasures", post(erasures::create)),
        (
            "/audit_logs/events/batch",
            post(events::create_batch).layer(DefaultBodyLimit::max(
                body_limit.saturating_mul(BATCH_BODY_FACTOR),
            )),
        ),
        (
            "/audit_logs/actions/{action}/schemas",
            post(schemas::create).get(schemas::list),
        ),
        ("/audit_logs/actions", get(schemas::list_actions)),
        (
            "/organizations",
            post(organizations::create).get(organizations::list),
        ),
        (
            "/organizations/external_id/{external_id}",
            get(organizations::get_by_external_id),
        ),
        (
            "/organizations/{id}",
            get(organizations::get)
                .put(organizations::update)
                .delete(organizations::delete),
        ),
        (
            "/organizations/{id}/audit_logs_retention",
            get(organizations::get_retention).put(organizations::set_retention),
        ),
        (
            "/organizations/{id}/legal_hold",
            get(organizations::get_legal_hold).put(organizations::set_legal_hold),
        ),
        (
            "/organizations/{id}/audit_log_configuration",
            get(organizations::configuration),
        ),
        (
            "/audit_logs/streams",
            post(streams::create).get(streams::list),
        ),
        (
            "/audit_logs/streams/{id}",
            get(streams::get)
                .patch(streams::update)
                .delete(streams::delete),
        ),
        ("/audit_logs/streams/{id}/replay", post(streams::replay)),
        ("/audit_logs/streams/{id}/test", post(streams::test)),
        (
            "/audit_logs/streams/{id}/rotate_secret",
            post(streams::rotate_secret),
        ),
        ("/audit_logs/ledger/public_key", get(ledger::public_key)),
        ("/audit_logs/ledger/checkpoint", get(ledger::checkpoint)),
        ("/audit_logs/ledger/inclusion", get(ledger::inclusion)),
        ("/audit_logs/ledger/consistency", get(ledger::consistency)),
        (
            "/audit_logs/ledger/tlog/{organization_id}/checkpoint",
            get(ledger::tlog_checkpoint),
        ),
        (
            "/audit_logs/ledger/tlog/{organization_id}/tile/{*path}",
            get(ledger::tlog_tile),
        ),
        ("/api_keys", post(keys::create).get(keys::list)),
        ("/api_keys/{id}", delete(keys::revoke)),
        ("/healthz", get(system::healthz)),
        ("/readyz", get(system::readyz)),
        ("/metrics", get(system::metrics)),
        ("/openapi.json", get(system::openapi)),
        (
            "/portal/generate_link",
            post(crate::portal::links::generate),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    api(limit)
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .merge(crate::portal::router())
        .merge(crate::console::router())
        .route_layer(axum::middleware::from_fn(
            crate::extract::refuse_nul_in_path,
        ))
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::state::{AppState, ServerConfig};

    /// The operations the real router answers: each path of [`super::api`], asked with every
    /// method; anything but 405 means the method is routed there.
    async fn routed_operations() -> BTreeSet<(String, String)> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let store =
            trailmark_store::SqliteStore::open(&data_dir.path().join("t.db")).expect("store");
        let app_config = trailmark_app::AppConfig {
            data_dir: data_dir.path().to_owned(),
            secrets_key: [1; 32],
            ledger_name: "trailmark.test".into(),
            signing_key: [2; 32],
            checkpoint_interval: std::time::Duration::from_secs(1),
            retention_interval: std::time::Duration::from_secs(3600),
            streams: trailmark_streams::worker::WorkerConfig::default(),
            require_schemas: false,
            export_max_range_days: None,
            export_max_pending: 4,
            export_max_disk_bytes: 1 << 30,
            export_file_ttl: std::time::Duration::from_secs(3600),
            bootstrap_key_hash: None,
            witnesses: Vec::new(),
            alerts: Default::default(),
        };
        let config = ServerConfig {
            public_url: "http://127.0.0.1:1".into(),
            secrets_key: [1; 32],
            export_link_ttl: std::time::Duration::from_secs(600),
            max_body_bytes: 1024,
            connections: crate::ConnectionLimits::default(),
            rate_limits: crate::RateLimits::default(),
        };
        let app = trailmark_app::Trailmark::new(Arc::new(store), app_config).expect("app");
        let state = AppState::new(app, config);
        let router = super::router(state);
        let mut operations = BTreeSet::new();
        for (path, _) in super::api(1024) {
            let concrete = path.replace(['{', '}'], "");
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ] {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&concrete)
                    .body(Body::empty())
                    .expect("request");
                let response = router.clone().oneshot(request).await.expect("response");
                if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                    // OpenAPI names axum's catch-all segment `{*rest}` as a parameter `{rest}`.
                    operations.insert((method.as_str().to_owned(), path.replace("{*", "{")));
                }
            }
        }
        operations
    }

    #[tokio::test]
    async fn the_openapi_document_describes_exactly_what_the_router_answers() {
        let document: Value =
            serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json parses");
        let mut documented = BTreeSet::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                if method == "parameters" {
                    continue;
                }
                documented.insert((method.to_ascii_uppercase(), path.clone()));
                let name = format!("{} {path}", method.to_ascii_uppercase());
                assert!(operation["summary"].is_string(), "{name} has no summary");
                assert!(
                    operation["operationId"].is_string(),
                    "{name} has no operationId"
                );
                let responses = operation["responses"].as_object().expect("responses");
                let has = |code: &str| responses.contains_key(code);
                let secured = operation.get("security") != Some(&Value::Array(vec![]));
                if secured {
                    for code in ["401", "403", "429"] {
                        assert!(has(code), "{name} can answer {code} but does not say so");
                    }
                }
                if operation.get("requestBody").is_some() {
                    for code in ["400", "413", "415", "422"] {
                        assert!(has(code), "{name} can answer {code} but does not say so");
                    }
                }
                if path.contains('{') {
                    assert!(has("404"), "{name} can answer 404 but does not say so");
                }
            }
        }
        let routed = routed_operations().await;
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routed but not in openapi.json: {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unrouted.is_empty(),
            "in openapi.json but not routed: {unrouted:?}"
        );
    }
}
