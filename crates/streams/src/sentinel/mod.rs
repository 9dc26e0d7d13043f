//! Microsoft Sentinel (`sentinel`): records into a Log Analytics workspace through the Azure
//! Monitor Logs Ingestion API, which Sentinel reads. Settings in [`config`], records in
//! [`encode`], tokens in [`token`].
//!
//! Each call is `POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream_name}
//! ?api-version=2023-01-01` with `Authorization: Bearer <Entra token>`, `Content-Type:
//! application/json`, `Content-Encoding: gzip` and a JSON array of records of at most 1 MB,
//! answered 204. An attempt sends its calls one after the other, in log order, and counts the
//! events of the calls answered before the first failure. Answers (Logs Ingestion API):
//!
//! - 401 or 403: the token is dropped and the call sent once more with a new one (it may have
//!   been revoked, or the role assignment just made); refused again, the stream is `invalid`
//!   (a 403 usually means the application lacks *Monitoring Metrics Publisher* on the rule);
//! - 413: the call is split in halves, each sent on its own;
//! - 408, 429 and 5xx: retried, no sooner than `Retry-After` ([`crate::net::classify`]);
//! - any other 4xx (a wrong rule, stream or body): `invalid`.

pub mod config;
pub mod encode;
pub mod token;

use std::collections::VecDeque;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

pub use config::{Config, DEFAULT_AUTHORITY};
pub use encode::{Call, MAX_BYTES, MAX_EVENTS};
pub use token::{SCOPE, Tokens};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::net;

/// The Logs Ingestion API version this destination speaks.
pub const API_VERSION: &str = "2023-01-01";

/// The `sentinel` destination.
pub struct Sentinel;

const FIELDS: &[Field] = &[
    Field::new("endpoint", "Ingestion endpoint", FieldKind::Url)
        .required()
        .help("The data collection endpoint's logs ingestion URL, or the rule's own."),
    Field::new(
        "dcr_immutable_id",
        "Data collection rule immutable id",
        FieldKind::Text,
    )
    .required()
    .help("dcr-…"),
    Field::new("stream_name", "Stream name", FieldKind::Text)
        .required()
        .help("The rule's input stream, e.g. Custom-TrailmarkAudit."),
    Field::new("tenant_id", "Directory (tenant) id", FieldKind::Text).required(),
    Field::new("client_id", "Application (client) id", FieldKind::Text).required(),
    Field::new("client_secret", "Client secret", FieldKind::Secret).required(),
    Field::new("authority", "Entra sign-in host", FieldKind::Url)
        .help("https://login.microsoftonline.com unless your tenant is in a sovereign cloud."),
];

impl Destination for Sentinel {
    fn name(&self) -> &'static str {
        "sentinel"
    }

    fn label(&self) -> &'static str {
        "Microsoft Sentinel"
    }

    /// WorkOS's `audit_log_configuration` log stream type (its official SDKs' enum).
    fn workos_name(&self) -> &'static str {
        "AzureSentinel"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// Fewer, fuller calls for the cost of a second.
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
        Ok(Box::new(SentinelSink(Config::parse(public, secrets)?)))
    }
}

struct SentinelSink(Config);

/// What became of one call.
enum Posted {
    Done,
    /// 413: the endpoint found it too large.
    TooLarge(Outcome),
    Failed(Outcome),
}

#[async_trait]
impl Sink for SentinelSink {
    fn targets(&self) -> Vec<Target> {
        vec![
            Target {
                field: "config.endpoint",
                url: self.0.endpoint.clone(),
            },
            Target {
                field: "config.authority",
                url: self.0.authority.clone(),
            },
        ]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let tokens = cx.shared.get::<Tokens>();
        let mut pending: VecDeque<Call> = encode::calls(events, cx.format).into();
        let mut delivered = 0;
        while let Some(call) = pending.pop_front() {
            let failure = match self.post(cx, &tokens, &call).await {
                Posted::Done => {
                    delivered += call.events();
                    continue;
                }
                Posted::TooLarge(_) if call.events() > 1 => {
                    let (first, second) = call.split();
                    pending.push_front(second);
                    pending.push_front(first);
                    continue;
                }
                Posted::TooLarge(outcome) | Posted::Failed(outcome) => outcome,
            };
            return if delivered == 0 {
                failure
            } else {
                Outcome::Delivered(delivered)
            };
        }
        Outcome::Delivered(delivered)
    }
}

impl SentinelSink {
    /// One call, sent again once with a new token if the endpoint refuses the cached one.
    async fn post(&self, cx: &Context<'_>, tokens: &Tokens, call: &Call) -> Posted {
        let body = encode::gzip(&call.body());
        let mut renewed = false;
        loop {
            let token = match tokens.get(cx, &self.0).await {
                Ok(token) => token,
                Err(outcome) => return Posted::Failed(outcome),
            };
            let request = cx
                .client
                .post(self.0.ingestion_url())
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(body.clone());
            let response = match cx.send(request).await {
                Ok(response) => response,
                Err(error) => return Posted::Failed(error.outcome()),
            };
            let (status, headers) = (response.status(), response.headers().clone());
            let text = response.text().await.unwrap_or_default();
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                tokens.forget(&self.0);
                if !renewed {
                    renewed = true;
                    continue;
                }
            }
            return match net::classify(status, &headers, &text, call.events()) {
                Outcome::Delivered(_) => Posted::Done,
                failure if status == StatusCode::PAYLOAD_TOO_LARGE => Posted::TooLarge(failure),
                Outcome::Invalid(reason) => Posted::Failed(Outcome::Invalid(format!(
                    "the ingestion endpoint refused rule {} stream {}: {reason}",
                    self.0.dcr_immutable_id, self.0.stream_name
                ))),
                retry => Posted::Failed(retry),
            };
        }
    }
}

#[cfg(test)]
mod tests;
