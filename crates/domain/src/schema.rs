//! Action schemas: what a valid event of one action looks like (wire doc §2.4–2.6).
//!
//! A schema version lists the target types the action may have and, optionally, JSON Schemas for
//! the actor's metadata, each target type's metadata and the event's metadata. Versions are
//! numbered 1, 2, … per action and never change once created; submitting a definition equal to
//! the latest version returns that version instead of creating a new one (Python SDK 10.8 docs).
//!
//! Any draft-4 to 2020-12 JSON Schema is stored and echoed as given. Schemas are compiled with
//! remote `$ref` resolution switched off, so a schema can never make the server fetch a URL.
//!
//! `format` is asserted, whatever the draft says is the default, as WorkOS's validator (Ajv with
//! its formats) does: a metadata value declared `"format": "ipv4"` must be an IPv4 address, and
//! so for `email`, `date-time`, `date`, `time`, `duration`, `uri`, `uri-reference`, `uuid`,
//! `hostname`, `ipv6`, `regex`, `json-pointer` and the rest of the drafts' formats. A format the
//! validator does not know is refused when the schema is created (Ajv's strict mode does the
//! same), rather than silently checking nothing.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::Timestamp;
use crate::event::NewEvent;
use crate::limits::{ACTION_MAX_CHARS, NAME_MAX_CHARS, SCHEMA_TARGETS_MAX};
use crate::problem::{FieldProblem, FieldProblems, PathProblem, json_type};

/// A validated action name such as `user.signed_in`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionName(String);

impl ActionName {
    /// # Errors
    ///
    /// A problem naming the `action` field when the name is empty, too long or contains
    /// whitespace or control characters.
    pub fn parse(text: &str) -> Result<Self, FieldProblem> {
        let problem = |message: String| FieldProblem {
            code: "invalid_value",
            field: "action".into(),
            message,
        };
        if text.is_empty() {
            return Err(problem("action must not be empty".into()));
        }
        if text.chars().count() > ACTION_MAX_CHARS {
            return Err(problem(format!(
                "action must be at most {ACTION_MAX_CHARS} characters"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(problem(
                "action must not contain whitespace, control characters or '/'".into(),
            ));
        }
        Ok(ActionName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The body of one schema version, as submitted: target types with optional metadata schemas,
/// an optional actor metadata schema and an optional event metadata schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDefinition {
    targets: Vec<TargetSchema>,
    actor_metadata: Option<Value>,
    metadata: Option<Value>,
}

/// One allowed target type.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSchema {
    pub kind: String,
    pub metadata: Option<Value>,
}

/// One stored, immutable schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSchema {
    pub action: ActionName,
    pub version: u32,
    pub definition: SchemaDefinition,
    pub created_at: Timestamp,
}

impl SchemaDefinition {
    /// Parses a create-schema body (`AuditLogSchemaDto`): `targets` (at least one, each with a
    /// `type` and an optional `metadata` JSON Schema), optional `actor.metadata` and `metadata`.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field: missing or duplicate target types, wrong
    /// types, and JSON Schemas that are not valid JSON Schema.
    pub fn parse(value: &Value) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = FieldProblems::default();
        let Value::Object(body) = value else {
            problems.push(
                "invalid_type",
                "body",
                format!("the schema must be a JSON object, got {}", json_type(value)),
            );
            return Err(problems.into_vec());
        };

        let mut targets = Vec::new();
        match body.get("targets") {
            None | Some(Value::Null) => problems.push("required", "targets", "targets is required"),
            Some(Value::Array(items)) if items.is_empty() => problems.push(
                "too_few",
                "targets",
                "targets must list at least one target type",
            ),
            Some(Value::Array(items)) if items.len() > SCHEMA_TARGETS_MAX => problems.push(
                "too_many",
                "targets",
                format!("at most {SCHEMA_TARGETS_MAX} target types are allowed"),
            ),
            Some(Value::Array(items)) => {
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let field = format!("targets[{i}]");
                    let Value::Object(target) = item else {
                        problems.push(
                            "invalid_type",
                            &field,
                            format!("each target must be an object, got {}", json_type(item)),
                        );
                        continue;
                    };
                    let kind = match target.get("type") {
                        Some(Value::String(kind))
                            if !kind.is_empty() && kind.chars().count() <= NAME_MAX_CHARS =>
                        {
                            kind.clone()
                        }
                        Some(Value::String(_)) => {
                            problems.push(
                                "invalid_value",
                                format!("{field}.type"),
                                format!("type must be 1 to {NAME_MAX_CHARS} characters"),
                            );
                            continue;
                        }
                        None | Some(Value::Null) => {
                            problems.push("required", format!("{field}.type"), "type is required");
                            continue;
                        }
                        Some(other) => {
                            problems.push(
                                "invalid_type",
                                format!("{field}.type"),
                                format!("type must be a string, got {}", json_type(other)),
                            );
                            continue;
                        }
                    };
                    if !seen.insert(kind.clone()) {
                        problems.push(
                            "duplicate",
                            format!("{field}.type"),
                            format!("target type '{kind}' is listed twice"),
                        );
                    }
                    let metadata = json_schema(
                        target.get("metadata"),
                        &format!("{field}.metadata"),
                        &mut problems,
                    );
                    targets.push(TargetSchema { kind, metadata });
                }
            }
            Some(other) => problems.push(
                "invalid_type",
                "targets",
                format!("targets must be an array, got {}", json_type(other)),
            ),
        }

        let actor_metadata = match body.get("actor") {
            None | Some(Value::Null) => None,
            Some(Value::Object(actor)) => {
                json_schema(actor.get("metadata"), "actor.metadata", &mut problems)
            }
            Some(other) => {
                problems.push(
                    "invalid_type",
                    "actor",
                    format!("actor must be an object, got {}", json_type(other)),
                );
                None
            }
        };
        let metadata = json_schema(body.get("metadata"), "metadata", &mut problems);

        if problems.is_empty() {
            Ok(SchemaDefinition {
                targets,
                actor_metadata,
                metadata,
            })
        } else {
            Err(problems.into_vec())
        }
    }

    pub fn targets(&self) -> &[TargetSchema] {
        &self.targets
    }

    pub fn actor_metadata(&self) -> Option<&Value> {
        self.actor_metadata.as_ref()
    }

    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    /// The definition as JSON, the shape it was submitted in. This is what the store keeps and
    /// what responses echo.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let mut target = Map::new();
                target.insert("type".into(), json!(t.kind));
                if let Some(metadata) = &t.metadata {
                    target.insert("metadata".into(), metadata.clone());
                }
                Value::Object(target)
            })
            .collect();
        body.insert("targets".into(), Value::Array(targets));
        if let Some(actor) = &self.actor_metadata {
            body.insert("actor".into(), json!({ "metadata": actor }));
        }
        if let Some(metadata) = &self.metadata {
            body.insert("metadata".into(), metadata.clone());
        }
        Value::Object(body)
    }
}

/// Draft URIs the validator knows. A schema naming any other `$schema` is refused rather than
/// sent to a resolver.
const KNOWN_DRAFTS: &[&str] = &[
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
];

/// Accepts an optional JSON Schema object, recording a problem if it is not one.
fn json_schema(value: Option<&Value>, field: &str, problems: &mut FieldProblems) -> Option<Value> {
    let schema = match value {
        None | Some(Value::Null) => return None,
        Some(schema @ Value::Object(_)) => schema,
        Some(other) => {
            problems.push(
                "invalid_schema",
                field,
                format!(
                    "{field} must be a JSON Schema object, got {}",
                    json_type(other)
                ),
            );
            return None;
        }
    };
    match compile(schema, Formats::KnownOnly) {
        Ok(_) => Some(schema.clone()),
        Err(message) => {
            problems.push(
                "invalid_schema",
                field,
                format!("{field} is not a valid JSON Schema: {message}"),
            );
            None
        }
    }
}

/// How a schema's `format`s are treated when it is compiled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Formats {
    /// A new schema: an unknown format is an error, so it never silently checks nothing.
    KnownOnly,
    /// A stored schema (accepted by an earlier release): unknown formats are left unchecked
    /// rather than making every event of its action fail.
    IgnoreUnknown,
}

fn compile(schema: &Value, formats: Formats) -> Result<jsonschema::Validator, String> {
    if let Some(declared) = schema.get("$schema") {
        let known = declared
            .as_str()
            .map(|uri| uri.trim_end_matches('#'))
            .is_some_and(|uri| KNOWN_DRAFTS.contains(&uri));
        if !known {
            return Err(format!(
                "unsupported $schema {declared}; use draft-04, -06, -07, 2019-09 or 2020-12"
            ));
        }
    }
    // The meta-schema check and the compiler both document panics for schemas they cannot
    // classify; a schema is client input, so a panic must become a refusal.
    std::panic::catch_unwind(|| {
        jsonschema::meta::validate(schema).map_err(|e| e.to_string())?;
        jsonschema::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(formats == Formats::IgnoreUnknown)
            .build(schema)
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("the schema could not be compiled".into()))
}

/// A schema version compiled for validating events.
pub struct CompiledSchema {
    action: String,
    target_kinds: Vec<String>,
    actor: Option<jsonschema::Validator>,
    targets: Vec<(String, jsonschema::Validator)>,
    metadata: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("action", &self.action)
            .field("targets", &self.target_kinds)
            .finish()
    }
}

impl CompiledSchema {
    /// # Errors
    ///
    /// A message if a stored JSON Schema no longer compiles (they were checked when created, so
    /// this means the stored data was changed behind Trailmark's back).
    pub fn compile(schema: &ActionSchema) -> Result<Self, String> {
        let definition = &schema.definition;
        let actor = definition
            .actor_metadata
            .as_ref()
            .map(|schema| compile(schema, Formats::IgnoreUnknown))
            .transpose()?;
        let metadata = definition
            .metadata
            .as_ref()
            .map(|schema| compile(schema, Formats::IgnoreUnknown))
            .transpose()?;
        let mut targets = Vec::new();
        for target in &definition.targets {
            if let Some(schema) = &target.metadata {
                targets.push((
                    target.kind.clone(),
                    compile(schema, Formats::IgnoreUnknown)?,
                ));
            }
        }
        Ok(CompiledSchema {
            action: schema.action.as_str().to_owned(),
            target_kinds: definition.targets.iter().map(|t| t.kind.clone()).collect(),
            actor,
            targets,
            metadata,
        })
    }

    /// Every way `event` breaks this schema, as JSON pointers into the event. Absent metadata is
    /// validated as `{}`, so a schema's `required` keys are enforced.
    pub fn check(&self, event: &NewEvent) -> Vec<PathProblem> {
        let mut problems = Vec::new();
        let empty = Value::Object(Map::new());
        if let Some(validator) = &self.actor {
            let metadata = event
                .actor()
                .metadata
                .as_ref()
                .map_or(empty.clone(), |m| m.to_json());
            collect(validator, &metadata, "/actor/metadata", &mut problems);
        }
        for (i, target) in event.targets().iter().enumerate() {
            if !self.target_kinds.contains(&target.kind) {
                problems.push(PathProblem {
                    instance_path: format!("/targets/{i}/type"),
                    message: format!(
                        "target type '{}' is not allowed for action '{}'; allowed: {}",
                        target.kind,
                        self.action,
                        self.target_kinds.join(", ")
                    ),
                });
                continue;
            }
            if let Some((_, validator)) = self.targets.iter().find(|(kind, _)| *kind == target.kind)
            {
                let metadata = target
                    .metadata
                    .as_ref()
                    .map_or(empty.clone(), |m| m.to_json());
                collect(
                    validator,
                    &metadata,
                    &format!("/targets/{i}/metadata"),
                    &mut problems,
                );
            }
        }
        if let Some(validator) = &self.metadata {
            let metadata = event.metadata().map_or(empty.clone(), |m| m.to_json());
            collect(validator, &metadata, "/metadata", &mut problems);
        }
        problems
    }
}

fn collect(
    validator: &jsonschema::Validator,
    instance: &Value,
    prefix: &str,
    problems: &mut Vec<PathProblem>,
) {
    for error in validator.iter_errors(instance) {
        problems.push(PathProblem {
            instance_path: format!("{prefix}{}", error.instance_path()),
            message: error.to_string(),
        });
    }
}

/// The problem reported when an event names a version its action does not have.
pub fn unknown_version(action: &str, version: u32, latest: u32) -> PathProblem {
    PathProblem {
        instance_path: "/version".into(),
        message: format!(
            "action '{action}' has schema versions 1 to {latest}; version {version} does not exist"
        ),
    }
}

/// The problem reported under `--require-schemas` for an action without a schema.
pub fn missing_schema(action: &str) -> PathProblem {
    PathProblem {
        instance_path: "/action".into(),
        message: format!("no schema is defined for action '{action}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(definition: Value) -> CompiledSchema {
        let definition = SchemaDefinition::parse(&definition).expect("valid schema");
        CompiledSchema::compile(&ActionSchema {
            action: ActionName::parse("user.signed_in").expect("valid"),
            version: 1,
            definition,
            created_at: Timestamp::from_unix_millis(0),
        })
        .expect("compiles")
    }

    fn event(targets: Value, metadata: Value) -> NewEvent {
        NewEvent::parse(&json!({
            "action": "user.signed_in",
            "occurred_at": "2026-08-01T10:00:00Z",
            "actor": {"id": "u1", "type": "user", "metadata": {"role": "admin"}},
            "targets": targets,
            "context": {"location": "1.2.3.4"},
            "metadata": metadata,
        }))
        .expect("valid event")
    }

    #[test]
    fn node_sdk_schema_round_trips_and_validates() {
        let body = json!({
            "targets": [{"type": "team", "metadata": {"type": "object", "properties": {"plan": {"type": "string"}}}}],
            "actor": {"metadata": {"type": "object", "properties": {}}},
            "metadata": {"type": "object", "properties": {"count": {"type": "number"}}, "required": ["count"]}
        });
        assert_eq!(
            SchemaDefinition::parse(&body).expect("valid").to_json(),
            body
        );
        let compiled = schema(body);
        assert!(
            compiled
                .check(&event(
                    json!([{"id": "t", "type": "team", "metadata": {"plan": "pro"}}]),
                    json!({"count": 1})
                ))
                .is_empty()
        );

        let problems = compiled.check(&event(
            json!([{"id": "t", "type": "invoice"}, {"id": "t2", "type": "team", "metadata": {"plan": 5}}]),
            json!(null),
        ));
        let paths: Vec<_> = problems.iter().map(|p| p.instance_path.as_str()).collect();
        assert_eq!(
            paths,
            ["/targets/0/type", "/targets/1/metadata/plan", "/metadata"]
        );
    }

    #[test]
    fn refuses_invalid_definitions_naming_the_field() {
        let fields = |body: Value| -> Vec<String> {
            SchemaDefinition::parse(&body)
                .unwrap_err()
                .into_iter()
                .map(|p| p.field)
                .collect()
        };
        assert_eq!(fields(json!({"targets": []})), ["targets"]);
        assert_eq!(fields(json!({})), ["targets"]);
        assert_eq!(
            fields(json!({"targets": [{"type": "a"}, {"type": "a"}]})),
            ["targets[1].type"]
        );
        assert_eq!(
            fields(json!({"targets": [{"type": "a", "metadata": {"type": "strin"}}]})),
            ["targets[0].metadata"]
        );
        assert_eq!(
            fields(
                json!({"targets": [{"type": "a"}], "metadata": {"$schema": "https://evil.test/s"}})
            ),
            ["metadata"]
        );
        assert_eq!(
            fields(json!({"targets": [{"type": "a"}], "actor": {"metadata": {"pattern": "("}}})),
            ["actor.metadata"]
        );
    }

    /// Issue 7: formats are asserted, as WorkOS's Ajv asserts them, in every draft.
    #[test]
    fn formats_are_asserted_in_every_draft() {
        let formats = [
            ("ipv4", json!("10.0.0.1"), json!("not-an-ip")),
            ("ipv4", json!("192.0.2.8"), json!("256.1.1.1")),
            ("ipv6", json!("2001:db8::1"), json!("2001:db8:::1")),
            ("email", json!("jon@example.test"), json!("jon at example")),
            (
                "date-time",
                json!("2026-08-01T10:00:00Z"),
                json!("2026-08-01 10:00"),
            ),
            ("date", json!("2026-08-01"), json!("2026-13-01")),
            (
                "uri",
                json!("https://example.test/a?b=c"),
                json!("not a uri"),
            ),
            (
                "uuid",
                json!("0f8fad5b-d9cb-469f-a165-70867728950e"),
                json!("0f8fad5b-d9cb-469f"),
            ),
            ("hostname", json!("api.example.test"), json!("-bad-.host_")),
        ];
        for draft in [
            None,
            Some("http://json-schema.org/draft-07/schema#"),
            Some("https://json-schema.org/draft/2020-12/schema"),
        ] {
            for (format, good, bad) in &formats {
                // Drafts before 2019-09 define no uuid format.
                if *format == "uuid" && draft.is_some_and(|d| d.contains("draft-07")) {
                    continue;
                }
                let mut metadata = json!({"type": "object", "properties": {"v": {"type": "string", "format": format}}});
                if let Some(draft) = draft {
                    metadata["$schema"] = json!(draft);
                }
                let compiled = schema(json!({"targets": [{"type": "team"}], "metadata": metadata}));
                let team = json!([{"id": "t", "type": "team"}]);
                assert!(
                    compiled
                        .check(&event(team.clone(), json!({"v": good})))
                        .is_empty(),
                    "{format} {good} under {draft:?}"
                );
                let problems = compiled.check(&event(team, json!({"v": bad})));
                assert_eq!(
                    problems
                        .iter()
                        .map(|p| p.instance_path.as_str())
                        .collect::<Vec<_>>(),
                    ["/metadata/v"],
                    "{format} {bad} under {draft:?}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_format_is_refused_on_creation_but_a_stored_one_still_compiles() {
        let body = json!({"targets": [{"type": "a"}],
                          "metadata": {"properties": {"v": {"format": "no-such-format"}}}});
        let problems = SchemaDefinition::parse(&body).unwrap_err();
        assert_eq!(problems[0].field, "metadata");
        assert!(
            problems[0].message.contains("no-such-format"),
            "{problems:?}"
        );
        // A schema stored before formats were checked keeps working for its known formats.
        let stored = ActionSchema {
            action: ActionName::parse("a.b").expect("valid"),
            version: 1,
            definition: SchemaDefinition {
                targets: vec![TargetSchema {
                    kind: "a".into(),
                    metadata: None,
                }],
                actor_metadata: None,
                metadata: Some(json!({"properties": {"v": {"format": "no-such-format"},
                                                     "ip": {"format": "ipv4"}}})),
            },
            created_at: Timestamp::from_unix_millis(0),
        };
        let compiled = CompiledSchema::compile(&stored).expect("compiles");
        let base = |metadata: Value| {
            NewEvent::parse(&json!({
                "action": "a.b", "occurred_at": "2026-08-01T10:00:00Z",
                "actor": {"id": "u", "type": "user"}, "targets": [{"id": "x", "type": "a"}],
                "context": {"location": "1.2.3.4"}, "metadata": metadata,
            }))
            .expect("valid event")
        };
        assert!(compiled.check(&base(json!({"v": "anything"}))).is_empty());
        assert_eq!(compiled.check(&base(json!({"ip": "nope"}))).len(), 1);
    }

    #[test]
    fn action_names_are_checked() {
        assert!(ActionName::parse("user.signed_in").is_ok());
        assert!(ActionName::parse("").is_err());
        assert!(ActionName::parse("has space").is_err());
        assert!(ActionName::parse(&"a".repeat(201)).is_err());
    }
}
