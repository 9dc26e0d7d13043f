//! Records for the Logs Ingestion API (pure): each event one JSON record, a call's body a JSON
//! array of them, at most [`MAX_BYTES`] uncompressed (Azure Monitor's limit per call, compressed
//! or not), sent gzip-compressed.
//!
//! A record has the same seven columns whatever the stream's `event_format`, so one stream
//! declaration in the data collection rule takes both:
//!
//! | column | type | from |
//! |---|---|---|
//! | `TimeGenerated` | datetime | `occurred_at` (a checkpoint's `created_at`, a purged event's `received_at`) |
//! | `EventId` | string | `id` (`checkpoint_<tree size>` for a checkpoint) |
//! | `OrganizationId` | string | `organization_id` |
//! | `Sequence` | long | `sequence` (absent for a checkpoint) |
//! | `Action` | string | `action` (absent for a checkpoint or a purged event) |
//! | `Object` | string | `object`: `audit_log_event` or `ledger_checkpoint` |
//! | `Event` | dynamic | the event's body in the stream's format: the event object, or the OCSF event holding it |
//!
//! Worked example (`workos`):
//! `[{"TimeGenerated":"2026-08-01T10:00:00.000Z","EventId":"event_01…","OrganizationId":"org_01…",
//! "Sequence":41,"Action":"user.signed_in","Object":"audit_log_event","Event":{"object":"audit_log_event",…}}]`
//!
//! A record larger than a call on its own is sent with `Event` cut to `{"id", "sequence",
//! "truncated": true}` (as a Datadog item is), so the stream is not blocked; the events API
//! still has the event whole. Compatibility rule: columns may be added (a rule drops columns it
//! does not declare); a column keeps its name and meaning.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::format::EventFormat;

/// Events per attempt.
pub const MAX_EVENTS: usize = 1_000;
/// Bytes of JSON per call at most (Azure Monitor: 1 MB per call); kept under both readings of
/// "MB".
pub const MAX_BYTES: usize = 1_000_000;

/// The records of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    records: Vec<String>,
}

impl Call {
    /// How many events it holds.
    pub fn events(&self) -> usize {
        self.records.len()
    }

    /// The JSON array.
    pub fn body(&self) -> Vec<u8> {
        format!("[{}]", self.records.join(",")).into_bytes()
    }

    /// Its first and second halves, for an endpoint that found it too large (only for calls of
    /// more than one event).
    pub fn split(mut self) -> (Call, Call) {
        let rest = self.records.split_off(self.records.len().div_ceil(2));
        (self, Call { records: rest })
    }
}

/// The calls for the first [`MAX_EVENTS`] of `events`, in order, each at most [`MAX_BYTES`].
pub fn calls(events: &[Value], format: EventFormat) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut size = 0;
    for event in events.iter().take(MAX_EVENTS) {
        let mut text = record(event, &format.body(event)).to_string();
        if text.len() + 2 > MAX_BYTES {
            let stub = json!({"id": event["id"], "sequence": event["sequence"], "truncated": true});
            text = record(event, &stub).to_string();
        }
        match calls.last_mut() {
            // `[`, `]` and a comma per record after the first.
            Some(call) if size + text.len() < MAX_BYTES => {
                size += text.len() + 1;
                call.records.push(text);
            }
            _ => {
                size = text.len() + 2;
                calls.push(Call {
                    records: vec![text],
                });
            }
        }
    }
    calls
}

/// The record of `event` (an event object or a signed checkpoint) carrying `body`.
pub fn record(event: &Value, body: &Value) -> Value {
    let mut record = Map::new();
    let checkpoint = event["object"] == "ledger_checkpoint";
    let time = ["occurred_at", "created_at", "received_at"]
        .iter()
        .find_map(|name| event[*name].as_str());
    if let Some(time) = time {
        record.insert("TimeGenerated".into(), json!(time));
    }
    let id = if checkpoint {
        Some(format!(
            "checkpoint_{}",
            event["tree_size"].as_u64().unwrap_or_default()
        ))
    } else {
        event["id"].as_str().map(str::to_owned)
    };
    if let Some(id) = id {
        record.insert("EventId".into(), json!(id));
    }
    for (column, field) in [
        ("OrganizationId", "organization_id"),
        ("Sequence", "sequence"),
        ("Action", "action"),
        ("Object", "object"),
    ] {
        let value = &event[field];
        if !value.is_null() {
            record.insert(column.into(), value.clone());
        }
    }
    record.insert("Event".into(), body.clone());
    Value::Object(record)
}

/// `body` gzip-compressed (`Content-Encoding: gzip`).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, padding: usize) -> Value {
        json!({"object": "audit_log_event", "id": format!("event_{n}"), "organization_id": "org_1",
               "sequence": n, "action": "user.created", "occurred_at": "2026-08-01T10:00:00.000Z",
               "received_at": "2026-08-01T10:00:00.100Z", "actor": {"id": "user_1", "type": "user"},
               "targets": [], "context": {"location": "192.0.2.8"},
               "metadata": {"pad": "x".repeat(padding)}})
    }

    #[test]
    fn records_take_their_columns_from_the_event_and_their_body_from_the_format() {
        let event = event(4, 1);
        let [call] = calls(std::slice::from_ref(&event), EventFormat::Workos)
            .try_into()
            .expect("one call");
        let body: Value = serde_json::from_slice(&call.body()).expect("json");
        assert_eq!(
            body,
            json!([{"TimeGenerated": "2026-08-01T10:00:00.000Z", "EventId": "event_4",
                    "OrganizationId": "org_1", "Sequence": 4, "Action": "user.created",
                    "Object": "audit_log_event", "Event": event}])
        );

        let ocsf = calls(std::slice::from_ref(&event), EventFormat::Ocsf);
        let body: Value = serde_json::from_slice(&ocsf[0].body()).expect("json");
        assert_eq!(body[0]["TimeGenerated"], "2026-08-01T10:00:00.000Z");
        assert_eq!(body[0]["EventId"], "event_4");
        assert_eq!(body[0]["Event"]["class_uid"], 6003);
        assert_eq!(body[0]["Event"]["unmapped"], event);

        let checkpoint = json!({"object": "ledger_checkpoint", "organization_id": "org_1",
                                "tree_size": 9, "checkpoint": "note", "created_at": "2026-08-01T11:00:00.000Z"});
        let record = record(&checkpoint, &checkpoint);
        assert_eq!(
            (
                &record["TimeGenerated"],
                &record["EventId"],
                &record["Object"]
            ),
            (
                &json!("2026-08-01T11:00:00.000Z"),
                &json!("checkpoint_9"),
                &json!("ledger_checkpoint")
            )
        );
        assert!(record.get("Sequence").is_none());
    }

    #[test]
    fn calls_stay_under_a_megabyte_in_order_and_split_in_halves() {
        let events: Vec<Value> = (0..40).map(|n| event(n, 100_000)).collect();
        let calls = calls(&events, EventFormat::Workos);
        assert!(calls.len() >= 4, "{} calls", calls.len());
        let mut sequences = Vec::new();
        for call in &calls {
            let body = call.body();
            assert!(body.len() <= MAX_BYTES, "{} bytes", body.len());
            let records: Vec<Value> = serde_json::from_slice(&body).expect("json");
            assert_eq!(records.len(), call.events());
            sequences.extend(records.iter().filter_map(|r| r["Sequence"].as_u64()));
        }
        assert_eq!(sequences, (0..40).collect::<Vec<u64>>());

        let (first, second) = calls[0].clone().split();
        assert_eq!(first.events() + second.events(), calls[0].events());
        assert!(first.events() >= second.events() && second.events() >= 1);

        let huge = event(7, MAX_BYTES);
        let cut = super::calls(std::slice::from_ref(&huge), EventFormat::Workos);
        let body: Value = serde_json::from_slice(&cut[0].body()).expect("json");
        assert_eq!(
            body[0]["Event"],
            json!({"id": "event_7", "sequence": 7, "truncated": true})
        );
        assert_eq!(body[0]["EventId"], "event_7");
    }
}
