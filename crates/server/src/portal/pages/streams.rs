//! The log streams section: the organization's streams with their health, a form per
//! destination type (validated by the streams API's own parser, its problems shown beside the
//! fields), and per stream: edit its settings, send a test event, pause, resume, replay from a
//! time, delete, and for webhooks rotate the signing secret. Credentials are write-only: the
//! forms never show them (an edit form leaves a credential as it is unless a new one is typed),
//! and the stream page shows them masked. The one exception is a webhook signing secret the
//! server made (on creation without one, or by a rotation): the page answering that form shows
//! it once, since the receiver needs it to check signatures.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value, json};
use trailmark_app::audit::Origin;
use trailmark_domain::FieldProblem;
use trailmark_domain::portal::PortalIntent;
use trailmark_store::StreamRecord;
use trailmark_streams::destination::{COMMON_FIELDS, Field, FieldKind};
use trailmark_streams::settings::StreamKind;

use super::{column_heads, csrf_input, problems_notice};
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::portal::html::{self, Frame, url};
use crate::portal::session::{Portal, PortalForm};
use crate::portal::{PortalError, record};
use crate::routes::streams::{
    create_stream, delete_stream, find_in, generated_secret, replay_stream, rotate_stream_secret,
    shown_config, stream_json, test_stream, update_stream,
};
use crate::state::AppState;

/// The settings of a destination's form, as the destination declares them, then the settings
/// every stream takes (batching, filters).
fn fields(kind: StreamKind) -> impl Iterator<Item = &'static Field> {
    kind.destination().fields().iter().chain(COMMON_FIELDS)
}

/// The value of a (possibly nested) field in a configuration, as a form shows it.
fn shown_value(config: &Map<String, Value>, name: &str) -> String {
    let value = match name.split_once('.') {
        Some((outer, inner)) => config.get(outer).and_then(|o| o.get(inner)),
        None => config.get(name),
    };
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// Puts `value` at a (possibly nested) field of a configuration.
fn set_value(config: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        Some((outer, inner)) => {
            let nested = config
                .entry(outer)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(nested) = nested {
                nested.insert(inner.into(), value);
            }
        }
        None => {
            config.insert(name.into(), value);
        }
    }
}

/// Whether a new stream is being added or an existing one edited.
enum FormMode<'a> {
    New,
    /// Editing `stream`, whose settings are shown as `masked` (credentials masked).
    Edit {
        stream: &'a StreamRecord,
        masked: &'a Value,
    },
}

/// The `config` a submitted form asks for, and its non-secret values to show again if the
/// streams API refuses it. A field left empty is absent from a new stream; when editing, an
/// empty credential stays as it is and any other empty field returns to its default (`null`).
/// Values are passed on as typed: the streams API's parser names each bad one.
fn config_from_form(
    kind: StreamKind,
    form: &QueryPairs,
    editing: bool,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut config = Map::new();
    let mut shown = Map::new();
    for f in fields(kind) {
        let typed = form
            .get(&format!("config.{}", f.name))
            .unwrap_or_default()
            .trim();
        if typed.is_empty() {
            if editing && !f.kind.is_secret() {
                set_value(&mut config, f.name, Value::Null);
            }
            continue;
        }
        let value = match f.kind {
            FieldKind::Number => serde_json::from_str::<serde_json::Number>(typed)
                .map_or_else(|_| json!(typed), Value::Number),
            FieldKind::Headers => headers_from_lines(typed),
            FieldKind::List => Value::Array(
                typed
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(Value::from)
                    .collect(),
            ),
            _ => json!(typed),
        };
        if !f.kind.is_secret() {
            set_value(&mut shown, f.name, value.clone());
        }
        set_value(&mut config, f.name, value);
    }
    (config, shown)
}

/// `Name: value` lines as a headers object; a line without a colon is passed on as its own
/// name with no value, which the streams API refuses naming it.
fn headers_from_lines(text: &str) -> Value {
    let headers: Map<String, Value> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.trim().to_owned(), json!(value.trim())),
            None => (line.to_owned(), Value::Null),
        })
        .collect();
    Value::Object(headers)
}

/// `GET /portal/streams`: every stream of the organization with its health.
pub async fn list(
    State(state): State<AppState>,
    portal: Portal,
    query: QueryPairs,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let streams = state.app.streams(&portal.session.organization_id).await?;
    let mut rows = Vec::with_capacity(streams.len());
    for stream in &streams {
        rows.push((stream, stream_json(&state, stream).await?));
    }
    let body = html! {
        (notice(&query))
        p { "Each stream delivers every event of your audit log, in order, to a destination you choose." }
        @if rows.is_empty() {
            p class="empty" { "No log streams yet." }
        } @else {
            div class="scroll" {
                table {
                    (column_heads(&[
                        "Name",
                        "Type",
                        "State",
                        "Lag (events)",
                        "Last synced (UTC)",
                        "Last error",
                    ]))
                    tbody {
                        @for (stream, health) in &rows {
                            tr {
                                td { a href={ "/portal/streams/" (stream.id) } { (stream.name) } }
                                td { (stream.kind) }
                                td { (state_badge(health)) }
                                td { (health["lag_events"].to_string()) }
                                td { (health["last_synced_at"].as_str().unwrap_or("never")) }
                                td { (health["last_error"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        p {
            a class="button" href="/portal/streams/new" { "Add a stream" }
            " "
            a href="/portal/streams" { "Refresh" }
        }
    };
    let frame = Frame {
        title: "Log streams",
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(StatusCode::OK, &frame, body))
}

/// `GET /portal/streams/new?type=http`: the form for one destination type.
pub async fn new_form(portal: Portal, query: QueryPairs) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let kind = query
        .get("type")
        .and_then(StreamKind::parse)
        .unwrap_or_default();
    Ok(form_page(
        StatusCode::OK,
        &portal,
        FormMode::New,
        kind,
        &Map::new(),
        "",
        &[],
    ))
}

/// `GET /portal/streams/{id}/edit`: the stream's form, filled with its settings.
pub async fn edit_form(
    State(state): State<AppState>,
    portal: Portal,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let stream = find(&state, &portal, &id).await?;
    let kind = StreamKind::parse(&stream.kind).ok_or(PortalError::NotFound)?;
    let masked = shown_config(&state, &stream);
    let stored = stream.config.as_object().cloned().unwrap_or_default();
    Ok(form_page(
        StatusCode::OK,
        &portal,
        FormMode::Edit {
            stream: &stream,
            masked: &masked,
        },
        kind,
        &stored,
        &stream.name,
        &[],
    ))
}

fn form_page(
    status: StatusCode,
    portal: &Portal,
    mode: FormMode<'_>,
    kind: StreamKind,
    values: &Map<String, Value>,
    name: &str,
    problems: &[FieldProblem],
) -> Response {
    let masked = match &mode {
        FormMode::Edit { masked, .. } => masked.as_object(),
        FormMode::New => None,
    };
    // Problems without a field of their own on the form (a nested header name, a conflict).
    let other_problems: Vec<FieldProblem> = problems
        .iter()
        .filter(|p| {
            p.field != "name" && !fields(kind).any(|f| p.field == format!("config.{}", f.name))
        })
        .cloned()
        .collect();
    let (title, action, submit, cancel) = match &mode {
        FormMode::New => (
            "Add a log stream".to_owned(),
            "/portal/streams".to_owned(),
            "Create stream",
            "/portal/streams".to_owned(),
        ),
        FormMode::Edit { stream, .. } => (
            format!("Edit {}", stream.name),
            format!("/portal/streams/{}/edit", url(&stream.id)),
            "Save changes",
            format!("/portal/streams/{}", url(&stream.id)),
        ),
    };
    let name_error = FieldError::of("name", problems);
    let body = html! {
        @match &mode {
            FormMode::New => nav class="tabs" aria-label="Destination type" {
                @for k in StreamKind::all() {
                    a href={ "/portal/streams/new?type=" (k.as_str()) }
                        aria-current=[(k == kind).then_some("page")] { (k.destination().label()) }
                }
            },
            FormMode::Edit { .. } => p {
                "Type: "
                (kind.destination().label())
                ". Credentials are never shown: leave them empty to keep them. An empty batch field returns to its default."
            },
        }
        (problems_notice(&other_problems))
        form class="stream" method="post" action=(action) novalidate {
            (csrf_input(&portal.session))
            input type="hidden" name="type" value=(kind.as_str());
            label {
                "Name *"
                input type="text" name="name" value=(name) required
                    aria-invalid=[name_error.invalid()]
                    aria-describedby=[name_error.described_by()];
                (name_error)
            }
            @for f in fields(kind) { (field_label(f, values, masked, problems)) }
            div class="actions" {
                button type="submit" { (submit) } " " a href=(cancel) { "Cancel" }
            }
        }
    };
    let frame = Frame {
        title: &title,
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    html::page(status, &frame, body)
}

/// The problems the streams API found with one field of a form, shown beside it and linked
/// to its control.
struct FieldError<'a> {
    field: &'a str,
    messages: Vec<&'a str>,
}

impl<'a> FieldError<'a> {
    fn of(field: &'a str, problems: &'a [FieldProblem]) -> Self {
        let messages = problems
            .iter()
            .filter(|p| p.field == field)
            .map(|p| p.message.as_str())
            .collect();
        FieldError { field, messages }
    }

    /// The control's `aria-invalid`, present only when the field has a problem.
    fn invalid(&self) -> Option<&'static str> {
        (!self.messages.is_empty()).then_some("true")
    }

    /// The control's `aria-describedby`: the id of its messages.
    fn described_by(&self) -> Option<String> {
        (!self.messages.is_empty()).then(|| format!("{}-error", self.field))
    }
}

impl maud::Render for FieldError<'_> {
    fn render(&self) -> Markup {
        html! {
            @for message in &self.messages {
                span class="field-error" id={ (self.field) "-error" } { (message) }
            }
        }
    }
}

/// One configuration field of the form: its label, its control (credentials never
/// pre-filled), its help and its problems.
fn field_label(
    f: &Field,
    values: &Map<String, Value>,
    masked: Option<&Map<String, Value>>,
    problems: &[FieldProblem],
) -> Markup {
    let key = format!("config.{}", f.name);
    let value = shown_value(values, f.name);
    let error = FieldError::of(&key, problems);
    // What a credential holds now, and the batching in effect when left empty.
    let placeholder = match (f.kind.is_secret(), masked) {
        (true, Some(masked)) if masked.contains_key(f.name) => {
            Some("unchanged unless you type a new one".to_owned())
        }
        (false, Some(masked)) if f.kind == FieldKind::Number => {
            Some(format!("default: {}", shown_value(masked, f.name)))
        }
        _ => None,
    };
    html! {
        label {
            (f.label)
            @if f.required { " *" }
            @match f.kind {
                FieldKind::Text | FieldKind::Url | FieldKind::Number | FieldKind::List => input
                    type=(match f.kind {
                        FieldKind::Url => "url",
                        FieldKind::Number => "number",
                        _ => "text",
                    })
                    step=[(f.kind == FieldKind::Number).then_some("any")]
                    name=(key) value=(value) placeholder=[&placeholder] required[f.required]
                    aria-invalid=[error.invalid()] aria-describedby=[error.described_by()];,
                FieldKind::Secret => input type="password" name=(key) autocomplete="off"
                    placeholder=[&placeholder] required[f.required]
                    aria-invalid=[error.invalid()] aria-describedby=[error.described_by()];,
                FieldKind::SecretText | FieldKind::Headers => textarea name=(key) rows="3"
                    autocomplete="off" spellcheck="false" placeholder=[&placeholder]
                    aria-invalid=[error.invalid()] aria-describedby=[error.described_by()] {},
                FieldKind::LongText => textarea name=(key) rows="3" spellcheck="false"
                    aria-invalid=[error.invalid()] aria-describedby=[error.described_by()] {
                    (value)
                },
                FieldKind::Select(choices) => select name=(key)
                    aria-invalid=[error.invalid()] aria-describedby=[error.described_by()] {
                    // An optional choice can be left out (S3's encryption and ACL): empty is
                    // sent as nothing, so the destination's default applies.
                    @if !f.required { option value="" selected[value.is_empty()] { "—" } }
                    @for choice in choices { option selected[*choice == value] { (choice) } }
                },
            }
            @if !f.help.is_empty() { small class="help" { (f.help) } }
            (error)
        }
    }
}

/// `POST /portal/streams`: creates a stream through the streams API's own validation.
pub async fn create(
    State(state): State<AppState>,
    PortalForm {
        portal,
        fields: form,
    }: PortalForm,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let kind = form
        .get("type")
        .and_then(StreamKind::parse)
        .unwrap_or_default();
    let (config, shown) = config_from_form(kind, &form, false);
    let name = form.get("name").unwrap_or_default().trim().to_owned();
    let mut body = json!({"type": kind.as_str(), "config": config});
    if !name.is_empty() {
        body["name"] = json!(name);
    }
    match create_stream(
        &state,
        Some(portal.session.organization_id.clone()),
        &body,
        &Origin::Portal,
    )
    .await
    {
        Ok(stream) => {
            record(
                &state,
                &portal.session,
                "trailmark.portal.stream.created",
                stream_target(&stream),
                json!({"type": stream.kind, "name": stream.name}),
            )
            .await?;
            // WorkOS sends the admin to the link's `success_url` once the setup is done; without
            // one, the new stream's page says it was created. A signing secret the server made
            // is shown first, once, on the way there.
            let next = match &portal.session.success_url {
                Some(url) => url.clone(),
                None => format!("/portal/streams/{}?notice=created", stream.id),
            };
            Ok(match generated_secret(&state, &stream, &body, true) {
                Some(secret) => secret_page(&portal, &stream, &secret, "created", &next),
                None => html::see_other(&next),
            })
        }
        Err(ApiError::Malformed(problems)) => Ok(form_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &portal,
            FormMode::New,
            kind,
            &shown,
            &name,
            &problems,
        )),
        Err(other) => Err(other.into()),
    }
}

/// `POST /portal/streams/{id}/edit`: applies the form through the streams API's `PATCH`.
pub async fn save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PortalForm {
        portal,
        fields: form,
    }: PortalForm,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let stream = find(&state, &portal, &id).await?;
    let kind = StreamKind::parse(&stream.kind).ok_or(PortalError::NotFound)?;
    let (config, shown) = config_from_form(kind, &form, true);
    let name = form.get("name").unwrap_or_default().trim().to_owned();
    // Which settings changed is recorded, never their values (they may be credentials); as one
    // string, since event metadata holds flat values only.
    let changed: Vec<String> = config
        .iter()
        .filter(|(key, value)| stream.config.get(key.as_str()) != Some(*value) && !value.is_null())
        .map(|(key, _)| key.clone())
        .collect();
    let body = json!({"name": name, "config": config});
    match update_stream(&state, stream.clone(), &body, &Origin::Portal).await {
        Ok(updated) => {
            record(
                &state,
                &portal.session,
                "trailmark.portal.stream.updated",
                stream_target(&updated),
                json!({"name": updated.name, "changed": changed.join(", ")}),
            )
            .await?;
            Ok(html::see_other(&format!(
                "/portal/streams/{}?notice=updated",
                updated.id
            )))
        }
        Err(ApiError::Malformed(problems)) => {
            let masked = shown_config(&state, &stream);
            Ok(form_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &portal,
                FormMode::Edit {
                    stream: &stream,
                    masked: &masked,
                },
                kind,
                &shown,
                &name,
                &problems,
            ))
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /portal/streams/{id}`: another organization's stream is not found.
pub async fn show(
    State(state): State<AppState>,
    portal: Portal,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let stream = find(&state, &portal, &id).await?;
    let health = stream_json(&state, &stream).await?;
    let config: Vec<(&String, String)> = health["config"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key, value)
        })
        .collect();
    let csrf = csrf_input(&portal.session);
    let action = |name: &str| format!("/portal/streams/{}/{name}", url(&stream.id));
    let (toggle, toggle_label) = if stream.enabled {
        ("pause", "Pause")
    } else {
        ("resume", "Resume")
    };
    let body = html! {
        (notice(&query))
        dl class="facts" id="health" data-reload="5" {
            dt { "State" } dd { (state_badge(&health)) }
            dt { "Type" } dd { (stream.kind) }
            dt { "Lag" }
            dd {
                (health["lag_events"].to_string()) " events ("
                (health["lag_seconds"].to_string()) " s)"
            }
            dt { "Last synced (UTC)" }
            dd id="last-synced" { (health["last_synced_at"].as_str().unwrap_or("never")) }
            dt { "Last error" } dd { (health["last_error"].as_str().unwrap_or("none")) }
        }
        h2 { "Settings" }
        dl class="facts" {
            @for (key, value) in &config { dt { (key) } dd { code { (value) } } }
        }
        p { a class="button" href=(action("edit")) { "Edit settings" } }
        h2 { "Actions" }
        div class="stream-actions" {
            form method="post" action=(action(toggle)) {
                (csrf) button type="submit" { (toggle_label) }
            }
            form method="post" action=(action("test")) {
                (csrf) button type="submit" { "Send test event" }
            }
            @if StreamKind::parse(&stream.kind)
                .is_some_and(|kind| kind.destination().generated_secret().is_some())
            {
                form method="post" action=(action("rotate_secret"))
                    data-confirm="Make a new signing secret? The current one keeps signing for a day." {
                    (csrf) button type="submit" { "Rotate signing secret" }
                }
            }
            form method="post" action=(action("replay")) class="replay" {
                (csrf)
                label {
                    "Replay from (UTC)"
                    input type="datetime-local" name="from_time" step="1" required;
                }
                button type="submit" { "Replay" }
            }
            form method="post" action=(action("delete"))
                data-confirm="Delete this stream? Delivery stops at once." {
                (csrf) button type="submit" class="danger" { "Delete stream" }
            }
        }
        p {
            a href="/portal/streams" { "← All streams" }
            " "
            a href={ "/portal/streams/" (url(&stream.id)) } { "Refresh" }
        }
    };
    let frame = Frame {
        title: &stream.name,
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    Ok(html::page(StatusCode::OK, &frame, body))
}

/// How long a secret rotated in the portal keeps signing beside the new one (the API's default).
const ROTATION_GRACE_SECONDS: u64 = 24 * 3600;

/// The answer to a form that made a webhook signing secret: the secret, shown this once, with
/// the way on to the stream's page. Not a redirect, so the secret never travels in a URL.
fn secret_page(
    portal: &Portal,
    stream: &StreamRecord,
    secret: &str,
    notice: &str,
    next: &str,
) -> Response {
    let heading = if notice == "created" {
        "Stream created"
    } else {
        "Signing secret rotated"
    };
    let body = html! {
        p class="notice ok" role="status" {
            (heading) ". Copy the signing secret now: it is not shown again."
        }
        dl class="facts" {
            dt { "Signing secret" } dd { code id="signing-secret" { (secret) } }
        }
        p {
            "Your receiver checks each request's " code { "webhook-signature" }
            " with it (Standard Webhooks). After a rotation the previous secret keeps signing beside this one for a day."
        }
        p { a class="button" href=(next) { "Continue" } }
    };
    let frame = Frame {
        title: &stream.name,
        session: Some(&portal.session),
        organization_name: &portal.organization_name,
        refresh: None,
    };
    // Like every portal page, sent with `Cache-Control: no-store`.
    html::page(StatusCode::OK, &frame, body)
}

/// `POST /portal/streams/{id}/{pause|resume|test|replay|rotate_secret|delete}`.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    PortalForm {
        portal,
        fields: form,
    }: PortalForm,
) -> Result<Response, PortalError> {
    portal.require(PortalIntent::LogStreams)?;
    let stream = find(&state, &portal, &id).await?;
    let back = |query: &str| html::see_other(&format!("/portal/streams/{}?{query}", stream.id));
    let target = stream_target(&stream);
    match action.as_str() {
        "pause" | "resume" => {
            let enabled = action == "resume";
            update_stream(
                &state,
                stream.clone(),
                &json!({"enabled": enabled}),
                &Origin::Portal,
            )
            .await?;
            let recorded = if enabled {
                "trailmark.portal.stream.resumed"
            } else {
                "trailmark.portal.stream.paused"
            };
            record(&state, &portal.session, recorded, target, json!({})).await?;
            Ok(back(if enabled {
                "notice=resumed"
            } else {
                "notice=paused"
            }))
        }
        "test" => {
            let mut actor = json!({"id": portal.session.id, "type": "portal_session"});
            if let Some(email) = &portal.session.email {
                actor["name"] = json!(email);
            }
            let answer = test_stream(&state, &stream, actor).await;
            let delivered = answer["delivered"].as_bool().unwrap_or(false);
            record(
                &state,
                &portal.session,
                "trailmark.portal.stream.tested",
                target,
                json!({"delivered": delivered}),
            )
            .await?;
            let message = answer["message"].as_str().unwrap_or_default();
            Ok(back(&format!(
                "notice={}&detail={}",
                if delivered {
                    "test_delivered"
                } else {
                    "test_failed"
                },
                url(message)
            )))
        }
        "replay" => {
            let from_time = form.get("from_time").unwrap_or_default();
            match replay_stream(
                &state,
                &stream,
                &json!({"from_time": from_time}),
                &Origin::Portal,
            )
            .await
            {
                Ok(from) => {
                    record(
                        &state,
                        &portal.session,
                        "trailmark.portal.stream.replayed",
                        target,
                        json!({"from_time": from_time, "from_sequence": from}),
                    )
                    .await?;
                    Ok(back(&format!("notice=replayed&detail={from}")))
                }
                Err(ApiError::Malformed(problems)) => {
                    let message = problems
                        .first()
                        .map(|p| p.message.as_str())
                        .unwrap_or("invalid replay");
                    Ok(back(&format!("notice=invalid&detail={}", url(message))))
                }
                Err(other) => Err(other.into()),
            }
        }
        "rotate_secret" => {
            let (rotated, secret) = rotate_stream_secret(
                &state,
                stream.clone(),
                std::time::Duration::from_secs(ROTATION_GRACE_SECONDS),
                &Origin::Portal,
            )
            .await?;
            record(
                &state,
                &portal.session,
                "trailmark.portal.stream.secret_rotated",
                target,
                json!({"grace_period_seconds": ROTATION_GRACE_SECONDS}),
            )
            .await?;
            let next = format!("/portal/streams/{}?notice=rotated", url(&rotated.id));
            Ok(secret_page(&portal, &rotated, &secret, "rotated", &next))
        }
        "delete" => {
            delete_stream(&state, &stream, &Origin::Portal).await?;
            record(
                &state,
                &portal.session,
                "trailmark.portal.stream.deleted",
                target,
                json!({"name": stream.name}),
            )
            .await?;
            Ok(html::see_other("/portal/streams?notice=deleted"))
        }
        _ => Err(PortalError::NotFound),
    }
}

async fn find(state: &AppState, portal: &Portal, id: &str) -> Result<StreamRecord, PortalError> {
    find_in(state, Some(&portal.session.organization_id), id)
        .await
        .map_err(|error| match error {
            ApiError::NotFound(_) => PortalError::NotFound,
            other => other.into(),
        })
}

fn stream_target(stream: &StreamRecord) -> Value {
    json!({"id": stream.id, "type": "log_stream", "name": stream.name})
}

fn state_badge(health: &Value) -> Markup {
    let state = health["state"].as_str().unwrap_or("unknown");
    html! { span class={ "badge state-" (state) } data-state=(state) { (state) } }
}

/// The message after an action (Post/Redirect/Get carries it in the query).
fn notice(query: &QueryPairs) -> Markup {
    let detail = query.get("detail").unwrap_or_default();
    let (class, text) = match query.get("notice") {
        Some("created") => (
            "ok",
            "Stream created. Delivery starts with the next event.".to_owned(),
        ),
        Some("paused") => (
            "ok",
            "Stream paused. Events wait in the log until you resume.".to_owned(),
        ),
        Some("resumed") => ("ok", "Stream resumed.".to_owned()),
        Some("rotated") => (
            "ok",
            "Signing secret rotated. The previous one keeps signing for a day.".to_owned(),
        ),
        Some("deleted") => ("ok", "Stream deleted.".to_owned()),
        Some("updated") => (
            "ok",
            "Settings saved. The next delivery uses them.".to_owned(),
        ),
        Some("replayed") => ("ok", format!("Replaying from event {detail}.")),
        Some("test_delivered") => ("ok", format!("Test event delivered: {detail}")),
        Some("test_failed") => ("error", format!("Test event not delivered: {detail}")),
        Some("invalid") => ("error", detail.to_owned()),
        _ => return html! {},
    };
    html! { p class={ "notice " (class) } role="status" { (text) } }
}
