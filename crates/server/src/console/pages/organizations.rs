//! Organizations: the list (search by name or domain) with the create form, and one
//! organization's page: its facts and the rename/domains form, its events with the search
//! API's filters and the portal's rows, exports, retention, legal hold, its log streams with
//! their health ("Configure manually" opens the Admin Portal's stream forms for the operator),
//! a button that makes an Admin Portal link, and deletion.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};
use trailmark_app::live::{LiveRequest, LiveSession};
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::organization::{Organization, OrganizationChanges};
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::retention::parse_retention_update;
use trailmark_store::{
    ExportState, Order, OrganizationFilter, PageRequest, PortalLink, SearchRequest,
};

use crate::console::ConsoleError;
use crate::console::html::{csrf_input, done_notice, field_problems, page, problems_notice};
use crate::console::session::{Operator, OperatorForm};
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::portal::pages::events::{FILTER_FIELDS, event_row};
use crate::routes::live::{STREAM_PARAMETERS, left_of, sse, start_after};
use crate::routes::search::filter_from_query;
use crate::state::AppState;
use crate::web::{query_string, random_token, see_other, token_hash, url};

/// Rows a page of organizations or events shows.
const PAGE_SIZE: usize = 25;

/// `GET /console/organizations?search=…&after=…`.
pub async fn list(
    State(state): State<AppState>,
    operator: Operator,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    list_page(&state, &operator, &query, StatusCode::OK, &[], "", "").await
}

async fn list_page(
    state: &AppState,
    operator: &Operator,
    query: &QueryPairs,
    status: StatusCode,
    problems: &[String],
    name: &str,
    domains: &str,
) -> Result<Response, ConsoleError> {
    let search = query.get("search").unwrap_or_default().trim().to_owned();
    let filter = OrganizationFilter {
        domains: Vec::new(),
        search: (!search.is_empty()).then(|| search.clone()),
        only: None,
        external_id: None,
    };
    let page_request = PageRequest {
        limit: PAGE_SIZE,
        order: Order::Desc,
        before: None,
        after: query
            .get("after")
            .filter(|a| !a.is_empty())
            .map(str::to_owned),
    };
    let found = state.app.list_organizations(filter, page_request).await?;
    let next = found.items.last().filter(|_| found.more_after).map(|last| {
        format!(
            "/console/organizations?{}",
            query_string([("search", search.as_str()), ("after", last.id.as_str())])
        )
    });
    let notice = match query.get("notice") {
        Some("deleted") => Some("The organization was deleted. Its log is kept."),
        _ => None,
    };
    let body = html! {
        (done_notice(notice))
        form class="inline" method="get" action="/console/organizations" role="search" {
            label { "Search by name or domain" input type="search" name="search" value=(search); }
            button type="submit" { "Search" }
        }
        @if found.items.is_empty() {
            p class="empty" { "No organizations." }
        } @else {
            div class="scroll" {
                table {
                    thead { tr { th { "Name" } th { "Id" } th { "Domains" } th { "Created (UTC)" } } }
                    tbody {
                        @for organization in &found.items {
                            tr {
                                td { a href={ "/console/organizations/" (url(&organization.id)) } { (organization.name) } }
                                td { code { (organization.id) } }
                                td { (domain_list(organization)) }
                                td { (organization.created_at) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next { nav class="paging" { a rel="next" href=(next) { "More →" } } }
        h2 { "Create an organization" }
        (problems_notice(problems))
        form class="card" method="post" action="/console/organizations" id="create-organization" {
            (csrf_input(&operator.session))
            label { "Name" input type="text" name="name" value=(name) required; }
            label { "Domains (one a line or comma-separated)" textarea name="domains" rows="2" { (domains) } }
            div class="actions" { button type="submit" { "Create organization" } }
        }
    };
    Ok(page(status, "Organizations", Some(&operator.session), body))
}

fn domain_list(organization: &Organization) -> String {
    organization
        .domains
        .iter()
        .map(|d| d.domain.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The organization API's body from the form's `name` and `domains`.
fn changes_body(fields: &QueryPairs) -> Value {
    let domains: Vec<Value> = fields
        .get("domains")
        .unwrap_or_default()
        .split([',', '\n', ' ', '\r'])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|domain| json!({"domain": domain, "state": "verified"}))
        .collect();
    json!({"name": fields.get("name").unwrap_or_default(), "domain_data": domains})
}

/// `POST /console/organizations` with `name` and `domains`.
pub async fn create(
    State(state): State<AppState>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    match OrganizationChanges::parse(&changes_body(&fields), true) {
        Ok(changes) => {
            let organization = state
                .app
                .console_create_organization(changes, &operator.origin)
                .await?;
            Ok(see_other(&format!(
                "/console/organizations/{}?notice=created",
                url(&organization.id)
            )))
        }
        Err(problems) => {
            list_page(
                &state,
                &operator,
                &QueryPairs(Vec::new()),
                StatusCode::UNPROCESSABLE_ENTITY,
                &field_problems(&problems),
                fields.get("name").unwrap_or_default(),
                fields.get("domains").unwrap_or_default(),
            )
            .await
        }
    }
}

/// `POST /console/organizations/{id}` with `name` and `domains`: rename and re-domain.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    match OrganizationChanges::parse(&changes_body(&fields), false) {
        Ok(changes) => {
            state
                .app
                .console_update_organization(&id, changes, &operator.origin)
                .await?;
            Ok(see_other(&format!(
                "/console/organizations/{}?notice=updated",
                url(&id)
            )))
        }
        Err(problems) => {
            organization_page(
                &state,
                &operator,
                &id,
                &QueryPairs(Vec::new()),
                StatusCode::UNPROCESSABLE_ENTITY,
                Extra::Problems(field_problems(&problems)),
            )
            .await
        }
    }
}

/// `GET /console/organizations/{id}?<filters>&before=…`.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    operator: Operator,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    organization_page(&state, &operator, &id, &query, StatusCode::OK, Extra::None).await
}

/// What an organization's page shows beyond itself.
enum Extra {
    None,
    /// What a refused form got wrong.
    Problems(Vec<String>),
    /// An Admin Portal link just made.
    PortalLink(String),
}

async fn organization_page(
    state: &AppState,
    operator: &Operator,
    id: &str,
    query: &QueryPairs,
    status: StatusCode,
    extra: Extra,
) -> Result<Response, ConsoleError> {
    let organization = state.app.live_organization(id).await?;
    let hold = state.app.legal_hold(id).await?;
    let streams = state.app.streams(id).await?;
    let base = format!("/console/organizations/{}", url(id));
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
    let mut problems = match &extra {
        Extra::Problems(problems) => problems.clone(),
        _ => Vec::new(),
    };
    // Read before the page, so the live view starts where the page ends: nothing in between is
    // missed.
    let head = state.app.log_size(id).await?.checked_sub(1);
    let newest_page = before.as_ref().is_ok_and(Option::is_none);
    let (rows, older) = match (filter_from_query(&query.without_empty()), before) {
        (Ok(filter), Ok(before)) => {
            let found = state
                .app
                .search(
                    id,
                    SearchRequest {
                        filter,
                        after: None,
                        before,
                        order: Order::Desc,
                        limit: PAGE_SIZE,
                    },
                )
                .await?;
            let older = found
                .events
                .last()
                .filter(|_| found.more)
                .map(|e| e.sequence);
            (found.events, older)
        }
        (Err(ApiError::Malformed(found)), _) | (_, Err(ApiError::Malformed(found))) => {
            problems.extend(field_problems(&found));
            (Vec::new(), None)
        }
        (Err(other), _) | (_, Err(other)) => return Err(other.into()),
    };
    let status = if problems.is_empty() {
        status
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let active: Vec<(&str, &str)> = filters
        .iter()
        .copied()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let older = older.map(|older| {
        let older = older.to_string();
        format!(
            "{base}?{}",
            query_string(filters.iter().copied().chain([("before", older.as_str())]))
        )
    });
    // Only the newest page follows new events, and only through a valid filter.
    let live = (newest_page && problems.is_empty()).then(|| {
        let head = head.map(|head| head.to_string());
        format!(
            "{base}/events/stream?{}",
            query_string(
                filters
                    .iter()
                    .copied()
                    .chain(head.as_deref().map(|head| ("after", head)))
            )
        )
    });
    let notice = match query.get("notice") {
        Some("created") => Some("The organization was created."),
        Some("updated") => Some("The organization was saved."),
        Some("retention") => Some("The retention period was set."),
        Some("hold_set") => Some("The legal hold is set: retention purges nothing."),
        Some("hold_lifted") => Some("The legal hold is lifted."),
        _ => None,
    };
    let csrf = csrf_input(&operator.session);
    let domains = organization
        .domains
        .iter()
        .map(|d| d.domain.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let body = html! {
        (done_notice(notice))
        (problems_notice(&problems))
        @if let Extra::PortalLink(link) = &extra {
            div class="notice ok" role="status" {
                p { "An Admin Portal link (it works once, for 5 minutes):" }
                p class="secret" {
                    code id="portal-link" { (link) }
                    button type="button" data-copy="portal-link" hidden { "Copy" }
                }
            }
        }
        dl class="facts" {
            dt { "Id" } dd { code { (organization.id) } }
            dt { "Domains" } dd { (domain_list(&organization)) }
            dt { "Created (UTC)" } dd { (organization.created_at) }
            dt { "Retention" }
            dd {
                @match organization.retention_period_in_days {
                    Some(days) => { (days) " days" },
                    None => "events are kept forever",
                }
            }
            dt { "Legal hold" }
            dd {
                @match &hold {
                    Some(hold) => { "set: " (hold.reason) },
                    None => "none",
                }
            }
        }
        section class="panel" aria-labelledby="events-heading" {
            h2 id="events-heading" { "Events" }
            form class="filters" method="get" action=(base) role="search" {
                details open[!active.is_empty()] {
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
                        button type="submit" { "Apply filters" } " " a href=(base) { "Clear" }
                    }
                }
            }
            form class="export" method="post" action={ (base) "/export" } {
                (csrf)
                @for (name, value) in &active { input type="hidden" name=(name) value=(value); }
                span { "Export " @if active.is_empty() { "every event" } @else { "the events matching these filters" } ":" }
                button type="submit" name="format" value="csv" { "Export CSV" }
                button type="submit" name="format" value="ndjson" { "Export NDJSON (verifiable)" }
                button type="submit" name="format" value="ocsf" { "Export OCSF" }
            }
            @if rows.is_empty() {
                p class="empty" { "No events match." }
            }
            @if !rows.is_empty() || live.is_some() {
                div class="scroll" {
                    table class="events" data-live=[live.as_deref()] hidden[rows.is_empty()] {
                        thead { tr { th { "#" } th { "Occurred (UTC)" } th { "Action" } th { "Actor" } th { "Targets" } th { "Location" } } }
                        tbody id="events" {
                            @for event in &rows { (event_row(event, None)) }
                        }
                    }
                }
            }
            @if let Some(older) = &older { nav class="paging" { a rel="next" href=(older) { "Older events →" } } }
        }
        section class="panel" aria-labelledby="streams-heading" {
            h2 id="streams-heading" { "Log streams" }
            @if streams.is_empty() {
                p class="muted" { "No log streams." }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr { th { "Name" } th { "Type" } th { "State" } th { "Last delivered (UTC)" } th { "Last error" } } }
                        tbody {
                            @for stream in &streams {
                                tr {
                                    td { (stream.name) }
                                    td { (stream.kind) }
                                    td { span class={ "badge state-" (stream.state.as_str()) } { (stream.state.as_str()) } }
                                    td { @if let Some(at) = stream.last_synced_at { (at) } }
                                    td { @if let Some(error) = &stream.last_error { (error) } }
                                }
                            }
                        }
                    }
                }
            }
            form class="inline" method="post" action={ (base) "/configure_streams" } {
                (csrf)
                button type="submit" { "Configure manually" }
                span class="muted" { "Opens the Admin Portal's stream forms for this organization." }
            }
        }
        section class="panel" aria-labelledby="portal-heading" {
            h2 id="portal-heading" { "Admin Portal" }
            form class="inline" method="post" action={ (base) "/portal_link" } {
                (csrf)
                label { "Section" select name="intent" {
                    option value="audit_logs" { "Audit logs" }
                    option value="log_streams" { "Log streams" }
                } }
                button type="submit" { "Make an Admin Portal link" }
            }
        }
        section class="panel" aria-labelledby="settings-heading" {
            h2 id="settings-heading" { "Settings" }
            form class="card" method="post" action=(base) id="rename" {
                (csrf)
                label { "Name" input type="text" name="name" value=(organization.name) required; }
                label { "Domains (one a line)" textarea name="domains" rows="3" { (domains) } }
                div class="actions" { button type="submit" { "Save" } }
            }
            form class="inline" method="post" action={ (base) "/retention" } {
                (csrf)
                label { "Retention (days)" input type="number" name="days" min="1" value=[organization.retention_period_in_days]; }
                button type="submit" { "Set retention" }
            }
            @if hold.is_some() {
                form class="inline" method="post" action={ (base) "/legal_hold" } {
                    (csrf)
                    input type="hidden" name="active" value="false";
                    button type="submit" { "Lift the legal hold" }
                }
            } @else {
                form class="inline" method="post" action={ (base) "/legal_hold" } {
                    (csrf)
                    input type="hidden" name="active" value="true";
                    label { "Legal hold reason" input type="text" name="reason" required; }
                    button type="submit" { "Set a legal hold" }
                }
            }
            form class="inline" method="post" action={ (base) "/delete" }
                data-confirm="Delete this organization? Its log is kept, but it leaves the API." {
                (csrf)
                button type="submit" class="danger" { "Delete organization" }
            }
        }
    };
    Ok(page(
        status,
        &organization.name,
        Some(&operator.session),
        body,
    ))
}

/// `POST /console/organizations/{id}/{delete|retention|legal_hold|export|portal_link|configure_streams}`.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    let origin = &operator.origin;
    let back = |notice: &str| {
        see_other(&format!(
            "/console/organizations/{}?notice={notice}",
            url(&id)
        ))
    };
    match action.as_str() {
        "delete" => {
            state.app.console_delete_organization(&id, origin).await?;
            Ok(see_other("/console/organizations?notice=deleted"))
        }
        "retention" => {
            let days: Value = fields
                .get("days")
                .and_then(|d| d.trim().parse::<u64>().ok())
                .map_or(Value::Null, |d| json!(d));
            match parse_retention_update(&json!({"retention_period_in_days": days})) {
                Ok(days) => {
                    state.app.set_retention(&id, days, origin).await?;
                    Ok(back("retention"))
                }
                Err(problems) => refused(&state, &operator, &id, &problems).await,
            }
        }
        "legal_hold" => {
            let active = fields.get("active") == Some("true");
            let reason = fields
                .get("reason")
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned);
            match state.app.set_legal_hold(&id, active, reason, origin).await {
                Ok(_) => Ok(back(if active { "hold_set" } else { "hold_lifted" })),
                Err(trailmark_app::AppError::Problems(trailmark_domain::Problems::Malformed(
                    problems,
                ))) => refused(&state, &operator, &id, &problems).await,
                Err(other) => Err(other.into()),
            }
        }
        "export" => {
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
            let export = state.app.begin_export(&id, format, filter, origin).await?;
            Ok(see_other(&format!(
                "/console/organizations/{}/exports/{}",
                url(&id),
                url(&export.id)
            )))
        }
        "portal_link" => {
            let intent = fields
                .get("intent")
                .and_then(PortalIntent::parse)
                .unwrap_or(PortalIntent::AuditLogs);
            let link = portal_link(&state, &operator, &id, intent).await?;
            organization_page(
                &state,
                &operator,
                &id,
                &QueryPairs(Vec::new()),
                StatusCode::OK,
                Extra::PortalLink(link),
            )
            .await
        }
        "configure_streams" => {
            // The portal's stream forms, opened for the operator: the link goes straight to
            // the browser that asked for it.
            let link = portal_link(&state, &operator, &id, PortalIntent::LogStreams).await?;
            Ok(see_other(&link))
        }
        _ => Err(ConsoleError::NotFound),
    }
}

async fn refused(
    state: &AppState,
    operator: &Operator,
    id: &str,
    problems: &[trailmark_domain::FieldProblem],
) -> Result<Response, ConsoleError> {
    organization_page(
        state,
        operator,
        id,
        &QueryPairs(Vec::new()),
        StatusCode::UNPROCESSABLE_ENTITY,
        Extra::Problems(field_problems(problems)),
    )
    .await
}

/// Issues an Admin Portal link for the organization, named for the operator, whose "back" link
/// returns to this page; the application records who made it.
async fn portal_link(
    state: &AppState,
    operator: &Operator,
    id: &str,
    intent: PortalIntent,
) -> Result<String, ConsoleError> {
    let public_url = state.config.public_url.trim_end_matches('/');
    let token = random_token()?;
    let now = Timestamp::now();
    state
        .app
        .issue_portal_link(
            PortalLink {
                token_hash: token_hash(&token),
                organization_id: id.to_owned(),
                intent,
                email: Some(operator.session.email.clone()),
                return_url: Some(format!("{public_url}/console/organizations/{}", url(id))),
                success_url: None,
                created_at: now,
                expires_at: now.plus_millis(state.portal_link_ttl.as_millis() as i64),
            },
            &operator.origin,
        )
        .await?;
    Ok(format!("{public_url}/portal?token={token}"))
}

/// `GET /console/organizations/{id}/events/stream?<filters>&after=N`: the organization's live
/// events, as `GET /audit_logs/events/stream` answers them, for the events section's script.
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    operator: Operator,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    state.app.live_organization(&id).await?;
    let query = query.without_empty();
    query.refuse_unknown(&STREAM_PARAMETERS)?;
    let filter = filter_from_query(&query)?;
    let after = start_after(&headers, &query)?;
    let live = state
        .app
        .live_events(LiveRequest {
            organization_id: id,
            filter,
            after,
            // The page names the last sequence it showed; without one, it saw an empty log, and
            // the stream starts at its beginning, so an event appended since is not missed.
            from_start: after.is_none(),
            key: None,
            session: Some(LiveSession::Console(operator.secret_hash)),
            holder: operator.session.id.clone(),
            ends_within: Some(left_of(operator.session.expires_at, state.clock.now())),
        })
        .await?;
    Ok(sse(live))
}

/// `GET /console/organizations/{id}/exports/{export}`: progress, then the download link.
pub async fn export(
    State(state): State<AppState>,
    Path((id, export_id)): Path<(String, String)>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let export = state.app.export(&export_id, Some(&id)).await?;
    let body: Markup = html! {
        @match export.state {
            ExportState::Pending => {
                p role="status" id="export-state" { "Preparing the export… " a href="" { "Reload" } }
            }
            ExportState::Ready => {
                p role="status" id="export-state" {
                    "The export is ready: " (export.row_count.unwrap_or_default()) " events."
                }
                p { a class="button" id="download" href=(state.links.link(&export.id, Timestamp::now())) download { "Download" } }
            }
            ExportState::Error => p class="notice error" role="alert" id="export-state" {
                "The export failed: " (export.error.as_deref().unwrap_or("unknown reason"))
            },
        }
        p { a href={ "/console/organizations/" (url(&id)) } { "← Back to the organization" } }
    };
    Ok(page(
        StatusCode::OK,
        "Export",
        Some(&operator.session),
        body,
    ))
}
