//! The durable ceilings: the least any server must do to answer an event only once it is
//! stored durably. It parses the request's JSON as the HTTP ceiling does, then hands the body
//! to a group commit and answers `{"success":true}` once the group is durable:
//!
//! - `--dir`: one thread takes every body waiting, appends them to one file with one `write`,
//!   and `fdatasync`s once (as Trailmark's embedded log does);
//! - `--postgres`: [`COMMITTERS`] committers each take every body waiting and insert them as
//!   rows of the multi-row ceiling's table in one prepared `INSERT … SELECT FROM UNNEST`, its
//!   own transaction: one round trip, committed with the WAL flushed
//!   (`synchronous_commit = on`).
//!
//! No validation, sequence per organization, idempotency, index beyond the table's, or ledger:
//! whatever Trailmark does beyond this is its own cost. It bounds a design that stores each
//! event before answering in the same way (a log appended to a growing file, or rows committed
//! in PostgreSQL) on this machine and framework, at the same connections; a file zero-filled
//! ahead would spare each `fdatasync` the inode's write. It runs as a child process of the bench
//! (`trailmark-bench durable-ceiling`, hidden), so its CPU and `write_bytes` are measured from
//! `/proc/<pid>` as Trailmark's are.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::Value;
use tokio::sync::oneshot;

/// Bodies waiting for the writer before handlers wait too, as in Trailmark's log writer.
const QUEUE_DEPTH: usize = 8_192;
/// A group stops growing at this many bodies, as Trailmark's does at this many events.
const MAX_PER_COMMIT: usize = 16_384;
/// What the child prints before its address, once it listens.
const LISTENING: &str = "durable ceiling listening on ";
/// PostgreSQL committers, each with its own connection. The ceiling should be the best such a
/// server does here: with the prepared insert, two measured 0.23-0.24x the multi-row ceiling in
/// two runs, one 0.24x and four 0.21x; before the insert was prepared, sixteen measured
/// 0.12-0.15x (smaller groups: more transactions for the same rows).
const COMMITTERS: usize = 2;

#[derive(clap::Args)]
pub struct Args {
    /// Append the bodies to a file created in this directory.
    #[arg(
        long,
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    dir: Option<PathBuf>,
    /// Insert the bodies into the `events` table (`postgres::PLAIN_TABLE`) of this database.
    #[arg(long)]
    postgres: Option<String>,
}

/// A request's body, its parsed JSON (which the PostgreSQL ceiling takes its columns from) and
/// who to answer once it is durable.
struct Job {
    body: bytes::Bytes,
    parsed: Value,
    reply: oneshot::Sender<()>,
}

type Queue = tokio::sync::mpsc::Receiver<Job>;

/// Serves until killed; prints `durable ceiling listening on ADDR` once it listens.
pub fn serve(args: &Args) -> Result<(), String> {
    // Same runtime shape as Trailmark's `main`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("durable ceiling runtime: {e}"))?;
    runtime.block_on(async move {
        let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(QUEUE_DEPTH);
        match (&args.dir, &args.postgres) {
            (Some(dir), _) => {
                let path = dir.join("durable-ceiling.log");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                // The file's name is durable too before anything in it is answered, as
                // Trailmark's segments are.
                std::fs::File::open(dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| format!("syncing {}: {e}", dir.display()))?;
                std::thread::Builder::new()
                    .name("durable-writer".into())
                    .spawn(move || write_groups(file, queue))
                    .map_err(|e| format!("durable ceiling writer: {e}"))?;
            }
            (None, Some(url)) => {
                let queue = Arc::new(tokio::sync::Mutex::new(queue));
                let sequence = Arc::new(AtomicU64::new(0));
                for _ in 0..COMMITTERS {
                    let client = crate::postgres::connect(url).await?;
                    // Durable when the INSERT returns, whatever the database's default.
                    client
                        .batch_execute("SET synchronous_commit = on")
                        .await
                        .map_err(|e| format!("durable ceiling: {e}"))?;
                    // Prepared once: each group is then one round trip (Bind, Execute, Sync).
                    let insert = client
                        .prepare(INSERT)
                        .await
                        .map_err(|e| format!("durable ceiling: preparing the insert: {e}"))?;
                    tokio::spawn(insert_groups(
                        client,
                        insert,
                        Arc::clone(&queue),
                        Arc::clone(&sequence),
                    ));
                }
            }
            (None, None) => return Err("the durable ceiling needs --dir or --postgres".into()),
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the durable ceiling: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("durable ceiling address: {e}"))?;
        println!("{LISTENING}{addr}");
        std::io::stdout()
            .flush()
            .map_err(|e| format!("printing the address: {e}"))?;
        let app = Router::new()
            .route("/audit_logs/events", post(accept))
            .with_state(jobs);
        // Trailmark answers on sockets with Nagle's algorithm off; so does its ceiling.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("durable ceiling: {e}"))
    })
}

async fn accept(
    State(jobs): State<tokio::sync::mpsc::Sender<Job>>,
    body: bytes::Bytes,
) -> Result<impl axum::response::IntoResponse, StatusCode> {
    // Parsing is work any server must do, as in the HTTP ceiling; a body that does not parse is
    // not stored.
    let parsed: Value = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let (reply, written) = oneshot::channel();
    jobs.send(Job {
        body,
        parsed,
        reply,
    })
    .await
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    written.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(([(CONTENT_TYPE, "application/json")], r#"{"success":true}"#))
}

/// Every job waiting after `first`, up to [`MAX_PER_COMMIT`].
fn group_from(first: Job, queue: &mut Queue) -> Vec<Job> {
    let mut group = vec![first];
    while group.len() < MAX_PER_COMMIT {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    group
}

/// Group commit into the file: every body waiting, length-prefixed, in one write, then one
/// `fdatasync`; then every caller of the group is answered. A failed write ends the process: a
/// ceiling that cannot write measures nothing.
fn write_groups(mut file: std::fs::File, mut queue: Queue) {
    let mut buffer = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let group = group_from(first, &mut queue);
        buffer.clear();
        for job in &group {
            buffer.extend_from_slice(&(job.body.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&job.body);
        }
        if let Err(error) = file.write_all(&buffer).and_then(|()| file.sync_data()) {
            eprintln!("durable ceiling: writing failed: {error}");
            std::process::exit(1);
        }
        for job in group {
            let _ = job.reply.send(());
        }
    }
}

/// Group commit into PostgreSQL: every body waiting as rows of one multi-row insert, its own
/// transaction; then every caller of the group is answered. A failed insert ends the process.
async fn insert_groups(
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    queue: Arc<tokio::sync::Mutex<Queue>>,
    sequence: Arc<AtomicU64>,
) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            group_from(first, &mut queue)
        };
        let first = sequence.fetch_add(group.len() as u64, Ordering::Relaxed);
        if let Err(error) = insert_rows(&client, &insert, &group, first).await {
            eprintln!("durable ceiling: inserting failed: {error}");
            std::process::exit(1);
        }
        for job in group {
            let _ = job.reply.send(());
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The ceiling's table, `postgres::PLAIN_TABLE`, as the multi-row ceiling fills it.
const INSERT: &str = "INSERT INTO events (organization_id, sequence, id, action, occurred_at, actor_id, leaf_hash, body)
     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
        $6::TEXT[], $7::BYTEA[], $8::TEXT[])";

/// The group's rows, numbered from `first`, in one `INSERT … SELECT FROM UNNEST`.
async fn insert_rows(
    client: &tokio_postgres::Client,
    insert: &tokio_postgres::Statement,
    group: &[Job],
    first: u64,
) -> Result<(), String> {
    let organizations: Vec<&str> = group
        .iter()
        .map(|job| text(&job.parsed["organization_id"]))
        .collect();
    let sequences: Vec<i64> = (first..).take(group.len()).map(|n| n as i64).collect();
    let ids: Vec<String> = (first..)
        .take(group.len())
        .map(|n| format!("event_{n:026}"))
        .collect();
    let field = |pick: fn(&Value) -> &Value| -> Vec<&str> {
        group
            .iter()
            .map(|job| text(pick(&job.parsed["event"])))
            .collect()
    };
    let actions = field(|event| &event["action"]);
    let times = field(|event| &event["occurred_at"]);
    let actors = field(|event| &event["actor"]["id"]);
    // The size of a SHA-256 leaf hash; its value does not matter to the database.
    let leaves: Vec<Vec<u8>> = (first..)
        .take(group.len())
        .map(|n| n.to_be_bytes().repeat(4))
        .collect();
    let bodies: Vec<&str> = group
        .iter()
        .map(|job| std::str::from_utf8(&job.body).unwrap_or_default())
        .collect();
    client
        .execute(
            insert,
            &[
                &organizations,
                &sequences,
                &ids,
                &actions,
                &times,
                &actors,
                &leaves,
                &bodies,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The durable ceiling running as a child process of this binary.
pub struct DurableCeiling {
    child: Child,
    pub addr: SocketAddr,
}

impl DurableCeiling {
    /// Starts `trailmark-bench durable-ceiling --dir dir`: the file ceiling.
    pub fn in_file(dir: &Path) -> Result<Self, String> {
        Self::start(&["--dir".as_ref(), dir.as_os_str()])
    }

    /// Starts `trailmark-bench durable-ceiling --postgres url`: the PostgreSQL ceiling, into a
    /// database that has `postgres::PLAIN_TABLE`.
    pub fn in_postgres(url: &str) -> Result<Self, String> {
        Self::start(&["--postgres".as_ref(), url.as_ref()])
    }

    /// Starts `trailmark-bench durable-ceiling` with `args` and waits for its address.
    fn start(args: &[&std::ffi::OsStr]) -> Result<Self, String> {
        let binary = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
        let mut child = Command::new(binary)
            .arg("durable-ceiling")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the durable ceiling: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the durable ceiling's stdout was not captured")?;
        let address = crate::child::line_after(stdout, LISTENING);
        let mut ceiling = DurableCeiling {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let addr = address
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the durable ceiling did not print its address within 10 s")?;
        ceiling.addr = addr.parse().map_err(|e| {
            format!("the durable ceiling printed an unreadable address {addr:?}: {e}")
        })?;
        Ok(ceiling)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DurableCeiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
