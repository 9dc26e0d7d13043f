//! The ledger over HTTP (Trailmark): signed checkpoints, the verifier key, and RFC 9162
//! inclusion and consistency proofs. Hashes are standard base64.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use trailmark_domain::api_key::Scope;
use trailmark_ledger::encode_hash;
use trailmark_store::StoredCheckpoint;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::routes::readable_organization;
use crate::state::AppState;

/// `GET /audit_logs/ledger/public_key`: the verifier key for this instance's checkpoints, in
/// the C2SP signed-note format. No API key needed: it is public by design.
pub async fn public_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "ledger_public_key",
        "name": state.ledger.name(),
        "algorithm": "ed25519",
        "verifier_key": state.ledger.verifier_key(),
    }))
}

/// `GET /audit_logs/ledger/checkpoint?organization_id=…`: the latest signed checkpoint.
pub async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let organization_id = organization(&state, &caller, &query).await?;
    let checkpoint = state
        .ledger
        .latest(state.store.as_ref(), &organization_id)
        .await?;
    Ok(Json(checkpoint_json(&checkpoint)))
}

/// `GET /audit_logs/ledger/inclusion?organization_id=…&event_id=…[&tree_size=…]`: the audit path
/// of an event in the tree of `tree_size` leaves (default: the latest checkpoint's size, which the
/// answer also carries, so the proof can be checked against a signed root).
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let organization_id = organization(&state, &caller, &query).await?;
    let event_id = query
        .get("event_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::field("required", "event_id", "event_id is required"))?;
    let event = state
        .store
        .get_event(event_id)
        .await?
        .filter(|event| event.organization_id == organization_id)
        .ok_or_else(|| ApiError::NotFound(format!("Audit Log Event not found: '{event_id}'.")))?;
    let (size, checkpoint) = match number(&query, "tree_size")? {
        Some(size) => (size, None),
        None => {
            let checkpoint = state
                .ledger
                .fresh(state.store.as_ref(), &organization_id)
                .await?;
            (checkpoint.tree_size, Some(checkpoint))
        }
    };
    if event.sequence >= size {
        return Err(ApiError::field(
            "invalid_value",
            "tree_size",
            format!(
                "tree_size must be greater than the event's sequence ({})",
                event.sequence
            ),
        ));
    }
    let log_size = state.store.log_size(&organization_id).await?;
    if size > log_size {
        return Err(ApiError::field(
            "invalid_value",
            "tree_size",
            format!("the log has only {log_size} events"),
        ));
    }
    let proof = state
        .store
        .inclusion_proofs(&organization_id, vec![event.sequence], size)
        .await?;
    let root = state.store.tree_root(&organization_id, size).await?;
    Ok(Json(json!({
        "object": "inclusion_proof",
        "organization_id": organization_id,
        "event_id": event.id,
        "sequence": event.sequence,
        "leaf_hash": encode_hash(&event.leaf_hash),
        "tree_size": size,
        "root_hash": encode_hash(&root),
        "proof": proof.into_iter().flatten().map(|hash| encode_hash(&hash)).collect::<Vec<_>>(),
        "checkpoint": checkpoint.map(|c| c.note),
    })))
}

/// `GET /audit_logs/ledger/consistency?organization_id=…&first=…&second=…`: proves the log of
/// `first` events is a prefix of the log of `second` events.
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let organization_id = organization(&state, &caller, &query).await?;
    let first = number(&query, "first")?
        .ok_or_else(|| ApiError::field("required", "first", "first is required"))?;
    let second = number(&query, "second")?
        .ok_or_else(|| ApiError::field("required", "second", "second is required"))?;
    let log_size = state.store.log_size(&organization_id).await?;
    if first == 0 || first > second {
        return Err(ApiError::field(
            "invalid_value",
            "first",
            "first must be at least 1 and at most second",
        ));
    }
    if second > log_size {
        return Err(ApiError::field(
            "invalid_value",
            "second",
            format!("the log has only {log_size} events"),
        ));
    }
    let proof = state
        .store
        .consistency_proof(&organization_id, first, second)
        .await?;
    let first_root = state.store.tree_root(&organization_id, first).await?;
    let second_root = state.store.tree_root(&organization_id, second).await?;
    Ok(Json(json!({
        "object": "consistency_proof",
        "organization_id": organization_id,
        "first": first,
        "second": second,
        "first_root_hash": encode_hash(&first_root),
        "second_root_hash": encode_hash(&second_root),
        "proof": proof.iter().map(encode_hash).collect::<Vec<_>>(),
    })))
}

pub fn checkpoint_json(checkpoint: &StoredCheckpoint) -> Value {
    json!({
        "object": "ledger_checkpoint",
        "organization_id": checkpoint.organization_id,
        "tree_size": checkpoint.tree_size,
        "root_hash": encode_hash(&checkpoint.root),
        "checkpoint": checkpoint.note,
        "created_at": checkpoint.created_at.to_string(),
    })
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
