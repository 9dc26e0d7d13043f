//! Reading events back (Trailmark; WorkOS has no read API): `GET /audit_logs/events` searches one
//! organization's log, `GET /audit_logs/events/{id}` fetches one event.
//!
//! **Cursors are log sequences**, never timestamps. `after=N` returns events with a sequence
//! greater than N and `before=N` events with a smaller one, whatever the `order`. So a poller
//! that calls `order=asc&after=<last sequence it saw>` gets every event exactly once, in log
//! order, including events back-dated by `occurred_at`, and an empty page when it is caught up.
//!
//! `list_metadata` holds the cursors for the neighbouring pages: with `order=asc`, `after` is
//! the last sequence returned when more events followed at the time of the query (null when
//! caught up) and `before` the first one when the query started after a cursor; with
//! `order=desc` (the default, newest first), `before` is the last (smallest) sequence returned
//! when older events remain and `after` the first when the query had a `before` cursor.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::query::{API_FILTER_NAMES, ActionPattern, EventFilter};
use trailmark_store::{Order, SearchRequest};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::routes::readable_organization;
use crate::state::AppState;

/// Every parameter the search takes; any other is refused, so a misspelt filter never returns
/// the whole log looking filtered.
const SEARCH_PARAMETERS: [&str; 13] = [
    "organization_id",
    "range_start",
    "range_end",
    "actions",
    "actor_ids",
    "actor_names",
    "target_ids",
    "target_types",
    "q",
    "limit",
    "order",
    "before",
    "after",
];

/// `GET /audit_logs/events?organization_id=…&range_start=…&actions=user.*&q=…&order=asc&after=41`.
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    query.refuse_unknown(&SEARCH_PARAMETERS)?;
    let filter = filter_from_query(&query)?;
    let (limit, order) = (query.limit()?, query.order()?);
    let cursor = |name: &'static str| -> Result<Option<u64>, ApiError> {
        query
            .get(name)
            .filter(|value| !value.is_empty())
            .map(|value| {
                value.parse::<u64>().map_err(|_| {
                    ApiError::field(
                        "invalid_value",
                        name,
                        format!("{name} must be a sequence number (an integer ≥ 0), got '{value}'"),
                    )
                })
            })
            .transpose()
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    let organization_id = readable_organization(&state, &caller, &query).await?;
    let request = SearchRequest {
        filter,
        after,
        before,
        order,
        limit,
    };
    let result = state.app.search(&organization_id, request).await?;

    let first = result.events.first().map(|e| e.sequence);
    let last = result.events.last().map(|e| e.sequence);
    let (list_before, list_after) = match order {
        Order::Asc => (
            first.filter(|_| after.is_some()),
            last.filter(|_| result.more),
        ),
        Order::Desc => (
            last.filter(|_| result.more),
            first.filter(|_| before.is_some()),
        ),
    };
    Ok(Json(json!({
        "object": "list",
        "data": result.events.iter().map(|e| e.to_object()).collect::<Vec<_>>(),
        "list_metadata": {
            "before": list_before.map(|s| s.to_string()),
            "after": list_after.map(|s| s.to_string()),
        },
    })))
}

/// `GET /audit_logs/events/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read)?;
    // A restricted key learns nothing about other organizations' events, not even that they exist.
    let event = state.app.event(&id, caller.organization.as_deref()).await?;
    Ok(Json(event.to_object()))
}

/// The search filters from query parameters; list parameters take several values, repeated or
/// comma-separated. A parameter given empty (`actions=`, `q=`) is refused: it never means
/// "everything". The portal's filter form uses the same names, so it parses here too (without
/// the fields left empty: see [`QueryPairs::without_empty`]).
pub(crate) fn filter_from_query(query: &QueryPairs) -> Result<EventFilter, ApiError> {
    let instant = |name: &'static str| -> Result<Option<Timestamp>, ApiError> {
        query
            .non_empty(name)?
            .map(|value| {
                Timestamp::parse(value).map_err(|e| {
                    ApiError::field(
                        "invalid_date",
                        name,
                        format!("{name} is not an ISO-8601 date-time: {e}"),
                    )
                })
            })
            .transpose()
    };
    let filter = EventFilter {
        range_start: instant("range_start")?,
        range_end: instant("range_end")?,
        actions: query
            .strict_list("actions")?
            .iter()
            .map(|a| ActionPattern::parse(a))
            .collect(),
        actor_ids: query.strict_list("actor_ids")?,
        actor_names: query.strict_list("actor_names")?,
        target_ids: query.strict_list("target_ids")?,
        target_types: query.strict_list("target_types")?,
        text: query.non_empty("q")?.map(str::to_owned),
    };
    filter
        .check(&API_FILTER_NAMES)
        .map_err(ApiError::Malformed)?;
    Ok(filter)
}
