//! Event ingest: `POST /audit_logs/events` exactly as WorkOS (wire doc §2.1), and Trailmark's
//! `POST /audit_logs/events/batch`.
//!
//! Every request is idempotent. The identity is the `Idempotency-Key` header hashed with the
//! organization and the normalized event (see `trailmark_domain::idempotency`); without a header,
//! the content alone is the identity, as WorkOS documents. The store saves the response in the
//! same commit as the events, so a repeated request (even one racing the first) gets the first
//! response byte for byte, with `Idempotent-Replayed: true`, and stores nothing. Error responses
//! are not saved: a corrected retry is simply processed.
//!
//! Success bodies carry Trailmark's receipt beside WorkOS's `success`:
//! `{"success": true, "id": "event_…", "organization_id": "org_…", "sequence": 41}`, where
//! `sequence` is the event's position (from 0) in its organization's log.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::event::NewEvent;
use trailmark_domain::id::IdKind;
use trailmark_domain::idempotency::{IDEMPOTENCY_WINDOW_MILLIS, idempotency_identity};
use trailmark_domain::limits::BATCH_MAX_EVENTS;
use trailmark_domain::schema::{missing_schema, unknown_version};
use trailmark_store::{
    AppendOutcome, AppendRequest, IdempotencyClaim, PendingEvent, Receipt, StoredResponse,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::{AppState, SchemaFor};

/// Longest accepted `Idempotency-Key`; SDK keys are about 50 characters.
const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `POST /audit_logs/events` → 200 `{"success": true, …receipt}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ingest)?;
    let organization_id = organization_id(&body)?;
    caller.require_organization(&organization_id)?;
    let event = NewEvent::parse(body.get("event").unwrap_or(&Value::Null))?;
    check_schema(&state, &event).await?;

    let key = idempotency_key(&headers)?;
    let identity = idempotency_identity(&organization_id, key.as_deref(), &event.to_json());
    let now = Timestamp::now();
    let receipt_organization = organization_id.clone();
    let claim = IdempotencyClaim {
        identity,
        expires_at: now.plus_millis(IDEMPOTENCY_WINDOW_MILLIS),
        render: Box::new(move |receipts: &[Receipt]| {
            let body = match receipts.first() {
                Some(receipt) => receipt_json(&receipt_organization, receipt),
                None => json!({"success": false}),
            };
            StoredResponse {
                status: 200,
                body: body.to_string().into_bytes(),
            }
        }),
    };
    let pending = PendingEvent {
        id: IdKind::Event.generate().into_string(),
        event,
        received_at: now,
    };
    let outcome = state
        .store
        .append(AppendRequest {
            organization_id: organization_id.clone(),
            events: vec![pending],
            idempotency: Some(claim),
        })
        .instrument(commit_span(&organization_id, 1))
        .await?;
    respond(&state, &organization_id, outcome)
}

/// `POST /audit_logs/events/batch` with `{"organization_id", "events": [up to 1,000]}` → 200
/// list envelope with one result per event, in request order. Each event is validated on its
/// own; the valid ones are stored (in request order, in one commit) even when others fail.
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ingest)?;
    let organization_id = organization_id(&body)?;
    caller.require_organization(&organization_id)?;
    let events = match body.get("events") {
        None | Some(Value::Null) => {
            return Err(ApiError::field("required", "events", "events is required"));
        }
        Some(Value::Array(events)) if events.is_empty() => {
            return Err(ApiError::field(
                "empty",
                "events",
                "events must hold at least one event",
            ));
        }
        Some(Value::Array(events)) if events.len() > BATCH_MAX_EVENTS => {
            return Err(ApiError::field(
                "too_many",
                "events",
                format!(
                    "a batch holds at most {BATCH_MAX_EVENTS} events, got {}",
                    events.len()
                ),
            ));
        }
        Some(Value::Array(events)) => events,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "events",
                "events must be an array",
            ));
        }
    };

    let now = Timestamp::now();
    let mut pending = Vec::new();
    // Per request index: `Ok(position among stored events)` or the failure's JSON.
    let mut outcomes: Vec<Result<usize, Value>> = Vec::with_capacity(events.len());
    for (index, raw) in events.iter().enumerate() {
        let checked = match NewEvent::parse_at(raw, &format!("events[{index}]")) {
            Ok(event) => check_schema(&state, &event).await.map(|()| event),
            Err(problems) => Err(ApiError::from(problems)),
        };
        match checked {
            Ok(event) => {
                outcomes.push(Ok(pending.len()));
                pending.push(PendingEvent {
                    id: IdKind::Event.generate().into_string(),
                    event,
                    received_at: now,
                });
            }
            Err(error @ (ApiError::Malformed(_) | ApiError::InvalidEvent(_))) => {
                outcomes.push(Err(failure_json(index, &error)))
            }
            Err(other) => return Err(other),
        }
    }

    let key = idempotency_key(&headers)?;
    let identity = idempotency_identity(
        &organization_id,
        key.as_deref(),
        &Value::Array(events.clone()),
    );
    let receipt_organization = organization_id.clone();
    let claim = IdempotencyClaim {
        identity,
        expires_at: now.plus_millis(IDEMPOTENCY_WINDOW_MILLIS),
        render: Box::new(move |receipts: &[Receipt]| {
            let data: Vec<Value> = outcomes
                .into_iter()
                .enumerate()
                .map(|(index, outcome)| match outcome {
                    Ok(position) => {
                        let mut item = receipts
                            .get(position)
                            .map_or(json!({"success": false}), |r| {
                                receipt_json(&receipt_organization, r)
                            });
                        item["index"] = json!(index);
                        item
                    }
                    Err(failure) => failure,
                })
                .collect();
            let body = json!({"object": "list", "data": data, "list_metadata": {"before": null, "after": null}});
            StoredResponse {
                status: 200,
                body: body.to_string().into_bytes(),
            }
        }),
    };
    let count = pending.len();
    let outcome = state
        .store
        .append(AppendRequest {
            organization_id: organization_id.clone(),
            events: pending,
            idempotency: Some(claim),
        })
        .instrument(commit_span(&organization_id, count))
        .await?;
    respond(&state, &organization_id, outcome)
}

/// Validates `event` against the schema version it names (version 1 when it names none).
async fn check_schema(state: &AppState, event: &NewEvent) -> Result<(), ApiError> {
    match state
        .schemas
        .lookup(state.store.as_ref(), event.action(), event.version())
        .await?
    {
        SchemaFor::None if state.config.require_schemas => {
            Err(ApiError::InvalidEvent(vec![missing_schema(event.action())]))
        }
        SchemaFor::None => Ok(()),
        SchemaFor::UnknownVersion { latest } => Err(ApiError::InvalidEvent(vec![unknown_version(
            event.action(),
            event.version().unwrap_or(1),
            latest,
        )])),
        SchemaFor::Compiled(schema) => {
            let problems = schema.check(event);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(ApiError::InvalidEvent(problems))
            }
        }
    }
}

fn organization_id(body: &Value) -> Result<String, ApiError> {
    match body.get("organization_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::String(_)) => Err(ApiError::field(
            "empty",
            "organization_id",
            "organization_id must not be empty",
        )),
        None | Some(Value::Null) => Err(ApiError::field(
            "required",
            "organization_id",
            "organization_id is required",
        )),
        Some(_) => Err(ApiError::field(
            "invalid_type",
            "organization_id",
            "organization_id must be a string",
        )),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_MAX_CHARS)
        .ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "Idempotency-Key",
                format!("the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn receipt_json(organization_id: &str, receipt: &Receipt) -> Value {
    json!({
        "success": true,
        "id": receipt.id,
        "organization_id": organization_id,
        "sequence": receipt.sequence,
        "leaf_hash": trailmark_ledger::encode_hash(&receipt.leaf_hash),
    })
}

/// The span of an append, from the request to its durable group commit (a child of the
/// request's span in traces).
fn commit_span(organization_id: &str, events: usize) -> tracing::Span {
    tracing::info_span!("store.commit", organization_id = %organization_id, events)
}

fn failure_json(index: usize, error: &ApiError) -> Value {
    let mut body = error.body();
    body["index"] = json!(index);
    body["success"] = json!(false);
    body["status"] = json!(error.status().as_u16());
    body
}

fn respond(
    state: &AppState,
    organization_id: &str,
    outcome: AppendOutcome,
) -> Result<Response, ApiError> {
    let (stored, replayed) = match outcome {
        AppendOutcome::Appended {
            receipts,
            response: Some(response),
        } => {
            state.metrics.events_ingested(organization_id, &receipts);
            state.streams.wake();
            (response, false)
        }
        AppendOutcome::Appended { response: None, .. } => {
            return Err(ApiError::Internal(
                "an idempotent append returned no response".into(),
            ));
        }
        AppendOutcome::Replayed(response) => {
            state.metrics.idempotent_replay();
            (response, true)
        }
    };
    let status =
        StatusCode::from_u16(stored.status).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}
