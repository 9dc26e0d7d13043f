//! The metadata maps of an event, its actor and each target: flat objects of at most
//! [`METADATA_MAX_KEYS`] keys matching `^[a-zA-Z0-9_-]{0,40}$`, whose values are strings of at
//! most [`METADATA_VALUE_MAX_CHARS`] characters, numbers or booleans (WorkOS OpenAPI
//! `AuditLogEventIngestionDto`). Breaking a limit is an *invalid event* (HTTP 400), reported at
//! the JSON pointer of the offending key.

use serde_json::{Map, Value};

use crate::json::Json;
use crate::limits::{METADATA_KEY_MAX_CHARS, METADATA_MAX_KEYS, METADATA_VALUE_MAX_CHARS};
use crate::problem::{PathProblem, json_type, pointer_segment};

/// A metadata object that satisfies every limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata(Map<String, Value>);

impl Metadata {
    /// Checks `value` against the metadata limits; `pointer` is where it sits in the event
    /// (`/actor/metadata`), and every problem found is appended to `problems`.
    pub(crate) fn check(
        value: &Json<'_>,
        pointer: &dyn std::fmt::Display,
        problems: &mut Vec<PathProblem>,
    ) -> Option<Self> {
        let Value::Object(map) = value.to_value() else {
            problems.push(PathProblem {
                instance_path: pointer.to_string(),
                message: format!("metadata must be an object, got {}", value.type_name()),
            });
            return None;
        };
        let before = problems.len();
        if map.len() > METADATA_MAX_KEYS {
            problems.push(PathProblem {
                instance_path: pointer.to_string(),
                message: format!(
                    "metadata has {} keys; at most {METADATA_MAX_KEYS} are allowed",
                    map.len()
                ),
            });
        }
        for (key, item) in &map {
            // Written only for a problem: every event's metadata passes here.
            let path = || format!("{pointer}/{}", pointer_segment(key));
            let key_ok = key.chars().count() <= METADATA_KEY_MAX_CHARS
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !key_ok {
                problems.push(PathProblem {
                    instance_path: path(),
                    message: format!(
                        "metadata keys must be at most {METADATA_KEY_MAX_CHARS} characters of A-Z, a-z, 0-9, '_' and '-'"
                    ),
                });
            }
            match item {
                Value::String(text)
                    if text.len() > METADATA_VALUE_MAX_CHARS
                        && text.chars().count() > METADATA_VALUE_MAX_CHARS =>
                {
                    problems.push(PathProblem {
                        instance_path: path(),
                        message: format!(
                            "metadata string values must be at most {METADATA_VALUE_MAX_CHARS} characters, got {}",
                            text.chars().count()
                        ),
                    });
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                other => problems.push(PathProblem {
                    instance_path: path(),
                    message: format!(
                        "metadata values must be a string, a number or a boolean, got {}",
                        json_type(other)
                    ),
                }),
            }
        }
        (problems.len() == before).then_some(Metadata(map))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    pub fn into_json(self) -> Value {
        Value::Object(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems_for(value: Value) -> Vec<String> {
        let mut problems = Vec::new();
        Metadata::check(&Json::from(&value), &"/metadata", &mut problems);
        problems.into_iter().map(|p| p.instance_path).collect()
    }

    #[test]
    fn accepts_flat_scalars_within_limits() {
        assert!(
            problems_for(json!({"plan": "pro", "seats": 5, "trial": false, "a-b_C9": "x"}))
                .is_empty()
        );
        let fifty: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(problems_for(Value::Object(fifty)).is_empty());
        assert!(problems_for(json!({"k": "é".repeat(500)})).is_empty());
    }

    #[test]
    fn names_every_broken_limit() {
        let fifty_one: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(problems_for(Value::Object(fifty_one)), ["/metadata"]);
        assert_eq!(
            problems_for(json!({"x".repeat(41): 1})),
            [format!("/metadata/{}", "x".repeat(41))]
        );
        assert_eq!(problems_for(json!({"a/b": 1})), ["/metadata/a~1b"]);
        assert_eq!(
            problems_for(json!({"long": "v".repeat(501)})),
            ["/metadata/long"]
        );
        assert_eq!(
            problems_for(json!({"nested": {"a": 1}, "list": [1], "nothing": null})),
            ["/metadata/list", "/metadata/nested", "/metadata/nothing"]
        );
        assert_eq!(problems_for(json!("text")), ["/metadata"]);
    }
}
