//! Retention and legal holds. The retention job: for every organization with a retention period
//! and no legal hold, events received longer ago than the period lose their contents (see
//! `Retention::purge_events`); their stubs keep the Merkle log, and so every proof and
//! checkpoint, intact. A legal hold stops it; setting and lifting one is itself recorded in the
//! organization's log, in the same commit. After a purge the organization's ready exports are
//! rewritten without the purged contents ([`Trailmark::refresh_exports`]); its downloads are
//! refused from the first purged batch until then.
//!
//! Retention counts from `received_at` (when Trailmark received the event), not from the
//! client-supplied `occurred_at`, so importing old events never purges them on arrival.

use serde_json::{Map, Value, json};
use trailmark_domain::id::IdKind;
use trailmark_domain::limits::METADATA_VALUE_MAX_CHARS;
use trailmark_domain::{Problems, Timestamp};
use trailmark_store::{LegalHold, PendingEvent};

use crate::audit::{Origin, Recorded};
use crate::system::{SystemActor, SystemEvent};
use crate::{AppError, Trailmark};

/// Events purged per transaction, so a large purge never holds the writer for long.
const PURGE_BATCH: usize = 2_000;

const DAY_MILLIS: i64 = 86_400_000;

impl Trailmark {
    /// Runs one pass over every organization; returns how many events were purged.
    pub async fn purge_expired_once(&self) -> u64 {
        let started = std::time::Instant::now();
        let (purged, failed) = self.purge_every_organization().await;
        self.metrics()
            .retention_run(failed, purged, started.elapsed());
        purged
    }

    /// One pass; how many events were purged, and whether any part of it failed.
    async fn purge_every_organization(&self) -> (u64, bool) {
        let organizations = match self.store().purgeable_organizations().await {
            Ok(organizations) => organizations,
            Err(error) => {
                tracing::warn!(%error, "cannot list organizations to purge");
                return (0, true);
            }
        };
        let mut failed = false;
        let mut total = 0;
        for (organization_id, days) in organizations {
            let now = Timestamp::now();
            let cutoff = now.plus_millis(-i64::from(days) * DAY_MILLIS);
            // No download may serve what is being purged, from the first purged batch until
            // its exports are rewritten (a pass that purges nothing withholds nothing).
            let mut withheld = None;
            let mut purged_here = 0;
            loop {
                match self
                    .store()
                    .purge_events(&organization_id, cutoff, PURGE_BATCH, now)
                    .await
                {
                    Ok(0) => break,
                    Ok(purged) => {
                        withheld.get_or_insert_with(|| self.withhold_downloads(&organization_id));
                        purged_here += purged;
                    }
                    Err(error) => {
                        tracing::error!(organization = %organization_id, %error, "retention purge failed");
                        failed = true;
                        break;
                    }
                }
            }
            total += purged_here;
            if purged_here > 0
                && let Err(error) = self.refresh_exports(&organization_id).await
            {
                tracing::error!(organization = %organization_id, %error, "cannot rewrite exports after a purge");
                failed = true;
            }
        }
        if total > 0 {
            tracing::info!(
                purged = total,
                "retention removed the contents of expired events"
            );
        }
        (total, failed)
    }

    /// Runs [`Trailmark::purge_expired_once`] every retention interval, until shutdown.
    pub(crate) async fn purge_expired_forever(&self) {
        let mut ticks = tokio::time::interval(self.inner.config.retention_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.purge_expired_once().await;
        }
    }

    /// The organization's legal hold, if one is set.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn legal_hold(&self, organization_id: &str) -> Result<Option<LegalHold>, AppError> {
        Ok(self.store().legal_hold(organization_id).await?)
    }

    /// Sets (`active`, with a reason) or lifts `organization_id`'s legal hold, recording the
    /// change (`trailmark.legal_hold.set` / `.lifted`, by `origin`'s key from its address, with
    /// the reason if given) in its log in the same commit. Returns the hold now in force.
    ///
    /// # Errors
    ///
    /// A problem naming `reason` if it is longer than a metadata value may be,
    /// [`AppError::OrganizationNotFound`], or storage errors.
    pub async fn set_legal_hold(
        &self,
        organization_id: &str,
        active: bool,
        reason: Option<String>,
        origin: &Origin,
    ) -> Result<Option<LegalHold>, AppError> {
        if active && reason.is_none() {
            return Err(AppError::field(
                "required",
                "reason",
                "a legal hold needs a reason",
            ));
        }
        self.live_organization(organization_id).await?;
        // Only keys set holds today; should the portal ever, its session is the actor.
        let recorded = origin.recorded().unwrap_or(Recorded {
            actor: SystemActor {
                id: "portal".into(),
                kind: "portal_session",
                name: None,
            },
            location: "trailmark portal",
            user_agent: None,
        });
        let now = Timestamp::now();
        let mut metadata = Map::new();
        if let Some(reason) = &reason {
            metadata.insert("reason".into(), json!(reason));
        }
        let event = SystemEvent {
            action: if active {
                "trailmark.legal_hold.set"
            } else {
                "trailmark.legal_hold.lifted"
            }
            .into(),
            actor: recorded.actor,
            target: json!({"id": organization_id, "type": "organization"}),
            location: recorded.location.into(),
            user_agent: recorded.user_agent,
            metadata: Value::Object(metadata),
        };
        let record = event.to_new_event(now).map_err(|problems| match problems {
            Problems::Invalid(_) => AppError::field(
                "too_long",
                "reason",
                format!("reason must be at most {METADATA_VALUE_MAX_CHARS} characters"),
            ),
            other => AppError::Problems(other),
        })?;
        let pending = PendingEvent {
            id: IdKind::Event.generate().into_string(),
            event: record,
            received_at: now,
        };
        let receipt = self
            .store()
            .set_legal_hold(organization_id, reason.filter(|_| active), pending, now)
            .await?;
        self.inner
            .effects
            .appended(organization_id, std::slice::from_ref(&receipt));
        if origin.is_operator() {
            let mut event = event;
            event.metadata["organization_id"] = json!(organization_id);
            self.record_in_trailmark_log(event).await?;
        }
        self.legal_hold(organization_id).await
    }
}
