//! What follows a commit, done once here for every caller: count the events, wake the log
//! streams, and tell live readers the log grew. A use case that appends calls
//! [`Effects::appended`] after the store returned `Ok`, never before.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use trailmark_store::Receipt;
use trailmark_streams::worker::StreamWorkers;

use crate::metrics::AppMetrics;

/// Growth notices a slow live reader may fall behind by before it is told to catch up from
/// storage (it then reads the events it missed by sequence; nothing is lost).
const GROWTH_BUFFER: usize = 1_024;

/// An organization's log grew to `size` events (on this instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGrowth {
    pub organization_id: Arc<str>,
    pub size: u64,
}

pub(crate) struct Effects {
    metrics: Arc<AppMetrics>,
    streams: Arc<StreamWorkers>,
    growth: broadcast::Sender<LogGrowth>,
    /// Cancelled when the server stops taking requests: live readers end, so their connections
    /// do not hold the shutdown for its whole grace period.
    live_stop: CancellationToken,
    /// The organizations live readers of this instance follow, for the one task that looks for
    /// other instances' appends to them ([`crate::live`]).
    pub(crate) watched: Arc<crate::live::Watched>,
}

impl Effects {
    pub(crate) fn new(metrics: Arc<AppMetrics>, streams: Arc<StreamWorkers>) -> Self {
        Effects {
            metrics,
            streams,
            growth: broadcast::Sender::new(GROWTH_BUFFER),
            live_stop: CancellationToken::new(),
            watched: Arc::default(),
        }
    }

    pub(crate) fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }

    /// `receipts` were committed to `organization_id`'s log.
    pub(crate) fn appended(&self, organization_id: &str, receipts: &[Receipt]) {
        let Some(last) = receipts.last() else {
            return;
        };
        self.metrics.events_appended(organization_id, receipts);
        self.streams.wake();
        // No live reader is not an error.
        let _ = self.growth.send(LogGrowth {
            organization_id: organization_id.into(),
            size: last.sequence + 1,
        });
    }

    pub(crate) fn replayed(&self) {
        self.metrics.idempotent_replay();
    }

    pub(crate) fn stream_changed(&self) {
        self.streams.stream_changed();
    }

    /// Tells live readers that `organization_id`'s log has `size` events (another instance's
    /// appends, found by polling).
    pub(crate) fn grown_elsewhere(&self, organization_id: &str, size: u64) {
        let _ = self.growth.send(LogGrowth {
            organization_id: organization_id.into(),
            size,
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LogGrowth> {
        self.growth.subscribe()
    }

    pub(crate) fn live_stop(&self) -> CancellationToken {
        self.live_stop.clone()
    }
}

impl crate::Trailmark {
    /// Notices of logs growing on this instance, as they commit: for live readers, which then
    /// read the new events from storage (instances over one database also poll, since another
    /// instance's commits are not announced here).
    pub fn subscribe_log_growth(&self) -> broadcast::Receiver<LogGrowth> {
        self.inner.effects.subscribe()
    }

    /// Ends every live reader ([`crate::live`]), now and from now on: the server is shutting
    /// down.
    pub fn stop_live_readers(&self) {
        self.inner.effects.live_stop().cancel();
    }
}
