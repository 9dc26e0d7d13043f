//! What a stream is configured with, as the streams API takes it (`config`), whatever its type:
//! the destination's own fields (each module's `config.rs`, declared by
//! [`Destination::fields`]), `event_format?` ([`crate::format`]), `batch: {max_events?,
//! max_wait_seconds?}` ([`crate::batch`]), `filters: {actions?, actor_types?, target_types?}`
//! ([`crate::filter`]) and `egress_proxy`, `egress_proxy_username`, `egress_proxy_password`
//! ([`crate::egress`]).
//!
//! A configuration is kept as two JSON maps: the public fields, stored and shown as they are, and
//! the credentials (the fields a destination declares secret), [`crate::seal`]ed at rest and
//! masked when shown (`"****…1234"`). This module merges a `config` (a new stream's, or a
//! PATCH's over the stored one) generically; the destination then parses and checks the result.
//! Every problem is reported with its field, prefixed `config.`.

use serde_json::{Map, Value};
use trailmark_domain::{FieldProblem, Timestamp};

use crate::destination::{Destination, Sink};

/// A destination type, as stored in a stream's `type`.
#[derive(Clone, Copy)]
pub struct StreamKind(&'static dyn Destination);

impl StreamKind {
    pub fn parse(text: &str) -> Option<Self> {
        crate::destination::find(text).map(StreamKind)
    }

    /// Every type, in the order forms offer them.
    pub fn all() -> impl Iterator<Item = StreamKind> {
        crate::destination::all().iter().map(|d| StreamKind(*d))
    }

    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    /// The type name WorkOS's `audit_log_configuration` uses.
    pub fn workos_name(self) -> &'static str {
        self.0.workos_name()
    }

    pub fn destination(self) -> &'static dyn Destination {
        self.0
    }
}

/// The first destination forms offer (`http`).
impl Default for StreamKind {
    fn default() -> Self {
        StreamKind(crate::destination::all()[0])
    }
}

impl PartialEq for StreamKind {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for StreamKind {}

impl std::fmt::Debug for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamKind({})", self.as_str())
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
}

/// A validated configuration: the public part (stored and shown as is) and the secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kind: StreamKind,
    pub public: Map<String, Value>,
    pub secrets: Secrets,
}

impl Settings {
    /// Parses the `config` of a new stream of type `kind`. `generate_secret` makes the
    /// credential a destination generates when none is given (an `http` signing secret).
    ///
    /// # Errors
    ///
    /// Every problem, naming its field.
    pub fn parse(
        kind: StreamKind,
        config: &Value,
        generate_secret: impl FnMut() -> String,
    ) -> Result<Self, Vec<FieldProblem>> {
        Self::merge(
            kind,
            &Map::new(),
            &Secrets::default(),
            config,
            generate_secret,
        )
    }

    /// The settings stored for a stream (credentials already opened), as they are: checked only
    /// when a sink is made of them ([`Settings::sink`]), so a stream saved by an earlier release
    /// still loads.
    pub fn stored(kind: StreamKind, public: Map<String, Value>, secrets: Secrets) -> Self {
        Settings {
            kind,
            public,
            secrets,
        }
    }

    /// Applies a PATCH's `config` over stored settings: given fields replace, `null` ones
    /// return to their default (a credential set to `null` is dropped, or generated again),
    /// others stay.
    ///
    /// # Errors
    ///
    /// Every problem of the merged configuration, naming its field.
    pub fn merge(
        kind: StreamKind,
        public: &Map<String, Value>,
        secrets: &Secrets,
        patch: &Value,
        mut generate_secret: impl FnMut() -> String,
    ) -> Result<Self, Vec<FieldProblem>> {
        let Value::Object(patch) = patch else {
            return Err(vec![problem(
                "invalid_type",
                "config",
                "config must be an object",
            )]);
        };
        let destination = kind.destination();
        let mut problems = Vec::new();
        let mut merged = public.clone();
        let mut secret_map = secrets.0.clone();
        destination.before_patch(patch, &mut merged, &mut secret_map);
        for (key, value) in patch {
            if destination.read_only().contains(&key.as_str()) {
                problems.push(problem(
                    "read_only",
                    &format!("config.{key}"),
                    &format!("{key} is kept by Trailmark, not set"),
                ));
            } else if destination.is_secret(key) {
                secret_map.insert(key.clone(), value.clone());
            } else if key == "batch" {
                let batch = crate::batch::merge(merged.get("batch"), value);
                merged.insert(key.clone(), batch);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        if let Some(batch) = merged.get("batch") {
            crate::batch::validate(batch, &mut problems);
        }
        if let Some(filters) = merged.get("filters") {
            crate::filter::validate(filters, &mut problems);
        }
        if let Some(format) = merged.get(crate::format::KEY) {
            crate::format::validate(format, &mut problems);
        }
        merged.retain(|_, v| !v.is_null());
        secret_map.retain(|_, v| !v.is_null());
        crate::egress::validate(&mut merged, &mut secret_map, &mut problems);
        if let Err(found) =
            destination.configure(&mut merged, &mut secret_map, &mut generate_secret)
        {
            problems.extend(found);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            kind,
            public: merged,
            secrets: Secrets(secret_map),
        })
    }

    /// The configured destination.
    ///
    /// # Errors
    ///
    /// The problems of stored settings this release no longer accepts.
    pub fn sink(&self) -> Result<Box<dyn Sink>, Vec<FieldProblem>> {
        let (mut public, mut secrets) = (self.public.clone(), self.secrets.0.clone());
        self.kind
            .destination()
            .configure(&mut public, &mut secrets, &mut String::new)
    }

    /// The configuration as shown: public fields, the batching in effect (defaults filled in),
    /// and credentials masked.
    pub fn masked(&self) -> Value {
        let mut shown = self.public.clone();
        shown.insert("batch".into(), self.batch().to_json());
        for (key, value) in &self.secrets.0 {
            shown.insert(key.clone(), self.kind.destination().show_secret(key, value));
        }
        Value::Object(shown)
    }

    /// Makes `new` the stream's generated credential (an `http` stream's signing secret); the
    /// current one keeps working beside it until `grace_until`.
    ///
    /// # Errors
    ///
    /// A problem naming `type` if the stream's destination has no such credential.
    pub fn rotate_signing_secret(
        &mut self,
        new: String,
        grace_until: Timestamp,
    ) -> Result<(), FieldProblem> {
        self.kind
            .destination()
            .rotate_secret(&mut self.secrets.0, new, grace_until)
    }

    /// The credential Trailmark generated for this stream, if its destination generates one.
    pub fn generated_secret(&self) -> Option<&str> {
        self.secrets
            .get(self.kind.destination().generated_secret()?)
    }

    /// When the stream sends.
    pub fn batch(&self) -> crate::batch::BatchPolicy {
        crate::batch::BatchPolicy::of(self.kind, &self.public)
    }
}

/// Reads a destination's settings into its typed configuration, collecting every problem: the
/// parse step of each module's `config.rs`.
pub struct Reader<'a> {
    pub public: &'a mut Map<String, Value>,
    pub secrets: &'a mut Map<String, Value>,
    pub problems: Vec<FieldProblem>,
}

impl<'a> Reader<'a> {
    pub fn new(public: &'a mut Map<String, Value>, secrets: &'a mut Map<String, Value>) -> Self {
        Reader {
            public,
            secrets,
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, code: &'static str, key: &str, message: &str) {
        self.problems
            .push(problem(code, &format!("config.{key}"), message));
    }

    fn string(&mut self, secret: bool, key: &str, required: bool) -> Option<String> {
        let map = if secret {
            &*self.secrets
        } else {
            &*self.public
        };
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.problem("required", key, &format!("{key} is required"));
                None
            }
            Some(_) => {
                self.problem(
                    "invalid_value",
                    key,
                    &format!("{key} must be a non-empty string"),
                );
                None
            }
        }
    }

    /// A public text field.
    pub fn text(&mut self, key: &str, required: bool) -> Option<String> {
        self.string(false, key, required)
    }

    /// A credential given as text.
    pub fn secret(&mut self, key: &str, required: bool) -> Option<String> {
        self.string(true, key, required)
    }

    /// A public http(s) URL.
    pub fn url(&mut self, key: &str, required: bool) -> Option<String> {
        let value = self.text(key, required)?;
        match reqwest::Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(value)
            }
            _ => {
                self.problem("invalid_url", key, &format!("{key} must be an http(s) URL"));
                None
            }
        }
    }

    /// One of `choices`; `default` (stored, so it is shown) when not given.
    pub fn choice(&mut self, key: &str, choices: &[&'static str], default: &'static str) -> String {
        match self.public.get(key) {
            None | Some(Value::Null) => {
                self.public.insert(key.into(), Value::from(default));
                default.to_owned()
            }
            Some(Value::String(given)) if choices.contains(&given.as_str()) => given.clone(),
            Some(_) => {
                let listed: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                self.problem(
                    "invalid_value",
                    key,
                    &format!("{key} must be {}", listed.join(" or ")),
                );
                default.to_owned()
            }
        }
    }

    /// The typed configuration `value` if no problem was found.
    ///
    /// # Errors
    ///
    /// Every problem found.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldProblem>> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ if self.problems.is_empty() => Err(vec![problem(
                "invalid_value",
                "config",
                "the configuration is incomplete",
            )]),
            _ => Err(self.problems),
        }
    }
}

pub(crate) fn problem(code: &'static str, field: &str, message: &str) -> FieldProblem {
    FieldProblem {
        code,
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// Problems as one line, for a stream's `last_error`.
pub fn describe(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
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
    use serde_json::json;

    use super::*;

    fn kind(name: &str) -> StreamKind {
        StreamKind::parse(name).expect("a destination")
    }

    /// An `http` stream's typed configuration, as its sink is made from its stored settings.
    fn http_config(settings: &Settings) -> crate::http::Config {
        crate::http::Config::parse(
            &mut settings.public.clone(),
            &mut settings.secrets.0.clone(),
            &mut String::new,
        )
        .expect("config")
    }

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
            kind("http"),
            &json!({"url": "https://siem.test/hook", "signing_secret": old}),
            String::new,
        )
        .expect("valid");
        let now = Timestamp::from_unix_millis(1_000_000);
        let until = now.plus_millis(60_000);
        settings
            .rotate_signing_secret(new.clone(), until)
            .expect("http streams rotate");
        let signing = |settings: &Settings, at| {
            http_config(settings)
                .signing_secrets(at)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(signing(&settings, now), [new.clone(), old.clone()]);
        assert_eq!(signing(&settings, until), std::slice::from_ref(&new));
        let shown = settings.masked();
        assert_eq!(shown["signing_secret"], "****cmV0");
        assert_eq!(
            shown["previous_signing_secret"],
            json!({"secret": "****cmV0", "expires_at": until.to_string()})
        );

        // Nobody sets the previous secret by hand; choosing a secret outright ends the grace.
        let refused = Settings::merge(
            kind("http"),
            &settings.public,
            &settings.secrets,
            &json!({"previous_signing_secret": {"secret": old, "expires_at": "2999-01-01T00:00:00Z"}}),
            String::new,
        );
        assert_eq!(fields(refused), ["config.previous_signing_secret"]);
        let chosen = Settings::merge(
            kind("http"),
            &settings.public,
            &settings.secrets,
            &json!({"signing_secret": old}),
            String::new,
        )
        .expect("valid");
        assert_eq!(signing(&chosen, now), std::slice::from_ref(&old));

        let mut datadog = Settings::parse(
            kind("datadog"),
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
            fields(Settings::parse(kind("http"), &json!({}), secret)),
            ["config.url"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("http"),
                &json!({"url": "ftp://x", "format": "xml"}),
                secret
            )),
            ["config.url", "config.format"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("datadog"),
                &json!({"site": "nope"}),
                secret
            )),
            ["config.site", "config.api_key"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("splunk"),
                &json!({"url": "https://hec.test"}),
                secret
            )),
            ["config.token"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("http"),
                &json!({"url": "https://x.test", "signing_secret": "plain"}),
                secret
            )),
            ["config.signing_secret"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("s3"),
                &json!({"bucket": "A", "region": "eu-west-1", "access_key_id": "k", "secret_access_key": "s", "prefix": "/x"}),
                secret
            )),
            ["config.bucket", "config.prefix"]
        );
        assert_eq!(
            fields(Settings::parse(
                kind("syslog"),
                &json!({"host": "siem.test", "port": 0, "client_key": "k"}),
                secret
            )),
            ["config.port", "config.client_certificate"]
        );
        let syslog =
            Settings::parse(kind("syslog"), &json!({"host": "siem.test"}), secret).expect("valid");
        assert_eq!(syslog.public.get("format"), Some(&json!("json")));
    }

    #[test]
    fn secrets_are_split_off_and_masked() {
        let settings = Settings::parse(
            kind("http"),
            &json!({"url": "https://siem.test/in", "headers": {"Authorization": "Bearer abcdef1234"}}),
            || "whsec_c2VjcmV0c2VjcmV0c2VjcmV0".to_owned(),
        )
        .expect("valid");
        assert_eq!(settings.public.get("format"), Some(&json!("json")));
        assert!(settings.public.get("headers").is_none());
        assert_eq!(
            http_config(&settings).headers,
            [("Authorization".to_owned(), "Bearer abcdef1234".to_owned())]
        );
        let shown = settings.masked().to_string();
        assert!(
            !shown.contains("abcdef") && shown.contains("****1234") && shown.contains("****cmV0"),
            "{shown}"
        );

        let patched = Settings::merge(
            kind("http"),
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

    /// Settings as the release before destination modules stored them load and deliver as
    /// they are: same maps, same credential names.
    #[test]
    fn settings_stored_by_earlier_releases_still_load() {
        let stored = [
            (
                "http",
                json!({"url": "https://siem.test/in", "format": "ndjson", "source": "acme"}),
                json!({"signing_secret": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0", "headers": {"X-Tenant": "acme"},
                       "previous_signing_secret": {"secret": "whsec_bmV3c2VjcmV0bmV3c2VjcmV0", "expires_at": "2026-01-01T00:00:00.000Z"}}),
            ),
            (
                "datadog",
                json!({"site": "datadoghq.eu", "batch": {"max_events": 10}}),
                json!({"api_key": "k"}),
            ),
            (
                "splunk",
                json!({"url": "https://hec.test:8088", "index": "audit"}),
                json!({"token": "t"}),
            ),
            (
                "s3",
                json!({"bucket": "audit", "region": "eu-west-1", "access_key_id": "AKIA", "layout": "ndjson_gzip"}),
                json!({"secret_access_key": "s"}),
            ),
            (
                "gcs",
                json!({"bucket": "audit", "hmac_access_id": "GOOG", "layout": "object_per_event"}),
                json!({"hmac_secret": "s"}),
            ),
        ];
        for (name, public, secrets) in stored {
            let secrets = Secrets::from_bytes(secrets.to_string().as_bytes()).expect("secrets");
            let settings = Settings::stored(
                kind(name),
                public.as_object().cloned().unwrap_or_default(),
                secrets,
            );
            assert!(
                settings.sink().is_ok(),
                "{name}: {:?}",
                settings.sink().err()
            );
        }
    }
}
