//! The event object: the one JSON shape of a stored event wherever it is read — the search API,
//! exports, log streams and (later) the ledger's leaves.
//!
//! ```json
//! {"object": "audit_log_event", "id": "event_01…", "organization_id": "org_01…", "sequence": 41,
//!  "action": "user.signed_in", "occurred_at": "2026-08-01T10:00:00.000Z",
//!  "received_at": "2026-08-01T10:00:00.120Z", "version": null,
//!  "actor": {"id": "user_1", "type": "user", "name": "Jon Smith"},
//!  "targets": [{"id": "team_1", "type": "team"}],
//!  "context": {"location": "192.0.2.8", "user_agent": "Firefox"}, "metadata": {"plan": "pro"}}
//! ```
//!
//! `version` is the schema version the client named (`null` if none); `metadata` is `null`
//! when the event had none. Actor and targets are as submitted (`name` and `metadata` only when
//! given). Events stored since leaf version 2 also carry `salt` (the seed of the salts that
//! commit to their personal data) and, once erased, `salts` and `erased` instead
//! (`trailmark_ledger::commit`): a verifier needs them to recompute the leaf hash. Compatibility
//! rule: keys may be added, never removed or renamed.

use serde_json::{Map, Value, json};

use crate::Timestamp;

/// Where a stored event sits: what the store adds to the submitted event.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub sequence: u64,
    pub received_at: Timestamp,
}

/// The event object for a stored event whose normalized JSON (`NewEvent::to_json`) is `body`.
pub fn event_object(placement: Placement<'_>, body: &Value) -> Value {
    into_event_object(placement, body.clone())
}

/// [`event_object`], taking the body's parts instead of copying them (bulk reads build one
/// object per event and need the body no more).
pub fn into_event_object(placement: Placement<'_>, body: Value) -> Value {
    let mut body = match body {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut object = Map::new();
    object.insert("object".into(), json!("audit_log_event"));
    object.insert("id".into(), json!(placement.id));
    object.insert("organization_id".into(), json!(placement.organization_id));
    object.insert("sequence".into(), json!(placement.sequence));
    object.insert("action".into(), take(&mut body, "action"));
    object.insert("occurred_at".into(), take(&mut body, "occurred_at"));
    object.insert(
        "received_at".into(),
        json!(placement.received_at.to_string()),
    );
    object.insert("version".into(), take(&mut body, "version"));
    object.insert("actor".into(), take(&mut body, "actor"));
    object.insert(
        "targets".into(),
        body.remove("targets").unwrap_or_else(|| json!([])),
    );
    object.insert("context".into(), take(&mut body, "context"));
    object.insert("metadata".into(), take(&mut body, "metadata"));
    // Leaf version 2's salts and commitments (`trailmark_ledger::commit`), when the event has them.
    for key in ["salt", "salts", "erased"] {
        if let Some(value) = body.remove(key) {
            object.insert(key.into(), value);
        }
    }
    Value::Object(object)
}

/// The canonical JSON (`canonical`) of [`event_object`]`(placement, body)`, written from the
/// parts without building the object, and where the `sequence` number's digits start in it: an
/// event's leaf is computed once per append, so this is on the ingest path.
pub fn canonical_event_object(placement: Placement<'_>, body: &Value) -> (Vec<u8>, usize) {
    static NO_TARGETS: Value = Value::Array(Vec::new());
    let part = |name: &str| body.get(name).unwrap_or(&Value::Null);
    // Keys in canonical (byte) order.
    let mut writer = crate::canonical::ObjectWriter::new(1024);
    writer.member("action", part("action"));
    writer.member("actor", part("actor"));
    writer.member("context", part("context"));
    writer.string_member("id", placement.id);
    writer.member("metadata", part("metadata"));
    writer.string_member("object", "audit_log_event");
    writer.member("occurred_at", part("occurred_at"));
    writer.string_member("organization_id", placement.organization_id);
    writer.string_member("received_at", &placement.received_at.to_string());
    let at = writer.integer_member("sequence", placement.sequence);
    writer.member("targets", body.get("targets").unwrap_or(&NO_TARGETS));
    writer.member("version", part("version"));
    (writer.finish(), at)
}

fn take(body: &mut Map<String, Value>, name: &str) -> Value {
    body.remove(name).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_event_object_is_the_event_object_canonicalized() {
        let bodies = [
            json!({"action": "a.b", "occurred_at": "2026-08-01T10:00:00.000Z", "version": 2,
                   "actor": {"id": "u", "type": "user", "metadata": {"sequence": 0, "z": "\u{1}é"}},
                   "targets": [{"id": "t", "type": "team"}], "context": {"location": "::1"},
                   "metadata": {"b": "2", "a": "1"}}),
            json!({"action": "a.b", "occurred_at": "2026-08-01T10:00:00.000Z",
                   "actor": {"id": "u", "type": "user"}, "context": {"location": "::1"}}),
        ];
        for body in bodies {
            for sequence in [0, 7, 1 << 40] {
                let placement = Placement {
                    id: "event_1",
                    organization_id: "org_1",
                    sequence,
                    received_at: Timestamp::from_unix_millis(1_000),
                };
                let (bytes, at) = canonical_event_object(placement, &body);
                assert_eq!(
                    bytes,
                    crate::canonical::canonical_json(&event_object(placement, &body))
                );
                assert!(bytes[at..].starts_with(sequence.to_string().as_bytes()));
            }
        }
    }

    #[test]
    fn adds_placement_and_fixes_the_shape() {
        let body = json!({"action": "a.b", "occurred_at": "2026-08-01T10:00:00.000Z", "actor": {"id": "u", "type": "user"},
                          "targets": [], "context": {"location": "::1"}});
        let placement = Placement {
            id: "event_1",
            organization_id: "org_1",
            sequence: 3,
            received_at: Timestamp::from_unix_millis(0),
        };
        let object = event_object(placement, &body);
        assert_eq!(object["object"], "audit_log_event");
        assert_eq!(object["sequence"], 3);
        assert_eq!(object["received_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(object["version"], Value::Null);
        assert_eq!(object["metadata"], Value::Null);
        assert_eq!(object.as_object().map(Map::len), Some(12));
    }
}
