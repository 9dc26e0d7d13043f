//! The ledger over HTTP (Trailmark): signed checkpoints, the verifier key, and RFC 9162
//! inclusion and consistency proofs (hashes in standard base64); and each organization's log
//! as a C2SP tlog-tiles log under `/audit_logs/ledger/tlog/{organization_id}/` (`checkpoint`,
//! `tile/…`), for generic transparency-log clients.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_domain::api_key::Scope;
use trailmark_ledger::encode_hash;
use trailmark_ledger::tlog::{TILE_WIDTH, TilePath};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::routes::{live_organization, readable_organization};
use crate::state::AppState;

/// `GET /audit_logs/ledger/public_key`: the verifier key for this instance's checkpoints, in
/// the C2SP signed-note format. No API key needed: it is public by design.
pub async fn public_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "ledger_public_key",
        "name": state.app.ledger_name(),
        "algorithm": "ed25519",
        "verifier_key": state.app.verifier_key(),
    }))
}

/// `GET /audit_logs/ledger/checkpoint?organization_id=…`: the latest signed checkpoint.
pub async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    query.refuse_unknown(&["organization_id"])?;
    let organization_id = organization(&state, &caller, &query).await?;
    let checkpoint = state.app.latest_checkpoint(&organization_id).await?;
    Ok(Json(checkpoint.to_object()))
}

/// `GET /audit_logs/ledger/inclusion?organization_id=…&event_id=…[&tree_size=…]`: the audit path
/// of an event in the tree of `tree_size` leaves (default: the latest checkpoint's size, which the
/// answer also carries, so the proof can be checked against a signed root).
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    query.refuse_unknown(&["organization_id", "event_id", "tree_size"])?;
    let organization_id = organization(&state, &caller, &query).await?;
    let event_id = query
        .get("event_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::field("required", "event_id", "event_id is required"))?;
    let proven = state
        .app
        .inclusion_proof(&organization_id, event_id, number(&query, "tree_size")?)
        .await?;
    Ok(Json(json!({
        "object": "inclusion_proof",
        "organization_id": organization_id,
        "event_id": proven.event.id,
        "sequence": proven.event.sequence,
        "leaf_hash": encode_hash(&proven.event.leaf_hash),
        "tree_size": proven.tree_size,
        "root_hash": encode_hash(&proven.root),
        "proof": proven.proof.iter().map(encode_hash).collect::<Vec<_>>(),
        "checkpoint": proven.checkpoint.map(|c| c.note),
    })))
}

/// `GET /audit_logs/ledger/consistency?organization_id=…&first=…&second=…`: proves the log of
/// `first` events is a prefix of the log of `second` events.
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    query.refuse_unknown(&["organization_id", "first", "second"])?;
    let organization_id = organization(&state, &caller, &query).await?;
    let first = number(&query, "first")?
        .ok_or_else(|| ApiError::field("required", "first", "first is required"))?;
    let second = number(&query, "second")?
        .ok_or_else(|| ApiError::field("required", "second", "second is required"))?;
    let proven = state
        .app
        .consistency_proof(&organization_id, first, second)
        .await?;
    Ok(Json(json!({
        "object": "consistency_proof",
        "organization_id": organization_id,
        "first": proven.first,
        "second": proven.second,
        "first_root_hash": encode_hash(&proven.first_root),
        "second_root_hash": encode_hash(&proven.second_root),
        "proof": proven.proof.iter().map(encode_hash).collect::<Vec<_>>(),
    })))
}

/// `GET /audit_logs/ledger/tlog/{organization_id}/checkpoint`: the organization's log as a C2SP
/// tlog-tiles log, its latest signed checkpoint (the note, as text).
pub async fn tlog_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    tlog_organization(&state, &caller, &organization_id).await?;
    let checkpoint = state.app.latest_checkpoint(&organization_id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        checkpoint.note,
    ))
}

/// `GET /audit_logs/ledger/tlog/{organization_id}/tile/{path}`: a hash tile (`<L>/<N>[.p/<W>]`)
/// or an entry bundle (`entries/<N>[.p/<W>]`) of the latest checkpoint's tree. A full tile never
/// changes, so it may be cached for good.
pub async fn tlog_tile(
    State(state): State<AppState>,
    caller: Caller,
    Path((organization_id, path)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    tlog_organization(&state, &caller, &organization_id).await?;
    let tile = TilePath::parse(&path)
        .map_err(|error| ApiError::field("invalid_value", "path", error.to_string()))?;
    let full = match tile {
        TilePath::Hashes { width, .. } | TilePath::Entries { width, .. } => width == TILE_WIDTH,
    };
    let bytes = state.app.tlog_tile(&organization_id, tile).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CACHE_CONTROL,
                if full {
                    "private, max-age=31536000, immutable"
                } else {
                    "no-store"
                },
            ),
        ],
        bytes,
    ))
}

/// A read key may read the tlog of a live organization it is not restricted away from.
async fn tlog_organization(
    state: &AppState,
    caller: &Caller,
    organization_id: &str,
) -> Result<(), ApiError> {
    caller.require(Scope::Read)?;
    caller.require_organization(organization_id)?;
    live_organization(state, organization_id).await?;
    Ok(())
}

async fn organization(
    state: &AppState,
    caller: &Caller,
    query: &QueryPairs,
) -> Result<String, ApiError> {
    caller.require(Scope::Read)?;
    readable_organization(state, caller, query).await
}

fn number(query: &QueryPairs, name: &'static str) -> Result<Option<u64>, ApiError> {
    query
        .get(name)
        .filter(|value| !value.is_empty())
        .map(|value| {
            value.parse().map_err(|_| {
                ApiError::field(
                    "invalid_value",
                    name,
                    format!("{name} must be an integer ≥ 0"),
                )
            })
        })
        .transpose()
}
