//! Trailmark's domain model: what an audit event, an organization, an action schema and an API
//! key *are*, and the rules that make one valid.
//!
//! This crate does no I/O and knows nothing about HTTP or SQL. Input arrives as JSON (the HTTP
//! edge has already read the bytes: a [`serde_json::Value`], or for ingested events a
//! [`json::Json`] borrowing from the request's text) and leaves as typed
//! values or as [`Problems`], a list of everything that is wrong, each naming its field. The
//! server maps problems to WorkOS-shaped error bodies; the store persists the typed values.
//!
//! Layout:
//! - [`id`]: prefixed, time-ordered identifiers (`org_…`, `event_…`).
//! - [`timestamp`]: ISO-8601 in (every form WorkOS clients send), millisecond `Z` out.
//! - [`limits`]: every size limit, with its source.
//! - [`problem`]: the two error shapes (request-shape problems and event-content problems).
//! - [`metadata`]: the metadata maps of events, actors and targets.
//! - [`json`]: [`json::Json`], JSON that borrows its texts from a request body (ingest reads
//!   events through it), and [`json::JsonText`], the body read as one.
//! - [`event`]: `NewEvent::parse` and the event's normalized JSON.
//! - [`schema`]: versioned action schemas and validation of an event against one.
//! - [`erasable`]: the values of an event that hold a person's data, and erasure requests.
//! - [`record`]: the event object, the one shape of a stored event wherever it is read.
//! - [`query`]: the filters readers and exports use.
//! - [`export`]: CSV, NDJSON and OCSF rows.
//! - [`ocsf`]: an event object as an OCSF 1.3.0 API Activity event.
//! - [`organization`], [`retention`], [`api_key`]: the rest of the data the API manages.
//!
//! ```
//! use trailmark_domain::event::NewEvent;
//! let body = serde_json::json!({
//!     "action": "user.signed_in",
//!     "occurred_at": "2026-08-01T10:00:00Z",
//!     "actor": {"id": "user_1", "type": "user"},
//!     "targets": [{"id": "team_1", "type": "team"}],
//!     "context": {"location": "203.0.113.7"}
//! });
//! let event = NewEvent::parse(&body).expect("a valid event");
//! assert_eq!(event.action(), "user.signed_in");
//! ```

pub mod api_key;
pub mod canonical;
pub mod erasable;
pub mod event;
pub mod export;
pub mod id;
pub mod idempotency;
pub mod json;
pub mod limits;
pub mod metadata;
pub mod ocsf;
pub mod organization;
pub mod portal;
pub mod problem;
pub mod query;
pub mod record;
pub mod retention;
pub mod schema;
pub mod timestamp;

pub use problem::{FieldProblem, PathProblem, Problems};
pub use timestamp::Timestamp;
