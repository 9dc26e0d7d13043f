//! Syslog messages (pure): each event one RFC 5424 message, framed by RFC 6587 octet counting.
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`:
//! `PRI` is facility 13 (log audit) × 8 + severity 6 (informational) = `110`; `TIMESTAMP` the
//! event's `occurred_at` (a checkpoint's `created_at`), already RFC 3339 with milliseconds in
//! UTC; `HOSTNAME` and `APP-NAME` from the stream's settings (printable ASCII, at most 255 and
//! 48 characters); `PROCID` `-`; `MSGID` the object's kind (`audit_log_event`,
//! `ledger_checkpoint`); no structured data (`-`), and `MSG` either the event object's JSON
//! text (`json`) or a CEF record (`cef`, below), with no BOM. Framed as `<length> <message>`,
//! the length in bytes of the message, so a message may hold any byte, newlines included.
//!
//! Worked example (`json`):
//! `184 <110>1 2026-08-01T10:00:00.000Z trailmark trailmark - audit_log_event - {"action":…}`
//!
//! **CEF** (ArcSight Common Event Format 0): `CEF:0|Trailmark|Trailmark|1|<action>|<action>|3|`
//! then extensions: `rt` (occurred_at, epoch milliseconds), `act` (action), `suid`/`suser`
//! (actor id and name), `cs1Label=actor_type cs1`, `duid`/`duser` (first target id and name),
//! `cs2Label=target_type cs2`, `src` (context location when an IP address),
//! `requestClientApplication` (user agent), `externalId` (event id), `cs3Label=organization_id
//! cs3`, `cn1Label=sequence cn1`, and `cs4Label=event cs4` with the whole event object's JSON,
//! so nothing is lost. Header values escape `\` and `|`; extension values `\`, `=` and line
//! breaks (CEF rules).

use serde_json::Value;

use crate::format::EventFormat;

/// Events per attempt (one connection each).
pub const MAX_EVENTS: usize = 1_000;
/// Bytes per attempt (the last message may pass it; a message is never split).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Facility 13 (log audit), severity 6 (informational).
const PRI: u8 = 13 * 8 + 6;

/// How an event is written in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Cef,
}

/// The header fields a stream sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub hostname: String,
    pub app_name: String,
}

/// The octet-counted frames for the longest prefix of `events` within the limits, and how many
/// events they hold. A `json` message carries each event's body in `body_format`.
pub fn encode(
    events: &[Value],
    header: &Header,
    format: Format,
    body_format: EventFormat,
) -> (Vec<u8>, usize) {
    let mut frames = Vec::new();
    let mut count = 0;
    for event in events.iter().take(MAX_EVENTS) {
        if count > 0 && frames.len() >= MAX_BYTES {
            break;
        }
        let message = message(event, header, format, body_format);
        frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
        frames.extend_from_slice(message.as_bytes());
        count += 1;
    }
    (frames, count)
}

/// One RFC 5424 message; its header comes from the event object whatever `body_format` says.
pub fn message(event: &Value, header: &Header, format: Format, body_format: EventFormat) -> String {
    let timestamp = event["occurred_at"]
        .as_str()
        .or_else(|| event["created_at"].as_str())
        .unwrap_or("-");
    let msgid = printable(event["object"].as_str().unwrap_or("-"), 32);
    let body = match format {
        Format::Json => body_format.body(event).to_string(),
        Format::Cef => cef(event),
    };
    format!(
        "<{PRI}>1 {timestamp} {} {} - {msgid} - {body}",
        printable(&header.hostname, 255),
        printable(&header.app_name, 48),
    )
}

/// A header field as RFC 5424 allows it: printable US-ASCII without spaces, at most `max`
/// characters, `-` when nothing is left.
pub fn printable(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if kept.is_empty() { "-".into() } else { kept }
}

/// The CEF record of an event (or of a checkpoint, named by its kind).
pub fn cef(event: &Value) -> String {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let action = text(&event["action"])
        .or_else(|| text(&event["object"]))
        .unwrap_or_default();
    let mut extensions: Vec<(&str, String)> = Vec::new();
    let occurred = event["occurred_at"]
        .as_str()
        .or_else(|| event["created_at"].as_str())
        .and_then(|t| trailmark_domain::Timestamp::parse(t).ok());
    if let Some(occurred) = occurred {
        extensions.push(("rt", occurred.unix_millis().to_string()));
    }
    extensions.push(("act", action.clone()));
    let mut push = |key: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            extensions.push((key, value));
        }
    };
    push("suid", text(&event["actor"]["id"]));
    push("suser", text(&event["actor"]["name"]));
    if event["actor"]["type"].is_string() {
        push("cs1Label", Some("actor_type".into()));
        push("cs1", text(&event["actor"]["type"]));
    }
    let target = &event["targets"][0];
    push("duid", text(&target["id"]));
    push("duser", text(&target["name"]));
    if target["type"].is_string() {
        push("cs2Label", Some("target_type".into()));
        push("cs2", text(&target["type"]));
    }
    push(
        "src",
        text(&event["context"]["location"]).filter(|l| l.parse::<std::net::IpAddr>().is_ok()),
    );
    push(
        "requestClientApplication",
        text(&event["context"]["user_agent"]),
    );
    push("externalId", text(&event["id"]));
    push("cs3Label", Some("organization_id".into()));
    push("cs3", text(&event["organization_id"]));
    if let Some(sequence) = event["sequence"].as_u64() {
        push("cn1Label", Some("sequence".into()));
        push("cn1", Some(sequence.to_string()));
    }
    push("cs4Label", Some("event".into()));
    push("cs4", Some(event.to_string()));
    let extension: Vec<String> = extensions
        .into_iter()
        .map(|(key, value)| format!("{key}={}", escape_extension(&value)))
        .collect();
    let name = escape_header(&action);
    format!(
        "CEF:0|Trailmark|Trailmark|1|{name}|{name}|3|{}",
        extension.join(" ")
    )
}

fn escape_header(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|")
}

fn escape_extension(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn header() -> Header {
        Header {
            hostname: "trailmark".into(),
            app_name: "trailmark".into(),
        }
    }

    fn event() -> Value {
        json!({"object": "audit_log_event", "id": "event_1", "organization_id": "org_1", "sequence": 4,
               "action": "user.signed_in", "occurred_at": "2026-08-01T10:00:00.000Z",
               "actor": {"id": "user_1", "name": "Jon | Smith", "type": "user"},
               "targets": [{"id": "team_1", "type": "team"}],
               "context": {"location": "192.0.2.8", "user_agent": "Fire=fox\nbeta"},
               "metadata": {}})
    }

    #[test]
    fn messages_are_rfc_5424_and_octet_counted() {
        let events = [event(), event()];
        let (frames, count) = encode(&events, &header(), Format::Json, EventFormat::Workos);
        assert_eq!(count, 2);
        let text = String::from_utf8(frames).expect("utf-8");
        let (length, rest) = text.split_once(' ').expect("a length");
        let length: usize = length.parse().expect("a number");
        let first = &rest[..length];
        assert_eq!(
            first,
            format!(
                "<110>1 2026-08-01T10:00:00.000Z trailmark trailmark - audit_log_event - {}",
                event()
            )
        );
        assert!(rest[length..].starts_with(&format!("{length} <110>1 ")));
        assert_eq!(printable("a b\u{e9}c", 48), "abc");
        assert_eq!(printable("", 48), "-");
    }

    #[test]
    fn cef_escapes_its_fields_and_keeps_the_whole_event() {
        let record = cef(&event());
        assert!(
            record.starts_with("CEF:0|Trailmark|Trailmark|1|user.signed_in|user.signed_in|3|rt=1785578400000 act=user.signed_in suid=user_1 suser=Jon | Smith cs1Label=actor_type cs1=user duid=team_1 cs2Label=target_type cs2=team src=192.0.2.8 requestClientApplication=Fire\\=fox\\nbeta externalId=event_1 cs3Label=organization_id cs3=org_1 cn1Label=sequence cn1=4 cs4Label=event cs4="),
            "{record}"
        );
        assert!(!record.contains('\n'));
        let piped = cef(&json!({"action": "a|b\\c"}));
        assert!(piped.contains("|a\\|b\\\\c|a\\|b\\\\c|"), "{piped}");
    }
}
