//! The audit log section: events newest first with the search API's filters and cursor paging,
//! and one event with its leaf hash re-computed and its inclusion proof checked against the
//! latest signed checkpoint.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;
use trailmark_app::live::{LiveRequest, LiveSession};
use trailmark_domain::Timestamp;
use trailmark_domain::portal::PortalIntent;
use trailmark_ledger::encode_hash;
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::verify_inclusion;
use trailmark_store::{Order, SearchRequest, StoredEvent};

use super::{column_heads, csrf_input, problems_notice};
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::portal::PortalError;
use crate::portal::html::{self, Frame, query_string};
use crate::portal::session::Portal;
use crate::routes::live::{STREAM_PARAMETERS, left_of, sse, start_after};
use crate::routes::search::filter_from_query;
use crate::state::AppState;

/// Events per page.
const PAGE_SIZE: usize = 25;

/// The filter parameters, named as the search API names them, with their labels and input types.
pub(crate) const FILTER_FIELDS: [(&str, &str, &str); 8] = [
    ("range_start", "From (UTC)", "datetime-local"),
    ("range_end", "To (UTC)", "datetime-local"),
    ("actions", "Actions (e.g. user.*)", "text"),
    ("actor_names", "Actor names", "text"),
    ("actor_ids", "Actor ids", "text"),
    ("target_types", "Target types", "text"),
    ("target_ids", "Target ids", "text"),
    ("q", "Text (3+ characters)", "search"),
];

/// `GET /portal/events?range_start=…&actions=…&q=…&before=…`.
pub async fn list(
    State(state): State<AppState>,
    portal: Portal,
    query: QueryPairs,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::AuditLogs)?;
    let organization_id = &portal.session.organization_id;
    let filters: Vec<(&str, &str)> = FILTER_FIELDS
        .iter()
        .map(|(name, _, _)| (*name, query.get(name).unwrap_or_default()))
        .collect();
    let before = query
        .get("before")
        .filter(|v| !v.is_empty())
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| {
            ApiError::field(
                "invalid_value",
                "before",
                "before must be a sequence number",
            )
        });
    let search = match (filter_from_query(&query.without_empty()), before) {
        (Ok(filter), Ok(before)) => Ok((filter, before)),
        (Err(ApiError::Malformed(problems)), _) | (_, Err(ApiError::Malformed(problems))) => {
            Err(problems)
        }
        (Err(other), _) | (_, Err(other)) => return Err(other.into()),
    };
    // Read before the page, so the live stream starts where the page ends: nothing in between
    // is missed.
    let head = state
        .app
        .log_size(organization_id)
        .await
        .map_err(ApiError::from)?
        .checked_sub(1);
    let (rows, older, problems) = match search {
        Ok((filter, before)) => {
            let page = state
                .app
                .search(
                    organization_id,
                    SearchRequest {
                        filter,
                        after: None,
                        before,
                        order: Order::Desc,
                        limit: PAGE_SIZE,
                    },
                )
                .await
                .map_err(ApiError::from)?;
            let older = page.events.last().filter(|_| page.more).map(|e| e.sequence);
            (page.events, older, Vec::new())
        }
        Err(problems) => (Vec::new(), None, problems),
    };
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };

    let current = query_string(filters.iter().copied());
    let newest = query.get("before").is_some_and(|b| !b.is_empty()).then(|| {
        if current.is_empty() {
            "/portal/events".to_owned()
        } else {
            format!("/portal/events?{current}")
        }
    });
    let older = older.map(|older| {
        let older = older.to_string();
        let next = query_string(filters.iter().copied().chain([("before", older.as_str())]));
        format!("/portal/events?{next}")
    });
    // Only the newest page follows new events, and only a valid filter.
    let live = (newest.is_none() && problems.is_empty()).then(|| {
        let head = head.map(|head| head.to_string());
        let query = query_string(
            filters
                .iter()
                .copied()
                .chain(head.as_deref().map(|head| ("after", head))),
        );
        format!("/portal/events/stream?{query}")
    });
    let active: Vec<&(&str, &str)> = filters
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let body = html! {
        form class="filters" method="get" action="/portal/events" role="search" {
            details open data-active[!active.is_empty()] {
                summary { "Filters" }
                fieldset {
                    legend class="sr-only" { "Filter" }
                    @for ((name, label, kind), (_, value)) in FILTER_FIELDS.iter().zip(&filters) {
                        label {
                            (label)
                            input type=(kind) name=(name) value=(value)
                                step=[(*kind == "datetime-local").then_some("1")];
                        }
                    }
                }
                div class="actions" {
                    button type="submit" { "Apply filters" } " " a href="/portal/events" { "Clear" }
                }
            }
        }
        (problems_notice(&problems))
        form class="export" method="post" action="/portal/exports" {
            (csrf_input(&portal.session))
            @for (name, value) in &active {
                input type="hidden" name=(name) value=(value);
            }
            " "
            span {
                "Export "
                @if active.is_empty() {
                    "every event"
                } @else {
                    "the events matching these filters"
                }
                ":"
            }
            " "
            button type="submit" name="format" value="csv" { "Export CSV" }
            " "
            button type="submit" name="format" value="ndjson" { "Export NDJSON (verifiable)" }
            " "
            button type="submit" name="format" value="ocsf" { "Export OCSF" }
        }
        @if rows.is_empty() {
            p class="empty" { "No events match." }
        }
        @if !rows.is_empty() || live.is_some() {
            div class="scroll" {
                table class="events" data-live=[live.as_deref()] hidden[rows.is_empty()] {
                    caption class="sr-only" { "Events, newest first" }
                    (column_heads(&[
                        "#",
                        "Occurred (UTC)",
                        "Action",
                        "Actor",
                        "Targets",
                        "Location",
                    ]))
                    tbody {
                        @for event in &rows { (event_row(event, Some("/portal/events/"))) }
                    }
                }
            }
        }
        nav class="paging" aria-label="Pages" {
            @if let Some(newest) = &newest { a href=(newest) { "← Newest" } }
            @if let Some(older) = &older { a rel="next" href=(older) { "Older events →" } }
        }
    };
    let frame = Frame {
        title: "Audit log",
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(status, &frame, body))
}

/// One event as a table row; its sequence links to `link_prefix` + its id when given (the
/// console shows the same rows).
pub(crate) fn event_row(event: &StoredEvent, link_prefix: Option<&str>) -> Markup {
    let body = &event.body;
    let text = |value: &'_ Value| value.as_str().unwrap_or_default().to_owned();
    let actor = &body["actor"];
    let targets: Vec<(String, String)> = body["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let name = t["name"].as_str().or(t["id"].as_str()).unwrap_or_default();
            (text(&t["type"]), name.to_owned())
        })
        .collect();
    html! {
        tr {
            td {
                @if let Some(prefix) = link_prefix {
                    a href={ (prefix) (event.id) } { (event.sequence) }
                } @else {
                    (event.sequence)
                }
            }
            @if event.purged_at.is_some() {
                td colspan="5" class="muted" { "Contents removed by the retention policy" }
            } @else {
                td { (text(&body["occurred_at"])) }
                td { code { (text(&body["action"])) } }
                td {
                    @if let Some(name) = actor["name"].as_str() {
                        (name) " " span class="muted" { (text(&actor["id"])) }
                    } @else {
                        (text(&actor["id"]))
                    }
                }
                td {
                    @for (i, (kind, name)) in targets.iter().enumerate() {
                        @if i > 0 { ", " }
                        (kind) ":" (name)
                    }
                }
                td { (text(&body["context"]["location"])) }
            }
        }
    }
}

/// `GET /portal/events/stream?…&after=N`: the live events of the session's organization, as
/// `GET /audit_logs/events/stream` answers them, for the events page's script.
pub async fn stream(
    State(state): State<AppState>,
    portal: Portal,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::AuditLogs)?;
    let query = query.without_empty();
    query.refuse_unknown(&STREAM_PARAMETERS)?;
    let filter = filter_from_query(&query)?;
    let after = start_after(&headers, &query)?;
    let live = state
        .app
        .live_events(LiveRequest {
            organization_id: portal.session.organization_id.clone(),
            filter,
            after,
            // The page names the last sequence it saw; without one, it saw an empty log, and
            // the stream starts at its beginning, so an event appended since is not missed.
            from_start: after.is_none(),
            key: None,
            session: Some(LiveSession::Portal(portal.secret_hash)),
            holder: portal.session.id.clone(),
            ends_within: Some(left_of(portal.session.expires_at, Timestamp::now())),
        })
        .await?;
    Ok(sse(live))
}

/// `GET /portal/events/{id}`: another organization's event is not found.
pub async fn show(
    State(state): State<AppState>,
    portal: Portal,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::AuditLogs)?;
    let organization_id = &portal.session.organization_id;
    // Proved against a checkpoint signed now, so it covers this event.
    let proven = state
        .app
        .inclusion_proof(organization_id, &id, None)
        .await?;
    let event = &proven.event;
    let leaf_matches =
        event.purged_at.is_some() || event_leaf_hash(&event.leaf_object()) == event.leaf_hash;
    let included = proven.checkpoint.as_ref().is_some_and(|checkpoint| {
        verify_inclusion(
            event.sequence,
            checkpoint.tree_size,
            &event.leaf_hash,
            &proven.proof,
            &checkpoint.root,
        )
    });
    let pretty = serde_json::to_string_pretty(&event.to_object()).unwrap_or_default();
    let body = html! {
        @match (leaf_matches, included) {
            (true, true) => p class="notice ok" id="proof" {
                "✓ Unaltered, and included in the signed checkpoint of "
                (proven.tree_size) " events."
            },
            (false, _) => p class="notice error" id="proof" {
                "✗ This event's contents do not hash to its leaf hash: it was altered."
            },
            (true, false) => p class="notice error" id="proof" {
                "✗ The inclusion proof does not check against the latest signed checkpoint."
            },
        }
        dl class="facts" {
            dt { "Event id" } dd { code { (event.id) } }
            dt { "Sequence" } dd { (event.sequence) }
            dt { "Leaf hash" } dd { code { (encode_hash(&event.leaf_hash)) } }
            dt { "Checkpoint" }
            dd { (proven.tree_size) " events, root " code { (encode_hash(&proven.root)) } }
        }
        h2 { "Event" }
        pre class="json" { (pretty) }
        details {
            summary { "Signed checkpoint" }
            pre { (proven.checkpoint.as_ref().map_or("", |c| c.note.as_str())) }
        }
        p { a href="/portal/events" { "← All events" } }
    };
    let title = format!("Event {}", event.sequence);
    let frame = Frame {
        title: &title,
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(StatusCode::OK, &frame, body))
}
