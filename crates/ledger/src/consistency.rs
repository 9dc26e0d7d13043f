//! Whether a later checkpoint extends an earlier one: the check a customer holding an earlier
//! signed checkpoint makes (`trailmark verify --checkpoint`), and a witness before cosigning.
//!
//! A log only grows. A checkpoint of `n` leaves that a newer checkpoint of `m ≥ n` leaves
//! extends is a prefix of it: an RFC 9162 §2.1.4 consistency proof (`tree::consistency_proof`,
//! checked by `tree::verify_consistency`) leads from the one root to the other. An operator who
//! rewrote any of the first `n` events, even re-signing everything, cannot produce such a proof
//! for the rewritten tree, so anyone holding the earlier checkpoint catches the rewrite.

use crate::checkpoint::Checkpoint;
use crate::tree::{Hash, empty_root, verify_consistency};

/// How a newer checkpoint fails to extend an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistent {
    #[error("it is a checkpoint of '{held}', not of '{current}'")]
    OtherLog { held: String, current: String },
    #[error("it covers {held} events but the log now has only {current}: the log was cut back")]
    Shrunk { held: u64, current: u64 },
    #[error("the log of {size} events now has another root: its history was rewritten")]
    RootChanged { size: u64 },
    #[error(
        "the consistency proof from {held} to {current} events does not hold: the first {held} events were rewritten"
    )]
    ProofFails { held: u64, current: u64 },
}

/// Checks that `current` extends `held` (same log, at least as large, and `proof` — RFC 9162
/// `PROOF(held.size, D[current.size])` — leads from the one root to the other). Equal sizes need
/// equal roots and no proof; the empty tree is a prefix of every tree.
///
/// # Errors
///
/// [`Inconsistent`] naming how `current` contradicts `held`.
pub fn check_extends(
    held: &Checkpoint,
    current: &Checkpoint,
    proof: &[Hash],
) -> Result<(), Inconsistent> {
    if held.origin != current.origin {
        return Err(Inconsistent::OtherLog {
            held: held.origin.clone(),
            current: current.origin.clone(),
        });
    }
    if held.size > current.size {
        return Err(Inconsistent::Shrunk {
            held: held.size,
            current: current.size,
        });
    }
    if held.size == current.size || held.size == 0 {
        let expected = if held.size == 0 {
            empty_root()
        } else {
            current.root
        };
        return if held.root == expected {
            Ok(())
        } else {
            Err(Inconsistent::RootChanged { size: held.size })
        };
    }
    if verify_consistency(held.size, current.size, &held.root, &current.root, proof) {
        Ok(())
    } else {
        Err(Inconsistent::ProofFails {
            held: held.size,
            current: current.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Frontier, MemoryNodes, consistency_proof, leaf_hash};

    /// A log of `leaves`, as its nodes and the checkpoint of each size.
    fn log(leaves: &[&[u8]]) -> (MemoryNodes, Vec<Checkpoint>) {
        let mut frontier = Frontier::empty();
        let mut nodes = MemoryNodes::default();
        let mut checkpoints = vec![checkpoint(0, frontier.root())];
        for leaf in leaves {
            nodes.extend(frontier.append(leaf_hash(leaf)));
            checkpoints.push(checkpoint(frontier.size(), frontier.root()));
        }
        (nodes, checkpoints)
    }

    fn checkpoint(size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: "trailmark/org_1".into(),
            size,
            root,
        }
    }

    const LEAVES: [&[u8]; 11] = [
        b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j", b"k",
    ];

    #[test]
    fn every_later_checkpoint_of_an_honest_log_extends_every_earlier_one() {
        let (nodes, checkpoints) = log(&LEAVES);
        for held in &checkpoints {
            for current in checkpoints.iter().filter(|c| c.size >= held.size) {
                let proof = if held.size == 0 || held.size == current.size {
                    Vec::new()
                } else {
                    consistency_proof(held.size, current.size, &nodes).expect("proof")
                };
                assert_eq!(
                    check_extends(held, current, &proof),
                    Ok(()),
                    "{} → {}",
                    held.size,
                    current.size
                );
            }
        }
    }

    #[test]
    fn a_rewritten_history_contradicts_every_checkpoint_that_covered_the_rewrite() {
        let (_, honest) = log(&LEAVES);
        let mut rewritten = LEAVES;
        rewritten[3] = b"D";
        let (nodes, forged) = log(&rewritten);
        let current = &forged[11];
        for held in &honest[4..11] {
            // The operator's best proof is its own tree's; it cannot lead from the honest root.
            let proof = consistency_proof(held.size, current.size, &nodes).expect("proof");
            assert_eq!(
                check_extends(held, current, &proof),
                Err(Inconsistent::ProofFails {
                    held: held.size,
                    current: 11
                }),
                "{}",
                held.size
            );
        }
        assert_eq!(
            check_extends(&honest[11], current, &[]),
            Err(Inconsistent::RootChanged { size: 11 })
        );
        // Checkpoints from before the rewritten event are still extended.
        let proof = consistency_proof(3, 11, &nodes).expect("proof");
        assert_eq!(check_extends(&honest[3], current, &proof), Ok(()));
    }

    #[test]
    fn a_smaller_or_foreign_log_does_not_extend_a_checkpoint() {
        let (_, checkpoints) = log(&LEAVES);
        assert_eq!(
            check_extends(&checkpoints[7], &checkpoints[5], &[]),
            Err(Inconsistent::Shrunk {
                held: 7,
                current: 5
            })
        );
        let other = Checkpoint {
            origin: "trailmark/org_2".into(),
            ..checkpoints[7].clone()
        };
        assert!(matches!(
            check_extends(&checkpoints[5], &other, &[]),
            Err(Inconsistent::OtherLog { .. })
        ));
        let not_empty = checkpoint(0, checkpoints[1].root);
        assert_eq!(
            check_extends(&not_empty, &checkpoints[5], &[]),
            Err(Inconsistent::RootChanged { size: 0 })
        );
    }
}
