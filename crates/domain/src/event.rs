//! An audit event as a client submits it: `actor` did `action` to `targets`, in `context`, with
//! `metadata` (wire doc §2.1, WorkOS `AuditLogEventIngestionDto`).
//!
//! [`NewEvent::parse`] checks the shape (required fields, types, lengths, no NUL character in any
//! text: a *malformed* request, HTTP 422) and then the metadata limits (an *invalid* event, HTTP
//! 400). Checking against the action's schema is a second, separate step
//! ([`crate::schema::CompiledSchema::check`]) because it needs stored state. Unknown keys are
//! ignored, as WorkOS ignores them.

use std::fmt::Display;

use serde_json::{Map, Value, json};

use crate::json::{Json, JsonText};

use crate::Timestamp;
use crate::limits::{
    ACTION_MAX_CHARS, LOCATION_MAX_CHARS, NAME_MAX_CHARS, TARGETS_MAX, USER_AGENT_MAX_CHARS,
};
use crate::metadata::Metadata;
use crate::problem::{FieldProblem, FieldProblems, PathProblem, Problems, nul_problems};

/// A validated event, not yet stored (it has no id, sequence or receipt time).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    action: String,
    occurred_at: Timestamp,
    version: Option<u32>,
    actor: Actor,
    targets: Vec<Target>,
    context: Context,
    metadata: Option<Metadata>,
}

/// Who did it. `kind` is the wire's `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub metadata: Option<Metadata>,
}

/// What it was done to. `kind` is the wire's `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub metadata: Option<Metadata>,
}

/// Where it was done from.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub location: String,
    pub user_agent: Option<String>,
}

impl NewEvent {
    /// Parses the `event` object of a create-event request. Field names in problems are
    /// prefixed with `event.`, as WorkOS names them (`event.actor.id`).
    ///
    /// # Errors
    ///
    /// [`Problems::Malformed`] listing every missing, mistyped or oversized field; if the shape is
    /// right, [`Problems::Invalid`] listing every metadata limit broken.
    pub fn parse(value: &Value) -> Result<Self, Problems> {
        Self::read(&Json::from(value), "event")
    }

    /// Like [`NewEvent::parse`], from a [`Json`] read from the request's text, naming fields
    /// under `prefix` (`event`, or `events[3]` in a batch).
    ///
    /// # Errors
    ///
    /// As [`NewEvent::parse`].
    pub fn read(value: &Json<'_>, prefix: &str) -> Result<Self, Problems> {
        Self::read_with_nul_problems(value, prefix, nul_problems(value, prefix))
    }

    /// [`NewEvent::read`] of `value`, which must be a part of the request body `text` (which
    /// tells whether any of its strings can hold NUL without a walk of them all; a value from
    /// anywhere else would not be checked for NUL).
    ///
    /// # Errors
    ///
    /// As [`NewEvent::parse`].
    pub fn read_in<'a>(
        text: &JsonText<'a>,
        value: &Json<'a>,
        prefix: &str,
    ) -> Result<Self, Problems> {
        Self::read_with_nul_problems(value, prefix, text.nul_problems(value, prefix))
    }

    /// Reads `value`, whose texts holding NUL are `nul` (named under `prefix`).
    fn read_with_nul_problems(
        value: &Json<'_>,
        prefix: &str,
        nul: Vec<FieldProblem>,
    ) -> Result<Self, Problems> {
        let mut shape = FieldProblems::default();
        // No text of an event may hold NUL, whichever way it arrived (an API body, a batch
        // item, an event Trailmark writes itself), so both storage backends keep it the same.
        shape.extend(nul);
        let mut content = Vec::new();
        let parsed = Self::walk(value, prefix, &mut shape, &mut content);
        if !shape.is_empty() {
            return Err(Problems::Malformed(shape.into_vec()));
        }
        match parsed {
            Some(event) if content.is_empty() => Ok(event),
            _ => Err(Problems::Invalid(content)),
        }
    }

    /// Reads every field, recording every problem, before giving up on any: one response must
    /// name every bad field.
    fn walk(
        value: &Json<'_>,
        prefix: &str,
        shape: &mut FieldProblems,
        content: &mut Vec<PathProblem>,
    ) -> Option<Self> {
        let root = FieldName::Root(prefix);
        let event = object(value, &root, shape)?;
        let field = |name: &'static str| FieldName::Member(&root, name);

        let action = text(event, &root, "action", ACTION_MAX_CHARS, shape);
        let occurred_at = match event.get("occurred_at") {
            None | Some(Json::Null) => {
                shape.push(
                    "required",
                    field("occurred_at").to_string(),
                    "occurred_at is required",
                );
                None
            }
            Some(Json::String(raw)) => Timestamp::parse(raw)
                .map_err(|error| {
                    shape.push(
                        "invalid_date",
                        field("occurred_at").to_string(),
                        format!("occurred_at is not an ISO-8601 date-time: {error}"),
                    )
                })
                .ok(),
            Some(other) => {
                shape.push(
                    "invalid_type",
                    field("occurred_at").to_string(),
                    format!("occurred_at must be a string, got {}", other.type_name()),
                );
                None
            }
        };
        // `Some(None)`: absent; `Some(Some(v))`: valid; `None`: a problem was recorded.
        let version = match event.get("version") {
            None | Some(Json::Null) => Some(None),
            Some(Json::Number(n)) => {
                let parsed = n
                    .as_u64()
                    .filter(|v| *v >= 1)
                    .and_then(|v| u32::try_from(v).ok());
                if parsed.is_none() {
                    shape.push(
                        "invalid_value",
                        field("version").to_string(),
                        "version must be a positive integer",
                    );
                }
                parsed.map(Some)
            }
            Some(other) => {
                shape.push(
                    "invalid_type",
                    field("version").to_string(),
                    format!(
                        "version must be a positive integer, got {}",
                        other.type_name()
                    ),
                );
                None
            }
        };

        let actor_field = field("actor");
        let actor = object(
            event.get("actor").unwrap_or(&Json::Null),
            &actor_field,
            shape,
        )
        .and_then(|actor| Party::walk(actor, &actor_field, &"/actor", shape, content));

        let targets_field = field("targets");
        let targets = match event.get("targets") {
            None | Some(Json::Null) => {
                shape.push("required", targets_field.to_string(), "targets is required");
                None
            }
            Some(Json::Array(items)) => {
                if items.len() > TARGETS_MAX {
                    shape.push(
                        "too_many",
                        targets_field.to_string(),
                        format!(
                            "at most {TARGETS_MAX} targets are allowed, got {}",
                            items.len()
                        ),
                    );
                }
                let parsed: Vec<Option<Party>> = items
                    .iter()
                    .take(TARGETS_MAX)
                    .enumerate()
                    .map(|(i, item)| {
                        let path = FieldName::Item(&targets_field, i);
                        object(item, &path, shape).and_then(|target| {
                            let pointer = Joined(&"/targets/", &i);
                            Party::walk(target, &path, &pointer, shape, content)
                        })
                    })
                    .collect();
                parsed.into_iter().collect::<Option<Vec<Party>>>()
            }
            Some(other) => {
                shape.push(
                    "invalid_type",
                    targets_field.to_string(),
                    format!("targets must be an array, got {}", other.type_name()),
                );
                None
            }
        };

        let context_field = field("context");
        let context = object(
            event.get("context").unwrap_or(&Json::Null),
            &context_field,
            shape,
        )
        .and_then(|context| {
            // Required, but may be empty, as WorkOS accepts it: the WorkOS tutorial's middleware
            // sends `req.headers['x-forwarded-for'] ?? ''`, which is empty without a proxy.
            let location = required_text(
                context,
                &context_field,
                "location",
                LOCATION_MAX_CHARS,
                shape,
            );
            // Node SDKs before 7 sent `userAgent`; accept both spellings.
            let user_agent_key = if context.get("user_agent").is_some() {
                "user_agent"
            } else {
                "userAgent"
            };
            let user_agent = optional_text(
                context.get(user_agent_key),
                &FieldName::Member(&context_field, "user_agent"),
                USER_AGENT_MAX_CHARS,
                shape,
            );
            Some(Context {
                location: location?,
                user_agent: user_agent.ok()?,
            })
        });

        let metadata = optional_metadata(event.get("metadata"), &"/metadata", content);

        let actor = actor?;
        Some(NewEvent {
            action: action?,
            occurred_at: occurred_at?,
            version: version?,
            actor: Actor {
                id: actor.id,
                kind: actor.kind,
                name: actor.name,
                metadata: actor.metadata,
            },
            targets: targets?
                .into_iter()
                .map(|t| Target {
                    id: t.id,
                    kind: t.kind,
                    name: t.name,
                    metadata: t.metadata,
                })
                .collect(),
            context: context?,
            metadata: metadata?,
        })
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn occurred_at(&self) -> Timestamp {
        self.occurred_at
    }

    /// The schema version the client named, if any.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// The text free-text search looks in: the action, actor and target ids and names, the
    /// location and every metadata value, one per line.
    pub fn search_text(&self) -> String {
        let mut parts: Vec<&str> = vec![&self.action, &self.actor.id];
        parts.extend(self.actor.name.as_deref());
        parts.push(&self.context.location);
        for target in &self.targets {
            parts.push(&target.id);
            parts.extend(target.name.as_deref());
        }
        let mut text = parts.join("\n");
        let metadata = std::iter::once(self.metadata.as_ref())
            .chain(std::iter::once(self.actor.metadata.as_ref()))
            .chain(self.targets.iter().map(|t| t.metadata.as_ref()))
            .flatten();
        for map in metadata {
            for value in map.as_map().values() {
                text.push('\n');
                match value {
                    Value::String(s) => text.push_str(s),
                    other => text.push_str(&other.to_string()),
                }
            }
        }
        text
    }

    /// The event's normalized JSON: the submitted fields in WorkOS's snake_case names, with the
    /// timestamp in the one output form and absent optional fields left out. It is what the
    /// store keeps, and (with the organization and the idempotency key) what identifies a
    /// request for idempotency, so two spellings of one instant are one event.
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// [`NewEvent::to_json`], moving the event's texts into the JSON instead of copying them.
    pub fn into_json(self) -> Value {
        let mut event = Map::new();
        event.insert("action".into(), Value::String(self.action));
        event.insert(
            "occurred_at".into(),
            Value::String(self.occurred_at.to_string()),
        );
        if let Some(version) = self.version {
            event.insert("version".into(), json!(version));
        }
        let actor = self.actor;
        event.insert(
            "actor".into(),
            party_json(actor.id, actor.kind, actor.name, actor.metadata),
        );
        event.insert(
            "targets".into(),
            Value::Array(
                self.targets
                    .into_iter()
                    .map(|t| party_json(t.id, t.kind, t.name, t.metadata))
                    .collect(),
            ),
        );
        let mut context = Map::new();
        context.insert("location".into(), Value::String(self.context.location));
        if let Some(user_agent) = self.context.user_agent {
            context.insert("user_agent".into(), Value::String(user_agent));
        }
        event.insert("context".into(), Value::Object(context));
        if let Some(metadata) = self.metadata {
            event.insert("metadata".into(), metadata.into_json());
        }
        Value::Object(event)
    }
}

fn party_json(id: String, kind: String, name: Option<String>, metadata: Option<Metadata>) -> Value {
    let mut party = Map::new();
    party.insert("id".into(), Value::String(id));
    party.insert("type".into(), Value::String(kind));
    if let Some(name) = name {
        party.insert("name".into(), Value::String(name));
    }
    if let Some(metadata) = metadata {
        party.insert("metadata".into(), metadata.into_json());
    }
    Value::Object(party)
}

/// The fields actors and targets share.
struct Party {
    id: String,
    kind: String,
    name: Option<String>,
    metadata: Option<Metadata>,
}

impl Party {
    fn walk(
        object: &Json<'_>,
        path: &FieldName<'_>,
        pointer: &dyn Display,
        shape: &mut FieldProblems,
        content: &mut Vec<PathProblem>,
    ) -> Option<Self> {
        let id = text(object, path, "id", NAME_MAX_CHARS, shape);
        let kind = text(object, path, "type", NAME_MAX_CHARS, shape);
        let name = optional_text(
            object.get("name"),
            &FieldName::Member(path, "name"),
            NAME_MAX_CHARS,
            shape,
        );
        let metadata = optional_metadata(
            object.get("metadata"),
            &Joined(pointer, &"/metadata"),
            content,
        );
        Some(Party {
            id: id?,
            kind: kind?,
            name: name.ok()?,
            metadata: metadata?,
        })
    }
}

/// `Some(None)` when absent, `Some(Some(_))` when within limits, `None` (with problems recorded)
/// when not.
fn optional_metadata(
    value: Option<&Json<'_>>,
    pointer: &dyn Display,
    content: &mut Vec<PathProblem>,
) -> Option<Option<Metadata>> {
    match value {
        None | Some(Json::Null) => Some(None),
        Some(value) => Metadata::check(value, pointer, content).map(Some),
    }
}

/// `value` if it is an object, else a problem recorded.
fn object<'v, 'a>(
    value: &'v Json<'a>,
    field: &FieldName<'_>,
    shape: &mut FieldProblems,
) -> Option<&'v Json<'a>> {
    match value {
        Json::Object(_) => Some(value),
        Json::Null => {
            shape.push(
                "required",
                field.to_string(),
                format!("{} is required", field.last()),
            );
            None
        }
        other => {
            shape.push(
                "invalid_type",
                field.to_string(),
                format!(
                    "{} must be an object, got {}",
                    field.last(),
                    other.type_name()
                ),
            );
            None
        }
    }
}

/// A required, non-empty string of at most `max` characters: member `key` of `object`, which is
/// the field `parent`.
fn text(
    object: &Json<'_>,
    parent: &FieldName<'_>,
    key: &'static str,
    max: usize,
    shape: &mut FieldProblems,
) -> Option<String> {
    let field = FieldName::Member(parent, key);
    match object.get(key) {
        None | Some(Json::Null) => {
            shape.push("required", field.to_string(), format!("{key} is required"));
            None
        }
        Some(Json::String(s)) if s.is_empty() => {
            shape.push(
                "empty",
                field.to_string(),
                format!("{key} must not be empty"),
            );
            None
        }
        value => optional_text(value, &field, max, shape).ok().flatten(),
    }
}

/// Like [`text`], but an empty string is a value.
fn required_text(
    object: &Json<'_>,
    parent: &FieldName<'_>,
    key: &'static str,
    max: usize,
    shape: &mut FieldProblems,
) -> Option<String> {
    let field = FieldName::Member(parent, key);
    match object.get(key) {
        None | Some(Json::Null) => {
            shape.push("required", field.to_string(), format!("{key} is required"));
            None
        }
        value => optional_text(value, &field, max, shape).ok().flatten(),
    }
}

/// `Ok(None)` when absent, `Ok(Some(_))` for a string within `max` characters, `Err(())` (with
/// the problem recorded) otherwise.
fn optional_text(
    value: Option<&Json<'_>>,
    field: &FieldName<'_>,
    max: usize,
    shape: &mut FieldProblems,
) -> Result<Option<String>, ()> {
    let key = || field.last();
    match value {
        None | Some(Json::Null) => Ok(None),
        // No text has more characters than bytes, so most are within `max` without counting.
        Some(Json::String(s)) if s.len() <= max => Ok(Some(s.as_ref().to_owned())),
        Some(Json::String(s)) => {
            let chars = s.chars().count();
            if chars > max {
                shape.push(
                    "too_long",
                    field.to_string(),
                    format!("{} must be at most {max} characters, got {chars}", key()),
                );
                Err(())
            } else {
                Ok(Some(s.as_ref().to_owned()))
            }
        }
        Some(other) => {
            shape.push(
                "invalid_type",
                field.to_string(),
                format!("{} must be a string, got {}", key(), other.type_name()),
            );
            Err(())
        }
    }
}

/// A field's name as problems give it (`events[3].targets[0].id`), written out only for a
/// problem: an event has a few dozen fields, and almost never a problem.
#[derive(Clone, Copy)]
enum FieldName<'a> {
    /// The event itself: `event`, or `events[3]` in a batch.
    Root(&'a str),
    Member(&'a FieldName<'a>, &'a str),
    Item(&'a FieldName<'a>, usize),
}

impl FieldName<'_> {
    /// The field as messages name it: its last segment (`id`, `targets[0]`, `events[3]`).
    fn last(&self) -> String {
        match self {
            FieldName::Root(root) => root.rsplit('.').next().unwrap_or(root).to_owned(),
            FieldName::Member(_, name) => (*name).to_owned(),
            FieldName::Item(list, index) => format!("{}[{index}]", list.last()),
        }
    }
}

impl Display for FieldName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldName::Root(root) => f.write_str(root),
            FieldName::Member(parent, name) => write!(f, "{parent}.{name}"),
            FieldName::Item(list, index) => write!(f, "{list}[{index}]"),
        }
    }
}

/// Two parts of a JSON pointer, joined only when a problem shows it.
struct Joined<'a>(&'a dyn Display, &'a dyn Display);

impl Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "action": "document.updated",
            "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "name": "Jon Smith", "type": "user", "metadata": {"role": "admin"}},
            "targets": [{"id": "document_39127", "type": "document", "metadata": {"pages": 3}}],
            "context": {"location": "192.0.0.8", "user_agent": "Firefox"},
            "metadata": {"successful": true}
        })
    }

    fn fields(problems: Problems) -> Vec<(&'static str, String)> {
        match problems {
            Problems::Malformed(list) => list.into_iter().map(|p| (p.code, p.field)).collect(),
            Problems::Invalid(list) => panic!("expected malformed, got invalid: {list:?}"),
        }
    }

    #[test]
    fn parses_the_node_sdk_example_and_normalizes_it() {
        let event = NewEvent::parse(&valid()).expect("valid");
        assert_eq!(event.action(), "document.updated");
        assert_eq!(event.targets()[0].kind, "document");
        assert_eq!(event.to_json(), valid());
    }

    #[test]
    fn an_empty_location_is_a_location_but_a_missing_one_is_not() {
        let mut event = json!({
            "action": "user.signed_in",
            "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "type": "user"},
            "targets": [],
            "context": {"location": ""}
        });
        let parsed = NewEvent::parse(&event).expect("an empty location is accepted");
        assert_eq!(parsed.context.location, "");
        event["context"] = json!({"location": null});
        assert_eq!(
            fields(NewEvent::parse(&event).unwrap_err()),
            [("required", "event.context.location".to_owned())]
        );
        event["context"] = json!({"location": 7});
        assert_eq!(
            fields(NewEvent::parse(&event).unwrap_err()),
            [("invalid_type", "event.context.location".to_owned())]
        );
    }

    #[test]
    fn a_batch_item_names_its_fields_and_messages_under_its_index() {
        let item = json!({"action": "a", "occurred_at": "2026-08-01T10:00:00Z",
            "actor": "u", "targets": [null, {"id": 1, "type": "t", "name": "x".repeat(501)}],
            "context": {"location": "", "user_agent": ["ua"]}});
        let Err(Problems::Malformed(problems)) = NewEvent::read(&Json::from(&item), "events[2]")
        else {
            panic!("a malformed item");
        };
        let problems: Vec<(&str, &str, &str)> = problems
            .iter()
            .map(|p| (p.code, p.field.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "invalid_type",
                    "events[2].actor",
                    "actor must be an object, got a string"
                ),
                ("required", "events[2].targets[0]", "targets[0] is required"),
                (
                    "invalid_type",
                    "events[2].targets[1].id",
                    "id must be a string, got a number"
                ),
                (
                    "too_long",
                    "events[2].targets[1].name",
                    "name must be at most 500 characters, got 501",
                ),
                (
                    "invalid_type",
                    "events[2].context.user_agent",
                    "user_agent must be a string, got an array",
                ),
            ]
        );
    }

    #[test]
    fn reads_the_request_text_as_it_reads_the_same_json_as_a_value() {
        let texts: [&[u8]; 6] = [
            // Escapes in names and texts, a name sent twice, the old `userAgent` spelling.
            br#"{"action":"doc.\u0073hared","action":"doc.shared","occurred_at":"2026-08-01T10:00:00+02:00",
                "actor":{"id":"user_1","type":"user","name":"Zo\u00eb \"Z\""},
                "targets":[{"id":"t\/1","type":"team","metadata":{"n":1.5,"n":2,"ok":true}}],
                "context":{"location":"::1","userAgent":"UA"},"metadata":{"k":"v"},"extra":[1]}"#,
            br#"{"action":"a","occurred_at":"2026-08-01T10:00:00Z","actor":{"id":"u","type":"user"},
                "targets":[],"context":{"location":"","user_agent":"x","userAgent":"y"},"version":2}"#,
            // Problems of both kinds.
            br#"{"action":"","occurred_at":"soon","actor":{"id":"u","type":"user","metadata":{"bad key":1}},
                "targets":[{"id":"t","type":"team","name":"a\u0000b"}],"context":{"location":1}}"#,
            br#"{"action":"a","occurred_at":"2026-08-01T10:00:00Z","actor":{"id":"u","type":"user"},
                "targets":[],"context":{"location":""},"metadata":{"nested":{"x":1}}}"#,
            // NUL in a value a later duplicate replaces: accepted, as the Value path accepts it.
            br#"{"action":"a\u0000","action":"a","occurred_at":"2026-08-01T10:00:00Z","zz":"\u0000","zz":1,
                "actor":{"id":"u","type":"user"},"targets":[],"context":{"location":""}}"#,
            // NUL twice, named in the order a Value holds the fields.
            br#"{"occurred_at":"2026-08-01T10:00:00Z","action":"a","targets":[],"context":{"location":""},
                "z":"\u0000","actor":{"id":"u","type":"user","name":"\u0000"}}"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_slice(text).expect("valid JSON");
            let json = Json::parse(text).expect("valid JSON");
            assert_eq!(
                NewEvent::read(&json, "event"),
                NewEvent::parse(&value),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let replaced = Json::parse(texts[4]).expect("valid JSON");
        assert!(NewEvent::read(&replaced, "event").is_ok());
        let Err(Problems::Malformed(problems)) =
            NewEvent::read(&Json::parse(texts[5]).expect("valid JSON"), "event")
        else {
            panic!("NUL is refused");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["event.actor.name", "event.z"]);
    }

    #[test]
    fn names_every_missing_required_field() {
        let problems =
            NewEvent::parse(&json!({"actor": {"type": "user"}, "targets": [{}], "context": {}}))
                .unwrap_err();
        assert_eq!(
            fields(problems),
            [
                ("required", "event.action".to_owned()),
                ("required", "event.occurred_at".to_owned()),
                ("required", "event.actor.id".to_owned()),
                ("required", "event.targets[0].id".to_owned()),
                ("required", "event.targets[0].type".to_owned()),
                ("required", "event.context.location".to_owned()),
            ]
        );
        assert_eq!(
            fields(NewEvent::parse(&json!(null)).unwrap_err()),
            [("required", "event".to_owned())]
        );
        assert_eq!(
            fields(NewEvent::parse(&json!([1])).unwrap_err()),
            [("invalid_type", "event".to_owned())]
        );
    }

    #[test]
    fn names_wrong_types_and_sizes() {
        let mut event = valid();
        event["action"] = json!(42);
        event["version"] = json!(0);
        event["actor"]["name"] = json!("n".repeat(501));
        event["context"]["user_agent"] = json!("u".repeat(2001));
        event["occurred_at"] = json!("last tuesday");
        event["targets"] = json!(
            (0..101)
                .map(|i| json!({"id": format!("t{i}"), "type": "x"}))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            fields(NewEvent::parse(&event).unwrap_err()),
            [
                ("invalid_type", "event.action".to_owned()),
                ("invalid_date", "event.occurred_at".to_owned()),
                ("invalid_value", "event.version".to_owned()),
                ("too_long", "event.actor.name".to_owned()),
                ("too_many", "event.targets".to_owned()),
                ("too_long", "event.context.user_agent".to_owned()),
            ]
        );
    }

    #[test]
    fn metadata_limits_are_invalid_events_with_pointers() {
        let mut event = valid();
        event["metadata"] = json!({"nested": {"a": 1}});
        event["targets"][0]["metadata"] = json!({"long": "x".repeat(501)});
        match NewEvent::parse(&event).unwrap_err() {
            Problems::Invalid(list) => {
                let paths: Vec<_> = list.into_iter().map(|p| p.instance_path).collect();
                assert_eq!(paths, ["/targets/0/metadata/long", "/metadata/nested"]);
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_legacy_user_agent_spelling_and_explicit_nulls() {
        let mut event = valid();
        event["context"] = json!({"location": "1.2.3.4", "userAgent": "curl/8"});
        event["metadata"] = Value::Null;
        event["version"] = json!(2);
        let parsed = NewEvent::parse(&event).expect("valid");
        assert_eq!(parsed.context().user_agent.as_deref(), Some("curl/8"));
        assert_eq!(parsed.metadata(), None);
        assert_eq!(parsed.version(), Some(2));
    }
}
