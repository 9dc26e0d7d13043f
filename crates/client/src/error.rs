//! What can go wrong talking to Trailmark.

use serde_json::Value;

/// An error from a [`Client`](crate::Client) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL could not be parsed.
    #[error("invalid Trailmark base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    /// Trailmark answered with an error status. Client errors (4xx other than 429) are never
    /// retried; 429 and 5xx are, so this is the last answer after the retries ran out.
    #[error("Trailmark answered {status} after {attempts} attempt(s): {message}")]
    Api {
        status: u16,
        /// WorkOS's `message`, or the body's text when it was not JSON.
        message: String,
        /// The whole JSON body (`code`, `errors` with each `field` or `instancePath`).
        body: Value,
        attempts: u32,
    },
    /// Trailmark could not be reached (connection refused or reset, timeout) after the retries.
    #[error("Trailmark unreachable after {attempts} attempt(s): {source}")]
    Transport {
        #[source]
        source: reqwest::Error,
        attempts: u32,
    },
    /// Trailmark answered 2xx with a body this client could not read.
    #[error("unexpected answer from Trailmark: {0}")]
    Decode(String),
    /// A download could not be written where the caller asked.
    #[error("cannot write the download: {0}")]
    Write(#[source] std::io::Error),
    /// The OS random source failed (idempotency keys and jitter use it).
    #[error("OS random source failed: {0}")]
    Random(String),
}

impl Error {
    /// The HTTP status Trailmark answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Why an offline proof check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The checkpoint's signature does not verify under the key, or a text is malformed.
    #[error(transparent)]
    Ledger(#[from] trailmark_ledger::LedgerError),
    /// The event's content does not hash to its leaf hash: it was altered.
    #[error("event {event_id}: its content does not hash to its leaf hash")]
    LeafMismatch { event_id: String },
    /// The proof is for another event, or another tree size than the checkpoint's.
    #[error("the proof does not match: {0}")]
    Mismatch(String),
    /// The audit path does not lead from the leaf to the checkpoint's signed root.
    #[error("event {event_id} is not included in the signed tree of {tree_size} events")]
    NotIncluded { event_id: String, tree_size: u64 },
}
