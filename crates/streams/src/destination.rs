//! One delivery attempt to any destination: encode (pure, per destination module), sign or
//! authenticate, send, classify.

use serde_json::Value;
use trailmark_domain::Timestamp;

use crate::gcs::{ServiceAccount, Tokens};
use crate::settings::{GCS_XML_ENDPOINT, Secrets, Settings, StreamKind};
use crate::{Outcome, datadog, gcs, http, net, s3, splunk};

/// PUTs in flight at once for one stream writing an object per event.
const PUTS_AT_ONCE: usize = 8;

/// A stream's destination, ready to send.
pub struct Destination<'a> {
    pub stream_id: &'a str,
    pub settings: &'a Settings,
    pub client: &'a reqwest::Client,
    pub allow_private: bool,
    /// Access tokens of GCS service accounts, kept between attempts.
    pub tokens: &'a Tokens,
}

/// How objects are written.
enum ObjectAuth<'a> {
    /// S3, or GCS's XML API with HMAC keys: SigV4-signed PUTs.
    SigV4 { key_id: &'a str, secret: &'a str },
    /// GCS's JSON API with a bearer token from a service account.
    Bearer {
        account: Box<ServiceAccount>,
        token: String,
    },
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
        if matches!(self.settings.kind, StreamKind::S3 | StreamKind::Gcs) {
            return self
                .put_objects(|prefix, ndjson_gzip| s3::objects(events, prefix, ndjson_gzip))
                .await;
        }
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
            StreamKind::S3 | StreamKind::Gcs => unreachable!("object stores return above"),
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

    /// Sends a signed checkpoint of the stream's organization (`checkpoint`: the object
    /// `GET /audit_logs/ledger/checkpoint` answers): to an object store as the object
    /// `<prefix>checkpoints/<tree size, 20 digits>` holding the signed note itself, to any other
    /// destination as one message carrying the object, where events go.
    pub async fn deliver_checkpoint(&self, checkpoint: &Value) -> Outcome {
        if matches!(self.settings.kind, StreamKind::S3 | StreamKind::Gcs) {
            if let Some(url) = self.settings.destination_url()
                && let Err(error) = net::check_literal(&url, self.allow_private)
            {
                return Outcome::Invalid(error.to_string());
            }
            return self
                .put_objects(|prefix, _| vec![s3::checkpoint_object(checkpoint, prefix)])
                .await;
        }
        self.deliver(std::slice::from_ref(checkpoint)).await
    }

    /// Writes the objects `make` gives (from the stream's prefix and whether it writes gzip
    /// NDJSON batches), a few PUTs at a time; the outcome covers the longest prefix of events
    /// whose objects were all written, so the cursor never passes a missing object.
    async fn put_objects(&self, make: impl FnOnce(&str, bool) -> Vec<s3::Object>) -> Outcome {
        let field = |name: &str| self.settings.public.get(name).and_then(Value::as_str);
        let gcs = self.settings.kind == StreamKind::Gcs;
        let auth = if let Some(account) = self.settings.service_account() {
            // Token requests bypass the resolver's guard only when written as an IP.
            if let Err(error) = net::check_literal(&account.token_uri, self.allow_private) {
                return Outcome::Invalid(error.to_string());
            }
            match self.tokens.get(self.client, &account).await {
                Ok(token) => ObjectAuth::Bearer {
                    account: Box::new(account),
                    token,
                },
                Err(outcome) => return outcome,
            }
        } else {
            let (key_id, secret) = if gcs {
                (
                    field("hmac_access_id"),
                    self.settings.secrets.get("hmac_secret"),
                )
            } else {
                (
                    field("access_key_id"),
                    self.settings.secrets.get("secret_access_key"),
                )
            };
            match (key_id, secret) {
                (Some(key_id), Some(secret)) => ObjectAuth::SigV4 { key_id, secret },
                _ => return Outcome::Invalid("the stream's keys are missing".into()),
            }
        };
        let Some(bucket_name) = field("bucket") else {
            return Outcome::Invalid("the stream's bucket is missing".into());
        };
        let bucket = s3::Bucket {
            bucket: bucket_name,
            // GCS's XML API accepts SigV4 with the region "auto".
            region: if gcs {
                "auto"
            } else {
                field("region").unwrap_or("us-east-1")
            },
            prefix: field("prefix").unwrap_or(""),
            endpoint: if gcs {
                Some(field("endpoint").unwrap_or(GCS_XML_ENDPOINT))
            } else {
                field("endpoint")
            },
        };
        let objects = make(bucket.prefix, field("layout") == Some("ndjson_gzip"));
        let mut covered = 0;
        for chunk in objects.chunks(PUTS_AT_ONCE) {
            let puts = chunk.iter().map(|object| self.put(&bucket, object, &auth));
            let outcomes = futures_util::future::join_all(puts).await;
            for (object, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Outcome::Delivered(_) => covered += object.events,
                    failure if covered == 0 => return failure,
                    _ => return Outcome::Delivered(covered),
                }
            }
        }
        Outcome::Delivered(covered)
    }

    async fn put(
        &self,
        bucket: &s3::Bucket<'_>,
        object: &s3::Object,
        auth: &ObjectAuth<'_>,
    ) -> Outcome {
        let (key_id, secret) = match auth {
            ObjectAuth::SigV4 { key_id, secret } => (*key_id, *secret),
            ObjectAuth::Bearer { account, token } => {
                return self.upload(bucket, object, account, token).await;
            }
        };
        let (url, host) = bucket.object_url(&object.key);
        let path = url
            .split_once(&host)
            .map_or("/", |(_, path)| path)
            .to_owned();
        let headers = s3::signed_put_headers(
            object,
            &host,
            &path,
            bucket.region,
            key_id,
            secret,
            Timestamp::now(),
        );
        let mut request = self.client.put(&url).body(object.body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response.text().await.unwrap_or_default();
                net::classify(status, &headers, &body, 1)
            }
            Err(error) => net::network_failure(&error),
        }
    }

    /// One multipart upload through GCS's JSON API.
    async fn upload(
        &self,
        bucket: &s3::Bucket<'_>,
        object: &s3::Object,
        account: &ServiceAccount,
        token: &str,
    ) -> Outcome {
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            return Outcome::Retry {
                reason: "cannot read random bytes for a multipart boundary".into(),
                after: None,
            };
        }
        let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let (content_type, body) = gcs::multipart(object, &boundary);
        let url = gcs::upload_url(bucket.endpoint.unwrap_or(GCS_XML_ENDPOINT), bucket.bucket);
        let request = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    self.tokens.forget(account);
                }
                let body = response.text().await.unwrap_or_default();
                net::classify(status, &headers, &body, 1)
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
        let message_id = message_id(self.stream_id, &events[..count.min(events.len())]);
        let now = Timestamp::now();
        let timestamp = now.unix_millis() / 1000;
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
        // Standard Webhooks: several signatures, space-separated; during a rotation's grace
        // period the previous secret signs too, so receivers can switch at their own pace.
        let signatures: Vec<String> = secrets
            .signing_secrets(now)
            .into_iter()
            .filter_map(|secret| http::signature(secret, &message_id, timestamp, &body))
            .collect();
        if !signatures.is_empty() {
            request = request.header("webhook-signature", signatures.join(" "));
        }
        for (name, value) in secrets.headers() {
            request = request.header(name, value);
        }
        request.body(body)
    }
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
