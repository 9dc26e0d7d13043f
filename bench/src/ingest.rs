//! The ingest benchmark (`./bench/ingest`): Trailmark's ingest through its real HTTP API with
//! the realistic event of issue 13, each figure beside its ceiling measured in the same run on
//! the same machine: the disk's own synced write rate, the same server's `GET /healthz`, an
//! HTTP ceiling (the same framework answering the same requests without doing any work), the
//! durable ceiling (the same requests appended to a file and synced before the answer:
//! `durable.rs`), and SQLite's own insert rate for the same events in a plain table. Bytes
//! written to disk per event come from the server process's `/proc/<pid>/io`.
//!
//! Nothing here knows Trailmark's storage layout: the figures are about the server process and
//! the disk, so they compare one storage design with the next.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hyper::Method;
use hyper::header::HeaderValue;

use crate::ceiling::{HttpCeiling, Layout, SqliteMeasured, sqlite_ceiling};
use crate::durable::DurableCeiling;
use crate::load::{self, Check, Measured, Pacing, Plan, Prepared, Target};
use crate::payload::{EventSize, Events};
use crate::probe::{self, DiskCeiling, Sample};
use crate::server::{Trailmark, create_organization};
use crate::{
    WorkDir, busy_note, cores, filesystem_of, load_average, ms, percent, progress,
    trailmark_binary, verdict,
};

const API_KEY: &str = "sk_bench_ingest";

/// Issue 13's aims.
const AIM_WRITTEN_X: f64 = 3.0;
const AIM_STORED_X: f64 = 2.0;
const AIM_BATCH_RATE: f64 = 100_000.0;
const AIM_SINGLE_VS_HEALTHZ: f64 = 0.4;
const AIM_FIXED_P99_MS: f64 = 20.0;
/// SPEC issue 4's aim for the ledger's share of ingest.
const AIM_LEDGER_COST: f64 = 0.10;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds measured per part, after the warm-up.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Seconds of load before measuring starts, per part.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections for single-event ingest, its `/healthz`, the HTTP ceiling and the
    /// durable ceiling; one part per value.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64])]
    connections: Vec<usize>,
    /// Clients (connections) for batch ingest; one part per value.
    #[arg(long, value_delimiter = ',', default_values_t = [2, 4])]
    batch_connections: Vec<usize>,
    /// Events per batch request (Trailmark accepts up to 1,000), and per transaction in the
    /// SQLite ceiling.
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// Events per second for the fixed-rate (open-loop) latency part.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Connections available to the fixed-rate part; a due request waits when all are busy.
    #[arg(long, default_value_t = 256)]
    rate_connections: usize,
    /// The `trailmark` binary to start [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
    /// Where the data directories and the disk ceiling's file go, all on one filesystem
    /// [default: the system's temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (Trailmark's data directory as the last part left it, and its
    /// log) and print where it is, to look inside.
    #[arg(long)]
    keep: bool,
    /// Run only these parts (repeat or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Disk,
    HttpCeiling,
    Single,
    Batch,
    FixedRate,
    Sqlite,
}

/// Results gathered for the summary; a part that was not run stays empty.
#[derive(Default)]
struct Results {
    disk: Option<DiskCeiling>,
    /// Per connection count.
    http_ceiling: Vec<(usize, Measured)>,
    /// Per client count: the same framework parsing the same batch bodies and answering.
    batch_ceiling: Vec<(usize, Measured)>,
    healthz: Vec<(usize, Measured)>,
    /// Per connection count: the least a server appending to a file and syncing before it
    /// answers does.
    durable: Vec<(usize, Measured)>,
    single: Vec<(usize, Measured)>,
    batch: Vec<(usize, Measured)>,
    fixed_rate: Option<Measured>,
    stored: Option<Stored>,
    /// The SQLite ceiling with a searchable table, and with the rows alone.
    sqlite: Option<SqliteMeasured>,
    sqlite_log: Option<SqliteMeasured>,
}

/// Trailmark's totals once its parts are over and its writes have settled.
struct Stored {
    events: u64,
    /// Bytes the server wrote from just before its first part until its writes settled.
    written: u64,
    /// Every file under the data directory, largest first.
    files: Vec<(PathBuf, u64)>,
    /// How long the settling took, and whether writes stopped within the limit.
    settled_after: Duration,
    settled: bool,
}

impl Stored {
    fn database_bytes(&self) -> u64 {
        self.files.iter().map(|(_, len)| len).sum()
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    check(args)?;
    let began = Instant::now();
    let wants = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let mut work = WorkDir::create(args.work_dir.as_deref())?;
    work.keep = args.keep;
    let size = EventSize::measure();
    let events = Events::new();

    println!("Trailmark ingest benchmark");
    let load = load_average();
    println!(
        "  machine: {} cores, shared by the load generator, the server under test and SQLite; \
         load average {} at the start{}",
        cores(),
        load.map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        busy_note(load)
    );
    println!(
        "  work dir: {} ({})",
        work.path.display(),
        filesystem_of(&work.path)
    );
    println!(
        "  event: {:.0} bytes of JSON on average ({}-{}): two targets, three metadata values, a \
         browser user agent, a location; actors from {} users, targets from {} documents in {} \
         workspaces",
        size.mean,
        size.min,
        size.max,
        crate::payload::USERS,
        crate::payload::DOCUMENTS,
        crate::payload::WORKSPACES
    );
    let mut example = String::new();
    events.event(&mut example, 0, &crate::payload::now_iso());
    println!("  e.g. ({} B) {example}", example.len());
    println!(
        "  each part: {:.1}s warm-up, then {:.1}s measured; single-event with {:?} connections, \
         batch {:?} clients x {} events, fixed rate {}/s",
        args.warmup,
        args.duration,
        args.connections,
        args.batch_connections,
        args.batch_size,
        args.rate
    );
    println!();

    let mut results = Results::default();
    let mut table = Table::new(size.mean);

    if wants(Part::Disk) {
        progress(&format!(
            "disk ceiling: 1 MiB sequential writes in the work dir, each followed by fdatasync, \
             for {:.1}s; then without sync",
            args.duration
        ));
        let disk = probe::disk_ceiling(&work.path, duration)?;
        println!(
            "    synced {:.1} MB/s, unsynced {:.0} MB/s (its fdatasync after: {:.2}s)",
            disk.synced / 1e6,
            disk.unsynced / 1e6,
            disk.unsynced_flush.as_secs_f64()
        );
        results.disk = Some(disk);
    }

    // The generator gets one worker per core, as the servers do; all of them compete for the
    // same cores, which is why only ratios between parts are meant to be read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()
        .map_err(|e| format!("starting the load generator's runtime: {e}"))?;
    let plan = |connections, pacing, probe| Plan {
        connections,
        warmup,
        duration,
        pacing,
        probe,
    };

    if wants(Part::HttpCeiling) {
        let ceiling = HttpCeiling::start()?;
        for &connections in &args.connections {
            progress(&format!(
                "HTTP ceiling: axum, same route and body, parses JSON, answers 200; {connections} \
                 connections"
            ));
            let target = Target {
                addr: ceiling.addr,
                method: Method::POST,
                path: "/audit_logs/events",
                bearer: None,
                check: Check::Status200,
                make: {
                    let events = Arc::clone(&events);
                    Arc::new(move || events.single("org_01KBENCH0000000000000000000"))
                },
            };
            let measured =
                runtime.block_on(load::run(target, plan(connections, Pacing::Closed, None)))?;
            table.http("HTTP ceiling (axum, no work)", connections, &measured);
            results.http_ceiling.push((connections, measured));
        }
        let size = args.batch_size;
        for &clients in &args.batch_connections {
            progress(&format!(
                "HTTP batch ceiling: axum, same route and bodies ({size} events), parses JSON, \
                 answers one item per event; {clients} clients"
            ));
            let target = Target {
                addr: ceiling.addr,
                method: Method::POST,
                path: "/audit_logs/events/batch",
                bearer: None,
                check: Check::BatchItems,
                make: {
                    let events = Arc::clone(&events);
                    Arc::new(move || events.batch("org_01KBENCH0000000000000000000", size))
                },
            };
            let measured =
                runtime.block_on(load::run(target, plan(clients, Pacing::Closed, None)))?;
            table.http(&format!("HTTP batch ceiling x{size}"), clients, &measured);
            results.batch_ceiling.push((clients, measured));
        }
    }

    if wants(Part::Single) || wants(Part::Batch) || wants(Part::FixedRate) {
        let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
        let data_dir = work.path.join("trailmark-data");
        let mut trailmark = Trailmark::start(&binary, &data_dir, API_KEY)?;
        progress(&format!(
            "Trailmark: {} serve on {} (data in {}, pid {})",
            binary.display(),
            trailmark.addr,
            data_dir.display(),
            trailmark.pid()
        ));
        let organization = runtime.block_on(create_organization(trailmark.addr, API_KEY))?;
        let server = probe::processes(vec![trailmark.pid()]);
        let first = probe::process(trailmark.pid())?;
        let bearer = HeaderValue::from_str(&format!("Bearer {API_KEY}"))
            .map_err(|e| format!("API key header: {e}"))?;
        let single_target = Target {
            addr: trailmark.addr,
            method: Method::POST,
            path: "/audit_logs/events",
            bearer: Some(bearer.clone()),
            check: Check::Status200,
            make: {
                let events = Arc::clone(&events);
                let organization = organization.clone();
                Arc::new(move || events.single(&organization))
            },
        };
        let healthz_target = Target {
            method: Method::GET,
            path: "/healthz",
            bearer: None,
            make: Arc::new(|| Prepared {
                body: bytes::Bytes::new(),
                idempotency_key: None,
                events: 1,
            }),
            ..single_target.clone()
        };
        let mut stored = 0;

        if wants(Part::Single) {
            let durable_dir = work.path.join("durable-ceiling");
            std::fs::create_dir_all(&durable_dir)
                .map_err(|e| format!("creating {}: {e}", durable_dir.display()))?;
            let durable = DurableCeiling::in_file(&durable_dir)?;
            let durable_target = Target {
                addr: durable.addr,
                bearer: None,
                ..single_target.clone()
            };
            for &connections in &args.connections {
                progress(&format!(
                    "Trailmark GET /healthz, {connections} connections, closed loop"
                ));
                let measured = runtime.block_on(load::run(
                    healthz_target.clone(),
                    plan(connections, Pacing::Closed, Some(server.clone())),
                ))?;
                table.http("Trailmark GET /healthz", connections, &measured);
                results.healthz.push((connections, measured));

                // What Trailmark still writes behind its last part would slow the ceiling.
                if !settle(trailmark.pid())?.2 {
                    table.note(&format!(
                        "Trailmark was still writing when the durable ceiling's {connections}-connection part began"
                    ));
                }
                progress(&format!(
                    "durable ceiling: axum, same route and body, parses JSON, appends it to a \
                     file with group commit (write + fdatasync), answers 200; {connections} \
                     connections"
                ));
                let measured = runtime.block_on(load::run(
                    durable_target.clone(),
                    plan(
                        connections,
                        Pacing::Closed,
                        Some(probe::processes(vec![durable.pid()])),
                    ),
                ))?;
                table.http("durable ceiling (fdatasync)", connections, &measured);
                results.durable.push((connections, measured));

                progress(&format!(
                    "Trailmark single-event ingest, {connections} connections, closed loop"
                ));
                let measured = runtime.block_on(load::run(
                    single_target.clone(),
                    plan(connections, Pacing::Closed, Some(server.clone())),
                ))?;
                table.http("Trailmark single-event", connections, &measured);
                stored += measured.stored;
                results.single.push((connections, measured));
            }
        }
        if wants(Part::Batch) {
            let size = args.batch_size;
            let target = Target {
                path: "/audit_logs/events/batch",
                check: Check::BatchItems,
                make: {
                    let events = Arc::clone(&events);
                    let organization = organization.clone();
                    Arc::new(move || events.batch(&organization, size))
                },
                ..single_target.clone()
            };
            for &clients in &args.batch_connections {
                progress(&format!(
                    "Trailmark batch ingest, {clients} clients x {size} events a request, closed \
                     loop"
                ));
                let measured = runtime.block_on(load::run(
                    target.clone(),
                    plan(clients, Pacing::Closed, Some(server.clone())),
                ))?;
                table.http(&format!("Trailmark batch x{size}"), clients, &measured);
                stored += measured.stored;
                results.batch.push((clients, measured));
            }
        }
        if wants(Part::FixedRate) {
            progress(&format!(
                "Trailmark single-event ingest, open loop at {}/s",
                args.rate
            ));
            let measured = runtime.block_on(load::run(
                single_target,
                plan(
                    args.rate_connections,
                    Pacing::Open { rate: args.rate },
                    Some(server.clone()),
                ),
            ))?;
            table.http(
                &format!("Trailmark fixed {}/s", args.rate),
                args.rate_connections,
                &measured,
            );
            if let Some(note) = load::lag_note(&measured) {
                table.note(&format!("fixed rate: {note}"));
            }
            stored += measured.stored;
            results.fixed_rate = Some(measured);
        }
        if !trailmark.still_running() {
            return Err(format!(
                "trailmark exited during the run; its log:\n{}",
                trailmark.log_tail()
            ));
        }
        progress("waiting for Trailmark's writes to settle (no write for 1s, at most 20s)");
        let (last, settled_after, settled) = settle(trailmark.pid())?;
        results.stored = Some(Stored {
            events: stored,
            written: last.since(&first).written,
            files: probe::files_under(&data_dir),
            settled_after,
            settled,
        });
        let failed = [&results.single, &results.batch]
            .iter()
            .flat_map(|parts| parts.iter().map(|(_, m)| m))
            .chain(results.fixed_rate.as_ref())
            .any(|m| m.errors > 0);
        if failed {
            table.note(&format!(
                "Trailmark's log ({}), last lines:\n{}",
                trailmark.log.display(),
                trailmark.log_tail()
            ));
        }
    }
    drop(runtime);

    if wants(Part::Sqlite) {
        for layout in [Layout::Indexed, Layout::LogOnly] {
            progress(&format!(
                "SQLite ceiling: plain table, WAL synchronous=FULL, {} events per commit, {}",
                args.batch_size,
                match layout {
                    Layout::Indexed => "indexed by sequence, id, actor and time",
                    Layout::LogOnly => "the rows alone (no index)",
                }
            ));
            let measured = sqlite_ceiling(
                &work.path,
                &events,
                args.batch_size,
                layout,
                warmup,
                duration,
            )?;
            table.sqlite(
                &format!(
                    "SQLite ceiling x{}, {}",
                    args.batch_size,
                    match layout {
                        Layout::Indexed => "indexed",
                        Layout::LogOnly => "log only",
                    }
                ),
                &measured,
            );
            match layout {
                Layout::Indexed => results.sqlite = Some(measured),
                Layout::LogOnly => results.sqlite_log = Some(measured),
            }
        }
    }

    println!();
    table.print();
    println!();
    print_summary(args, &size, &results);
    println!("The run took {:.0}s.", began.elapsed().as_secs_f64());
    if args.keep {
        println!("kept: {}", work.path.display());
    }
    Ok(())
}

/// Samples the server until its `write_bytes` has not moved for a second (at most 20 s): what
/// it still writes for events already acknowledged (a checkpoint, an index built behind the
/// log) belongs to them.
fn settle(pid: u32) -> Result<(Sample, Duration, bool), String> {
    let started = Instant::now();
    let mut last = probe::process(pid)?;
    let mut still_since = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        let now = probe::process(pid)?;
        if now.written != last.written {
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(1) {
            return Ok((now, started.elapsed(), true));
        }
        last = now;
    }
    Ok((last, started.elapsed(), false))
}

fn check(args: &Args) -> Result<(), String> {
    let positive = |name: &str, value: f64| {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(format!("--{name} must be a positive number"))
        }
    };
    positive("duration", args.duration)?;
    positive("rate", args.rate)?;
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        return Err("--warmup must be zero or more seconds".into());
    }
    if args.connections.contains(&0) || args.batch_connections.contains(&0) {
        return Err("connection counts must be at least 1".into());
    }
    if args.rate_connections == 0 {
        return Err("--rate-connections must be at least 1".into());
    }
    if !(1..=1000).contains(&args.batch_size) {
        return Err("--batch-size must be 1 to 1000 (Trailmark's limit)".into());
    }
    Ok(())
}

struct Table {
    rows: Vec<String>,
    notes: Vec<String>,
    event_bytes: f64,
}

impl Table {
    fn new(event_bytes: f64) -> Self {
        Table {
            rows: vec![
                format!(
                    "{:<32} {:>5} {:>9} {:>10} {:>8} {:>8} {:>8} {:>6} {:>9} {:>6} {:>6}",
                    "part",
                    "conns",
                    "requests",
                    "events/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "failed",
                    "wrote B/e",
                    "xJSON",
                    "cores"
                ),
                "-".repeat(120),
            ],
            notes: Vec::new(),
            event_bytes,
        }
    }

    fn http(&mut self, name: &str, connections: usize, m: &Measured) {
        // Bytes per event only where events were stored; cores = the server's CPU seconds per
        // second of the window.
        let per_event = m
            .probed
            .filter(|_| m.events > 0 && !name.contains("healthz"))
            .map(|p| p.written as f64 / m.events as f64);
        let row = format!(
            "{:<32} {:>5} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>6} {:>9} {:>6} {:>6}",
            name,
            connections,
            m.requests,
            m.per_second(m.events),
            ms(m.percentile_ms(0.50)),
            ms(m.percentile_ms(0.99)),
            ms(m.max_ms()),
            m.errors,
            per_event.map_or_else(|| "-".into(), |b| format!("{b:.0}")),
            per_event.map_or_else(|| "-".into(), |b| format!("{:.1}", b / self.event_bytes)),
            m.probed.map_or_else(
                || "-".into(),
                |p| format!("{:.2}", p.cpu / m.window.as_secs_f64())
            ),
        );
        println!("   {row}");
        self.rows.push(row);
        for (kind, count) in &m.error_kinds {
            self.note(&format!("{name}: {count} x {kind}"));
        }
    }

    fn sqlite(&mut self, name: &str, m: &SqliteMeasured) {
        let p = |q: f64| {
            let n = m.commits_us.len();
            (n > 0).then(|| {
                m.commits_us[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0
            })
        };
        let per_row = (m.rows > 0).then(|| m.probed.written as f64 / m.rows as f64);
        let row = format!(
            "{:<32} {:>5} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>6} {:>9} {:>6} {:>6}",
            name,
            1,
            m.commits_us.len(),
            m.rate(),
            ms(p(0.50)),
            ms(p(0.99)),
            ms(m.commits_us.last().map(|&us| us as f64 / 1000.0)),
            0,
            per_row.map_or_else(|| "-".into(), |b| format!("{b:.0}")),
            per_row.map_or_else(|| "-".into(), |b| format!("{:.1}", b / self.event_bytes)),
            format!("{:.2}", m.probed.cpu / m.window.as_secs_f64()),
        );
        println!("   {row}");
        self.rows.push(row);
    }

    fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }

    fn print(&self) {
        for row in &self.rows {
            println!("{row}");
        }
        println!(
            "(requests, events/s and latencies count answers received in the measured window; for \
             the SQLite ceiling a request is one transaction, its latency BEGIN to COMMIT \
             returned; failed = events not accepted, over the whole part; wrote B/e = bytes the \
             server process wrote to storage in the window (/proc/<pid>/io write_bytes) per event \
             acknowledged in it, xJSON = that over the event's JSON size; cores = the server's \
             CPU time over the window (for the SQLite ceiling, the bench process's))"
        );
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}

fn print_summary(args: &Args, size: &EventSize, r: &Results) {
    let event = size.mean;
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<24}{text}");
    };
    line(
        "event",
        format!(
            "{event:.0} B of JSON (mean; {}-{}), the size every per-event byte count below is \
             compared with",
            size.min, size.max
        ),
    );
    // Events per second the disk's synced sequential rate allows at `bytes` per event.
    let disk_allows = |bytes: f64| r.disk.as_ref().map(|d| d.synced / bytes);
    if let Some(disk) = &r.disk {
        line(
            "disk ceiling",
            format!(
                "synced {:.1} MB/s (1 MiB writes + fdatasync) = {:.0} ev/s at {event:.0} B, {:.0} \
                 ev/s at 3x ({:.0} B); unsynced {:.0} MB/s",
                disk.synced / 1e6,
                disk.synced / event,
                disk.synced / (AIM_WRITTEN_X * event),
                AIM_WRITTEN_X * event,
                disk.unsynced / 1e6
            ),
        );
    }

    if !r.batch.is_empty() {
        line(
            "batch ingest",
            format!("aim >= {AIM_BATCH_RATE:.0} ev/s on SQLite"),
        );
        for (clients, m) in &r.batch {
            let rate = m.per_second(m.events);
            let mut text = format!(
                "{rate:>8.0} ev/s  p50 {} ms a call",
                ms(m.percentile_ms(0.50))
            );
            if let Some((_, ceiling)) = r.batch_ceiling.iter().find(|(c, _)| c == clients) {
                let allowed = ceiling.per_second(ceiling.events);
                let _ = write!(
                    text,
                    "  = {} of the HTTP batch ceiling ({allowed:.0} ev/s: parse and answer only)",
                    percent(rate, allowed)
                );
            }
            if let Some(allowed) = disk_allows(AIM_WRITTEN_X * event) {
                let _ = write!(
                    text,
                    "; {} of the disk ceiling at 3x ({allowed:.0} ev/s)",
                    percent(rate, allowed)
                );
            }
            if let (Some(p), Some(disk)) = (m.probed, &r.disk)
                && m.events > 0
                && p.written > 0
            {
                let bytes = p.written as f64 / m.events as f64;
                let _ = write!(
                    text,
                    "; at its own {bytes:.0} B/event the disk allows {:.0} ev/s",
                    disk.synced / bytes
                );
            }
            let _ = write!(text, "   {}", verdict(rate >= AIM_BATCH_RATE));
            line(&format!("  {clients} clients x{}", args.batch_size), text);
        }
    }

    if !r.single.is_empty() {
        line(
            "single-event ingest",
            format!(
                "aim >= {AIM_SINGLE_VS_HEALTHZ}x the same server's GET /healthz at the same \
                 connections"
            ),
        );
        for (connections, m) in &r.single {
            let rate = m.per_second(m.events);
            let mut text = format!(
                "{rate:>8.0} ev/s  p50 {} ms  p99 {} ms",
                ms(m.percentile_ms(0.50)),
                ms(m.percentile_ms(0.99))
            );
            let healthz = r
                .healthz
                .iter()
                .find(|(c, _)| c == connections)
                .map(|(_, h)| h.per_second(h.requests));
            if let Some(healthz) = healthz {
                let _ = write!(
                    text,
                    "  = {:.2}x /healthz ({healthz:.0} req/s)",
                    rate / healthz
                );
            }
            if let Some((_, ceiling)) = r.http_ceiling.iter().find(|(c, _)| c == connections) {
                let _ = write!(
                    text,
                    "; HTTP ceiling {:.0} req/s",
                    ceiling.per_second(ceiling.requests)
                );
            }
            // A ceiling that failed bounds nothing.
            let durable = r
                .durable
                .iter()
                .find(|(c, d)| c == connections && d.errors == 0 && d.events > 0)
                .map(|(_, d)| d.per_second(d.events));
            if let Some(durable) = durable {
                let _ = write!(
                    text,
                    "; durable ceiling {durable:.0} ev/s{}, Trailmark {} of it",
                    healthz
                        .map_or_else(String::new, |h| format!(" = {:.2}x /healthz", durable / h)),
                    percent(rate, durable)
                );
            }
            if let Some(healthz) = healthz {
                let aim = AIM_SINGLE_VS_HEALTHZ * healthz;
                let _ = write!(text, "   {}", verdict(rate >= aim));
                if rate < aim && durable.is_some_and(|d| d < aim) {
                    text.push_str(
                        " (bounded here: no server appending to a growing file and syncing \
                         before it answers reaches the aim)",
                    );
                }
            }
            line(&format!("  {connections} connections"), text);
        }
    }

    if let Some(fixed) = &r.fixed_rate {
        let p99 = fixed.percentile_ms(0.99);
        line(
            &format!("fixed {}/s", args.rate),
            format!(
                "p50 {} ms  p99 {} ms  max {} ms  (achieved {:.0} ev/s); aim p99 < \
                 {AIM_FIXED_P99_MS} ms: {}",
                ms(fixed.percentile_ms(0.50)),
                ms(p99),
                ms(fixed.max_ms()),
                fixed.per_second(fixed.events),
                verdict(p99.is_some_and(|p| p < AIM_FIXED_P99_MS))
            ),
        );
    }

    let written: Vec<(String, &Measured)> = r
        .single
        .iter()
        .map(|(c, m)| (format!("single-event, {c} conns"), m))
        .chain(
            r.batch
                .iter()
                .map(|(c, m)| (format!("batch, {c} clients"), m)),
        )
        .chain(
            r.fixed_rate
                .iter()
                .map(|m| (format!("fixed {}/s", args.rate), m)),
        )
        .collect();
    if !written.is_empty() {
        line(
            "bytes written/event",
            format!(
                "aim <= {AIM_WRITTEN_X}x the event's JSON ({:.0} B); server write_bytes over \
                 the window / events acknowledged in it",
                AIM_WRITTEN_X * event
            ),
        );
        let written_per_event = |m: &Measured| {
            m.probed
                .filter(|_| m.events > 0)
                .map(|p| p.written as f64 / m.events as f64)
        };
        for (name, m) in written {
            let Some(bytes) = written_per_event(m) else {
                continue;
            };
            line(
                &format!("  {name}"),
                format!(
                    "{bytes:>8.0} B = {:>5.1}x   {}",
                    bytes / event,
                    verdict(bytes <= AIM_WRITTEN_X * event)
                ),
            );
        }
        for (connections, m) in &r.durable {
            let Some(bytes) = written_per_event(m) else {
                continue;
            };
            line(
                &format!("  durable ceiling, {connections} conns"),
                format!(
                    "{bytes:>8.0} B = {:>5.1}x   (what the ceiling dirtied: the bodies, and the \
                     file's last page again for each group's fdatasync)",
                    bytes / event
                ),
            );
        }
        if let Some(stored) = &r.stored
            && stored.events > 0
        {
            let bytes = stored.written as f64 / stored.events as f64;
            line(
                "  whole run",
                format!(
                    "{bytes:>8.0} B = {:>5.1}x   {}  (every byte the server wrote from its first \
                     part until its writes {} {:.1}s after the last, over all {} events stored)",
                    bytes / event,
                    verdict(bytes <= AIM_WRITTEN_X * event),
                    if stored.settled {
                        "stopped"
                    } else {
                        "were still going"
                    },
                    stored.settled_after.as_secs_f64(),
                    stored.events
                ),
            );
        }
    }
    if let Some(stored) = &r.stored
        && stored.events > 0
    {
        let bytes = stored.database_bytes() as f64 / stored.events as f64;
        let largest: Vec<String> = stored
            .files
            .iter()
            .take(4)
            .map(|(path, len)| format!("{} {:.1} MB", path.display(), *len as f64 / 1e6))
            .collect();
        line(
            "database bytes/event",
            format!(
                "{bytes:.0} B = {:.1}x; aim <= {AIM_STORED_X}x: {}  ({:.1} MB in {} files for {} \
                 events; largest: {})",
                bytes / event,
                verdict(bytes <= AIM_STORED_X * event),
                stored.database_bytes() as f64 / 1e6,
                stored.files.len(),
                stored.events,
                largest.join(", ")
            ),
        );
    }

    let per_row = |m: &SqliteMeasured| m.probed.written as f64 / m.rows.max(1) as f64;
    let stored_row = |m: &SqliteMeasured| m.database_bytes as f64 / m.stored.max(1) as f64;
    for (label, measured) in [
        ("SQLite ceiling", &r.sqlite),
        ("  log only (no index)", &r.sqlite_log),
    ] {
        let Some(m) = measured else { continue };
        let mut text = format!(
            "{:>8.0} rows/s ({} a commit); wrote {:.0} B/row = {:.1}x; database {:.0} B/row = \
             {:.1}x",
            m.rate(),
            args.batch_size,
            per_row(m),
            per_row(m) / event,
            stored_row(m),
            stored_row(m) / event
        );
        if let Some((clients, batch)) = r.batch.last() {
            let _ = write!(
                text,
                "  -> batch ingest ({clients} clients) reaches {} of it",
                percent(batch.per_second(batch.events), m.rate())
            );
        }
        line(label, text);
    }
    if let Some(sqlite) = &r.sqlite {
        let window = sqlite.window.as_secs_f64();
        let share = sqlite.ledger_time.as_secs_f64() / window;
        line(
            "ledger cost",
            format!(
                "{:.1}% of the SQLite ceiling's time ({:.1} us an event: its event object, leaf \
                 hash and frontier append); aim < {:.0}%: {}",
                100.0 * share,
                1e6 * sqlite.ledger_time.as_secs_f64() / sqlite.rows.max(1) as f64,
                100.0 * AIM_LEDGER_COST,
                verdict(share < AIM_LEDGER_COST)
            ),
        );
    }

    let failures: Vec<String> = r
        .http_ceiling
        .iter()
        .map(|(c, m)| (format!("HTTP ceiling x{c}"), m))
        .chain(r.healthz.iter().map(|(c, m)| (format!("/healthz x{c}"), m)))
        .chain(
            r.single
                .iter()
                .map(|(c, m)| (format!("single-event x{c}"), m)),
        )
        .chain(r.batch.iter().map(|(c, m)| (format!("batch x{c}"), m)))
        .chain(r.fixed_rate.iter().map(|m| ("fixed rate".to_owned(), m)))
        .map(|(name, m)| format!("{name} {}", m.errors))
        .collect();
    if !failures.is_empty() {
        line("failed events", failures.join(", "));
    }
    println!("Summary (issue 13's aims beside ceilings measured in this run)");
    print!("{out}");
    let load = load_average();
    println!(
        "\nThe load generator runs on the same {} cores as the servers and SQLite (the HTTP ceiling \
         even in its process, on its own threads): absolute numbers understate a dedicated \
         machine; the ratios are the result. Load average at the end: {}{}.",
        cores(),
        load.map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        busy_note(load)
    );
}
