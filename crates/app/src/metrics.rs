//! The application's own counters, kept current as use cases run (never computed by queries at
//! scrape time). The HTTP adapter renders them at `GET /metrics` beside its own series.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct AppMetrics {
    events_ingested: AtomicU64,
    idempotent_replays: AtomicU64,
}

impl AppMetrics {
    pub(crate) fn events_appended(&self, count: u64) {
        self.events_ingested.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn idempotent_replay(&self) {
        self.idempotent_replays.fetch_add(1, Ordering::Relaxed);
    }

    /// Events appended to any log (from apps, the portal, legal holds) since the process started.
    pub fn events_ingested(&self) -> u64 {
        self.events_ingested.load(Ordering::Relaxed)
    }

    /// Repeated idempotent requests answered from an earlier commit.
    pub fn idempotent_replays(&self) -> u64 {
        self.idempotent_replays.load(Ordering::Relaxed)
    }
}
