//! Splunk HTTP Event Collector (`splunk`): events as HEC event objects ([`encode`]),
//! `Authorization: Splunk <token>`. Settings in [`config`].
//!
//! Answers are read the usual HTTP way ([`crate::net::classify`]): HEC answers a bad token with
//! 401/403 and a bad body with 400 (the stream is `invalid`), a busy or unhealthy indexer with
//! 503 (retried).

pub mod config;
pub mod encode;

use async_trait::async_trait;
use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

pub use config::Config;
pub use encode::{MAX_BYTES, MAX_EVENTS, endpoint};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::net;

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
        let (body, count) = encode::encode(events, &config.source, config.index.as_deref());
        let request = cx
            .client
            .post(endpoint(&config.url))
            .header("Authorization", format!("Splunk {}", config.token))
            .header("Content-Type", "application/json")
            .body(body);
        net::exchange(request, count, net::classify).await
    }
}
