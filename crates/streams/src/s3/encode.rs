//! What an object-store stream writes (pure): one object per event, as WorkOS writes them, or
//! one gzip NDJSON object per batch.
//!
//! - `object_per_event` (the default): key `<prefix><YYYY-MM-DD>/<occurred_at>_<event id>.json`
//!   (WorkOS: `YYYY-MM-DD/{timestamp}_{keySuffix}.json`), body the pretty-printed event object;
//! - `ndjson_gzip`: key `<prefix><YYYY-MM-DD>/<first sequence>-<last sequence>.ndjson.gz`
//!   (sequences zero-padded to 20 digits, so keys sort in log order), body gzip of one event
//!   object per line.
//!
//! Keys are derived from the events alone, so a batch sent again after a failure overwrites the
//! same objects instead of duplicating them.

use std::io::Write;

use serde_json::Value;

use crate::format::EventFormat;

/// Events written per attempt in `object_per_event` layout (PUTs run a few at a time).
pub const MAX_OBJECTS: usize = 64;
/// Events per gzip NDJSON object.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Uncompressed NDJSON bytes per gzip object: objects stay small enough for a reader to fetch
/// and unpack in one go (the last event may pass it; one event is never split).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// One object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    /// How many of the attempt's events, from where the previous object ended, it holds.
    pub events: usize,
}

/// The object for a signed checkpoint (`{"tree_size", "checkpoint": <signed note>, …}`):
/// `<prefix>checkpoints/<tree size, 20 digits>`, holding the signed note as it was signed, so a
/// customer can give the file to `trailmark verify --checkpoint`; the names sort by size.
pub fn checkpoint_object(checkpoint: &Value, prefix: &str) -> Object {
    Object {
        key: format!(
            "{prefix}checkpoints/{:020}",
            checkpoint["tree_size"].as_u64().unwrap_or_default()
        ),
        body: checkpoint["checkpoint"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        content_type: "text/plain",
        content_encoding: None,
        events: 1,
    }
}

/// The objects for the events of one attempt, in log order: one per event (up to
/// [`MAX_OBJECTS`]), or one gzip NDJSON object of up to [`MAX_BATCH_EVENTS`] events and about
/// [`MAX_BATCH_BYTES`]. Bodies hold each event's body in `format`; keys come from the event
/// objects whatever the format.
pub fn objects(
    events: &[Value],
    prefix: &str,
    ndjson_gzip: bool,
    format: EventFormat,
) -> Vec<Object> {
    if ndjson_gzip {
        let mut text = Vec::new();
        let mut count = 0usize;
        for event in events.iter().take(MAX_BATCH_EVENTS) {
            if count > 0 && text.len() >= MAX_BATCH_BYTES {
                break;
            }
            let _ = writeln!(text, "{}", format.body(event));
            count += 1;
        }
        let (Some(first), Some(last)) = (
            events.first(),
            count.checked_sub(1).and_then(|i| events.get(i)),
        ) else {
            return Vec::new();
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(&text);
        let body = encoder.finish().unwrap_or_default();
        let key = format!(
            "{prefix}{}/{:020}-{:020}.ndjson.gz",
            day(first),
            first["sequence"].as_u64().unwrap_or_default(),
            last["sequence"].as_u64().unwrap_or_default()
        );
        vec![Object {
            key,
            body,
            content_type: "application/x-ndjson",
            content_encoding: Some("gzip"),
            events: count,
        }]
    } else {
        events
            .iter()
            .take(MAX_OBJECTS)
            .map(|event| Object {
                key: format!(
                    "{prefix}{}/{}_{}.json",
                    day(event),
                    event["occurred_at"].as_str().unwrap_or_default(),
                    event["id"].as_str().unwrap_or_default()
                ),
                body: serde_json::to_vec_pretty(&format.body(event)).unwrap_or_default(),
                content_type: "application/json",
                content_encoding: None,
                events: 1,
            })
            .collect()
    }
}

fn day(event: &Value) -> &str {
    event["occurred_at"]
        .as_str()
        .and_then(|t| t.get(..10))
        .unwrap_or("undated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_workos_and_sort_in_log_order() {
        let events = [
            json!({"id": "event_A", "sequence": 7, "occurred_at": "2026-08-01T10:00:00.000Z"}),
            json!({"id": "event_B", "sequence": 8, "occurred_at": "2026-08-02T11:00:00.000Z"}),
        ];
        let per_event = objects(&events, "audit/", false, EventFormat::Workos);
        assert_eq!(
            per_event[0].key,
            "audit/2026-08-01/2026-08-01T10:00:00.000Z_event_A.json"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&per_event[1].body).expect("json"),
            events[1]
        );
        let batch = objects(&events, "", true, EventFormat::Workos);
        assert_eq!(batch.len(), 1);
        assert_eq!(
            batch[0].key,
            "2026-08-01/00000000000000000007-00000000000000000008.ndjson.gz"
        );
        assert_eq!(batch[0].events, 2);
    }

    #[test]
    fn a_gzip_object_stops_at_its_byte_limit_and_says_how_many_events_it_holds() {
        let padding = "x".repeat(MAX_BATCH_BYTES / 3);
        let events: Vec<Value> = (0..5)
            .map(|n| json!({"sequence": n, "occurred_at": "2026-08-01T10:00:00.000Z", "metadata": {"pad": padding}}))
            .collect();
        let batch = objects(&events, "", true, EventFormat::Workos);
        assert_eq!(
            batch[0].events, 3,
            "the third event passes the limit and ends the object"
        );
        assert!(
            batch[0]
                .key
                .ends_with("00000000000000000000-00000000000000000002.ndjson.gz")
        );
    }
}
