//! The audit log audits itself: what is changed with an API key — exports, retention and legal
//! holds, log streams (created, changed, secret rotated, deleted, replayed), Admin Portal
//! links and API keys restricted to the organization (created, revoked) — is recorded in the
//! organization's own log as a `trailmark.*` event (an unrestricted key's creation or
//! revocation, which no organization owns, in Trailmark's own log), with the key as
//! actor (its id and name) and the caller's address as the context's location. Each use case
//! takes the [`Origin`] of its request and calls [`Trailmark::audit`] once its change is made:
//! the HTTP handlers only say who is asking. The portal's pages record their own actions
//! (`trailmark.portal.*`, the session as actor), so a change from the portal is not recorded
//! twice. A change that was made but could not be recorded answers the storage error, as the
//! portal's pages do.

use serde_json::{Value, json};
use trailmark_store::{ApiKeyRecord, ExportRecord, StreamRecord};

use crate::system::{SystemActor, SystemEvent};
use crate::{AppError, Trailmark};

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A request made with an API key from `address` (the client's, as the rate limits see it).
    ApiKey {
        key_id: String,
        key_name: String,
        address: String,
    },
    /// The Admin Portal, whose pages record their own actions.
    Portal,
    /// An operator signed in to the console, from `address` with the browser `user_agent`.
    /// What an operator changes is recorded twice: in the organization's log, as a key's
    /// change is, and in Trailmark's own log ([`crate::console::TRAILMARK_LOG`]).
    Operator {
        operator_id: String,
        email: String,
        address: String,
        user_agent: Option<String>,
    },
}

/// Who a recorded change names as its actor, and where it came from.
pub(crate) struct Recorded<'a> {
    pub actor: SystemActor,
    pub location: &'a str,
    pub user_agent: Option<String>,
}

impl Origin {
    /// The recorded actor of a key's or an operator's request, if the change is recorded here.
    pub(crate) fn recorded(&self) -> Option<Recorded<'_>> {
        match self {
            Origin::ApiKey {
                key_id,
                key_name,
                address,
            } => Some(Recorded {
                actor: SystemActor {
                    id: key_id.clone(),
                    kind: "api_key",
                    name: Some(key_name.clone()),
                },
                location: address.as_str(),
                user_agent: None,
            }),
            Origin::Operator {
                operator_id,
                email,
                address,
                user_agent,
            } => Some(Recorded {
                actor: SystemActor {
                    id: operator_id.clone(),
                    kind: "operator",
                    name: Some(email.clone()),
                },
                location: address.as_str(),
                user_agent: user_agent.clone(),
            }),
            Origin::Portal => None,
        }
    }

    /// Whether the change is also recorded in Trailmark's own log.
    pub(crate) fn is_operator(&self) -> bool {
        matches!(self, Origin::Operator { .. })
    }
}

/// A change recorded in the organization's log.
pub(crate) enum Change<'a> {
    ExportCreated(&'a ExportRecord),
    RetentionSet {
        days: u32,
    },
    StreamCreated(&'a StreamRecord),
    StreamUpdated(&'a StreamRecord),
    StreamSecretRotated(&'a StreamRecord),
    StreamDeleted(&'a StreamRecord),
    StreamReplayed {
        stream: &'a StreamRecord,
        from_sequence: u64,
    },
    PortalLinkCreated {
        intent: &'a str,
    },
    ApiKeyCreated(&'a ApiKeyRecord),
    ApiKeyRevoked(&'a ApiKeyRecord),
}

impl Change<'_> {
    /// The event's action, target and metadata.
    pub(crate) fn parts(&self, organization_id: &str) -> (&'static str, Value, Value) {
        let stream = |stream: &StreamRecord| json!({"id": stream.id, "type": "log_stream", "name": stream.name});
        match self {
            Change::ExportCreated(export) => (
                "trailmark.export.created",
                json!({"id": export.id, "type": "audit_log_export"}),
                json!({"format": export.format.as_str()}),
            ),
            Change::RetentionSet { days } => (
                "trailmark.retention.set",
                json!({"id": organization_id, "type": "organization"}),
                json!({"retention_period_in_days": days}),
            ),
            Change::StreamCreated(created) => (
                "trailmark.stream.created",
                stream(created),
                json!({"type": created.kind}),
            ),
            Change::StreamUpdated(updated) => (
                "trailmark.stream.updated",
                stream(updated),
                json!({"enabled": updated.enabled}),
            ),
            Change::StreamSecretRotated(rotated) => (
                "trailmark.stream.secret_rotated",
                stream(rotated),
                json!({}),
            ),
            Change::StreamDeleted(deleted) => {
                ("trailmark.stream.deleted", stream(deleted), json!({}))
            }
            Change::StreamReplayed {
                stream: replayed,
                from_sequence,
            } => (
                "trailmark.stream.replayed",
                stream(replayed),
                json!({"from_sequence": from_sequence}),
            ),
            Change::PortalLinkCreated { intent } => (
                "trailmark.portal_link.created",
                json!({"id": organization_id, "type": "organization"}),
                json!({"intent": intent}),
            ),
            Change::ApiKeyCreated(key) => (
                "trailmark.api_key.created",
                key_target(key),
                key_metadata(key),
            ),
            Change::ApiKeyRevoked(key) => (
                "trailmark.api_key.revoked",
                key_target(key),
                key_metadata(key),
            ),
        }
    }
}

/// A key as the target of a change: its id and name, never its text or hash.
fn key_target(key: &ApiKeyRecord) -> Value {
    json!({"id": key.id, "type": "api_key", "name": key.name})
}

fn key_metadata(key: &ApiKeyRecord) -> Value {
    let mut metadata = json!({"scope": key.scope.as_str(), "prefix": key.prefix});
    if let Some(expires_at) = key.expires_at {
        metadata["expires_at"] = json!(expires_at.to_string());
    }
    metadata
}

impl Trailmark {
    /// Records `change`, asked for by `origin`, in `organization_id`'s log (nothing for the
    /// portal, which records its own), and an operator's also in Trailmark's own log.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn audit(
        &self,
        organization_id: &str,
        origin: &Origin,
        change: Change<'_>,
    ) -> Result<(), AppError> {
        let Some(recorded) = origin.recorded() else {
            return Ok(());
        };
        let (action, target, mut metadata) = change.parts(organization_id);
        let event = SystemEvent {
            action: action.into(),
            actor: recorded.actor,
            target,
            location: recorded.location.to_owned(),
            user_agent: recorded.user_agent,
            metadata: metadata.clone(),
        };
        self.record(organization_id, event.clone()).await?;
        if origin.is_operator() {
            // Trailmark's log says which organization each change was made in.
            metadata["organization_id"] = json!(organization_id);
            self.record_in_trailmark_log(SystemEvent { metadata, ..event })
                .await?;
        }
        Ok(())
    }
}
