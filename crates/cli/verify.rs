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
//! It prints what it checked and exits non-zero naming the first event that fails. With
//! `--json` it prints one JSON object instead (`"ok"`, what was checked, and `"error"` on a
//! failure), for scripts.

use crate::say;
use std::borrow::Cow;
use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use anyhow::{Context, bail};
use serde_json::Value;
use trailmark_domain::canonical::CanonicalObject;
use trailmark_export::MANIFEST_OBJECT;
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::leaf::{canonical_event_leaf_hash, event_leaf_hash};
use trailmark_ledger::tree::{Frontier, Hash, verify_inclusion};
use trailmark_ledger::{LedgerError, decode_hash, encode_hash};

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
    error
        .chain()
        .any(|cause| cause.is::<std::io::Error>() || cause.is::<trailmark_store::StoreError>())
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
    // The manifest is the last line, and the proofs are checked against it.
    let manifest: Value = serde_json::from_str(&last_line(path)?.context("the export is empty")?)
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
    out.line(format_args!(
        "checkpoint: {} events, root {}, signed by {} ✓",
        checkpoint.size,
        encode_hash(&checkpoint.root),
        verifier.name()
    ));

    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut progress = Progress::new();
    let mut frontier = Frontier::empty();
    let mut previous: Option<u64> = None;
    let mut count = 0u64;
    let mut purged = 0u64;
    let checks = LineChecks {
        organization,
        checkpoint: &checkpoint,
        complete,
    };
    // Parsing and hashing each line is nearly all the work and needs no other line, so it runs
    // on every core; the checks that follow the log's order run here, line by line.
    in_parallel(
        BufReader::with_capacity(1 << 20, file),
        |number, line| checks.check(number, line),
        |outcome| {
            let (number, id, sequence, leaf) = match outcome? {
                Line::Blank => return Ok(Flow::Continue),
                Line::Manifest => return Ok(Flow::Stop),
                Line::Event {
                    number,
                    id,
                    sequence,
                    leaf,
                } => (number, id, sequence, leaf),
            };
            let fail = |what: String| {
                anyhow::anyhow!("event {id} (sequence {sequence}, line {number}): {what}")
            };
            if previous.is_some_and(|p| sequence <= p) {
                return Err(fail("is out of order or repeated".into()));
            }
            let (leaf, was_purged) = leaf?;
            purged += u64::from(was_purged);
            if complete {
                if sequence != frontier.size() {
                    return Err(fail(format!(
                        "sequence {} is missing before it",
                        frontier.size()
                    )));
                }
                frontier.append(leaf);
            }
            previous = Some(sequence);
            count += 1;
            progress.update(count);
            Ok(Flow::Continue)
        },
    )?;
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

/// The last line of `path` that is not blank, read from the end of the file.
fn last_line(path: &Path) -> anyhow::Result<Option<String>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let length = file.metadata()?.len();
    let mut tail = 64 * 1024u64;
    loop {
        let start = length.saturating_sub(tail);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((length - start) as usize);
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_end();
        // A line is complete once a newline precedes it, or the file starts there.
        if let Some(newline) = text.rfind('\n').filter(|_| !text.is_empty()) {
            let line = &text[newline + 1..];
            if !line.trim().is_empty() {
                return Ok(Some(line.to_owned()));
            }
        } else if start == 0 {
            return Ok(Some(text.to_owned()).filter(|t| !t.trim().is_empty()));
        }
        if start == 0 {
            return Ok(None);
        }
        tail *= 4;
    }
}

/// What one line of an export holds, as far as it can be checked on its own.
enum Line {
    Blank,
    Manifest,
    Event {
        number: usize,
        id: String,
        sequence: u64,
        /// The leaf and whether the event is a purged stub, or the first problem found after
        /// the organization check (reported only once the line's order is checked).
        leaf: anyhow::Result<(Hash, bool)>,
    },
}

enum Flow {
    Continue,
    Stop,
}

/// The checks of one export line that need no other line.
struct LineChecks<'a> {
    organization: &'a str,
    checkpoint: &'a Checkpoint,
    complete: bool,
}

impl LineChecks<'_> {
    fn check(&self, number: usize, line: &str) -> anyhow::Result<Line> {
        if line.trim().is_empty() {
            return Ok(Line::Blank);
        }
        // An exported line is normally in canonical form already: then only the members the
        // checks read are decoded, and the leaf is hashed from the text itself. Any other form
        // (reordered keys, whitespace, other number or escape forms) is parsed whole and
        // canonicalized, which gives the same leaf for the same content.
        let event = match CanonicalObject::parse(line) {
            Some(object) => Parsed::Canonical(object),
            None => Parsed::Whole(
                serde_json::from_str(line).with_context(|| format!("line {number} is not JSON"))?,
            ),
        };
        if event.text("object").as_deref() == Some(MANIFEST_OBJECT) {
            return Ok(Line::Manifest);
        }
        let id = event
            .text("id")
            .map_or_else(|| "(no id)".to_owned(), Cow::into_owned);
        let sequence = event
            .integer("sequence")
            .with_context(|| format!("event {id} (line {number}) has no sequence"))?;
        let fail = |what: String| {
            anyhow::anyhow!("event {id} (sequence {sequence}, line {number}): {what}")
        };
        if event.text("organization_id").as_deref() != Some(self.organization) {
            return Err(fail(format!(
                "belongs to {}, not {}",
                event.json("organization_id"),
                self.organization
            )));
        }
        let leaf = self.leaf(&event, sequence).map_err(fail);
        Ok(Line::Event {
            number,
            id,
            sequence,
            leaf,
        })
    }

    fn leaf(&self, event: &Parsed<'_>, sequence: u64) -> Result<(Hash, bool), String> {
        let checkpoint = self.checkpoint;
        if sequence >= checkpoint.size {
            return Err(format!(
                "is beyond the checkpoint's {} events",
                checkpoint.size
            ));
        }
        let claimed = event
            .text("leaf_hash")
            .map(|text| decode_hash(&text))
            .transpose()
            .map_err(|e| e.to_string())?;
        let purged = event.is_true("purged");
        let leaf = if purged {
            // Retention removed the contents: the leaf hash is all that is left, and the proof
            // (or the rebuilt root) still checks it.
            claimed.ok_or("a purged stub without a leaf_hash")?
        } else {
            let leaf = event.leaf_hash();
            if claimed != Some(leaf) {
                return Err("its content does not hash to its leaf_hash: it was altered".into());
            }
            leaf
        };
        if !self.complete {
            let proof = event
                .proof()
                .ok_or("has no inclusion_proof")?
                .map_err(|e| e.to_string())?;
            if !verify_inclusion(sequence, checkpoint.size, &leaf, &proof, &checkpoint.root) {
                return Err("its inclusion proof does not lead to the checkpoint's root".into());
            }
        }
        Ok((leaf, purged))
    }
}

/// An export line: parsed whole, or in canonical form and read member by member.
enum Parsed<'a> {
    Whole(Value),
    Canonical(CanonicalObject<'a>),
}

impl Parsed<'_> {
    /// A member that is a string.
    fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        match self {
            Parsed::Whole(event) => event[key].as_str().map(Cow::Borrowed),
            Parsed::Canonical(event) => {
                let json = event.get(key)?;
                let contents = json.strip_prefix('"')?.strip_suffix('"')?;
                if contents.contains('\\') {
                    serde_json::from_str(json).ok().map(Cow::Owned)
                } else {
                    Some(Cow::Borrowed(contents))
                }
            }
        }
    }

    /// A member that is a non-negative integer.
    fn integer(&self, key: &str) -> Option<u64> {
        match self {
            Parsed::Whole(event) => event[key].as_u64(),
            // Canonical form writes an integer's digits and nothing else.
            Parsed::Canonical(event) => event.get(key)?.parse().ok(),
        }
    }

    fn is_true(&self, key: &str) -> bool {
        match self {
            Parsed::Whole(event) => event[key] == true,
            Parsed::Canonical(event) => event.get(key) == Some("true"),
        }
    }

    /// A member's value, or null.
    fn value(&self, key: &str) -> Option<Value> {
        match self {
            Parsed::Whole(event) => event.get(key).cloned(),
            Parsed::Canonical(event) => serde_json::from_str(event.get(key)?).ok(),
        }
    }

    /// The `inclusion_proof` hashes; `None` if it is not an array.
    fn proof(&self) -> Option<Result<Vec<Hash>, LedgerError>> {
        let decode = |text: Option<&str>| {
            text.map_or_else(
                || Err(LedgerError::Malformed("not a string".into())),
                decode_hash,
            )
        };
        if let Parsed::Canonical(event) = self {
            // Base64 needs no escapes, so the strings are read in place.
            if let Ok(hashes) = serde_json::from_str::<Vec<&str>>(event.get("inclusion_proof")?) {
                return Some(hashes.into_iter().map(|h| decode(Some(h))).collect());
            }
        }
        let proof = self.value("inclusion_proof")?;
        Some(
            proof
                .as_array()?
                .iter()
                .map(|h| decode(h.as_str()))
                .collect(),
        )
    }

    /// A member as JSON, for messages.
    fn json(&self, key: &str) -> String {
        self.value(key).unwrap_or_default().to_string()
    }

    /// The leaf hash of the line's content.
    fn leaf_hash(&self) -> Hash {
        match self {
            Parsed::Whole(event) => event_leaf_hash(event),
            Parsed::Canonical(event) => canonical_event_leaf_hash(event),
        }
    }
}

/// Lines read per batch handed to a worker.
const BATCH_LINES: usize = 512;

/// Reads `reader` line by line (numbered from 1), runs `check` on every line on all cores, and
/// hands the results to `follow` in file order until it says stop or returns an error.
fn in_parallel<T: Send>(
    reader: impl BufRead + Send,
    check: impl Fn(usize, &str) -> anyhow::Result<T> + Sync,
    mut follow: impl FnMut(anyhow::Result<T>) -> anyhow::Result<Flow>,
) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        let (batches, batch_queue) =
            mpsc::sync_channel::<(usize, Vec<(usize, String)>)>(workers * 2);
        let (results, result_queue) =
            mpsc::sync_channel::<(usize, Vec<anyhow::Result<T>>)>(workers * 2);
        let reading = scope.spawn(move || -> std::io::Result<()> {
            let mut lines = reader.lines().enumerate();
            for index in 0.. {
                let batch: Vec<(usize, String)> = lines
                    .by_ref()
                    .take(BATCH_LINES)
                    .map(|(number, line)| line.map(|line| (number + 1, line)))
                    .collect::<Result<_, _>>()?;
                if batch.is_empty() || batches.send((index, batch)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        // Shared by the workers and dropped with the last of them, which stops the reader.
        let batch_queue = Arc::new(Mutex::new(batch_queue));
        for _ in 0..workers {
            let (batch_queue, results, check) = (Arc::clone(&batch_queue), results.clone(), &check);
            scope.spawn(move || {
                loop {
                    let next = match batch_queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, batch)) = next else { return };
                    let checked = batch
                        .iter()
                        .map(|(number, line)| check(*number, line))
                        .collect();
                    if results.send((index, checked)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((results, batch_queue));
        // Batches come back in any order; they are followed in file order.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut stopped = false;
        'follow: for (index, checked) in result_queue.iter() {
            waiting.insert(index, checked);
            while let Some(checked) = waiting.remove(&next) {
                next += 1;
                for outcome in checked {
                    if let Flow::Stop = follow(outcome)? {
                        stopped = true;
                        break 'follow;
                    }
                }
            }
        }
        drop(result_queue);
        match reading.join() {
            Ok(Err(error)) if !stopped => Err(error.into()),
            Ok(_) => Ok(()),
            Err(_) => bail!("the export reader stopped unexpectedly"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered_lines(count: usize) -> std::io::Cursor<String> {
        std::io::Cursor::new((1..=count).map(|n| format!("{n}\n")).collect())
    }

    #[test]
    fn lines_are_followed_in_file_order_until_told_to_stop() {
        let mut seen = Vec::new();
        in_parallel(
            numbered_lines(5 * BATCH_LINES + 7),
            |number, line| Ok((number, line.parse::<usize>()?)),
            |outcome| {
                let (number, value) = outcome?;
                assert_eq!(number, value);
                seen.push(value);
                Ok(if value == 4 * BATCH_LINES + 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            },
        )
        .expect("every line checks");
        assert_eq!(seen, (1..=4 * BATCH_LINES + 3).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_failing_line_in_file_order_is_reported() {
        let mut seen = 0;
        let error = in_parallel(
            numbered_lines(6 * BATCH_LINES),
            |number, _| {
                if number == 3 * BATCH_LINES + 1 || number == 5 * BATCH_LINES {
                    anyhow::bail!("line {number} is bad")
                }
                Ok(number)
            },
            |outcome| {
                outcome?;
                seen += 1;
                Ok(Flow::Continue)
            },
        )
        .expect_err("a line fails");
        assert_eq!(
            error.to_string(),
            format!("line {} is bad", 3 * BATCH_LINES + 1)
        );
        assert_eq!(seen, 3 * BATCH_LINES);
    }
}
