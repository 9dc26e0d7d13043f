//! A `gcs` stream's settings: `{bucket, prefix?, endpoint?, layout?, hmac_access_id + hmac_secret
//! | service_account_json}`: with HMAC keys, objects are written through GCS's S3-compatible XML
//! API as WorkOS does; with a service-account key (the JSON key file, as a string or an object),
//! through the JSON API. Exactly one of the two; a PATCH that gives one replaces the other.

use serde_json::{Map, Value};
use trailmark_domain::FieldProblem;

use super::token::ServiceAccount;
use crate::s3::config::{bucket, layout, prefix};
use crate::s3::{Bucket, Layout};
use crate::settings::Reader;

/// GCS's S3-compatible XML API, and the host of its JSON API.
pub const ENDPOINT: &str = "https://storage.googleapis.com";

/// How a `gcs` stream authenticates.
#[derive(Debug)]
pub enum Credentials {
    /// SigV4-signed PUTs through the XML API.
    Hmac { access_id: String, secret: String },
    /// Bearer tokens for the JSON API.
    ServiceAccount(Box<ServiceAccount>),
}

/// A validated `gcs` configuration.
#[derive(Debug)]
pub struct Config {
    /// Its region is `auto`, which GCS's XML API accepts for SigV4.
    pub bucket: Bucket,
    pub layout: Layout,
    pub credentials: Credentials,
}

impl Config {
    /// Parses a `gcs` configuration; a key file given as an object is stored as its text.
    ///
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut r = Reader::new(public, secrets);
        let name = bucket(&mut r);
        let prefix = prefix(&mut r);
        let endpoint = r.url("endpoint", false);
        let has_hmac =
            r.public.contains_key("hmac_access_id") || r.secrets.contains_key("hmac_secret");
        let credentials = match r.secrets.get("service_account_json").cloned() {
            Some(key) => {
                if has_hmac {
                    r.problem(
                        "conflict",
                        "service_account_json",
                        "give either hmac_access_id and hmac_secret, or service_account_json, not both",
                    );
                }
                // Stored as the key file's text, whichever form it came in.
                let text = match key {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                match ServiceAccount::parse(&text) {
                    Ok(account) => {
                        r.secrets
                            .insert("service_account_json".into(), Value::from(text));
                        Some(Credentials::ServiceAccount(Box::new(account)))
                    }
                    Err(error) => {
                        r.problem("invalid_value", "service_account_json", &error.to_string());
                        None
                    }
                }
            }
            None if !has_hmac => {
                r.problem(
                    "required",
                    "service_account_json",
                    "give hmac_access_id and hmac_secret, or service_account_json",
                );
                None
            }
            None => {
                let access_id = r.text("hmac_access_id", true);
                let secret = r.secret("hmac_secret", true);
                (|| {
                    Some(Credentials::Hmac {
                        access_id: access_id?,
                        secret: secret?,
                    })
                })()
            }
        };
        let layout = layout(&mut r);
        let config = (|| {
            Some(Config {
                bucket: Bucket {
                    name: name?,
                    region: "auto".into(),
                    prefix,
                    endpoint,
                },
                layout,
                credentials: credentials?,
            })
        })();
        r.finish(config)
    }
}
