//! Log streams: every event of an organization, delivered to the customer's SIEM.
//!
//! A stream is a durable cursor into its organization's log (the last sequence its destination
//! acknowledged). A [`worker::StreamWorkers`] supervisor runs one task per stream, which reads the
//! events after the cursor, sends them, and advances the cursor only once the destination said
//! yes. So delivery is at-least-once and in log order, a restart loses nothing, a replay is a
//! cursor move, and a dead destination only ever delays its own stream.
//!
//! Layout:
//! - [`destination`]: the one trait every destination implements ([`destination::Destination`]:
//!   its fields, typed configuration and batching defaults; [`destination::Sink`]: the
//!   configured destination that encodes, sends and classifies), and the list of them. The
//!   worker, the streams API and the portal know destinations only through it.
//! - One module per destination: [`http`], [`datadog`], [`splunk`], [`s3`], [`gcs`],
//!   [`syslog`], [`sentinel`], each with
//!   `config.rs` (typed settings, parsed and checked), `encode.rs` (events → request body, pure)
//!   and its request and answer handling in `mod.rs`.
//! - [`settings`]: a stream's stored settings (public fields and credentials, [`seal`]ed at rest
//!   and masked when shown), merged generically from the API's `config`.
//! - [`batch`]: when a stream sends; [`filter`]: which events it sends; [`format`]: what it
//!   sends as each event (the event object, or an OCSF event holding it).
//! - [`net`]: the HTTP client, the guard against private destinations, and the usual reading of
//!   an HTTP answer into delivered / retry / invalid.
//! - [`egress`]: deliveries through an HTTP CONNECT proxy (`--egress-proxy`, or a stream's
//!   own), the final destination still checked by the guard and connected to by address.
//! - [`oauth`]: access tokens from an OAuth 2.0 token endpoint (`gcs`, `sentinel`), asked for,
//!   read and cached per credentials in one way.
//! - [`backoff`]: how long a failing stream waits (it grows with the time it has been failing).
//! - [`worker`]: the delivery loop, which reports each request and each stream's health to an
//!   [`observe::DeliveryObserver`].

pub mod backoff;
pub mod batch;
pub mod datadog;
pub mod destination;
pub mod egress;
pub mod filter;
pub mod format;
pub mod gcs;
pub mod http;
pub mod net;
pub mod oauth;
pub mod observe;
pub mod s3;
pub mod seal;
pub mod sentinel;
pub mod settings;
pub mod splunk;
pub mod syslog;
pub mod worker;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination acknowledged the first `n` events of the batch.
    Delivered(usize),
    /// A failure that may pass (network, 5xx, 429): try again later, no sooner than `after` if
    /// the destination said so.
    Retry {
        reason: String,
        after: Option<std::time::Duration>,
    },
    /// The destination refused the credentials or the configuration (401, 403, 404, other 4xx):
    /// the stream is `invalid` until fixed, and retried slowly meanwhile.
    Invalid(String),
}
