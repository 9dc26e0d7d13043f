//! Request bodies in the official SDK shape. Every event is distinct (its actor and metadata
//! carry a run-wide counter) because Trailmark stores identical content only once, and every
//! request has its own `Idempotency-Key`, as the SDKs send.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::load::Prepared;

/// Hands out event numbers and idempotency keys that never repeat within a run, nor across
/// runs (the run id), whichever part asks.
pub struct Events {
    next: AtomicU64,
    run_id: String,
}

impl Events {
    pub fn new() -> Arc<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Arc::new(Events {
            next: AtomicU64::new(1),
            run_id: format!("{:x}{:x}", nanos, std::process::id()),
        })
    }

    fn take(&self, count: u64) -> u64 {
        self.next.fetch_add(count, Ordering::Relaxed)
    }

    fn key(&self, first: u64) -> String {
        format!("bench-{}-{first}", self.run_id)
    }

    /// `{"organization_id", "event"}` for `POST /audit_logs/events`.
    pub fn single(&self, organization_id: &str) -> Prepared {
        let n = self.take(1);
        let mut body = String::with_capacity(400);
        let _ = write!(body, r#"{{"organization_id":"{organization_id}","event":"#);
        push_event(&mut body, n, &now_iso());
        body.push('}');
        Prepared {
            body: Bytes::from(body),
            idempotency_key: self.key(n),
            events: 1,
        }
    }

    /// `{"organization_id", "events": [size]}` for `POST /audit_logs/events/batch`.
    pub fn batch(&self, organization_id: &str, size: u64) -> Prepared {
        let first = self.take(size);
        let occurred_at = now_iso();
        let mut body = String::with_capacity(64 + 300 * size as usize);
        let _ = write!(
            body,
            r#"{{"organization_id":"{organization_id}","events":["#
        );
        for n in first..first + size {
            if n != first {
                body.push(',');
            }
            push_event(&mut body, n, &occurred_at);
        }
        body.push_str("]}");
        Prepared {
            body: Bytes::from(body),
            idempotency_key: self.key(first),
            events: size,
        }
    }
}

/// One event as the SDKs send it, numbered `n`.
pub fn push_event(out: &mut String, n: u64, occurred_at: &str) {
    let _ = write!(
        out,
        r#"{{"action":"user.signed_in","occurred_at":"{occurred_at}","actor":{{"id":"user_{n}","name":"Jon Smith","type":"user"}},"targets":[{{"id":"team_1","type":"team"}}],"context":{{"location":"192.0.2.8","user_agent":"bench"}},"metadata":{{"n":{n}}}}}"#
    );
}

/// The event [`push_event`] sends, as Trailmark stores it: its normalized JSON
/// (`NewEvent::to_json`), which the storage ceiling writes without parsing a request.
pub fn event_body(n: u64, occurred_at: &str) -> serde_json::Value {
    serde_json::json!({
        "action": "user.signed_in",
        "occurred_at": occurred_at,
        "actor": {"id": format!("user_{n}"), "name": "Jon Smith", "type": "user"},
        "targets": [{"id": "team_1", "type": "team"}],
        "context": {"location": "192.0.2.8", "user_agent": "bench"},
        "metadata": {"n": n},
    })
}

/// The free-text index row of that event (`NewEvent::search_text`): action, actor id and name,
/// location, target ids, metadata values, one a line.
pub fn search_text(n: u64) -> String {
    format!("user.signed_in\nuser_{n}\nJon Smith\n192.0.2.8\nteam_1\n{n}")
}

/// The current time as the SDKs write it: ISO 8601, milliseconds, `Z`.
pub fn now_iso() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC timestamp always formats with a fixed description")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_official_shape_and_never_repeat() {
        let events = Events::new();
        let a = events.single("org_1");
        let b = events.single("org_1");
        assert_ne!(a.body, b.body);
        assert_ne!(a.idempotency_key, b.idempotency_key);
        let parsed: serde_json::Value =
            serde_json::from_slice(&a.body).expect("the single body is JSON");
        assert_eq!(parsed["event"]["targets"][0]["type"], "team");
        assert!(
            parsed["event"]["occurred_at"]
                .as_str()
                .is_some_and(|t| t.len() == 24 && t.ends_with('Z'))
        );

        let batch = events.batch("org_1", 3);
        let parsed: serde_json::Value =
            serde_json::from_slice(&batch.body).expect("the batch body is JSON");
        let actors: Vec<_> = parsed["events"]
            .as_array()
            .expect("events is an array")
            .iter()
            .map(|e| e["actor"]["id"].clone())
            .collect();
        assert_eq!(actors.len(), 3);
        assert_ne!(actors[0], actors[1]);
    }

    #[test]
    fn the_storage_ceiling_writes_what_trailmark_stores_for_the_same_event() {
        let occurred_at = now_iso();
        let mut wire = String::new();
        push_event(&mut wire, 42, &occurred_at);
        let wire: serde_json::Value = serde_json::from_str(&wire).expect("the event is JSON");
        let event = trailmark_domain::event::NewEvent::parse(&wire).expect("a valid event");
        assert_eq!(event.to_json(), event_body(42, &occurred_at));
        assert_eq!(event.search_text(), search_text(42));
    }
}
