//! API keys: every key (name, scope, organization, its short non-secret prefix, created,
//! expires, last used; never its text or hash), a form that creates one and shows its text
//! once with a copy button, and revocation — through the same use cases as `/api_keys`, which
//! record who did it. Revoking the last unrestricted admin key needs the "even the last admin
//! key" box, as the API needs `force`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use trailmark_app::AppError;
use trailmark_app::keys::NewApiKey;
use trailmark_domain::api_key::Scope;
use trailmark_domain::{Problems, Timestamp};

use crate::console::ConsoleError;
use crate::console::html::{csrf_input, done_notice, field_problems, page, problems_notice};
use crate::console::session::{Operator, OperatorForm};
use crate::extract::QueryPairs;
use crate::state::AppState;
use crate::web::{see_other, url};

const DAY_MILLIS: i64 = 86_400_000;

/// `GET /console/keys`.
pub async fn list(
    State(state): State<AppState>,
    operator: Operator,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    let notice = (query.get("notice") == Some("revoked")).then_some("The key was revoked.");
    keys_page(&state, &operator, StatusCode::OK, done_notice(notice), &[]).await
}

async fn keys_page(
    state: &AppState,
    operator: &Operator,
    status: StatusCode,
    above: Markup,
    problems: &[String],
) -> Result<Response, ConsoleError> {
    let keys = state.app.api_keys().await?;
    let csrf = csrf_input(&operator.session);
    let body = html! {
        (above)
        @if keys.is_empty() {
            p class="empty" { "No stored keys (the TRAILMARK_API_KEY key, if set, is not stored)." }
        } @else {
            div class="scroll" {
                table id="keys" {
                    thead { tr { th { "Name" } th { "Scope" } th { "Organization" } th { "Prefix" } th { "Created (UTC)" } th { "Expires" } th { "Last used" } th { "" } } }
                    tbody {
                        @for key in &keys {
                            tr {
                                td { (key.name) }
                                td { (key.scope.as_str()) }
                                td { @if let Some(id) = &key.organization_id { code { (id) } } @else { span class="muted" { "all" } } }
                                td { code { (key.prefix) } }
                                td { (key.created_at) }
                                td { @if let Some(at) = key.expires_at { (at) } @else { span class="muted" { "never" } } }
                                td { @if let Some(at) = key.last_used_at { (at) } @else { span class="muted" { "never" } } }
                                td {
                                    form method="post" action={ "/console/keys/" (url(&key.id)) "/revoke" }
                                        data-confirm="Revoke this key? Every request with it is refused within seconds." {
                                        (csrf)
                                        button type="submit" class="danger" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create a key" }
        (problems_notice(problems))
        form class="card" method="post" action="/console/keys" id="create-key" {
            (csrf)
            label { "Name" input type="text" name="name" required; }
            label { "Scope" select name="scope" {
                option value="ingest" { "ingest: send events" }
                option value="read" { "read: search, export, stream" }
                option value="admin" { "admin: everything" }
            } }
            label { "Organization id (optional: restricts the key to it)" input type="text" name="organization_id"; }
            label { "Expires after (days, optional)" input type="number" name="expires_in_days" min="1"; }
            div class="actions" { button type="submit" { "Create key" } }
        }
        p class="muted" { "Rotate a key by creating its successor, moving your app to it, then revoking the old one." }
    };
    Ok(page(status, "API keys", Some(&operator.session), body))
}

/// `POST /console/keys` with `name`, `scope`, `organization_id`?, `expires_in_days`?: the new
/// key's text, shown once.
pub async fn create(
    State(state): State<AppState>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    let mut problems = Vec::new();
    let scope = fields.get("scope").and_then(Scope::parse);
    if scope.is_none() {
        problems.push("The scope must be ingest, read or admin.".to_owned());
    }
    let expires_at = match fields.get("expires_in_days").map(str::trim) {
        None | Some("") => None,
        Some(days) => match days.parse::<u32>() {
            Ok(days) if days > 0 => {
                Some(Timestamp::now().plus_millis(i64::from(days) * DAY_MILLIS))
            }
            _ => {
                problems.push("Expires after must be a number of days.".to_owned());
                None
            }
        },
    };
    let (Some(scope), true) = (scope, problems.is_empty()) else {
        return keys_page(
            &state,
            &operator,
            StatusCode::UNPROCESSABLE_ENTITY,
            html! {},
            &problems,
        )
        .await;
    };
    let new = NewApiKey {
        name: fields.get("name").unwrap_or_default().to_owned(),
        scope,
        organization_id: fields
            .get("organization_id")
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        expires_at,
    };
    match state.app.create_api_key(new, &operator.origin).await {
        Ok(created) => {
            let shown = html! {
                div class="notice ok" role="status" {
                    p { "Created the key " strong { (created.record.name) } ". Copy it now: it is shown only this once." }
                    p class="secret" {
                        code id="new-key" { (created.secret.expose()) }
                        button type="button" data-copy="new-key" hidden { "Copy" }
                    }
                }
            };
            keys_page(&state, &operator, StatusCode::CREATED, shown, &[]).await
        }
        Err(AppError::Problems(Problems::Malformed(found))) => {
            keys_page(
                &state,
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                html! {},
                &field_problems(&found),
            )
            .await
        }
        Err(AppError::OrganizationNotFound(id)) => {
            keys_page(
                &state,
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                html! {},
                &[format!("No organization has the id '{id}'.")],
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /console/keys/{id}/revoke` (with `force=true` to revoke the last admin key).
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    let force = fields.get("force") == Some("true");
    match state.app.revoke_api_key(&id, force, &operator.origin).await {
        Ok(_) => Ok(see_other("/console/keys?notice=revoked")),
        Err(AppError::LastAdminKey(_)) => {
            let refused = html! {
                div class="notice error" role="alert" {
                    p { "This is the last unrestricted admin key: without it, only TRAILMARK_API_KEY (if set) can manage keys." }
                    form class="inline" method="post" action={ "/console/keys/" (url(&id)) "/revoke" } {
                        (csrf_input(&operator.session))
                        input type="hidden" name="force" value="true";
                        button type="submit" class="danger" { "Revoke it anyway" }
                    }
                }
            };
            keys_page(&state, &operator, StatusCode::CONFLICT, refused, &[]).await
        }
        Err(other) => Err(other.into()),
    }
}
