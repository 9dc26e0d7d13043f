//! The values that cross the [`crate::Store`] boundary.

use serde_json::Value;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::event::NewEvent;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::query::EventFilter;
use trailmark_domain::schema::ActionSchema;
use trailmark_ledger::tree::Hash;

/// A stored API key: its hash, never its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub hash: [u8; 32],
    /// What people call the key (keys from before names existed are called `<scope> key`).
    pub name: String,
    /// The key's first characters (`ApiKeySecret::prefix`), empty for keys from before prefixes
    /// were kept.
    pub prefix: String,
    pub scope: Scope,
    /// `Some` restricts the key to that organization.
    pub organization_id: Option<String>,
    pub created_at: Timestamp,
    /// From this instant on the key is refused.
    pub expires_at: Option<Timestamp>,
    /// When the key was last seen in use, coarsely (the application writes it at most once a
    /// minute per key and instance).
    pub last_used_at: Option<Timestamp>,
}

/// What [`crate::ApiKeys::revoke_api_key`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Revocation {
    /// The key is gone; this is what it was.
    Revoked(ApiKeyRecord),
    /// No key has this id.
    NotFound,
    /// The key is the last live unrestricted admin key, and the caller asked to keep one.
    LastAdminKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// One page of a list, WorkOS style: up to `limit` items in `order`, starting after or ending
/// before a cursor (an item's id, version or name, depending on the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub order: Order,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Items in the requested order, and whether more exist beyond each end.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items exist before the first one (in the requested order).
    pub more_before: bool,
    /// More items exist after the last one.
    pub more_after: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationFilter {
    /// Organizations that have any of these domains.
    pub domains: Vec<String>,
    /// Organizations whose name contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only this organization (for keys restricted to one).
    pub only: Option<String>,
    /// Only the organization with this `external_id`.
    pub external_id: Option<String>,
}

/// What [`crate::Store::schema_for_event`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaLookup {
    /// The action has no schema at all.
    NoSchema,
    Found(ActionSchema),
    /// The action has schemas, but not the requested version.
    UnknownVersion {
        latest: u32,
    },
}

/// An action with its latest schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSummary {
    pub latest: ActionSchema,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A validated event waiting for its sequence number.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: String,
    pub event: NewEvent,
    pub received_at: Timestamp,
}

/// Proof of storage for one event: its id and its position in the organization's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub sequence: u64,
    /// The event's leaf hash in its organization's Merkle log.
    pub leaf_hash: Hash,
}

/// Makes an append idempotent: the identity (see `trailmark_domain::idempotency`), how long the
/// record answers, and what the caller wants back on a replay besides the receipts (opaque to
/// the store; the application layer writes and reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub identity: [u8; 32],
    pub expires_at: Timestamp,
    pub outcome: Vec<u8>,
}

#[derive(Debug)]
pub struct AppendRequest {
    pub organization_id: String,
    pub events: Vec<PendingEvent>,
    pub idempotency: Option<IdempotencyClaim>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// The events were committed, in order.
    Appended { receipts: Vec<Receipt> },
    /// An earlier commit with the same identity answered this already; nothing was stored.
    /// `receipts` are that commit's events, `outcome` the claim it stored.
    Replayed {
        receipts: Vec<Receipt>,
        outcome: Vec<u8>,
    },
}

/// An event as stored: its place in the log and its normalized JSON (`NewEvent::to_json`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub organization_id: String,
    pub sequence: u64,
    pub received_at: Timestamp,
    pub leaf_hash: Hash,
    pub body: Value,
    /// When retention removed the contents; `body` is then empty.
    pub purged_at: Option<Timestamp>,
}

impl StoredEvent {
    /// The event object (`trailmark_domain::record`) with its `leaf_hash`: the one shape readers
    /// see. Its leaf is this object without `leaf_hash` (`trailmark_ledger::leaf`).
    pub fn to_object(&self) -> Value {
        if let Some(purged_at) = self.purged_at {
            // The stub: what remains is what the Merkle log needs.
            return serde_json::json!({
                "object": "audit_log_event",
                "id": self.id,
                "organization_id": self.organization_id,
                "sequence": self.sequence,
                "received_at": self.received_at.to_string(),
                "purged": true,
                "purged_at": purged_at.to_string(),
                "leaf_hash": trailmark_ledger::encode_hash(&self.leaf_hash),
            });
        }
        let mut object = self.leaf_object();
        object["leaf_hash"] = Value::String(trailmark_ledger::encode_hash(&self.leaf_hash));
        object
    }

    /// The event object without `leaf_hash`: what the leaf hash is computed from.
    pub fn leaf_object(&self) -> Value {
        trailmark_domain::record::event_object(
            trailmark_domain::record::Placement {
                id: &self.id,
                organization_id: &self.organization_id,
                sequence: self.sequence,
                received_at: self.received_at,
            },
            &self.body,
        )
    }
}

/// An event as stored with its body left as the stored text: the compact JSON `NewEvent::to_json`
/// gives, written by serde_json (keys in byte order, no whitespace). For bulk readers that copy
/// the body into their output rather than inspect it; [`RawEvent::decode`] gives the
/// [`StoredEvent`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub id: String,
    pub organization_id: String,
    pub sequence: u64,
    pub received_at: Timestamp,
    pub leaf_hash: Hash,
    pub body: String,
    /// When retention removed the contents.
    pub purged_at: Option<Timestamp>,
}

impl RawEvent {
    /// The event with its body parsed.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError::Corrupt`] if the stored body is not JSON.
    pub fn decode(self) -> Result<StoredEvent, crate::StoreError> {
        Ok(StoredEvent {
            body: serde_json::from_str(&self.body)
                .map_err(|e| crate::StoreError::Corrupt(format!("event {}: {e}", self.id)))?,
            id: self.id,
            organization_id: self.organization_id,
            sequence: self.sequence,
            received_at: self.received_at,
            leaf_hash: self.leaf_hash,
            purged_at: self.purged_at,
        })
    }
}

/// A search over one organization's log: filters, sequence bounds (exclusive), order, size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub filter: EventFilter,
    /// Only events with a greater sequence.
    pub after: Option<u64>,
    /// Only events with a smaller sequence.
    pub before: Option<u64>,
    pub order: Order,
    pub limit: usize,
}

/// The result of a search: events in the requested order, and whether more matching events lie
/// beyond the last one returned (in that order). The events are [`StoredEvent`]s, or
/// [`RawEvent`]s from [`crate::Store::search_raw_events`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage<E = StoredEvent> {
    pub events: Vec<E>,
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState {
    Pending,
    Ready,
    Error,
}

impl ExportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Pending => "pending",
            ExportState::Ready => "ready",
            ExportState::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(ExportState::Pending),
            "ready" => Some(ExportState::Ready),
            "error" => Some(ExportState::Error),
            _ => None,
        }
    }
}

/// An export job and, once it ran, its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub id: String,
    pub organization_id: String,
    pub state: ExportState,
    pub format: ExportFormat,
    pub filter: EventFilter,
    pub row_count: Option<u64>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A signed checkpoint of one organization's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub organization_id: String,
    pub tree_size: u64,
    pub root: Hash,
    /// The C2SP signed note.
    pub note: String,
    pub created_at: Timestamp,
}

impl StoredCheckpoint {
    /// The checkpoint as readers see it (`GET /audit_logs/ledger/checkpoint`, and the message
    /// log streams deliver): `{"object": "ledger_checkpoint", "organization_id", "tree_size",
    /// "root_hash", "checkpoint": <signed note>, "created_at"}`.
    pub fn to_object(&self) -> Value {
        serde_json::json!({
            "object": "ledger_checkpoint",
            "organization_id": self.organization_id,
            "tree_size": self.tree_size,
            "root_hash": trailmark_ledger::encode_hash(&self.root),
            "checkpoint": self.note,
            "created_at": self.created_at.to_string(),
        })
    }
}

/// A legal hold: while set, retention purges nothing of the organization's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub organization_id: String,
    pub reason: String,
    pub set_at: Timestamp,
}

/// One event's new contents in an erasure (`Retention::erase_events`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    pub sequence: u64,
    /// The body with the erased values replaced, whose leaf hash is the event's own (leaf
    /// version 2 commits to salted hashes of the values it may erase); `None` purges the event
    /// whole, as retention does (an event stored before leaf version 2 cannot keep its proof
    /// otherwise).
    pub body: Option<Value>,
}

/// The health states WorkOS reports for a log stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Delivering (or caught up).
    Active,
    /// Disabled by its owner.
    Inactive,
    /// The last attempt failed in a way that may pass; it is being retried.
    Error,
    /// The destination refused the credentials or configuration; retried slowly until fixed.
    Invalid,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Active => "active",
            StreamState::Inactive => "inactive",
            StreamState::Error => "error",
            StreamState::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(StreamState::Active),
            "inactive" => Some(StreamState::Inactive),
            "error" => Some(StreamState::Error),
            "invalid" => Some(StreamState::Invalid),
            _ => None,
        }
    }
}

/// A log stream as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub id: String,
    /// The organization whose log it delivers; `None` for an operator-wide stream, which
    /// delivers every organization's log with a cursor per log
    /// ([`crate::StreamStore::organization_cursors`]).
    pub organization_id: Option<String>,
    /// The destination type (`http`, `datadog`, `splunk`, …).
    pub kind: String,
    pub name: String,
    /// Non-secret settings.
    pub config: Value,
    /// Encrypted credentials; opaque to the store.
    pub secrets: Vec<u8>,
    pub enabled: bool,
    pub state: StreamState,
    /// The last delivered sequence; `None` before the first delivery.
    pub cursor: Option<u64>,
    pub last_synced_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
