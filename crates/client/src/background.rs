//! Opt-in background sending: events queue in bounded memory and go out in batches.
//!
//! Use it where a request must not wait for Trailmark. The price is stated plainly: an event in
//! the queue is not yet on disk, so a crash loses what was queued, and a full queue refuses
//! events. Refusals are counted ([`QueueStats::dropped`]) and logged with `tracing::warn!`,
//! never silent; so are events Trailmark rejected and batches that failed after every retry.
//! Call [`BackgroundQueue::flush`] to wait until everything queued so far was answered, and
//! [`BackgroundQueue::shutdown`] before exiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{BATCH_MAX_EVENTS, Client};
use crate::wire::{BatchOutcome, Event};

/// Sizes of a [`BackgroundQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundConfig {
    /// Events the queue holds before it refuses more.
    pub capacity: usize,
    /// Events per batch call (at most 1,000).
    pub batch_size: usize,
    /// How long a partial batch waits for more events before it is sent.
    pub linger: Duration,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig {
            capacity: 10_000,
            batch_size: 100,
            linger: Duration::from_millis(50),
        }
    }
}

/// Counters of a [`BackgroundQueue`], readable at any time.
#[derive(Debug, Default)]
pub struct QueueStats {
    sent: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

impl QueueStats {
    /// Events Trailmark acknowledged.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Events refused because the queue was full (or already shut down).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Events Trailmark refused as invalid (400/422).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    /// Events whose batch failed after every retry (Trailmark unreachable or erroring).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The event was not queued: the queue was full or shut down. It was counted as dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit event {action} dropped: the background queue is full")]
pub struct Dropped {
    pub action: String,
}

enum Item {
    Event {
        organization_id: String,
        event: Box<Event>,
    },
    Flush(oneshot::Sender<()>),
}

/// A bounded queue drained by one task that sends batches through a [`Client`].
#[derive(Debug)]
pub struct BackgroundQueue {
    sender: mpsc::Sender<Item>,
    stats: Arc<QueueStats>,
    worker: JoinHandle<()>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Event { event, .. } => write!(f, "Event({})", event.action),
            Item::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl BackgroundQueue {
    /// Starts the sending task on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(client: Client, config: BackgroundConfig) -> BackgroundQueue {
        let (sender, receiver) = mpsc::channel(config.capacity.max(1));
        let stats = Arc::new(QueueStats::default());
        let worker = tokio::spawn(drain(client, config, receiver, Arc::clone(&stats)));
        BackgroundQueue {
            sender,
            stats,
            worker,
        }
    }

    /// Queues an event without waiting.
    ///
    /// # Errors
    ///
    /// [`Dropped`] when the queue is full; the event is counted in [`QueueStats::dropped`] and
    /// a warning is logged.
    pub fn send(&self, organization_id: impl Into<String>, event: Event) -> Result<(), Dropped> {
        let item = Item::Event {
            organization_id: organization_id.into(),
            event: Box::new(event),
        };
        match self.sender.try_send(item) {
            Ok(()) => Ok(()),
            Err(
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item),
            ) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let action = match item {
                    Item::Event { event, .. } => event.action,
                    Item::Flush(_) => String::new(),
                };
                tracing::warn!(%action, dropped, "Trailmark background queue full: audit event dropped");
                Err(Dropped { action })
            }
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    /// Waits until every event queued before this call has been answered by Trailmark (stored,
    /// rejected, or failed after every retry).
    pub async fn flush(&self) {
        let (done, answered) = oneshot::channel();
        if self.sender.send(Item::Flush(done)).await.is_ok() {
            let _ = answered.await;
        }
    }

    /// Flushes, stops the task, and returns the final counters.
    pub async fn shutdown(self) -> Arc<QueueStats> {
        self.flush().await;
        drop(self.sender);
        if let Err(error) = self.worker.await {
            tracing::warn!(%error, "Trailmark background task ended abnormally");
        }
        self.stats
    }
}

async fn drain(
    client: Client,
    config: BackgroundConfig,
    mut receiver: mpsc::Receiver<Item>,
    stats: Arc<QueueStats>,
) {
    let batch_size = config.batch_size.clamp(1, BATCH_MAX_EVENTS);
    let mut batch: Vec<(String, Event)> = Vec::with_capacity(batch_size);
    while let Some(first) = receiver.recv().await {
        let mut flushes = Vec::new();
        let mut next = Some(first);
        // Gather up to a batch, waiting at most `linger` for stragglers; a flush ends it.
        loop {
            match next.take() {
                Some(Item::Event {
                    organization_id,
                    event,
                }) => batch.push((organization_id, *event)),
                Some(Item::Flush(done)) => {
                    flushes.push(done);
                    break;
                }
                None => {}
            }
            if batch.len() >= batch_size {
                break;
            }
            match tokio::time::timeout(config.linger, receiver.recv()).await {
                Ok(Some(item)) => next = Some(item),
                Ok(None) | Err(_) => break,
            }
        }
        send_batch(&client, std::mem::take(&mut batch), &stats).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Sends a batch, one call per organization, counting every outcome.
async fn send_batch(client: &Client, batch: Vec<(String, Event)>, stats: &QueueStats) {
    let mut by_organization: Vec<(String, Vec<Event>)> = Vec::new();
    for (organization_id, event) in batch {
        match by_organization
            .iter_mut()
            .find(|(id, _)| *id == organization_id)
        {
            Some((_, events)) => events.push(event),
            None => by_organization.push((organization_id, vec![event])),
        }
    }
    for (organization_id, events) in by_organization {
        match client.create_events(&organization_id, &events).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        BatchOutcome::Stored(_) => {
                            stats.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        BatchOutcome::Rejected(rejection) => {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            let action = events
                                .get(rejection.index)
                                .map_or("", |event| event.action.as_str());
                            tracing::warn!(
                                %organization_id, %action, status = rejection.status,
                                message = %rejection.message, errors = ?rejection.errors,
                                "Trailmark rejected a queued audit event"
                            );
                        }
                    }
                }
            }
            Err(error) => {
                let count = events.len() as u64;
                stats.failed.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(%organization_id, count, %error, "audit events not delivered to Trailmark");
            }
        }
    }
}

impl Client {
    /// A [`BackgroundQueue`] sending through this client (see the module docs for the trade-off).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn background(&self, config: BackgroundConfig) -> BackgroundQueue {
        BackgroundQueue::start(self.clone(), config)
    }
}
