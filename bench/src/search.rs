//! The searches the read benchmark sends: each kind of filter `GET /audit_logs/events` takes,
//! with values drawn from the dataset so every search finds events, and the same search as the
//! SQL Trailmark runs for it, for the raw ceiling.
//!
//! [`Search::sql`] mirrors `SearchSql` and `search_events` in `crates/store/src/sqlite/mod.rs`
//! clause for clause (same columns, same conditions in the same order, same `LIMIT limit + 1`),
//! so the raw ceiling runs the query plan Trailmark gets, without HTTP, JSON or the reader pool.
//! When that query changes, change this one with it.

use std::fmt::Write as _;

use rusqlite::types::Value as SqlValue;
use trailmark_domain::Timestamp;

use crate::dataset::{
    ACTIONS, DAY_MS, Dataset, Random, USERS, document_id, request_id, user_actor,
};

/// One search: the filters of `GET /audit_logs/events`, its order and cursor.
#[derive(Clone, Default)]
pub struct Search {
    /// `range_start` and `range_end`, Unix milliseconds, inclusive.
    pub range: Option<(i64, i64)>,
    pub actions: Vec<String>,
    pub actor_ids: Vec<String>,
    pub actor_names: Vec<String>,
    pub target_ids: Vec<String>,
    pub target_types: Vec<String>,
    pub q: Option<String>,
    pub ascending: bool,
    pub after: Option<u64>,
}

impl Search {
    /// The path and query of the API request.
    pub fn url(&self, organization_id: &str, limit: usize) -> String {
        let mut url = format!("/audit_logs/events?organization_id={organization_id}&limit={limit}");
        let mut param = |name: &str, value: &str| {
            let _ = write!(url, "&{name}={}", encode(value));
        };
        if let Some((start, end)) = self.range {
            param(
                "range_start",
                &Timestamp::from_unix_millis(start).to_string(),
            );
            param("range_end", &Timestamp::from_unix_millis(end).to_string());
        }
        for (name, values) in [
            ("actions", &self.actions),
            ("actor_ids", &self.actor_ids),
            ("actor_names", &self.actor_names),
            ("target_ids", &self.target_ids),
            ("target_types", &self.target_types),
        ] {
            for value in values {
                param(name, value);
            }
        }
        if let Some(q) = &self.q {
            param("q", q);
        }
        if self.ascending {
            param("order", "asc");
        }
        if let Some(after) = self.after {
            param("after", &after.to_string());
        }
        url
    }

    /// Whether any filter is set (cursors and order are not filters).
    fn filters(&self) -> bool {
        self.range.is_some()
            || !self.actions.is_empty()
            || !self.actor_ids.is_empty()
            || !self.actor_names.is_empty()
            || !self.target_ids.is_empty()
            || !self.target_types.is_empty()
            || self.q.is_some()
    }

    /// The SQL and parameters Trailmark's store runs for this search (see the module docs).
    /// `purged_column`: the events table has retention's `purged_at` column; the store then
    /// reads it and leaves purged stubs out of filtered searches.
    pub fn sql(
        &self,
        organization_id: &str,
        limit: usize,
        purged_column: bool,
    ) -> (String, Vec<SqlValue>) {
        let mut values: Vec<SqlValue> = vec![organization_id.to_owned().into()];
        let mut conditions = vec!["e.organization_id = ?1".to_owned()];
        if purged_column && self.filters() {
            conditions.push("e.purged_at IS NULL".to_owned());
        }
        let mut bind = |value: SqlValue| {
            values.push(value);
            format!("?{}", values.len())
        };
        if let Some(after) = self.after {
            conditions.push(format!("e.sequence > {}", bind((after as i64).into())));
        }
        if let Some((start, end)) = self.range {
            conditions.push(format!("e.occurred_at >= {}", bind(start.into())));
            conditions.push(format!("e.occurred_at <= {}", bind(end.into())));
        }
        if !self.actions.is_empty() {
            let alternatives: Vec<String> = self
                .actions
                .iter()
                .map(|action| match action.strip_suffix('*') {
                    Some(prefix) => {
                        let low = bind(prefix.to_owned().into());
                        let high = bind(format!("{prefix}\u{10FFFF}").into());
                        format!("(e.action >= {low} AND e.action < {high})")
                    }
                    None => format!("e.action = {}", bind(action.clone().into())),
                })
                .collect();
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        let mut list = |values: &[String]| {
            values
                .iter()
                .map(|v| bind(v.clone().into()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.actor_ids.is_empty() {
            conditions.push(format!("e.actor_id IN ({})", list(&self.actor_ids)));
        }
        if !self.actor_names.is_empty() {
            conditions.push(format!("e.actor_name IN ({})", list(&self.actor_names)));
        }
        for (column, wanted) in [
            ("target_id", &self.target_ids),
            ("target_type", &self.target_types),
        ] {
            if !wanted.is_empty() {
                conditions.push(format!(
                    "EXISTS (SELECT 1 FROM event_targets t WHERE t.organization_id = e.organization_id
                       AND t.sequence = e.sequence AND t.{column} IN ({}))",
                    list(wanted)
                ));
            }
        }
        if let Some(q) = &self.q {
            let phrase = bind(format!("\"{}\"", q.replace('"', "\"\"")).into());
            conditions.push(format!(
                "e.rowid IN (SELECT rowid FROM events_fts WHERE events_fts MATCH {phrase})"
            ));
        }
        let sql = format!(
            "SELECT e.id, e.organization_id, e.sequence, e.received_at, e.leaf_hash, e.body{} \
             FROM events e WHERE {} ORDER BY e.sequence {} LIMIT {}",
            if purged_column { ", e.purged_at" } else { "" },
            conditions.join(" AND "),
            if self.ascending { "ASC" } else { "DESC" },
            limit + 1
        );
        (sql, values)
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters and `*`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~*".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A kind of search: its name in the report and how to draw one instance of it.
pub struct Kind {
    pub name: &'static str,
    /// Whether it filters (the search-latency aim is for filtered searches).
    pub filtered: bool,
    pub make: fn(&Dataset, &mut Random) -> Search,
}

/// Common substrings for `q`: each is in a large share of events' search text.
const COMMON_WORDS: [&str; 4] = ["signed_in", "document", "Workspace", "sso"];

/// Every kind the benchmark measures, in report order.
pub fn kinds() -> Vec<Kind> {
    fn week(dataset: &Dataset, random: &mut Random, days: i64) -> (i64, i64) {
        let width = days * DAY_MS;
        let start = dataset.start_ms + random.below((dataset.span_ms - width).max(1) as u64) as i64;
        (start, start + width)
    }
    fn user(random: &mut Random) -> (String, String) {
        user_actor(random.below(USERS))
    }
    vec![
        Kind {
            name: "no filter",
            filtered: false,
            make: |_, _| Search::default(),
        },
        Kind {
            name: "range_start+range_end (1 week)",
            filtered: true,
            make: |d, r| Search {
                range: Some(week(d, r, 7)),
                ..Search::default()
            },
        },
        Kind {
            name: "actions=<exact>",
            filtered: true,
            make: |_, r| Search {
                actions: vec![ACTIONS[r.below(ACTIONS.len() as u64) as usize].0.to_owned()],
                ..Search::default()
            },
        },
        Kind {
            name: "actions=user.* (51% of events)",
            filtered: true,
            make: |_, _| Search {
                actions: vec!["user.*".to_owned()],
                ..Search::default()
            },
        },
        Kind {
            name: "actions=api_key.* (0.8%)",
            filtered: true,
            make: |_, _| Search {
                actions: vec!["api_key.*".to_owned()],
                ..Search::default()
            },
        },
        Kind {
            name: "actor_ids=<one>",
            filtered: true,
            make: |_, r| Search {
                actor_ids: vec![user(r).0],
                ..Search::default()
            },
        },
        Kind {
            name: "actor_names=<one>",
            filtered: true,
            make: |_, r| Search {
                actor_names: vec![user(r).1],
                ..Search::default()
            },
        },
        Kind {
            name: "target_ids=<a document>",
            filtered: true,
            make: |_, r| Search {
                target_ids: vec![document_id(r.below(crate::dataset::DOCUMENTS))],
                ..Search::default()
            },
        },
        Kind {
            name: "target_types=<one>",
            filtered: true,
            make: |_, r| Search {
                target_types: vec![
                    crate::dataset::TARGET_TYPES
                        [r.below(crate::dataset::TARGET_TYPES.len() as u64) as usize]
                        .to_owned(),
                ],
                ..Search::default()
            },
        },
        Kind {
            name: "q=<rare> (a request id)",
            filtered: true,
            make: |d, r| Search {
                q: Some(request_id(r.below(d.events))),
                ..Search::default()
            },
        },
        Kind {
            name: "q=<common word>",
            filtered: true,
            make: |_, r| Search {
                q: Some(COMMON_WORDS[r.below(COMMON_WORDS.len() as u64) as usize].to_owned()),
                ..Search::default()
            },
        },
        Kind {
            name: "user.* + actor_ids + 30 days",
            filtered: true,
            make: |d, r| Search {
                range: Some(week(d, r, 30)),
                actions: vec!["user.*".to_owned()],
                actor_ids: vec![user(r).0],
                ..Search::default()
            },
        },
        Kind {
            name: "order=asc&after=N/2 (deep page)",
            filtered: false,
            make: |d, r| Search {
                ascending: true,
                after: Some(d.events / 2 + r.below(1_000)),
                ..Search::default()
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded_and_sql_binds_every_value() {
        let search = Search {
            range: Some((0, DAY_MS)),
            actions: vec!["user.*".into(), "document.updated".into()],
            actor_names: vec!["Jon Smith".into()],
            target_types: vec!["team".into()],
            q: Some("a\"b".into()),
            ..Search::default()
        };
        let url = search.url("org_1", 10);
        assert!(url.contains("actor_names=Jon%20Smith"), "{url}");
        assert!(url.contains("actions=user.*"), "{url}");
        assert!(
            url.contains("range_start=1970-01-01T00%3A00%3A00.000Z"),
            "{url}"
        );
        let (sql, values) = search.sql("org_1", 10, true);
        assert_eq!(values.len(), 9);
        assert!(
            sql.contains("?9)") && sql.ends_with("DESC LIMIT 11"),
            "{sql}"
        );
        assert!(sql.contains("e.purged_at IS NULL"), "{sql}");
        let (unfiltered, _) = Search::default().sql("org_1", 10, true);
        assert!(!unfiltered.contains("IS NULL"), "{unfiltered}");
    }
}
