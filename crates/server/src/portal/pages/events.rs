//! The audit log section: events newest first with the search API's filters and cursor paging,
//! and one event with its leaf hash re-computed and its inclusion proof checked against the
//! latest signed checkpoint.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use trailmark_domain::portal::PortalIntent;
use trailmark_ledger::encode_hash;
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::verify_inclusion;
use trailmark_store::{Order, SearchRequest, StoredEvent};

use super::{csrf_input, problems_notice};
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::portal::PortalError;
use crate::portal::html::{self, Frame, esc, query_string};
use crate::portal::session::Portal;
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

    let inputs: String = FILTER_FIELDS
        .iter()
        .zip(&filters)
        .map(|((name, label, kind), (_, value))| {
            format!(
                r#"<label>{label}<input type="{kind}" name="{name}" value="{value}"{step}></label>"#,
                value = esc(value),
                step = if *kind == "datetime-local" { r#" step="1""# } else { "" },
            )
        })
        .collect();
    let table_rows: String = rows.iter().map(event_row).collect();
    let table = if rows.is_empty() {
        r#"<p class="empty">No events match.</p>"#.to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table class="events"><caption class="sr-only">Events, newest first</caption>
<thead><tr><th scope="col">#</th><th scope="col">Occurred (UTC)</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Targets</th><th scope="col">Location</th></tr></thead>
<tbody>{table_rows}</tbody></table></div>"#
        )
    };
    let current = query_string(filters.iter().copied());
    let mut paging = String::new();
    if query.get("before").is_some_and(|b| !b.is_empty()) {
        let newest = if current.is_empty() {
            "/portal/events".to_owned()
        } else {
            format!("/portal/events?{current}")
        };
        paging.push_str(&format!(r#"<a href="{}">← Newest</a>"#, esc(&newest)));
    }
    if let Some(older) = older {
        let older = older.to_string();
        let next = query_string(filters.iter().copied().chain([("before", older.as_str())]));
        paging.push_str(&format!(
            r#"<a rel="next" href="/portal/events?{}">Older events →</a>"#,
            esc(&next)
        ));
    }
    let hidden_filters: String = filters
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                esc(value)
            )
        })
        .collect();
    let body = format!(
        r#"<form class="filters" method="get" action="/portal/events" role="search">
<details open{active}><summary>Filters</summary>
<fieldset><legend class="sr-only">Filter</legend>{inputs}</fieldset>
<div class="actions"><button type="submit">Apply filters</button> <a href="/portal/events">Clear</a></div>
</details>
</form>
{notice}
<form class="export" method="post" action="/portal/exports">{csrf}{hidden_filters}
<span>Export {what}:</span>
<button type="submit" name="format" value="csv">Export CSV</button>
<button type="submit" name="format" value="ndjson">Export NDJSON (verifiable)</button>
</form>
{table}
<nav class="paging" aria-label="Pages">{paging}</nav>"#,
        notice = problems_notice(&problems),
        active = if hidden_filters.is_empty() {
            ""
        } else {
            " data-active"
        },
        csrf = csrf_input(&portal.session),
        what = if hidden_filters.is_empty() {
            "every event"
        } else {
            "the events matching these filters"
        },
    );
    let frame = Frame {
        title: "Audit log",
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(status, &frame, &body))
}

fn event_row(event: &StoredEvent) -> String {
    let link = format!(
        r#"<a href="/portal/events/{}">{}</a>"#,
        esc(&event.id),
        event.sequence
    );
    if event.purged_at.is_some() {
        return format!(
            r#"<tr><td>{link}</td><td colspan="5" class="muted">Contents removed by the retention policy</td></tr>"#
        );
    }
    let body = &event.body;
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let actor = &body["actor"];
    let actor_label = match actor["name"].as_str() {
        Some(name) => format!(
            r#"{} <span class="muted">{}</span>"#,
            esc(name),
            esc(&text(&actor["id"]))
        ),
        None => esc(&text(&actor["id"])).to_string(),
    };
    let targets: Vec<String> = body["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                esc(&text(&t["type"])),
                esc(t["name"]
                    .as_str()
                    .unwrap_or(t["id"].as_str().unwrap_or_default()))
            )
        })
        .collect();
    format!(
        "<tr><td>{link}</td><td>{}</td><td><code>{}</code></td><td>{actor_label}</td><td>{}</td><td>{}</td></tr>",
        esc(&text(&body["occurred_at"])),
        esc(&text(&body["action"])),
        targets.join(", "),
        esc(&text(&body["context"]["location"])),
    )
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
    let verdict = match (leaf_matches, included) {
        (true, true) => format!(
            r#"<p class="notice ok" id="proof">✓ Unaltered, and included in the signed checkpoint of {} events.</p>"#,
            proven.tree_size
        ),
        (false, _) => r#"<p class="notice error" id="proof">✗ This event's contents do not hash to its leaf hash: it was altered.</p>"#.to_owned(),
        (true, false) => r#"<p class="notice error" id="proof">✗ The inclusion proof does not check against the latest signed checkpoint.</p>"#.to_owned(),
    };
    let pretty = serde_json::to_string_pretty(&event.to_object()).unwrap_or_default();
    let body = format!(
        r#"{verdict}
<dl class="facts">
<dt>Event id</dt><dd><code>{id}</code></dd>
<dt>Sequence</dt><dd>{sequence}</dd>
<dt>Leaf hash</dt><dd><code>{leaf}</code></dd>
<dt>Checkpoint</dt><dd>{size} events, root <code>{root}</code></dd>
</dl>
<h2>Event</h2>
<pre class="json">{pretty}</pre>
<details><summary>Signed checkpoint</summary><pre>{note}</pre></details>
<p><a href="/portal/events">← All events</a></p>"#,
        id = esc(&event.id),
        sequence = event.sequence,
        leaf = esc(&encode_hash(&event.leaf_hash)),
        size = proven.tree_size,
        root = esc(&encode_hash(&proven.root)),
        pretty = esc(&pretty),
        note = esc(proven.checkpoint.as_ref().map_or("", |c| c.note.as_str())),
    );
    let title = format!("Event {}", event.sequence);
    let frame = Frame {
        title: &title,
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(StatusCode::OK, &frame, &body))
}
