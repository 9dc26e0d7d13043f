//! What the delivery engine tells whoever watches it, for metrics: each request to a
//! destination, and each stream's health as its task last saw it, so the health is known in
//! memory without reading the database when it is asked for.

use std::time::Duration;

use trailmark_domain::Timestamp;
use trailmark_store::StreamState;

/// Receives what the stream tasks measure. Every method has a default that ignores it.
pub trait DeliveryObserver: Send + Sync {
    /// One request to a destination ended.
    fn attempt(&self, _attempt: &Attempt<'_>) {}
    /// What a stream's task last learned of its stream. Only the instance delivering a stream
    /// (holding its lease) reports it.
    fn health(&self, _health: &Health<'_>) {}
    /// This instance no longer delivers the stream (deleted, or another instance holds it).
    fn released(&self, _stream_id: &str) {}
}

/// One request to a destination.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub stream_id: &'a str,
    /// The stream's type (`http`, `datadog`, …).
    pub kind: &'a str,
    /// Events the request carried.
    pub events: usize,
    /// Events the destination acknowledged.
    pub delivered: usize,
    pub outcome: AttemptOutcome,
    pub took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// A failure that may pass; retried with backoff.
    Retry,
    /// The destination refused the stream's credentials or configuration.
    Invalid,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Invalid => "invalid",
        }
    }
}

/// A stream's health.
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    pub stream_id: &'a str,
    pub organization_id: &'a str,
    pub kind: &'a str,
    pub state: StreamState,
    /// Events the destination acknowledged: the cursor plus one.
    pub delivered: u64,
    /// Events in the log, as far as the task knows, the destination has not acknowledged.
    pub lag_events: u64,
    /// When the oldest of them was received (`None` when caught up), so its age can be told
    /// at any later moment.
    pub oldest_pending: Option<Timestamp>,
}

/// The observer of streams nobody watches.
pub(crate) struct Unobserved;

impl DeliveryObserver for Unobserved {}
