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
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use trailmark_export::check::{CheckError, Checked, ExportFile};
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::consistency::{Inconsistent, check_extends};
use trailmark_ledger::cosignature::CosignatureVerifier;
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::{Frontier, Hash, empty_root};
use trailmark_ledger::{decode_hash, encode_hash};

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
        let held = read_held(&args.checkpoints)?;
        let witnesses = witnesses(&args)?;
        let server = args
            .server
            .as_deref()
            .map(|url| server(url, &args))
            .transpose()?;
        let checked = match (&args.export, &args.database) {
            (Some(export), None) => {
                let verifier = verifier(&args)?;
                std::fs::File::open(export)
                    .with_context(|| format!("cannot open {}", export.display()))?;
                verify_export(export, &verifier, &held, server.as_ref(), &witnesses, out).await
            }
            (None, Some(_)) if !held.is_empty() || server.is_some() || witnesses.is_some() => {
                bail!(
                    "--checkpoint, --server and --witness-key check an export or a server's log, not --database"
                )
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
            (None, None) => match &server {
                Some(server) if !held.is_empty() => {
                    let Some(public_key) = &args.public_key else {
                        bail!("--public-key is required to verify against a server")
                    };
                    let verifier = parse_verifier(public_key)?;
                    verify_server(server, &verifier, &held, &witnesses, out).await
                }
                Some(_) => {
                    bail!("give the checkpoints to check against the server with --checkpoint")
                }
                None => bail!("give an NDJSON export to verify, or --database"),
            },
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
            || cause.is::<CannotCheck>()
            || cause.is::<trailmark_client::Error>()
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
        Some(value) => return parse_verifier(value),
        None if args.export.is_some() => bail!("--public-key is required to verify an export"),
        None => crate::ledger::signer(&LedgerKeyArgs {
            signing_key: None,
            ledger_name: args.ledger_name.clone(),
            data_dir: args.data_dir.clone(),
        })?
        .verifier_key(),
    };
    parse_verifier(&text)
}

fn parse_verifier(value: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::parse(read_key_argument(value)?.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn verify_export(
    path: &Path,
    verifier: &NoteVerifier,
    held: &[HeldCheckpoint],
    server: Option<&trailmark_client::Client>,
    witnesses: &Option<Witnesses>,
    out: Out,
) -> anyhow::Result<Value> {
    let export = ExportFile::open(path)?;
    let checkpoint = export.checkpoint(verifier)?;
    let organization = export.organization_id()?;
    out.line(format_args!(
        "checkpoint: {} events, root {}, signed by {} ✓",
        checkpoint.size,
        encode_hash(&checkpoint.root),
        verifier.name()
    ));
    let cosigned_by = match witnesses {
        Some(witnesses) => {
            Some(witnesses.check(export.note().unwrap_or_default(), &checkpoint, out)?)
        }
        None => None,
    };
    // Held checkpoints are checked before the events are read, when the export cannot check
    // them itself and no server was given, so that the command stops at once.
    let held = verify_signatures(held, verifier)?;
    if !export.complete() && !held.is_empty() && server.is_none() {
        return Err(CannotCheck(
            "a filtered export cannot show by itself that the log extends a checkpoint; give --server URL and --api-key to fetch consistency proofs"
                .into(),
        )
        .into());
    }
    let prefixes: Vec<u64> = held.iter().map(|(_, c)| c.size).collect();
    let mut progress = Progress::new();
    let checked = export.check(&checkpoint, &prefixes, |count| progress.update(count))?;
    progress.finish();
    let Checked {
        events: count,
        purged,
        complete,
        roots,
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
    let mut extended = Vec::with_capacity(held.len());
    for (file, earlier) in &held {
        let extends = if earlier.size > checkpoint.size {
            // The export is older than the held checkpoint: the held one must extend it.
            let Some(server) = server else {
                return Err(CannotCheck(format!(
                    "checkpoint {file} ({} events) is newer than the export's ({} events); give --server URL and --api-key to prove the one extends the other",
                    earlier.size, checkpoint.size
                ))
                .into());
            };
            let proof = fetch_proof(server, organization, &checkpoint, earlier).await?;
            check_extends(&checkpoint, earlier, &proof)
        } else if complete {
            // The export holds the whole log: the earlier tree is rebuilt from its leaves (the
            // check recorded the root of every held size; the empty tree has none).
            let prefix = Checkpoint {
                size: earlier.size,
                root: roots.get(&earlier.size).copied().unwrap_or_else(empty_root),
                origin: checkpoint.origin.clone(),
            };
            check_extends(earlier, &prefix, &[])
        } else {
            let proof = match server {
                Some(server) => fetch_proof(server, organization, earlier, &checkpoint).await?,
                None => Vec::new(),
            };
            check_extends(earlier, &checkpoint, &proof)
        };
        contradicted(file, earlier, extends)?;
        extended.push(extended_line(file, earlier, &checkpoint, out));
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
    let mut report = serde_json::json!({
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
    });
    if !extended.is_empty() {
        report["held_checkpoints"] = Value::Array(extended);
    }
    if let Some(names) = cosigned_by {
        report["cosigned_by"] = Value::from(names);
    }
    Ok(report)
}

/// The witnesses whose cosignatures the checked checkpoint needs (`--witness-key`,
/// `--witnesses-required`).
struct Witnesses {
    keys: Vec<CosignatureVerifier>,
    required: usize,
}

impl Witnesses {
    /// The names of the witnesses that validly cosigned `note`, once there are enough of them.
    fn check(&self, note: &str, checkpoint: &Checkpoint, out: Out) -> anyhow::Result<Vec<String>> {
        let mut cosigned = Vec::new();
        for key in &self.keys {
            match key.cosigned_at(note) {
                Ok(Some(_)) => cosigned.push(key.name().to_owned()),
                Ok(None) => {}
                Err(error) => bail!("the checkpoint of {} events: {error}", checkpoint.size),
            }
        }
        if cosigned.len() < self.required {
            bail!(
                "the checkpoint of {} events carries {} valid cosignatures of the {} required (cosigned by: {})",
                checkpoint.size,
                cosigned.len(),
                self.required,
                if cosigned.is_empty() {
                    "none".to_owned()
                } else {
                    cosigned.join(", ")
                }
            );
        }
        out.line(format_args!(
            "cosigned by {} of the {} witnesses required ({}) ✓",
            cosigned.len(),
            self.required,
            cosigned.join(", ")
        ));
        Ok(cosigned)
    }
}

/// `--witness-key` and `--witnesses-required`, checked before anything is read.
fn witnesses(args: &VerifyArgs) -> anyhow::Result<Option<Witnesses>> {
    if args.witness_keys.is_empty() {
        if args.witnesses_required.is_some_and(|n| n > 0) {
            bail!("--witnesses-required needs the witnesses' keys: give --witness-key");
        }
        return Ok(None);
    }
    let keys = args
        .witness_keys
        .iter()
        .map(|key| {
            CosignatureVerifier::parse(&read_key_argument(key)?)
                .map_err(|e| anyhow::anyhow!("--witness-key {key}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let required = args.witnesses_required.unwrap_or(1);
    if required > keys.len() {
        bail!(
            "--witnesses-required {required} is more than the {} --witness-key given",
            keys.len()
        );
    }
    Ok(Some(Witnesses { keys, required }))
}

/// A key given as itself, or as a file holding it.
fn read_key_argument(value: &str) -> anyhow::Result<String> {
    if Path::new(value).is_file() {
        Ok(std::fs::read_to_string(value).with_context(|| format!("cannot read {value}"))?)
    } else {
        Ok(value.to_owned())
    }
}

/// A checkpoint the customer kept, as read from its file.
struct HeldCheckpoint {
    file: PathBuf,
    note: String,
}

/// The check could not be made as asked (a held checkpoint that is not one, a filtered export
/// without a server to prove consistency): exit status 2, like a missing file.
#[derive(Debug)]
struct CannotCheck(String);

impl std::fmt::Display for CannotCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotCheck {}

/// Reads each `--checkpoint` file: a signed note, or the JSON answer of
/// `GET /audit_logs/ledger/checkpoint` (whose `checkpoint` member is the note).
fn read_held(files: &[PathBuf]) -> anyhow::Result<Vec<HeldCheckpoint>> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let note = match serde_json::from_str::<Value>(&text) {
                Ok(answer) => answer["checkpoint"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        CannotCheck(format!(
                            "{} is JSON without a \"checkpoint\" note",
                            file.display()
                        ))
                    })?,
                Err(_) => text,
            };
            Ok(HeldCheckpoint {
                file: file.clone(),
                note,
            })
        })
        .collect()
}

/// Each held checkpoint's signature by `verifier`.
fn verify_signatures(
    held: &[HeldCheckpoint],
    verifier: &NoteVerifier,
) -> anyhow::Result<Vec<(String, Checkpoint)>> {
    held.iter()
        .map(|held| {
            let file = held.file.display().to_string();
            let checkpoint = verifier.verify(&held.note).map_err(|e| {
                CannotCheck(format!(
                    "checkpoint {file} is not a checkpoint signed by {}: {e}",
                    verifier.name()
                ))
            })?;
            Ok((file, checkpoint))
        })
        .collect()
}

/// Names the held checkpoint `file` a failed consistency check contradicts.
fn contradicted(
    file: &str,
    earlier: &Checkpoint,
    extends: Result<(), Inconsistent>,
) -> anyhow::Result<()> {
    extends.map_err(|reason| {
        anyhow::anyhow!(
            "the log contradicts checkpoint {file} ({} events, root {}): {reason}",
            earlier.size,
            encode_hash(&earlier.root)
        )
    })
}

/// Prints and reports that the held checkpoint `file` and `current` are one history.
fn extended_line(file: &str, earlier: &Checkpoint, current: &Checkpoint, out: Out) -> Value {
    out.line(format_args!(
        "checkpoint {file} ({} events): consistent with the log of {} events ✓",
        earlier.size, current.size
    ));
    serde_json::json!({
        "file": file,
        "origin": earlier.origin,
        "size": earlier.size,
        "root": encode_hash(&earlier.root),
        "consistent_with": current.size,
    })
}

/// A client of the server at `url`, with `--api-key`.
fn server(url: &str, args: &VerifyArgs) -> anyhow::Result<trailmark_client::Client> {
    let Some(key) = &args.api_key else {
        bail!("--server needs --api-key (a key that can read the organization's log)")
    };
    Ok(trailmark_client::Client::new(url, key.clone())?)
}

/// The server's consistency proof from `earlier` to `current`, when one is needed (a larger
/// tree that is not empty).
async fn fetch_proof(
    server: &trailmark_client::Client,
    organization: &str,
    earlier: &Checkpoint,
    current: &Checkpoint,
) -> anyhow::Result<Vec<Hash>> {
    if earlier.size == 0 || earlier.size >= current.size {
        return Ok(Vec::new());
    }
    let proof = server
        .consistency_proof(organization, earlier.size, current.size)
        .await?;
    // A proof whose hashes do not decode proves nothing, which the check then says.
    Ok(proof
        .proof
        .iter()
        .filter_map(|hash| decode_hash(hash).ok())
        .collect())
}

/// `--server` with `--checkpoint`s: the server's latest signed checkpoint of each held
/// checkpoint's log must extend it, by the server's consistency proof.
async fn verify_server(
    server: &trailmark_client::Client,
    verifier: &NoteVerifier,
    held: &[HeldCheckpoint],
    witnesses: &Option<Witnesses>,
    out: Out,
) -> anyhow::Result<Value> {
    let held = verify_signatures(held, verifier)?;
    let mut extended = Vec::with_capacity(held.len());
    for (file, earlier) in &held {
        let Some((_, organization)) = earlier.origin.rsplit_once('/') else {
            return Err(CannotCheck(format!(
                "checkpoint {file} has origin '{}', which names no organization",
                earlier.origin
            ))
            .into());
        };
        let latest = server.checkpoint(organization).await?;
        let current = verifier
            .verify(&latest.checkpoint)
            .map_err(|e| anyhow::anyhow!("the server's checkpoint does not verify: {e}"))?;
        out.line(format_args!(
            "{organization}: the server's checkpoint: {} events, root {}, signed by {} ✓",
            current.size,
            encode_hash(&current.root),
            verifier.name()
        ));
        if let Some(witnesses) = witnesses {
            witnesses.check(&latest.checkpoint, &current, out)?;
        }
        let proof = fetch_proof(server, organization, earlier, &current).await?;
        contradicted(file, earlier, check_extends(earlier, &current, &proof))?;
        extended.push(extended_line(file, earlier, &current, out));
    }
    out.line(format_args!(
        "OK: the log extends every checkpoint held ({}).",
        held.len()
    ));
    Ok(serde_json::json!({"ok": true, "held_checkpoints": extended}))
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
