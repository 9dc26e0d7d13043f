//! The two ways input can be wrong, mirroring the two error shapes WorkOS returns (wire doc §2.1):
//!
//! - a *malformed* request (a required field missing, a wrong type, a string too long): HTTP 422
//!   `{"message":"Validation failed.","errors":[{"code":"required","field":"event.action"}]}`;
//! - an *invalid* event (metadata limits, the action's schema): HTTP 400
//!   `{"message":"Invalid Audit Log event.","code":"invalid_audit_log_event",
//!     "errors":[{"instancePath":"/targets/0/type"}]}`, where `instancePath` is an Ajv-style JSON
//!   pointer into the event.
//!
//! Validation never stops at the first problem: every problem is collected so one response
//! names every bad field.

use crate::json::{Json, unique_members};

/// One problem with the request's shape, named by its dotted field path (`event.actor.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// A short machine-readable reason: `required`, `invalid_type`, `too_long`, `too_many`,
    /// `empty`, `invalid_value` or `invalid_format`. Node's `UnprocessableEntityException` lists
    /// these codes in its message.
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

/// One problem with an event's content, named by a JSON pointer into the event (`/metadata/x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathProblem {
    pub instance_path: String,
    pub message: String,
}

/// Everything wrong with one piece of input, in one of the two shapes above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problems {
    #[error("validation failed: {}", describe_fields(.0))]
    Malformed(Vec<FieldProblem>),
    #[error("invalid audit log event: {}", describe_paths(.0))]
    Invalid(Vec<PathProblem>),
}

fn describe_fields(problems: &[FieldProblem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    parts.join("; ")
}

fn describe_paths(problems: &[PathProblem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.instance_path, p.message))
        .collect();
    parts.join("; ")
}

/// Collects problems while walking a JSON document.
#[derive(Debug, Default)]
pub(crate) struct FieldProblems(Vec<FieldProblem>);

impl FieldProblems {
    pub(crate) fn push(
        &mut self,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(FieldProblem {
            code,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = FieldProblem>) {
        self.0.extend(problems);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<FieldProblem> {
        self.0
    }
}

/// The NUL character, which no stored text may hold: PostgreSQL's `text` and `jsonb` cannot
/// store it, and SQLite's text functions stop at it, so refusing it everywhere keeps both
/// backends answering the same.
const NUL: char = '\0';

/// A problem for every string and object key in `value` that holds a NUL character (U+0000),
/// each named by its field path under `root` (`event.actor.name`, `events[2].targets[0].id`,
/// `config.headers.X-Tenant`; `root` may be empty). Strings are where every text that reaches
/// storage enters, so this one check keeps NUL out of the database on either backend.
pub fn nul_problems(value: &Json<'_>, root: &str) -> Vec<FieldProblem> {
    // Every ingested event passes here and almost none holds NUL: look first, and build field
    // paths only for a value that has one.
    if !value.holds_nul() {
        return Vec::new();
    }
    let mut problems = FieldProblems::default();
    walk_for_nul(value, root, &mut problems);
    problems.into_vec()
}

/// The problem for a text named `field` (a query parameter, a path segment) if it holds NUL.
pub fn nul_problem(text: &str, field: &str) -> Option<FieldProblem> {
    text.contains(NUL).then(|| FieldProblem {
        code: "invalid_value",
        field: field.to_owned(),
        message: format!("{field} must not contain the NUL character (\\u0000)"),
    })
}

fn walk_for_nul(value: &Json<'_>, path: &str, problems: &mut FieldProblems) {
    match value {
        Json::String(text) => {
            if let Some(problem) = nul_problem(text, display_path(path)) {
                problems.0.push(problem);
            }
        }
        Json::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_for_nul(item, &format!("{path}[{index}]"), problems);
            }
        }
        Json::Object(fields) => {
            // As a `Value` would hold them: a name sent twice is checked once, its last value.
            for (key, item) in unique_members(fields) {
                let shown = key.replace(NUL, "\\u0000");
                let field = if path.is_empty() {
                    shown
                } else {
                    format!("{path}.{shown}")
                };
                if key.contains(NUL) {
                    problems.push(
                        "invalid_value",
                        &field,
                        "field names must not contain the NUL character (\\u0000)",
                    );
                }
                walk_for_nul(item, &field, problems);
            }
        }
        _ => {}
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

/// The JSON type name used in messages ("expected a string, got a number").
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Escapes one JSON-pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`).
pub(crate) fn pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_nul_in_strings_and_keys_is_named_by_its_field() {
        let body = json!({
            "organization_id": "org_1",
            "event": {"action": "a\0b", "actor": {"id": "u", "name": "\0"},
                      "targets": [{"id": "t"}, {"id": "x\0"}],
                      "metadata": {"k\0": "v", "ok": ["fine", "bad\0"]}},
        });
        let fields: Vec<String> = nul_problems(&Json::from(&body), "")
            .into_iter()
            .map(|problem| problem.field)
            .collect();
        assert_eq!(
            fields,
            [
                "event.action",
                "event.actor.name",
                "event.metadata.k\\u0000",
                "event.metadata.ok[1]",
                "event.targets[1].id",
            ]
        );
        assert_eq!(nul_problems(&Json::from(&json!("\0")), "")[0].field, "body");
        assert!(
            nul_problems(&Json::from(&json!({"a": ["b", 1, null, {"c": "d"}]})), "x").is_empty()
        );
        assert_eq!(
            nul_problem("a\0", "q").map(|p| p.message),
            Some("q must not contain the NUL character (\\u0000)".into())
        );
        assert!(nul_problem("\\u0000 as text", "q").is_none());
    }
}
