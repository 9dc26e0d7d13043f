//! Generic HTTPS destination (`http`): WorkOS's envelope per event, as a JSON array or NDJSON,
//! signed the Standard Webhooks way ([`encode`]). Settings in [`config`].
//!
//! Answers are read the usual HTTP way ([`crate::net::classify`]): 2xx delivered; 408, 429 and
//! 5xx but 501 retried; anything else means the receiver refuses the stream's configuration.

pub mod config;
pub mod encode;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use trailmark_domain::{FieldProblem, Timestamp};

pub use config::Config;
use config::{Format, PREVIOUS_SECRET};
pub use encode::{MAX_BYTES, MAX_EVENTS, signature};

use crate::Outcome;
use crate::destination::{
    BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target, mask, mask_value,
};
use crate::net;

/// The `http` destination.
pub struct Http;

const FIELDS: &[Field] = &[
    Field::new("url", "Endpoint URL", FieldKind::Url).required(),
    Field::new("format", "Format", FieldKind::Select(&["json", "ndjson"])),
    Field::new(
        "signing_secret",
        "Signing secret (whsec_…; generated if empty)",
        FieldKind::Secret,
    ),
    Field::new(
        "headers",
        "Extra headers (one 'Name: value' per line)",
        FieldKind::Headers,
    ),
    Field::new("source", "Source", FieldKind::Text),
];

impl Destination for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn label(&self) -> &'static str {
        "HTTPS webhook"
    }

    fn workos_name(&self) -> &'static str {
        "GenericHttps"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// Webhook receivers expect events as they happen: sent at once.
    fn batching(&self, _public: &Map<String, Value>) -> BatchDefaults {
        BatchDefaults {
            max_events: MAX_EVENTS,
            max_wait_seconds: 0.0,
        }
    }

    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        Ok(Box::new(HttpSink(Config::parse(
            public,
            secrets,
            generate_secret,
        )?)))
    }

    fn read_only(&self) -> &'static [&'static str] {
        &[PREVIOUS_SECRET]
    }

    /// A secret chosen (or regenerated) outright replaces both: the old one stops signing.
    fn before_patch(
        &self,
        patch: &Map<String, Value>,
        _public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) {
        if patch.contains_key("signing_secret") {
            secrets.remove(PREVIOUS_SECRET);
        }
    }

    fn show_secret(&self, name: &str, value: &Value) -> Value {
        match value {
            Value::Object(previous) if name == PREVIOUS_SECRET => json!({
                "secret": mask(previous.get("secret").and_then(Value::as_str).unwrap_or("")),
                "expires_at": previous.get("expires_at"),
            }),
            other => mask_value(other),
        }
    }

    fn generated_secret(&self) -> Option<&'static str> {
        Some("signing_secret")
    }

    /// Standard Webhooks lets a request carry several signatures, so during the grace period
    /// both secrets sign and a receiver moves to the new one without refusing a delivery.
    fn rotate_secret(
        &self,
        secrets: &mut Map<String, Value>,
        new: String,
        grace_until: Timestamp,
    ) -> Result<(), FieldProblem> {
        if let Some(Value::String(current)) = secrets.insert("signing_secret".into(), json!(new)) {
            secrets.insert(
                PREVIOUS_SECRET.into(),
                json!({"secret": current, "expires_at": grace_until.to_string()}),
            );
        }
        Ok(())
    }
}

/// A configured `http` stream.
struct HttpSink(Config);

#[async_trait]
impl Sink for HttpSink {
    fn targets(&self) -> Vec<Target> {
        vec![Target {
            field: "config.url",
            url: self.0.url.clone(),
        }]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let config = &self.0;
        let ndjson = config.format == Format::Ndjson;
        let (body, count) = encode::encode(events, ndjson, &config.source, cx.format);
        let request = request(cx, config, &events[..count.min(events.len())], body);
        net::exchange(cx, request, count, net::classify).await
    }
}

/// The signed request carrying `events` (already encoded into `body`).
fn request(
    cx: &Context<'_>,
    config: &Config,
    events: &[Value],
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let message_id = message_id(cx.stream_id, events);
    let now = Timestamp::now();
    let timestamp = now.unix_millis() / 1000;
    let content_type = match config.format {
        Format::Ndjson => "application/x-ndjson",
        Format::Json => "application/json",
    };
    let mut request = cx
        .client
        .post(&config.url)
        .header("Content-Type", content_type)
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string());
    // Standard Webhooks: several signatures, space-separated; during a rotation's grace
    // period the previous secret signs too, so receivers can switch at their own pace.
    let signatures: Vec<String> = config
        .signing_secrets(now)
        .into_iter()
        .filter_map(|secret| signature(secret, &message_id, timestamp, &body))
        .collect();
    if !signatures.is_empty() {
        request = request.header("webhook-signature", signatures.join(" "));
    }
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    request.body(body)
}

/// The `webhook-id` of a request carrying `events`: `<stream id>_<first sequence>_<last
/// sequence>` for events of the log, the same on every retry of a batch; events outside the log
/// (the streams API's test event) have no sequence and are named by the first one's id,
/// `<stream id>_<event id>`, so they never take the id a logged batch will have; a checkpoint is
/// `<stream id>_checkpoint_<tree size>`.
fn message_id(stream_id: &str, events: &[Value]) -> String {
    let sequence = |event: Option<&Value>| event.and_then(|e| e["sequence"].as_u64());
    if let [checkpoint] = events
        && checkpoint["object"] == "ledger_checkpoint"
    {
        return format!(
            "{stream_id}_checkpoint_{}",
            checkpoint["tree_size"].as_u64().unwrap_or_default()
        );
    }
    match (sequence(events.first()), sequence(events.last())) {
        (Some(first), Some(last)) => format!("{stream_id}_{first}_{last}"),
        _ => format!(
            "{stream_id}_{}",
            events
                .first()
                .and_then(|e| e["id"].as_str())
                .unwrap_or("unsequenced")
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::message_id;

    #[test]
    fn logged_batches_are_named_by_sequences_and_test_events_by_their_id() {
        let logged = [
            json!({"id": "event_a", "sequence": 0}),
            json!({"id": "event_b", "sequence": 4}),
        ];
        assert_eq!(message_id("log_stream_1", &logged), "log_stream_1_0_4");
        assert_eq!(message_id("log_stream_1", &logged[..1]), "log_stream_1_0_0");
        let test = [json!({"id": "event_01TEST", "sequence": null})];
        assert_eq!(
            message_id("log_stream_1", &test),
            "log_stream_1_event_01TEST"
        );
        let checkpoint = [json!({"object": "ledger_checkpoint", "tree_size": 12})];
        assert_eq!(
            message_id("log_stream_1", &checkpoint),
            "log_stream_1_checkpoint_12"
        );
    }
}
