//! Event schemas ("+ Create an event"): the actions with their latest version; a form for an
//! action's target types and the JSON Schemas of its root, actor and target metadata; an
//! action's page with its newest version beside the one before and the form, filled with the
//! newest, that saves the next version. Either form can check a sample event against the
//! definition before saving, with ingest's own checks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value, json};
use trailmark_domain::schema::{ActionName, ActionSchema, SchemaDefinition};
use trailmark_store::{Order, PageRequest};

use crate::console::ConsoleError;
use crate::console::html::{csrf_input, done_notice, page, problems_notice};
use crate::console::session::{Operator, OperatorForm};
use crate::extract::QueryPairs;
use crate::state::AppState;
use crate::web::{see_other, url};

/// Actions and versions a page lists.
const PAGE_SIZE: usize = 100;

/// `GET /console/schemas`.
pub async fn list(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let actions = state
        .app
        .list_actions(PageRequest {
            limit: PAGE_SIZE,
            order: Order::Asc,
            before: None,
            after: None,
        })
        .await?;
    let body = html! {
        p { a class="button" href="/console/schemas/new" { "+ Create an event" } }
        @if actions.items.is_empty() {
            p class="empty" { "No event schemas yet." }
        } @else {
            div class="scroll" {
                table {
                    thead { tr { th { "Action" } th { "Latest version" } th { "Updated (UTC)" } } }
                    tbody {
                        @for action in &actions.items {
                            tr {
                                td { a href={ "/console/schemas/" (url(action.latest.action.as_str())) } { code { (action.latest.action.as_str()) } } }
                                td { (action.latest.version) }
                                td { (action.updated_at) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        "Event schemas",
        Some(&operator.session),
        body,
    ))
}

/// The form's fields, as text.
#[derive(Default)]
struct Draft {
    action: String,
    targets: String,
    metadata: String,
    actor_metadata: String,
    target_metadata: String,
    sample: String,
}

impl Draft {
    fn from_fields(fields: &QueryPairs) -> Draft {
        let get = |name: &str| fields.get(name).unwrap_or_default().to_owned();
        Draft {
            action: get("action"),
            targets: get("targets"),
            metadata: get("metadata"),
            actor_metadata: get("actor_metadata"),
            target_metadata: get("target_metadata"),
            sample: get("sample"),
        }
    }

    /// The form filled with a stored version, to edit into the next one.
    fn from_schema(schema: &ActionSchema) -> Draft {
        let json = schema.definition.to_json();
        let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
        let targets = json["targets"].as_array().cloned().unwrap_or_default();
        let kinds: Vec<&str> = targets.iter().filter_map(|t| t["type"].as_str()).collect();
        let with_metadata: Map<String, Value> = targets
            .iter()
            .filter(|t| t.get("metadata").is_some())
            .filter_map(|t| Some((t["type"].as_str()?.to_owned(), t["metadata"].clone())))
            .collect();
        Draft {
            action: schema.action.as_str().to_owned(),
            targets: kinds.join(", "),
            metadata: json.get("metadata").map(pretty).unwrap_or_default(),
            actor_metadata: json
                .get("actor")
                .and_then(|a| a.get("metadata"))
                .map(pretty)
                .unwrap_or_default(),
            target_metadata: if with_metadata.is_empty() {
                String::new()
            } else {
                pretty(&Value::Object(with_metadata))
            },
            sample: String::new(),
        }
    }

    /// The schema API's body for this draft, or the problems of its JSON fields.
    fn definition_body(&self) -> Result<Value, Vec<String>> {
        let mut problems = Vec::new();
        let mut json_field = |label: &str, text: &str| -> Option<Value> {
            if text.trim().is_empty() {
                return None;
            }
            match serde_json::from_str::<Value>(text) {
                Ok(value) => Some(value),
                Err(error) => {
                    problems.push(format!("{label} is not JSON: {error}"));
                    None
                }
            }
        };
        let metadata = json_field("The metadata schema", &self.metadata);
        let actor = json_field("The actor metadata schema", &self.actor_metadata);
        let by_type = json_field("The target metadata schemas", &self.target_metadata);
        if by_type.as_ref().is_some_and(|v| !v.is_object()) {
            problems
                .push("The target metadata schemas must be an object keyed by target type".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let targets: Vec<Value> = self
            .targets
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|kind| {
                let mut target = json!({"type": kind});
                if let Some(schema) = by_type.as_ref().and_then(|m| m.get(kind)) {
                    target["metadata"] = schema.clone();
                }
                target
            })
            .collect();
        let mut body = json!({"targets": targets});
        if let Some(actor) = actor {
            body["actor"] = json!({"metadata": actor});
        }
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        Ok(body)
    }
}

/// `GET /console/schemas/new`.
pub async fn new_form(operator: Operator) -> Result<Response, ConsoleError> {
    let draft = Draft {
        sample: serde_json::to_string_pretty(&json!({
            "action": "user.login",
            "occurred_at": "2026-01-01T00:00:00.000Z",
            "actor": {"id": "user_1", "type": "user"},
            "targets": [{"id": "user_1", "type": "user"}],
            "context": {"location": "203.0.113.7"}
        }))
        .unwrap_or_default(),
        ..Draft::default()
    };
    Ok(form_page(
        &operator,
        StatusCode::OK,
        "Create an event",
        &draft,
        true,
        html! {},
    ))
}

fn form_page(
    operator: &Operator,
    status: StatusCode,
    title: &str,
    draft: &Draft,
    new_action: bool,
    above: Markup,
) -> Response {
    let body = html! {
        (above)
        (schema_form(operator, draft, new_action))
    };
    page(status, title, Some(&operator.session), body)
}

fn schema_form(operator: &Operator, draft: &Draft, new_action: bool) -> Markup {
    html! {
        form class="card" method="post" action="/console/schemas" id="schema-form" {
            (csrf_input(&operator.session))
            @if new_action {
                label { "Action (e.g. user.login)" input type="text" name="action" value=(draft.action) required; }
            } @else {
                input type="hidden" name="action" value=(draft.action);
            }
            label { "Target types (comma-separated)" input type="text" name="targets" value=(draft.targets) required; }
            label { "Metadata JSON Schema (optional)" textarea name="metadata" rows="5" { (draft.metadata) } }
            label { "Actor metadata JSON Schema (optional)" textarea name="actor_metadata" rows="4" { (draft.actor_metadata) } }
            label { "Target metadata JSON Schemas, by target type (optional)" textarea name="target_metadata" rows="4" { (draft.target_metadata) } }
            label { "Sample event to check (optional)" textarea name="sample" rows="8" { (draft.sample) } }
            div class="actions" {
                button type="submit" name="intent" value="check" { "Check the sample" }
                button type="submit" name="intent" value="save" { "Save version" }
            }
        }
    }
}

/// `POST /console/schemas` with the form's fields and `intent` `check` (check the sample, save
/// nothing) or `save` (save the next version).
pub async fn save(
    State(state): State<AppState>,
    OperatorForm { operator, fields }: OperatorForm,
) -> Result<Response, ConsoleError> {
    let draft = Draft::from_fields(&fields);
    let checking = fields.get("intent") == Some("check");
    let title = "Create an event";
    let action = ActionName::parse(draft.action.trim());
    let definition = draft.definition_body().and_then(|body| {
        SchemaDefinition::parse(&body)
            .map_err(|problems| problems.into_iter().map(|p| p.message).collect())
    });
    let (action, definition) = match (action, definition) {
        (Ok(action), Ok(definition)) => (action, definition),
        (action, definition) => {
            let mut problems: Vec<String> = action.err().map(|p| p.message).into_iter().collect();
            problems.extend(definition.err().unwrap_or_default());
            return Ok(form_page(
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                title,
                &draft,
                true,
                problems_notice(&problems),
            ));
        }
    };
    if checking {
        let sample = serde_json::from_str::<Value>(&draft.sample);
        let outcome = match sample {
            Ok(sample) => {
                state
                    .app
                    .check_sample(&action, &definition, &sample)
                    .await?
            }
            Err(error) => vec![format!("The sample is not JSON: {error}")],
        };
        let above = html! {
            @if outcome.is_empty() {
                p class="notice ok" role="status" id="check-result" { "✓ The sample event passes this definition." }
            } @else {
                div class="notice error" role="alert" id="check-result" {
                    p { "✗ The sample event does not pass:" }
                    ul { @for problem in &outcome { li { (problem) } } }
                }
            }
        };
        return Ok(form_page(
            &operator,
            StatusCode::OK,
            title,
            &draft,
            true,
            above,
        ));
    }
    let schema = state
        .app
        .console_create_schema(action, definition, &operator.origin)
        .await?;
    Ok(see_other(&format!(
        "/console/schemas/{}?notice=saved",
        url(schema.action.as_str())
    )))
}

/// `GET /console/schemas/{action}`: the newest version beside the one before, and the form for
/// the next.
pub async fn show(
    State(state): State<AppState>,
    Path(action): Path<String>,
    operator: Operator,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    let versions = state
        .app
        .list_schemas(
            &action,
            PageRequest {
                limit: PAGE_SIZE,
                order: Order::Desc,
                before: None,
                after: None,
            },
        )
        .await?;
    let Some(latest) = versions.items.first() else {
        return Err(ConsoleError::NotFound);
    };
    let pretty = |schema: &ActionSchema| {
        serde_json::to_string_pretty(&schema.definition.to_json()).unwrap_or_default()
    };
    let notice = (query.get("notice") == Some("saved")).then_some("The version was saved.");
    let body = html! {
        (done_notice(notice))
        div class="versions" {
            @for schema in versions.items.iter().take(2) {
                section class="panel" {
                    h2 { "Version " (schema.version) }
                    p class="muted" { "Created " (schema.created_at) }
                    pre class="json" { (pretty(schema)) }
                }
            }
        }
        @if versions.items.len() > 2 {
            p class="muted" { "Older versions: " @for schema in versions.items.iter().skip(2) { (schema.version) " " } }
        }
        h2 { "Edit (saves version " (latest.version + 1) ")" }
        (schema_form(&operator, &Draft::from_schema(latest), false))
    };
    Ok(page(StatusCode::OK, &action, Some(&operator.session), body))
}
