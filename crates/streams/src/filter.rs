//! Which events a stream sends: `config.filters: {actions?, actor_types?, target_types?}`, each
//! a list of strings. An event is sent when every list given matches it: its `action` is one of
//! `actions` (an entry `user.*` takes every action that starts with `user.`, as the search
//! API's `actions` filter does), its actor's `type` one of `actor_types`, and one of its
//! targets' `type` one of `target_types`. An empty or absent list matches everything.
//!
//! Filtering never moves the cursor differently: the stream's cursor passes every event it
//! read, sent or not, so a filtered stream is as far along its log as an unfiltered one.
//! Signed checkpoints are always sent (they are not events, and a customer checks the log
//! with them whatever it chose to receive).

use serde_json::Value;
use trailmark_domain::FieldProblem;

use crate::settings::problem;

/// The most entries a list may hold.
pub const MAX_ENTRIES: usize = 100;
/// The lists `filters` takes.
const LISTS: [&str; 3] = ["actions", "actor_types", "target_types"];

/// A stream's filters; the default matches every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    actions: Vec<String>,
    actor_types: Vec<String>,
    target_types: Vec<String>,
}

impl Filters {
    /// The filters of a stream's stored public settings (validated when saved; an unreadable
    /// list matches everything, so a stream never loses events to a setting it cannot read).
    pub fn of(public: &Value) -> Self {
        let list = |name: &str| -> Vec<String> {
            public["filters"][name]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        Filters {
            actions: list("actions"),
            actor_types: list("actor_types"),
            target_types: list("target_types"),
        }
    }

    /// Whether every event matches.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.actor_types.is_empty() && self.target_types.is_empty()
    }

    /// Whether `event` (an event object) is sent.
    pub fn matches(&self, event: &Value) -> bool {
        let action = event["action"].as_str().unwrap_or("");
        let action_matches = self.actions.is_empty()
            || self
                .actions
                .iter()
                .any(|wanted| match wanted.strip_suffix('*') {
                    Some(prefix) => action.starts_with(prefix),
                    None => action == wanted,
                });
        let actor_matches = self.actor_types.is_empty()
            || event["actor"]["type"]
                .as_str()
                .is_some_and(|kind| self.actor_types.iter().any(|t| t == kind));
        let target_matches = self.target_types.is_empty()
            || event["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|target| {
                    target["type"]
                        .as_str()
                        .is_some_and(|kind| self.target_types.iter().any(|t| t == kind))
                })
            });
        action_matches && actor_matches && target_matches
    }
}

/// Checks a `config.filters` value, pushing a problem per bad field.
pub fn validate(value: &Value, problems: &mut Vec<FieldProblem>) {
    let fields = match value {
        Value::Null => return,
        Value::Object(fields) => fields,
        _ => {
            problems.push(problem(
                "invalid_type",
                "config.filters",
                "filters must be an object: {actions?, actor_types?, target_types?}",
            ));
            return;
        }
    };
    for (key, value) in fields {
        let field = format!("config.filters.{key}");
        if !LISTS.contains(&key.as_str()) {
            problems.push(problem(
                "unknown_field",
                &field,
                "filters takes actions, actor_types and target_types",
            ));
            continue;
        }
        let valid = match value {
            Value::Null => true,
            Value::Array(entries) => {
                entries.len() <= MAX_ENTRIES
                    && entries.iter().all(|entry| {
                        entry.as_str().is_some_and(|text| {
                            !text.trim().is_empty()
                                && !text.contains('\0')
                                // A wildcard stands only at the end, after a dot: `user.*`.
                                && (key != "actions"
                                    || !text.contains('*')
                                    || (text.ends_with(".*") && text.matches('*').count() == 1))
                        })
                    })
            }
            _ => false,
        };
        if !valid {
            let wildcard = if key == "actions" {
                "; a '*' only ends an entry, after a dot ('user.*')"
            } else {
                ""
            };
            problems.push(problem(
                "invalid_value",
                &field,
                &format!(
                    "{key} must be a list of at most {MAX_ENTRIES} non-empty strings{wildcard}"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(action: &str, actor: &str, targets: &[&str]) -> Value {
        let targets: Vec<Value> = targets
            .iter()
            .map(|t| json!({"id": "x", "type": t}))
            .collect();
        json!({"action": action, "actor": {"id": "a", "type": actor}, "targets": targets})
    }

    #[test]
    fn every_list_given_must_match() {
        let filters = Filters::of(&json!({"filters": {
            "actions": ["user.*", "document.deleted"],
            "actor_types": ["user"],
            "target_types": ["document", "team"],
        }}));
        assert!(filters.matches(&event("user.signed_in", "user", &["team"])));
        assert!(filters.matches(&event("document.deleted", "user", &["file", "document"])));
        assert!(!filters.matches(&event("document.created", "user", &["document"])));
        assert!(!filters.matches(&event("user.signed_in", "api_key", &["team"])));
        assert!(!filters.matches(&event("user.signed_in", "user", &[])));
        assert!(
            !filters.matches(&event("username.changed", "user", &["team"])),
            "'user.*' takes the 'user.' prefix, dot included"
        );
        let none = Filters::of(&json!({}));
        assert!(none.is_empty() && none.matches(&event("any", "any", &[])));
    }

    #[test]
    fn bad_filters_are_named() {
        let mut problems = Vec::new();
        validate(
            &json!({"actions": ["us*er.x"], "actor_types": "user", "kinds": []}),
            &mut problems,
        );
        validate(&json!(["user.*"]), &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "config.filters.actions",
                "config.filters.actor_types",
                "config.filters.kinds",
                "config.filters"
            ]
        );
        let mut none = Vec::new();
        validate(
            &json!({"actions": ["user.*", "a.b"], "target_types": [], "actor_types": null}),
            &mut none,
        );
        assert!(none.is_empty(), "{none:?}");
    }
}
