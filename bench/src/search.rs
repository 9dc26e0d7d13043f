//! The searches the read benchmark sends: each kind of filter `GET /audit_logs/events` takes,
//! with values drawn from the dataset so every search finds events, and the same search as the
//! SQL Trailmark runs for it, for the raw ceiling.
//!
//! [`Search::request`] is the search as Trailmark's store receives it; the raw ceiling runs the
//! statements the store's own `search_statements` makes of it (the same SQL, the same plan),
//! without HTTP, JSON or the reader pool.

use std::fmt::Write as _;

use trailmark_domain::Timestamp;
use trailmark_domain::query::{ActionPattern, EventFilter};
use trailmark_store::{Order, SearchRequest};

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

    /// The same search as Trailmark's store receives it.
    pub fn request(&self, limit: usize) -> SearchRequest {
        SearchRequest {
            filter: EventFilter {
                range_start: self
                    .range
                    .map(|(start, _)| Timestamp::from_unix_millis(start)),
                range_end: self.range.map(|(_, end)| Timestamp::from_unix_millis(end)),
                actions: self
                    .actions
                    .iter()
                    .map(|a| ActionPattern::parse(a))
                    .collect(),
                actor_ids: self.actor_ids.clone(),
                actor_names: self.actor_names.clone(),
                target_ids: self.target_ids.clone(),
                target_types: self.target_types.clone(),
                text: self.q.clone(),
            },
            after: self.after,
            before: None,
            order: if self.ascending {
                Order::Asc
            } else {
                Order::Desc
            },
            limit,
        }
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
        let request = search.request(10);
        assert_eq!(request.filter.actions.len(), 2);
        assert_eq!(request.filter.text.as_deref(), Some("a\"b"));
        assert_eq!(request.order, Order::Desc);
    }
}
