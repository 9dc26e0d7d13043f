//! Event ingest: `POST /audit_logs/events` exactly as WorkOS (wire doc §2.1), and Trailmark's
//! `POST /audit_logs/events/batch`.
//!
//! Every request is idempotent (`trailmark_app::ingest`): a repeated request, even one racing
//! the first, stores nothing and gets the first request's receipts back, rendered here into the
//! same bytes, with `Idempotent-Replayed: true`. Error responses are not kept: a corrected retry
//! is simply processed. The response is rendered after the commit, from its receipts.
//!
//! Success bodies carry Trailmark's receipt beside WorkOS's `success`:
//! `{"success": true, "id": "event_…", "organization_id": "org_…", "sequence": 41}`, where
//! `sequence` is the event's position (from 0) in its organization's log.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use trailmark_app::ingest::{Answer, BatchItem};
use trailmark_domain::api_key::Scope;
use trailmark_domain::event::NewEvent;
use trailmark_domain::json::Json;
use trailmark_domain::limits::BATCH_MAX_EVENTS;
use trailmark_store::Receipt;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{BatchBody, EventBody};
use crate::state::AppState;

/// Longest accepted `Idempotency-Key`; SDK keys are about 50 characters.
const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `POST /audit_logs/events` → 200 `{"success": true, …receipt}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: EventBody,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ingest)?;
    let body = body.parse()?;
    let organization_id = organization_id(body.json())?;
    caller.require_organization(&organization_id)?;
    let event = NewEvent::read_in(
        &body,
        body.json().get("event").unwrap_or(&Json::Null),
        "event",
    )?;
    let key = idempotency_key(&headers)?;
    let answer = state
        .app
        .ingest(&organization_id, event, key.as_deref())
        .await?;
    Ok(respond(answer, |receipt| {
        // Serializing borrowed strings and integers cannot fail.
        serde_json::to_vec(&receipt_json(&organization_id, receipt, None)).unwrap_or_default()
    }))
}

/// `POST /audit_logs/events/batch` with `{"organization_id", "events": [up to 1,000]}` → 200
/// list envelope with one result per event, in request order. Each event is validated on its
/// own; the valid ones are stored (in request order, in one commit) even when others fail.
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: BatchBody,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ingest)?;
    let body = body.parse()?;
    let organization_id = organization_id(body.json())?;
    caller.require_organization(&organization_id)?;
    let events = match body.json().get("events") {
        None | Some(Json::Null) => {
            return Err(ApiError::field("required", "events", "events is required"));
        }
        Some(Json::Array(events)) if events.is_empty() => {
            return Err(ApiError::field(
                "empty",
                "events",
                "events must hold at least one event",
            ));
        }
        Some(Json::Array(events)) if events.len() > BATCH_MAX_EVENTS => {
            return Err(ApiError::field(
                "too_many",
                "events",
                format!(
                    "a batch holds at most {BATCH_MAX_EVENTS} events, got {}",
                    events.len()
                ),
            ));
        }
        Some(Json::Array(events)) => events,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "events",
                "events must be an array",
            ));
        }
    };
    let key = idempotency_key(&headers)?;
    let answer = state
        .app
        .ingest_batch(&organization_id, &body, events, key.as_deref())
        .await?;
    Ok(respond(answer, |items: &Vec<BatchItem>| {
        batch_json(&organization_id, items)
    }))
}

/// A batch's list envelope, serialized straight from its receipts: up to 1,000 items, each
/// made as a JSON map and then written would cost more than the rest of the response.
fn batch_json(organization_id: &str, items: &[BatchItem]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Item<'a> {
        Stored(StoredJson<'a>),
        Failed(Value),
    }
    #[derive(Serialize)]
    struct ListMetadata {
        after: Option<()>,
        before: Option<()>,
    }
    #[derive(Serialize)]
    struct List<'a> {
        data: Vec<Item<'a>>,
        list_metadata: ListMetadata,
        object: &'static str,
    }
    let list = List {
        data: items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Ok(receipt) => Item::Stored(receipt_json(organization_id, receipt, Some(index))),
                Err(problems) => {
                    Item::Failed(failure_json(index, &ApiError::from(problems.clone())))
                }
            })
            .collect(),
        list_metadata: ListMetadata {
            after: None,
            before: None,
        },
        object: "list",
    };
    // Serializing borrowed strings, integers and JSON values cannot fail.
    serde_json::to_vec(&list).unwrap_or_default()
}

fn organization_id(body: &Json<'_>) -> Result<String, ApiError> {
    match body.get("organization_id") {
        Some(Json::String(id)) if !id.is_empty() => Ok(id.as_ref().to_owned()),
        Some(Json::String(_)) => Err(ApiError::field(
            "empty",
            "organization_id",
            "organization_id must not be empty",
        )),
        None | Some(Json::Null) => Err(ApiError::field(
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

/// A stored event's answer (with its `index` in a batch): WorkOS's `"success": true` and the
/// receipt. Members in the order a JSON object of them prints, which answers have always had;
/// a struct rather than a `Value`, whose map is built and dropped for every request.
#[derive(Serialize)]
struct StoredJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    leaf_hash: String,
    organization_id: &'a str,
    sequence: u64,
    success: bool,
}

fn receipt_json<'a>(
    organization_id: &'a str,
    receipt: &'a Receipt,
    index: Option<usize>,
) -> StoredJson<'a> {
    StoredJson {
        id: &receipt.id,
        index,
        leaf_hash: trailmark_ledger::encode_hash(&receipt.leaf_hash),
        organization_id,
        sequence: receipt.sequence,
        success: true,
    }
}

fn failure_json(index: usize, error: &ApiError) -> Value {
    let mut body = error.body();
    body["index"] = json!(index);
    body["success"] = json!(false);
    body["status"] = json!(error.status().as_u16());
    body
}

/// The 200 response for an answer: its JSON, or for a repeated request the first answer again,
/// marked `Idempotent-Replayed: true`.
fn respond<T>(answer: Answer<T>, render: impl FnOnce(&T) -> Vec<u8>) -> Response {
    let (body, replayed) = match answer {
        Answer::Stored(stored) => (render(&stored), false),
        Answer::Replayed(stored) => (render(&stored), true),
        Answer::RepeatedResponse(body) => (body, true),
    };
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailmark_domain::{FieldProblem, Problems};

    #[test]
    fn a_single_answer_is_the_receipt_with_its_members_in_order() {
        let receipt = Receipt {
            id: "event_1".into(),
            sequence: 41,
            leaf_hash: [7; 32],
        };
        let body = serde_json::to_string(&receipt_json("org_1", &receipt, None)).expect("JSON");
        assert_eq!(
            body,
            format!(
                r#"{{"id":"event_1","leaf_hash":"{}","organization_id":"org_1","sequence":41,"success":true}}"#,
                trailmark_ledger::encode_hash(&[7; 32])
            )
        );
    }

    #[test]
    fn a_batch_answer_lists_each_receipt_or_failure_in_request_order() {
        let receipt = Receipt {
            id: "event_1".into(),
            sequence: 41,
            leaf_hash: [7; 32],
        };
        let problem = FieldProblem {
            code: "required",
            field: "events[1].action".into(),
            message: "action is required".into(),
        };
        let failure = ApiError::from(Problems::Malformed(vec![problem.clone()]));
        let items = vec![Ok(receipt.clone()), Err(Problems::Malformed(vec![problem]))];
        let body: Value =
            serde_json::from_slice(&batch_json("org_1", &items)).expect("the answer is JSON");
        let stored = json!({
            "id": "event_1",
            "index": 0,
            "leaf_hash": trailmark_ledger::encode_hash(&[7; 32]),
            "organization_id": "org_1",
            "sequence": 41,
            "success": true,
        });
        assert_eq!(
            body,
            json!({
                "object": "list",
                "data": [stored, failure_json(1, &failure)],
                "list_metadata": {"before": null, "after": null},
            })
        );
    }
}
