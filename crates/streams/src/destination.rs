//! One delivery attempt to any destination: encode (pure, per destination module), sign or
//! authenticate, send, classify.

use serde_json::Value;
use trailmark_domain::Timestamp;

use crate::settings::{Secrets, Settings, StreamKind};
use crate::{Outcome, datadog, http, net, splunk};

/// A stream's destination, ready to send.
pub struct Destination<'a> {
    pub stream_id: &'a str,
    pub settings: &'a Settings,
    pub client: &'a reqwest::Client,
    pub allow_private: bool,
}

impl Destination<'_> {
    /// Sends as many of `events` (event objects, in log order) as one request holds.
    pub async fn deliver(&self, events: &[Value]) -> Outcome {
        let Some(url) = self.settings.destination_url() else {
            return Outcome::Invalid("the stream has no destination URL".into());
        };
        // Names are checked by the client's resolver; addresses written as IPs never reach it.
        if let Err(error) = net::check_literal(&url, self.allow_private) {
            return Outcome::Invalid(error.to_string());
        }
        let source = self
            .settings
            .public
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("trailmark");
        let secrets = &self.settings.secrets;
        let (request, count) = match self.settings.kind {
            StreamKind::Http => {
                let ndjson =
                    self.settings.public.get("format").and_then(Value::as_str) == Some("ndjson");
                let (body, count) = http::encode(events, ndjson, source);
                (
                    self.http_request(&url, ndjson, body, events, count, secrets),
                    count,
                )
            }
            StreamKind::Datadog => {
                let (body, count) = datadog::encode(events, source);
                let request = self
                    .client
                    .post(&url)
                    .header("DD-API-KEY", secrets.get("api_key").unwrap_or_default())
                    .header("Content-Type", "application/json")
                    .body(body);
                (request, count)
            }
            StreamKind::Splunk => {
                let index = self.settings.public.get("index").and_then(Value::as_str);
                let (body, count) = splunk::encode(events, source, index);
                let request = self
                    .client
                    .post(splunk::endpoint(&url))
                    .header(
                        "Authorization",
                        format!("Splunk {}", secrets.get("token").unwrap_or_default()),
                    )
                    .header("Content-Type", "application/json")
                    .body(body);
                (request, count)
            }
        };
        match request.send().await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response.text().await.unwrap_or_default();
                net::classify(status, &headers, &body, count)
            }
            Err(error) => net::network_failure(&error),
        }
    }

    fn http_request(
        &self,
        url: &str,
        ndjson: bool,
        body: Vec<u8>,
        events: &[Value],
        count: usize,
        secrets: &Secrets,
    ) -> reqwest::RequestBuilder {
        let sequence = |event: Option<&Value>| {
            event
                .and_then(|e| e["sequence"].as_u64())
                .unwrap_or_default()
        };
        let message_id = format!(
            "{}_{}_{}",
            self.stream_id,
            sequence(events.first()),
            sequence(events.get(count.saturating_sub(1)))
        );
        let timestamp = Timestamp::now().unix_millis() / 1000;
        let mut request = self
            .client
            .post(url)
            .header(
                "Content-Type",
                if ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
            )
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(signature) = secrets
            .get("signing_secret")
            .and_then(|secret| http::signature(secret, &message_id, timestamp, &body))
        {
            request = request.header("webhook-signature", signature);
        }
        for (name, value) in secrets.headers() {
            request = request.header(name, value);
        }
        request.body(body)
    }
}
