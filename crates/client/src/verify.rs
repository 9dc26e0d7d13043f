//! Offline proof checks: is this event, as read, in the log a signed checkpoint commits to?
//!
//! Everything here runs without Trailmark: an auditor holding the instance's verifier key
//! (`GET /audit_logs/ledger/public_key`, or `trailmark ledger public-key`), an event, an
//! inclusion proof and a signed checkpoint can check all three. The math is
//! `trailmark-ledger`'s, the same code the server and `trailmark verify` run.

use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::verify_inclusion;
use trailmark_ledger::{decode_hash, encode_hash};

use crate::error::VerifyError;
use crate::wire::{EventObject, InclusionProof};

/// Checks, offline, that `event` is unaltered and included in the log signed in
/// `signed_checkpoint` (a C2SP signed note) by the key `verifier_key`, along `proof`.
///
/// Four checks, in order: the checkpoint's Ed25519 signature; the event's content hashes to its
/// leaf hash (RFC 8785 canonical JSON, RFC 6962 leaf prefix); the proof is for this event and for
/// the checkpoint's tree size; the audit path leads from the leaf to the signed root
/// (RFC 9162 §2.1.3.2). Returns the verified checkpoint.
///
/// # Errors
///
/// [`VerifyError`] naming the first check that failed.
pub fn verify_event_inclusion(
    verifier_key: &str,
    signed_checkpoint: &str,
    event: &EventObject,
    proof: &InclusionProof,
) -> Result<Checkpoint, VerifyError> {
    let checkpoint = NoteVerifier::parse(verifier_key)?.verify(signed_checkpoint)?;
    let leaf = event_leaf_hash(event.raw());
    if encode_hash(&leaf) != event.leaf_hash {
        return Err(VerifyError::LeafMismatch {
            event_id: event.id.clone(),
        });
    }
    if proof.event_id != event.id || proof.sequence != event.sequence {
        return Err(VerifyError::Mismatch(format!(
            "the proof is for event {} (sequence {}), not {} (sequence {})",
            proof.event_id, proof.sequence, event.id, event.sequence
        )));
    }
    if proof.tree_size != checkpoint.size {
        return Err(VerifyError::Mismatch(format!(
            "the proof is for a tree of {} events, the checkpoint signs {}",
            proof.tree_size, checkpoint.size
        )));
    }
    let path = proof
        .proof
        .iter()
        .map(|hash| decode_hash(hash))
        .collect::<Result<Vec<_>, _>>()?;
    if !verify_inclusion(
        event.sequence,
        checkpoint.size,
        &leaf,
        &path,
        &checkpoint.root,
    ) {
        return Err(VerifyError::NotIncluded {
            event_id: event.id.clone(),
            tree_size: checkpoint.size,
        });
    }
    Ok(checkpoint)
}
