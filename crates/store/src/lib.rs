//! Trailmark's storage: the [`Store`] trait every other crate talks to, and [`SqliteStore`], the
//! embedded implementation that `trailmark serve` uses by default.
//!
//! This is the only crate that contains SQL. It knows nothing about HTTP: an idempotent append
//! returns receipts (its events' ids, sequences and leaf hashes), and what else the caller
//! needs to answer a replay is an opaque outcome it stored with the claim.
//!
//! Each aggregate has its own narrow trait ([`EventLog`], [`LedgerStore`], [`Organizations`],
//! [`Schemas`], [`ApiKeys`], [`StreamStore`], [`ExportStore`], [`PortalStore`], [`Operators`],
//! [`Incidents`], [`Retention`], [`Health`]); [`Store`] is all of them, which each backend implements. The rules that decide
//! what to store (sequencing, leaf hashing, idempotency, schema versions, stream states) are
//! written once, in [`rules`], and called by both backends.
//!
//! The promises every implementation keeps:
//! - **Durable before acknowledged.** A write method returns `Ok` only after its transaction is
//!   committed to disk (SQLite: WAL with `synchronous=FULL`). Many concurrent writes share one
//!   commit (group commit), so throughput does not stop at the disk's fsync rate.
//! - **One log per organization.** [`Store::append`] gives each event the next sequence number of
//!   its organization's log: gap-free, starting at 0, assigned inside the commit, so a reader
//!   never sees sequence *n + 1* without *n*.
//! - **Idempotency inside the commit.** An append carrying an [`IdempotencyClaim`] either stores
//!   its events and the rendered response together, or finds the response of an earlier commit
//!   with the same identity and stores nothing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), trailmark_store::StoreError> {
//! use trailmark_store::{Health, SqliteStore};
//! let store = SqliteStore::open("trailmark-data/trailmark.db".as_ref())?;
//! store.ping().await?;
//! # Ok(()) }
//! ```

mod codec;
mod error;
mod incident;
mod log;
mod model;
mod observe;
mod operator;
mod portal;
mod postgres;
mod private;
mod rows;
pub mod rules;
mod sqlite;
mod trigram;
mod window;

use async_trait::async_trait;
use trailmark_domain::Timestamp;
use trailmark_domain::organization::Organization;
use trailmark_domain::query::EventFilter;
use trailmark_domain::schema::ActionSchema;

pub use error::StoreError;
pub use incident::{IncidentKind, IncidentRecord, NewIncident, Notice, StreamFault};
pub use model::{
    ActionSummary, ApiKeyRecord, AppendOutcome, AppendRequest, ExportRecord, ExportState,
    IdempotencyClaim, LegalHold, Order, OrganizationFilter, Page, PageRequest, PendingEvent,
    RawEvent, Receipt, Revocation, Rewrite, SchemaLookup, SearchPage, SearchRequest,
    StoredCheckpoint, StoredEvent, StreamRecord, StreamState,
};
pub use observe::{Commit, Handover, PoolProbe, PoolUse, StoreObserver};
pub use operator::{NewOperatorSession, OperatorRecord, OperatorSession};
pub use portal::{NewPortalSession, PortalLink, PortalRedemption, PortalSession};
pub use postgres::{ClusterConfig, PostgresStore, SettingsError};
pub use sqlite::SqliteStore;
pub use trailmark_ledger::tree::Hash;

/// Everything Trailmark persists: every aggregate's trait, implemented by one backend. Callers
/// that need one aggregate take that trait (`&dyn StreamStore`); an `Arc<dyn Store>` coerces to
/// any of them.
pub trait Store:
    Health
    + ApiKeys
    + Organizations
    + Schemas
    + EventLog
    + LedgerStore
    + Retention
    + StreamStore
    + ExportStore
    + PortalStore
    + Operators
    + Incidents
{
}

impl<T> Store for T where
    T: Health
        + ApiKeys
        + Organizations
        + Schemas
        + EventLog
        + LedgerStore
        + Retention
        + StreamStore
        + ExportStore
        + PortalStore
        + Operators
        + Incidents
{
}

/// Whether the database answers.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// Succeeds when the database answers a query (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// API keys, stored by hash.
#[async_trait]
pub trait ApiKeys: Send + Sync + 'static {
    /// Stores a new API key (only its hash).
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError>;
    /// The key whose SHA-256 is `hash`, if any.
    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Whether any key has ever been created (the first start creates one).
    async fn has_api_keys(&self) -> Result<bool, StoreError>;
    /// Every key, oldest first (keys are few: one per app, service or person).
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Deletes the key `id`. With `keep_an_admin`, refuses ([`Revocation::LastAdminKey`]) when
    /// the key is an unrestricted admin key live at `now` and no other one would be left
    /// ([`rules::is_unrestricted_admin`]); the check and the deletion are one transaction, so
    /// two racing revocations cannot both pass it.
    async fn revoke_api_key(
        &self,
        id: &str,
        keep_an_admin: bool,
        now: Timestamp,
    ) -> Result<Revocation, StoreError>;
    /// Records that the key `id` was used at `at` (never moving `last_used_at` back); `false`
    /// if no such key exists.
    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
}

/// Organizations, the tenants whose logs Trailmark keeps.
#[async_trait]
pub trait Organizations: Send + Sync + 'static {
    /// Stores a new organization. [`StoreError::Conflict`] if its `external_id` is taken.
    async fn insert_organization(
        &self,
        organization: Organization,
    ) -> Result<Organization, StoreError>;
    /// A live (not deleted) organization.
    async fn get_organization(&self, id: &str) -> Result<Option<Organization>, StoreError>;
    /// Live organizations, newest first unless the page says otherwise.
    async fn list_organizations(
        &self,
        filter: OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<Organization>, StoreError>;
    /// Replaces a live organization's fields; `false` if it does not exist.
    async fn update_organization(&self, organization: Organization) -> Result<bool, StoreError>;
    /// Deletes an organization: it disappears from the API, but its events and their log stay,
    /// because an audit trail must outlive the tenant record. `false` if it did not exist.
    async fn delete_organization(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Sets the retention period; the updated organization, or `None` if it does not exist.
    async fn set_retention(
        &self,
        id: &str,
        days: u32,
        now: Timestamp,
    ) -> Result<Option<Organization>, StoreError>;
}

/// Versioned event schemas. Versions are immutable; which version to create is decided once,
/// in [`rules::create_schema`], over these primitives.
#[async_trait]
pub trait Schemas: Send + Sync + 'static {
    /// The highest version of `action`'s schema, if it has one.
    async fn latest_schema(&self, action: &str) -> Result<Option<ActionSchema>, StoreError>;
    /// One version of `action`'s schema.
    async fn get_schema(
        &self,
        action: &str,
        version: u32,
    ) -> Result<Option<ActionSchema>, StoreError>;
    /// Stores a new version. [`StoreError::Conflict`] (`version`) if that version exists: another
    /// writer created it first.
    async fn insert_schema(&self, schema: ActionSchema) -> Result<(), StoreError>;
    /// The versions of one action's schema. Cursors are version numbers.
    async fn list_schemas(
        &self,
        action: &str,
        page: PageRequest,
    ) -> Result<Page<ActionSchema>, StoreError>;
    /// Actions that have a schema, each with its latest version. Ordered and paged by name.
    async fn list_actions(&self, page: PageRequest) -> Result<Page<ActionSummary>, StoreError>;
}

/// The organizations' logs: durable, sequenced, idempotent appends and the reads over them.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events to an organization's log, durably, or finds the earlier append with the
    /// same idempotency identity (see the crate docs). [`StoreError::OrganizationNotFound`] if
    /// the organization is not live.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;
    /// Up to `limit` events of an organization's log with a sequence greater than `after` (all
    /// from the start when `None`), in sequence order: the cursor read that pollers, streams and
    /// exports build on.
    async fn events_after(
        &self,
        organization_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let request = SearchRequest {
            filter: EventFilter::default(),
            after,
            before: None,
            order: Order::Asc,
            limit,
        };
        Ok(self.search_events(organization_id, request).await?.events)
    }
    /// One organization's events matching a search, in sequence order (see [`SearchRequest`]).
    /// Read-your-writes: every acknowledged append is visible.
    async fn search_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage, StoreError>;
    /// [`EventLog::search_events`] with each body left as the stored text, unparsed: for
    /// exports, which copy bodies into their output and would otherwise build and drop a JSON
    /// tree per event.
    async fn search_raw_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage<RawEvent>, StoreError>;
    /// An event by id, whatever its organization (the caller checks access).
    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// The number of events in an organization's log (0 if it has none).
    async fn log_size(&self, organization_id: &str) -> Result<u64, StoreError>;
    /// Every organization with a log, with its size (deleted organizations included: their
    /// logs remain).
    async fn log_sizes(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Deletes idempotency records that expired before `now`; returns how many.
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// The Merkle trees over the logs and their signed checkpoints.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// The root of the first `size` leaves of an organization's log.
    async fn tree_root(&self, organization_id: &str, size: u64) -> Result<Hash, StoreError>;
    /// RFC 6962 inclusion proofs of the given leaves in the tree of `size` leaves, in order.
    async fn inclusion_proofs(
        &self,
        organization_id: &str,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError>;
    /// RFC 6962 consistency proof from the tree of `first` leaves to the tree of `second`.
    async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// The hashes of the complete subtrees at tree `level`, indexes `start … start+count-1`, of
    /// the tree of `size` leaves (a C2SP tlog tile; `rules::subtree_hashes`).
    async fn subtree_hashes(
        &self,
        organization_id: &str,
        size: u64,
        level: u32,
        start: u64,
        count: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// Stores a signed checkpoint (a second one for the same size is ignored).
    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError>;
    /// Replaces the note of the organization's checkpoint of `tree_size` with `note`, the same
    /// note with witnesses' cosignature lines added (C2SP tlog-cosignature).
    async fn add_cosignatures(
        &self,
        organization_id: &str,
        tree_size: u64,
        note: String,
    ) -> Result<(), StoreError>;
    /// The organization's checkpoint with the largest tree size.
    async fn latest_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Organizations whose log has grown past their latest checkpoint, with the current size.
    async fn logs_needing_checkpoint(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Retention, erasure and legal holds: what may be purged or rewritten, and the changes.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Organizations with a retention period and no legal hold: `(id, days)`.
    async fn purgeable_organizations(&self) -> Result<Vec<(String, u32)>, StoreError>;
    /// Removes the contents of up to `limit` events of an organization received before
    /// `received_before`, keeping each as a stub with its id, sequence and leaf hash. Does
    /// nothing under a legal hold (checked in the same transaction). Returns how many.
    async fn purge_events(
        &self,
        organization_id: &str,
        received_before: Timestamp,
        limit: usize,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Rewrites events of an organization for an erasure (see [`Rewrite`]; the caller checked
    /// that each new body keeps the event's leaf hash), purging those without a new body at
    /// `now`. The old contents leave the store's files, not only its reads, and the search index
    /// forgets the erased values. Does nothing and answers `false` under a legal hold unless
    /// `force` (checked in the same transaction). Events that are not there or already purged
    /// are skipped.
    async fn erase_events(
        &self,
        organization_id: &str,
        rewrites: Vec<Rewrite>,
        force: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn legal_hold(&self, organization_id: &str) -> Result<Option<LegalHold>, StoreError>;
    /// Sets (`Some(reason)`) or lifts (`None`) a legal hold and appends `record`, the event that
    /// records the change, to the organization's log, in one commit.
    async fn set_legal_hold(
        &self,
        organization_id: &str,
        reason: Option<String>,
        record: PendingEvent,
        now: Timestamp,
    ) -> Result<Receipt, StoreError>;
}

/// Log streams: their settings, health, cursors and delivery leases.
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Stores a new log stream.
    async fn insert_stream(&self, stream: StreamRecord) -> Result<(), StoreError>;
    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError>;
    /// The streams of one organization, or of all organizations with `None`, oldest first.
    async fn list_streams(
        &self,
        organization_id: Option<&str>,
    ) -> Result<Vec<StreamRecord>, StoreError>;
    /// Replaces a stream's name, settings, credentials, enabled flag and state; `false` if it
    /// does not exist. The cursor is untouched.
    async fn update_stream(&self, stream: StreamRecord) -> Result<bool, StoreError>;
    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError>;
    /// Takes or renews the lease on a stream for `holder` until `until`; `false` if another
    /// holder's lease is still running.
    async fn lease_stream(
        &self,
        id: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records a delivery: moves the cursor from `from` to `to` and sets the stream's state to
    /// [`rules::stream_state_after_delivery`] of its enabled flag, only while `holder` holds the lease
    /// and the cursor is still `from` (a replay may have moved it). Returns whether it did.
    async fn record_delivery(
        &self,
        id: &str,
        holder: &str,
        from: Option<u64>,
        to: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records a failed attempt: the state (`error` or `invalid`) and the reason.
    async fn record_stream_failure(
        &self,
        id: &str,
        state: StreamState,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Moves a stream's cursor (replay): the next delivery starts after `cursor`.
    async fn set_stream_cursor(
        &self,
        id: &str,
        cursor: Option<u64>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// An operator-wide stream's cursors: per organization, the last sequence of its log the
    /// destination acknowledged (organizations without one have had nothing delivered), in
    /// organization id order.
    async fn organization_cursors(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// Places an operator-wide stream's cursor in one organization's log (on creation, and
    /// replays): the next delivery from that log starts after `cursor` (from its first event
    /// with `None`).
    async fn set_organization_cursor(
        &self,
        id: &str,
        organization_id: &str,
        cursor: Option<u64>,
    ) -> Result<(), StoreError>;
    /// [`StreamStore::record_delivery`] for one organization's log of an operator-wide
    /// stream: moves that log's cursor from `from` to `to` and records the stream `active`
    /// (or `inactive`), only while `holder` holds the lease and the cursor is still `from`.
    async fn record_organization_delivery(
        &self,
        id: &str,
        holder: &str,
        organization_id: &str,
        from: Option<u64>,
        to: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Export jobs.
#[async_trait]
pub trait ExportStore: Send + Sync + 'static {
    /// Records a new export job.
    async fn insert_export(&self, export: ExportRecord) -> Result<(), StoreError>;
    async fn get_export(&self, id: &str) -> Result<Option<ExportRecord>, StoreError>;
    /// Export jobs in `state`, oldest first (the server resumes pending ones after a restart).
    async fn exports_in_state(&self, state: ExportState) -> Result<Vec<ExportRecord>, StoreError>;
    /// Marks a pending export ready (with its row count) or failed (with the reason).
    async fn finish_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Changes a ready export whose file was rewritten (`Ok`: its new row count) or withdrawn
    /// (`Err`: the export fails with the reason); `false` if the export is not ready.
    async fn revise_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Takes or renews the right to generate a pending export for `runner` until `until`;
    /// `false` if the export is no longer pending or another runner's lease is still running.
    /// Instances sharing a database use it so that each export is generated by one of them, and
    /// by another if that one dies.
    async fn claim_export(
        &self,
        id: &str,
        runner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Admin Portal links and sessions.
#[async_trait]
pub trait PortalStore: Send + Sync + 'static {
    /// Stores a newly issued Admin Portal link (only its token's hash).
    async fn insert_portal_link(&self, link: PortalLink) -> Result<(), StoreError>;
    /// Opens the link whose token hashes to `token_hash`, in one commit: if it is unused and
    /// not expired at `now`, marks it used and stores `session` with the link's organization,
    /// intent, e-mail and return URL. A link can therefore open one session only, even when two
    /// requests race.
    async fn redeem_portal_link(
        &self,
        token_hash: [u8; 32],
        now: Timestamp,
        session: NewPortalSession,
    ) -> Result<PortalRedemption, StoreError>;
    /// The portal session whose cookie secret hashes to `secret_hash`, if it has not expired at
    /// `now`; its expiry moves to `renew_until` (sessions expire after inactivity).
    async fn touch_portal_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<PortalSession>, StoreError>;
    /// Whether the portal session whose cookie secret hashes to `secret_hash` is still open at
    /// `now`, without renewing it (what a live stream checks while it runs).
    async fn portal_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes portal links and sessions that expired before `before`; returns how many.
    async fn purge_portal(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Console operators and their sessions.
#[async_trait]
pub trait Operators: Send + Sync + 'static {
    /// Stores a new operator. [`StoreError::Conflict`] (`email`) if another has that e-mail.
    async fn insert_operator(&self, operator: OperatorRecord) -> Result<(), StoreError>;
    /// The operator with this (lower-case) e-mail, if any.
    async fn find_operator(&self, email: &str) -> Result<Option<OperatorRecord>, StoreError>;
    /// Stores a session opened by a sign-in.
    async fn insert_operator_session(&self, session: NewOperatorSession) -> Result<(), StoreError>;
    /// The session whose cookie secret hashes to `secret_hash`, if it has not expired at `now`;
    /// its expiry moves to `renew_until` (sessions expire after inactivity).
    async fn touch_operator_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<OperatorSession>, StoreError>;
    /// Whether the session whose cookie secret hashes to `secret_hash` is still open at `now`,
    /// without renewing it (what a live stream checks while it runs).
    async fn operator_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Ends a session (sign-out); `false` if there was none.
    async fn delete_operator_session(&self, secret_hash: [u8; 32]) -> Result<bool, StoreError>;
    /// Deletes sessions that expired before `before`; returns how many.
    async fn purge_operator_sessions(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Alert incidents: streams failing too long and failed exports, and the notifications each
/// owes (see [`IncidentRecord`]). Every instance looks for incidents; the database decides which
/// one opens, resolves and notifies each, so the operator hears of it once.
#[async_trait]
pub trait Incidents: Send + Sync + 'static {
    /// Enabled streams whose deliveries are failing, with since when.
    async fn stream_faults(&self) -> Result<Vec<StreamFault>, StoreError>;
    /// Stores a new incident ([`rules::new_incident`]) unless one of the same kind, subject and
    /// `since` exists; whether this call stored it (of instances racing to open one incident,
    /// one wins).
    async fn open_incident(&self, incident: IncidentRecord) -> Result<bool, StoreError>;
    /// Resolves the incident `id` at `now`, its subject then in `resolution`
    /// ([`rules::incident_resolved`]); `false` if it was resolved already or does not exist.
    async fn resolve_incident(
        &self,
        id: &str,
        resolution: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Incidents not yet resolved, oldest first.
    async fn open_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError>;
    /// The `limit` incidents opened last, resolved or not, newest first.
    async fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError>;
    /// Takes, for `holder` until `until`, the oldest-opened incident with a notification
    /// [`rules::claimable_notice`] at `now`: the incident as it now stands and the notification.
    async fn claim_notice(
        &self,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<(IncidentRecord, Notice)>, StoreError>;
    /// Records the outcome of `holder`'s attempt at `notice` of incident `id`
    /// ([`rules::incident_after_notice`]); `false` (nothing recorded) unless `holder` holds its
    /// lease and the notification is still the pending one.
    async fn finish_notice(
        &self,
        id: &str,
        notice: Notice,
        holder: &str,
        outcome: Result<(), String>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes incidents resolved before `before` that owe nothing more; returns how many.
    async fn purge_incidents(&self, before: Timestamp) -> Result<u64, StoreError>;
}
