//! A C2SP tlog-witness (<https://c2sp.org/tlog-witness>): what a witness decides when a log
//! submits a checkpoint with `add-checkpoint`. Pure: the caller keeps the latest cosigned
//! checkpoint per log, persists the one this accepts before answering, and cosigns it
//! ([`crate::cosignature::Cosigner`]).
//!
//! The request body is `old <size>\n`, up to 63 base64 consistency-proof lines, an empty line,
//! then the signed checkpoint note. The witness cosigns only consistent growth: the old size
//! must be the size it last cosigned for that origin (0 if none), and the proof must lead from
//! that checkpoint's root to the new one.

use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::tree::{Hash, verify_consistency};
use crate::{LedgerError, decode_hash, encode_hash};

/// Most consistency-proof lines a request may carry.
const MAX_PROOF_LINES: usize = 63;

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// Parses a request body.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] naming what is wrong.
    pub fn parse(body: &str) -> Result<Self, LedgerError> {
        let malformed = |what: &str| LedgerError::Malformed(format!("add-checkpoint: {what}"));
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| malformed("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .filter(|size| *size == "0" || !size.starts_with('0'))
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| malformed("the first line must be 'old <size>'"))?;
        let proof = lines
            .map(decode_hash)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed("a proof line is not a base64 hash"))?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(malformed("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            note: note.to_owned(),
        })
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut body = format!("old {}\n", self.old);
        for hash in &self.proof {
            body.push_str(&encode_hash(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }
}

/// Why a witness does not cosign, each with the status the protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: a malformed request, or an old size above the checkpoint's.
    #[error("{0}")]
    BadRequest(String),
    /// 403: no signature by a key trusted for the origin verifies.
    #[error("the checkpoint carries no valid signature by a key trusted for '{0}'")]
    Forbidden(String),
    /// 404: the witness does not witness this origin.
    #[error("'{0}' is not a log this witness witnesses")]
    UnknownLog(String),
    /// 409: the old size is not the size last cosigned (which the answer carries), or the same
    /// size comes with another root.
    #[error("the latest cosigned checkpoint of this log has {latest} events")]
    Conflict { latest: u64 },
    /// 422: the consistency proof does not hold.
    #[error("the consistency proof from {old} to {size} events does not hold")]
    Inconsistent { old: u64, size: u64 },
}

impl Refusal {
    /// The HTTP status the protocol answers it with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent { .. } => 422,
        }
    }
}

/// The logs a witness witnesses: a verifier key trusts every origin `<key name>/…` (a Trailmark
/// instance signs every organization's log with one key, origin `<ledger name>/<organization>`).
#[derive(Debug, Clone, Default)]
pub struct TrustedLogs(Vec<NoteVerifier>);

impl TrustedLogs {
    pub fn new(keys: Vec<NoteVerifier>) -> Self {
        TrustedLogs(keys)
    }

    /// The checkpoint `request` brings, if the witness may cosign it given `latest`, the latest
    /// checkpoint it cosigned of that origin.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] the protocol prescribes.
    pub fn add_checkpoint(
        &self,
        request: &AddCheckpoint,
        latest: Option<&Checkpoint>,
    ) -> Result<Checkpoint, Refusal> {
        let origin = request.note.lines().next().unwrap_or_default().to_owned();
        let keys: Vec<&NoteVerifier> = self
            .0
            .iter()
            .filter(|key| {
                origin
                    .strip_prefix(key.name())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .collect();
        if keys.is_empty() {
            return Err(Refusal::UnknownLog(origin));
        }
        let checkpoint = keys
            .iter()
            .find_map(|key| key.verify(&request.note).ok())
            .ok_or_else(|| Refusal::Forbidden(origin.clone()))?;
        if request.old > checkpoint.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is above the checkpoint's {}",
                request.old, checkpoint.size
            )));
        }
        let latest_size = latest.map_or(0, |c| c.size);
        if request.old != latest_size {
            return Err(Refusal::Conflict {
                latest: latest_size,
            });
        }
        match latest {
            None => {
                if !request.proof.is_empty() {
                    return Err(Refusal::BadRequest(
                        "the proof must be empty from size 0".into(),
                    ));
                }
            }
            Some(latest) if latest.size == checkpoint.size => {
                if latest.root != checkpoint.root {
                    return Err(Refusal::Conflict {
                        latest: latest.size,
                    });
                }
            }
            Some(latest) if latest.size == 0 => {}
            Some(latest) => {
                if !verify_consistency(
                    latest.size,
                    checkpoint.size,
                    &latest.root,
                    &checkpoint.root,
                    &request.proof,
                ) {
                    return Err(Refusal::Inconsistent {
                        old: latest.size,
                        size: checkpoint.size,
                    });
                }
            }
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;
    use crate::tree::{Frontier, MemoryNodes, consistency_proof, leaf_hash};

    fn signer() -> NoteSigner {
        NoteSigner::new("trailmark.test", [7; 32]).expect("signer")
    }

    fn trusted() -> TrustedLogs {
        TrustedLogs::new(vec![
            NoteVerifier::parse(&signer().verifier_key()).expect("key"),
        ])
    }

    /// Nodes and checkpoints (by size) of a log of `leaves`.
    fn log(leaves: &[&[u8]]) -> (MemoryNodes, Vec<Checkpoint>) {
        let mut frontier = Frontier::empty();
        let mut nodes = MemoryNodes::default();
        let mut checkpoints = vec![];
        for leaf in leaves {
            nodes.extend(frontier.append(leaf_hash(leaf)));
            checkpoints.push(Checkpoint {
                origin: "trailmark.test/org_1".into(),
                size: frontier.size(),
                root: frontier.root(),
            });
        }
        (nodes, checkpoints)
    }

    fn request(old: u64, proof: Vec<Hash>, checkpoint: &Checkpoint) -> AddCheckpoint {
        AddCheckpoint {
            old,
            proof,
            note: signer().sign(checkpoint),
        }
    }

    #[test]
    fn requests_round_trip_through_their_text() {
        let (_, checkpoints) = log(&[b"a", b"b", b"c"]);
        let request = request(1, vec![[1; 32], [2; 32]], &checkpoints[2]);
        assert_eq!(AddCheckpoint::parse(&request.encode()), Ok(request));
        for bad in [
            "old 1\n",
            "old 01\n\nx",
            "new 1\n\nx",
            "old 1\nnot base64\n\nx",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_consistent_growth_is_cosigned() {
        let leaves: [&[u8]; 7] = [b"a", b"b", b"c", b"d", b"e", b"f", b"g"];
        let (nodes, checkpoints) = log(&leaves);
        let trusted = trusted();
        let first = &checkpoints[2];
        assert_eq!(
            trusted.add_checkpoint(&request(0, vec![], first), None),
            Ok(first.clone())
        );
        let later = &checkpoints[6];
        let proof = consistency_proof(3, 7, &nodes).expect("proof");
        assert_eq!(
            trusted.add_checkpoint(&request(3, proof.clone(), later), Some(first)),
            Ok(later.clone())
        );
        // A stale old size learns the latest; the same size again needs the same root.
        assert_eq!(
            trusted.add_checkpoint(&request(0, vec![], later), Some(first)),
            Err(Refusal::Conflict { latest: 3 })
        );
        assert_eq!(
            trusted.add_checkpoint(&request(7, vec![], later), Some(later)),
            Ok(later.clone())
        );
        // A rewritten history, signed with the log's own key, is not cosigned.
        let mut rewritten = leaves;
        rewritten[1] = b"B";
        let (forged_nodes, forged) = log(&rewritten);
        let forged_proof = consistency_proof(3, 7, &forged_nodes).expect("proof");
        assert_eq!(
            trusted.add_checkpoint(&request(3, forged_proof, &forged[6]), Some(first)),
            Err(Refusal::Inconsistent { old: 3, size: 7 })
        );
        assert_eq!(
            trusted.add_checkpoint(&request(7, vec![], &forged[6]), Some(later)),
            Err(Refusal::Conflict { latest: 7 })
        );
        // Unknown origins, foreign keys, an old size above the new one.
        let stranger = NoteSigner::new("trailmark.test", [8; 32]).expect("signer");
        let foreign = AddCheckpoint {
            old: 0,
            proof: vec![],
            note: stranger.sign(first),
        };
        assert_eq!(
            trusted
                .add_checkpoint(&foreign, None)
                .map_err(|r| r.status()),
            Err(403)
        );
        let elsewhere = Checkpoint {
            origin: "other/org_1".into(),
            ..first.clone()
        };
        assert_eq!(
            trusted
                .add_checkpoint(&request(0, vec![], &elsewhere), None)
                .map_err(|r| r.status()),
            Err(404)
        );
        assert_eq!(
            trusted
                .add_checkpoint(&request(9, vec![], later), None)
                .map_err(|r| r.status()),
            Err(400)
        );
    }
}
