//! The storage rules, written once for every backend.
//!
//! A backend stores and fetches; what to store is decided here: how an append's events become
//! rows (their stored JSON, search text and leaf), how sequences and Merkle nodes are assigned
//! inside a commit, when an idempotency record still answers, which schema version a request
//! creates, what state a stream is in after a change or a delivery, which stored subtree
//! hashes a tlog tile holds, and when an alert incident opens and which of its notifications is
//! due. The SQLite and PostgreSQL implementations call these functions rather than restating them.

use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{Scope, key_is_live};
use trailmark_domain::event::NewEvent;
use trailmark_domain::record::{Placement, canonical_event_object_of, stored_body};
use trailmark_domain::schema::{ActionName, ActionSchema, SchemaDefinition};
use trailmark_ledger::LedgerError;
use trailmark_ledger::commit::{SALT_BYTES, Salt, seed_text};
use trailmark_ledger::leaf::LeafTemplate;
use trailmark_ledger::tree::{Frontier, Hash, Node, NodeReader};

use crate::incident::{IncidentKind, IncidentRecord, NewIncident, Notice};
use crate::model::{
    ApiKeyRecord, AppendRequest, IdempotencyClaim, Receipt, SchemaLookup, StreamState,
};
use crate::{Schemas, StoreError};

/// An append whose events are ready to be sequenced: everything that does not depend on the
/// sequence numbers is computed before the commit, beside the other requests, so the commit
/// itself only assigns numbers, hashes and writes.
pub struct PreparedAppend<I = ()> {
    pub organization_id: String,
    pub events: Vec<PreparedEvent<I>>,
    pub idempotency: Option<IdempotencyClaim>,
}

/// One event's stored columns, and what its backend indexes it by (`I`: [`IndexFields`], or
/// nothing for a backend that indexes from the stored bodies).
pub struct PreparedEvent<I = ()> {
    pub id: String,
    pub received_at: Timestamp,
    pub occurred_at: Timestamp,
    /// The normalized event JSON with its salt's seed (`record::stored_body`).
    pub body: String,
    pub leaf: LeafTemplate,
    pub index: I,
}

/// The fields an event is searched by, taken out of it before it becomes its body.
pub struct IndexFields {
    pub action: String,
    pub actor_id: String,
    pub actor_name: Option<String>,
    /// `(id, type)` of each target.
    pub targets: Vec<(String, String)>,
    /// What the free-text filter searches (`NewEvent::search_text`), lower-cased: the filter
    /// is case-insensitive.
    pub search_text: String,
}

/// What a backend indexes an event by, taken out of the event before it becomes its body.
pub trait EventIndex: Send + 'static {
    fn of(event: &NewEvent) -> Self;
}

/// The embedded log's blocks index each event from its fields.
impl EventIndex for IndexFields {
    fn of(event: &NewEvent) -> Self {
        IndexFields {
            action: event.action().to_owned(),
            actor_id: event.actor().id.clone(),
            actor_name: event.actor().name.clone(),
            targets: event
                .targets()
                .iter()
                .map(|t| (t.id.clone(), t.kind.clone()))
                .collect(),
            search_text: event.search_text().to_lowercase(),
        }
    }
}

/// PostgreSQL's blocks are built from the stored bodies: nothing is taken, which spares its
/// appends the copies and the lower-casing of the search text.
impl EventIndex for () {
    fn of(_: &NewEvent) -> Self {}
}

/// Appends from this many events up are prepared off the async threads.
pub const PREPARE_OFF_THREAD: usize = 32;

impl<I: EventIndex> PreparedAppend<I> {
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the system's random generator fails (the seeds of the
    /// events' salts come from it); [`StoreError::Corrupt`] if an event's body, once written,
    /// does not parse back (read only for a leaf the event object's text cannot give).
    pub fn new(request: AppendRequest) -> Result<Self, StoreError> {
        let organization_id = request.organization_id;
        let seeds = seeds(request.events.len())?;
        let events: Vec<PreparedEvent<I>> = request
            .events
            .into_iter()
            .zip(seeds)
            .map(|(pending, seed)| {
                let event = pending.event;
                let index = I::of(&event);
                let placement = Placement {
                    id: &pending.id,
                    organization_id: &organization_id,
                    sequence: 0,
                    received_at: pending.received_at,
                };
                // Leaf version 2: the body carries the seed of the event's salts, so its
                // personal data can be erased later without breaking a proof
                // (`trailmark_ledger::commit`). The body and the event object the leaf is made
                // of are written straight from the event's fields, not through its JSON.
                let body = stored_body(&event, &seed_text(&seed));
                let (object, _) = canonical_event_object_of(placement, &event);
                let leaf = match LeafTemplate::from_event_object(&object, &seed) {
                    Some(leaf) => leaf,
                    None => {
                        let json = serde_json::from_str(&body).map_err(|e| {
                            StoreError::Corrupt(format!("an event's body does not read back: {e}"))
                        })?;
                        LeafTemplate::new(&pending.id, &organization_id, pending.received_at, &json)
                    }
                };
                Ok(PreparedEvent {
                    leaf,
                    body,
                    occurred_at: event.occurred_at(),
                    received_at: pending.received_at,
                    id: pending.id,
                    index,
                })
            })
            .collect::<Result<_, StoreError>>()?;
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
pub fn receipt_at<I>(sequence: u64, event: &PreparedEvent<I>) -> Receipt {
    Receipt {
        id: event.id.clone(),
        sequence,
        leaf_hash: event.leaf.hash(sequence),
    }
}

/// Gives `event` the next sequence of the log whose head is `head`: its receipt, and the Merkle
/// nodes its leaf completes (for backends that store nodes one by one).
pub fn sequence<I>(head: &mut Frontier, event: &PreparedEvent<I>) -> (Receipt, Vec<Node>) {
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

/// Whether a stream failing since `failing_since` has an incident at `now`: it has been
/// failing for `alert_after` or longer.
pub fn stream_incident_opens(
    failing_since: Timestamp,
    alert_after: std::time::Duration,
    now: Timestamp,
) -> bool {
    let after = i64::try_from(alert_after.as_millis()).unwrap_or(i64::MAX);
    now.unix_millis()
        .saturating_sub(failing_since.unix_millis())
        >= after
}

/// What a new incident is when it opens at `now`: nothing sent yet, its opening notification
/// due at once. An export incident is closed as it opens (a failed export does not recover).
pub fn new_incident(new: NewIncident, now: Timestamp) -> IncidentRecord {
    let closed = new.kind == IncidentKind::Export;
    IncidentRecord {
        resolved_at: closed.then_some(now),
        resolution: closed.then(|| new.state.clone()),
        id: new.id,
        kind: new.kind,
        subject_id: new.subject_id,
        organization_id: new.organization_id,
        state: new.state,
        last_error: new.last_error,
        since: new.since,
        opened_at: now,
        opened_notified_at: None,
        resolved_notified_at: None,
        attempts: 0,
        next_attempt_at: now,
        last_delivery_error: None,
        lease_holder: None,
        lease_until: None,
    }
}

/// The notification an incident owes next, whoever sends it: its opening, then (for a stream
/// incident that resolved) its resolution — never the second before the first.
pub fn pending_notice(incident: &IncidentRecord) -> Option<Notice> {
    if incident.opened_notified_at.is_none() {
        Some(Notice::Opened)
    } else if incident.kind == IncidentKind::Stream
        && incident.resolved_at.is_some()
        && incident.resolved_notified_at.is_none()
    {
        Some(Notice::Resolved)
    } else {
        None
    }
}

/// The notification `holder` may take to send at `now`: one is pending, its next attempt is
/// due, and no other instance's lease on it is running.
pub fn claimable_notice(incident: &IncidentRecord, holder: &str, now: Timestamp) -> Option<Notice> {
    let leased_to_another = incident
        .lease_holder
        .as_deref()
        .is_some_and(|h| h != holder)
        && incident.lease_until.is_some_and(|until| until > now);
    if leased_to_another || incident.next_attempt_at > now {
        return None;
    }
    pending_notice(incident)
}

/// The incident once `holder` took its pending notification until `until`.
pub fn incident_claimed(
    incident: &IncidentRecord,
    holder: &str,
    until: Timestamp,
) -> IncidentRecord {
    IncidentRecord {
        lease_holder: Some(holder.to_owned()),
        lease_until: Some(until),
        ..incident.clone()
    }
}

/// The incident resolved at `now`, its subject then in `resolution`; `None` if it already was.
/// Its resolution notification is due once the opening one has gone.
pub fn incident_resolved(
    incident: &IncidentRecord,
    resolution: &str,
    now: Timestamp,
) -> Option<IncidentRecord> {
    incident.resolved_at.is_none().then(|| IncidentRecord {
        resolved_at: Some(now),
        resolution: Some(resolution.to_owned()),
        ..incident.clone()
    })
}

/// The wait before attempt `attempts + 1` at a notification the webhook did not acknowledge:
/// 1 s, doubling, at most 10 minutes, so an operator's endpoint that is down for a while is
/// not hammered and one that is back hears within minutes.
pub fn notice_retry_delay(attempts: u32) -> std::time::Duration {
    const MAX_SECONDS: u64 = 600;
    std::time::Duration::from_secs(
        1u64.checked_shl(attempts.saturating_sub(1))
            .unwrap_or(MAX_SECONDS)
            .min(MAX_SECONDS),
    )
}

/// The incident after an attempt at `notice` ended at `now`: acknowledged (the next notification,
/// if any, due at once) or failed (retried after [`notice_retry_delay`]). The lease ends either way.
pub fn incident_after_notice(
    incident: &IncidentRecord,
    notice: Notice,
    outcome: Result<(), String>,
    now: Timestamp,
) -> IncidentRecord {
    let mut next = IncidentRecord {
        lease_holder: None,
        lease_until: None,
        ..incident.clone()
    };
    match outcome {
        Ok(()) => {
            match notice {
                Notice::Opened => next.opened_notified_at = Some(now),
                Notice::Resolved => next.resolved_notified_at = Some(now),
            }
            next.attempts = 0;
            next.next_attempt_at = now;
            next.last_delivery_error = None;
        }
        Err(reason) => {
            next.attempts = incident.attempts.saturating_add(1);
            let delay = notice_retry_delay(next.attempts);
            next.next_attempt_at =
                now.plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            next.last_delivery_error = Some(reason);
        }
    }
    next
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
    fn an_incident_owes_its_opening_then_its_recovery_retried_with_growing_waits() {
        use std::time::Duration;
        let at = Timestamp::from_unix_millis;
        assert!(!stream_incident_opens(
            at(0),
            Duration::from_secs(300),
            at(299_999)
        ));
        assert!(stream_incident_opens(
            at(0),
            Duration::from_secs(300),
            at(300_000)
        ));
        let stream = new_incident(
            NewIncident {
                id: "incident_1".into(),
                kind: IncidentKind::Stream,
                subject_id: "log_stream_1".into(),
                organization_id: None,
                state: "invalid".into(),
                last_error: None,
                since: at(0),
            },
            at(1_000),
        );
        assert_eq!(
            claimable_notice(&stream, "a", at(1_000)),
            Some(Notice::Opened)
        );
        let claimed = incident_claimed(&stream, "a", at(61_000));
        assert_eq!(claimable_notice(&claimed, "b", at(60_999)), None, "leased");
        assert_eq!(
            claimable_notice(&claimed, "b", at(61_000)),
            Some(Notice::Opened),
            "lapsed"
        );
        let resolved = incident_resolved(&claimed, "active", at(2_000)).expect("open");
        assert_eq!(incident_resolved(&resolved, "deleted", at(3_000)), None);
        assert_eq!(
            pending_notice(&resolved),
            Some(Notice::Opened),
            "the opening first"
        );
        let failed = incident_after_notice(&resolved, Notice::Opened, Err("503".into()), at(2_000));
        assert_eq!(failed.next_attempt_at, at(3_000));
        assert_eq!(claimable_notice(&failed, "a", at(2_999)), None, "not due");
        let told = incident_after_notice(&failed, Notice::Opened, Ok(()), at(3_000));
        assert_eq!(
            claimable_notice(&told, "b", at(3_000)),
            Some(Notice::Resolved)
        );
        let done = incident_after_notice(&told, Notice::Resolved, Ok(()), at(3_100));
        assert_eq!(pending_notice(&done), None);
        let waits: Vec<u64> = (1..=12).map(|n| notice_retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(notice_retry_delay(u32::MAX).as_secs(), 600);
        let export = new_incident(
            NewIncident {
                id: "incident_2".into(),
                kind: IncidentKind::Export,
                subject_id: "audit_log_export_1".into(),
                organization_id: None,
                state: "error".into(),
                last_error: None,
                since: at(0),
            },
            at(0),
        );
        assert_eq!(export.resolved_at, Some(at(0)), "closed as it opens");
        let told = incident_after_notice(&export, Notice::Opened, Ok(()), at(10));
        assert_eq!(pending_notice(&told), None, "no recovery to tell");
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
