//! Amazon S3, or any S3-compatible store (`s3`): objects as [`encode`] lays them out, each PUT
//! signed with AWS Signature Version 4 ([`sigv4`]). Settings in [`config`]. Google Cloud
//! Storage's HMAC keys use the same path through GCS's XML API ([`crate::gcs`]).
//!
//! A custom `endpoint` is addressed path-style (`<endpoint>/<bucket>/<key>`); AWS itself
//! virtual-hosted style (`https://<bucket>.s3.<region>.amazonaws.com/<key>`). Answers are read
//! the usual HTTP way ([`crate::net::classify`]): S3 refuses a bad signature or a missing bucket
//! with 403/404 (`invalid`) and throttles with 503 `SlowDown` (retried).

pub mod config;
pub mod encode;
pub mod sigv4;

use async_trait::async_trait;
use serde_json::{Map, Value};
use trailmark_domain::{FieldProblem, Timestamp};

pub use config::{Config, LAYOUTS, Layout};
pub use encode::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_OBJECTS, Object, objects};
pub use sigv4::{encode_path, signed_put_headers};

use crate::Outcome;
use crate::destination::{BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target};
use crate::net;

/// PUTs in flight at once for one stream writing an object per event.
const PUTS_AT_ONCE: usize = 8;

/// The `s3` destination.
pub struct S3;

const FIELDS: &[Field] = &[
    Field::new("bucket", "Bucket", FieldKind::Text).required(),
    Field::new("region", "Region", FieldKind::Text).required(),
    Field::new("prefix", "Prefix", FieldKind::Text),
    Field::new("access_key_id", "Access key id", FieldKind::Text).required(),
    Field::new("secret_access_key", "Secret access key", FieldKind::Secret).required(),
    Field::new("layout", "Layout", FieldKind::Select(LAYOUTS)),
    Field::new(
        "endpoint",
        "Endpoint (S3-compatible stores)",
        FieldKind::Url,
    ),
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

    /// The objects for `events` in `layout`.
    pub fn objects(&self, events: &[Value], layout: Layout) -> Vec<Object> {
        objects(events, &self.prefix, layout == Layout::NdjsonGzip)
    }
}

struct S3Sink(Config);

#[async_trait]
impl Sink for S3Sink {
    fn targets(&self) -> Vec<Target> {
        vec![self.0.bucket.target(None)]
    }

    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome {
        let config = &self.0;
        let objects = config.bucket.objects(events, config.layout);
        put_all(&objects, |object| {
            put_signed(
                cx,
                &config.bucket,
                object,
                &config.access_key_id,
                &config.secret_access_key,
            )
        })
        .await
    }

    /// As the object `<prefix>checkpoints/<tree size, 20 digits>` holding the signed note.
    async fn send_checkpoint(&self, cx: &Context<'_>, checkpoint: &Value) -> Outcome {
        let config = &self.0;
        let object = encode::checkpoint_object(checkpoint, &config.bucket.prefix);
        put_signed(
            cx,
            &config.bucket,
            &object,
            &config.access_key_id,
            &config.secret_access_key,
        )
        .await
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

/// One SigV4-signed PUT of `object` into `bucket`.
pub(crate) async fn put_signed(
    cx: &Context<'_>,
    bucket: &Bucket,
    object: &Object,
    key_id: &str,
    secret: &str,
) -> Outcome {
    let (url, host) = bucket.object_url(&object.key);
    let path = url
        .split_once(&host)
        .map_or("/", |(_, path)| path)
        .to_owned();
    let headers = signed_put_headers(
        object,
        &host,
        &path,
        &bucket.region,
        key_id,
        secret,
        Timestamp::now(),
    );
    let mut request = cx.client.put(&url).body(object.body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    net::exchange(cx, request, object.events, net::classify).await
}
