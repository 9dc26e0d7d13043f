//! A person's data in an event: which values an erasure may remove, how each is addressed, and
//! which of them an erasure request selects.
//!
//! **Erasable values** are the ones that can name or describe a person: the actor's and each
//! target's `id`, `name` and metadata values, the context's `location` and `user_agent`, and the
//! event's metadata values. The rest — `action`, the parties' `type`s, `occurred_at`, `version`
//! and everything the store adds — is what the event *was*, and stays. Each erasable value is
//! addressed by its JSON pointer (RFC 6901) in the event's body or event object, e.g.
//! `/actor/id`, `/targets/1/name`, `/metadata/plan` (a `~` in a key is written `~0`, a `/` `~1`).
//!
//! An erased value is replaced by [`ERASED`]; the event keeps its shape, so every reader and SDK
//! still finds the fields it expects. The ledger commits to erasable values by salted hashes
//! (`trailmark_ledger::commit`), so an event's proofs still verify after an erasure.

use serde_json::{Map, Value};

use crate::problem::{FieldProblems, Problems};

/// What an erased value reads as.
pub const ERASED: &str = "[erased]";

/// Calls `visit` with the pointer and value of every erasable value of `body` (a stored body or
/// an event object), in a fixed order: actor, targets, context, metadata.
pub fn for_each_erasable(body: &Value, mut visit: impl FnMut(&str, &Value)) {
    // The traversal is written once, over values that may change: here, over a copy.
    let mut copy = body.clone();
    for_each_erasable_mut(&mut copy, |pointer, value| visit(pointer, value));
}

/// [`for_each_erasable`], each value given mutably, to replace it (by its commitment, say).
pub fn for_each_erasable_mut(body: &mut Value, mut visit: impl FnMut(&str, &mut Value)) {
    let mut pointer = String::with_capacity(64);
    if let Some(actor) = body.get_mut("actor") {
        party(actor, "/actor", &mut pointer, &mut visit);
    }
    if let Some(Value::Array(targets)) = body.get_mut("targets") {
        for (index, target) in targets.iter_mut().enumerate() {
            party(
                target,
                &format!("/targets/{index}"),
                &mut pointer,
                &mut visit,
            );
        }
    }
    if let Some(context) = body.get_mut("context") {
        for key in ["location", "user_agent"] {
            if let Some(value) = context.get_mut(key) {
                at(&mut pointer, "/context", key, |p| visit(p, value));
            }
        }
    }
    if let Some(Value::Object(metadata)) = body.get_mut("metadata") {
        values(metadata, "/metadata", &mut pointer, &mut visit);
    }
}

fn party(
    party: &mut Value,
    base: &str,
    pointer: &mut String,
    visit: &mut impl FnMut(&str, &mut Value),
) {
    for key in ["id", "name"] {
        if let Some(value) = party.get_mut(key) {
            at(pointer, base, key, |p| visit(p, value));
        }
    }
    if let Some(Value::Object(metadata)) = party.get_mut("metadata") {
        values(metadata, &format!("{base}/metadata"), pointer, visit);
    }
}

fn values(
    map: &mut Map<String, Value>,
    base: &str,
    pointer: &mut String,
    visit: &mut impl FnMut(&str, &mut Value),
) {
    for (key, value) in map {
        at(pointer, base, key, |p| visit(p, value));
    }
}

/// Sets `pointer` to `base` + `/` + the escaped `key` for the duration of `then`.
fn at(pointer: &mut String, base: &str, key: &str, then: impl FnOnce(&str)) {
    set_pointer(pointer, base, key);
    then(pointer);
}

/// Sets `pointer` to the JSON pointer of member `key` under `base` (RFC 6901: `~` is written
/// `~0`, `/` `~1`), reusing its buffer.
pub fn set_pointer(pointer: &mut String, base: &str, key: &str) {
    pointer.clear();
    pointer.push_str(base);
    pointer.push('/');
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// Whose data an erasure removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Events whose actor has this id.
    Actor(String),
    /// Events with a target of this id (only that target's values).
    Target(String),
    /// Any erasable value equal to this text (an email address in metadata, say).
    Value(String),
}

impl Subject {
    /// `actor`, `target` or `value`: how the subject is named in the erasure's own audit event
    /// (never the id or value itself, which is the data being erased).
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Actor(_) => "actor",
            Subject::Target(_) => "target",
            Subject::Value(_) => "value",
        }
    }
}

/// A part of a party (or of the context) that an erasure of an actor or target removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Id,
    Name,
    Metadata,
    Location,
    UserAgent,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Metadata => "metadata",
            Field::Location => "location",
            Field::UserAgent => "user_agent",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Field::Id,
            Field::Name,
            Field::Metadata,
            Field::Location,
            Field::UserAgent,
        ]
        .into_iter()
        .find(|field| field.as_str() == text)
    }
}

/// What to erase: a subject and, for an actor or a target, which of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    pub subject: Subject,
    /// Sorted, without repeats; empty for a [`Subject::Value`].
    pub fields: Vec<Field>,
}

impl ErasureRequest {
    /// Reads `{"subject": {"actor_id" | "target_id" | "value": "…"}, "fields": [...]}`. Without
    /// `fields`, an actor's erasure removes its id, name and metadata and the context's location
    /// and user agent (the request it made), a target's its id, name and metadata.
    ///
    /// # Errors
    ///
    /// [`Problems::Malformed`] naming each bad field.
    pub fn parse(body: &Value) -> Result<Self, Problems> {
        let mut problems = FieldProblems::default();
        let subject = match body.get("subject") {
            Some(Value::Object(subject)) => {
                let named: Vec<(&str, &Value)> = ["actor_id", "target_id", "value"]
                    .into_iter()
                    .filter_map(|key| subject.get(key).map(|value| (key, value)))
                    .collect();
                match named.as_slice() {
                    [(key, Value::String(text))] if !text.is_empty() => Some(match *key {
                        "actor_id" => Subject::Actor(text.clone()),
                        "target_id" => Subject::Target(text.clone()),
                        _ => Subject::Value(text.clone()),
                    }),
                    [(key, _)] => {
                        problems.push(
                            "invalid_type",
                            format!("subject.{key}"),
                            format!("subject.{key} must be a non-empty string"),
                        );
                        None
                    }
                    _ => {
                        problems.push(
                            "invalid_value",
                            "subject",
                            "subject must name exactly one of actor_id, target_id or value",
                        );
                        None
                    }
                }
            }
            None | Some(Value::Null) => {
                problems.push("required", "subject", "subject is required");
                None
            }
            Some(_) => {
                problems.push("invalid_type", "subject", "subject must be an object");
                None
            }
        };
        let fields = match body.get("fields") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut fields = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item.as_str().and_then(Field::parse) {
                        Some(field) => fields.push(field),
                        None => problems.push(
                            "invalid_value",
                            format!("fields[{index}]"),
                            "each field is one of id, name, metadata, location, user_agent",
                        ),
                    }
                }
                if items.is_empty() {
                    problems.push("invalid_value", "fields", "fields must not be empty");
                }
                fields.sort();
                fields.dedup();
                Some(fields)
            }
            Some(_) => {
                problems.push("invalid_type", "fields", "fields must be an array");
                None
            }
        };
        let Some(subject) = subject.filter(|_| problems.is_empty()) else {
            return Err(Problems::Malformed(problems.into_vec()));
        };
        let fields = match (&subject, fields) {
            (Subject::Value(_), Some(_)) => {
                problems.push(
                    "invalid_value",
                    "fields",
                    "fields apply to an actor_id or target_id subject; a value is erased wherever it appears",
                );
                return Err(Problems::Malformed(problems.into_vec()));
            }
            (Subject::Value(_), None) => Vec::new(),
            (Subject::Target(_), Some(fields))
                if fields
                    .iter()
                    .any(|f| matches!(f, Field::Location | Field::UserAgent)) =>
            {
                problems.push(
                    "invalid_value",
                    "fields",
                    "a target has id, name and metadata (location and user_agent are the actor's)",
                );
                return Err(Problems::Malformed(problems.into_vec()));
            }
            (_, Some(fields)) => fields,
            (Subject::Actor(_), None) => vec![
                Field::Id,
                Field::Name,
                Field::Metadata,
                Field::Location,
                Field::UserAgent,
            ],
            (Subject::Target(_), None) => vec![Field::Id, Field::Name, Field::Metadata],
        };
        Ok(ErasureRequest { subject, fields })
    }

    /// The pointers of the values this request erases in `body` (values already erased are
    /// left out); empty if the event is not the subject's.
    pub fn select(&self, body: &Value) -> Vec<String> {
        let mut chosen = Vec::new();
        let mut choose = |pointer: &str, value: &Value| {
            if value.as_str() != Some(ERASED) {
                chosen.push(pointer.to_owned());
            }
        };
        match &self.subject {
            Subject::Actor(id) => {
                if body.pointer("/actor/id").and_then(Value::as_str) == Some(id) {
                    for_each_erasable(body, |pointer, value| {
                        let field = if let Some(rest) = pointer.strip_prefix("/actor/") {
                            party_field(rest)
                        } else if pointer == "/context/location" {
                            Some(Field::Location)
                        } else if pointer == "/context/user_agent" {
                            Some(Field::UserAgent)
                        } else {
                            None
                        };
                        if field.is_some_and(|f| self.fields.contains(&f)) {
                            choose(pointer, value);
                        }
                    });
                }
            }
            Subject::Target(id) => {
                let matching: Vec<String> = body
                    .get("targets")
                    .and_then(Value::as_array)
                    .map(|targets| {
                        targets
                            .iter()
                            .enumerate()
                            .filter(|(_, t)| t.get("id").and_then(Value::as_str) == Some(id))
                            .map(|(index, _)| format!("/targets/{index}/"))
                            .collect()
                    })
                    .unwrap_or_default();
                if !matching.is_empty() {
                    for_each_erasable(body, |pointer, value| {
                        let field = matching
                            .iter()
                            .find_map(|base| pointer.strip_prefix(base.as_str()))
                            .and_then(party_field);
                        if field.is_some_and(|f| self.fields.contains(&f)) {
                            choose(pointer, value);
                        }
                    });
                }
            }
            Subject::Value(text) => for_each_erasable(body, |pointer, value| {
                if value.as_str() == Some(text) {
                    choose(pointer, value);
                }
            }),
        }
        chosen
    }
}

/// The field of a party that `rest` (a pointer below the party) is.
fn party_field(rest: &str) -> Option<Field> {
    match rest {
        "id" => Some(Field::Id),
        "name" => Some(Field::Name),
        _ if rest.starts_with("metadata/") => Some(Field::Metadata),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "action": "document.shared", "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "type": "user", "name": "Ana", "metadata": {"role": "admin"}},
            "targets": [{"id": "doc_1", "type": "document"},
                        {"id": "user_2", "type": "user", "name": "Bo", "metadata": {"a/b~c": 1}}],
            "context": {"location": "10.0.0.1", "user_agent": "UA"},
            "metadata": {"email": "ana@acme.test", "mfa": true}
        })
    }

    fn pointers(body: &Value) -> Vec<String> {
        let mut all = Vec::new();
        for_each_erasable(body, |pointer, _| all.push(pointer.to_owned()));
        all
    }

    #[test]
    fn every_value_that_can_name_a_person_is_erasable_and_nothing_else() {
        assert_eq!(
            pointers(&body()),
            [
                "/actor/id",
                "/actor/name",
                "/actor/metadata/role",
                "/targets/0/id",
                "/targets/1/id",
                "/targets/1/name",
                "/targets/1/metadata/a~1b~0c",
                "/context/location",
                "/context/user_agent",
                "/metadata/email",
                "/metadata/mfa",
            ]
        );
        let body = body();
        for pointer in pointers(&body) {
            assert!(body.pointer(&pointer).is_some(), "{pointer} resolves");
        }
    }

    #[test]
    fn an_actor_erasure_takes_its_party_and_its_request_by_default() {
        let request =
            ErasureRequest::parse(&json!({"subject": {"actor_id": "user_1"}})).expect("valid");
        assert_eq!(
            request.select(&body()),
            [
                "/actor/id",
                "/actor/name",
                "/actor/metadata/role",
                "/context/location",
                "/context/user_agent"
            ]
        );
        let other =
            ErasureRequest::parse(&json!({"subject": {"actor_id": "user_2"}})).expect("valid");
        assert!(other.select(&body()).is_empty(), "user_2 is a target here");
    }

    #[test]
    fn a_target_erasure_takes_only_the_matching_target_and_the_chosen_fields() {
        let request = ErasureRequest::parse(
            &json!({"subject": {"target_id": "user_2"}, "fields": ["name", "metadata"]}),
        )
        .expect("valid");
        assert_eq!(
            request.select(&body()),
            ["/targets/1/name", "/targets/1/metadata/a~1b~0c"]
        );
    }

    #[test]
    fn a_value_erasure_finds_the_value_wherever_it_is_and_skips_what_is_erased() {
        let request =
            ErasureRequest::parse(&json!({"subject": {"value": "ana@acme.test"}})).expect("valid");
        let mut body = body();
        body["actor"]["name"] = json!("ana@acme.test");
        assert_eq!(request.select(&body), ["/actor/name", "/metadata/email"]);
        body["metadata"]["email"] = json!(ERASED);
        body["actor"]["name"] = json!(ERASED);
        assert!(request.select(&body).is_empty());
    }

    #[test]
    fn bad_requests_name_their_fields() {
        let cases = [
            (json!({}), "subject"),
            (json!({"subject": "x"}), "subject"),
            (
                json!({"subject": {"actor_id": "a", "value": "b"}}),
                "subject",
            ),
            (json!({"subject": {"actor_id": ""}}), "subject.actor_id"),
            (
                json!({"subject": {"actor_id": "a"}, "fields": ["email"]}),
                "fields[0]",
            ),
            (
                json!({"subject": {"actor_id": "a"}, "fields": []}),
                "fields",
            ),
            (
                json!({"subject": {"value": "a"}, "fields": ["id"]}),
                "fields",
            ),
            (
                json!({"subject": {"target_id": "a"}, "fields": ["location"]}),
                "fields",
            ),
        ];
        for (body, field) in cases {
            let Err(Problems::Malformed(problems)) = ErasureRequest::parse(&body) else {
                panic!("{body} is refused");
            };
            assert!(
                problems.iter().any(|p| p.field == field),
                "{body}: {problems:?} names {field}"
            );
        }
    }
}
