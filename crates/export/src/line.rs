//! One stored event as an export line, written from its stored body text.
//!
//! The stored body is serde_json's compact text of a JSON value (`NewEvent::to_json`, keys in
//! byte order), so each of its members' text is exactly what serializing that member again
//! would give. A line is therefore assembled from those texts plus the fields the store adds,
//! in the key order serde_json writes the event object ([`StoredEvent::to_object`]) in, without
//! building a JSON tree per event. A body that does not split into the expected members (not
//! an object, a member of an unexpected shape), and a purged stub, take the general path
//! through the event object instead: the output is the same either way. OCSF lines always take
//! the general path, since they are built around the event object.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;
use trailmark_domain::export::{ExportFormat, write_csv_row};
use trailmark_ledger::encode_hash;
use trailmark_store::{Hash, RawEvent, StoreError, StoredEvent};

/// Appends `event` to `out` in `format`, with its `inclusion_proof` when given.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if the stored body is not JSON.
pub(crate) fn write_event(
    format: ExportFormat,
    event: RawEvent,
    proof: Option<&[Hash]>,
    out: &mut String,
) -> Result<(), StoreError> {
    if event.purged_at.is_none() {
        let start = out.len();
        if write_from_parts(format, &event, proof, out).is_some() {
            return Ok(());
        }
        out.truncate(start);
    }
    let mut object = into_object(event.decode()?);
    if let Some(proof) = proof {
        object["inclusion_proof"] = Value::Array(
            proof
                .iter()
                .map(|h| Value::String(encode_hash(h)))
                .collect(),
        );
    }
    format.write(&object, out);
    Ok(())
}

/// The members of a stored body the event object takes, each as its JSON text; `None` when
/// absent, `Some("null")` when null.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    action: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    occurred_at: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    version: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    actor: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    targets: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    context: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    metadata: Option<&'a RawValue>,
    /// Leaf version 2's seed, or salts and commitments (`trailmark_ledger::commit`).
    #[serde(borrow, default, deserialize_with = "present")]
    salt: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    salts: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    erased: Option<&'a RawValue>,
}

/// The actor's members a CSV row shows.
#[derive(Deserialize, Default)]
struct Actor<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    metadata: Option<&'a RawValue>,
}

/// The context's members a CSV row shows.
#[derive(Deserialize, Default)]
struct Context<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    location: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    user_agent: Option<&'a RawValue>,
}

/// A member that is present, null included (an `Option` alone would read null as absent).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Writes the line from the body's member texts; `None` (with `out` partly written) when the
/// body does not split as expected.
fn write_from_parts(
    format: ExportFormat,
    event: &RawEvent,
    proof: Option<&[Hash]>,
    out: &mut String,
) -> Option<()> {
    let body: Body<'_> = serde_json::from_str(&event.body).ok()?;
    match format {
        ExportFormat::Ndjson => ndjson_line(event, &body, proof, out),
        ExportFormat::Csv => csv_row(event, &body, out)?,
        // An OCSF event is a new tree around the event object, which the general path builds.
        ExportFormat::Ocsf => return None,
    }
    Some(())
}

/// The event object's keys in serde_json's order (byte order), `inclusion_proof` included.
fn ndjson_line(event: &RawEvent, body: &Body<'_>, proof: Option<&[Hash]>, out: &mut String) {
    out.push_str("{\"action\":");
    out.push_str(json_or(body.action, "null"));
    out.push_str(",\"actor\":");
    out.push_str(json_or(body.actor, "null"));
    out.push_str(",\"context\":");
    out.push_str(json_or(body.context, "null"));
    optional_member("erased", body.erased, out);
    out.push_str(",\"id\":");
    push_json_string(&event.id, out);
    if let Some(proof) = proof {
        out.push_str(",\"inclusion_proof\":[");
        for (index, hash) in proof.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(&encode_hash(hash));
            out.push('"');
        }
        out.push(']');
    }
    out.push_str(",\"leaf_hash\":\"");
    out.push_str(&encode_hash(&event.leaf_hash));
    out.push_str("\",\"metadata\":");
    out.push_str(json_or(body.metadata, "null"));
    out.push_str(",\"object\":\"audit_log_event\",\"occurred_at\":");
    out.push_str(json_or(body.occurred_at, "null"));
    out.push_str(",\"organization_id\":");
    push_json_string(&event.organization_id, out);
    // Writing to a String cannot fail.
    let _ = write!(out, ",\"received_at\":\"{}\"", event.received_at);
    optional_member("salt", body.salt, out);
    optional_member("salts", body.salts, out);
    let _ = write!(out, ",\"sequence\":{},\"targets\":", event.sequence);
    out.push_str(json_or(body.targets, "[]"));
    out.push_str(",\"version\":");
    out.push_str(json_or(body.version, "null"));
    out.push_str("}\n");
}

/// `,"key":value` when the body has the member.
fn optional_member(key: &str, raw: Option<&RawValue>, out: &mut String) {
    if let Some(raw) = raw {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        out.push_str(raw.get());
    }
}

/// The row `trailmark_domain::export::csv_row` writes for the event object.
fn csv_row(event: &RawEvent, body: &Body<'_>, out: &mut String) -> Option<()> {
    let actor: Actor<'_> = object_members(body.actor)?;
    let context: Context<'_> = object_members(body.context)?;
    let cells = [
        Cow::Borrowed(event.id.as_str()),
        Cow::Borrowed(event.organization_id.as_str()),
        Cow::Owned(event.sequence.to_string()),
        text(body.occurred_at)?,
        Cow::Owned(event.received_at.to_string()),
        text(body.action)?,
        text(body.version)?,
        text(actor.id)?,
        text(actor.kind)?,
        text(actor.name)?,
        Cow::Borrowed(json_cell(actor.metadata, "")),
        Cow::Borrowed(json_cell(body.targets, "[]")),
        text(context.location)?,
        text(context.user_agent)?,
        Cow::Borrowed(json_cell(body.metadata, "")),
    ];
    write_csv_row(&cells, out);
    Some(())
}

/// The members of an object member (none when it is absent or null, as indexing a JSON value
/// gives); `None` for anything else.
fn object_members<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> Option<T> {
    match raw.map(RawValue::get) {
        None | Some("null") => Some(T::default()),
        Some(text) => serde_json::from_str(text).ok(),
    }
}

/// A member's JSON text, `absent` when missing.
fn json_or<'a>(raw: Option<&'a RawValue>, absent: &'a str) -> &'a str {
    raw.map_or(absent, RawValue::get)
}

/// A CSV cell of JSON: the member's text, `absent` when missing, nothing when null.
fn json_cell<'a>(raw: Option<&'a RawValue>, absent: &'a str) -> &'a str {
    match raw.map(RawValue::get) {
        None => absent,
        Some("null") => "",
        Some(text) => text,
    }
}

/// A CSV cell's text: a string's contents, nothing for null or absent, other values as JSON.
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let json = match raw.map(RawValue::get) {
        None | Some("null") => return Some(Cow::Borrowed("")),
        Some(json) => json,
    };
    match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(contents) if !contents.contains('\\') => Some(Cow::Borrowed(contents)),
        Some(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
        None => Some(Cow::Borrowed(json)),
    }
}

fn push_json_string(text: &str, out: &mut String) {
    if text.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
        out.push_str(&Value::from(text).to_string());
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

/// The event object with its `leaf_hash` ([`StoredEvent::to_object`]), built from the event's
/// own parts rather than copies of them.
fn into_object(event: StoredEvent) -> Value {
    if event.purged_at.is_some() {
        return event.to_object();
    }
    let leaf_hash = encode_hash(&event.leaf_hash);
    let mut object = trailmark_domain::record::into_event_object(
        trailmark_domain::record::Placement {
            id: &event.id,
            organization_id: &event.organization_id,
            sequence: event.sequence,
            received_at: event.received_at,
        },
        event.body,
    );
    object["leaf_hash"] = Value::String(leaf_hash);
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trailmark_domain::Timestamp;
    use trailmark_domain::event::NewEvent;

    /// The equality of the two paths is tested over a store (`tests/lines.rs`); this checks
    /// that a stored body does take the path that copies its text.
    #[test]
    fn a_stored_body_is_written_from_its_parts() {
        let event = NewEvent::parse(&json!({
            "action": "a.b", "occurred_at": "2026-08-01T10:00:00.000Z", "version": 2,
            "actor": {"id": "u\"1", "type": "user", "name": "Jön,\n", "metadata": {"k": "v"}},
            "targets": [{"id": "t", "type": "team"}], "context": {"location": "::1"},
            "metadata": {"n": 1.5}
        }))
        .expect("valid");
        let raw = RawEvent {
            id: "event_1".into(),
            organization_id: "org_1".into(),
            sequence: 4,
            received_at: Timestamp::from_unix_millis(0),
            leaf_hash: [7; 32],
            body: event.to_json().to_string(),
            purged_at: None,
        };
        for format in [ExportFormat::Csv, ExportFormat::Ndjson] {
            let mut out = String::new();
            assert!(write_from_parts(format, &raw, None, &mut out).is_some());
            let mut expected = String::new();
            format.write(
                &raw.clone().decode().expect("JSON").to_object(),
                &mut expected,
            );
            assert_eq!(out, expected);
        }
    }
}
