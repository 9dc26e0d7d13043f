//! Splunk HTTP Event Collector (`splunk`): events as HEC event objects ([`encode`]),
//! `Authorization: Splunk <token>`. Settings in [`config`].
//!
//! Answers are read the usual HTTP way ([`crate::net::classify`]): HEC answers a bad token with
//! 401/403 and a bad body with 400 (the stream is `invalid`), a busy or unhealthy indexer with
//! 503 (retried).
//!
//! **Indexer acknowledgement** (Splunk "About HTTP Event Collector Indexer Acknowledgment").
//! Every request carries `X-Splunk-Request-Channel: <the stream's channel>`, a UUID derived from
//! the stream's id ([`channel`]), the same on every instance and after restarts. A token with
//! indexer acknowledgement on refuses requests without a channel, and answers a batch with an
//! `ackId`; a batch is then delivered only once `POST /services/collector/ack` (same token and
//! channel, body `{"acks": [<ackId>]}`) answers `{"acks": {"<ackId>": true}}`: asked every
//! [`ACK_POLL_INTERVAL`], for at most [`ACK_TIMEOUT`], after which the attempt is retried and the
//! batch sent again (Splunk may then hold it twice: delivery is at-least-once). A token without
//! acknowledgement answers no `ackId`, and its 200 is the delivery.

pub mod config;
pub mod encode;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use trailmark_domain::FieldProblem;

pub use config::Config;
pub use encode::{MAX_BYTES, MAX_EVENTS, endpoint};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::net;

/// How often Splunk is asked whether a batch was indexed.
pub const ACK_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a batch waits for its acknowledgement before the attempt fails and the batch is sent
/// again: within a third of a stream's default lease, so the worker still holds the stream.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The `splunk` destination.
pub struct Splunk;

const FIELDS: &[Field] = &[
    Field::new("url", "HEC URL", FieldKind::Url).required(),
    Field::new("token", "HEC token", FieldKind::Secret).required(),
    Field::new("index", "Index", FieldKind::Text),
    Field::new("source", "Source", FieldKind::Text),
];

impl Destination for Splunk {
    fn name(&self) -> &'static str {
        "splunk"
    }

    fn label(&self) -> &'static str {
        "Splunk HEC"
    }

    fn workos_name(&self) -> &'static str {
        "Splunk"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// Fewer, fuller requests for the cost of a second.
    fn batching(&self, _public: &Map<String, Value>) -> BatchDefaults {
        BatchDefaults {
            max_events: MAX_EVENTS,
            max_wait_seconds: 1.0,
        }
    }

    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        _generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        Ok(Box::new(SplunkSink(Config::parse(public, secrets)?)))
    }
}

struct SplunkSink(Config);

#[async_trait]
impl Sink for SplunkSink {
    fn targets(&self) -> Vec<Target> {
        vec![Target {
            field: "config.url",
            url: self.0.url.clone(),
        }]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let config = &self.0;
        let channel = channel(cx.stream_id);
        let (body, count) =
            encode::encode(events, &config.source, config.index.as_deref(), cx.format);
        let request = cx
            .client
            .post(endpoint(&config.url))
            .header("Authorization", format!("Splunk {}", config.token))
            .header("X-Splunk-Request-Channel", &channel)
            .header("Content-Type", "application/json")
            .body(body);
        let (outcome, answer) = match cx.send(request).await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response.text().await.unwrap_or_default();
                (net::classify(status, &headers, &body, count), body)
            }
            Err(error) => return error.outcome(),
        };
        match (&outcome, ack_id(&answer)) {
            (Outcome::Delivered(_), Some(ack)) => self.acknowledged(cx, &channel, ack, count).await,
            _ => outcome,
        }
    }
}

impl SplunkSink {
    /// Waits for Splunk to acknowledge the batch answered with `ack`: `Delivered(count)` once it
    /// did, a retry if it did not within [`ACK_TIMEOUT`].
    async fn acknowledged(
        &self,
        cx: &Context<'_>,
        channel: &str,
        ack: u64,
        count: usize,
    ) -> Outcome {
        let config = &self.0;
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        let mut last_problem = String::from("the batch is not indexed yet");
        while tokio::time::Instant::now() + ACK_POLL_INTERVAL <= deadline {
            tokio::time::sleep(ACK_POLL_INTERVAL).await;
            let request = cx
                .client
                .post(ack_endpoint(&config.url))
                .header("Authorization", format!("Splunk {}", config.token))
                .header("X-Splunk-Request-Channel", channel)
                .header("Content-Type", "application/json")
                .body(json!({"acks": [ack]}).to_string());
            match cx.send(request).await {
                Ok(response) => {
                    let (status, headers) = (response.status(), response.headers().clone());
                    let body = response.text().await.unwrap_or_default();
                    if !status.is_success() {
                        return match net::classify(status, &headers, &body, 0) {
                            Outcome::Invalid(reason) => {
                                Outcome::Invalid(format!("acknowledgement query refused: {reason}"))
                            }
                            Outcome::Retry { reason, after } => Outcome::Retry {
                                reason: format!("acknowledgement query failed: {reason}"),
                                after,
                            },
                            delivered => delivered,
                        };
                    }
                    if is_acknowledged(&body, ack) {
                        return Outcome::Delivered(count);
                    }
                }
                // The next poll may get through; the deadline bounds the wait either way.
                Err(error) => last_problem = error.to_string(),
            }
        }
        Outcome::Retry {
            reason: format!(
                "Splunk did not acknowledge the batch (ackId {ack}) within {} s ({last_problem}); it is sent again",
                ACK_TIMEOUT.as_secs()
            ),
            after: None,
        }
    }
}

/// The stream's HEC channel: a UUID (version 4 layout) made from the SHA-256 of its id, so
/// every instance and every restart uses the same one.
pub fn channel(stream_id: &str) -> String {
    let digest = Sha256::digest(stream_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `ackId` of an event request's answer (`{"text":"Success","code":0,"ackId":7}`).
fn ack_id(answer: &str) -> Option<u64> {
    serde_json::from_str::<Value>(answer).ok()?["ackId"].as_u64()
}

/// Whether an acknowledgement answer (`{"acks": {"7": true}}`) says `ack` was indexed.
fn is_acknowledged(answer: &str, ack: u64) -> bool {
    serde_json::from_str::<Value>(answer)
        .ok()
        .and_then(|answer| answer["acks"][ack.to_string()].as_bool())
        .unwrap_or(false)
}

/// The acknowledgement endpoint for a HEC URL (as [`endpoint`] takes it).
pub fn ack_endpoint(url: &str) -> String {
    let event = endpoint(url);
    format!(
        "{}/ack",
        event.trim_end_matches("/event").trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests;
