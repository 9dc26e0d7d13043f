//! The storage rules, written once for every backend.
//!
//! A backend stores and fetches; what to store is decided here: how an append's events become
//! rows (their stored JSON, search text and leaf), how sequences and Merkle nodes are assigned
//! inside a commit, when an idempotency record still answers, which schema version a request
//! creates, what state a stream is in after a change or a delivery, and which stored subtree
//! hashes a tlog tile holds. The SQLite and
//! PostgreSQL implementations call these functions rather than restating them.

use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{Scope, key_is_live};
use trailmark_domain::schema::{ActionName, ActionSchema, SchemaDefinition};
use trailmark_ledger::LedgerError;
use trailmark_ledger::commit::{SALT_BYTES, Salt, seed_text};
use trailmark_ledger::leaf::LeafTemplate;
use trailmark_ledger::tree::{Frontier, Hash, Node, NodeReader};

use crate::model::{
    ApiKeyRecord, AppendRequest, IdempotencyClaim, Receipt, SchemaLookup, StreamState,
};
use crate::{Schemas, StoreError};

/// An append whose events are ready to be sequenced: everything that does not depend on the
/// sequence numbers is computed before the commit, beside the other requests, so the commit
/// itself only assigns numbers, hashes and writes.
pub struct PreparedAppend {
    pub organization_id: String,
    pub events: Vec<PreparedEvent>,
    pub idempotency: Option<IdempotencyClaim>,
}

/// One event's stored columns.
pub struct PreparedEvent {
    pub id: String,
    pub received_at: Timestamp,
    pub action: String,
    pub occurred_at: Timestamp,
    pub actor_id: String,
    pub actor_name: Option<String>,
    /// `(id, type)` of each target.
    pub targets: Vec<(String, String)>,
    /// The normalized event JSON (`NewEvent::to_json`), compact.
    pub body: String,
    /// What the free-text filter searches (`NewEvent::search_text`), lower-cased: the filter
    /// is case-insensitive.
    pub search_text: String,
    pub leaf: LeafTemplate,
}

/// Appends from this many events up are prepared off the async threads.
pub const PREPARE_OFF_THREAD: usize = 32;

impl PreparedAppend {
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the system's random generator fails (the seeds of the
    /// events' salts come from it).
    pub fn new(request: AppendRequest) -> Result<Self, StoreError> {
        let organization_id = request.organization_id;
        let seeds = seeds(request.events.len())?;
        let events = request
            .events
            .into_iter()
            .zip(seeds)
            .map(|(pending, seed)| {
                let event = &pending.event;
                let mut body = event.to_json();
                // Leaf version 2: the seed of the event's salts, so its personal data can be
                // erased later without breaking a proof (`trailmark_ledger::commit`).
                if let serde_json::Value::Object(map) = &mut body {
                    map.insert("salt".into(), seed_text(&seed).into());
                }
                PreparedEvent {
                    leaf: LeafTemplate::new(
                        &pending.id,
                        &organization_id,
                        pending.received_at,
                        &body,
                    ),
                    body: body.to_string(),
                    search_text: event.search_text().to_lowercase(),
                    action: event.action().to_owned(),
                    occurred_at: event.occurred_at(),
                    actor_id: event.actor().id.clone(),
                    actor_name: event.actor().name.clone(),
                    targets: event
                        .targets()
                        .iter()
                        .map(|t| (t.id.clone(), t.kind.clone()))
                        .collect(),
                    received_at: pending.received_at,
                    id: pending.id,
                }
            })
            .collect();
        Ok(PreparedAppend {
            organization_id,
            events,
            idempotency: request.idempotency,
        })
    }

    /// [`PreparedAppend::new`], on a blocking thread when the append is large enough for the
    /// JSON work to hold up other requests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the blocking task could not run.
    pub async fn prepare(request: AppendRequest) -> Result<Self, StoreError> {
        if request.events.len() >= PREPARE_OFF_THREAD {
            tokio::task::spawn_blocking(move || PreparedAppend::new(request))
                .await
                .map_err(|e| StoreError::Unavailable(format!("preparing events failed: {e}")))?
        } else {
            PreparedAppend::new(request)
        }
    }
}

/// The columns a backend derives from an event's body, for a body an erasure rewrote: the
/// filters and the free-text search then see the erased values no more.
pub struct RewrittenColumns {
    pub body: String,
    pub action: String,
    pub actor_id: String,
    pub actor_name: Option<String>,
    pub targets: Vec<(String, String)>,
    pub search_text: String,
}

impl RewrittenColumns {
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if `body` is not an event's body (an erasure only rewrites
    /// values, so the body of a stored event always parses).
    pub fn of(sequence: u64, body: &serde_json::Value) -> Result<Self, StoreError> {
        let event = trailmark_domain::event::NewEvent::parse(body).map_err(|e| {
            StoreError::Corrupt(format!("the rewritten body of event {sequence}: {e}"))
        })?;
        Ok(RewrittenColumns {
            body: body.to_string(),
            action: event.action().to_owned(),
            actor_id: event.actor().id.clone(),
            actor_name: event.actor().name.clone(),
            targets: event
                .targets()
                .iter()
                .map(|t| (t.id.clone(), t.kind.clone()))
                .collect(),
            search_text: event.search_text().to_lowercase(),
        })
    }
}

/// A random seed for each of `count` new events, from one call to the system's generator.
fn seeds(count: usize) -> Result<Vec<Salt>, StoreError> {
    let mut bytes = vec![0u8; count * SALT_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Unavailable(format!("the system's random generator: {e}")))?;
    Ok(bytes
        .chunks_exact(SALT_BYTES)
        .map(|chunk| {
            let mut seed = [0u8; SALT_BYTES];
            seed.copy_from_slice(chunk);
            seed
        })
        .collect())
}

/// The receipt of `event` placed at `sequence`: its leaf hash is computed there, by the one
/// leaf function every backend uses.
pub fn receipt_at(sequence: u64, event: &PreparedEvent) -> Receipt {
    Receipt {
        id: event.id.clone(),
        sequence,
        leaf_hash: event.leaf.hash(sequence),
    }
}

/// Gives `event` the next sequence of the log whose head is `head`: its receipt, and the Merkle
/// nodes its leaf completes (for backends that store nodes one by one).
pub fn sequence(head: &mut Frontier, event: &PreparedEvent) -> (Receipt, Vec<Node>) {
    let receipt = receipt_at(head.size(), event);
    let nodes = head.append(receipt.leaf_hash);
    (receipt, nodes)
}

/// The hashes of the complete subtrees at tree `level` with indexes `start … start+count-1`, in
/// the tree of `size` leaves: what a C2SP hash tile holds (`trailmark_ledger::tlog`), read
/// through whichever node reader a backend has.
///
/// # Errors
///
/// [`LedgerError::OutOfRange`] unless every one of those subtrees is complete within `size`
/// leaves; the reader's error if a node is missing.
pub fn subtree_hashes(
    reader: &impl NodeReader,
    size: u64,
    level: u32,
    start: u64,
    count: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let covered = |end: u64| end.checked_mul(1u64.checked_shl(level)?);
    let end = start
        .checked_add(count)
        .filter(|end| covered(*end).is_some_and(|leaves| leaves <= size))
        .ok_or_else(|| {
            LedgerError::OutOfRange(format!(
                "subtrees {start}…{} at level {level} are not all complete in a tree of {size} leaves",
                start.saturating_add(count)
            ))
        })?;
    (start..end)
        .map(|index| reader.node(level, index))
        .collect()
}

/// Whether an idempotency record that expires at `expires_at` still answers at `now`.
pub fn idempotency_record_answers(expires_at: Timestamp, now: Timestamp) -> bool {
    expires_at > now
}

/// Creates the next version of `action`'s schema, or returns the latest version unchanged if
/// `definition` equals it. Two writers racing for one version: the loser sees the winner's.
///
/// # Errors
///
/// Storage errors.
pub async fn create_schema(
    store: &dyn Schemas,
    action: ActionName,
    definition: SchemaDefinition,
    now: Timestamp,
) -> Result<ActionSchema, StoreError> {
    loop {
        let latest = store.latest_schema(action.as_str()).await?;
        if let Some(latest) = latest
            .as_ref()
            .filter(|l| l.definition.to_json() == definition.to_json())
        {
            return Ok(latest.clone());
        }
        let schema = ActionSchema {
            action: action.clone(),
            version: latest.map_or(1, |l| l.version + 1),
            definition: definition.clone(),
            created_at: now,
        };
        match store.insert_schema(schema.clone()).await {
            Ok(()) => return Ok(schema),
            Err(StoreError::Conflict(_)) => continue,
            Err(other) => return Err(other),
        }
    }
}

/// The schema version an event of `action` is validated against: `version`, or 1 if `None`.
///
/// # Errors
///
/// Storage errors.
pub async fn schema_for_event(
    store: &dyn Schemas,
    action: &str,
    version: Option<u32>,
) -> Result<SchemaLookup, StoreError> {
    if let Some(schema) = store.get_schema(action, version.unwrap_or(1)).await? {
        return Ok(SchemaLookup::Found(schema));
    }
    Ok(match store.latest_schema(action).await? {
        None => SchemaLookup::NoSchema,
        Some(latest) => SchemaLookup::UnknownVersion {
            latest: latest.version,
        },
    })
}

/// A new stream's state: delivering if enabled, else `inactive`.
pub fn initial_stream_state(enabled: bool) -> StreamState {
    if enabled {
        StreamState::Active
    } else {
        StreamState::Inactive
    }
}

/// A stream's state after its owner changed it: new settings give an `invalid` stream (whose
/// destination refused the old ones) a fresh verdict; naming `enabled` (`Some`) starts or stops
/// delivery whatever the state was; otherwise the state stands until the next attempt tells.
pub fn stream_state_after_change(
    current: StreamState,
    enabled: Option<bool>,
    settings_changed: bool,
) -> StreamState {
    match (enabled, current) {
        (Some(enabled), _) => initial_stream_state(enabled),
        (None, StreamState::Invalid) if settings_changed => StreamState::Active,
        (None, state) => state,
    }
}

/// A stream's state after a successful delivery: `active`, or `inactive` if it was disabled
/// meanwhile (the delivery was already under way).
pub fn stream_state_after_delivery(enabled: bool) -> StreamState {
    initial_stream_state(enabled)
}

/// Whether `key` is an unrestricted admin key that is live at `now`: one that can manage keys.
pub fn is_unrestricted_admin(key: &ApiKeyRecord, now: Timestamp) -> bool {
    key.scope == Scope::Admin && key.organization_id.is_none() && key_is_live(key.expires_at, now)
}

/// Whether revoking `target` leaves a live unrestricted admin key among `admin_keys` (every
/// stored unrestricted admin key, `target` possibly among them). The `TRAILMARK_API_KEY` key
/// does not count: it is configuration, possibly of one instance only.
pub fn revocation_keeps_an_admin(
    target: &ApiKeyRecord,
    admin_keys: &[ApiKeyRecord],
    now: Timestamp,
) -> bool {
    !is_unrestricted_admin(target, now)
        || admin_keys
            .iter()
            .any(|key| key.id != target.id && is_unrestricted_admin(key, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_states_follow_changes() {
        use StreamState::*;
        assert_eq!(initial_stream_state(true), Active);
        assert_eq!(initial_stream_state(false), Inactive);
        for state in [Active, Inactive, Error, Invalid] {
            assert_eq!(
                stream_state_after_change(state, Some(false), true),
                Inactive
            );
            assert_eq!(stream_state_after_change(state, Some(true), false), Active);
        }
        assert_eq!(stream_state_after_change(Invalid, None, true), Active);
        assert_eq!(stream_state_after_change(Invalid, None, false), Invalid);
        assert_eq!(stream_state_after_change(Error, None, true), Error);
        assert_eq!(stream_state_after_change(Inactive, None, true), Inactive);
        assert_eq!(stream_state_after_delivery(false), Inactive);
    }

    #[test]
    fn an_idempotency_record_answers_until_it_expires() {
        let at = Timestamp::from_unix_millis(1_000);
        assert!(idempotency_record_answers(
            at,
            Timestamp::from_unix_millis(999)
        ));
        assert!(!idempotency_record_answers(at, at));
    }
}
