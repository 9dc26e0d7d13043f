//! How values without a table of their own are kept as JSON text: the export filter.
//! Format (compatibility rule: keys may be added, never renamed):
//! `{"range_start": ms|null, "range_end": ms|null, "actions": ["user.*", "a.b"], "actor_ids": [],
//!   "actor_names": [], "target_ids": [], "target_types": [], "text": "…"|null}`.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::query::{ActionPattern, EventFilter};

use crate::StoreError;

pub(crate) fn filter_to_json(filter: &EventFilter) -> String {
    let actions: Vec<String> = filter
        .actions
        .iter()
        .map(|pattern| match pattern {
            ActionPattern::Exact(exact) => exact.clone(),
            ActionPattern::Prefix(prefix) => format!("{prefix}*"),
        })
        .collect();
    json!({
        "range_start": filter.range_start.map(Timestamp::unix_millis),
        "range_end": filter.range_end.map(Timestamp::unix_millis),
        "actions": actions,
        "actor_ids": filter.actor_ids,
        "actor_names": filter.actor_names,
        "target_ids": filter.target_ids,
        "target_types": filter.target_types,
        "text": filter.text,
    })
    .to_string()
}

pub(crate) fn filter_from_json(text: &str) -> Result<EventFilter, StoreError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("export filter: {e}")))?;
    let strings = |key: &str| -> Vec<String> {
        value[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let instant = |key: &str| value[key].as_i64().map(Timestamp::from_unix_millis);
    Ok(EventFilter {
        range_start: instant("range_start"),
        range_end: instant("range_end"),
        actions: strings("actions")
            .iter()
            .map(|a| ActionPattern::parse(a))
            .collect(),
        actor_ids: strings("actor_ids"),
        actor_names: strings("actor_names"),
        target_ids: strings("target_ids"),
        target_types: strings("target_types"),
        text: value["text"].as_str().map(str::to_owned),
    })
}
