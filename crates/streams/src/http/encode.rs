//! Generic HTTPS destination: WorkOS's envelope per event,
//! `{"event": <event object>, "keySuffix": <event id>, "timestamp": <occurred_at>, "source": <source>}`,
//! as a JSON array (`Content-Type: application/json`) or one per line (`application/x-ndjson`),
//! signed the Standard Webhooks way so the receiver can check it came from this stream:
//!
//! - `webhook-id`: `<stream id>_<first sequence>_<last sequence>`, the same on every retry of a
//!   batch, so receivers can de-duplicate (`<stream id>_checkpoint_<tree size>` for the signed
//!   checkpoints a stream also delivers, whose envelope's `event` is the checkpoint object);
//! - `webhook-timestamp`: Unix seconds of the attempt;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, where the key is
//!   the base64-decoded part of the stream's `whsec_…` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::format::EventFormat;

/// Events per request at most: everything one read of the log returns
/// ([`crate::worker`]'s batch), so no read is thrown away half sent.
pub const MAX_EVENTS: usize = 1_000;
/// Bytes per request body at most (a body always holds at least one event).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// The body for the longest prefix of `events` that fits the limits, and how many it holds;
/// each envelope's `event` is the event's body in `format`.
pub fn encode(
    events: &[Value],
    ndjson: bool,
    source: &str,
    format: EventFormat,
) -> (Vec<u8>, usize) {
    let mut items: Vec<Vec<u8>> = Vec::new();
    let mut size = 2;
    let source = Value::from(source).to_string();
    for event in events.iter().take(MAX_EVENTS) {
        let item = envelope_bytes(event, &source, format);
        if !items.is_empty() && size + item.len() + 1 > MAX_BYTES {
            break;
        }
        size += item.len() + 1;
        items.push(item);
    }
    let count = items.len();
    let body = if ndjson {
        items
            .into_iter()
            .flat_map(|mut item| {
                item.push(b'\n');
                item
            })
            .collect()
    } else {
        let mut body = vec![b'['];
        body.extend(items.join(&b','));
        body.push(b']');
        body
    };
    (body, count)
}

/// WorkOS's Generic HTTPS item for one event object, `{"event", "keySuffix", "source",
/// "timestamp"}`, serialized straight from the event rather than through a copy of it (keys in
/// the order `serde_json` sorts them); `source` is already a JSON string. A signed checkpoint
/// travels in the same envelope: `keySuffix` `checkpoint_<tree size>`, `timestamp` when it was
/// signed. `keySuffix` and `timestamp` come from the event object whatever `format` says.
fn envelope_bytes(event: &Value, source: &str, format: EventFormat) -> Vec<u8> {
    if event["object"] == "ledger_checkpoint" {
        let key_suffix = Value::from(format!(
            "checkpoint_{}",
            event["tree_size"].as_u64().unwrap_or_default()
        ));
        return format!(
            r#"{{"event":{event},"keySuffix":{key_suffix},"source":{source},"timestamp":{}}}"#,
            event["created_at"]
        )
        .into_bytes();
    }
    format!(
        r#"{{"event":{},"keySuffix":{},"source":{source},"timestamp":{}}}"#,
        format.body(event),
        event["id"],
        event["occurred_at"]
    )
    .into_bytes()
}

/// The `webhook-signature` value for a body, or `None` if the secret is not `whsec_<base64>`.
pub fn signature(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_ndjson_bodies_hold_workos_envelopes() {
        let events = [
            json!({"id": "event_1", "occurred_at": "t", "sequence": 0}),
            json!({"id": "event_2", "occurred_at": "u", "sequence": 1}),
        ];
        let (json_body, count) = encode(&events, false, "acme", EventFormat::Workos);
        assert_eq!(count, 2);
        let parsed: Value = serde_json::from_slice(&json_body).expect("json");
        assert_eq!(
            parsed[1],
            json!({"event": events[1], "keySuffix": "event_2", "timestamp": "u", "source": "acme"})
        );
        let (ndjson_body, _) = encode(&events, true, "acme", EventFormat::Workos);
        let lines: Vec<Value> = ndjson_body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("line"))
            .collect();
        assert_eq!(lines, parsed.as_array().cloned().unwrap_or_default());
    }

    fn envelope(event: &Value, source: &str) -> Value {
        json!({"event": event, "keySuffix": event["id"], "timestamp": event["occurred_at"], "source": source})
    }

    #[test]
    fn envelopes_are_written_as_serde_json_writes_them() {
        let event = json!({"id": "event_1", "occurred_at": "2026-08-01T10:00:00.000Z", "sequence": 3,
                           "metadata": {"note": "quote \" and \u{e9}"}});
        assert_eq!(
            envelope_bytes(
                &event,
                &Value::from("acme \"app\"").to_string(),
                EventFormat::Workos
            ),
            envelope(&event, "acme \"app\"").to_string().into_bytes()
        );
    }

    #[test]
    fn the_signature_follows_standard_webhooks() {
        // Worked example from the Standard Webhooks specification's reference implementation.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(signature("plain", "id", 1, body), None);
    }
}
