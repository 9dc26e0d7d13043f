//! Two ceilings measured in the process itself: what the same HTTP framework can do when it
//! does nothing but parse the request, and what SQLite alone does with the same events in a
//! plain table. Neither knows Trailmark's schema, so both keep their meaning whatever Trailmark
//! stores and however it lays it out.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::serve::ListenerExt;
use rusqlite::{Connection, params};
use serde_json::Value;
use trailmark_domain::Timestamp;
use trailmark_domain::record::{Placement, event_object};
use trailmark_ledger::leaf::event_leaf_hash;
use trailmark_ledger::tree::Frontier;

use crate::payload::{Events, now_iso};
use crate::probe::{self, Sample};

/// An axum server answering `POST /audit_logs/events` with `{"success":true}` after parsing
/// the JSON body (and `POST /audit_logs/events/batch` with one success item per event), on its own runtime and threads, as Trailmark runs in its own process.
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

/// The batch route's ceiling: parse the body, answer one success item per event, store nothing.
async fn accept_batch(axum::Json(body): axum::Json<Value>) -> impl axum::response::IntoResponse {
    let events = body["events"].as_array().map_or(0, Vec::len);
    std::hint::black_box(&body);
    let mut answer = String::with_capacity(32 + 30 * events);
    answer.push_str(r#"{"object":"list","data":["#);
    for index in 0..events {
        if index > 0 {
            answer.push(',');
        }
        answer.push_str(r#"{"success":true,"index":"#);
        answer.push_str(&index.to_string());
        answer.push('}');
    }
    answer.push_str("]}");
    ([(CONTENT_TYPE, "application/json")], answer)
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
                    // A batch of 1,000 is ~470 KB, over axum's default 2 MB limit only
                    // beyond 4,000 events; Trailmark's own limit is larger still.
                    let app = Router::new()
                        .route("/audit_logs/events", post(accept))
                        .route("/audit_logs/events/batch", post(accept_batch))
                        .layer(axum::extract::DefaultBodyLimit::max(16 << 20));
                    // Trailmark answers on sockets with Nagle's algorithm off; so does its
                    // ceiling.
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
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

/// What the SQLite ceiling measured.
pub struct SqliteMeasured {
    /// Rows committed inside the measured window.
    pub rows: u64,
    /// Per transaction, microseconds, sorted.
    pub commits_us: Vec<u64>,
    pub window: Duration,
    /// This process's writes and CPU over the window.
    pub probed: Sample,
    /// Rows committed in all, warm-up included, and the bytes of the database's files after.
    pub stored: u64,
    pub database_bytes: u64,
    /// Time spent on the ledger's work (each leaf hash and its frontier append) inside the
    /// window's transactions.
    pub ledger_time: Duration,
}

impl SqliteMeasured {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.window.as_secs_f64()
    }
}

/// What the SQLite ceiling's table has besides its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The columns any event log searches by, indexed: see [`INDEXES`].
    Indexed,
    /// Only the rows, in sequence order (the rowid): an append-only log, the least any layout
    /// must write.
    LogOnly,
}

/// A plain table for events: the columns any event log searches by and the JSON body.
/// Deliberately not Trailmark's schema (which changes), so the figure says what SQLite does
/// with these rows, whatever layout Trailmark picks.
const PLAIN_TABLE: &str = "
    CREATE TABLE events (
        organization_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        id TEXT NOT NULL UNIQUE,
        action TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        leaf_hash BLOB,
        body TEXT NOT NULL
    );
";

/// What [`Layout::Indexed`] adds: a unique (organization, sequence) and id, and the two
/// searches every log serves, by actor and by time. The actor index takes its keys in random
/// order (many actors), the others in ascending order.
const INDEXES: &str = "
    CREATE UNIQUE INDEX events_sequence ON events (organization_id, sequence);
    CREATE UNIQUE INDEX events_id ON events (id);
    CREATE INDEX events_actor ON events (organization_id, actor_id, sequence);
    CREATE INDEX events_occurred ON events (organization_id, occurred_at);
";

/// Events generated before the clock starts and reused in turn (each row still gets its own
/// id and sequence): generating them is the client's work, not the storage's.
const POOL: u64 = 20_000;

/// Inserts `per_commit` events a transaction into [`PLAIN_TABLE`] (with [`INDEXES`] for
/// [`Layout::Indexed`]) for `warmup` then `duration`, in a new database in `dir` opened as
/// Trailmark opens its own (WAL, `synchronous=FULL`: durable at commit). Each event's JSON is
/// parsed for its columns, as any server must, and its leaf hash is computed as Trailmark's
/// ledger does (the event object, RFC 8785, SHA-256), stored in its row and appended to a Merkle
/// frontier kept in memory; the time that takes is measured apart. Interior Merkle nodes are not
/// stored: how Trailmark stores them is its own design.
pub fn sqlite_ceiling(
    dir: &Path,
    events: &Events,
    per_commit: u64,
    layout: Layout,
    warmup: Duration,
    duration: Duration,
) -> Result<SqliteMeasured, String> {
    let data = dir.join(match layout {
        Layout::Indexed => "sqlite-ceiling-indexed",
        Layout::LogOnly => "sqlite-ceiling-log",
    });
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let sql = |e: rusqlite::Error| format!("SQLite ceiling: {e}");
    let mut connection = Connection::open(data.join("events.db")).map_err(sql)?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    connection.execute_batch(PLAIN_TABLE).map_err(sql)?;
    if layout == Layout::Indexed {
        connection.execute_batch(INDEXES).map_err(sql)?;
    }

    let occurred_at = now_iso();
    let pool: Vec<String> = (0..POOL)
        .map(|n| {
            let mut out = String::with_capacity(520);
            events.event(&mut out, n, &occurred_at);
            out
        })
        .collect();
    let organization_id = "org_01KBENCH0000000000000000000";
    let mut random = crate::dataset::Random::new(seed());
    let mut frontier = Frontier::empty();
    let mut sequence: u64 = 0;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut opened: Option<Sample> = None;
    let mut measured = SqliteMeasured {
        rows: 0,
        commits_us: Vec::new(),
        window: duration,
        probed: Sample::default(),
        stored: 0,
        database_bytes: 0,
        ledger_time: Duration::ZERO,
    };
    while Instant::now() < end {
        if opened.is_none() && Instant::now() >= window_start {
            opened = Some(probe::process("self")?);
        }
        let began = Instant::now();
        let mut ledger_time = Duration::ZERO;
        let transaction = connection.transaction().map_err(sql)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO events (organization_id, sequence, id, action, occurred_at, actor_id, leaf_hash, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql)?;
            let now_ms = unix_millis();
            let received_at = Timestamp::from_unix_millis(now_ms);
            for _ in 0..per_commit {
                let text = &pool[(sequence % POOL) as usize];
                let body: Value = serde_json::from_str(text)
                    .map_err(|e| format!("SQLite ceiling: an event is not JSON: {e}"))?;
                let id = format!("event_{}", ulid_like(now_ms, &mut random));
                let hashing = Instant::now();
                let object = event_object(
                    Placement {
                        id: &id,
                        organization_id,
                        sequence,
                        received_at,
                    },
                    &body,
                );
                let leaf = event_leaf_hash(&object);
                frontier.append(leaf);
                ledger_time += hashing.elapsed();
                let field = |name: &str| body[name].as_str().unwrap_or_default();
                insert
                    .execute(params![
                        organization_id,
                        sequence as i64,
                        id,
                        field("action"),
                        field("occurred_at"),
                        body["actor"]["id"].as_str().unwrap_or_default(),
                        leaf.as_slice(),
                        text
                    ])
                    .map_err(sql)?;
                sequence += 1;
            }
        }
        transaction.commit().map_err(sql)?;
        measured.stored += per_commit;
        let done = Instant::now();
        if done >= window_start && done <= end {
            measured.rows += per_commit;
            measured.ledger_time += ledger_time;
            measured
                .commits_us
                .push(done.duration_since(began).as_micros() as u64);
        }
    }
    let closed = probe::process("self")?;
    measured.probed = closed.since(&opened.unwrap_or(closed));
    measured.commits_us.sort_unstable();
    drop(connection);
    measured.database_bytes = probe::files_under(&data).iter().map(|(_, len)| len).sum();
    std::fs::remove_dir_all(&data).map_err(|e| format!("removing {}: {e}", data.display()))?;
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
/// so the `id` index sees mostly-ascending keys, as time-ordered event ids give.
fn ulid_like(millis: i64, random: &mut crate::dataset::Random) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let value: u128 = ((millis as u128) << 80) | (u128::from(random.next()) << 16);
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}
