//! Datadog logs intake (`datadog`): events as log items ([`encode`]), `DD-API-KEY`, answered
//! with 202. Settings in [`config`].
//!
//! Answers (Datadog "Send logs" API: 400 bad request, 401/403 bad key, 408, 413 too large, 429,
//! 5xx) are read the usual HTTP way ([`crate::net::classify`]): 408, 429 and 5xx are retried,
//! the rest make the stream `invalid`; the encoder keeps requests under 413's limits.

pub mod config;
pub mod encode;

use async_trait::async_trait;
use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

pub use config::{Config, SITES};
pub use encode::{MAX_BYTES, MAX_EVENTS, MAX_ITEM_BYTES, intake_url};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::net;

/// The `datadog` destination.
pub struct Datadog;

const FIELDS: &[Field] = &[
    Field::new("site", "Site", FieldKind::Select(&SITES)).required(),
    Field::new("api_key", "API key", FieldKind::Secret).required(),
    Field::new("source", "Source", FieldKind::Text),
    Field::new("endpoint", "Endpoint override", FieldKind::Url),
];

impl Destination for Datadog {
    fn name(&self) -> &'static str {
        "datadog"
    }

    fn label(&self) -> &'static str {
        "Datadog"
    }

    fn workos_name(&self) -> &'static str {
        "Datadog"
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
        Ok(Box::new(DatadogSink(Config::parse(public, secrets)?)))
    }
}

struct DatadogSink(Config);

#[async_trait]
impl Sink for DatadogSink {
    fn targets(&self) -> Vec<Target> {
        vec![Target {
            field: self.0.intake_field,
            url: self.0.intake.clone(),
        }]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let (body, count) = encode::encode(events, &self.0.source, cx.format);
        let request = cx
            .client
            .post(&self.0.intake)
            .header("DD-API-KEY", &self.0.api_key)
            .header("Content-Type", "application/json")
            .body(body);
        net::exchange(cx, request, count, net::classify).await
    }
}
