//! Erasure: removing a person's data from an organization's log while every proof still holds.
//!
//! An erasure names a subject (an actor id, a target id, or a value) and, for a party, which of
//! its fields go (`trailmark_domain::erasable`). Every matching event of the organization is
//! found, and:
//! - an event stored since leaf version 2 is *rewritten*: each selected value reads `[erased]`,
//!   and the event keeps the salted commitments its leaf was built from
//!   (`trailmark_ledger::commit::erase`), so its leaf hash, every inclusion and consistency
//!   proof and every signed checkpoint stay valid — checked here, event by event, before
//!   anything is written;
//! - an event stored before leaf version 2 committed to its values in the clear: rewriting it
//!   would change its leaf, so it is *purged whole*, as retention does (its stub keeps the
//!   proofs), and the erasure says how many were.
//!
//! The erasure is recorded in the organization's log (`trailmark.erasure.completed`: the kind of
//! subject, the fields and the counts — never the erased id or value). A legal hold blocks it
//! unless forced with a reason, which the record keeps.
//!
//! What an erasure cannot reach: copies already outside Trailmark (events a log stream
//! delivered, files an export's downloader kept, backups of the data directory).

use serde_json::{Map, Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::erasable::{ErasureRequest, Subject};
use trailmark_domain::query::EventFilter;
use trailmark_ledger::commit::{self, Salting};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_store::{Order, Rewrite, SearchRequest, StoredEvent};

use crate::system::{SystemActor, SystemEvent};
use crate::{AppError, Trailmark};

/// Events read, and rewritten, per store call: bounds the memory and the length of each of the
/// store's transactions.
const ERASURE_BATCH: usize = 500;

/// An erasure as asked for.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub organization_id: String,
    pub request: ErasureRequest,
    /// Set to erase under a legal hold: why (kept in the erasure's record).
    pub forced_because: Option<String>,
    pub actor: SystemActor,
    /// Where it was asked from (the caller's address), for the record.
    pub location: String,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Events rewritten with the selected values erased (leaf version 2).
    pub erased_events: u64,
    /// Events stored before leaf version 2, purged whole instead.
    pub purged_events: u64,
}

impl Trailmark {
    /// Erases `erasure`'s subject from every matching event of the organization.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`]; [`AppError::LegalHold`] under a legal hold unless
    /// forced; [`AppError::Internal`] if a rewritten event would no longer match its leaf
    /// (nothing of that batch is written); storage errors.
    pub async fn erase(&self, erasure: Erasure) -> Result<ErasureOutcome, AppError> {
        let organization_id = erasure.organization_id.as_str();
        self.live_organization(organization_id).await?;
        let force = erasure.forced_because.is_some();
        if !force && let Some(hold) = self.store().legal_hold(organization_id).await? {
            return Err(AppError::LegalHold(hold.reason));
        }
        let filter = match &erasure.request.subject {
            Subject::Actor(id) => EventFilter {
                actor_ids: vec![id.clone()],
                ..EventFilter::default()
            },
            Subject::Target(id) => EventFilter {
                target_ids: vec![id.clone()],
                ..EventFilter::default()
            },
            // A value may sit where no filter looks (a user agent, say): every event is read.
            Subject::Value(_) => EventFilter::default(),
        };
        let mut outcome = ErasureOutcome {
            erased_events: 0,
            purged_events: 0,
        };
        let mut after = None;
        // No download serves what is being erased, from the first rewrite until the
        // organization's exports are written again without it.
        let mut withheld = None;
        loop {
            let page = self
                .store()
                .search_events(
                    organization_id,
                    SearchRequest {
                        filter: filter.clone(),
                        after,
                        before: None,
                        order: Order::Asc,
                        limit: ERASURE_BATCH,
                    },
                )
                .await?;
            let Some(last) = page.events.last() else {
                break;
            };
            after = Some(last.sequence);
            let rewrites = page
                .events
                .iter()
                .filter(|event| event.purged_at.is_none())
                .filter_map(|event| rewrite(&erasure.request, event).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            if !rewrites.is_empty() {
                withheld.get_or_insert_with(|| self.withhold_downloads(organization_id));
                let purged = rewrites.iter().filter(|r| r.body.is_none()).count() as u64;
                let erased = rewrites.len() as u64 - purged;
                let done = self
                    .store()
                    .erase_events(organization_id, rewrites, force, Timestamp::now())
                    .await?;
                if !done {
                    // A hold was set while the erasure ran: what is done is recorded, and
                    // leaves the exports too.
                    self.refresh_exports_after_erasure(organization_id, &outcome)
                        .await?;
                    self.record_erasure(&erasure, &outcome).await?;
                    let hold = self.store().legal_hold(organization_id).await?;
                    return Err(AppError::LegalHold(
                        hold.map(|h| h.reason).unwrap_or_default(),
                    ));
                }
                outcome.erased_events += erased;
                outcome.purged_events += purged;
            }
            if !page.more {
                break;
            }
        }
        self.refresh_exports_after_erasure(organization_id, &outcome)
            .await?;
        drop(withheld);
        self.record_erasure(&erasure, &outcome).await?;
        Ok(outcome)
    }

    /// Rewrites the organization's exports if the erasure changed any event.
    async fn refresh_exports_after_erasure(
        &self,
        organization_id: &str,
        outcome: &ErasureOutcome,
    ) -> Result<(), AppError> {
        if outcome.erased_events + outcome.purged_events > 0 {
            self.refresh_exports(organization_id).await?;
        }
        Ok(())
    }

    async fn record_erasure(
        &self,
        erasure: &Erasure,
        outcome: &ErasureOutcome,
    ) -> Result<(), AppError> {
        let mut metadata = Map::new();
        metadata.insert("subject".into(), json!(erasure.request.subject.kind()));
        let fields: Vec<&str> = erasure.request.fields.iter().map(|f| f.as_str()).collect();
        if !fields.is_empty() {
            metadata.insert("fields".into(), json!(fields.join(",")));
        }
        metadata.insert("erased_events".into(), json!(outcome.erased_events));
        metadata.insert("purged_events".into(), json!(outcome.purged_events));
        if let Some(reason) = &erasure.forced_because {
            metadata.insert("forced_under_legal_hold".into(), json!(true));
            metadata.insert("reason".into(), json!(reason));
        }
        self.record(
            &erasure.organization_id,
            SystemEvent {
                action: "trailmark.erasure.completed".into(),
                actor: erasure.actor.clone(),
                target: json!({"id": erasure.organization_id, "type": "organization"}),
                location: erasure.location.clone(),
                user_agent: None,
                metadata: Value::Object(metadata),
            },
        )
        .await?;
        Ok(())
    }
}

/// The rewrite `request` makes of `event`, if it selects any of its values: the erased body,
/// checked to keep the event's leaf hash, or a purge for an event stored before leaf version 2.
fn rewrite(request: &ErasureRequest, event: &StoredEvent) -> Result<Option<Rewrite>, AppError> {
    let pointers = request.select(&event.body);
    if pointers.is_empty() {
        return Ok(None);
    }
    let salted = Salting::of(&event.body)
        .map_err(|e| AppError::Internal(format!("event {}: {e}", event.id)))?
        .is_some();
    if !salted {
        return Ok(Some(Rewrite {
            sequence: event.sequence,
            body: None,
        }));
    }
    let body = commit::erase(&event.body, &pointers)
        .map_err(|e| AppError::Internal(format!("erasing event {}: {e}", event.id)))?;
    let rewritten = StoredEvent {
        body: body.clone(),
        ..event.clone()
    };
    if event_leaf_hash(&rewritten.leaf_object()) != event.leaf_hash {
        return Err(AppError::Internal(format!(
            "erasing event {} would change its leaf hash",
            event.id
        )));
    }
    Ok(Some(Rewrite {
        sequence: event.sequence,
        body: Some(body),
    }))
}
