//! Alerts: the incidents Trailmark opened (streams failing longer than `--alert-after-secs`,
//! failed exports), the open ones first, then the latest, with when each began, opened and
//! resolved, and whether the operator's webhook has acknowledged its notifications.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use trailmark_store::{IncidentKind, IncidentRecord};

use crate::console::ConsoleError;
use crate::console::html::page;
use crate::console::session::Operator;
use crate::state::AppState;
use crate::web::url;

/// Incidents the "Recent" table shows.
const RECENT: usize = 50;

/// `GET /console/alerts`.
pub async fn show(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let incidents = state.app.incidents(RECENT).await?;
    let alerts = &state.app.config().alerts;
    let body = html! {
        p class="muted" {
            "A stream is an incident once it has been error or invalid for "
            (alerts.after.as_secs()) " s; an export, when it fails. "
            @if let Some(webhook) = &alerts.webhook {
                "Each is sent once to " code { (webhook) } ", and a stream's recovery once."
            } @else {
                "No --alert-webhook is set: incidents are shown here and counted in /metrics only."
            }
        }
        h2 { "Open" }
        @if incidents.open.is_empty() {
            p class="empty" { "No open incidents." }
        } @else {
            (table("open-incidents", &incidents.open))
        }
        h2 { "Recent" }
        @if incidents.recent.is_empty() {
            p class="empty" { "No incidents yet." }
        } @else {
            (table("recent-incidents", &incidents.recent))
        }
    };
    Ok(page(
        StatusCode::OK,
        "Alerts",
        Some(&operator.session),
        body,
    ))
}

fn table(id: &str, incidents: &[IncidentRecord]) -> Markup {
    html! {
        div class="scroll" {
            table id=(id) {
                thead { tr {
                    th { "Incident" } th { "Subject" } th { "Organization" } th { "State" }
                    th { "Last error" } th { "Failing since (UTC)" } th { "Opened" } th { "Resolved" }
                    th { "Webhook" }
                } }
                tbody { @for incident in incidents { (row(incident)) } }
            }
        }
    }
}

fn row(incident: &IncidentRecord) -> Markup {
    let subject = match incident.kind {
        IncidentKind::Stream => "stream",
        IncidentKind::Export => "export",
    };
    html! {
        tr {
            td { code { (incident.id) } }
            td { (subject) " " code { (incident.subject_id) } }
            td {
                @if let Some(organization) = &incident.organization_id {
                    a href={ "/console/organizations/" (url(organization)) } { code { (organization) } }
                } @else { span class="muted" { "all" } }
            }
            td { (incident.state) }
            td { @if let Some(error) = &incident.last_error { (error) } }
            td { (incident.since) }
            td { (incident.opened_at) }
            td {
                @match (incident.kind, incident.resolved_at, &incident.resolution) {
                    (IncidentKind::Export, _, _) => span class="muted" { "a failed export stays failed" },
                    (_, Some(at), Some(resolution)) => { (at) " (" (resolution) ")" },
                    _ => span class="muted" { "open" },
                }
            }
            td {
                @if let Some(at) = incident.resolved_notified_at {
                    "recovery told " (at)
                } @else if let Some(at) = incident.opened_notified_at {
                    "told " (at)
                } @else if let Some(error) = &incident.last_delivery_error {
                    "not yet (" (incident.attempts) " attempts; " (error) ")"
                } @else {
                    span class="muted" { "not yet" }
                }
            }
        }
    }
}
