//! Log streams over HTTP (Trailmark; WorkOS manages streams only in its dashboard):
//! `POST /audit_logs/streams`, `GET /audit_logs/streams?organization_id=…`,
//! `GET|PATCH|DELETE /audit_logs/streams/{id}`, `POST /audit_logs/streams/{id}/replay` and
//! `POST /audit_logs/streams/{id}/test` and `POST /audit_logs/streams/{id}/rotate_secret`.
//! Managing streams needs an `admin` key (restricted keys manage their own organization's);
//! reading them needs `read`. Credentials are never shown: `config` comes back with secrets
//! masked. The one exception is an `http` stream's signing secret when Trailmark made it (on
//! creation without one, or by a rotation): the answer that made it carries it once, in clear,
//! as top-level `signing_secret`, since the receiver needs it to check signatures.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use trailmark_app::streams::{NewStream, ReplayFrom, StreamChanges, StreamLag, StreamStart};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_store::StreamRecord;
use trailmark_streams::Outcome;
use trailmark_streams::settings::StreamKind;

use trailmark_app::audit::Origin;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::routes::readable_organization;
use crate::state::AppState;

/// Longest stream name.
const NAME_MAX_CHARS: usize = 200;

/// `POST /audit_logs/streams` with `{"organization_id", "type", "name", "config", "enabled"?,
/// "start"?: "now"|"beginning"}` → 201 `log_stream`. A new stream starts after the last event
/// already in the log (`now`, the default) or from the first (`beginning`). Without
/// `organization_id`, an unrestricted admin key makes an operator-wide stream: every
/// organization's events, each log in its own order, each event carrying its
/// `organization_id` (`organization_id` is `null` in the stream object).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    // Without an organization, an unrestricted key makes an operator-wide stream; a key
    // restricted to one organization must name it.
    let organization_id = match (body.get("organization_id"), &caller.organization) {
        (None | Some(Value::Null), None) => None,
        _ => Some(required_text(&body, "organization_id")?),
    };
    if let Some(organization_id) = &organization_id {
        caller.require_organization(organization_id)?;
    }
    let stream = create_stream(&state, organization_id, &body, &caller.origin()).await?;
    let mut shown = stream_json(&state, &stream).await?;
    if let Some(secret) = generated_secret(&state, &stream, &body, true) {
        shown["signing_secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(shown)))
}

/// The credential Trailmark generated while applying `body` to `stream` (an `http` stream's
/// signing secret, when created without one or updated with `"signing_secret": null`), to show
/// once in the answer: it is never shown again.
pub(crate) fn generated_secret(
    state: &AppState,
    stream: &StreamRecord,
    body: &Value,
    creating: bool,
) -> Option<String> {
    let field = StreamKind::parse(&stream.kind)?
        .destination()
        .generated_secret()?;
    let generated = match body.get("config").and_then(|config| config.get(field)) {
        Some(Value::String(_)) => false,
        Some(_) => true,
        None => creating,
    };
    if !generated {
        return None;
    }
    state.app.stream_generated_secret(stream)
}

/// Validates a new stream's `type`, `name`, `enabled`, `config` and `start` (as the API takes
/// them), checks its destination, stores it and starts delivering. Shared with the portal.
pub(crate) async fn create_stream(
    state: &AppState,
    organization_id: Option<String>,
    body: &Value,
    origin: &Origin,
) -> Result<StreamRecord, ApiError> {
    let kind = match body.get("type").and_then(Value::as_str) {
        Some(text) => StreamKind::parse(text).ok_or_else(|| {
            let types: Vec<&str> = StreamKind::all().map(StreamKind::as_str).collect();
            ApiError::field(
                "invalid_value",
                "type",
                format!("type must be one of {}; got '{text}'", types.join(", ")),
            )
        })?,
        None => return Err(ApiError::field("required", "type", "type is required")),
    };
    let name =
        name(body)?.ok_or_else(|| ApiError::field("required", "name", "name is required"))?;
    let enabled = enabled(body)?.unwrap_or(true);
    let start = match body.get("start").and_then(Value::as_str) {
        None | Some("now") => StreamStart::Now,
        Some("beginning") => StreamStart::Beginning,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_value",
                "start",
                "start must be 'now' or 'beginning'",
            ));
        }
    };
    Ok(state
        .app
        .create_stream(
            NewStream {
                organization_id,
                kind,
                name,
                enabled,
                config: body.get("config").cloned().unwrap_or(Value::Null),
                start,
            },
            origin,
        )
        .await?)
}

/// `GET /audit_logs/streams?organization_id=…`; without it, an unrestricted key lists the
/// operator-wide streams.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    query.refuse_unknown(&["organization_id"])?;
    // An unrestricted key that names no organization lists the operator-wide streams.
    let streams = if caller.organization.is_none() && query.get("organization_id").is_none() {
        state.app.operator_streams().await?
    } else {
        let organization_id = readable_organization(&state, &caller, &query).await?;
        state.app.streams(&organization_id).await?
    };
    let mut data = Vec::new();
    for stream in streams {
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
    let stream = update_stream(&state, stream, &body, &caller.origin()).await?;
    let mut shown = stream_json(&state, &stream).await?;
    if let Some(secret) = generated_secret(&state, &stream, &body, false) {
        shown["signing_secret"] = json!(secret);
    }
    Ok(Json(shown))
}

/// The default grace period of a rotation: the old secret keeps signing for a day.
const ROTATION_GRACE_DEFAULT_SECONDS: u64 = 24 * 3600;
/// The longest grace period: a week.
const ROTATION_GRACE_MAX_SECONDS: u64 = 7 * 24 * 3600;

/// `POST /audit_logs/streams/{id}/rotate_secret` with an optional `{"grace_period_seconds": N}`
/// (0 to 604,800, default 86,400): an `http` stream gets a new signing secret, answered once in
/// clear as `signing_secret`; the old one keeps signing beside it (a second signature in
/// `webhook-signature`) until `config.previous_signing_secret.expires_at`.
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<JsonBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let stream = find(&state, &caller, &id).await?;
    let grace = rotation_grace(body.as_ref().map(|JsonBody(body)| body))?;
    let (stream, secret) = rotate_stream_secret(&state, stream, grace, &caller.origin()).await?;
    let mut shown = stream_json(&state, &stream).await?;
    shown["signing_secret"] = json!(secret);
    Ok(Json(shown))
}

/// The grace period a rotation body asks for.
fn rotation_grace(body: Option<&Value>) -> Result<Duration, ApiError> {
    let Some(body) = body.filter(|body| !body.is_null()) else {
        return Ok(Duration::from_secs(ROTATION_GRACE_DEFAULT_SECONDS));
    };
    let Value::Object(fields) = body else {
        return Err(ApiError::field(
            "invalid_type",
            "body",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = fields.keys().find(|key| *key != "grace_period_seconds") {
        return Err(ApiError::field(
            "unknown_field",
            unknown.clone(),
            format!("unknown field '{unknown}'; the only field is grace_period_seconds"),
        ));
    }
    match fields.get("grace_period_seconds") {
        None | Some(Value::Null) => Ok(Duration::from_secs(ROTATION_GRACE_DEFAULT_SECONDS)),
        Some(value) => value
            .as_u64()
            .filter(|seconds| *seconds <= ROTATION_GRACE_MAX_SECONDS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ApiError::field(
                    "invalid_value",
                    "grace_period_seconds",
                    format!(
                        "grace_period_seconds must be an integer from 0 to {ROTATION_GRACE_MAX_SECONDS}"
                    ),
                )
            }),
    }
}

/// Gives an `http` stream a new signing secret, the old one signing beside it for `grace`;
/// returns the stored stream and the new secret. Shared with the portal.
pub(crate) async fn rotate_stream_secret(
    state: &AppState,
    stream: StreamRecord,
    grace: Duration,
    origin: &Origin,
) -> Result<(StreamRecord, String), ApiError> {
    let until = Timestamp::now().plus_millis(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    Ok(state
        .app
        .rotate_stream_secret(stream, until, origin)
        .await?)
}

/// Applies a `PATCH` body (`name`, `enabled`, `config`) to `stream` and stores it. Shared with
/// the portal.
pub(crate) async fn update_stream(
    state: &AppState,
    stream: StreamRecord,
    body: &Value,
    origin: &Origin,
) -> Result<StreamRecord, ApiError> {
    let changes = StreamChanges {
        name: name(body)?,
        enabled: enabled(body)?,
        config: body.get("config").filter(|c| !c.is_null()).cloned(),
    };
    Ok(state.app.update_stream(stream, changes, origin).await?)
}

/// `DELETE /audit_logs/streams/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let stream = find(&state, &caller, &id).await?;
    delete_stream(&state, &stream, &caller.origin()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a stream and lets its worker stop. Shared with the portal.
pub(crate) async fn delete_stream(
    state: &AppState,
    stream: &StreamRecord,
    origin: &Origin,
) -> Result<(), ApiError> {
    Ok(state.app.delete_stream(stream, origin).await?)
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
    replay_stream(&state, &stream, &body, &caller.origin()).await?;
    let stream = find(&state, &caller, &id).await?;
    Ok(Json(stream_json(&state, &stream).await?))
}

/// Moves `stream`'s cursor back as a replay body says (`from_sequence` or `from_time`); returns
/// the first sequence that will be delivered again. Shared with the portal.
pub(crate) async fn replay_stream(
    state: &AppState,
    stream: &StreamRecord,
    body: &Value,
    origin: &Origin,
) -> Result<u64, ApiError> {
    let from = match (
        body.get("from_sequence"),
        body.get("from_time").and_then(Value::as_str),
    ) {
        (Some(sequence), None) => ReplayFrom::Sequence(sequence.as_u64().ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "from_sequence",
                "from_sequence must be an integer ≥ 0",
            )
        })?),
        (None, Some(time)) => ReplayFrom::Time(Timestamp::parse(time).map_err(|e| {
            ApiError::field(
                "invalid_date",
                "from_time",
                format!("from_time is not an ISO-8601 date-time: {e}"),
            )
        })?),
        _ => {
            return Err(ApiError::field(
                "required",
                "from_sequence",
                "give from_sequence or from_time",
            ));
        }
    };
    Ok(state.app.replay_stream(stream, from, origin).await?)
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
    match state.app.test_stream(stream, actor).await {
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

/// The stream object, with its health: how far behind the log it is, in events and seconds.
pub async fn stream_json(state: &AppState, stream: &StreamRecord) -> Result<Value, ApiError> {
    let StreamLag {
        events: lag_events,
        seconds: lag_seconds,
    } = state.app.stream_lag(stream).await?;
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
    state.app.shown_stream_config(stream)
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
    Ok(state.app.stream(id, organization).await?)
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
