//! Exports (wire doc §2.2–2.3): `POST /audit_logs/exports` starts a background job,
//! `GET /audit_logs/exports/{id}` reports it (with a fresh signed `url` once `ready`), and
//! `GET /audit_logs/exports/{id}/download` serves the file to whoever holds a valid link.
//!
//! Beyond WorkOS: `format` (`csv`, the default, `ndjson`, or `ocsf`: NDJSON of OCSF 1.3.0 API
//! Activity events, `trailmark_domain::ocsf`), no three-month limit unless the
//! operator sets `--export-max-range-days`, and Trailmark's own keys on the export object
//! (`organization_id`, `format`, `row_count`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::id::IdKind;
use trailmark_domain::query::{ActionPattern, EventFilter, FilterNames};
use trailmark_store::{ExportRecord, ExportState};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::links::LinkRefusal;
use crate::state::AppState;

/// The export body's names for the filters (WorkOS's `AuditLogExportCreationDto`).
const EXPORT_FILTER_NAMES: FilterNames = FilterNames {
    range_start: "range_start",
    range_end: "range_end",
    actions: "actions",
    actor_ids: "actor_ids",
    actor_names: "actor_names",
    target_ids: "target_ids",
    target_types: "targets",
    text: "q",
};

/// Every field an export body takes: WorkOS's (`AuditLogExportCreationDto`, with `actors`, the
/// deprecated alias of `actor_names`) and Trailmark's `format`, `target_ids` and `q`. Any other
/// is refused, so a misspelt filter (`action`, `actor_name`) never exports the whole log.
const EXPORT_FIELDS: [&str; 11] = [
    "organization_id",
    "format",
    "range_start",
    "range_end",
    "actions",
    "actors",
    "actor_names",
    "actor_ids",
    "targets",
    "target_ids",
    "q",
];

/// `POST /audit_logs/exports` → 201 `audit_log_export` in state `pending`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Read)?;
    let organization_id = match body.get("organization_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(ApiError::field(
                "required",
                "organization_id",
                "organization_id is required and must be a string",
            ));
        }
    };
    caller.require_organization(&organization_id)?;
    let format = match body.get("format") {
        None | Some(Value::Null) => ExportFormat::Csv,
        Some(Value::String(format)) => ExportFormat::parse(format).ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "format",
                "format must be 'csv', 'ndjson' or 'ocsf'",
            )
        })?,
        Some(_) => {
            return Err(ApiError::field(
                "invalid_type",
                "format",
                "format must be a string",
            ));
        }
    };
    let filter = export_filter(&body, state.app.config().export_max_range_days)?;
    let export = state
        .app
        .begin_export(&organization_id, format, filter, &caller.origin())
        .await?;
    Ok((StatusCode::CREATED, Json(export_json(&state, &export))))
}

/// `GET /audit_logs/exports/{id}`: every call signs a new link, valid from now.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    let export = state
        .app
        .export(&id, caller.organization.as_deref())
        .await?;
    Ok(Json(export_json(&state, &export)))
}

/// `GET /audit_logs/exports/{id}/download?expires=…&signature=…`: the file, for a valid link.
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let refused = |message: &str| ApiError::Forbidden(message.to_owned());
    if !IdKind::Export.matches(&id) {
        return Err(refused("This download link is invalid."));
    }
    let (expires, signature) = (
        query.get("expires").unwrap_or(""),
        query.get("signature").unwrap_or(""),
    );
    match state
        .links
        .verify(&id, expires, signature, Timestamp::now())
    {
        Ok(()) => {}
        Err(LinkRefusal::Tampered) => return Err(refused("This download link is invalid.")),
        Err(LinkRefusal::Expired) => {
            return Err(refused(
                "This download link has expired; GET the export again for a new one.",
            ));
        }
    }
    let (export, file) = state
        .app
        .open_ready_export(&id)
        .await
        .map_err(|error| match error {
            trailmark_app::AppError::NotFound { .. } => {
                ApiError::NotFound(format!("Audit Log Export not found or not ready: '{id}'."))
            }
            other => ApiError::from(other),
        })?;
    let content_type = match export.format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Ndjson | ExportFormat::Ocsf => "application/x-ndjson",
    };
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        export.id,
        export.format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

fn export_json(state: &AppState, export: &ExportRecord) -> Value {
    let url = (export.state == ExportState::Ready)
        .then(|| state.links.link(&export.id, Timestamp::now()));
    json!({
        "object": "audit_log_export",
        "id": export.id,
        "state": export.state.as_str(),
        "url": url,
        "created_at": export.created_at.to_string(),
        "updated_at": export.updated_at.to_string(),
        "organization_id": export.organization_id,
        "format": export.format.as_str(),
        "row_count": export.row_count,
        "error": export.error,
    })
}

/// The filters of an export body: `range_start` and `range_end`, `actions`, `actor_names` (and
/// its deprecated alias `actors`), `actor_ids`, `targets` (target types), and beyond WorkOS
/// `target_ids` and `q`. WorkOS requires both ends of the range; Trailmark lets an end be left
/// out (the log's start, or its latest event), so an export of the whole log is one with no
/// filter at all, which a verifier can check for completeness against the checkpoint. A server
/// that limits an export's span (`--export-max-range-days`) requires both.
fn export_filter(body: &Value, max_range_days: Option<u32>) -> Result<EventFilter, ApiError> {
    let instant = |name: &'static str| -> Result<Option<Timestamp>, ApiError> {
        match body.get(name) {
            Some(Value::String(text)) => Timestamp::parse(text).map(Some).map_err(|e| {
                ApiError::field(
                    "invalid_date",
                    name,
                    format!("{name} is not an ISO-8601 date-time: {e}"),
                )
            }),
            None | Some(Value::Null) => match max_range_days {
                Some(days) => Err(ApiError::field(
                    "required",
                    name,
                    format!("{name} is required: exports on this server span at most {days} days"),
                )),
                None => Ok(None),
            },
            Some(_) => Err(ApiError::field(
                "invalid_type",
                name,
                format!("{name} must be a string"),
            )),
        }
    };
    if let Some(unknown) = body
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.keys())
        .find(|key| !EXPORT_FIELDS.contains(&key.as_str()))
    {
        return Err(ApiError::field(
            "unknown_field",
            unknown.clone(),
            format!(
                "unknown field '{unknown}'; an export takes {}",
                EXPORT_FIELDS.join(", ")
            ),
        ));
    }
    let strings = |name: &'static str| -> Result<Vec<String>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item.as_str() {
                    Some(text) if text.trim().is_empty() => Err(ApiError::field(
                        "empty",
                        name,
                        format!(
                            "{name} holds an empty value; leave the field out to filter nothing"
                        ),
                    )),
                    Some(text) => Ok(text.to_owned()),
                    None => Err(ApiError::field(
                        "invalid_type",
                        name,
                        format!("{name} must be an array of strings"),
                    )),
                })
                .collect(),
            Some(_) => Err(ApiError::field(
                "invalid_type",
                name,
                format!("{name} must be an array of strings"),
            )),
        }
    };
    let (range_start, range_end) = (instant("range_start")?, instant("range_end")?);
    let invalid_range = |message: String| ApiError::BadRequest {
        code: "invalid_audit_log_export_range_date",
        message,
    };
    if let (Some(start), Some(end)) = (range_start, range_end) {
        if start > end {
            return Err(invalid_range(
                "Invalid date range: range_start is after range_end.".into(),
            ));
        }
        if let Some(days) = max_range_days
            && end.unix_millis() - start.unix_millis() > i64::from(days) * 86_400_000
        {
            return Err(invalid_range(format!(
                "Invalid date range: an export may span at most {days} days."
            )));
        }
    }
    let text = match body.get("q") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => {
            return Err(ApiError::field(
                "empty",
                "q",
                "q is empty; leave it out to filter nothing",
            ));
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(ApiError::field("invalid_type", "q", "q must be a string"));
        }
    };
    let mut actor_names = strings("actor_names")?;
    actor_names.extend(strings("actors")?);
    let filter = EventFilter {
        range_start,
        range_end,
        actions: strings("actions")?
            .iter()
            .map(|a| ActionPattern::parse(a))
            .collect(),
        actor_ids: strings("actor_ids")?,
        actor_names,
        target_ids: strings("target_ids")?,
        target_types: strings("targets")?,
        text,
    };
    filter
        .check(&EXPORT_FILTER_NAMES)
        .map_err(ApiError::Malformed)?;
    Ok(filter)
}
