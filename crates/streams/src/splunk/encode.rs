//! Splunk HTTP Event Collector, event endpoint (`POST <url>/services/collector/event`, header
//! `Authorization: Splunk <token>`, answers `{"text":"Success","code":0}`). The body is HEC's
//! batch format: event objects one after the other (newline-separated), each
//! `{"time": <epoch seconds>, "host", "source", "sourcetype": "_json", "index"?, "event": <event object>}`.

use serde_json::{Value, json};

use crate::format::EventFormat;

pub const MAX_EVENTS: usize = 1_000;
/// HEC's default `max_content_length` is 1 MB; stay under it.
pub const MAX_BYTES: usize = 1_000_000;

/// The event endpoint for a HEC base URL (also accepted: the full endpoint URL).
pub fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/services/collector/event") {
        url.to_owned()
    } else if url.ends_with("/services/collector") {
        format!("{url}/event")
    } else {
        format!("{url}/services/collector/event")
    }
}

/// The body for the longest prefix of `events` within the limits, and how many it holds;
/// `event` is each event's body in `format`, `time` its `occurred_at` whatever the format.
pub fn encode(
    events: &[Value],
    source: &str,
    index: Option<&str>,
    format: EventFormat,
) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut count = 0;
    for event in events.iter().take(MAX_EVENTS) {
        let mut item = json!({
            "time": occurred_seconds(event),
            "host": "trailmark",
            "source": source,
            "sourcetype": "_json",
            "event": format.body(event),
        });
        if let Some(index) = index {
            item["index"] = json!(index);
        }
        let line = item.to_string();
        if count > 0 && body.len() + line.len() + 1 > MAX_BYTES {
            break;
        }
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
        count += 1;
    }
    (body, count)
}

/// `occurred_at` (a checkpoint's `created_at`) as epoch seconds with milliseconds, HEC's
/// `time`.
fn occurred_seconds(event: &Value) -> f64 {
    event["occurred_at"]
        .as_str()
        .or_else(|| event["created_at"].as_str())
        .and_then(|t| trailmark_domain::Timestamp::parse(t).ok())
        .map_or(0.0, |t| t.unix_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_concatenated_hec_objects() {
        let events = [
            json!({"id": "event_1", "occurred_at": "2026-08-01T10:00:00.250Z"}),
            json!({"id": "event_2", "occurred_at": "2026-08-01T10:00:01.000Z"}),
        ];
        let (body, count) = encode(&events, "acme", Some("audit"), EventFormat::Workos);
        assert_eq!(count, 2);
        let items: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(items[0]["time"], json!(1785578400.25));
        assert_eq!(items[0]["event"], events[0]);
        assert_eq!(
            (items[1]["index"].clone(), items[1]["sourcetype"].clone()),
            (json!("audit"), json!("_json"))
        );
        assert_eq!(
            endpoint("https://hec.test:8088/"),
            "https://hec.test:8088/services/collector/event"
        );
        assert_eq!(
            endpoint("https://hec.test/services/collector"),
            "https://hec.test/services/collector/event"
        );
    }
}
