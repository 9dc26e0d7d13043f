//! The two ceilings: what the same HTTP framework and the same storage engine can do when they
//! do nothing but their own part of ingest.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use rusqlite::{Connection, params};
use serde_json::Value;
use trailmark_domain::Timestamp;
use trailmark_domain::record::{Placement, event_object};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::Frontier;

use crate::payload::{event_body, now_iso, search_text};

/// An axum server answering `POST /audit_logs/events` with `{"success":true}` after parsing
/// the JSON body, on its own runtime and threads, as Trailmark runs in its own process.
pub struct HttpCeiling {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn accept(axum::Json(body): axum::Json<Value>) -> impl axum::response::IntoResponse {
    // Parsing is the one piece of work any server must do; keep the optimizer from dropping it.
    std::hint::black_box(body);
    ([(CONTENT_TYPE, "application/json")], r#"{"success":true}"#)
}

impl HttpCeiling {
    pub fn start() -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("binding the HTTP ceiling: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("HTTP ceiling listener: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("HTTP ceiling address: {e}"))?;
        // Same runtime shape as Trailmark's `main`: multi-threaded, one worker per core.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("http-ceiling")
            .build()
            .map_err(|e| format!("HTTP ceiling runtime: {e}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http-ceiling".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a fresh non-blocking listener converts to tokio's");
                    let app = Router::new().route("/audit_logs/events", post(accept));
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
                // Idle keep-alive connections would hold a graceful shutdown forever.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("HTTP ceiling thread: {e}"))?;
        Ok(HttpCeiling {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HttpCeiling {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct StorageMeasured {
    pub rows: u64,
    /// Per transaction, microseconds, sorted.
    pub commits_us: Vec<u64>,
    pub window: Duration,
}

/// Trailmark's whole schema, from its own migration file, so the ceiling writes into the same
/// tables, keys and indexes (most of the insert cost) and follows every change to them. A new
/// migration file must be added here too, in order.
const MIGRATIONS: &[&str] = &[
    include_str!("../../crates/store/src/sqlite/migrations/0001_init.sql"),
    include_str!("../../crates/store/src/sqlite/migrations/0002_live_search_indexes.sql"),
    include_str!("../../crates/store/src/sqlite/migrations/0003_export_runners.sql"),
    include_str!("../../crates/store/src/sqlite/migrations/0004_portal.sql"),
    include_str!("../../crates/store/src/sqlite/migrations/0005_actor_time_index.sql"),
];

/// How many idempotency rows go with the events: Trailmark stores one per request, so one per
/// event for single-event ingest and one per batch for batch ingest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyRows {
    PerEvent,
    PerCommit,
}

/// What one storage-ceiling run writes.
#[derive(Clone, Copy)]
pub struct StorageShape {
    /// Events per transaction.
    pub per_commit: u64,
    /// One request per event, or one request for the whole transaction (a batch).
    pub idempotency: IdempotencyRows,
    /// Whether to do the ledger's work: hash each event's leaf (RFC 8785 JSON of its event
    /// object, SHA-256), append it to the frontier, store the completed Merkle nodes and the
    /// frontier. Without it the leaf hash column is empty and the log head holds only the size:
    /// what Trailmark would write if it had no ledger.
    pub ledger: bool,
}

/// Inserts `shape.per_commit` events to a transaction, with every row Trailmark's writer
/// (`crates/store/src/sqlite/mod.rs`, `append`, and `worker.rs`) stores for them, for `warmup`
/// then `duration`, into a new database in `dir` opened the way Trailmark opens its own (same
/// pragmas, SQLite's default page cache). Per request: its events (all columns), their targets,
/// their Merkle nodes, the log head upsert and the idempotency row; per transaction, after all
/// the events, their free-text index rows, as the group commit indexes them.
pub fn storage_ceiling(
    dir: &Path,
    shape: StorageShape,
    warmup: Duration,
    duration: Duration,
) -> Result<StorageMeasured, String> {
    let path = dir.join(format!(
        "storage-ceiling-{}-{}.db",
        shape.per_commit,
        if shape.ledger { "ledger" } else { "no-ledger" }
    ));
    let sql = |e: rusqlite::Error| format!("storage ceiling: {e}");
    let mut connection = Connection::open(&path).map_err(sql)?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    for migration in MIGRATIONS {
        connection.execute_batch(migration).map_err(sql)?;
    }

    let organization_id = "org_01KBENCH0000000000000000000";
    let mut random = SplitMix(seed());
    let mut frontier = Frontier::empty();
    let mut sequence: i64 = 0;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut measured = StorageMeasured {
        rows: 0,
        commits_us: Vec::new(),
        window: duration,
    };
    let mut search_rows: Vec<(i64, String)> = Vec::with_capacity(shape.per_commit as usize);
    while Instant::now() < end {
        let began = Instant::now();
        let transaction = connection.transaction().map_err(sql)?;
        {
            let mut event = transaction
                .prepare_cached(
                    "INSERT INTO events (organization_id, sequence, id, action, occurred_at, received_at, actor_id, actor_name, leaf_hash, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sql)?;
            let mut target = transaction
                .prepare_cached(
                    "INSERT INTO event_targets (organization_id, sequence, target_id, target_type) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            let mut node = transaction
                .prepare_cached(
                    "INSERT INTO merkle_nodes (organization_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            let mut head = transaction
                .prepare_cached(
                    "INSERT INTO log_heads (organization_id, size, frontier) VALUES (?1, ?2, ?3)
                     ON CONFLICT (organization_id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
                )
                .map_err(sql)?;
            let mut idempotency = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency (identity, organization_id, status, body, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            let now_ms = unix_millis();
            let received_at = Timestamp::from_unix_millis(now_ms);
            let occurred_at = now_iso();
            // The stored answer: one receipt per event of the request it belongs to.
            let mut answer = String::with_capacity(128);
            for index in 0..shape.per_commit {
                // The same row contents Trailmark writes: a time-ordered `event_<ULID>` id, the
                // normalized event JSON, its leaf hash, a SHA-256-sized random identity and the
                // stored answer.
                let id = format!("event_{}", ulid_like(now_ms, &mut random));
                let n = sequence as u64;
                let body = event_body(n, &occurred_at);
                let leaf_hash = if shape.ledger {
                    let object = event_object(
                        Placement {
                            id: &id,
                            organization_id,
                            sequence: n,
                            received_at,
                        },
                        &body,
                    );
                    let leaf = event_leaf_hash(&object);
                    for completed in frontier.append(leaf) {
                        node.execute(params![
                            organization_id,
                            completed.level,
                            completed.index as i64,
                            completed.hash.as_slice()
                        ])
                        .map_err(sql)?;
                    }
                    leaf.to_vec()
                } else {
                    Vec::new()
                };
                event
                    .execute(params![
                        organization_id,
                        sequence,
                        id,
                        "user.signed_in",
                        now_ms,
                        now_ms,
                        format!("user_{n}"),
                        "Jon Smith",
                        leaf_hash,
                        body.to_string()
                    ])
                    .map_err(sql)?;
                search_rows.push((transaction.last_insert_rowid(), search_text(n)));
                target
                    .execute(params![organization_id, sequence, "team_1", "team"])
                    .map_err(sql)?;
                answer.push_str(if answer.is_empty() { "[" } else { "," });
                let _ = write!(
                    answer,
                    r#"{{"id":"{id}","organization_id":"{organization_id}","sequence":{sequence},"success":true}}"#
                );
                sequence += 1;
                let request_ends = match shape.idempotency {
                    IdempotencyRows::PerEvent => true,
                    IdempotencyRows::PerCommit => index + 1 == shape.per_commit,
                };
                if !request_ends {
                    continue;
                }
                // Each request ends by moving its organization's log head.
                let frontier_bytes = if shape.ledger {
                    frontier.hashes().concat()
                } else {
                    Vec::new()
                };
                head.execute(params![organization_id, sequence, frontier_bytes])
                    .map_err(sql)?;
                answer.push(']');
                let mut identity = [0u8; 32];
                for chunk in identity.chunks_mut(8) {
                    chunk.copy_from_slice(&random.next().to_le_bytes());
                }
                idempotency
                    .execute(params![
                        identity.as_slice(),
                        organization_id,
                        200,
                        answer.as_bytes(),
                        now_ms + 86_400_000
                    ])
                    .map_err(sql)?;
                answer.clear();
            }
            // The group's free-text rows go in once, after every job, as Trailmark's writer
            // does (one FTS5 segment per commit).
            let mut fts = transaction
                .prepare_cached("INSERT INTO events_fts (rowid, text) VALUES (?1, ?2)")
                .map_err(sql)?;
            for (rowid, text) in search_rows.drain(..) {
                fts.execute(params![rowid, text]).map_err(sql)?;
            }
        }
        transaction.commit().map_err(sql)?;
        let done = Instant::now();
        if done >= window_start && done <= end {
            measured.rows += shape.per_commit;
            measured
                .commits_us
                .push(done.duration_since(began).as_micros() as u64);
        }
    }
    measured.commits_us.sort_unstable();
    drop(connection);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(measured)
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

/// 26 Crockford base-32 characters: 48 bits of milliseconds then 80 random bits, like a ULID,
/// so the `id` index sees the same mostly-ascending keys as Trailmark's.
fn ulid_like(millis: i64, random: &mut SplitMix) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let value: u128 = ((millis as u128) << 80) | (u128::from(random.next()) << 16);
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A tiny PRNG: the rows need unpredictable keys, not secure ones.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
