//! A typed async client for Trailmark — self-hosted, WorkOS-compatible
//! audit logs — and, behind the `axum` feature, a middleware that gives every handler the WorkOS
//! tutorial's one-line `log(action, targets)`.
//!
//! - [`Client`]: one method per endpoint — events (one, or batches of up to 1,000), schemas,
//!   search and sequence-cursor polling ([`Poller`]), exports, log streams, checkpoints and
//!   proofs. Calls are retried on 429, 5xx and connection errors with full-jitter backoff that
//!   honours `Retry-After` ([`RetryPolicy`]); each logical event call has one `Idempotency-Key`
//!   that its retries reuse, so a retry never stores an event twice.
//! - By default a call returns once Trailmark acknowledged it, which means the event is on disk.
//!   [`BackgroundQueue`] is the opt-in alternative: a bounded in-memory queue sent in batches,
//!   flushed on [`BackgroundQueue::shutdown`], counting what it had to drop.
//! - [`verify::verify_event_inclusion`]: checks offline that an event is unaltered and in the log
//!   a signed checkpoint commits to, with `trailmark-ledger`'s code.
//! - `trailmark_client::axum` (cargo feature `axum`): `AuditLayer` and the `Audit` extractor,
//!   giving handlers `audit.log("post.create").target("post", id).send().await`.
//!
//! What it does not do: it does not talk to WorkOS itself, manage API keys, or read the
//! environment. Its wire types ([`wire`]) are its own serde types rather than
//! `trailmark-domain`'s, which carry no serde derives by design and validate rather than mirror
//! JSON; responses are read leniently so a newer Trailmark adding keys breaks nothing.
//!
//! # Sending an event and reading it back
//!
//! ```no_run
//! use trailmark_client::{Actor, Client, Event, SearchQuery, Target};
//!
//! # async fn run() -> Result<(), trailmark_client::Error> {
//! let trailmark = Client::new("http://127.0.0.1:8080", "sk_tour")?;
//! let event = Event::new("post.create", Actor::new("user", "user_1").named("Jon Smith"))
//!     .target(Target::new("post", "post_42"))
//!     .location("203.0.113.7")
//!     .user_agent("Firefox");
//! let receipt = trailmark.create_event("org_01…", &event).await?;
//! println!("stored at sequence {}", receipt.sequence);
//!
//! // Every event exactly once, in log order, resumable from the last sequence seen.
//! let mut poller = trailmark.poll("org_01…", None);
//! loop {
//!     let batch = poller.next_batch().await?;
//!     if batch.is_empty() { break; }
//!     for event in batch { println!("{} {}", event.sequence, event.action); }
//! }
//! # Ok(()) }
//! ```
//!
//! # Background mode
//!
//! ```no_run
//! use trailmark_client::{Actor, BackgroundConfig, Client, Event};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let trailmark = Client::new("http://127.0.0.1:8080", "sk_tour")?;
//! let queue = trailmark.background(BackgroundConfig::default());
//! // Never waits; a full queue refuses the event, counts it and logs a warning.
//! queue.send("org_01…", Event::new("user.login", Actor::new("user", "user_1")).location("::1"))?;
//! let stats = queue.shutdown().await; // sends what is queued, then stops
//! assert_eq!(stats.dropped(), 0);
//! # Ok(()) }
//! ```
//!
//! # Checking a proof offline
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let trailmark = trailmark_client::Client::new("http://127.0.0.1:8080", "sk_tour")?;
//! // The verifier key is fetched once and kept (or read from `trailmark ledger public-key`).
//! let key = trailmark.ledger_public_key().await?.verifier_key;
//! let event = trailmark.get_event("event_01…").await?;
//! let proof = trailmark.inclusion_proof(&event.organization_id, &event.id, None).await?;
//! let note = proof.checkpoint.clone().expect("a proof without tree_size names its checkpoint");
//! let checkpoint = trailmark_client::verify::verify_event_inclusion(&key, &note, &event, &proof)?;
//! println!("event {} is in the signed log of {} events", event.id, checkpoint.size);
//! # Ok(()) }
//! ```
//!
//! # Retries
//!
//! The default policy makes 5 attempts, waiting up to 100 ms, 200 ms, 400 ms… (capped at 10 s)
//! or what `Retry-After` asks; change it per client:
//!
//! ```
//! use trailmark_client::RetryPolicy;
//! let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
//! assert_eq!(RetryPolicy::none().max_attempts, 1);
//! assert!(policy.max_delay >= policy.base_delay);
//! ```

mod background;
mod client;
mod error;
mod retry;
pub mod verify;
pub mod wire;

#[cfg(feature = "axum")]
pub mod axum;

pub use background::{BackgroundConfig, BackgroundQueue, Dropped, QueueStats};
pub use client::{
    BATCH_MAX_EVENTS, Client, ClientBuilder, EventPage, Order, Organization, Poller, SearchQuery,
};
pub use error::{Error, VerifyError};
pub use retry::RetryPolicy;
pub use wire::{Actor, BatchOutcome, Context, Event, EventObject, Receipt, Target};
