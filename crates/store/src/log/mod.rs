//! The embedded event log: what `SqliteStore` keeps events in.
//!
//! What must be on disk before an event is acknowledged is the event itself, its sequence
//! number and its idempotency identity. Those are written once, sequentially, as a *frame* per
//! append at the end of the log's segment files ([`segments`], [`format`]), with one
//! `fdatasync` shared by every append waiting at that moment ([`writer`]). Nothing else is on
//! the acknowledgement's path.
//!
//! Everything else is derived from the log, written behind it in large pieces, and rebuilt from
//! it after a crash:
//! - the search index: per organization, blocks of up to 4,096 events written once ([`block`])
//!   into SQLite (`log_blocks`, `log_terms`); until its block is written an event is indexed in
//!   memory, so it is searchable the moment it is acknowledged;
//! - the Merkle tree as tiles ([`tiles`]: `log_tiles`), the leaves not yet tiled in memory;
//! - lookups by idempotency identity and by event id: memory, then sorted runs ([`runs`]).
//!
//! [`maintenance`] writes blocks, tiles and runs, purges expired events (rewriting their bodies
//! in place) and retires expired idempotency runs, on a thread of its own. [`read`] answers
//! searches, single events and proofs from memory and the written index. At start, the frames
//! past what the index covers are read back into memory ([`LogEngine::open`]).
//!
//! Invariants: a sequence is assigned by the one writer thread, inside the append that makes it
//! durable, from the organization's size in memory — gap-free, and visible to readers only once
//! durable. An event is in memory or in a written block (briefly both); readers take the memory
//! snapshot first and read blocks below it, so they never miss or repeat one.

pub(crate) mod block;
pub(crate) mod format;
pub(crate) mod legacy;
mod maintenance;
mod read;
pub(crate) mod runs;
pub(crate) mod segments;
pub(crate) mod tiles;
mod writer;

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use trailmark_domain::event::NewEvent;
use trailmark_domain::json::JsonText;
use trailmark_ledger::tree::Hash;

use crate::StoreError;
use crate::rules::{EventIndex, IndexFields};
use crate::sqlite::Database;
use block::IndexedEvent;
use runs::{Entry, Memtable, Runs};
use segments::Segments;
use tiles::TileEdge;

pub(crate) use maintenance::{Change, Task};

/// Events held in memory across all organizations before the largest open blocks are written
/// early: bounds memory (a few hundred bytes an event) whatever the number of organizations.
const MAX_OPEN_EVENTS: usize = 262_144;
/// How far (in log bytes) the oldest event not yet in a block may lie behind the log's end: a
/// restart reads at most this much back into memory.
const REPLAY_WINDOW_BYTES: u64 = 256 << 20;
/// Entries in memory before they are written as a run.
const RUN_ENTRIES: usize = 262_144;

/// One organization's log as the engine holds it.
#[derive(Debug, Clone)]
pub(crate) struct OrgLog {
    /// The organization's number (`log_organizations`), used in every derived table.
    pub(crate) number: u32,
    /// Events in the log.
    pub(crate) size: u64,
    /// Events in written blocks (and tiles): `open` holds the rest, `sealed..size`.
    pub(crate) sealed: u64,
    /// Shared, so that sealing a block takes its events without copying them (they stay here,
    /// searchable, until the block is written).
    pub(crate) open: Vec<Arc<IndexedEvent>>,
    /// The partial tiles past the written ones.
    pub(crate) edge: TileEdge,
}

/// Everything the engine keeps in memory, behind one lock: the writer changes it after each
/// durable append, the maintenance thread after each written block, readers snapshot it.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) logs: HashMap<String, OrgLog>,
    /// Organizations (by number) with events an erasure rewrote: their reads look in
    /// `log_erasures` for bodies.
    pub(crate) erased: std::collections::HashSet<u32>,
    /// Organization id by number.
    pub(crate) names: HashMap<u32, String>,
    /// Event ids past the newest id run (key: SHA-256 of the id).
    pub(crate) ids: Memtable,
    /// Idempotency claims past the newest claim run.
    pub(crate) claims: Memtable,
    /// Memtables being written as runs: still consulted until the runs are in place.
    pub(crate) ids_flushing: Option<Arc<Memtable>>,
    pub(crate) claims_flushing: Option<Arc<Memtable>>,
    /// The end of the durable log.
    pub(crate) end: u64,
    /// Events in all `open` lists.
    pub(crate) open_events: usize,
}

pub(crate) struct Shared {
    pub(crate) db_path: PathBuf,
    pub(crate) db: Database,
    pub(crate) segments: Arc<Segments>,
    pub(crate) ids: Runs,
    pub(crate) claims: Runs,
    pub(crate) state: RwLock<State>,
    /// Set when an append failed in a way that leaves the log's end unknown: every later append
    /// is refused until a restart re-reads the log.
    pub(crate) failed: AtomicBool,
    /// The maintenance thread's work queue.
    pub(crate) tasks: mpsc::Sender<Task>,
    /// The organizations the writer has found live (see [`writer::LiveOrganizations`]).
    pub(crate) live: writer::LiveOrganizations,
    /// When the last claim recorded before the log existed (the `idempotency` table, which
    /// nothing adds to any more) stops answering, in Unix milliseconds; `None` if there is none.
    /// Until then a claim the log does not know is looked up there too.
    pub(crate) legacy_claims_until: Option<i64>,
    /// Held (locked) while this process writes the log, so a second writer cannot open it.
    _lock: Option<std::fs::File>,
    /// Told when the engine is gone (its threads ended, its lock released).
    closed: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.lock().ok().and_then(|mut c| c.take()) {
            let _ = closed.send(());
        }
    }
}

impl Shared {
    pub(crate) fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, StoreError> {
        self.state
            .read()
            .map_err(|_| StoreError::Unavailable("the log's state is poisoned".into()))
    }

    pub(crate) fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, State>, StoreError> {
        self.state
            .write()
            .map_err(|_| StoreError::Unavailable("the log's state is poisoned".into()))
    }
}

/// The embedded event log. Clones share it.
#[derive(Clone)]
pub(crate) struct LogEngine {
    pub(crate) shared: Arc<Shared>,
    jobs: writer::Jobs,
    access: Access,
    closed: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

/// How a process opens the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The one process that appends, writes the index and purges (`trailmark serve`). Takes the
    /// log's lock: a second writer is refused.
    Write,
    /// A reader beside a running server (`trailmark verify`, `export`, `keys`): reads the log as
    /// it was when opened, appends nothing, takes no lock.
    Read,
}

/// The key an event id is looked up by.
pub(crate) fn id_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The index fields of an event from its stored body (the normalized event JSON).
pub(crate) fn indexed_from_body(
    body: &[u8],
    sequence: u64,
    position: u64,
    length: u32,
    id: String,
    leaf_hash: Hash,
    received_at: i64,
) -> Result<IndexedEvent, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("event {id} in the log: {why}"));
    let text = JsonText::parse(body).map_err(|e| corrupt(e.to_string()))?;
    let event =
        NewEvent::read_in(&text, text.json(), "event").map_err(|e| corrupt(e.to_string()))?;
    let fields = IndexFields::of(&event);
    Ok(IndexedEvent {
        sequence,
        position,
        length,
        leaf_hash,
        received_at,
        occurred_at: event.occurred_at().unix_millis(),
        action: fields.action,
        actor_id: fields.actor_id,
        actor_name: fields.actor_name,
        targets: fields.targets,
        text: fields.search_text,
        purged_at: None,
        id,
    })
}

impl LogEngine {
    /// Opens the log beside the database at `db_path` (`<name>.log/`), reads back into memory
    /// what the written index does not cover, and starts the writer and maintenance threads.
    /// The database's migrations must have run.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] for files that cannot be opened, [`StoreError::Corrupt`] for a log
    /// damaged anywhere but its last frame.
    pub(crate) fn open(db_path: &Path, db: Database, access: Access) -> Result<Self, StoreError> {
        let dir = log_dir(db_path);
        let held = match access {
            Access::Write => Some(lock(&dir)?),
            Access::Read => None,
        };
        match access {
            Access::Write => legacy::convert(db_path)?,
            // A reader may find an upgrade not yet made: it makes it, as the writer would, if
            // no writer runs.
            Access::Read if legacy::pending(db_path)? => {
                let _writing = lock(&dir)?;
                legacy::convert(db_path)?;
            }
            Access::Read => {}
        }
        let segments = Segments::open(&dir)?;
        let ids = Runs::open(&dir.join("ids"))?;
        let claims = Runs::open(&dir.join("claims"))?;
        let connection = Connection::open(db_path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;

        // The id memtable gets an entry per event until it holds a run's worth: made that size
        // at once, it never rehashes (growing by doubling moved every entry into freshly
        // zeroed pages, a table of tens of megabytes, on the writer's thread).
        let mut state = State {
            ids: runs::memtable(RUN_ENTRIES),
            ..State::default()
        };
        load_written(&connection, &mut state)?;
        let replay_from: u64 = connection
            .query_row(
                "SELECT value FROM log_meta WHERE key = 'replay_from'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .map_or(0, |v| v as u64);
        let (ids_from, claims_from) = (ids.covered_to(), claims.covered_to());
        let from = replay_from.min(ids_from).min(claims_from);
        let end = segments.scan(
            from,
            replay_from,
            access == Access::Write,
            |position, frame| replay_frame(&mut state, position, frame, ids_from, claims_from),
        )?;
        state.end = end;
        state.open_events = state.logs.values().map(|log| log.open.len()).sum();
        let appender = segments.appender(end)?;
        let legacy_claims_until: Option<i64> =
            connection.query_row("SELECT max(expires_at) FROM idempotency", [], |row| {
                row.get(0)
            })?;

        let (tasks, queue) = mpsc::channel();
        let (on_close, closed) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared {
            db_path: db_path.to_owned(),
            db,
            segments,
            ids,
            claims,
            state: RwLock::new(state),
            failed: AtomicBool::new(false),
            tasks,
            live: writer::LiveOrganizations::default(),
            legacy_claims_until,
            _lock: held,
            closed: std::sync::Mutex::new(Some(on_close)),
        });
        let jobs = match access {
            Access::Write => {
                maintenance::finish_pending_redactions(&shared, &connection)?;
                maintenance::start(Arc::downgrade(&shared), queue)?;
                writer::start(Arc::clone(&shared), appender)?
            }
            // Nothing runs: appends and purges are refused as their queues have no reader.
            Access::Read => tokio::sync::mpsc::channel(1).0,
        };
        Ok(LogEngine {
            shared,
            jobs,
            access,
            closed: Arc::new(std::sync::Mutex::new(Some(closed))),
        })
    }

    /// Whether this process appends to the log (opened with [`Access::Write`]).
    pub(crate) fn appends(&self) -> bool {
        self.access == Access::Write
    }

    /// Drops this handle and waits until the engine is gone: its writer finished, its lock
    /// released. Only the last handle can see that; with others alive it waits for them.
    pub(crate) async fn close(self) {
        let closed = self.closed.lock().ok().and_then(|mut c| c.take());
        drop(self);
        if let Some(closed) = closed {
            let _ = closed.await;
        }
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

/// Takes the log's lock (`<log>/LOCK`, created if needed).
fn lock(dir: &Path) -> Result<std::fs::File, StoreError> {
    crate::private::create_dir(dir).map_err(|source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    })?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Open {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The log's directory for the database at `db_path`: `trailmark.db` → `trailmark.log/`.
pub(crate) fn log_dir(db_path: &Path) -> PathBuf {
    let name = db_path
        .file_stem()
        .map_or_else(|| "trailmark".into(), |s| s.to_string_lossy().into_owned());
    db_path.with_file_name(format!("{name}.log"))
}

/// Loads what the written index covers: every organization's number, its events in blocks, its
/// partial tiles.
fn load_written(connection: &Connection, state: &mut State) -> Result<(), StoreError> {
    let mut numbers = connection.prepare("SELECT number, id FROM log_organizations")?;
    let rows = numbers.query_map([], |row| {
        Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (number, id) = row?;
        state.names.insert(number, id.clone());
        state.logs.insert(
            id,
            OrgLog {
                number,
                size: 0,
                sealed: 0,
                open: Vec::new(),
                edge: TileEdge::default(),
            },
        );
    }
    let mut erased = connection.prepare("SELECT DISTINCT organization FROM log_erasures")?;
    for number in erased.query_map([], |row| row.get::<_, u32>(0))? {
        state.erased.insert(number?);
    }
    let mut sealed = connection.prepare(
        "SELECT organization, MAX(first_sequence + count) FROM log_blocks GROUP BY organization",
    )?;
    let rows = sealed.query_map([], |row| Ok((row.get::<_, u32>(0)?, row.get::<_, i64>(1)?)))?;
    for row in rows {
        let (number, size) = row?;
        let Some(name) = state.names.get(&number) else {
            return Err(StoreError::Corrupt(format!(
                "blocks of organization number {number}, which has no id"
            )));
        };
        if let Some(log) = state.logs.get_mut(name) {
            log.size = size as u64;
            log.sealed = size as u64;
        }
    }
    let mut partial = connection.prepare(
        "SELECT hashes FROM log_tiles WHERE organization = ?1 AND level = ?2 AND idx = ?3",
    )?;
    for log in state.logs.values_mut() {
        let mut levels = Vec::new();
        let mut level = 0u32;
        loop {
            let count = log.sealed >> (tiles::TILE_HEIGHT * level);
            if count == 0 {
                break;
            }
            let hashes: Option<Vec<u8>> = partial
                .query_row(
                    params![log.number, level, (count / tiles::TILE_WIDTH) as i64],
                    |row| row.get(0),
                )
                .optional()?;
            levels.push(hashes.map(|bytes| split_hashes(&bytes)).unwrap_or_default());
            level += 1;
        }
        log.edge = TileEdge::from_parts(log.sealed, levels);
    }
    Ok(())
}

/// Reads one frame back at start: its events past what blocks cover go to memory; its ids and
/// claim past what runs cover go to the memtables.
fn replay_frame(
    state: &mut State,
    position: u64,
    frame: format::Frame,
    ids_from: u64,
    claims_from: u64,
) -> Result<(), StoreError> {
    let Some(log) = state.logs.get_mut(&frame.organization_id) else {
        return Err(StoreError::Corrupt(format!(
            "the log holds events of '{}', an organization it has no number for",
            frame.organization_id
        )));
    };
    let number = log.number;
    if frame.first_sequence > log.size.max(log.sealed) {
        return Err(StoreError::Corrupt(format!(
            "the log of '{}': sequence {} is missing (the next frame starts at {})",
            frame.organization_id, log.size, frame.first_sequence
        )));
    }
    if let Some(claim) = &frame.claim
        && position >= claims_from
    {
        state.claims.insert(
            claim.identity,
            Entry {
                key: claim.identity,
                position,
                organization: number,
                length: frame_length(&frame),
                a: frame.first_sequence,
                b: claim.expires_at,
            },
        );
    }
    for (index, (event, at, length)) in frame.events.into_iter().enumerate() {
        let sequence = frame.first_sequence + index as u64;
        let record = position + u64::from(at);
        if record >= ids_from {
            let key = id_key(&event.id);
            state.ids.insert(
                key,
                Entry {
                    key,
                    position: record,
                    organization: number,
                    length,
                    a: sequence,
                    b: event.received_at,
                },
            );
        }
        let log = state
            .logs
            .get_mut(&frame.organization_id)
            .ok_or_else(|| StoreError::Corrupt("organization vanished during replay".into()))?;
        if sequence < log.sealed {
            // In a written block already: only the size matters.
            log.size = log.size.max(sequence + 1);
            continue;
        }
        if sequence != log.size {
            return Err(StoreError::Corrupt(format!(
                "the log of '{}': sequence {} is missing (found {sequence} in its place)",
                frame.organization_id, log.size
            )));
        }
        log.open.push(Arc::new(indexed_from_body(
            &event.body,
            sequence,
            record,
            length,
            event.id,
            event.leaf_hash,
            event.received_at,
        )?));
        log.size = sequence + 1;
    }
    Ok(())
}

/// A frame's length as written, recomputed from its decoded parts (the header, then its
/// payload up to the end of its last event).
fn frame_length(frame: &format::Frame) -> u32 {
    match frame.events.last() {
        Some((_, at, length)) => at + length,
        None => {
            let mut bytes = Vec::new();
            format::encode_frame(
                &mut bytes,
                &frame.organization_id,
                frame.first_sequence,
                frame.claim.as_ref(),
                &[],
            );
            bytes.len() as u32
        }
    }
}

pub(crate) fn split_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|chunk| {
            let mut hash = [0; 32];
            hash.copy_from_slice(chunk);
            hash
        })
        .collect()
}
