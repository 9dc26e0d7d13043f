//! `trailmark verify`: check, offline, that an NDJSON export or a whole database is complete and
//! unaltered, against signed checkpoints.
//!
//! - **An export**: the manifest's checkpoint must carry a valid signature by `--public-key`;
//!   every event must re-hash to its `leaf_hash`, belong to the manifest's organization and come
//!   in increasing sequence order; a filtered export's events must each prove inclusion in the
//!   checkpoint's tree; a complete export must hold sequences 0 … size-1 exactly and rebuild the
//!   checkpoint's root.
//! - **A database**: every organization's events must re-hash to their stored leaf hashes,
//!   have gap-free sequences, rebuild the root of the stored tree, and match the latest signed
//!   checkpoint.
//!
//! It prints what it checked and exits non-zero naming the first event that fails.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use trailmark_export::MANIFEST_OBJECT;
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::{Frontier, verify_inclusion};
use trailmark_ledger::{decode_hash, encode_hash};

use crate::args::{LedgerKeyArgs, StorageArgs, VerifyArgs};

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let verifier = verifier(&args)?;
    match (&args.export, &args.database) {
        (Some(export), None) => verify_export(export, &verifier),
        (None, Some(database)) => verify_database(&args, database, &verifier).await,
        (Some(_), Some(_)) => bail!("give either an export file or --database, not both"),
        (None, None) => bail!("give an NDJSON export to verify, or --database"),
    }
}

/// The verifier key from `--public-key` (the key, or a file holding it), or else derived from
/// the local signing key file.
fn verifier(args: &VerifyArgs) -> anyhow::Result<NoteVerifier> {
    let text = match &args.public_key {
        Some(value) if Path::new(value).is_file() => {
            std::fs::read_to_string(value).with_context(|| format!("cannot read {value}"))?
        }
        Some(value) => value.clone(),
        None if args.export.is_some() => bail!("--public-key is required to verify an export"),
        None => crate::ledger::signer(&LedgerKeyArgs {
            signing_key: None,
            ledger_name: args.ledger_name.clone(),
            data_dir: args.data_dir.clone(),
        })?
        .verifier_key(),
    };
    NoteVerifier::parse(text.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn verify_export(path: &Path, verifier: &NoteVerifier) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<BufReader<std::fs::File>> {
        Ok(BufReader::new(std::fs::File::open(path).with_context(
            || format!("cannot open {}", path.display()),
        )?))
    };
    // First pass: the manifest is the last line, and the proofs are checked against it.
    let mut last = None;
    for line in open()?.lines() {
        let line = line?;
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    let manifest: Value = serde_json::from_str(&last.context("the export is empty")?)
        .context("the last line is not JSON")?;
    if manifest["object"] != MANIFEST_OBJECT {
        bail!(
            "the export has no manifest (its last line is not an {MANIFEST_OBJECT}); only NDJSON exports made against a checkpoint can be verified"
        );
    }
    let note = manifest["checkpoint"]
        .as_str()
        .context("the manifest has no checkpoint")?;
    let checkpoint = verifier
        .verify(note)
        .map_err(|e| anyhow::anyhow!("the checkpoint's signature does not verify: {e}"))?;
    let organization = manifest["organization_id"]
        .as_str()
        .context("the manifest has no organization_id")?;
    if !checkpoint.origin.ends_with(&format!("/{organization}")) {
        bail!(
            "the checkpoint is for '{}', not for {organization}",
            checkpoint.origin
        );
    }
    let complete = manifest["complete"].as_bool().unwrap_or(false);
    println!(
        "checkpoint: {} events, root {}, signed by {} ✓",
        checkpoint.size,
        encode_hash(&checkpoint.root),
        verifier.name()
    );

    let mut progress = Progress::new();
    let mut frontier = Frontier::empty();
    let mut previous: Option<u64> = None;
    let mut count = 0u64;
    let mut purged = 0u64;
    for (number, line) in open()?.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not JSON", number + 1))?;
        if event["object"] == MANIFEST_OBJECT {
            break;
        }
        let id = event["id"].as_str().unwrap_or("(no id)").to_owned();
        let sequence = event["sequence"]
            .as_u64()
            .with_context(|| format!("event {id} (line {}) has no sequence", number + 1))?;
        let fail = |what: String| {
            anyhow::anyhow!(
                "event {id} (sequence {sequence}, line {}): {what}",
                number + 1
            )
        };
        if event["organization_id"] != organization {
            return Err(fail(format!(
                "belongs to {}, not {organization}",
                event["organization_id"]
            )));
        }
        if previous.is_some_and(|p| sequence <= p) {
            return Err(fail("is out of order or repeated".into()));
        }
        if sequence >= checkpoint.size {
            return Err(fail(format!(
                "is beyond the checkpoint's {} events",
                checkpoint.size
            )));
        }
        let claimed = event["leaf_hash"]
            .as_str()
            .map(decode_hash)
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let leaf = if event["purged"] == true {
            // Retention removed the contents: the leaf hash is all that is left, and the proof
            // (or the rebuilt root) still checks it.
            purged += 1;
            claimed.ok_or_else(|| fail("a purged stub without a leaf_hash".into()))?
        } else {
            let leaf = event_leaf_hash(&event);
            if claimed != Some(leaf) {
                return Err(fail(
                    "its content does not hash to its leaf_hash: it was altered".into(),
                ));
            }
            leaf
        };
        if complete {
            if sequence != frontier.size() {
                return Err(fail(format!(
                    "sequence {} is missing before it",
                    frontier.size()
                )));
            }
            frontier.append(leaf);
        } else {
            let proof = event["inclusion_proof"]
                .as_array()
                .ok_or_else(|| fail("has no inclusion_proof".into()))?
                .iter()
                .map(|h| {
                    h.as_str().map(decode_hash).unwrap_or_else(|| {
                        Err(trailmark_ledger::LedgerError::Malformed(
                            "not a string".into(),
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            if !verify_inclusion(sequence, checkpoint.size, &leaf, &proof, &checkpoint.root) {
                return Err(fail(
                    "its inclusion proof does not lead to the checkpoint's root".into(),
                ));
            }
        }
        previous = Some(sequence);
        count += 1;
        progress.update(count);
    }
    progress.finish();
    if manifest["event_count"].as_u64() != Some(count) {
        bail!(
            "the manifest announces {} events but the file holds {count}: events were removed or added",
            manifest["event_count"]
        );
    }
    if complete {
        if frontier.size() != checkpoint.size {
            bail!(
                "the export ends at sequence {} but the checkpoint has {} events: events are missing",
                frontier.size(),
                checkpoint.size
            );
        }
        if frontier.root() != checkpoint.root {
            bail!("the events rebuild a different root than the checkpoint's");
        }
        println!(
            "{count} events re-hashed; sequences 0…{} all present; the rebuilt root matches the checkpoint ✓",
            checkpoint.size.saturating_sub(1)
        );
    } else {
        println!("{count} events re-hashed; each proved included in the checkpoint's tree ✓");
    }
    if purged > 0 {
        println!(
            "{purged} of them are stubs whose contents retention removed; their leaves still check"
        );
    }
    if complete {
        println!("OK: {} is complete and unaltered.", path.display());
    } else {
        println!(
            "OK: every event in {} is unaltered and in the signed log.",
            path.display()
        );
    }
    Ok(())
}

async fn verify_database(
    args: &VerifyArgs,
    database: &str,
    verifier: &NoteVerifier,
) -> anyhow::Result<()> {
    let storage = StorageArgs {
        data_dir: args.data_dir.clone(),
        database: Some(database.to_owned()).filter(|d| !d.is_empty()),
    };
    let store = crate::serve::open_store(&storage).await?;
    let logs = store.log_sizes().await?;
    let mut failures = 0;
    for (organization, size) in &logs {
        match verify_log(store.as_ref(), organization, *size, verifier).await {
            Ok(summary) => println!("{organization}: {summary} ✓"),
            Err(error) => {
                failures += 1;
                println!("{organization}: FAILED: {error:#}");
            }
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} organization logs failed verification",
            logs.len()
        );
    }
    println!("OK: {} organization logs verified.", logs.len());
    Ok(())
}

async fn verify_log(
    store: &dyn trailmark_store::Store,
    organization: &str,
    size: u64,
    verifier: &NoteVerifier,
) -> anyhow::Result<String> {
    let checkpoint = match store.latest_checkpoint(organization).await? {
        Some(stored) => Some(
            verifier
                .verify(&stored.note)
                .map_err(|e| anyhow::anyhow!("the latest checkpoint does not verify: {e}"))?,
        ),
        None => None,
    };
    let mut frontier = Frontier::empty();
    let mut checked_checkpoint: Option<Checkpoint> = None;
    let mut after = None;
    loop {
        let events = store
            .events_after(organization, after, trailmark_export::PAGE_SIZE)
            .await?;
        for event in &events {
            let fail = |what: &str| {
                anyhow::anyhow!("event {} (sequence {}): {what}", event.id, event.sequence)
            };
            if event.sequence != frontier.size() {
                return Err(anyhow::anyhow!(
                    "sequence {} is missing (the next stored event is {} at sequence {})",
                    frontier.size(),
                    event.id,
                    event.sequence
                ));
            }
            let leaf = if event.purged_at.is_some() {
                // Retention removed the contents; the stored leaf hash must still fit the tree.
                event.leaf_hash
            } else {
                let leaf = event_leaf_hash(&event.leaf_object());
                if leaf != event.leaf_hash {
                    return Err(fail(
                        "its stored content no longer hashes to its leaf: it was altered",
                    ));
                }
                leaf
            };
            frontier.append(leaf);
            if let Some(checkpoint) = checkpoint.as_ref().filter(|c| c.size == frontier.size()) {
                if frontier.root() != checkpoint.root {
                    return Err(fail(
                        "the rebuilt tree differs from the signed checkpoint here",
                    ));
                }
                checked_checkpoint = Some(checkpoint.clone());
            }
        }
        match events.last() {
            Some(last) => after = Some(last.sequence),
            None => break,
        }
    }
    if frontier.size() != size {
        bail!(
            "the log head says {size} events but {} are stored: events are missing",
            frontier.size()
        );
    }
    let stored_root = store.tree_root(organization, size).await?;
    if stored_root != frontier.root() {
        bail!("the stored Merkle tree's root differs from the root rebuilt from the events");
    }
    Ok(match (checkpoint, checked_checkpoint) {
        (None, _) => format!("{size} events re-hashed, tree rebuilt (no signed checkpoint yet)"),
        (Some(_), Some(c)) => format!(
            "{size} events re-hashed, tree rebuilt, matches the signed checkpoint of {} events",
            c.size
        ),
        (Some(c), None) => bail!(
            "the signed checkpoint covers {} events but only {size} are stored",
            c.size
        ),
    })
}

/// A running count on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, count: u64) {
        if self.enabled && count.is_multiple_of(10_000) {
            eprint!("\r{count} events verified…");
        }
    }

    fn finish(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}
