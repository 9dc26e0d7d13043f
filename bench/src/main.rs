//! `trailmark-bench`: Trailmark measured through its real HTTP API and CLI beside ceilings
//! measured in the same run on the same machine, so that the ratios mean something
//! (SPEC §6; see bench/README.md).
//!
//! - `ingest` (`./bench/ingest`): ingest of a realistic event beside the disk's own synced write
//!   rate, the same server's `/healthz`, an HTTP ceiling (the same framework answering without
//!   doing any work) and SQLite's own insert rate for the same events in a plain table, with the
//!   bytes written to disk per event.
//! - `read` (`./bench/read`): search, export, proofs and verify on a store of a million events,
//!   beside raw scans of the same SQLite file.
//! - `postgres` (`./bench/postgres`): ingest over PostgreSQL with one and two instances, one
//!   and eight organizations, beside PostgreSQL's own multi-row insert rate for the same events
//!   in a plain table, with WAL and database bytes per event.
//! - `delivery` (`./bench/delivery`): a log stream's delivery rate from a backlog and its lag
//!   under steady ingest, beside the local receiver's own accept rate.

mod ceiling;
mod child;
mod client;
mod dataset;
mod delivery;
mod durable;
mod ingest;
mod load;
mod payload;
mod postgres;
mod probe;
mod raw;
mod read;
mod relay;
mod search;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Trailmark benchmarks: ratios against ceilings measured in the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest through the HTTP API beside the disk, /healthz, HTTP and SQLite ceilings.
    Ingest(ingest::Args),
    /// Search, export, ledger proofs and verify on a large store beside raw scans.
    Read(read::Args),
    /// Ingest over PostgreSQL, one and two instances, beside PostgreSQL's multi-row inserts.
    Postgres(postgres::Args),
    /// A log stream's delivery rate and lag to a local HTTP receiver beside the receiver's own rate.
    Delivery(delivery::Args),
    /// The durable ceiling's server, which `ingest` starts as a child process.
    #[command(hide = true)]
    DurableCeiling(durable::Args),
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Ingest(args) => ingest::run(&args),
        Command::Read(args) => read::run(&args),
        Command::Postgres(args) => postgres::run(&args),
        Command::Delivery(args) => delivery::run(&args),
        Command::DurableCeiling(args) => durable::serve(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The `trailmark` binary to run: the one given, or the one beside this binary (where
/// `bench/ingest` and `bench/read` have cargo put it).
fn trailmark_binary(given: Option<&Path>) -> Result<PathBuf, String> {
    let binary = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("locating this binary: {e}"))?
            .with_file_name("trailmark"),
    };
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} does not exist: build it (`cargo build --release --bin trailmark`) or pass \
             --trailmark-bin",
            binary.display()
        ))
    }
}

/// Prints a step, with the seconds since the first step: where a run's time goes.
fn progress(what: &str) {
    static FIRST: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let since = FIRST.get_or_init(std::time::Instant::now).elapsed();
    println!("-> [{:>4.0}s] {what}", since.as_secs_f64());
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A fresh directory for this run's databases, removed when the run ends however it ends
/// (unless `keep` is set).
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(parent: Option<&Path>) -> Result<Self, String> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("trailmark-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(WorkDir { path, keep: false })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The filesystem type holding `path`, from /proc/mounts: fsync on tmpfs is free, so a reader
/// of the storage figures needs to know.
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "filesystem unknown".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "filesystem unknown".into(), |(_, what)| what)
}

/// The load average over the last minute, from /proc/loadavg: another build on the same cores
/// shows up here, and a reader of the figures needs to know.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The share of all cores' time spent busy (not idle or waiting for I/O) over `window`, from
/// /proc/stat: another build on the same machine shows up here before the bench starts.
fn machine_busy(window: Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4)?;
        Some((fields.iter().sum(), idle))
    }
    let (total_before, idle_before) = sample()?;
    std::thread::sleep(window);
    let (total, idle) = sample()?;
    let elapsed = total.checked_sub(total_before)?;
    (elapsed > 0).then(|| 1.0 - (idle - idle_before) as f64 / elapsed as f64)
}

/// A warning for a report when other work shares the cores (load average at least half the
/// cores): every figure, the ceilings' too, is then lower than on an idle machine, and not
/// evenly.
fn busy_note(load: Option<f64>) -> String {
    match load {
        Some(load) if load >= cores() as f64 * 0.5 => format!(
            " (BUSY: other work shares the cores, {load:.2} on {}: every figure, the ceilings' \
             too, is lower than on an idle machine, and not evenly)",
            cores()
        ),
        _ => String::new(),
    }
}

/// How an aim fares, for the summaries.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "n/a".into()
    }
}
