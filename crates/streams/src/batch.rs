//! When a stream sends: a batch goes out once it holds `max_events` events, or once its oldest
//! event has waited `max_wait_seconds` since it was received, whichever comes first. The third
//! limit, bytes, belongs to each destination's encoder (`encode.rs` in each destination's
//! module), which cuts a request at what its service accepts and reports how many events it
//! covered; the rest go in the next request.
//!
//! The wait is measured from the events' `received_at`, which is stored with them, so a batch's
//! deadline is the same after a restart or on another instance that takes the stream over.
//!
//! Configured per stream as `config.batch: {max_events?, max_wait_seconds?}`. Each destination
//! declares its defaults ([`crate::destination::Destination::batching`]): `http` and one object
//! per event send at once (webhook receivers expect events as they happen; an object per event
//! gains nothing from waiting); `datadog`, `splunk`: 1 s (fewer, fuller requests for the cost of
//! a second); `ndjson_gzip` objects: 60 s (an object a minute rather than one per trickle).

use std::time::Duration;

use serde_json::{Map, Value, json};
use trailmark_domain::FieldProblem;

use crate::settings::{StreamKind, problem};

/// The most events any destination takes in one request (Datadog's per-request limit; HTTP,
/// Splunk and gzip objects use the same).
pub const MAX_EVENTS: usize = 1_000;
/// The longest a stream may be told to hold a batch back.
pub const MAX_WAIT_SECONDS: f64 = 3_600.0;

/// A stream's batching, with its type's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchPolicy {
    /// Events per request (or per gzip object): reading this many sends at once.
    pub max_events: usize,
    /// How long the oldest unsent event may wait for the batch to fill.
    pub max_wait: Duration,
}

/// What to do with the events waiting after a stream's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Hold the batch back this much longer.
    Wait(Duration),
}

impl BatchPolicy {
    /// Whatever is waiting goes out at once, as much as a request holds.
    pub const AT_ONCE: BatchPolicy = BatchPolicy {
        max_events: MAX_EVENTS,
        max_wait: Duration::ZERO,
    };

    /// The policy of a stream of type `kind` with public settings `public` (already validated;
    /// anything unreadable falls back to the default).
    pub fn of(kind: StreamKind, public: &Map<String, Value>) -> Self {
        let defaults = kind.destination().batching(public);
        let (per_attempt, default_wait) = (defaults.max_events, defaults.max_wait_seconds);
        let given = public.get("batch");
        let max_events = given
            .and_then(|b| b.get("max_events"))
            .and_then(Value::as_u64)
            .map_or(MAX_EVENTS, |n| n as usize)
            .clamp(1, per_attempt);
        let wait = given
            .and_then(|b| b.get("max_wait_seconds"))
            .and_then(Value::as_f64)
            .unwrap_or(default_wait)
            .clamp(0.0, MAX_WAIT_SECONDS);
        BatchPolicy {
            max_events,
            max_wait: Duration::from_secs_f64(wait),
        }
    }

    /// Whether `pending` events (read up to `max_events`), the oldest received `oldest_age` ago,
    /// go out now.
    pub fn decide(&self, pending: usize, oldest_age: Duration) -> Decision {
        if pending >= self.max_events || oldest_age >= self.max_wait {
            Decision::Send
        } else {
            Decision::Wait(self.max_wait - oldest_age)
        }
    }

    /// As the streams API shows it (whole seconds as an integer, as they are usually given).
    pub fn to_json(self) -> Value {
        let seconds = if self.max_wait.subsec_nanos() == 0 {
            json!(self.max_wait.as_secs())
        } else {
            json!(self.max_wait.as_secs_f64())
        };
        json!({"max_events": self.max_events, "max_wait_seconds": seconds})
    }
}

/// Checks a `config.batch` value, pushing a problem per bad field.
pub fn validate(value: &Value, problems: &mut Vec<FieldProblem>) {
    let fields = match value {
        Value::Null => return,
        Value::Object(fields) => fields,
        _ => {
            problems.push(problem(
                "invalid_type",
                "config.batch",
                "batch must be an object: {max_events?, max_wait_seconds?}",
            ));
            return;
        }
    };
    for (key, value) in fields {
        let field = format!("config.batch.{key}");
        match key.as_str() {
            "max_events" => {
                if !value
                    .as_u64()
                    .is_some_and(|n| (1..=MAX_EVENTS as u64).contains(&n))
                    && !value.is_null()
                {
                    problems.push(problem(
                        "invalid_value",
                        &field,
                        &format!("max_events must be a whole number from 1 to {MAX_EVENTS}"),
                    ));
                }
            }
            "max_wait_seconds" => {
                if !value
                    .as_f64()
                    .is_some_and(|s| (0.0..=MAX_WAIT_SECONDS).contains(&s))
                    && !value.is_null()
                {
                    problems.push(problem(
                        "invalid_value",
                        &field,
                        &format!("max_wait_seconds must be a number from 0 to {MAX_WAIT_SECONDS}"),
                    ));
                }
            }
            _ => problems.push(problem(
                "unknown_field",
                &field,
                "batch takes max_events and max_wait_seconds",
            )),
        }
    }
}

/// A PATCH's `batch` over the stored one: given fields replace, `null` ones return to the
/// default, others stay.
pub fn merge(stored: Option<&Value>, patch: &Value) -> Value {
    match (stored, patch) {
        (Some(Value::Object(stored)), Value::Object(patch)) => {
            let mut merged = stored.clone();
            for (key, value) in patch {
                merged.insert(key.clone(), value.clone());
            }
            merged.retain(|_, v| !v.is_null());
            Value::Object(merged)
        }
        _ => patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> StreamKind {
        StreamKind::parse(name).expect("a destination")
    }

    fn public(config: Value) -> Map<String, Value> {
        config.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn defaults_follow_the_destination() {
        let of = |kind, config| BatchPolicy::of(kind, &public(config));
        assert_eq!(of(kind("http"), json!({})).max_wait, Duration::ZERO);
        assert_eq!(
            of(kind("splunk"), json!({})).max_wait,
            Duration::from_secs(1)
        );
        let gzip = of(kind("s3"), json!({"layout": "ndjson_gzip"}));
        assert_eq!(
            (gzip.max_events, gzip.max_wait),
            (MAX_EVENTS, Duration::from_secs(60))
        );
        let per_event = of(kind("gcs"), json!({"batch": {"max_events": 500}}));
        assert_eq!(per_event.max_events, crate::s3::MAX_OBJECTS);
        let given = of(
            kind("http"),
            json!({"batch": {"max_events": 10, "max_wait_seconds": 2.5}}),
        );
        assert_eq!(
            (given.max_events, given.max_wait),
            (10, Duration::from_millis(2_500))
        );
    }

    #[test]
    fn a_batch_goes_out_when_full_or_when_its_oldest_event_has_waited_enough() {
        let policy = BatchPolicy {
            max_events: 10,
            max_wait: Duration::from_secs(5),
        };
        assert_eq!(policy.decide(10, Duration::ZERO), Decision::Send);
        assert_eq!(policy.decide(3, Duration::from_secs(5)), Decision::Send);
        assert_eq!(
            policy.decide(3, Duration::from_secs(2)),
            Decision::Wait(Duration::from_secs(3))
        );
        let at_once = BatchPolicy {
            max_events: 10,
            max_wait: Duration::ZERO,
        };
        assert_eq!(at_once.decide(1, Duration::ZERO), Decision::Send);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut problems = Vec::new();
        validate(
            &json!({"max_events": 0, "max_wait_seconds": -1, "linger": 3}),
            &mut problems,
        );
        validate(&json!(5), &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "config.batch.linger",
                "config.batch.max_events",
                "config.batch.max_wait_seconds",
                "config.batch"
            ]
        );
        let mut none = Vec::new();
        validate(
            &json!({"max_events": 1000, "max_wait_seconds": 0.25}),
            &mut none,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let stored = json!({"max_events": 10, "max_wait_seconds": 30});
        assert_eq!(
            merge(Some(&stored), &json!({"max_wait_seconds": 0})),
            json!({"max_events": 10, "max_wait_seconds": 0})
        );
        assert_eq!(
            merge(Some(&stored), &json!({"max_events": null})),
            json!({"max_wait_seconds": 30})
        );
        assert_eq!(
            merge(None, &json!({"max_events": 5})),
            json!({"max_events": 5})
        );
    }
}
