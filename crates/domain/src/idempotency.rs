//! The identity of an ingest request for idempotency (wire doc §2.1): WorkOS forms "a hashed key
//! combining the provided key with the event data", so the same key with the same event replays
//! the first response, and the same key with a *different* event is a new request (no conflict
//! error is documented). Without a key, WorkOS derives one from the content alone; Trailmark does
//! the same, so a blind client retry never stores an event twice.
//!
//! Identity = SHA-256 of, in order: the line `trailmark-idempotency-v1`, the organization id, the
//! key (or nothing, marked distinctly from an empty key), and the RFC 8785 canonical JSON of the
//! payload (the normalized event, or a batch's events) — each length-prefixed so no two
//! different inputs can produce the same byte stream.

use sha2::{Digest, Sha256};

use crate::canonical::canonical_json_array;
use crate::json::Json;

/// How long a stored response is replayed: WorkOS keys expire after 24 hours.
pub const IDEMPOTENCY_WINDOW_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// The identity of a single-event request: of the canonical JSON of the event's normalized JSON
/// (`event.to_json()`), written from its fields rather than through that JSON, as every
/// single-event request computes it.
pub fn event_idempotency_identity(
    organization_id: &str,
    key: Option<&str>,
    event: &crate::event::NewEvent,
) -> [u8; 32] {
    identity_of_canonical(
        organization_id,
        key,
        &crate::record::canonical_event_json(event),
    )
}

/// The identity of a batch request whose events are `events`: of the canonical JSON of them as
/// one array (each read as a `Value` would read it), written without copying them into one.
pub fn batch_idempotency_identity(
    organization_id: &str,
    key: Option<&str>,
    events: &[Json<'_>],
) -> [u8; 32] {
    identity_of_canonical(organization_id, key, &canonical_json_array(events))
}

fn identity_of_canonical(organization_id: &str, key: Option<&str>, canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"trailmark-idempotency-v1\n");
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(organization_id.as_bytes());
    match key {
        Some(key) => {
            field(b"key");
            field(key.as_bytes());
        }
        None => field(b"content"),
    }
    field(canonical);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_json;
    use serde_json::{Value, json};

    /// The identity's definition for any payload: what the functions above compute their way.
    fn idempotency_identity(organization_id: &str, key: Option<&str>, payload: &Value) -> [u8; 32] {
        identity_of_canonical(organization_id, key, &canonical_json(payload))
    }

    #[test]
    fn identity_depends_on_every_part() {
        let event = json!({"action": "a", "n": 1});
        let base = idempotency_identity("org_1", Some("k"), &event);
        assert_eq!(
            base,
            idempotency_identity("org_1", Some("k"), &json!({"n": 1, "action": "a"}))
        );
        assert_ne!(base, idempotency_identity("org_2", Some("k"), &event));
        assert_ne!(base, idempotency_identity("org_1", Some("k2"), &event));
        assert_ne!(base, idempotency_identity("org_1", None, &event));
        assert_ne!(
            idempotency_identity("org_1", Some(""), &event),
            idempotency_identity("org_1", None, &event)
        );
        assert_ne!(
            base,
            idempotency_identity("org_1", Some("k"), &json!({"action": "a", "n": 2}))
        );
    }

    #[test]
    fn an_events_identity_is_that_of_its_normalized_json() {
        let event = crate::event::NewEvent::parse(&json!({
            "action": "user.signed_in", "occurred_at": "2026-08-01T10:00:00Z", "version": 2,
            "actor": {"id": "u\u{1}", "type": "user", "name": "Zoë 😀", "metadata": {"n": 1.0}},
            "targets": [{"id": "t", "type": "team"}],
            "context": {"location": "::1", "user_agent": "UA \"1\""},
            "metadata": {"b": "2", "a": 1e21}
        }))
        .expect("a valid event");
        for key in [Some("k"), None] {
            assert_eq!(
                event_idempotency_identity("org_1", key, &event),
                idempotency_identity("org_1", key, &event.to_json())
            );
        }
    }

    #[test]
    fn a_batch_has_the_identity_of_its_events_as_one_array() {
        // As sent: members out of order, escapes, a number written two ways, a name twice.
        let text =
            br#"[{"n":1,"action":"a"},{"b":[2.0,"x\u00e9"],"a":null,"a":"last","\u00e9":1e2}]"#;
        let events = match Json::parse(text).expect("valid JSON") {
            Json::Array(events) => events,
            other => panic!("an array, not {other:?}"),
        };
        let value: Value = serde_json::from_slice(text).expect("valid JSON");
        for key in [Some("k"), None] {
            assert_eq!(
                batch_idempotency_identity("org_1", key, &events),
                idempotency_identity("org_1", key, &value)
            );
        }
    }
}
