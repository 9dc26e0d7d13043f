//! An `http` stream's settings: `{url, format?: "json"|"ndjson", headers?: {name: value},
//! signing_secret?, source?}`. `signing_secret` is a Standard Webhooks `whsec_…` secret,
//! generated when omitted; `headers` and the secrets are credentials. A rotation keeps the
//! replaced secret beside the new one, with the end of its grace period, as
//! `previous_signing_secret: {"secret": "whsec_…", "expires_at": "…"}` (set only by
//! [`super::Http`]'s `rotate_secret`).

use base64::Engine;
use serde_json::{Map, Value};
use trailmark_domain::{FieldProblem, Timestamp};

use crate::settings::Reader;

/// Where a rotation keeps the secret it replaced.
pub const PREVIOUS_SECRET: &str = "previous_signing_secret";

/// How events are put in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array (`application/json`).
    Json,
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
}

/// A validated `http` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub url: String,
    pub format: Format,
    /// The envelope's `source` (`trailmark` unless given).
    pub source: String,
    pub signing_secret: String,
    /// The secret a rotation replaced, and until when it still signs.
    pub previous: Option<(String, Timestamp)>,
    /// Extra headers, name and value (values may be credentials).
    pub headers: Vec<(String, String)>,
}

impl Config {
    /// Parses (and completes: the default format, a generated secret) an `http` configuration.
    ///
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut r = Reader::new(public, secrets);
        let source = r.text("source", false);
        let url = r.url("url", true);
        let format = match r.choice("format", &["json", "ndjson"], "json").as_str() {
            "ndjson" => Format::Ndjson,
            _ => Format::Json,
        };
        if !r.secrets.contains_key("signing_secret") {
            r.secrets
                .insert("signing_secret".into(), Value::from(generate_secret()));
        }
        let signing_secret = match r.secrets.get("signing_secret") {
            Some(Value::String(s)) if is_signing_secret(s) => Some(s.clone()),
            _ => {
                r.problem(
                    "invalid_value",
                    "signing_secret",
                    "signing_secret must be 'whsec_' followed by the base64 of at least 16 bytes",
                );
                None
            }
        };
        let previous = r.secrets.get(PREVIOUS_SECRET).and_then(|previous| {
            let secret = previous.get("secret")?.as_str()?.to_owned();
            let until = Timestamp::parse(previous.get("expires_at")?.as_str()?).ok()?;
            Some((secret, until))
        });
        let mut headers = Vec::new();
        match r.secrets.get("headers").cloned() {
            None => {}
            Some(Value::Object(given)) => {
                for (name, value) in given {
                    let valid_name =
                        reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
                    match value.as_str() {
                        Some(value)
                            if valid_name
                                && reqwest::header::HeaderValue::from_str(value).is_ok() =>
                        {
                            headers.push((name, value.to_owned()));
                        }
                        _ => r.problem(
                            "invalid_value",
                            &format!("headers.{name}"),
                            "not a valid HTTP header",
                        ),
                    }
                }
            }
            Some(_) => r.problem(
                "invalid_type",
                "headers",
                "headers must be an object of strings",
            ),
        }
        let config = (|| {
            Some(Config {
                url: url?,
                format,
                source: source.unwrap_or_else(|| "trailmark".into()),
                signing_secret: signing_secret?,
                previous,
                headers,
            })
        })();
        r.finish(config)
    }

    /// The `whsec_…` secrets that sign a request at `now`: the current one, then the one it
    /// replaced while the rotation's grace period lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.signing_secret.as_str()];
        if let Some((previous, until)) = &self.previous
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// `whsec_` and the base64 of at least 16 bytes.
fn is_signing_secret(text: &str) -> bool {
    text.strip_prefix("whsec_").is_some_and(|key| {
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|key| key.len() >= 16)
    })
}
