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

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<FieldProblem> {
        self.0
    }
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
