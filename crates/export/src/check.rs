//! Reading an NDJSON export back and checking it against its signed checkpoint: the reader
//! beside the writer (`line.rs`, [`crate::write_export`]), so the format has one owner.
//!
//! [`ExportFile::open`] reads the manifest (the last line). [`ExportFile::checkpoint`] checks its
//! signed checkpoint with the instance's verifier key and that it is the manifest's
//! organization's. [`ExportFile::check`] then reads every line: each event must re-hash to its
//! `leaf_hash` (`trailmark_ledger::leaf`), belong to the manifest's organization and come in
//! increasing sequence order; a filtered export's events must each prove inclusion in the
//! checkpoint's tree; a complete export must hold sequences 0 … size-1 exactly and rebuild the
//! checkpoint's root. A complete export also gives the root of every earlier tree size asked
//! for, so a checkpoint held from before can be checked against the same leaves.
//!
//! Parsing and hashing a line is nearly all the work and needs no other line, so it runs on
//! every core; the checks that follow the log's order run in file order on the caller's thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::Value;
use trailmark_domain::canonical::{CanonicalObject, CanonicalValue};
use trailmark_ledger::checkpoint::{Checkpoint, NoteVerifier};
use trailmark_ledger::leaf::{canonical_leaf_bytes, leaf_bytes};
use trailmark_ledger::tree::{Frontier, Hash, InclusionChecker, leaf_hash, leaf_hash_pair};
use trailmark_ledger::{LedgerError, decode_hash};

use crate::MANIFEST_OBJECT;

/// Why an export does not check, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading the file failed after it was opened.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("the export is empty")]
    Empty,
    #[error("the last line is not JSON")]
    ManifestNotJson(#[source] serde_json::Error),
    #[error(
        "the export has no manifest (its last line is not an {MANIFEST_OBJECT}); only NDJSON exports made against a checkpoint can be verified"
    )]
    NoManifest,
    #[error("the manifest has no {0}")]
    ManifestMissing(&'static str),
    #[error("the checkpoint's signature does not verify: {0}")]
    Signature(#[source] LedgerError),
    #[error("the checkpoint is for '{origin}', not for {organization_id}")]
    WrongLog {
        origin: String,
        organization_id: String,
    },
    #[error("line {line} is not JSON")]
    LineNotJson {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("event {id} (line {line}) has no sequence")]
    NoSequence { id: String, line: usize },
    /// One event fails; `problem` says how.
    #[error("event {id} (sequence {sequence}, line {line}): {problem}")]
    Event {
        id: String,
        sequence: u64,
        line: usize,
        problem: EventProblem,
    },
    #[error(
        "the manifest announces {announced} events but the file holds {held}: events were removed or added"
    )]
    CountMismatch { announced: Value, held: u64 },
    #[error(
        "the export ends at sequence {ends} but the checkpoint has {size} events: events are missing"
    )]
    Incomplete { ends: u64, size: u64 },
    #[error("the events rebuild a different root than the checkpoint's")]
    RootMismatch,
    #[error("the export reader stopped unexpectedly")]
    ReaderStopped,
}

impl CheckError {
    /// Whether the check could not be made (the file could not be read), rather than what was
    /// read failing it.
    pub fn could_not_run(&self) -> bool {
        matches!(self, CheckError::Open { .. } | CheckError::Read(_))
    }
}

/// How one event line fails.
#[derive(Debug, thiserror::Error)]
pub enum EventProblem {
    #[error("belongs to {found}, not {expected}")]
    WrongOrganization { found: String, expected: String },
    #[error("is beyond the checkpoint's {0} events")]
    BeyondCheckpoint(u64),
    #[error("{0}")]
    BadHash(LedgerError),
    #[error("a purged stub without a leaf_hash")]
    StubWithoutLeaf,
    #[error("its content does not hash to its leaf_hash: it was altered")]
    Altered,
    #[error("has no inclusion_proof")]
    NoProof,
    #[error("its inclusion proof does not lead to the checkpoint's root")]
    ProofFails,
    #[error("is out of order or repeated")]
    OutOfOrder,
    #[error("sequence {0} is missing before it")]
    MissingBefore(u64),
}

/// An NDJSON export whose manifest has been read.
#[derive(Debug)]
pub struct ExportFile {
    path: PathBuf,
    manifest: Value,
}

impl ExportFile {
    /// Opens `path` and reads its manifest, the last line.
    ///
    /// # Errors
    ///
    /// [`CheckError::Open`]/[`CheckError::Read`] if the file cannot be read; otherwise the
    /// manifest's first problem.
    pub fn open(path: &Path) -> Result<Self, CheckError> {
        let manifest: Value = serde_json::from_str(&last_line(path)?.ok_or(CheckError::Empty)?)
            .map_err(CheckError::ManifestNotJson)?;
        if manifest["object"] != MANIFEST_OBJECT {
            return Err(CheckError::NoManifest);
        }
        Ok(ExportFile {
            path: path.to_owned(),
            manifest,
        })
    }

    /// The organization whose log the export is taken from.
    ///
    /// # Errors
    ///
    /// [`CheckError::ManifestMissing`] if the manifest does not say.
    pub fn organization_id(&self) -> Result<&str, CheckError> {
        self.manifest["organization_id"]
            .as_str()
            .ok_or(CheckError::ManifestMissing("organization_id"))
    }

    /// The manifest's signed checkpoint note, with whatever cosignatures it carries.
    pub fn note(&self) -> Option<&str> {
        self.manifest["checkpoint"].as_str()
    }

    /// Whether the export holds the whole log up to its checkpoint (no filter).
    pub fn complete(&self) -> bool {
        self.manifest["complete"].as_bool().unwrap_or(false)
    }

    /// The manifest's checkpoint, once its signature by `verifier` and its origin (this export's
    /// organization's log) check.
    ///
    /// # Errors
    ///
    /// The first of: no checkpoint, a bad signature, no organization, another log's checkpoint.
    pub fn checkpoint(&self, verifier: &NoteVerifier) -> Result<Checkpoint, CheckError> {
        let note = self.manifest["checkpoint"]
            .as_str()
            .ok_or(CheckError::ManifestMissing("checkpoint"))?;
        let checkpoint = verifier.verify(note).map_err(CheckError::Signature)?;
        let organization_id = self.organization_id()?;
        if !checkpoint.origin.ends_with(&format!("/{organization_id}")) {
            return Err(CheckError::WrongLog {
                origin: checkpoint.origin,
                organization_id: organization_id.to_owned(),
            });
        }
        Ok(checkpoint)
    }

    /// Reads and checks every event line against `checkpoint` (from [`ExportFile::checkpoint`]),
    /// calling `progress` with the running count after each event. For a complete export,
    /// [`Checked::roots`] holds the root of the first `n` leaves for each `n` of `prefixes`
    /// within the checkpoint's tree.
    ///
    /// # Errors
    ///
    /// The first failing line in file order, then the count and, for a complete export, the
    /// completeness and root checks.
    pub fn check(
        &self,
        checkpoint: &Checkpoint,
        prefixes: &[u64],
        mut progress: impl FnMut(u64),
    ) -> Result<Checked, CheckError> {
        let organization = self.organization_id()?;
        let complete = self.complete();
        let file = std::fs::File::open(&self.path).map_err(|source| CheckError::Open {
            path: self.path.clone(),
            source,
        })?;
        let checks = LineChecks {
            organization,
            checkpoint,
            complete,
        };
        let mut frontier = Frontier::empty();
        let mut roots = BTreeMap::new();
        let mut previous: Option<u64> = None;
        let mut count = 0u64;
        let mut purged = 0u64;
        in_parallel(
            file,
            // A filtered export's proofs share their upper nodes: each worker remembers the
            // nodes its proofs established.
            || InclusionChecker::new(checkpoint.size, checkpoint.root),
            |inclusions, lines, out| checks.check_lines(inclusions, lines, out),
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
                let fail = |problem| CheckError::Event {
                    id: id.to_string(),
                    sequence,
                    line: number,
                    problem,
                };
                if previous.is_some_and(|p| sequence <= p) {
                    return Err(fail(EventProblem::OutOfOrder));
                }
                let (leaf, was_purged) = leaf.map_err(fail)?;
                purged += u64::from(was_purged);
                if complete {
                    if sequence != frontier.size() {
                        return Err(fail(EventProblem::MissingBefore(frontier.size())));
                    }
                    frontier.append(leaf);
                    if prefixes.contains(&frontier.size()) {
                        roots.insert(frontier.size(), frontier.root());
                    }
                }
                previous = Some(sequence);
                count += 1;
                progress(count);
                Ok(Flow::Continue)
            },
        )?;
        if self.manifest["event_count"].as_u64() != Some(count) {
            return Err(CheckError::CountMismatch {
                announced: self.manifest["event_count"].clone(),
                held: count,
            });
        }
        if complete {
            if frontier.size() != checkpoint.size {
                return Err(CheckError::Incomplete {
                    ends: frontier.size(),
                    size: checkpoint.size,
                });
            }
            if frontier.root() != checkpoint.root {
                return Err(CheckError::RootMismatch);
            }
        }
        Ok(Checked {
            events: count,
            purged,
            complete,
            roots,
        })
    }
}

/// What [`ExportFile::check`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Event lines read.
    pub events: u64,
    /// Of them, stubs whose contents retention removed (their leaves still check).
    pub purged: u64,
    /// Whether the export held the whole tree, rebuilt and matched to the checkpoint's root.
    pub complete: bool,
    /// For a complete export: the root of the first `n` leaves, for each prefix size asked for
    /// that is within the tree (the empty tree excepted).
    pub roots: BTreeMap<u64, Hash>,
}

/// The last line of `path` that is not blank, read from the end of the file.
fn last_line(path: &Path) -> Result<Option<String>, CheckError> {
    let mut file = std::fs::File::open(path).map_err(|source| CheckError::Open {
        path: path.to_owned(),
        source,
    })?;
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
        id: EventId,
        sequence: u64,
        /// The leaf and whether the event is a purged stub, or the first problem found after
        /// the organization check (reported only once the line's order is checked).
        leaf: Result<(Hash, bool), EventProblem>,
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
    /// Checks `lines` (one or two, in file order, with their numbers), pushing each one's
    /// outcome to `out`. Two events have their leaves hashed together (`leaf_hash_pair`), which
    /// costs little more than hashing one.
    fn check_lines(
        &self,
        inclusions: &mut InclusionChecker,
        lines: &[(usize, &str)],
        out: &mut Outcomes<Line>,
    ) {
        let mut steps = lines
            .iter()
            .map(|&(number, line)| self.prepare(number, line));
        match (steps.next(), steps.next()) {
            (Some(Ok(Step::Hash(first))), Some(Ok(Step::Hash(second)))) => {
                let (first_leaf, second_leaf) = leaf_hash_pair(&first.bytes, &second.bytes);
                for (event, content) in [(first, first_leaf), (second, second_leaf)] {
                    let leaf = event.content_leaf(content);
                    out.push(Ok(self.finish(inclusions, event, leaf, false)));
                }
            }
            (first, second) => {
                for step in [first, second].into_iter().flatten() {
                    out.push(step.map(|step| self.complete(inclusions, step)));
                }
            }
        }
    }

    /// Takes a line's checks to their end, hashing its leaf alone.
    fn complete(&self, inclusions: &mut InclusionChecker, step: Step<'_>) -> Line {
        match step {
            Step::Done(line) => line,
            Step::Stub { event, leaf } => self.finish(inclusions, event, Ok(leaf), true),
            Step::Hash(event) => {
                let leaf = event.content_leaf(leaf_hash(&event.bytes));
                self.finish(inclusions, event, leaf, false)
            }
        }
    }

    /// Checks a line as far as its leaf, which is left to hash.
    fn prepare<'a>(&self, number: usize, line: &'a str) -> Result<Step<'a>, CheckError> {
        if line.trim().is_empty() {
            return Ok(Step::Done(Line::Blank));
        }
        // An exported line is normally in canonical form already: then only the members the
        // checks read are decoded, and the leaf is hashed from the text itself. Any other form
        // (reordered keys, whitespace, other number or escape forms) is parsed whole and
        // canonicalized, which gives the same leaf for the same content.
        let event = match CanonicalObject::parse(line) {
            Some(object) => Parsed::Canonical(object),
            None => Parsed::Whole(serde_json::from_str(line).map_err(|source| {
                CheckError::LineNotJson {
                    line: number,
                    source,
                }
            })?),
        };
        if event.text("object").as_deref() == Some(MANIFEST_OBJECT) {
            return Ok(Step::Done(Line::Manifest));
        }
        let id = EventId::new(event.text("id").as_deref().unwrap_or("(no id)"));
        let Some(sequence) = event.integer("sequence") else {
            return Err(CheckError::NoSequence {
                id: id.to_string(),
                line: number,
            });
        };
        if event.text("organization_id").as_deref() != Some(self.organization) {
            return Err(CheckError::Event {
                problem: EventProblem::WrongOrganization {
                    found: event.json("organization_id"),
                    expected: self.organization.to_owned(),
                },
                id: id.to_string(),
                sequence,
                line: number,
            });
        }
        let line = |leaf| {
            Step::Done(Line::Event {
                number,
                id: id.clone(),
                sequence,
                leaf,
            })
        };
        let checkpoint = self.checkpoint;
        if sequence >= checkpoint.size {
            return Ok(line(Err(EventProblem::BeyondCheckpoint(checkpoint.size))));
        }
        let claimed = match event
            .text("leaf_hash")
            .map(|text| decode_hash(&text))
            .transpose()
        {
            Ok(claimed) => claimed,
            Err(problem) => return Ok(line(Err(EventProblem::BadHash(problem)))),
        };
        if event.is_true("purged") {
            // Retention removed the contents: the leaf hash is all that is left, and the proof
            // (or the rebuilt root) still checks it.
            let Some(leaf) = claimed else {
                return Ok(line(Err(EventProblem::StubWithoutLeaf)));
            };
            return Ok(Step::Stub {
                event: Unhashed {
                    number,
                    id,
                    sequence,
                    bytes: Vec::new(),
                    event,
                    claimed,
                },
                leaf,
            });
        }
        Ok(Step::Hash(Unhashed {
            number,
            id,
            sequence,
            bytes: event.leaf_bytes(),
            event,
            claimed,
        }))
    }

    /// The rest of an event's checks once its leaf is known, or the problem found with it;
    /// `purged` for a stub.
    fn finish(
        &self,
        inclusions: &mut InclusionChecker,
        event: Unhashed<'_>,
        leaf: Result<Hash, EventProblem>,
        purged: bool,
    ) -> Line {
        let leaf = leaf.and_then(|leaf| {
            self.prove(inclusions, &event.event, event.sequence, leaf)?;
            Ok((leaf, purged))
        });
        Line::Event {
            number: event.number,
            id: event.id,
            sequence: event.sequence,
            leaf,
        }
    }

    /// For a filtered export, that the event's inclusion proof leads from `leaf` to the
    /// checkpoint's root.
    fn prove(
        &self,
        inclusions: &mut InclusionChecker,
        event: &Parsed<'_>,
        sequence: u64,
        leaf: Hash,
    ) -> Result<(), EventProblem> {
        if self.complete {
            return Ok(());
        }
        let proof = event.proof().ok_or(EventProblem::NoProof)?;
        // Only the hashes below the first node an earlier proof established are decoded:
        // the rest of the path is already bound to the root.
        let mut malformed = None;
        let included = inclusions.check_with(sequence, &leaf, proof.len(), |level| {
            match proof.text(level).map_or_else(
                || Err(LedgerError::Malformed("not a string".into())),
                decode_hash,
            ) {
                Ok(hash) => Some(hash),
                Err(problem) => {
                    malformed = Some(problem);
                    None
                }
            }
        });
        if let Some(problem) = malformed {
            return Err(EventProblem::BadHash(problem));
        }
        if !included {
            return Err(EventProblem::ProofFails);
        }
        Ok(())
    }
}

/// How far [`LineChecks::prepare`] took a line.
enum Step<'a> {
    /// As far as it goes: the line's outcome.
    Done(Line),
    /// To its leaf, whose bytes are to be hashed.
    Hash(Unhashed<'a>),
    /// To its proof: a purged stub, whose claimed leaf is all there is to check.
    Stub { event: Unhashed<'a>, leaf: Hash },
}

/// An event checked up to its leaf.
struct Unhashed<'a> {
    number: usize,
    id: EventId,
    sequence: u64,
    /// The leaf bytes of its content (none for a purged stub, which has no content).
    bytes: Vec<u8>,
    event: Parsed<'a>,
    /// The `leaf_hash` the line gives.
    claimed: Option<Hash>,
}

impl Unhashed<'_> {
    /// The event's leaf, given the hash of its content: the leaf it claims, if they agree.
    fn content_leaf(&self, content: Hash) -> Result<Hash, EventProblem> {
        if self.claimed == Some(content) {
            Ok(content)
        } else {
            Err(EventProblem::Altered)
        }
    }
}

/// The longest id kept inline; Trailmark's own ids (`event_` and a ULID) are 32 bytes.
const INLINE_ID: usize = 46;

/// An event's id, kept to name the event if a check fails: inline when it is short, as ids
/// are, so that the id every event carries to the thread that follows the file's order costs
/// no allocation.
#[derive(Clone)]
enum EventId {
    Inline { bytes: [u8; INLINE_ID], len: u8 },
    Long(String),
}

impl EventId {
    fn new(id: &str) -> Self {
        match <u8>::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID => {
                let mut bytes = [0; INLINE_ID];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                EventId::Inline { bytes, len }
            }
            _ => EventId::Long(id.to_owned()),
        }
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The bytes were a whole `&str`, so they are UTF-8.
            EventId::Inline { bytes, len } => {
                f.write_str(&String::from_utf8_lossy(&bytes[..usize::from(*len)]))
            }
            EventId::Long(id) => f.write_str(id),
        }
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

    /// The `inclusion_proof` hashes' texts, leaf side first; `None` if it is not an array.
    fn proof(&self) -> Option<ProofTexts<'_>> {
        match self {
            Parsed::Canonical(event) => {
                let hashes = event.value("inclusion_proof")?;
                Some(ProofTexts::Canonical {
                    len: hashes.elements()?.count(),
                    hashes,
                })
            }
            Parsed::Whole(event) => {
                Some(ProofTexts::Whole(event.get("inclusion_proof")?.as_array()?))
            }
        }
    }

    /// A member as JSON, for messages.
    fn json(&self, key: &str) -> String {
        self.value(key).unwrap_or_default().to_string()
    }

    /// The leaf bytes of the line's content.
    fn leaf_bytes(&self) -> Vec<u8> {
        match self {
            Parsed::Whole(event) => leaf_bytes(event),
            Parsed::Canonical(event) => canonical_leaf_bytes(event),
        }
    }
}

/// An inclusion proof's hash texts, read in place: only the few below the first node an
/// earlier proof established are ever read (see [`LineChecks::prove`]).
enum ProofTexts<'a> {
    /// The array of a line in canonical form, and how many elements it has.
    Canonical {
        hashes: CanonicalValue<'a>,
        len: usize,
    },
    Whole(&'a [Value]),
}

impl<'a> ProofTexts<'a> {
    /// How many elements the proof has, all counted: a longer proof than any tree's fails.
    fn len(&self) -> usize {
        match self {
            ProofTexts::Canonical { len, .. } => *len,
            ProofTexts::Whole(hashes) => hashes.len(),
        }
    }

    /// The text of the hash at `level` (leaf side first); `None` where there is none or the
    /// element is not a string.
    fn text(&self, level: usize) -> Option<&'a str> {
        match self {
            // Base64 needs no escapes, so a canonical line's strings are read in place.
            ProofTexts::Canonical { hashes, .. } => hashes
                .elements()?
                .nth(level)?
                .text()
                .strip_prefix('"')?
                .strip_suffix('"'),
            ProofTexts::Whole(hashes) => hashes.get(level)?.as_str(),
        }
    }
}

/// The outcomes of a batch's lines, in their order.
type Outcomes<T> = Vec<Result<T, CheckError>>;

/// Bytes read per batch handed to a worker (a few hundred export lines), cut after a newline.
const BATCH_BYTES: usize = 1 << 19;

/// Reads `reader` (numbered lines, from 1), runs `check` on every line on all cores (each worker
/// with a state of its own from `state`), and hands the results to `follow` in file order until
/// it says stop or returns an error. `check` is given neighbouring lines two at a time (one
/// where a line is alone) and pushes one outcome per line, in their order.
///
/// The reading thread only reads large blocks and counts their newlines; splitting them into
/// lines and checking that each is UTF-8 happens on the workers, so reading is not a third
/// thread's worth of work on top of them.
fn in_parallel<T: Send, S>(
    mut reader: impl Read + Send,
    state: impl Fn() -> S + Sync,
    check: impl Fn(&mut S, &[(usize, &str)], &mut Outcomes<T>) + Sync,
    mut follow: impl FnMut(Result<T, CheckError>) -> Result<Flow, CheckError>,
) -> Result<(), CheckError> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        // A batch: its place in the file, the number of its first line, and its bytes.
        let (batches, batch_queue) = mpsc::sync_channel::<(usize, usize, Vec<u8>)>(workers * 2);
        let (results, result_queue) = mpsc::sync_channel::<(usize, Outcomes<T>)>(workers * 2);
        // Batches checked come back to be read into again: a fresh half-megabyte buffer is
        // memory the kernel must fault in and zero, page by page, for every batch.
        let (spare, spare_queue) = mpsc::channel::<Vec<u8>>();
        let reading = scope.spawn(move || -> std::io::Result<()> {
            let mut carried = Vec::new();
            let (mut index, mut number) = (0, 1);
            loop {
                let wanted = BATCH_BYTES.saturating_sub(carried.len()).max(1 << 16);
                let mut batch = spare_queue.try_recv().unwrap_or_default();
                batch.clear();
                // Sized once: growing a half-megabyte buffer by doubling costs more than it reads.
                batch.reserve_exact(carried.len() + wanted + 64);
                batch.extend_from_slice(&carried);
                carried.clear();
                let read = (&mut reader).take(wanted as u64).read_to_end(&mut batch)?;
                let ended = read < wanted;
                if !ended {
                    // The rest of a line cut short waits for the next batch; a line longer than
                    // a batch keeps growing one.
                    match memchr::memrchr(b'\n', &batch) {
                        Some(newline) => {
                            carried.extend_from_slice(&batch[newline + 1..]);
                            batch.truncate(newline + 1);
                        }
                        None => {
                            carried = batch;
                            continue;
                        }
                    }
                }
                if !batch.is_empty() {
                    let lines = memchr::memchr_iter(b'\n', &batch).count()
                        + usize::from(!batch.ends_with(b"\n"));
                    if batches.send((index, number, batch)).is_err() {
                        return Ok(());
                    }
                    index += 1;
                    number += lines;
                }
                if ended {
                    return Ok(());
                }
            }
        });
        // Shared by the workers and dropped with the last of them, which stops the reader.
        let batch_queue = Arc::new(Mutex::new(batch_queue));
        for _ in 0..workers {
            let (batch_queue, results, spare, check) = (
                Arc::clone(&batch_queue),
                results.clone(),
                spare.clone(),
                &check,
            );
            let state = &state;
            scope.spawn(move || {
                let mut state = state();
                loop {
                    let next = match batch_queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, first, batch)) = next else {
                        return;
                    };
                    let mut checked = Vec::new();
                    let mut held = None;
                    for (line, number) in lines(&batch).zip(first..) {
                        match std::str::from_utf8(line) {
                            Ok(line) => match held.take() {
                                Some(before) => {
                                    check(&mut state, &[before, (number, line)], &mut checked);
                                }
                                None => held = Some((number, line)),
                            },
                            Err(_) => {
                                if let Some(before) = held.take() {
                                    check(&mut state, &[before], &mut checked);
                                }
                                checked.push(Err(CheckError::Read(std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    format!("line {number} is not UTF-8"),
                                ))));
                            }
                        }
                    }
                    if let Some(last) = held {
                        check(&mut state, &[last], &mut checked);
                    }
                    // The reader may have stopped: then the buffer is simply dropped.
                    let _ = spare.send(batch);
                    if results.send((index, checked)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((results, batch_queue, spare));
        // Batches come back in any order; they are followed in file order.
        let mut waiting = BTreeMap::new();
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
            Err(_) => Err(CheckError::ReaderStopped),
        }
    })
}

/// The lines of `bytes` as `BufRead::lines` gives them: split at `\n`, a `\r` before it dropped,
/// and a last line without a newline kept.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, after) = match memchr::memchr(b'\n', rest) {
            Some(newline) => (&rest[..newline], &rest[newline + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines enough to fill a batch several times over (each numbered line is a few bytes).
    const SPAN: usize = BATCH_BYTES / 4;

    fn numbered_lines(count: usize) -> std::io::Cursor<String> {
        std::io::Cursor::new((1..=count).map(|n| format!("{n}\n")).collect())
    }

    /// A check of one line at a time, in the shape `in_parallel` takes.
    fn each_line<T>(
        check: impl Fn(usize, &str) -> Result<T, CheckError> + Sync,
    ) -> impl Fn(&mut (), &[(usize, &str)], &mut Outcomes<T>) + Sync {
        move |_, lines, out| out.extend(lines.iter().map(|&(line, text)| check(line, text)))
    }

    fn number(line: usize, text: &str) -> Result<usize, CheckError> {
        text.parse().map_err(|_| CheckError::NoSequence {
            id: text.into(),
            line,
        })
    }

    #[test]
    fn lines_are_followed_in_file_order_until_told_to_stop() {
        let mut seen = Vec::new();
        in_parallel(
            numbered_lines(5 * SPAN + 7),
            || (),
            each_line(|line, text| Ok((line, number(line, text)?))),
            |outcome| {
                let (line, value) = outcome?;
                assert_eq!(line, value);
                seen.push(value);
                Ok(if value == 4 * SPAN + 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            },
        )
        .expect("every line checks");
        assert_eq!(seen, (1..=4 * SPAN + 3).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_failing_line_in_file_order_is_reported() {
        let mut seen = 0;
        let error = in_parallel(
            numbered_lines(6 * SPAN),
            || (),
            each_line(|line, _| {
                if line == 3 * SPAN + 1 || line == 5 * SPAN {
                    return Err(CheckError::NoSequence {
                        id: "bad".into(),
                        line,
                    });
                }
                Ok(line)
            }),
            |outcome| {
                outcome?;
                seen += 1;
                Ok(Flow::Continue)
            },
        )
        .expect_err("a line fails");
        assert_eq!(
            error.to_string(),
            format!("event bad (line {}) has no sequence", 3 * SPAN + 1)
        );
        assert_eq!(seen, 3 * SPAN);
    }

    #[test]
    fn a_proof_is_read_in_place_and_counted_whole() {
        let hashes: Vec<String> = (0..70).map(|n| format!("\"h{n}\"")).collect();
        let line = format!(
            "{{\"inclusion_proof\":[{},1,{{\"a\":\"b\"}}]}}",
            hashes.join(",")
        );
        let canonical = Parsed::Canonical(CanonicalObject::parse(&line).expect("canonical"));
        let whole = Parsed::Whole(serde_json::from_str(&line).expect("JSON"));
        for event in [&canonical, &whole] {
            let proof = event.proof().expect("an array");
            assert_eq!(
                proof.len(),
                72,
                "a proof longer than any tree's is counted whole, to fail"
            );
            assert_eq!(proof.text(0), Some("h0"));
            assert_eq!(proof.text(69), Some("h69"));
            assert_eq!(
                (proof.text(70), proof.text(71), proof.text(72)),
                (None, None, None)
            );
        }
        let not_an_array =
            CanonicalObject::parse("{\"inclusion_proof\":\"h\"}").expect("canonical");
        assert!(Parsed::Canonical(not_an_array).proof().is_none());
    }

    #[test]
    fn an_id_reads_back_as_it_was_given_whatever_its_length() {
        let long = "é".repeat(INLINE_ID);
        for id in [
            "",
            "event_01M97045Y0A42MGSEMFRQTJG06",
            &"x".repeat(INLINE_ID),
            &"x".repeat(INLINE_ID + 1),
            "ünïcödé",
            &long,
        ] {
            assert_eq!(EventId::new(id).to_string(), id);
        }
        assert!(matches!(EventId::new(&long), EventId::Long(_)));
    }

    #[test]
    fn lines_split_as_bufread_splits_them() {
        let split = |bytes: &[u8]| lines(bytes).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(split(b"a\nb\r\n\nc"), [&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(split(b"a\n"), [&b"a"[..]]);
        assert!(split(b"").is_empty());
        let text = "one\r\ntwo\n\nthree";
        let expected: Vec<Vec<u8>> = std::io::BufRead::lines(text.as_bytes())
            .map(|line| line.map(String::into_bytes))
            .collect::<Result<_, _>>()
            .expect("lines");
        assert_eq!(split(text.as_bytes()), expected);
    }

    #[test]
    fn a_line_longer_than_a_batch_and_one_not_utf8_are_read_in_their_place() {
        let long = "x".repeat(3 * BATCH_BYTES);
        let mut bytes = format!("1\n{long}\n3\n").into_bytes();
        bytes.extend_from_slice(b"\xff\n5\n");
        let mut seen = Vec::new();
        let error = in_parallel(
            std::io::Cursor::new(bytes),
            || (),
            each_line(|line, text| Ok((line, text.len()))),
            |outcome| {
                seen.push(outcome?);
                Ok(Flow::Continue)
            },
        )
        .expect_err("line 4 is not UTF-8");
        assert_eq!(seen, [(1, 1), (2, 3 * BATCH_BYTES), (3, 1)]);
        assert_eq!(error.to_string(), "line 4 is not UTF-8");
    }
}
