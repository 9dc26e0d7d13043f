//! Exports from the portal: the events page's export buttons post the current filters here; the
//! export is written in the background by the same job as the API's, and its page reloads
//! every second until the file is ready, then offers the signed download link.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::json;
use trailmark_app::audit::Origin;
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::portal::PortalIntent;
use trailmark_store::ExportState;

use crate::error::ApiError;
use crate::portal::html::{self, Frame, query_string};
use crate::portal::session::{Portal, PortalForm};
use crate::portal::{PortalError, record};
use crate::routes::search::filter_from_query;
use crate::state::AppState;

use super::events::FILTER_FIELDS;

/// `POST /portal/exports` with `format` and the events page's filters.
pub async fn create(
    State(state): State<AppState>,
    PortalForm { portal, fields }: PortalForm,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::AuditLogs)?;
    let format = fields
        .get("format")
        .and_then(ExportFormat::parse)
        .ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "format",
                "format must be 'csv', 'ndjson' or 'ocsf'",
            )
        })?;
    let filter = filter_from_query(&fields.without_empty())?;
    let export = state
        .app
        .begin_export(
            &portal.session.organization_id,
            format,
            filter,
            &Origin::Portal,
        )
        .await?;
    let filters = query_string(
        FILTER_FIELDS
            .iter()
            .map(|(name, _, _)| (*name, fields.get(name).unwrap_or_default())),
    );
    record(
        &state,
        &portal.session,
        "trailmark.portal.export.created",
        json!({"id": export.id, "type": "audit_log_export"}),
        json!({"format": format.as_str(), "filters": filters}),
    )
    .await?;
    Ok(html::see_other(&format!("/portal/exports/{}", export.id)))
}

/// `GET /portal/exports/{id}`: progress, then the download link.
pub async fn show(
    State(state): State<AppState>,
    portal: Portal,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::AuditLogs)?;
    let export = state
        .app
        .export(&id, Some(&portal.session.organization_id))
        .await?;
    let format = match export.format {
        ExportFormat::Csv => "CSV",
        ExportFormat::Ndjson => "NDJSON",
        ExportFormat::Ocsf => "OCSF",
    };
    let refresh = (export.state == ExportState::Pending).then(|| "1".to_owned());
    let body = html! {
        @match export.state {
            ExportState::Pending => {
                p role="status" id="export-state" { "Preparing your " (format) " export…" }
                progress aria-label="Export in progress" {}
                p class="muted" { "This page refreshes by itself." }
            }
            ExportState::Ready => {
                p role="status" id="export-state" {
                    "Your " (format) " export is ready: "
                    (export.row_count.unwrap_or_default()) " events."
                }
                p {
                    a class="button" id="download"
                        href=(state.links.link(&export.id, Timestamp::now()))
                        download { "Download " (format) }
                }
                p class="muted" {
                    "The download link works for a few minutes; reload this page for a fresh one."
                }
                @if export.format == ExportFormat::Ndjson {
                    p class="muted" {
                        "The file ends with a signed checkpoint; check it offline with "
                        code { "trailmark verify FILE --public-key KEY" } "."
                    }
                }
            }
            ExportState::Error => p class="notice error" role="alert" id="export-state" {
                "The export failed: " (export.error.as_deref().unwrap_or("unknown reason"))
            },
        }
        p { a href="/portal/events" { "← Back to the audit log" } }
    };
    let frame = Frame {
        title: "Export",
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh,
    };
    Ok(html::page(StatusCode::OK, &frame, body))
}
