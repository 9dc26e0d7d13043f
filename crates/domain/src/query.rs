//! What a reader asks for: the filters of the search API, of exports and of `trailmark export`.
//!
//! All filters combine with AND; the values within one list filter combine with OR. Action
//! patterns ending in `.*` (or a lone `*`) match by prefix: `user.*` matches `user.signed_in`.
//! `text` is a case-insensitive substring search over the action, actor and target ids and
//! names, the location and every metadata value; it needs at least [`TEXT_MIN_CHARS`]
//! characters because it is answered from a trigram index.

use crate::Timestamp;
use crate::problem::{FieldProblem, FieldProblems};

/// Shortest free-text query; shorter ones would match through no trigram.
pub const TEXT_MIN_CHARS: usize = 3;
/// Most values one list filter may hold.
pub const FILTER_VALUES_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    Exact(String),
    /// Matches actions starting with this text (`user.` for `user.*`; empty for `*`).
    Prefix(String),
}

impl ActionPattern {
    pub fn parse(text: &str) -> Self {
        if text == "*" {
            ActionPattern::Prefix(String::new())
        } else if let Some(prefix) = text.strip_suffix('*') {
            ActionPattern::Prefix(prefix.to_owned())
        } else {
            ActionPattern::Exact(text.to_owned())
        }
    }

    pub fn matches(&self, action: &str) -> bool {
        match self {
            ActionPattern::Exact(exact) => action == exact,
            ActionPattern::Prefix(prefix) => action.starts_with(prefix.as_str()),
        }
    }
}

/// Filters over one organization's events. Empty lists and `None` filter nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Earliest `occurred_at`, inclusive.
    pub range_start: Option<Timestamp>,
    /// Latest `occurred_at`, inclusive.
    pub range_end: Option<Timestamp>,
    pub actions: Vec<ActionPattern>,
    pub actor_ids: Vec<String>,
    pub actor_names: Vec<String>,
    pub target_ids: Vec<String>,
    pub target_types: Vec<String>,
    pub text: Option<String>,
}

impl EventFilter {
    /// The actions named whole (`user.signed_in`), which a store looks up as equal values.
    pub fn exact_actions(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|pattern| match pattern {
                ActionPattern::Exact(action) => Some(action.as_str()),
                ActionPattern::Prefix(_) => None,
            })
            .collect()
    }

    /// The prefixes of the actions named by a wildcard (`user.*`), which a store looks up as a
    /// range.
    pub fn action_prefixes(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|pattern| match pattern {
            ActionPattern::Exact(_) => None,
            ActionPattern::Prefix(prefix) => Some(prefix.as_str()),
        })
    }

    /// Checks the filter as a whole; `names` gives the parameter names to report (they differ
    /// between the search API and exports).
    ///
    /// # Errors
    ///
    /// A problem per offending parameter: a reversed range, a too-short text, a list too long.
    pub fn check(&self, names: &FilterNames) -> Result<(), Vec<FieldProblem>> {
        let mut problems = FieldProblems::default();
        if let (Some(start), Some(end)) = (self.range_start, self.range_end)
            && start > end
        {
            problems.push(
                "invalid_value",
                names.range_end,
                format!(
                    "{} must not be before {}",
                    names.range_end, names.range_start
                ),
            );
        }
        if let Some(text) = &self.text
            && text.chars().count() < TEXT_MIN_CHARS
        {
            problems.push(
                "too_short",
                names.text,
                format!(
                    "{} must be at least {TEXT_MIN_CHARS} characters",
                    names.text
                ),
            );
        }
        for (name, len) in [
            (names.actions, self.actions.len()),
            (names.actor_ids, self.actor_ids.len()),
            (names.actor_names, self.actor_names.len()),
            (names.target_ids, self.target_ids.len()),
            (names.target_types, self.target_types.len()),
        ] {
            if len > FILTER_VALUES_MAX {
                problems.push(
                    "too_many",
                    name,
                    format!("{name} takes at most {FILTER_VALUES_MAX} values"),
                );
            }
        }
        let problems = problems.into_vec();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The parameter names a caller used for each filter, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct FilterNames {
    pub range_start: &'static str,
    pub range_end: &'static str,
    pub actions: &'static str,
    pub actor_ids: &'static str,
    pub actor_names: &'static str,
    pub target_ids: &'static str,
    pub target_types: &'static str,
    pub text: &'static str,
}

/// The names the search API and the export API share with WorkOS.
pub const API_FILTER_NAMES: FilterNames = FilterNames {
    range_start: "range_start",
    range_end: "range_end",
    actions: "actions",
    actor_ids: "actor_ids",
    actor_names: "actor_names",
    target_ids: "target_ids",
    target_types: "target_types",
    text: "q",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns_match_exactly_or_by_prefix() {
        assert!(ActionPattern::parse("user.*").matches("user.signed_in"));
        assert!(!ActionPattern::parse("user.*").matches("users.x"));
        assert!(ActionPattern::parse("*").matches("anything"));
        assert!(ActionPattern::parse("a.b").matches("a.b"));
        assert!(!ActionPattern::parse("a.b").matches("a.bc"));
    }

    #[test]
    fn checks_name_the_parameter() {
        let filter = EventFilter {
            range_start: Some(Timestamp::from_unix_millis(10)),
            range_end: Some(Timestamp::from_unix_millis(5)),
            text: Some("ab".into()),
            actor_ids: vec!["x".into(); 101],
            ..EventFilter::default()
        };
        let fields: Vec<String> = filter
            .check(&API_FILTER_NAMES)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["range_end", "q", "actor_ids"]);
    }
}
