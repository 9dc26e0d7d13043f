//! Datadog logs intake (API v2, "Send logs": `POST https://http-intake.logs.<site>/api/v2/logs`,
//! header `DD-API-KEY`, answers 202). The body is a JSON array of log items
//! `{"ddsource", "ddtags", "hostname", "service", "message"}`. WorkOS's documentation shows the
//! event object itself as `message`; Datadog's API types `message` as a string, so it carries the
//! event object's JSON text, which Datadog's pipelines parse back into attributes.
//!
//! Limits (Datadog docs): at most 1,000 items and 5 MB uncompressed per request, 1 MB per item.

use serde_json::{Value, json};

use crate::format::EventFormat;

pub const MAX_EVENTS: usize = 1_000;
pub const MAX_BYTES: usize = 5_000_000;
pub const MAX_ITEM_BYTES: usize = 1_000_000;

/// The logs-intake URL of a Datadog site.
pub fn intake_url(site: &str) -> String {
    format!("https://http-intake.logs.{site}/api/v2/logs")
}

/// The body for the longest prefix of `events` within the limits, and how many it holds. An
/// event too large for one Datadog item is sent truncated to its id and sequence, with a
/// `truncated` tag, rather than blocking the stream forever. `message` is the event's body in
/// `format`; tags come from the event object.
pub fn encode(events: &[Value], source: &str, format: EventFormat) -> (Vec<u8>, usize) {
    let mut items = Vec::new();
    let mut size = 2;
    for event in events.iter().take(MAX_EVENTS) {
        let mut item = self::item(event, &format.body(event), source).to_string();
        if item.len() > MAX_ITEM_BYTES {
            let stub = json!({"id": event["id"], "sequence": event["sequence"], "truncated": true});
            let mut shrunk = self::item(&stub, &stub, source);
            shrunk["ddtags"] = json!(format!(
                "{},truncated:true",
                shrunk["ddtags"].as_str().unwrap_or_default()
            ));
            item = shrunk.to_string();
        }
        if !items.is_empty() && size + item.len() + 1 > MAX_BYTES {
            break;
        }
        size += item.len() + 1;
        items.push(item);
    }
    (format!("[{}]", items.join(",")).into_bytes(), items.len())
}

/// The log item for `event`, carrying `body` as its message.
fn item(event: &Value, body: &Value, source: &str) -> Value {
    let organization = event["organization_id"].as_str().unwrap_or("");
    // A signed checkpoint travels the same way, tagged as what it is.
    let tags = match event["object"].as_str() {
        Some("ledger_checkpoint") => {
            format!("organization_id:{organization},object:ledger_checkpoint")
        }
        _ => format!(
            "organization_id:{organization},action:{}",
            event["action"].as_str().unwrap_or("")
        ),
    };
    json!({
        "ddsource": source,
        "ddtags": tags,
        "hostname": "trailmark",
        "service": "audit-logs",
        "message": body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_carry_the_event_as_message_text() {
        let event =
            json!({"id": "event_1", "organization_id": "org_1", "action": "a.b", "sequence": 4});
        let (body, count) = encode(std::slice::from_ref(&event), "acme", EventFormat::Workos);
        assert_eq!(count, 1);
        let items: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(items[0]["ddsource"], "acme");
        assert_eq!(items[0]["service"], "audit-logs");
        assert_eq!(items[0]["ddtags"], "organization_id:org_1,action:a.b");
        let message: Value = serde_json::from_str(items[0]["message"].as_str().unwrap_or_default())
            .expect("message");
        assert_eq!(message, event);
    }

    #[test]
    fn batches_respect_the_item_count() {
        let events: Vec<Value> = (0..1_500)
            .map(|n| json!({"id": format!("event_{n}"), "sequence": n}))
            .collect();
        assert_eq!(encode(&events, "s", EventFormat::Workos).1, MAX_EVENTS);
    }
}
