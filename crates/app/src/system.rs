//! Events Trailmark writes about itself into an organization's own log: what was done through
//! the Admin Portal, legal holds set and lifted. They go through the same append and the same
//! post-commit effects as an app's events, so streams and live readers see them at once.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::id::IdKind;
use trailmark_store::{AppendOutcome, AppendRequest, PendingEvent, Receipt};

use crate::{AppError, Trailmark};

/// Who did something, as recorded: an API key, a portal session, an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemActor {
    pub id: String,
    /// `api_key`, `portal_session`, …
    pub kind: &'static str,
    pub name: Option<String>,
}

/// One event about Trailmark itself.
#[derive(Debug, Clone)]
pub struct SystemEvent {
    /// `trailmark.<area>.<what>`, e.g. `trailmark.portal.export.created`.
    pub action: String,
    pub actor: SystemActor,
    /// What was acted on: `{"id", "type"}`.
    pub target: Value,
    /// Where it was done from (`trailmark portal`, `trailmark`, a client address).
    pub location: String,
    /// The browser the change was made with, when a person made it in one (the console).
    pub user_agent: Option<String>,
    /// An object of string, number or boolean values (the limits of every event apply).
    pub metadata: Value,
}

impl SystemEvent {
    /// The event as a validated [`NewEvent`], occurring `now`.
    ///
    /// # Errors
    ///
    /// The event's problems, if a metadata value breaks the limits every event has.
    pub fn to_new_event(&self, now: Timestamp) -> Result<NewEvent, trailmark_domain::Problems> {
        let mut actor = json!({"id": self.actor.id, "type": self.actor.kind});
        if let Some(name) = &self.actor.name {
            actor["name"] = json!(name);
        }
        let mut context = json!({"location": self.location});
        if let Some(user_agent) = &self.user_agent {
            context["user_agent"] = json!(user_agent);
        }
        NewEvent::parse(&json!({
            "action": self.action,
            "occurred_at": now.to_string(),
            "actor": actor,
            "targets": [self.target],
            "context": context,
            "metadata": self.metadata,
        }))
    }
}

impl Trailmark {
    /// Appends `event` to `organization_id`'s log.
    ///
    /// # Errors
    ///
    /// [`AppError::Problems`] if the event breaks the limits every event has,
    /// [`AppError::OrganizationNotFound`], or storage errors.
    pub async fn record(
        &self,
        organization_id: &str,
        event: SystemEvent,
    ) -> Result<Receipt, AppError> {
        let now = Timestamp::now();
        let pending = PendingEvent {
            id: IdKind::Event.generate().into_string(),
            event: event.to_new_event(now)?,
            received_at: now,
        };
        let outcome = self
            .store()
            .append(AppendRequest {
                organization_id: organization_id.to_owned(),
                events: vec![pending],
                idempotency: None,
            })
            .await?;
        match outcome {
            AppendOutcome::Appended { receipts } => {
                self.inner.effects.appended(organization_id, &receipts);
                receipts
                    .into_iter()
                    .next()
                    .ok_or_else(|| AppError::Internal("an append stored no event".into()))
            }
            AppendOutcome::Replayed { .. } => Err(AppError::Internal(
                "an append without an idempotency claim was replayed".into(),
            )),
        }
    }
}
