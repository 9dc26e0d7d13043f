//! The one trait every destination implements, and the list of them.
//!
//! A destination module (`http/`, `datadog/`, `splunk/`, `s3/`, `gcs/`, `syslog/`, `sentinel/`)
//! holds everything that knows its service: the fields it is configured with
//! ([`Destination::fields`], from which the portal builds its form), the typed configuration it
//! parses them into (pure; every problem names its field), its batching defaults, and a
//! [`Sink`]: the configured destination, which encodes events (pure), builds and sends the
//! request, and classifies the answer into an [`Outcome`]. The worker, the streams API and the
//! portal see only these two traits, so a new destination is a new module and one line in
//! [`all`].
//!
//! Stored settings stay two JSON maps per stream, whatever the type: the public fields (shown
//! as they are) and the credentials (the fields whose [`FieldKind`] is secret), sealed at rest.
//! A destination's typed configuration is parsed from them whenever it is needed, so streams
//! stored by earlier releases load as they are.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};
use trailmark_domain::{FieldProblem, Timestamp};

use crate::Outcome;
use crate::format::EventFormat;
use crate::settings::problem;

/// Every destination this release delivers to, in the order forms offer them.
static ALL: [&dyn Destination; 7] = [
    &crate::http::Http,
    &crate::datadog::Datadog,
    &crate::splunk::Splunk,
    &crate::s3::S3,
    &crate::gcs::Gcs,
    &crate::syslog::Syslog,
    &crate::sentinel::Sentinel,
];

/// Every destination, in the order forms offer them.
pub fn all() -> &'static [&'static dyn Destination] {
    &ALL
}

/// The destination stored as `name` (a stream's `type`).
pub fn find(name: &str) -> Option<&'static dyn Destination> {
    ALL.iter().copied().find(|d| d.name() == name)
}

/// How a setting is entered, and whether it is a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Text of several lines that is not a credential (a PEM certificate).
    LongText,
    Url,
    Number,
    /// Several values: a JSON array of strings (a form takes them comma-separated).
    List,
    /// One of a fixed set.
    Select(&'static [&'static str]),
    /// A credential: sealed at rest, write-only in forms, masked when shown.
    Secret,
    /// A credential of several lines (a key file).
    SecretText,
    /// Extra HTTP headers, `{name: value}`; credentials, since values often are.
    Headers,
}

impl FieldKind {
    /// Whether values of this kind are credentials.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            FieldKind::Secret | FieldKind::SecretText | FieldKind::Headers
        )
    }
}

/// One setting a destination declares: its `config` key (`batch.max_events` for a nested one),
/// its label and help in forms, how it is entered, and whether it must be given.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    /// One sentence for forms; empty when the label says enough.
    pub help: &'static str,
}

impl Field {
    pub const fn new(name: &'static str, label: &'static str, kind: FieldKind) -> Self {
        Field {
            name,
            label,
            kind,
            required: false,
            help: "",
        }
    }

    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub const fn help(mut self, help: &'static str) -> Self {
        self.help = help;
        self
    }
}

/// The settings every stream takes, whatever its destination ([`crate::format`],
/// [`crate::batch`], [`crate::filter`], [`crate::egress`]).
pub const COMMON_FIELDS: &[Field] = &[
    Field::new(
        crate::format::KEY,
        "Send each event as",
        FieldKind::Select(crate::format::FORMATS),
    )
    .help("workos: the event object (the default); ocsf: an OCSF 1.3.0 API Activity event holding it."),
    Field::new(
        "batch.max_events",
        "Batch: most events per request",
        FieldKind::Number,
    ),
    Field::new(
        "batch.max_wait_seconds",
        "Batch: longest wait for a fuller batch (seconds)",
        FieldKind::Number,
    ),
    Field::new("filters.actions", "Only these actions", FieldKind::List)
        .help("Comma-separated; 'user.*' takes every action that starts with 'user.'. Empty: all."),
    Field::new(
        "filters.actor_types",
        "Only these actor types",
        FieldKind::List,
    )
    .help("Comma-separated. Empty: all."),
    Field::new(
        "filters.target_types",
        "Only events with a target of these types",
        FieldKind::List,
    )
    .help("Comma-separated. Empty: all."),
    Field::new("egress_proxy", "Egress proxy", FieldKind::Text).help(
        "An HTTP CONNECT proxy for this stream (http://host:port), or 'none' to connect directly. Empty: the server's egress proxy, if it has one.",
    ),
    Field::new(
        "egress_proxy_username",
        "Egress proxy user name",
        FieldKind::Text,
    ),
    Field::new(
        "egress_proxy_password",
        "Egress proxy password",
        FieldKind::Secret,
    ),
];

/// When a destination's batches go out unless the stream says otherwise ([`crate::batch`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchDefaults {
    /// The most events one attempt takes (a stream may ask for fewer, not more).
    pub max_events: usize,
    /// How long the oldest event waits for a fuller batch, in seconds.
    pub max_wait_seconds: f64,
}

/// A kind of destination: what it is configured with, and how a configuration becomes a
/// [`Sink`].
pub trait Destination: Send + Sync + 'static {
    /// The stream `type` it is stored and requested as (`http`, `datadog`, …).
    fn name(&self) -> &'static str;
    /// Its name in forms.
    fn label(&self) -> &'static str;
    /// The type name WorkOS's `audit_log_configuration` uses.
    fn workos_name(&self) -> &'static str;
    /// Its settings, in the order forms show them (the [`COMMON_FIELDS`] follow).
    fn fields(&self) -> &'static [Field];
    /// Its batching defaults for the stored public settings `public`.
    fn batching(&self, public: &Map<String, Value>) -> BatchDefaults;
    /// Parses and checks a configuration (pure: no I/O), filling in defaults in `public` and
    /// `secrets` (nulls are already gone); `generate_secret` makes a credential Trailmark
    /// generates when none is given ([`Destination::generated_secret`]).
    ///
    /// # Errors
    ///
    /// Every problem, each naming its field (`config.<name>`).
    fn configure(
        &self,
        public: &mut Map<String, Value>,
        secrets: &mut Map<String, Value>,
        generate_secret: &mut dyn FnMut() -> String,
    ) -> Result<Box<dyn Sink>, Vec<FieldProblem>>;

    /// Whether `key` is one of its credentials (or of the settings every stream takes).
    fn is_secret(&self, key: &str) -> bool {
        self.fields()
            .iter()
            .chain(COMMON_FIELDS)
            .any(|f| f.name == key && f.kind.is_secret())
    }
    /// Keys a `config` may not set (state kept by Trailmark itself).
    fn read_only(&self) -> &'static [&'static str] {
        &[]
    }
    /// Adjusts the stored settings before a patch is applied over them (a credential given in
    /// one form replaces one stored in another).
    fn before_patch(
        &self,
        _patch: &Map<String, Value>,
        _public: &mut Map<String, Value>,
        _secrets: &mut Map<String, Value>,
    ) {
    }
    /// How the credential `name` is shown: masked to its last four characters.
    fn show_secret(&self, _name: &str, value: &Value) -> Value {
        mask_value(value)
    }
    /// The credential Trailmark generates when none is given, shown once in clear in the answer
    /// that made it.
    fn generated_secret(&self) -> Option<&'static str> {
        None
    }
    /// Makes `new` the generated credential, the current one kept working beside it until
    /// `grace_until`.
    ///
    /// # Errors
    ///
    /// A problem naming `type` if this destination has no such credential.
    fn rotate_secret(
        &self,
        _secrets: &mut Map<String, Value>,
        _new: String,
        _grace_until: Timestamp,
    ) -> Result<(), FieldProblem> {
        Err(problem(
            "invalid_value",
            "type",
            &format!(
                "{} streams have no signing secret; only http streams sign their requests",
                self.name()
            ),
        ))
    }
}

/// A URL a sink reaches, with the setting it comes from (the private-destination guard names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub field: &'static str,
    pub url: String,
}

/// A configured destination, ready to send.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Every URL it sends to, checked against the private-destination guard when the stream is
    /// saved and before every attempt.
    fn targets(&self) -> Vec<Target>;
    /// Sends as many of `events` (event objects, in log order) as one attempt holds, and says
    /// how many the destination acknowledged.
    async fn send(&self, cx: &Context<'_>, events: &[Value]) -> Outcome;
    /// Sends a signed checkpoint of the stream's organization (the object
    /// `GET /audit_logs/ledger/checkpoint` answers); by default as one more event.
    async fn send_checkpoint(&self, cx: &Context<'_>, checkpoint: &Value) -> Outcome {
        self.send(cx, std::slice::from_ref(checkpoint)).await
    }
}

/// What a sink sends with.
pub struct Context<'a> {
    pub stream_id: &'a str,
    pub client: &'a reqwest::Client,
    /// Whether private addresses may be reached (`--allow-private-destinations`), for sinks
    /// that connect without `client` (whose resolver applies the guard itself).
    pub allow_private: bool,
    /// State kept between attempts (access tokens), shared by every stream of this process.
    pub shared: &'a Shared,
    /// The egress proxy the stream's traffic goes through ([`crate::egress`]); requests are
    /// sent with [`Context::send`] (or [`crate::net::exchange`]) and syslog connects with
    /// [`Context::connect`], never with `client` alone, so they take it.
    pub proxy: Option<crate::egress::Via<'a>>,
    /// What time it is for credentials' expiry (the workers' clock).
    pub clock: &'a crate::worker::Clock,
    /// The AWS credentials Trailmark runs with, if the operator lends them to streams
    /// (`--aws-default-credentials`).
    pub aws_default_chain: Option<&'a crate::s3::credentials::DefaultChain>,
    /// What the stream sends as each event: encoders take an event's body from
    /// [`EventFormat::body`], and everything else (keys, timestamps, ids) from the event object.
    pub format: EventFormat,
}

/// Values destinations keep between attempts, one per type, made on first use: a destination
/// keeps its own state without the worker knowing its type.
#[derive(Default)]
pub struct Shared(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Shared {
    /// The process's `T`, made with `T::default()` on first use.
    pub fn get<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let made = || Arc::new(T::default()) as Arc<dyn Any + Send + Sync>;
        let value = match self.0.lock() {
            Ok(mut map) => Arc::clone(map.entry(TypeId::of::<T>()).or_insert_with(made)),
            // A panic while the map was held leaves it usable; start with a fresh value.
            Err(poisoned) => Arc::clone(
                poisoned
                    .into_inner()
                    .entry(TypeId::of::<T>())
                    .or_insert_with(made),
            ),
        };
        value
            .downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }
}

/// A credential as shown: `"****"` and its last four characters; an object's values (headers)
/// each so.
pub fn mask_value(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), Value::from(mask(v.as_str().unwrap_or("")))))
                .collect(),
        ),
        other => Value::from(mask(other.as_str().unwrap_or(""))),
    }
}

/// `"****"` and the last four characters of `secret`.
pub fn mask(secret: &str) -> String {
    let tail: Vec<char> = secret.chars().rev().take(4).collect();
    format!("****{}", tail.into_iter().rev().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_destination_has_a_distinct_name_and_declares_its_credentials() {
        let mut names: Vec<&str> = all().iter().map(|d| d.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().len());
        for destination in all() {
            assert!(
                destination.fields().iter().any(|f| f.kind.is_secret()),
                "{} declares no credential",
                destination.name()
            );
            assert_eq!(
                find(destination.name()).map(|d| d.name()),
                Some(destination.name())
            );
        }
        assert!(find("ftp").is_none());
    }

    #[test]
    fn shared_state_is_one_value_per_type() {
        #[derive(Default)]
        struct Counter(std::sync::atomic::AtomicUsize);
        let shared = Shared::default();
        shared
            .get::<Counter>()
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            shared
                .get::<Counter>()
                .0
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }
}
