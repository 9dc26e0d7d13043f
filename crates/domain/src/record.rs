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
use crate::canonical::{ObjectWriter, write_map, write_string};
use crate::event::NewEvent;
use crate::metadata::Metadata;

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

/// [`canonical_event_object`] of `event`'s normalized JSON, written straight from its fields:
/// the same bytes, without building the JSON first. Every appended event's leaf starts here.
pub fn canonical_event_object_of(placement: Placement<'_>, event: &NewEvent) -> (Vec<u8>, usize) {
    let mut writer = ObjectWriter::new(1024);
    writer.string_member("action", event.action());
    write_actor(writer.raw_member("actor"), event, Style::Canonical);
    write_context(writer.raw_member("context"), event);
    writer.string_member("id", placement.id);
    match event.metadata() {
        Some(metadata) => write_metadata(writer.raw_member("metadata"), metadata, Style::Canonical),
        None => writer.raw_member("metadata").extend_from_slice(b"null"),
    }
    writer.string_member("object", "audit_log_event");
    writer.string_member("occurred_at", &event.occurred_at().to_string());
    writer.string_member("organization_id", placement.organization_id);
    writer.string_member("received_at", &placement.received_at.to_string());
    let at = writer.integer_member("sequence", placement.sequence);
    write_targets(writer.raw_member("targets"), event, Style::Canonical);
    match event.version() {
        Some(version) => {
            writer.integer_member("version", u64::from(version));
        }
        None => writer.raw_member("version").extend_from_slice(b"null"),
    }
    (writer.finish(), at)
}

/// The body an event is stored as: its normalized JSON (`NewEvent::into_json`) with its
/// leaf-version-2 `salt`, as `serde_json` writes that value (compact, members in byte order),
/// written straight from the fields.
pub fn stored_body(event: &NewEvent, salt: &str) -> String {
    let out = event_json(event, Some(salt), Style::Stored);
    // Only whole UTF-8 texts and ASCII went in.
    String::from_utf8(out).unwrap_or_default()
}

/// The canonical JSON of `event`'s normalized JSON (`canonical_json(&event.to_json())`),
/// written straight from its fields: what a single event's idempotency identity hashes.
pub fn canonical_event_json(event: &NewEvent) -> Vec<u8> {
    event_json(event, None, Style::Canonical)
}

/// An event's normalized JSON, with `salt` when given, its members in byte order (which for
/// these ASCII keys is canonical order too).
fn event_json(event: &NewEvent, salt: Option<&str>, style: Style) -> Vec<u8> {
    let mut out = Vec::with_capacity(768);
    out.extend_from_slice(b"{\"action\":");
    write_string(event.action(), &mut out);
    out.extend_from_slice(b",\"actor\":");
    write_actor(&mut out, event, style);
    out.extend_from_slice(b",\"context\":");
    write_context(&mut out, event);
    if let Some(metadata) = event.metadata() {
        out.extend_from_slice(b",\"metadata\":");
        write_metadata(&mut out, metadata, style);
    }
    out.extend_from_slice(b",\"occurred_at\":");
    write_string(&event.occurred_at().to_string(), &mut out);
    if let Some(salt) = salt {
        out.extend_from_slice(b",\"salt\":");
        write_string(salt, &mut out);
    }
    out.extend_from_slice(b",\"targets\":");
    write_targets(&mut out, event, style);
    if let Some(version) = event.version() {
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(version.to_string().as_bytes());
    }
    out.push(b'}');
    out
}

/// How metadata values are written: as `serde_json` writes them (a stored body) or in
/// canonical form (a leaf). Strings are escaped the same way by both, so only metadata, the one
/// part of an event that holds arbitrary JSON, differs.
#[derive(Clone, Copy)]
enum Style {
    Stored,
    Canonical,
}

fn write_metadata(out: &mut Vec<u8>, metadata: &Metadata, style: Style) {
    match style {
        // Serializing a JSON map into memory cannot fail.
        Style::Stored => {
            let _ = serde_json::to_writer(&mut *out, metadata.as_map());
        }
        Style::Canonical => write_map(metadata.as_map(), out),
    }
}

fn write_actor(out: &mut Vec<u8>, event: &NewEvent, style: Style) {
    let actor = event.actor();
    let (name, metadata) = (actor.name.as_deref(), actor.metadata.as_ref());
    write_party(out, [&actor.id, &actor.kind], name, metadata, style);
}

/// An actor or a target (`[id, type]`, then the optional parts): its members in byte order,
/// which for these ASCII keys is canonical order too.
fn write_party(
    out: &mut Vec<u8>,
    [id, kind]: [&str; 2],
    name: Option<&str>,
    metadata: Option<&Metadata>,
    style: Style,
) {
    out.extend_from_slice(b"{\"id\":");
    write_string(id, out);
    if let Some(metadata) = metadata {
        out.extend_from_slice(b",\"metadata\":");
        write_metadata(out, metadata, style);
    }
    if let Some(name) = name {
        out.extend_from_slice(b",\"name\":");
        write_string(name, out);
    }
    out.extend_from_slice(b",\"type\":");
    write_string(kind, out);
    out.push(b'}');
}

fn write_targets(out: &mut Vec<u8>, event: &NewEvent, style: Style) {
    out.push(b'[');
    for (index, target) in event.targets().iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let (name, metadata) = (target.name.as_deref(), target.metadata.as_ref());
        write_party(out, [&target.id, &target.kind], name, metadata, style);
    }
    out.push(b']');
}

fn write_context(out: &mut Vec<u8>, event: &NewEvent) {
    let context = event.context();
    out.extend_from_slice(b"{\"location\":");
    write_string(&context.location, out);
    if let Some(user_agent) = &context.user_agent {
        out.extend_from_slice(b",\"user_agent\":");
        write_string(user_agent, out);
    }
    out.push(b'}');
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
                let placement = placement_at(sequence);
                let (bytes, at) = canonical_event_object(placement, &body);
                assert_eq!(
                    bytes,
                    crate::canonical::canonical_json(&event_object(placement, &body))
                );
                assert!(bytes[at..].starts_with(sequence.to_string().as_bytes()));
            }
        }
    }

    fn placement_at(sequence: u64) -> Placement<'static> {
        Placement {
            id: "event_1",
            organization_id: "org_1",
            sequence,
            received_at: Timestamp::from_unix_millis(1_000),
        }
    }

    /// Events whose every optional part is present or absent, with texts that need escapes,
    /// characters outside the BMP, and numbers serde_json and canonical form write differently.
    fn varied_events() -> Vec<NewEvent> {
        let awkward = "q\"b\\c/\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f} é 😀 \u{fb33}";
        [
            json!({"action": "a.b", "occurred_at": "2026-08-01T10:00:00.000Z", "targets": [],
                   "actor": {"id": "u", "type": "user"}, "context": {"location": "::1"}}),
            json!({"action": "user.signed_in", "occurred_at": "2026-08-01T10:00:00.123Z", "version": 3,
                   "actor": {"id": awkward, "type": "user", "name": awkward,
                             "metadata": {"z": 1.0, "a": -0.5, "big": 12345678901234567890u64,
                                          "small": 1e-7, "huge": 1e21, "n": -3, "t": true,
                                          "s": awkward}},
                   "targets": [{"id": "t1", "type": "team"},
                               {"id": "t2", "type": awkward, "name": "x",
                                "metadata": {"k-1": "v", "K_2": 0.1}}],
                   "context": {"location": "192.0.2.8", "user_agent": awkward},
                   "metadata": {"b": "2", "a": "1", "f": 2.5e300, "false": false}}),
        ]
        .iter()
        .map(|value| NewEvent::parse(value).expect("a valid event"))
        .collect()
    }

    #[test]
    fn the_event_object_written_from_an_events_fields_is_the_one_written_from_its_json() {
        for event in varied_events() {
            for sequence in [0, 7, 1 << 40] {
                let placement = placement_at(sequence);
                assert_eq!(
                    canonical_event_object_of(placement, &event),
                    canonical_event_object(placement, &event.to_json())
                );
            }
        }
    }

    #[test]
    fn an_events_canonical_json_written_from_its_fields_is_the_one_written_from_its_json() {
        for event in varied_events() {
            assert_eq!(
                canonical_event_json(&event),
                crate::canonical::canonical_json(&event.to_json())
            );
        }
    }

    #[test]
    fn the_stored_body_is_the_events_json_with_its_salt_as_serde_json_writes_it() {
        for event in varied_events() {
            let mut body = event.to_json();
            if let Value::Object(map) = &mut body {
                map.insert("salt".into(), json!("c2VlZA=="));
            }
            assert_eq!(
                stored_body(&event, "c2VlZA=="),
                serde_json::to_string(&body).expect("JSON")
            );
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
