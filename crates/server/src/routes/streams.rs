//! Log streams over HTTP (Trailmark; WorkOS manages streams only in its dashboard):
//! `POST /audit_logs/streams`, `GET /audit_logs/streams?organization_id=…`,
//! `GET|PATCH|DELETE /audit_logs/streams/{id}`, `POST /audit_logs/streams/{id}/replay` and
//! `POST /audit_logs/streams/{id}/test`. Managing streams needs an `admin` key (restricted keys
//! manage their own organization's); reading them needs `read`. Credentials are never shown:
//! `config` comes back with secrets masked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_domain::api_key::Scope;
use trailmark_domain::id::IdKind;
use trailmark_domain::query::EventFilter;
use trailmark_domain::{FieldProblem, Timestamp};
use trailmark_store::{Order, SearchRequest, StreamRecord, StreamState};
use trailmark_streams::Outcome;
use trailmark_streams::settings::{Settings, StreamKind, new_signing_secret};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::routes::{live_organization, readable_organization};
use crate::state::AppState;

/// Longest stream name.
const NAME_MAX_CHARS: usize = 200;

/// `POST /audit_logs/streams` with `{"organization_id", "type", "name", "config", "enabled"?,
/// "start"?: "now"|"beginning"}` → 201 `log_stream`. A new stream starts after the last event
/// already in the log (`now`, the default) or from the first (`beginning`).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let organization_id = required_text(&body, "organization_id")?;
    caller.require_organization(&organization_id)?;
    let stream = create_stream(&state, organization_id, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(stream_json(&state, &stream).await?),
    ))
}

/// Validates a new stream's `type`, `name`, `enabled`, `config` and `start` (as the API takes
/// them), checks its destination, stores it and starts delivering. Shared with the portal.
pub(crate) async fn create_stream(
    state: &AppState,
    organization_id: String,
    body: &Value,
) -> Result<StreamRecord, ApiError> {
    let kind = match body.get("type").and_then(Value::as_str) {
        Some(text) => StreamKind::parse(text).ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "type",
                format!("type must be one of http, datadog, splunk, s3, gcs; got '{text}'"),
            )
        })?,
        None => return Err(ApiError::field("required", "type", "type is required")),
    };
    let name =
        name(body)?.ok_or_else(|| ApiError::field("required", "name", "name is required"))?;
    let enabled = enabled(body)?.unwrap_or(true);
    let settings = Settings::parse(kind, body.get("config").unwrap_or(&Value::Null), || {
        new_signing_secret().unwrap_or_default()
    })
    .map_err(ApiError::Malformed)?;
    check_destination(state, &settings).await?;
    live_organization(state, &organization_id).await?;
    let cursor = match body.get("start").and_then(Value::as_str) {
        None | Some("now") => state.store.log_size(&organization_id).await?.checked_sub(1),
        Some("beginning") => None,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_value",
                "start",
                "start must be 'now' or 'beginning'",
            ));
        }
    };
    let id = IdKind::LogStream.generate().into_string();
    let now = Timestamp::now();
    let stream = StreamRecord {
        secrets: seal(state, &id, &settings)?,
        id,
        organization_id,
        kind: kind.as_str().to_owned(),
        name,
        config: Value::Object(settings.public),
        enabled,
        state: if enabled {
            StreamState::Active
        } else {
            StreamState::Inactive
        },
        cursor,
        last_synced_at: None,
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_stream(stream.clone()).await?;
    state.streams.start_new_streams().await;
    Ok(stream)
}

/// `GET /audit_logs/streams?organization_id=…`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let organization_id = readable_organization(&state, &caller, &query).await?;
    let mut data = Vec::new();
    for stream in state.store.list_streams(Some(&organization_id)).await? {
        data.push(stream_json(&state, &stream).await?);
    }
    Ok(Json(
        json!({"object": "list", "data": data, "list_metadata": {"before": null, "after": null}}),
    ))
}

/// `GET /audit_logs/streams/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let stream = find(&state, &caller, &id).await?;
    Ok(Json(stream_json(&state, &stream).await?))
}

/// `PATCH /audit_logs/streams/{id}` with any of `name`, `enabled`, `config` (fields given
/// replace the stored ones; credentials not named are kept).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let stream = find(&state, &caller, &id).await?;
    let stream = update_stream(&state, stream, &body).await?;
    Ok(Json(stream_json(&state, &stream).await?))
}

/// Applies a `PATCH` body (`name`, `enabled`, `config`) to `stream` and stores it. Shared with
/// the portal.
pub(crate) async fn update_stream(
    state: &AppState,
    mut stream: StreamRecord,
    body: &Value,
) -> Result<StreamRecord, ApiError> {
    let current = state
        .streams
        .open_settings(&stream)
        .map_err(ApiError::Internal)?;
    if let Some(patch) = body.get("config").filter(|c| !c.is_null()) {
        let settings = Settings::merge(
            current.kind,
            &current.public,
            &current.secrets,
            patch,
            || new_signing_secret().unwrap_or_default(),
        )
        .map_err(ApiError::Malformed)?;
        check_destination(state, &settings).await?;
        stream.secrets = seal(state, &stream.id, &settings)?;
        stream.config = Value::Object(settings.public);
        // New settings deserve a fresh verdict from the destination.
        stream.last_error = None;
        if stream.state == StreamState::Invalid {
            stream.state = StreamState::Active;
        }
    }
    if let Some(name) = name(body)? {
        stream.name = name;
    }
    if let Some(enabled) = enabled(body)? {
        stream.enabled = enabled;
        stream.state = if enabled {
            StreamState::Active
        } else {
            StreamState::Inactive
        };
    }
    stream.updated_at = Timestamp::now();
    state.store.update_stream(stream.clone()).await?;
    state.streams.stream_changed();
    Ok(stream)
}

/// `DELETE /audit_logs/streams/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    find(&state, &caller, &id).await?;
    delete_stream(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a stream and lets its worker stop. Shared with the portal.
pub(crate) async fn delete_stream(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.store.delete_stream(id).await?;
    state.streams.stream_changed();
    Ok(())
}

/// `POST /audit_logs/streams/{id}/replay` with `{"from_sequence": N}` (deliver again from event
/// N) or `{"from_time": "…"}` (from the first event, in log order, that occurred at or after it).
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let stream = find(&state, &caller, &id).await?;
    replay_stream(&state, &stream, &body).await?;
    let stream = find(&state, &caller, &id).await?;
    Ok(Json(stream_json(&state, &stream).await?))
}

/// Moves `stream`'s cursor back as a replay body says (`from_sequence` or `from_time`); returns
/// the first sequence that will be delivered again. Shared with the portal.
pub(crate) async fn replay_stream(
    state: &AppState,
    stream: &StreamRecord,
    body: &Value,
) -> Result<u64, ApiError> {
    let from = match (
        body.get("from_sequence"),
        body.get("from_time").and_then(Value::as_str),
    ) {
        (Some(sequence), None) => sequence.as_u64().ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "from_sequence",
                "from_sequence must be an integer ≥ 0",
            )
        })?,
        (None, Some(time)) => {
            let start = Timestamp::parse(time).map_err(|e| {
                ApiError::field(
                    "invalid_date",
                    "from_time",
                    format!("from_time is not an ISO-8601 date-time: {e}"),
                )
            })?;
            let filter = EventFilter {
                range_start: Some(start),
                ..EventFilter::default()
            };
            let first = SearchRequest {
                filter,
                after: None,
                before: None,
                order: Order::Asc,
                limit: 1,
            };
            let page = state
                .store
                .search_events(&stream.organization_id, first)
                .await?;
            match page.events.first() {
                Some(event) => event.sequence,
                None => state.store.log_size(&stream.organization_id).await?,
            }
        }
        _ => {
            return Err(ApiError::field(
                "required",
                "from_sequence",
                "give from_sequence or from_time",
            ));
        }
    };
    state
        .store
        .set_stream_cursor(&stream.id, from.checked_sub(1), Timestamp::now())
        .await?;
    state.streams.stream_changed();
    Ok(from)
}

/// `POST /audit_logs/streams/{id}/test`: sends one made-up event (`trailmark.stream.test`),
/// outside the stream's cursor, and answers with what the destination said.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let stream = find(&state, &caller, &id).await?;
    let actor = json!({"id": caller.key_id, "type": "api_key"});
    Ok(Json(test_stream(&state, &stream, actor).await))
}

/// Sends one made-up event to `stream`'s destination, with `actor` as its actor, and describes
/// what the destination answered (`delivered`, `outcome`, `message`). Shared with the portal.
pub(crate) async fn test_stream(state: &AppState, stream: &StreamRecord, actor: Value) -> Value {
    let now = Timestamp::now().to_string();
    let event = json!({
        "object": "audit_log_event",
        "id": IdKind::Event.generate().into_string(),
        "organization_id": stream.organization_id,
        "sequence": null,
        "action": "trailmark.stream.test",
        "occurred_at": now,
        "received_at": now,
        "version": null,
        "actor": actor,
        "targets": [{"id": stream.id, "type": "log_stream"}],
        "context": {"location": "trailmark"},
        "metadata": {"test": true},
    });
    match state.streams.send(stream, &[event]).await {
        Outcome::Delivered(_) => {
            json!({"delivered": true, "outcome": "delivered", "message": "The destination accepted the test event."})
        }
        Outcome::Retry { reason, .. } => {
            json!({"delivered": false, "outcome": "error", "message": reason})
        }
        Outcome::Invalid(reason) => {
            json!({"delivered": false, "outcome": "invalid", "message": reason})
        }
    }
}

/// How far behind its log a stream is: events not yet delivered, and the age in seconds of the
/// oldest of them.
async fn lag(state: &AppState, stream: &StreamRecord) -> Result<(u64, i64), ApiError> {
    let size = state.store.log_size(&stream.organization_id).await?;
    let delivered = stream.cursor.map_or(0, |c| c + 1);
    let oldest_waiting = state
        .store
        .events_after(&stream.organization_id, stream.cursor, 1)
        .await?;
    let lag_seconds = oldest_waiting.first().map_or(0, |event| {
        (Timestamp::now().unix_millis() - event.received_at.unix_millis()).max(0) / 1000
    });
    Ok((size.saturating_sub(delivered), lag_seconds))
}

/// The stream object, with its health: how far behind the log it is, in events and seconds.
pub async fn stream_json(state: &AppState, stream: &StreamRecord) -> Result<Value, ApiError> {
    let (lag_events, lag_seconds) = lag(state, stream).await?;
    let config = shown_config(state, stream);
    Ok(json!({
        "object": "log_stream",
        "id": stream.id,
        "organization_id": stream.organization_id,
        "type": stream.kind,
        "name": stream.name,
        "enabled": stream.enabled,
        "state": stream.state.as_str(),
        "last_synced_at": stream.last_synced_at.map(|t| t.to_string()),
        "lag_events": lag_events,
        "lag_seconds": lag_seconds,
        "last_error": stream.last_error,
        "cursor": stream.cursor,
        "config": config,
        "created_at": stream.created_at.to_string(),
        "updated_at": stream.updated_at.to_string(),
    }))
}

/// A stream's settings as shown: credentials masked, batching in effect (the stored public part
/// if the credentials cannot be opened). Shared with the portal.
pub(crate) fn shown_config(state: &AppState, stream: &StreamRecord) -> Value {
    state
        .streams
        .open_settings(stream)
        .map(|settings| settings.masked())
        .unwrap_or_else(|_| stream.config.clone())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<StreamRecord, ApiError> {
    find_in(state, caller.organization.as_deref(), id).await
}

/// The stream `id`, if it belongs to `organization` (any organization when `None`): another
/// organization's stream is reported as not found, so its existence does not leak.
pub(crate) async fn find_in(
    state: &AppState,
    organization: Option<&str>,
    id: &str,
) -> Result<StreamRecord, ApiError> {
    state
        .store
        .get_stream(id)
        .await?
        .filter(|stream| organization.is_none_or(|own| own == stream.organization_id))
        .ok_or_else(|| ApiError::NotFound(format!("Log stream not found: '{id}'.")))
}

async fn check_destination(state: &AppState, settings: &Settings) -> Result<(), ApiError> {
    let field = match settings.kind {
        StreamKind::Datadog if settings.public.contains_key("endpoint") => "config.endpoint",
        StreamKind::Datadog => "config.site",
        StreamKind::Http | StreamKind::Splunk => "config.url",
        StreamKind::S3 | StreamKind::Gcs if settings.public.contains_key("endpoint") => {
            "config.endpoint"
        }
        StreamKind::S3 | StreamKind::Gcs => "config.bucket",
    };
    let url = settings
        .destination_url()
        .ok_or_else(|| ApiError::field("required", field, "a destination URL is required"))?;
    let mut targets = vec![(field, url)];
    if let Some(account) = settings.service_account() {
        targets.push(("config.service_account_json", account.token_uri));
    }
    for (field, url) in targets {
        trailmark_streams::net::check_destination(&url, state.streams.allow_private())
            .await
            .map_err(|error| {
                ApiError::Malformed(vec![FieldProblem {
                    code: "forbidden_destination",
                    field: field.into(),
                    message: error.to_string(),
                }])
            })?;
    }
    Ok(())
}

fn seal(state: &AppState, id: &str, settings: &Settings) -> Result<Vec<u8>, ApiError> {
    state
        .streams
        .sealer()
        .seal(id, &settings.secrets.to_bytes())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn required_text(body: &Value, field: &'static str) -> Result<String, ApiError> {
    match body.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        None | Some(Value::Null) => Err(ApiError::field(
            "required",
            field,
            format!("{field} is required"),
        )),
        Some(_) => Err(ApiError::field(
            "invalid_type",
            field,
            format!("{field} must be a non-empty string"),
        )),
    }
}

fn name(body: &Value) -> Result<Option<String>, ApiError> {
    match body.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name))
            if !name.trim().is_empty() && name.chars().count() <= NAME_MAX_CHARS =>
        {
            Ok(Some(name.clone()))
        }
        Some(_) => Err(ApiError::field(
            "invalid_value",
            "name",
            format!("name must be 1 to {NAME_MAX_CHARS} characters"),
        )),
    }
}

fn enabled(body: &Value) -> Result<Option<bool>, ApiError> {
    match body.get("enabled") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(enabled)) => Ok(Some(*enabled)),
        Some(_) => Err(ApiError::field(
            "invalid_type",
            "enabled",
            "enabled must be a boolean",
        )),
    }
}
