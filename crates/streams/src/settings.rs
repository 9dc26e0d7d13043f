//! What a stream is configured with, per destination type, as the streams API accepts it:
//!
//! - `http`: `{url, format?: "json"|"ndjson", headers?: {name: value}, signing_secret?, source?}`;
//!   `signing_secret` is a Standard Webhooks `whsec_…` secret, generated when omitted;
//! - `datadog`: `{site, api_key, source?, endpoint?}` (`endpoint` overrides the logs-intake URL
//!   derived from `site`, for proxies and tests);
//! - `splunk`: `{url, token, index?, source?}` (`url` is the HEC base URL);
//! - `s3`: `{bucket, region, prefix?, endpoint?, access_key_id, secret_access_key,
//!   layout?: "object_per_event"|"ndjson_gzip"}` (`endpoint` for S3-compatible stores);
//! - `gcs`: `{bucket, prefix?, endpoint?, hmac_access_id + hmac_secret | service_account_json,
//!   layout?}`: with HMAC keys, written through GCS's S3-compatible XML API as WorkOS does; with a
//!   service-account key (the JSON key file, as a string or an object), through the JSON API
//!   ([`crate::gcs`]). Exactly one of the two; a PATCH that gives one replaces the other.
//!
//! Every type also takes `batch: {max_events?, max_wait_seconds?}` ([`crate::batch`]).
//!
//! Credentials (`api_key`, `token`, `signing_secret`, `secret_access_key`, `hmac_secret`,
//! `service_account_json`, the values of `headers`) are split from the rest into [`Secrets`],
//! sealed at rest, and masked when shown (`"****…1234"`; a service-account key shows only its
//! `client_email`, `token_uri` and the end of its `private_key_id`). Every problem is reported
//! with its field, prefixed `config.`.

use serde_json::{Map, Value, json};
use trailmark_domain::{FieldProblem, Timestamp};

/// Where an `http` stream keeps the signing secret a rotation replaced, with the end of its
/// grace period: `{"secret": "whsec_…", "expires_at": "…"}`. Set only by
/// [`Settings::rotate_signing_secret`].
const PREVIOUS_SECRET: &str = "previous_signing_secret";

/// Datadog sites and their logs-intake hosts (Datadog "Send logs" API: `http-intake.logs.<site>`).
pub const DATADOG_SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// The destination types this release delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Http,
    Datadog,
    Splunk,
    S3,
    Gcs,
}

impl StreamKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(StreamKind::Http),
            "datadog" => Some(StreamKind::Datadog),
            "splunk" => Some(StreamKind::Splunk),
            "s3" => Some(StreamKind::S3),
            "gcs" => Some(StreamKind::Gcs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Http => "http",
            StreamKind::Datadog => "datadog",
            StreamKind::Splunk => "splunk",
            StreamKind::S3 => "s3",
            StreamKind::Gcs => "gcs",
        }
    }

    /// The type name WorkOS's `audit_log_configuration` uses.
    pub fn workos_name(self) -> &'static str {
        match self {
            StreamKind::Http => "GenericHttps",
            StreamKind::Datadog => "Datadog",
            StreamKind::Splunk => "Splunk",
            StreamKind::S3 => "S3",
            StreamKind::Gcs => "GoogleCloudStorage",
        }
    }

    fn secret_fields(self) -> &'static [&'static str] {
        match self {
            StreamKind::Http => &["signing_secret"],
            StreamKind::Datadog => &["api_key"],
            StreamKind::Splunk => &["token"],
            StreamKind::S3 => &["secret_access_key"],
            StreamKind::Gcs => &["hmac_secret", "service_account_json"],
        }
    }
}

/// A stream's credentials, in clear only between opening and use.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secrets(Map<String, Value>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Object(self.0.clone()).to_string().into_bytes()
    }

    /// # Errors
    ///
    /// A message if the bytes are not the JSON this type writes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Secrets(map)),
            _ => Err("stored credentials are not a JSON object".into()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// The `whsec_…` secrets that sign an `http` stream's requests at `now`: the current one,
    /// then the one it replaced while the rotation's grace period lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.get("signing_secret").into_iter().collect();
        if let Some(previous) = self.0.get(PREVIOUS_SECRET).and_then(Value::as_object) {
            let until = previous
                .get("expires_at")
                .and_then(Value::as_str)
                .and_then(|text| Timestamp::parse(text).ok());
            if until.is_some_and(|until| now < until) {
                secrets.extend(previous.get("secret").and_then(Value::as_str));
            }
        }
        secrets
    }

    /// Extra HTTP headers (name → value), which may hold credentials.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.0
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| value.as_str().map(|v| (name.clone(), v.to_owned())))
            .collect()
    }
}

/// A validated configuration: the public part (stored and shown as is) and the secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kind: StreamKind,
    pub public: Map<String, Value>,
    pub secrets: Secrets,
}

impl Settings {
    /// Parses the `config` of a new stream of type `kind`. `generate_secret` makes a signing
    /// secret when an `http` stream has none.
    ///
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        kind: StreamKind,
        config: &Value,
        generate_secret: impl FnOnce() -> String,
    ) -> Result<Self, Vec<FieldProblem>> {
        Self::merge(
            kind,
            &Map::new(),
            &Secrets::default(),
            config,
            generate_secret,
        )
    }

    /// Applies a PATCH's `config` over stored settings: given fields replace, others stay.
    ///
    /// # Errors
    ///
    /// Every problem of the merged configuration, naming its field.
    pub fn merge(
        kind: StreamKind,
        public: &Map<String, Value>,
        secrets: &Secrets,
        patch: &Value,
        generate_secret: impl FnOnce() -> String,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let Value::Object(patch) = patch else {
            return Err(vec![problem(
                "invalid_type",
                "config",
                "config must be an object",
            )]);
        };
        let mut merged = public.clone();
        let mut secret_map = secrets.0.clone();
        if kind == StreamKind::Gcs {
            // Giving one credential form replaces the stored other, so switching needs no nulls.
            let names = |key: &str| patch.get(key).is_some_and(|v| !v.is_null());
            if names("service_account_json") {
                merged.remove("hmac_access_id");
                secret_map.remove("hmac_secret");
            } else if names("hmac_access_id") || names("hmac_secret") {
                secret_map.remove("service_account_json");
            }
        }
        if patch.contains_key(PREVIOUS_SECRET) {
            problems.push(problem(
                "read_only",
                &format!("config.{PREVIOUS_SECRET}"),
                "the previous signing secret is kept by a rotation (POST …/rotate_secret), not set",
            ));
        }
        if patch.contains_key("signing_secret") {
            // A secret chosen (or regenerated) outright replaces both: the old one stops signing.
            secret_map.remove(PREVIOUS_SECRET);
        }
        for (key, value) in patch {
            if key == PREVIOUS_SECRET {
                continue;
            }
            if kind.secret_fields().contains(&key.as_str()) || key == "headers" {
                secret_map.insert(key.clone(), value.clone());
            } else if key == "batch" {
                let batch = crate::batch::merge(merged.get("batch"), value);
                merged.insert(key.clone(), batch);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        let text = |map: &Map<String, Value>,
                    key: &str,
                    required: bool,
                    problems: &mut Vec<FieldProblem>|
         -> Option<String> {
            match map.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                None | Some(Value::Null) if !required => None,
                None | Some(Value::Null) => {
                    problems.push(problem(
                        "required",
                        &format!("config.{key}"),
                        &format!("{key} is required"),
                    ));
                    None
                }
                Some(_) => {
                    problems.push(problem(
                        "invalid_value",
                        &format!("config.{key}"),
                        &format!("{key} must be a non-empty string"),
                    ));
                    None
                }
            }
        };
        let url = |map: &Map<String, Value>,
                   key: &str,
                   required: bool,
                   problems: &mut Vec<FieldProblem>| {
            if let Some(value) = text(map, key, required, problems) {
                match reqwest::Url::parse(&value) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    }
                    _ => problems.push(problem(
                        "invalid_url",
                        &format!("config.{key}"),
                        &format!("{key} must be an http(s) URL"),
                    )),
                }
            }
        };
        text(&merged, "source", false, &mut problems);
        if let Some(batch) = merged.get("batch") {
            crate::batch::validate(batch, &mut problems);
        }
        match kind {
            StreamKind::Http => {
                url(&merged, "url", true, &mut problems);
                match merged.get("format") {
                    None | Some(Value::Null) => {
                        merged.insert("format".into(), json!("json"));
                    }
                    Some(Value::String(f)) if f == "json" || f == "ndjson" => {}
                    Some(_) => problems.push(problem(
                        "invalid_value",
                        "config.format",
                        "format must be 'json' or 'ndjson'",
                    )),
                }
                match secret_map.get("signing_secret") {
                    None | Some(Value::Null) => {
                        secret_map.insert("signing_secret".into(), json!(generate_secret()));
                    }
                    Some(Value::String(s)) if s.strip_prefix("whsec_").is_some_and(|k| decode_base64(k).is_some_and(|k| k.len() >= 16)) => {}
                    Some(_) => problems.push(problem(
                        "invalid_value",
                        "config.signing_secret",
                        "signing_secret must be 'whsec_' followed by the base64 of at least 16 bytes",
                    )),
                }
                match secret_map.get("headers") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(headers)) => {
                        for (name, value) in headers {
                            let valid_name =
                                reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
                            let valid_value = value
                                .as_str()
                                .is_some_and(|v| reqwest::header::HeaderValue::from_str(v).is_ok());
                            if !valid_name || !valid_value {
                                problems.push(problem(
                                    "invalid_value",
                                    &format!("config.headers.{name}"),
                                    "not a valid HTTP header",
                                ));
                            }
                        }
                    }
                    Some(_) => problems.push(problem(
                        "invalid_type",
                        "config.headers",
                        "headers must be an object of strings",
                    )),
                }
            }
            StreamKind::Datadog => {
                match text(&merged, "site", true, &mut problems) {
                    Some(site) if !DATADOG_SITES.contains(&site.as_str()) => {
                        problems.push(problem(
                            "invalid_value",
                            "config.site",
                            &format!("site must be one of {}", DATADOG_SITES.join(", ")),
                        ))
                    }
                    _ => {}
                }
                url(&merged, "endpoint", false, &mut problems);
                text(&secret_map, "api_key", true, &mut problems);
            }
            StreamKind::Splunk => {
                url(&merged, "url", true, &mut problems);
                text(&merged, "index", false, &mut problems);
                text(&secret_map, "token", true, &mut problems);
            }
            StreamKind::S3 | StreamKind::Gcs => {
                let (key_id, _) = if kind == StreamKind::S3 {
                    ("access_key_id", "secret_access_key")
                } else {
                    ("hmac_access_id", "hmac_secret")
                };
                match text(&merged, "bucket", true, &mut problems) {
                    Some(bucket) if !valid_bucket(&bucket) => problems.push(problem(
                        "invalid_value",
                        "config.bucket",
                        "bucket must be 3 to 63 characters of a-z, 0-9, '.', '-' and '_'",
                    )),
                    _ => {}
                }
                if kind == StreamKind::S3 {
                    text(&merged, "region", true, &mut problems);
                }
                if let Some(prefix) = text(&merged, "prefix", false, &mut problems)
                    && (prefix.starts_with('/') || prefix.contains(".."))
                {
                    problems.push(problem(
                        "invalid_value",
                        "config.prefix",
                        "prefix must not start with '/' or contain '..'",
                    ));
                }
                url(&merged, "endpoint", false, &mut problems);
                let service_account = secret_map
                    .get("service_account_json")
                    .filter(|v| !v.is_null())
                    .cloned();
                match (kind, service_account) {
                    (StreamKind::Gcs, Some(key)) => {
                        if merged.get("hmac_access_id").is_some_and(|v| !v.is_null())
                            || secret_map.get("hmac_secret").is_some_and(|v| !v.is_null())
                        {
                            problems.push(problem(
                                "conflict",
                                "config.service_account_json",
                                "give either hmac_access_id and hmac_secret, or service_account_json, not both",
                            ));
                        }
                        // Stored as the key file's text, whichever form it came in.
                        let key_text = match key {
                            Value::String(text) => text,
                            other => other.to_string(),
                        };
                        match crate::gcs::ServiceAccount::parse(&key_text) {
                            Ok(_) => {
                                secret_map.insert("service_account_json".into(), json!(key_text));
                            }
                            Err(error) => problems.push(problem(
                                "invalid_value",
                                "config.service_account_json",
                                &error.to_string(),
                            )),
                        }
                    }
                    (StreamKind::Gcs, None)
                        if merged.get("hmac_access_id").is_none_or(Value::is_null)
                            && secret_map.get("hmac_secret").is_none_or(Value::is_null) =>
                    {
                        problems.push(problem(
                            "required",
                            "config.service_account_json",
                            "give hmac_access_id and hmac_secret, or service_account_json",
                        ));
                    }
                    _ => {
                        text(&merged, key_id, true, &mut problems);
                        text(&secret_map, kind.secret_fields()[0], true, &mut problems);
                    }
                }
                match merged.get("layout") {
                    None | Some(Value::Null) => {
                        merged.insert("layout".into(), json!("object_per_event"));
                    }
                    Some(Value::String(l)) if l == "object_per_event" || l == "ndjson_gzip" => {}
                    Some(_) => problems.push(problem(
                        "invalid_value",
                        "config.layout",
                        "layout must be 'object_per_event' or 'ndjson_gzip'",
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        merged.retain(|_, v| !v.is_null());
        secret_map.retain(|_, v| !v.is_null());
        Ok(Settings {
            kind,
            public: merged,
            secrets: Secrets(secret_map),
        })
    }

    /// The configuration as shown: public fields, the batching in effect (defaults filled in),
    /// and secrets masked to their last 4 characters.
    pub fn masked(&self) -> Value {
        let mut shown = self.public.clone();
        shown.insert("batch".into(), self.batch().to_json());
        for (key, value) in &self.secrets.0 {
            let masked = match value {
                Value::Object(previous) if key == PREVIOUS_SECRET => json!({
                    "secret": mask(previous.get("secret").and_then(Value::as_str).unwrap_or("")),
                    "expires_at": previous.get("expires_at"),
                }),
                Value::String(text) if key == "service_account_json" => {
                    match crate::gcs::ServiceAccount::parse(text) {
                        Ok(account) => json!({
                            "client_email": account.client_email,
                            "token_uri": account.token_uri,
                            "private_key_id": account.private_key_id.as_deref().map(mask),
                            "private_key": "****",
                        }),
                        Err(_) => json!("****"),
                    }
                }
                Value::Object(headers) => Value::Object(
                    headers
                        .iter()
                        .map(|(name, v)| (name.clone(), json!(mask(v.as_str().unwrap_or("")))))
                        .collect(),
                ),
                other => json!(mask(other.as_str().unwrap_or(""))),
            };
            shown.insert(key.clone(), masked);
        }
        Value::Object(shown)
    }

    /// Makes `new` an `http` stream's signing secret; the current one keeps signing beside it
    /// until `grace_until` (Standard Webhooks: a request may carry several signatures), so a
    /// receiver can move to the new secret without refusing a delivery.
    ///
    /// # Errors
    ///
    /// A problem naming `type` if the stream is not `http` (only webhooks are signed).
    pub fn rotate_signing_secret(
        &mut self,
        new: String,
        grace_until: Timestamp,
    ) -> Result<(), FieldProblem> {
        if self.kind != StreamKind::Http {
            return Err(problem(
                "invalid_value",
                "type",
                "only http streams sign their requests; this stream has no signing secret",
            ));
        }
        let map = &mut self.secrets.0;
        if let Some(Value::String(current)) = map.insert("signing_secret".into(), json!(new)) {
            map.insert(
                PREVIOUS_SECRET.into(),
                json!({"secret": current, "expires_at": grace_until.to_string()}),
            );
        }
        Ok(())
    }

    /// When the stream sends.
    pub fn batch(&self) -> crate::batch::BatchPolicy {
        crate::batch::BatchPolicy::of(self.kind, &self.public)
    }

    /// The service-account key of a `gcs` stream that uses one.
    pub fn service_account(&self) -> Option<crate::gcs::ServiceAccount> {
        if self.kind != StreamKind::Gcs {
            return None;
        }
        crate::gcs::ServiceAccount::parse(self.secrets.get("service_account_json")?).ok()
    }

    /// The URL deliveries go to, for the private-address guard (a service account's
    /// `token_uri` is checked too: see [`Settings::service_account`]).
    pub fn destination_url(&self) -> Option<String> {
        let field = |key: &str| {
            self.public
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match self.kind {
            StreamKind::Http | StreamKind::Splunk => field("url"),
            StreamKind::Datadog => field("endpoint")
                .or_else(|| field("site").map(|site| crate::datadog::intake_url(&site))),
            StreamKind::S3 => field("endpoint").or_else(|| {
                Some(format!(
                    "https://{}.s3.{}.amazonaws.com",
                    field("bucket")?,
                    field("region")?
                ))
            }),
            StreamKind::Gcs => field("endpoint").or_else(|| Some(GCS_XML_ENDPOINT.to_owned())),
        }
    }
}

/// GCS's S3-compatible XML API.
pub const GCS_XML_ENDPOINT: &str = "https://storage.googleapis.com";

/// S3 and GCS bucket naming rules, loosely: what both accept.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

fn mask(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

pub(crate) fn problem(code: &'static str, field: &str, message: &str) -> FieldProblem {
    FieldProblem {
        code,
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A new Standard Webhooks signing secret: `whsec_` and the base64 of 24 random bytes.
///
/// # Errors
///
/// If the OS random source fails.
pub fn new_signing_secret() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut key = [0u8; 24];
    getrandom::fill(&mut key)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: Result<Settings, Vec<FieldProblem>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_period_ends() {
        let old = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0".to_owned();
        let new = "whsec_bmV3c2VjcmV0bmV3c2VjcmV0".to_owned();
        let mut settings = Settings::parse(
            StreamKind::Http,
            &json!({"url": "https://siem.test/hook", "signing_secret": old}),
            String::new,
        )
        .expect("valid");
        let now = Timestamp::from_unix_millis(1_000_000);
        let until = now.plus_millis(60_000);
        settings
            .rotate_signing_secret(new.clone(), until)
            .expect("http streams rotate");
        assert_eq!(
            settings.secrets.signing_secrets(now),
            [new.as_str(), old.as_str()]
        );
        assert_eq!(settings.secrets.signing_secrets(until), [new.as_str()]);
        let shown = settings.masked();
        assert_eq!(shown["signing_secret"], "****cmV0");
        assert_eq!(
            shown["previous_signing_secret"],
            json!({"secret": "****cmV0", "expires_at": until.to_string()})
        );

        // Nobody sets the previous secret by hand; choosing a secret outright ends the grace.
        let refused = Settings::merge(
            StreamKind::Http,
            &settings.public,
            &settings.secrets,
            &json!({"previous_signing_secret": {"secret": old, "expires_at": "2999-01-01T00:00:00Z"}}),
            String::new,
        );
        assert_eq!(fields(refused), ["config.previous_signing_secret"]);
        let chosen = Settings::merge(
            StreamKind::Http,
            &settings.public,
            &settings.secrets,
            &json!({"signing_secret": old}),
            String::new,
        )
        .expect("valid");
        assert_eq!(chosen.secrets.signing_secrets(now), [old.as_str()]);

        let mut datadog = Settings::parse(
            StreamKind::Datadog,
            &json!({"site": "datadoghq.com", "api_key": "k"}),
            String::new,
        )
        .expect("valid");
        assert!(datadog.rotate_signing_secret(new, until).is_err());
    }

    #[test]
    fn each_type_checks_its_fields() {
        let secret = || "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
        assert_eq!(
            fields(Settings::parse(StreamKind::Http, &json!({}), secret)),
            ["config.url"]
        );
        assert_eq!(
            fields(Settings::parse(
                StreamKind::Http,
                &json!({"url": "ftp://x", "format": "xml"}),
                secret
            )),
            ["config.url", "config.format"]
        );
        assert_eq!(
            fields(Settings::parse(
                StreamKind::Datadog,
                &json!({"site": "nope"}),
                secret
            )),
            ["config.site", "config.api_key"]
        );
        assert_eq!(
            fields(Settings::parse(
                StreamKind::Splunk,
                &json!({"url": "https://hec.test"}),
                secret
            )),
            ["config.token"]
        );
        assert_eq!(
            fields(Settings::parse(
                StreamKind::Http,
                &json!({"url": "https://x.test", "signing_secret": "plain"}),
                secret
            )),
            ["config.signing_secret"]
        );
    }

    #[test]
    fn secrets_are_split_off_and_masked() {
        let settings = Settings::parse(
            StreamKind::Http,
            &json!({"url": "https://siem.test/in", "headers": {"Authorization": "Bearer abcdef1234"}}),
            || "whsec_c2VjcmV0c2VjcmV0c2VjcmV0".to_owned(),
        )
        .expect("valid");
        assert_eq!(settings.public.get("format"), Some(&json!("json")));
        assert!(settings.public.get("headers").is_none());
        assert_eq!(
            settings.secrets.headers(),
            [("Authorization".to_owned(), "Bearer abcdef1234".to_owned())]
        );
        let shown = settings.masked().to_string();
        assert!(
            !shown.contains("abcdef") && shown.contains("****1234") && shown.contains("****cmV0"),
            "{shown}"
        );

        let patched = Settings::merge(
            StreamKind::Http,
            &settings.public,
            &settings.secrets,
            &json!({"format": "ndjson"}),
            String::new,
        )
        .expect("valid");
        assert_eq!(
            patched.secrets, settings.secrets,
            "a patch keeps the credentials it does not name"
        );
        assert_eq!(patched.public.get("format"), Some(&json!("ndjson")));
    }
}
