//! `trailmark verify`: check, offline, that an NDJSON export or a whole database is complete and
//! unaltered, against signed checkpoints.
//!
//! - **An export**: `trailmark_export::check` reads and checks it (the manifest's checkpoint
//!   signed by `--public-key`, every event re-hashed, proved included or the whole tree
//!   rebuilt); this module drives it and prints.
//! - **A database**: every organization's events must re-hash to their stored leaf hashes,
//!   have gap-free sequences, rebuild the root of the stored tree, and match the latest signed
//!   checkpoint.
//!
//! It prints what it checked and exits non-zero naming the first event that fails. With
//! `--json` it prints one JSON object instead (`"ok"`, what was checked, and `"error"` on a
//! failure), for scripts.

use crate::say;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use trailmark_export::check::{CheckError, Checked, ExportFile};
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::encode_hash;
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::Frontier;

use crate::args::{LedgerKeyArgs, StorageArgs, VerifyArgs};

/// The export or database checked does not hold up: `trailmark verify` exits with status 1
/// (status 2 means the check could not run: a missing file or database, a bad key, storage
/// unavailable).
#[derive(Debug)]
pub struct VerificationFailed;

impl std::fmt::Display for VerificationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("verification failed")
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let out = Out { json: args.json };
    let result = async {
        let checked = match (&args.export, &args.database) {
            (Some(export), None) => {
                let verifier = verifier(&args)?;
                std::fs::File::open(export)
                    .with_context(|| format!("cannot open {}", export.display()))?;
                verify_export(export, &verifier, out)
            }
            (None, Some(database)) => {
                let storage = StorageArgs {
                    data_dir: args.data_dir.clone(),
                    database: Some(database.to_owned()).filter(|d| !d.is_empty()),
                };
                let store =
                    crate::serve::open_store(&storage, crate::serve::Access::Beside).await?;
                let verifier = verifier(&args)?;
                verify_database(store.as_ref(), &verifier, out).await
            }
            (Some(_), Some(_)) => bail!("give either an export file or --database, not both"),
            (None, None) => bail!("give an NDJSON export to verify, or --database"),
        };
        checked.map_err(|error| {
            if could_not_run(&error) {
                error
            } else {
                error.context(VerificationFailed)
            }
        })
    }
    .await;
    match result {
        Ok(report) => {
            if out.json {
                say!("{report}");
            }
            Ok(())
        }
        Err(error) => {
            if out.json {
                match error.downcast_ref::<LogsFailed>() {
                    Some(failed) => say!("{}", failed.report),
                    None => say!(
                        "{}",
                        serde_json::json!({"ok": false, "error": format!("{error:#}")})
                    ),
                }
            }
            Err(error)
        }
    }
}

/// Whether an error means the check could not be made (the file or database could not be read)
/// rather than that what was checked failed.
fn could_not_run(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<std::io::Error>()
            || cause.is::<trailmark_store::StoreError>()
            || cause
                .downcast_ref::<CheckError>()
                .is_some_and(CheckError::could_not_run)
    })
}

/// Some organization logs of a database failed; `report` says which, for `--json`.
#[derive(Debug)]
struct LogsFailed {
    message: String,
    report: Value,
}

impl std::fmt::Display for LogsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LogsFailed {}

/// Where the human-readable lines go: standard output, unless `--json` asked for one object.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn line(self, line: std::fmt::Arguments<'_>) {
        if !self.json {
            crate::write_line(line);
        }
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

fn verify_export(path: &Path, verifier: &NoteVerifier, out: Out) -> anyhow::Result<Value> {
    let export = ExportFile::open(path)?;
    let checkpoint = export.checkpoint(verifier)?;
    let organization = export.organization_id()?;
    out.line(format_args!(
        "checkpoint: {} events, root {}, signed by {} ✓",
        checkpoint.size,
        encode_hash(&checkpoint.root),
        verifier.name()
    ));
    let mut progress = Progress::new();
    let checked = export.check(&checkpoint, &[], |count| progress.update(count))?;
    progress.finish();
    let Checked {
        events: count,
        purged,
        complete,
        ..
    } = checked;
    if complete {
        out.line(format_args!(
            "{count} events re-hashed; sequences 0…{} all present; the rebuilt root matches the checkpoint ✓",
            checkpoint.size.saturating_sub(1)
        ));
    } else {
        out.line(format_args!(
            "{count} events re-hashed; each proved included in the checkpoint's tree ✓"
        ));
    }
    if purged > 0 {
        out.line(format_args!(
            "{purged} of them are stubs whose contents retention removed; their leaves still check"
        ));
    }
    if complete {
        out.line(format_args!(
            "OK: {} is complete and unaltered.",
            path.display()
        ));
    } else {
        out.line(format_args!(
            "OK: every event in {} is unaltered and in the signed log.",
            path.display()
        ));
    }
    Ok(serde_json::json!({
        "ok": true,
        "export": path.display().to_string(),
        "organization_id": organization,
        "events": count,
        "purged": purged,
        "complete": complete,
        "checkpoint": {
            "size": checkpoint.size,
            "root": encode_hash(&checkpoint.root),
            "signer": verifier.name(),
        },
    }))
}

async fn verify_database(
    store: &dyn trailmark_store::Store,
    verifier: &NoteVerifier,
    out: Out,
) -> anyhow::Result<Value> {
    let logs = store.log_sizes().await?;
    let mut failures = 0;
    let mut results = Vec::with_capacity(logs.len());
    for (organization, size) in &logs {
        match verify_log(store, organization, *size, verifier).await {
            Err(error) if could_not_run(&error) => return Err(error),
            Ok(checked) => {
                out.line(format_args!("{organization}: {} ✓", checked.summary()));
                results.push(serde_json::json!({
                    "organization_id": organization,
                    "ok": true,
                    "events": checked.size,
                    "checkpoint_size": checked.checkpoint_size,
                }));
            }
            Err(error) => {
                failures += 1;
                out.line(format_args!("{organization}: FAILED: {error:#}"));
                results.push(serde_json::json!({
                    "organization_id": organization,
                    "ok": false,
                    "error": format!("{error:#}"),
                }));
            }
        }
    }
    if failures > 0 {
        let message = format!(
            "{failures} of {} organization logs failed verification",
            logs.len()
        );
        return Err(LogsFailed {
            report: serde_json::json!({"ok": false, "error": message, "organizations": results}),
            message,
        }
        .into());
    }
    out.line(format_args!(
        "OK: {} organization logs verified.",
        logs.len()
    ));
    Ok(serde_json::json!({"ok": true, "organizations": results}))
}

/// What one organization's log check established.
struct CheckedLog {
    size: u64,
    /// The size of the latest signed checkpoint the rebuilt tree matched, if there is one.
    checkpoint_size: Option<u64>,
}

impl CheckedLog {
    fn summary(&self) -> String {
        match self.checkpoint_size {
            None => format!(
                "{} events re-hashed, tree rebuilt (no signed checkpoint yet)",
                self.size
            ),
            Some(checkpoint) => format!(
                "{} events re-hashed, tree rebuilt, matches the signed checkpoint of {checkpoint} events",
                self.size
            ),
        }
    }
}

async fn verify_log(
    store: &dyn trailmark_store::Store,
    organization: &str,
    size: u64,
    verifier: &NoteVerifier,
) -> anyhow::Result<CheckedLog> {
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
        (None, _) => CheckedLog {
            size,
            checkpoint_size: None,
        },
        (Some(_), Some(c)) => CheckedLog {
            size,
            checkpoint_size: Some(c.size),
        },
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
