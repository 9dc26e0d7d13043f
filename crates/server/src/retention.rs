//! The retention job: for every organization with a retention period and no legal hold, events
//! received longer ago than the period lose their contents (see `Store::purge_events`); their
//! stubs keep the Merkle log, and so every proof and checkpoint, intact.
//!
//! Retention counts from `received_at` (when Trailmark received the event), not from the
//! client-supplied `occurred_at`, so importing old events never purges them on arrival.

use std::time::Duration;

use trailmark_domain::Timestamp;

use crate::state::AppState;

/// Events purged per transaction, so a large purge never holds the writer for long.
const PURGE_BATCH: usize = 2_000;

const DAY_MILLIS: i64 = 86_400_000;

/// Runs one pass over every organization; returns how many events were purged.
pub(crate) async fn purge_once(state: &AppState) -> u64 {
    let started = std::time::Instant::now();
    let (purged, failed) = purge_every_organization(state).await;
    state
        .metrics
        .retention_run(failed, purged, started.elapsed());
    purged
}

/// One pass; how many events were purged, and whether any part of it failed.
async fn purge_every_organization(state: &AppState) -> (u64, bool) {
    let organizations = match state.store.purgeable_organizations().await {
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
        loop {
            match state
                .store
                .purge_events(&organization_id, cutoff, PURGE_BATCH, now)
                .await
            {
                Ok(0) => break,
                Ok(purged) => total += purged,
                Err(error) => {
                    tracing::error!(organization = %organization_id, %error, "retention purge failed");
                    failed = true;
                    break;
                }
            }
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

/// Runs [`purge_once`] every `interval`, forever.
pub(crate) fn spawn(state: AppState, interval: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            purge_once(&state).await;
        }
    });
}
