//! What a stream sends as each event (`config.event_format`), whatever its destination:
//!
//! - `workos` (the default): the event object, as the events API returns it;
//! - `ocsf`: the event as an OCSF 1.3.0 API Activity event
//!   ([`trailmark_domain::ocsf::api_activity`]), the event object kept whole in its `unmapped`.
//!
//! Only the body changes. Everything a destination derives from an event — object keys, HEC
//! `time`, Datadog tags, the syslog header, webhook ids, Sentinel's `TimeGenerated` — still comes
//! from the event object, so switching a stream's format moves no key and breaks no
//! de-duplication. Signed checkpoints are not events and travel as they always do.
//!
//! The setting is not named `format` because `http` and `syslog` streams already use that name
//! for how their bodies are framed (`json`/`ndjson`, `json`/`cef`).

use std::borrow::Cow;

use serde_json::Value;
use trailmark_domain::FieldProblem;

use crate::settings::problem;

/// The setting's key in a stream's `config`.
pub const KEY: &str = "event_format";
/// Its values, the default first.
pub const FORMATS: &[&str] = &["workos", "ocsf"];

/// What a stream sends as each event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventFormat {
    /// The event object.
    #[default]
    Workos,
    /// An OCSF API Activity event holding the event object.
    Ocsf,
}

impl EventFormat {
    /// The format a stream's stored public settings name (`workos` when none: settings are
    /// checked when saved, [`validate`]).
    pub fn of(config: &Value) -> Self {
        match config.get(KEY).and_then(Value::as_str) {
            Some("ocsf") => EventFormat::Ocsf,
            _ => EventFormat::Workos,
        }
    }

    /// What a destination sends for `object` (an event object, or a signed checkpoint, which
    /// every format sends as it is).
    pub fn body(self, object: &Value) -> Cow<'_, Value> {
        match self {
            EventFormat::Ocsf if object["object"] == "audit_log_event" => {
                Cow::Owned(trailmark_domain::ocsf::api_activity(object))
            }
            _ => Cow::Borrowed(object),
        }
    }
}

/// Checks a stream's `event_format`.
pub fn validate(value: &Value, problems: &mut Vec<FieldProblem>) {
    match value {
        Value::Null => {}
        Value::String(name) if FORMATS.contains(&name.as_str()) => {}
        _ => problems.push(problem(
            "invalid_value",
            &format!("config.{KEY}"),
            "event_format must be 'workos' or 'ocsf'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ocsf_wraps_events_and_leaves_checkpoints_alone() {
        let event = json!({"object": "audit_log_event", "id": "event_1", "organization_id": "org_1",
                           "sequence": 3, "action": "user.created", "occurred_at": "2026-08-01T10:00:00.000Z",
                           "actor": {"id": "user_1", "type": "user"}, "targets": [],
                           "context": {"location": "192.0.2.8"}});
        let checkpoint = json!({"object": "ledger_checkpoint", "tree_size": 4});
        let ocsf = EventFormat::of(&json!({"event_format": "ocsf"}));
        let body = ocsf.body(&event);
        assert_eq!(body["class_uid"], 6003);
        assert_eq!(body["unmapped"], event);
        assert_eq!(*ocsf.body(&checkpoint), checkpoint);
        assert_eq!(*EventFormat::of(&json!({})).body(&event), event);

        let mut problems = Vec::new();
        validate(&json!("ocsf"), &mut problems);
        validate(&json!("cef"), &mut problems);
        assert_eq!(
            problems
                .iter()
                .map(|p| p.field.as_str())
                .collect::<Vec<_>>(),
            ["config.event_format"]
        );
    }

    fn event() -> Value {
        json!({"object": "audit_log_event", "id": "event_1", "organization_id": "org_1",
               "sequence": 3, "action": "user.created", "occurred_at": "2026-08-01T10:00:00.250Z",
               "received_at": "2026-08-01T10:00:01.000Z", "version": null,
               "actor": {"id": "user_1", "type": "user"}, "targets": [],
               "context": {"location": "192.0.2.8"}, "metadata": null})
    }

    /// Each destination's encoder, given `ocsf`, carries the OCSF event where the event object
    /// went, and takes its keys, timestamps and ids from the event object as before.
    #[test]
    fn every_encoder_sends_the_ocsf_body_and_keeps_keys_and_timestamps() {
        let event = event();
        let events = std::slice::from_ref(&event);
        let ocsf = trailmark_domain::ocsf::api_activity(&event);
        let format = EventFormat::Ocsf;
        let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).expect("json");

        let (body, _) = crate::http::encode::encode(events, false, "acme", format);
        let http = &json(&body)[0];
        assert_eq!(http["event"], ocsf);
        assert_eq!(
            (&http["keySuffix"], &http["timestamp"]),
            (&json!("event_1"), &json!("2026-08-01T10:00:00.250Z"))
        );

        let (body, _) = crate::datadog::encode::encode(events, "acme", format);
        let datadog = &json(&body)[0];
        assert_eq!(
            json(datadog["message"].as_str().unwrap_or("").as_bytes()),
            ocsf
        );
        assert_eq!(
            datadog["ddtags"],
            "organization_id:org_1,action:user.created"
        );

        let (body, _) = crate::splunk::encode::encode(events, "acme", None, format);
        let splunk = json(&body);
        assert_eq!(
            (&splunk["event"], &splunk["time"]),
            (&ocsf, &json!(1785578400.25))
        );

        let per_event = crate::s3::encode::objects(events, "audit/", false, format);
        assert_eq!(
            per_event[0].key,
            "audit/2026-08-01/2026-08-01T10:00:00.250Z_event_1.json"
        );
        assert_eq!(json(&per_event[0].body), ocsf);
        let batch = crate::s3::encode::objects(events, "", true, format);
        assert_eq!(
            batch[0].key,
            "2026-08-01/00000000000000000003-00000000000000000003.ndjson.gz"
        );
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&batch[0].body[..]),
            &mut text,
        )
        .expect("gzip");
        assert_eq!(json(text.trim_end().as_bytes()), ocsf);

        let header = crate::syslog::Header {
            hostname: "h".into(),
            app_name: "a".into(),
        };
        let message =
            crate::syslog::encode::message(&event, &header, crate::syslog::Format::Json, format);
        assert_eq!(
            message,
            format!("<110>1 2026-08-01T10:00:00.250Z h a - audit_log_event - {ocsf}")
        );

        let calls = crate::sentinel::encode::calls(events, format);
        let sentinel = &json(&calls[0].body())[0];
        assert_eq!(sentinel["Event"], ocsf);
        assert_eq!(
            (
                &sentinel["TimeGenerated"],
                &sentinel["EventId"],
                &sentinel["Sequence"]
            ),
            (
                &json!("2026-08-01T10:00:00.250Z"),
                &json!("event_1"),
                &json!(3)
            )
        );
    }
}
