//! Amazon S3, or any S3-compatible store (`s3`): objects as [`encode`] lays them out, each PUT
//! signed with AWS Signature Version 4 ([`sigv4`]). Settings in [`config`]. Google Cloud
//! Storage's HMAC keys use the same path through GCS's XML API ([`crate::gcs`]).
//!
//! A custom `endpoint` is addressed path-style (`<endpoint>/<bucket>/<key>`); AWS itself
//! virtual-hosted style (`https://<bucket>.s3.<region>.amazonaws.com/<key>`). Answers are read
//! the usual HTTP way ([`crate::net::classify`]): S3 refuses a bad signature or a missing bucket
//! with 403/404 (`invalid`) and throttles with 503 `SlowDown` (retried); temporary credentials
//! that expired on the way (`ExpiredToken`) are dropped and the attempt retried.
//!
//! Credentials ([`credentials`]): the stream's static keys, or Trailmark's own (the default
//! chain, if the operator lends it), optionally exchanged for a customer's role through STS
//! `AssumeRole` with an external id ([`sts`]). Server-side encryption and the
//! `bucket-owner-full-control` ACL are `x-amz-*` headers every PUT carries, signed.

pub mod config;
pub mod credentials;
pub mod encode;
pub mod sigv4;
pub mod sts;

use async_trait::async_trait;
use serde_json::{Map, Value};
use trailmark_domain::{FieldProblem, Timestamp};

pub use config::{ACLS, Config, ENCRYPTIONS, LAYOUTS, Layout};
pub use credentials::{Credentials, DefaultChain};
pub use encode::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_OBJECTS, Object, objects};
pub use sigv4::{encode_path, signed_put_headers};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::format::EventFormat;
use crate::net;

/// PUTs in flight at once for one stream writing an object per event.
const PUTS_AT_ONCE: usize = 8;

/// The `s3` destination.
pub struct S3;

const FIELDS: &[Field] = &[
    Field::new("bucket", "Bucket", FieldKind::Text).required(),
    Field::new("region", "Region", FieldKind::Text).required(),
    Field::new("prefix", "Prefix", FieldKind::Text),
    Field::new("role_arn", "Role ARN", FieldKind::Text).help(
        "An IAM role Trailmark assumes (STS AssumeRole) to write; its trust policy names \
         Trailmark's principal and the external id.",
    ),
    Field::new("external_id", "External id", FieldKind::Text)
        .help("The sts:ExternalId your role's trust policy requires."),
    Field::new("access_key_id", "Access key id", FieldKind::Text).help(
        "Leave both keys empty to use the credentials Trailmark runs with, if its operator \
         allows it.",
    ),
    Field::new("secret_access_key", "Secret access key", FieldKind::Secret),
    Field::new(
        "server_side_encryption",
        "Server-side encryption",
        FieldKind::Select(ENCRYPTIONS),
    ),
    Field::new("kms_key_id", "KMS key id (aws:kms)", FieldKind::Text),
    Field::new("acl", "Object ACL", FieldKind::Select(ACLS)),
    Field::new("layout", "Layout", FieldKind::Select(LAYOUTS)),
    Field::new(
        "endpoint",
        "Endpoint (S3-compatible stores)",
        FieldKind::Url,
    ),
    Field::new("sts_endpoint", "STS endpoint", FieldKind::Url)
        .help("Where AssumeRole is sent; https://sts.<region>.amazonaws.com when empty."),
];

impl Destination for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn label(&self) -> &'static str {
        "Amazon S3"
    }

    fn workos_name(&self) -> &'static str {
        "S3"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn batching(&self, public: &Map<String, Value>) -> BatchDefaults {
        batching(public)
    }

    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        _generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        Ok(Box::new(S3Sink(Config::parse(public, secrets)?)))
    }
}

/// An object store's batching: an object per event is written at once, a bounded number per
/// attempt so the attempt ends well within the stream's lease; gzip NDJSON objects wait up to a
/// minute for a fuller batch (an object a minute rather than one per trickle of events).
pub(crate) fn batching(public: &Map<String, Value>) -> BatchDefaults {
    if public.get("layout").and_then(Value::as_str) == Some("ndjson_gzip") {
        BatchDefaults {
            max_events: MAX_BATCH_EVENTS,
            max_wait_seconds: 60.0,
        }
    } else {
        BatchDefaults {
            max_events: MAX_OBJECTS,
            max_wait_seconds: 0.0,
        }
    }
}

/// Where objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub prefix: String,
    pub endpoint: Option<String>,
}

impl Bucket {
    /// The URL of `key` and the `Host` header value it is signed with.
    pub fn object_url(&self, key: &str) -> (String, String) {
        let key = encode_path(key);
        match &self.endpoint {
            Some(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/');
                let host = endpoint
                    .split("://")
                    .nth(1)
                    .unwrap_or(endpoint)
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                (
                    format!("{endpoint}/{}/{key}", encode_path(&self.name)),
                    host,
                )
            }
            None => {
                let host = format!("{}.s3.{}.amazonaws.com", self.name, self.region);
                (format!("https://{host}/{key}"), host)
            }
        }
    }

    /// The URL deliveries reach, and the setting it comes from.
    pub fn target(&self, default_endpoint: Option<&str>) -> Target {
        match (&self.endpoint, default_endpoint) {
            (Some(endpoint), _) => Target {
                field: "config.endpoint",
                url: endpoint.clone(),
            },
            (None, Some(endpoint)) => Target {
                field: "config.bucket",
                url: endpoint.to_owned(),
            },
            (None, None) => Target {
                field: "config.bucket",
                url: format!("https://{}.s3.{}.amazonaws.com", self.name, self.region),
            },
        }
    }

    /// The objects for `events` in `layout`, each event's body in `format`.
    pub fn objects(&self, events: &[Value], layout: Layout, format: EventFormat) -> Vec<Object> {
        objects(events, &self.prefix, layout == Layout::NdjsonGzip, format)
    }
}

struct S3Sink(Config);

impl S3Sink {
    /// Writes `objects` with the stream's credentials; temporary ones S3 refuses are dropped
    /// from the cache, so the next attempt fetches new ones.
    async fn write(&self, cx: &Context<'_>, objects: &[Object]) -> Outcome {
        let config = &self.0;
        let (credentials, cached) = match credentials::for_stream(cx, config).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let outcome = put_all(objects, |object| {
            put_signed(
                cx,
                &config.bucket,
                object,
                &credentials,
                &config.object_headers,
            )
        })
        .await;
        let refused = match &outcome {
            Outcome::Invalid(_) => true,
            Outcome::Retry { reason, .. } => reason.contains(EXPIRED_TOKEN),
            Outcome::Delivered(_) => false,
        };
        if let (true, Some(key)) = (refused, cached) {
            cx.shared.get::<credentials::Cache>().forget(&key);
        }
        outcome
    }
}

#[async_trait]
impl Sink for S3Sink {
    fn targets(&self) -> Vec<Target> {
        let mut targets = vec![self.0.bucket.target(None)];
        if let Some(role) = &self.0.role {
            targets.push(Target {
                field: "config.sts_endpoint",
                url: role.sts_endpoint.clone(),
            });
        }
        targets
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let objects = self.0.bucket.objects(events, self.0.layout, cx.format);
        self.write(cx, &objects).await
    }

    /// As the object `<prefix>checkpoints/<tree size, 20 digits>` holding the signed note.
    async fn send_checkpoint(&self, cx: &Context<'_>, checkpoint: &Value) -> Outcome {
        let object = encode::checkpoint_object(checkpoint, &self.0.bucket.prefix);
        self.write(cx, std::slice::from_ref(&object)).await
    }
}

/// Writes `objects` with `put`, a few at a time; the outcome covers the longest prefix of
/// events whose objects were all written, so the cursor never passes a missing object.
pub(crate) async fn put_all<'o, F, Fut>(objects: &'o [Object], put: F) -> Outcome
where
    F: Fn(&'o Object) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut covered = 0;
    for chunk in objects.chunks(PUTS_AT_ONCE) {
        let outcomes = futures_util::future::join_all(chunk.iter().map(&put)).await;
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

/// One SigV4-signed PUT of `object` into `bucket`, with `extra` (`x-amz-*`) headers.
pub(crate) async fn put_signed(
    cx: &Context<'_>,
    bucket: &Bucket,
    object: &Object,
    credentials: &Credentials,
    extra: &[(String, String)],
) -> Outcome {
    let (url, host) = bucket.object_url(&object.key);
    let path = url
        .split_once(&host)
        .map_or("/", |(_, path)| path)
        .to_owned();
    let headers = sigv4::signed_object_put(
        object,
        &host,
        &path,
        &bucket.region,
        credentials,
        extra,
        Timestamp::now(),
    );
    let mut request = cx.client.put(&url).body(object.body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    net::exchange(cx, request, object.events, classify).await
}

/// The error code S3 answers temporary credentials that ran out (400).
const EXPIRED_TOKEN: &str = "<Code>ExpiredToken</Code>";

/// S3's answer, read the usual way, except that credentials which expired on the way are
/// retried: the cached ones are dropped ([`S3Sink::write`]) and the next attempt gets new ones.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    delivered: usize,
) -> Outcome {
    match net::classify(status, headers, body, delivered) {
        Outcome::Invalid(reason) if body.contains(EXPIRED_TOKEN) => Outcome::Retry {
            reason,
            after: None,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_temporary_credentials_are_retried_other_refusals_are_invalid() {
        let headers = reqwest::header::HeaderMap::new();
        let expired = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>";
        assert!(matches!(
            classify(reqwest::StatusCode::BAD_REQUEST, &headers, expired, 1),
            Outcome::Retry { .. }
        ));
        let denied = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert!(matches!(
            classify(reqwest::StatusCode::FORBIDDEN, &headers, denied, 1),
            Outcome::Invalid(_)
        ));
    }
}
