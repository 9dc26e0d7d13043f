//! The math of Trailmark's tamper-evident ledger. Each organization's events form an
//! append-only Merkle log: leaf *n* is the event with sequence *n*.
//!
//! - [`tree`]: RFC 6962 / RFC 9162 hashing, the frontier that appends in O(1) amortized, roots
//!   and inclusion/consistency proofs over stored subtree hashes, and the verifiers. It knows
//!   nothing about events.
//! - [`leaf`]: an event's leaf bytes (RFC 8785 canonical JSON of its event object) and hash.
//! - [`commit`]: leaf version 2, where values that can name a person enter the leaf as salted
//!   hashes, so they can be erased while every proof still verifies.
//! - [`checkpoint`]: C2SP checkpoints signed as C2SP signed notes with Ed25519.
//! - [`tlog`]: C2SP tlog-tiles paths and entry bundles, to serve a log as static tiles.
//! - [`cosignature`]: C2SP tlog-cosignature v1, witnesses' cosignatures on checkpoints.
//! - [`witness`]: a C2SP tlog-witness's decision on `add-checkpoint` (cosign only consistent
//!   growth).
//! - [`consistency`]: whether a later checkpoint extends an earlier one (a held checkpoint
//!   catches a rewritten history).
//!
//! What this crate is not: storage (the store persists [`tree::Node`]s and reads them back
//! through [`tree::NodeReader`]), HTTP, or a scheduler. It does no I/O.
//!
//! ```
//! use trailmark_ledger::tree::{Frontier, leaf_hash, verify_inclusion, MemoryNodes, inclusion_proof};
//! let mut frontier = Frontier::empty();
//! let mut nodes = MemoryNodes::default();
//! for n in 0..5u8 {
//!     nodes.extend(frontier.append(leaf_hash(&[n])));
//! }
//! let root = frontier.root();
//! let proof = inclusion_proof(2, 5, &nodes).expect("stored nodes");
//! assert!(verify_inclusion(2, 5, &leaf_hash(&[2]), &proof, &root));
//! ```

pub mod checkpoint;
pub mod commit;
pub mod consistency;
pub mod cosignature;
mod exact_base64;
pub mod leaf;
mod sha256x2;
pub mod tlog;
pub mod tree;
pub mod witness;

/// A hash as it appears in JSON and checkpoints: standard base64 with padding.
pub fn encode_hash(hash: &tree::Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// The inverse of [`encode_hash`].
///
/// # Errors
///
/// [`LedgerError::Malformed`] if the text is not the base64 of 32 bytes.
pub fn decode_hash(text: &str) -> Result<tree::Hash, LedgerError> {
    // Decoded by lookup (every event's `leaf_hash` and the lower hashes of its proof).
    exact_base64::decode(text.as_bytes())
        .ok_or_else(|| LedgerError::Malformed(format!("'{text}' is not a base64 SHA-256 hash")))
}

/// Errors from reading stored nodes or from malformed ledger data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A node the tree needs is not stored (the store is incomplete or was tampered with).
    #[error("missing tree node at level {level}, index {index}")]
    MissingNode { level: u32, index: u64 },
    /// The storage behind a reader failed.
    #[error("cannot read tree nodes: {0}")]
    Read(String),
    /// A request outside the tree (a leaf or size beyond it).
    #[error("{0}")]
    OutOfRange(String),
    /// Malformed ledger data (a frontier, a checkpoint or a key).
    #[error("{0}")]
    Malformed(String),
}
