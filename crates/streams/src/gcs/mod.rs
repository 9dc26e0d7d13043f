//! Google Cloud Storage (`gcs`): objects laid out as the S3 path lays them out
//! ([`crate::s3::encode`]), so a batch sent again overwrites the same objects; written with HMAC
//! keys through the XML API (SigV4, [`crate::s3::sigv4`]), or with a service-account key through
//! the JSON API ([`upload`], tokens from [`token`]). Settings in [`config`].

pub mod config;
pub mod token;
pub mod upload;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use trailmark_domain::FieldProblem;

pub use config::{Config, Credentials, ENDPOINT};
pub use token::{KeyError, ServiceAccount, Tokens};

use crate::Outcome;
use crate::destination::{
    BatchDefaults, Context, Destination, Field, FieldKind, Sink, Target, mask, mask_value,
};
use crate::net;
use crate::s3::{self, Bucket, LAYOUTS, Object, put_all, put_signed};

/// The `gcs` destination.
pub struct Gcs;

const FIELDS: &[Field] = &[
    Field::new("bucket", "Bucket", FieldKind::Text).required(),
    Field::new("prefix", "Prefix", FieldKind::Text),
    Field::new("hmac_access_id", "HMAC access id", FieldKind::Text),
    Field::new("hmac_secret", "HMAC secret", FieldKind::Secret),
    Field::new(
        "service_account_json",
        "Or a service-account key (the JSON key file)",
        FieldKind::SecretText,
    ),
    Field::new("layout", "Layout", FieldKind::Select(LAYOUTS)),
    Field::new("endpoint", "Endpoint override", FieldKind::Url),
];

impl Destination for Gcs {
    fn name(&self) -> &'static str {
        "gcs"
    }

    fn label(&self) -> &'static str {
        "Google Cloud Storage"
    }

    fn workos_name(&self) -> &'static str {
        "GoogleCloudStorage"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn batching(&self, public: &Map<String, Value>) -> BatchDefaults {
        s3::batching(public)
    }

    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        _generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        Ok(Box::new(GcsSink(Config::parse(public, secrets)?)))
    }

    /// Giving one credential form replaces the stored other, so switching needs no nulls.
    fn before_patch(
        &self,
        patch: &Map<String, Value>,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) {
        let names = |key: &str| patch.get(key).is_some_and(|v| !v.is_null());
        if names("service_account_json") {
            public.remove("hmac_access_id");
            secrets.remove("hmac_secret");
        } else if names("hmac_access_id") || names("hmac_secret") {
            secrets.remove("service_account_json");
        }
    }

    /// A key file shows only its `client_email`, `token_uri` and the end of its
    /// `private_key_id`.
    fn show_secret(&self, name: &str, value: &Value) -> Value {
        match value {
            Value::String(text) if name == "service_account_json" => {
                match ServiceAccount::parse(text) {
                    Ok(account) => json!({
                        "client_email": account.client_email,
                        "token_uri": account.token_uri,
                        "private_key_id": account.private_key_id.as_deref().map(mask),
                        "private_key": "****",
                    }),
                    Err(_) => json!("****"),
                }
            }
            other => mask_value(other),
        }
    }
}

struct GcsSink(Config);

impl GcsSink {
    /// Writes `objects` with the stream's credentials.
    async fn write(&self, cx: &Context<'_>, objects: &[Object]) -> Outcome {
        let config = &self.0;
        match &config.credentials {
            Credentials::Hmac { access_id, secret } => {
                let bucket = self.xml_bucket();
                let credentials = s3::Credentials::fixed(access_id, secret);
                put_all(objects, |object| {
                    put_signed(cx, &bucket, object, &credentials, &[])
                })
                .await
            }
            Credentials::ServiceAccount(account) => {
                let tokens = cx.shared.get::<Tokens>();
                let token = match tokens.get(cx, account).await {
                    Ok(token) => token,
                    Err(outcome) => return outcome,
                };
                put_all(objects, |object| {
                    upload_one(cx, &config.bucket, object, account, &token, &tokens)
                })
                .await
            }
        }
    }

    /// The bucket as the XML API addresses it.
    fn xml_bucket(&self) -> Bucket {
        let mut bucket = self.0.bucket.clone();
        bucket.endpoint.get_or_insert_with(|| ENDPOINT.to_owned());
        bucket
    }
}

#[async_trait]
impl Sink for GcsSink {
    fn targets(&self) -> Vec<Target> {
        let mut targets = vec![self.0.bucket.target(Some(ENDPOINT))];
        if let Credentials::ServiceAccount(account) = &self.0.credentials {
            targets.push(Target {
                field: "config.service_account_json",
                url: account.token_uri.clone(),
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
        let object = s3::encode::checkpoint_object(checkpoint, &self.0.bucket.prefix);
        self.write(cx, std::slice::from_ref(&object)).await
    }
}

/// One multipart upload through the JSON API; a 401 drops the cached token (it may have been
/// revoked), so the next attempt asks for a new one.
async fn upload_one(
    cx: &Context<'_>,
    bucket: &Bucket,
    object: &Object,
    account: &ServiceAccount,
    token: &str,
    tokens: &Tokens,
) -> Outcome {
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        return Outcome::Retry {
            reason: "cannot read random bytes for a multipart boundary".into(),
            after: None,
        };
    }
    let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let (content_type, body) = upload::multipart(object, &boundary);
    let url = upload::upload_url(bucket.endpoint.as_deref().unwrap_or(ENDPOINT), &bucket.name);
    let request = cx
        .client
        .post(url)
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body);
    match cx.send(request).await {
        Ok(response) => {
            let (status, headers) = (response.status(), response.headers().clone());
            if status == reqwest::StatusCode::UNAUTHORIZED {
                tokens.forget(account);
            }
            let body = response.text().await.unwrap_or_default();
            net::classify(status, &headers, &body, object.events)
        }
        Err(error) => error.outcome(),
    }
}
