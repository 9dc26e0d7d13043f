//! Events from apps: `POST /audit_logs/events` (one) and the batch endpoint (up to 1,000).
//!
//! Every request is idempotent (wire doc §2.1). Its identity is the `Idempotency-Key` hashed
//! with the organization and the normalized event (`trailmark_domain::idempotency`); without a
//! key, the content alone. The store keeps the identity in the same commit as the events, so a
//! repeated request — even one racing the first — gets the first request's receipts back, and
//! stores nothing.
//!
//! What a batch's replay also needs — which items failed, and why — is kept with the claim as
//! the *outcome*, a small JSON document this module writes and reads:
//! `{"trailmark":1,"items":[{"stored":0},{"malformed":[{"code","field","message"}]},
//! {"invalid":[{"instancePath","message"}]}]}` (a single event's is `{"trailmark":1}`).
//! Compatibility: records written before outcomes existed hold the response body they gave
//! (any JSON without the `trailmark` key); they are answered with that body as it was, which
//! only happens for a day after an upgrade, since records expire.

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;
use trailmark_domain::event::NewEvent;
use trailmark_domain::id::IdKind;
use trailmark_domain::idempotency::{
    IDEMPOTENCY_WINDOW_MILLIS, batch_idempotency_identity, event_idempotency_identity,
};
use trailmark_domain::json::{Json, JsonText};
use trailmark_domain::{FieldProblem, PathProblem, Problems, Timestamp};
use trailmark_store::{AppendOutcome, AppendRequest, IdempotencyClaim, PendingEvent, Receipt};

use crate::{AppError, Trailmark};

/// How an ingest request was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// Stored by this request.
    Stored(T),
    /// A repeat of an earlier request, answered with what that one stored; nothing new.
    Replayed(T),
    /// A repeat of a request answered by a Trailmark from before outcomes were kept: the
    /// response body it gave, to be sent again unchanged.
    RepeatedResponse(Vec<u8>),
}

/// One item of a batch: its receipt, or why it was refused (the other items are stored anyway).
pub type BatchItem = Result<Receipt, Problems>;

/// The version of the outcome format this module writes.
const OUTCOME_VERSION: u64 = 1;
/// A single event's outcome, `{"trailmark": OUTCOME_VERSION}` (a unit test holds them equal).
const SINGLE_OUTCOME: &[u8] = br#"{"trailmark":1}"#;

impl Trailmark {
    /// Stores one event in `organization_id`'s log, after checking it against its schema.
    ///
    /// # Errors
    ///
    /// [`AppError::Problems`] (the schema refused it), [`AppError::OrganizationNotFound`], or
    /// storage errors.
    pub async fn ingest(
        &self,
        organization_id: &str,
        event: NewEvent,
        idempotency_key: Option<&str>,
    ) -> Result<Answer<Receipt>, AppError> {
        self.check_schema(&event)
            .await?
            .map_err(Problems::Invalid)?;
        let identity = event_idempotency_identity(organization_id, idempotency_key, &event);
        let now = Timestamp::now();
        let outcome = self
            .append_claimed(
                organization_id,
                vec![pending(event, now)],
                identity,
                SINGLE_OUTCOME.to_vec(),
                now,
            )
            .await?;
        Ok(match outcome {
            Claimed::Stored(receipts) => Answer::Stored(single(receipts)?),
            Claimed::Replayed(receipts, _) => Answer::Replayed(single(receipts)?),
            Claimed::RepeatedResponse(body) => Answer::RepeatedResponse(body),
        })
    }

    /// Stores a batch of events in `organization_id`'s log: each item of `raw`, the `events` of
    /// the request body `text` (which tells whether they need a look for NUL), is parsed and
    /// checked on its own (its problems named under `events[i]`), and the valid ones are stored
    /// in request order in one commit. The answer has one item per request item.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`] or storage errors; invalid items are answers, not
    /// errors.
    pub async fn ingest_batch<'a>(
        &self,
        organization_id: &str,
        text: &JsonText<'a>,
        raw: &[Json<'a>],
        idempotency_key: Option<&str>,
    ) -> Result<Answer<Vec<BatchItem>>, AppError> {
        debug_assert!(
            matches!(text.json().get("events"), Some(Json::Array(events)) if std::ptr::eq(events.as_slice(), raw)),
            "the events are the body's own"
        );
        let now = Timestamp::now();
        let mut events = Vec::new();
        // Per request item: `Ok(position among stored events)` or its problems.
        let mut plan: Vec<Result<usize, Problems>> = Vec::with_capacity(raw.len());
        for (index, item) in raw.iter().enumerate() {
            let checked = match NewEvent::read_in(text, item, &format!("events[{index}]")) {
                Ok(event) => match self.check_schema(&event).await? {
                    Ok(()) => Ok(event),
                    Err(problems) => Err(Problems::Invalid(problems)),
                },
                Err(problems) => Err(problems),
            };
            plan.push(checked.map(|event| {
                events.push(pending(event, now));
                events.len() - 1
            }));
        }
        let identity = batch_idempotency_identity(organization_id, idempotency_key, raw);
        let outcome = batch_outcome(&plan);
        Ok(
            match self
                .append_claimed(organization_id, events, identity, outcome, now)
                .await?
            {
                Claimed::Stored(receipts) => Answer::Stored(batch_items(plan, receipts)),
                Claimed::Replayed(receipts, outcome) => {
                    Answer::Replayed(batch_items(replayed_plan(&outcome)?, receipts))
                }
                Claimed::RepeatedResponse(body) => Answer::RepeatedResponse(body),
            },
        )
    }

    /// Appends `events` under an idempotency claim and does the post-commit effects.
    async fn append_claimed(
        &self,
        organization_id: &str,
        events: Vec<PendingEvent>,
        identity: [u8; 32],
        outcome: Vec<u8>,
        now: Timestamp,
    ) -> Result<Claimed, AppError> {
        // Only Trailmark writes its own log.
        crate::organizations::refuse_trailmark_log(organization_id)?;
        let claim = IdempotencyClaim {
            identity,
            expires_at: now.plus_millis(IDEMPOTENCY_WINDOW_MILLIS),
            outcome,
        };
        // The append and its durable group commit: a child of the request's span in traces.
        let span = tracing::info_span!("store.commit", organization_id = %organization_id, events = events.len());
        let appended = self
            .store()
            .append(AppendRequest {
                organization_id: organization_id.to_owned(),
                events,
                idempotency: Some(claim),
            })
            .instrument(span)
            .await?;
        match appended {
            AppendOutcome::Appended { receipts } => {
                self.inner.effects.appended(organization_id, &receipts);
                Ok(Claimed::Stored(receipts))
            }
            AppendOutcome::Replayed { receipts, outcome } => {
                self.inner.effects.replayed();
                let stored: Value = serde_json::from_slice(&outcome).map_err(|e| {
                    AppError::Internal(format!("an idempotency record does not parse: {e}"))
                })?;
                if stored.get("trailmark").is_none() {
                    return Ok(Claimed::RepeatedResponse(outcome));
                }
                Ok(Claimed::Replayed(receipts, stored))
            }
        }
    }
}

/// What an append under a claim came to, before it is shaped into an [`Answer`].
enum Claimed {
    Stored(Vec<Receipt>),
    Replayed(Vec<Receipt>, Value),
    RepeatedResponse(Vec<u8>),
}

fn pending(event: NewEvent, received_at: Timestamp) -> PendingEvent {
    PendingEvent {
        id: IdKind::Event.generate().into_string(),
        event,
        received_at,
    }
}

fn single(receipts: Vec<Receipt>) -> Result<Receipt, AppError> {
    receipts
        .into_iter()
        .next()
        .ok_or_else(|| AppError::Internal("an append answered without a receipt".into()))
}

fn batch_items(plan: Vec<Result<usize, Problems>>, receipts: Vec<Receipt>) -> Vec<BatchItem> {
    plan.into_iter()
        .map(|item| {
            item.and_then(|position| {
                receipts.get(position).cloned().ok_or_else(|| {
                    Problems::Malformed(vec![FieldProblem {
                        code: "invalid_value",
                        field: "events".into(),
                        message: "this event was not stored".into(),
                    }])
                })
            })
        })
        .collect()
}

/// A batch's outcome document (see the module's documentation), serialized straight from its
/// plan: a batch has up to 1,000 items.
fn batch_outcome(plan: &[Result<usize, Problems>]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Malformed<'a> {
        code: &'a str,
        field: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Invalid<'a> {
        #[serde(rename = "instancePath")]
        instance_path: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Item<'a> {
        Stored(usize),
        Malformed(Vec<Malformed<'a>>),
        Invalid(Vec<Invalid<'a>>),
    }
    #[derive(Serialize)]
    struct Outcome<'a> {
        trailmark: u64,
        items: Vec<Item<'a>>,
    }
    let items = plan
        .iter()
        .map(|item| match item {
            Ok(position) => Item::Stored(*position),
            Err(Problems::Malformed(problems)) => Item::Malformed(
                problems
                    .iter()
                    .map(|p| Malformed {
                        code: p.code,
                        field: &p.field,
                        message: &p.message,
                    })
                    .collect(),
            ),
            Err(Problems::Invalid(problems)) => Item::Invalid(
                problems
                    .iter()
                    .map(|p| Invalid {
                        instance_path: &p.instance_path,
                        message: &p.message,
                    })
                    .collect(),
            ),
        })
        .collect();
    let outcome = Outcome {
        trailmark: OUTCOME_VERSION,
        items,
    };
    // Serializing borrowed strings and integers cannot fail.
    serde_json::to_vec(&outcome).unwrap_or_default()
}

/// The per-item plan a batch's stored outcome describes.
fn replayed_plan(outcome: &Value) -> Result<Vec<Result<usize, Problems>>, AppError> {
    let corrupt = || AppError::Internal("a batch's idempotency outcome is not readable".into());
    let items = outcome["items"].as_array().ok_or_else(corrupt)?;
    items
        .iter()
        .map(|item| {
            if let Some(position) = item["stored"].as_u64() {
                return Ok(Ok(position as usize));
            }
            let text = |problem: &Value, key: &str| problem[key].as_str().unwrap_or("").to_owned();
            if let Some(problems) = item["malformed"].as_array() {
                return Ok(Err(Problems::Malformed(
                    problems
                        .iter()
                        .map(|p| FieldProblem {
                            code: field_code(p["code"].as_str().unwrap_or("")),
                            field: text(p, "field"),
                            message: text(p, "message"),
                        })
                        .collect(),
                )));
            }
            if let Some(problems) = item["invalid"].as_array() {
                return Ok(Err(Problems::Invalid(
                    problems
                        .iter()
                        .map(|p| PathProblem {
                            instance_path: text(p, "instancePath"),
                            message: text(p, "message"),
                        })
                        .collect(),
                )));
            }
            Err(corrupt())
        })
        .collect()
}

/// The code of a stored problem, as one of the codes event parsing produces.
fn field_code(code: &str) -> &'static str {
    const CODES: [&str; 10] = [
        "required",
        "invalid_type",
        "invalid_value",
        "invalid_date",
        "invalid_format",
        "too_long",
        "too_short",
        "too_many",
        "too_few",
        "empty",
    ];
    CODES
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or("invalid_value")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_single_event_s_outcome_is_the_versioned_object() {
        assert_eq!(
            serde_json::from_slice::<Value>(SINGLE_OUTCOME).expect("JSON"),
            json!({"trailmark": OUTCOME_VERSION})
        );
    }

    #[test]
    fn a_batch_outcome_reads_back_as_the_plan_it_was_written_from() {
        let plan = vec![
            Ok(0),
            Err(Problems::Malformed(vec![FieldProblem {
                code: "too_long",
                field: "events[1].action".into(),
                message: "action is too long".into(),
            }])),
            Ok(1),
            Err(Problems::Invalid(vec![PathProblem {
                instance_path: "/targets/0/type".into(),
                message: "must be 'team'".into(),
            }])),
        ];
        let stored: Value = serde_json::from_slice(&batch_outcome(&plan)).expect("stored JSON");
        assert_eq!(
            stored,
            json!({"trailmark": 1, "items": [
                {"stored": 0},
                {"malformed": [{"code": "too_long", "field": "events[1].action",
                                "message": "action is too long"}]},
                {"stored": 1},
                {"invalid": [{"instancePath": "/targets/0/type", "message": "must be 'team'"}]},
            ]})
        );
        assert_eq!(replayed_plan(&stored).expect("readable"), plan);
    }
}
