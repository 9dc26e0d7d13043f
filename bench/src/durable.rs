//! The durable ceiling: the least any server must do to answer an event only once it is on
//! disk. It parses the request's JSON as the HTTP ceiling does, then appends the body to one
//! file with group commit (one thread takes every body waiting, writes them with one `write`
//! and `fdatasync`s once) and answers `{"success":true}` after the sync. No validation,
//! sequence, idempotency, index or ledger: whatever Trailmark does beyond this is its own cost,
//! and no design of a durable single-event ingest on this machine and framework can exceed it.
//!
//! It runs as a child process of the bench (`trailmark-bench durable-ceiling`, hidden), so its
//! CPU and `write_bytes` are measured from `/proc/<pid>` as Trailmark's are.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use tokio::sync::oneshot;

/// Bodies waiting for the writer before handlers wait too, as in Trailmark's log writer.
const QUEUE_DEPTH: usize = 8_192;
/// A group stops growing at this many bodies, as Trailmark's does at this many events.
const MAX_PER_COMMIT: usize = 16_384;

#[derive(clap::Args)]
pub struct Args {
    /// The directory the ceiling's file is created in.
    #[arg(long)]
    dir: PathBuf,
}

type Job = (bytes::Bytes, oneshot::Sender<()>);

/// Serves until killed; prints `durable ceiling listening on ADDR` once it listens.
pub fn serve(args: &Args) -> Result<(), String> {
    let path = args.dir.join("durable-ceiling.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(QUEUE_DEPTH);
    std::thread::Builder::new()
        .name("durable-writer".into())
        .spawn(move || write_groups(file, queue))
        .map_err(|e| format!("durable ceiling writer: {e}"))?;
    // Same runtime shape as Trailmark's `main`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("durable ceiling runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the durable ceiling: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("durable ceiling address: {e}"))?;
        println!("durable ceiling listening on {addr}");
        std::io::stdout()
            .flush()
            .map_err(|e| format!("printing the address: {e}"))?;
        let app = Router::new()
            .route("/audit_logs/events", post(accept))
            .with_state(jobs);
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
    let parsed: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    std::hint::black_box(parsed);
    let (reply, written) = oneshot::channel();
    jobs.send((body, reply))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    written.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(([(CONTENT_TYPE, "application/json")], r#"{"success":true}"#))
}

/// Group commit: every body waiting, length-prefixed, in one write, then one `fdatasync`; then
/// every caller of the group is answered. A failed write ends the process: a ceiling that
/// cannot write measures nothing.
fn write_groups(mut file: std::fs::File, mut queue: tokio::sync::mpsc::Receiver<Job>) {
    let mut buffer = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        buffer.clear();
        for (body, _) in &group {
            buffer.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buffer.extend_from_slice(body);
        }
        if let Err(error) = file.write_all(&buffer).and_then(|()| file.sync_data()) {
            eprintln!("durable ceiling: writing failed: {error}");
            std::process::exit(1);
        }
        for (_, reply) in group {
            let _ = reply.send(());
        }
    }
}

/// The durable ceiling running as a child process of this binary.
pub struct DurableCeiling {
    child: Child,
    pub addr: SocketAddr,
}

impl DurableCeiling {
    /// Starts `trailmark-bench durable-ceiling --dir dir` and waits for its address.
    pub fn start(dir: &Path) -> Result<Self, String> {
        let binary = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
        let mut child = Command::new(binary)
            .args(["durable-ceiling", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the durable ceiling: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the durable ceiling's stdout was not captured")?;
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = found.send(line);
            }
            // Keep reading so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut ceiling = DurableCeiling {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = address
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the durable ceiling did not print its address within 10 s")?;
        ceiling.addr = line
            .strip_prefix("durable ceiling listening on ")
            .and_then(|addr| addr.trim().parse().ok())
            .ok_or_else(|| format!("the durable ceiling printed {line:?}, not its address"))?;
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
