//! The JSON shapes Trailmark sends and receives, as serde types of this crate's own.
//!
//! They mirror `crates/server/src/openapi.json`. Inputs serialize exactly the fields WorkOS
//! documents (snake_case, optional ones left out when empty); outputs ignore keys they do not
//! know, because Trailmark's objects may gain keys (never lose them). Events read back keep the
//! JSON they arrived as ([`EventObject::raw`]), since an event's leaf hash is computed over
//! every key it carries, known to this crate or not.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Who did it: a user, a service, an API key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl Actor {
    /// An actor of `kind` (e.g. `"user"`) with this id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Actor {
            id: id.into(),
            kind: kind.into(),
            name: None,
            metadata: None,
        }
    }

    /// The same actor with a display name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// What was acted on. Same shape as [`Actor`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl Target {
    /// A target of `kind` (e.g. `"post"`) with this id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Target {
            id: id.into(),
            kind: kind.into(),
            name: None,
            metadata: None,
        }
    }

    /// The same target with a display name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Where it happened: `location` is the client's IP address, as WorkOS documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// An event to send (`POST /audit_logs/events`, or one item of a batch).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub action: String,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (any ISO-8601 date-time is accepted).
    pub occurred_at: String,
    /// The schema version to validate against (Trailmark uses 1 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub actor: Actor,
    pub targets: Vec<Target>,
    pub context: Context,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl Event {
    /// An event that occurs now, with no targets and an empty context.
    pub fn new(action: impl Into<String>, actor: Actor) -> Self {
        Event {
            action: action.into(),
            occurred_at: trailmark_domain::Timestamp::now().to_string(),
            version: None,
            actor,
            targets: Vec::new(),
            context: Context::default(),
            metadata: None,
        }
    }

    /// Adds a target.
    #[must_use]
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Sets the client IP address.
    #[must_use]
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.context.location = location.into();
        self
    }

    /// Sets the client's user agent.
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.context.user_agent = Some(user_agent.into());
        self
    }

    /// Adds one metadata value (a string, number or boolean; WorkOS allows 50 keys).
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }
}

/// Trailmark's answer to an acknowledged event: it is on disk at `sequence` in its log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub organization_id: String,
    /// The event's position in its organization's log, from 0.
    pub sequence: u64,
    /// base64 SHA-256 leaf hash in the organization's Merkle log.
    pub leaf_hash: String,
}

/// One event's result in a batch, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    Stored(Receipt),
    /// Trailmark refused this event (400 or 422); the others were still stored.
    Rejected(Rejection),
}

/// Why one event of a batch was refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rejection {
    pub index: usize,
    pub status: u16,
    pub message: String,
    #[serde(default)]
    pub code: Option<String>,
    /// Each problem with its `field` or `instancePath`.
    #[serde(default)]
    pub errors: Vec<Value>,
}

impl<'de> Deserialize<'de> for BatchOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let item = Value::deserialize(deserializer)?;
        let outcome = if item.get("success") == Some(&Value::Bool(true)) {
            BatchOutcome::Stored(serde_json::from_value(item).map_err(D::Error::custom)?)
        } else {
            BatchOutcome::Rejected(serde_json::from_value(item).map_err(D::Error::custom)?)
        };
        Ok(outcome)
    }
}

/// WorkOS's list envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub list_metadata: ListMetadata,
}

/// The cursors of the neighbouring pages (strings on the wire, as WorkOS sends them).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListMetadata {
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An event as Trailmark reads it back (search, get, exports), with its sequence and leaf hash.
///
/// A purged event (retention removed its contents) is a stub: `purged` is true and the
/// content fields are empty. [`EventObject::raw`] is the JSON exactly as received, which is what
/// its leaf hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct EventObject {
    pub id: String,
    pub organization_id: String,
    pub sequence: u64,
    pub action: String,
    pub occurred_at: String,
    pub received_at: String,
    pub version: Option<u32>,
    pub actor: Actor,
    pub targets: Vec<Target>,
    pub context: Context,
    pub metadata: Option<Map<String, Value>>,
    pub leaf_hash: String,
    pub purged: bool,
    raw: Value,
}

impl EventObject {
    /// The event's JSON exactly as Trailmark sent it.
    pub fn raw(&self) -> &Value {
        &self.raw
    }
}

#[derive(Deserialize)]
struct EventFields {
    id: String,
    organization_id: String,
    sequence: u64,
    #[serde(default)]
    action: String,
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    received_at: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    actor: Actor,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    context: Context,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    leaf_hash: String,
    #[serde(default)]
    purged: bool,
}

impl<'de> Deserialize<'de> for EventObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        let fields = EventFields::deserialize(&raw).map_err(D::Error::custom)?;
        Ok(EventObject {
            id: fields.id,
            organization_id: fields.organization_id,
            sequence: fields.sequence,
            action: fields.action,
            occurred_at: fields.occurred_at,
            received_at: fields.received_at,
            version: fields.version,
            actor: fields.actor,
            targets: fields.targets,
            context: fields.context,
            metadata: fields.metadata,
            leaf_hash: fields.leaf_hash,
            purged: fields.purged,
            raw,
        })
    }
}

/// A schema version of an action (`audit_log_schema`).
#[derive(Debug, Clone, Deserialize)]
pub struct Schema {
    pub version: u32,
    pub created_at: String,
    #[serde(default)]
    pub targets: Vec<Value>,
    #[serde(default)]
    pub actor: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// An action and its latest schema (`audit_log_action`).
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub name: String,
    pub schema: Schema,
    pub created_at: String,
    pub updated_at: String,
}

/// An export job (`audit_log_export`).
#[derive(Debug, Clone, Deserialize)]
pub struct Export {
    pub id: String,
    /// `pending`, `ready` or `error`.
    pub state: String,
    /// A signed download link, present when ready; valid for minutes, renewed by every get.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub row_count: Option<u64>,
    /// Why an export in state `error` failed.
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What to export (`POST /audit_logs/exports`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportRequest {
    pub organization_id: String,
    /// Inclusive; WorkOS requires both ends, Trailmark defaults to the whole log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actor_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actor_names: Vec<String>,
    /// Target types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_ids: Vec<String>,
    /// Free text, as in search (at least 3 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// `csv` (the default), `ndjson` (verifiable offline) or `ocsf` (OCSF API Activity events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A log stream and its health (`log_stream`).
#[derive(Debug, Clone, Deserialize)]
pub struct LogStream {
    pub id: String,
    pub organization_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub enabled: bool,
    /// `active`, `inactive`, `error` or `invalid`.
    pub state: String,
    pub last_synced_at: Option<String>,
    pub lag_events: u64,
    pub lag_seconds: u64,
    pub last_error: Option<String>,
    /// The last sequence the destination acknowledged.
    pub cursor: Option<u64>,
    /// Per type; secrets come back masked.
    pub config: Value,
    pub created_at: String,
    pub updated_at: String,
}

/// A new log stream (`POST /audit_logs/streams`).
#[derive(Debug, Clone, Serialize)]
pub struct NewLogStream {
    pub organization_id: String,
    /// `http`, `datadog`, `splunk`, `s3`, `gcs`, `syslog` or `sentinel`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub config: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `now` (the default: only events after creation) or `beginning`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// A change to a log stream (`PATCH /audit_logs/streams/{id}`); absent fields stay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogStreamUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// Where a replay starts (`POST /audit_logs/streams/{id}/replay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFrom {
    Sequence(u64),
    /// An ISO-8601 date-time.
    Time(String),
}

/// What a destination said to one test event.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamTest {
    pub delivered: bool,
    /// `delivered`, `error` or `invalid`.
    pub outcome: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// This instance's checkpoint verifier key (`GET /audit_logs/ledger/public_key`).
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerPublicKey {
    pub name: String,
    pub algorithm: String,
    /// `<name>+<key id hex>+<base64(0x01 ‖ public key)>`.
    pub verifier_key: String,
}

/// The latest signed checkpoint of an organization's log.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedCheckpoint {
    pub organization_id: String,
    pub tree_size: u64,
    pub root_hash: String,
    /// The C2SP signed note.
    pub checkpoint: String,
    pub created_at: String,
}

/// An RFC 9162 inclusion proof of one event.
#[derive(Debug, Clone, Deserialize)]
pub struct InclusionProof {
    pub event_id: String,
    pub sequence: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root_hash: String,
    /// base64 hashes, leaf to root.
    pub proof: Vec<String>,
    /// The signed note of the checkpoint the proof is against (when no `tree_size` was asked).
    #[serde(default)]
    pub checkpoint: Option<String>,
}

/// An RFC 9162 consistency proof between two sizes of an organization's log.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub first_root_hash: String,
    pub second_root_hash: String,
    pub proof: Vec<String>,
}
