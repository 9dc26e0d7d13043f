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

use crate::payload::{now_iso, push_event};

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

/// Trailmark's `events` and `idempotency` tables, copied from
/// `crates/store/src/sqlite/migrations/0001_init.sql` (keys and indexes included: they are
/// most of the insert cost).
const SCHEMA: &str = "
CREATE TABLE events (
    organization_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (organization_id, sequence)
);
CREATE TABLE idempotency (
    identity BLOB PRIMARY KEY,
    organization_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
";

/// How many idempotency rows go with the events: Trailmark stores one per request, so one per
/// event for single-event ingest and one per batch for batch ingest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyRows {
    PerEvent,
    PerCommit,
}

/// Inserts `per_commit` events to a transaction, with their idempotency rows, for `warmup` then
/// `duration`, into a new database in `dir` opened the way Trailmark opens its own (same pragmas,
/// SQLite's default page cache).
pub fn storage_ceiling(
    dir: &Path,
    per_commit: u64,
    idempotency_rows: IdempotencyRows,
    warmup: Duration,
    duration: Duration,
) -> Result<StorageMeasured, String> {
    let path = dir.join(format!("storage-ceiling-{per_commit}.db"));
    let sql = |e: rusqlite::Error| format!("storage ceiling: {e}");
    let mut connection = Connection::open(&path).map_err(sql)?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    connection.execute_batch(SCHEMA).map_err(sql)?;

    let organization_id = "org_01KBENCH0000000000000000000";
    let mut random = SplitMix(seed());
    let mut sequence: i64 = 0;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut measured = StorageMeasured {
        rows: 0,
        commits_us: Vec::new(),
        window: duration,
    };
    let mut body = String::with_capacity(400);
    while Instant::now() < end {
        let began = Instant::now();
        let transaction = connection.transaction().map_err(sql)?;
        {
            let mut event = transaction
                .prepare_cached(
                    "INSERT INTO events (organization_id, sequence, id, action, occurred_at, received_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            let mut idempotency = transaction
                .prepare_cached(
                    "INSERT INTO idempotency (identity, organization_id, status, body, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            let now_ms = unix_millis();
            let occurred_at = now_iso();
            // The stored answer: one receipt per event of the request it belongs to.
            let mut answer = String::with_capacity(128);
            for index in 0..per_commit {
                // The same row contents Trailmark writes: a time-ordered `event_<ULID>` id, the
                // normalized event JSON, a SHA-256-sized random identity and the stored answer.
                let id = format!("event_{}", ulid_like(now_ms, &mut random));
                body.clear();
                push_event(&mut body, sequence as u64, &occurred_at);
                event
                    .execute(params![
                        organization_id,
                        sequence,
                        id,
                        "user.signed_in",
                        now_ms,
                        now_ms,
                        body
                    ])
                    .map_err(sql)?;
                answer.push_str(if answer.is_empty() { "[" } else { "," });
                let _ = write!(
                    answer,
                    r#"{{"id":"{id}","organization_id":"{organization_id}","sequence":{sequence},"success":true}}"#
                );
                sequence += 1;
                let request_ends = match idempotency_rows {
                    IdempotencyRows::PerEvent => true,
                    IdempotencyRows::PerCommit => index + 1 == per_commit,
                };
                if !request_ends {
                    continue;
                }
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
        }
        transaction.commit().map_err(sql)?;
        let done = Instant::now();
        if done >= window_start && done <= end {
            measured.rows += per_commit;
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
