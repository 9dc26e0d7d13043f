//! The ingest benchmark (`./bench/ingest`): Trailmark's ingest through its real HTTP API, beside
//! an HTTP ceiling (the same framework answering the same requests without doing any work) and a
//! storage ceiling (raw batched inserts of the same rows into the same SQLite, with and without
//! the ledger's work), all measured in one run on one machine.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use hyper::header::HeaderValue;

use crate::ceiling::{
    HttpCeiling, IdempotencyRows, StorageMeasured, StorageShape, storage_ceiling,
};
use crate::load::{self, Check, Measured, Pacing, Plan, Target};
use crate::payload::Events;
use crate::server::{Trailmark, create_organization};
use crate::{WorkDir, cores, filesystem_of, load_average, ms, percent, progress, trailmark_binary};

const API_KEY: &str = "sk_bench_ingest";

#[derive(clap::Args)]
pub struct Args {
    /// Seconds measured per part, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts, per part.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent keep-alive connections for single-event ingest and the HTTP ceiling.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Concurrent connections for batch ingest.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Events per batch request (Trailmark accepts up to 1,000).
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// Events per second for the fixed-rate (open-loop) latency part.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Connections available to the fixed-rate part; a due request waits when all are busy.
    #[arg(long, default_value_t = 256)]
    rate_connections: usize,
    /// Events (each with its idempotency row) per transaction in the storage ceiling.
    #[arg(long, default_value_t = 500)]
    storage_batch: u64,
    /// The `trailmark` binary to start [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
    /// Where the databases go; the storage ceiling and Trailmark share it [default: the
    /// system's temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Run only these parts (repeat or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    HttpCeiling,
    Single,
    Batch,
    FixedRate,
    Storage,
}

/// Results gathered for the summary; a part that was not run stays `None`.
#[derive(Default)]
struct Results {
    http_ceiling: Option<Measured>,
    single: Option<Measured>,
    batch: Option<Measured>,
    fixed_rate: Option<Measured>,
    storage: Option<StorageMeasured>,
    storage_grouped: Option<StorageMeasured>,
    storage_batch: Option<StorageMeasured>,
    /// The same as `storage` and `storage_batch` without the ledger's work: their difference
    /// is what the ledger costs at the storage ceiling (SPEC issue 4).
    storage_no_ledger: Option<StorageMeasured>,
    storage_batch_no_ledger: Option<StorageMeasured>,
}

pub fn run(args: &Args) -> Result<(), String> {
    check(args)?;
    let wants = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let work = WorkDir::create(args.work_dir.as_deref())?;

    println!("Trailmark ingest benchmark");
    println!(
        "  machine: {} cores, shared by the load generator, the server under test and SQLite; \
         load average {} at the start",
        cores(),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
    );
    println!(
        "  work dir: {} ({})",
        work.path.display(),
        filesystem_of(&work.path)
    );
    println!(
        "  each part: {:.1}s warm-up, then {:.1}s measured; closed loop uses {} connections, \
         batch {} x {} events, fixed rate {}/s",
        args.warmup,
        args.duration,
        args.connections,
        args.batch_connections,
        args.batch_size,
        args.rate
    );
    println!();

    // The generator gets one worker per core, as the servers do; all of them compete for the
    // same cores, which is why only ratios between parts are meant to be read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()
        .map_err(|e| format!("starting the load generator's runtime: {e}"))?;
    let events = Events::new();
    let closed = |connections| Plan {
        connections,
        warmup,
        duration,
        pacing: Pacing::Closed,
    };
    let mut results = Results::default();
    let mut table = Table::new();

    if wants(Part::HttpCeiling) {
        progress("HTTP ceiling: axum, same route and body, parses JSON, answers 200");
        let ceiling = HttpCeiling::start()?;
        let target = Target {
            addr: ceiling.addr,
            path: "/audit_logs/events",
            bearer: None,
            check: Check::Status200,
            make: {
                let events = Arc::clone(&events);
                Arc::new(move || events.single("org_01KBENCH0000000000000000000"))
            },
        };
        let measured = runtime.block_on(load::run(target, closed(args.connections)))?;
        drop(ceiling);
        table.http("HTTP ceiling (axum, no work)", args.connections, &measured);
        results.http_ceiling = Some(measured);
    }

    if wants(Part::Single) || wants(Part::Batch) || wants(Part::FixedRate) {
        let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
        let data_dir = work.path.join("trailmark-data");
        let mut trailmark = Trailmark::start(&binary, &data_dir, API_KEY)?;
        progress(&format!(
            "Trailmark: {} serve on {} (data in {})",
            binary.display(),
            trailmark.addr,
            data_dir.display()
        ));
        let organization = runtime.block_on(create_organization(trailmark.addr, API_KEY))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {API_KEY}"))
            .map_err(|e| format!("API key header: {e}"))?;
        let single_target = Target {
            addr: trailmark.addr,
            path: "/audit_logs/events",
            bearer: Some(bearer.clone()),
            check: Check::Status200,
            make: {
                let events = Arc::clone(&events);
                let organization = organization.clone();
                Arc::new(move || events.single(&organization))
            },
        };

        if wants(Part::Single) {
            progress("Trailmark single-event ingest, closed loop");
            let measured =
                runtime.block_on(load::run(single_target.clone(), closed(args.connections)))?;
            table.http("Trailmark single-event", args.connections, &measured);
            results.single = Some(measured);
        }
        if wants(Part::Batch) {
            progress(&format!(
                "Trailmark batch ingest, {} events a request, closed loop",
                args.batch_size
            ));
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
            let measured = runtime.block_on(load::run(target, closed(args.batch_connections)))?;
            table.http(
                &format!("Trailmark batch x{}", args.batch_size),
                args.batch_connections,
                &measured,
            );
            results.batch = Some(measured);
        }
        if wants(Part::FixedRate) {
            progress(&format!(
                "Trailmark single-event ingest, open loop at {}/s",
                args.rate
            ));
            let plan = Plan {
                connections: args.rate_connections,
                warmup,
                duration,
                pacing: Pacing::Open { rate: args.rate },
            };
            let measured = runtime.block_on(load::run(single_target, plan))?;
            table.http(
                &format!("Trailmark fixed {}/s", args.rate),
                args.rate_connections,
                &measured,
            );
            if let Some(note) = load::lag_note(&measured) {
                table.note(&format!("fixed rate: {note}"));
            }
            results.fixed_rate = Some(measured);
        }
        if !trailmark.still_running() {
            return Err(format!(
                "trailmark exited during the run; its log:\n{}",
                trailmark.log_tail()
            ));
        }
        let failed = [&results.single, &results.batch, &results.fixed_rate]
            .iter()
            .any(|m| m.as_ref().is_some_and(|m| m.errors > 0));
        if failed {
            table.note(&format!(
                "Trailmark's log ({}), last lines:\n{}",
                trailmark.log.display(),
                trailmark.log_tail()
            ));
        }
    }

    if wants(Part::Storage) {
        let mut measure = |name: String, shape: StorageShape, what: &str| {
            progress(&format!(
                "storage ceiling: SQLite WAL synchronous=FULL, {} events per commit, {what}",
                shape.per_commit
            ));
            let measured = storage_ceiling(&work.path, shape, warmup, duration)?;
            table.storage(&name, &measured);
            Ok::<_, String>(measured)
        };
        let per_event = StorageShape {
            per_commit: args.storage_batch,
            idempotency: IdempotencyRows::PerEvent,
            ledger: true,
        };
        results.storage = Some(measure(
            format!("storage ceiling {}/commit", args.storage_batch),
            per_event,
            "each with its idempotency row",
        )?);
        results.storage_no_ledger = Some(measure(
            format!("storage {}/commit, no ledger", args.storage_batch),
            StorageShape {
                ledger: false,
                ..per_event
            },
            "the same without the ledger (no leaf hash, no Merkle nodes, no frontier)",
        )?);
        // Single-event ingest can never put more events in one commit than there are requests
        // in flight, so the ceiling at that group size is the one it actually runs against.
        if args.connections as u64 != args.storage_batch {
            results.storage_grouped = Some(measure(
                format!("storage ceiling {}/commit", args.connections),
                StorageShape {
                    per_commit: args.connections as u64,
                    ..per_event
                },
                "each with its idempotency row (the most one commit can hold at this concurrency)",
            )?);
        }
        // A batch request stores one idempotency row for all its events, so it is compared
        // with storage doing the same, not with the per-event ceiling.
        let batch = StorageShape {
            per_commit: args.batch_size,
            idempotency: IdempotencyRows::PerCommit,
            ledger: true,
        };
        results.storage_batch = Some(measure(
            format!("storage ceiling batch {}", args.batch_size),
            batch,
            "one idempotency row for them all, as a batch request stores",
        )?);
        results.storage_batch_no_ledger = Some(measure(
            format!("storage batch {}, no ledger", args.batch_size),
            StorageShape {
                ledger: false,
                ..batch
            },
            "the same batches without the ledger",
        )?);
    }
    drop(runtime);

    println!();
    table.print();
    println!();
    print_summary(args, &results);
    Ok(())
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
    if args.connections == 0 || args.batch_connections == 0 || args.rate_connections == 0 {
        return Err("connection counts must be at least 1".into());
    }
    if !(1..=1000).contains(&args.batch_size) {
        return Err("--batch-size must be 1 to 1000 (Trailmark's limit)".into());
    }
    if args.storage_batch == 0 {
        return Err("--storage-batch must be at least 1".into());
    }
    Ok(())
}

struct Table {
    rows: Vec<String>,
    notes: Vec<String>,
}

impl Table {
    fn new() -> Self {
        Table {
            rows: vec![
                format!(
                    "{:<32} {:>6} {:>10} {:>12} {:>9} {:>9} {:>9} {:>7}",
                    "part", "conns", "requests", "events/s", "p50 ms", "p99 ms", "max ms", "failed"
                ),
                "-".repeat(101),
            ],
            notes: Vec::new(),
        }
    }

    fn http(&mut self, name: &str, connections: usize, m: &Measured) {
        let row = format!(
            "{:<32} {:>6} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>7}",
            name,
            connections,
            m.requests,
            m.per_second(m.events),
            ms(m.percentile_ms(0.50)),
            ms(m.percentile_ms(0.99)),
            ms(m.max_ms()),
            m.errors
        );
        println!("   {row}");
        self.rows.push(row);
        for (kind, count) in &m.error_kinds {
            self.note(&format!("{name}: {count} x {kind}"));
        }
    }

    fn storage(&mut self, name: &str, m: &StorageMeasured) {
        let p = |q: f64| {
            let n = m.commits_us.len();
            (n > 0).then(|| {
                m.commits_us[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0
            })
        };
        let row = format!(
            "{:<32} {:>6} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>7}",
            name,
            1,
            m.commits_us.len(),
            storage_rate(m),
            ms(p(0.50)),
            ms(p(0.99)),
            ms(m.commits_us.last().map(|&us| us as f64 / 1000.0)),
            0
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
            "(requests and latencies count answers received in the measured window; for the \
             storage ceiling a request is one transaction, its latency BEGIN to COMMIT returned; \
             failed = events not accepted, over the whole part)"
        );
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}

fn storage_rate(m: &StorageMeasured) -> f64 {
    m.rows as f64 / m.window.as_secs_f64()
}

fn print_summary(args: &Args, r: &Results) {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<22}{text}");
    };
    println!("Summary (ratios against ceilings measured in this run)");
    if let Some(single) = &r.single {
        let rate = single.per_second(single.events);
        let mut text = format!(
            "{rate:.0} ev/s  p50 {} ms  p99 {} ms",
            ms(single.percentile_ms(0.50)),
            ms(single.percentile_ms(0.99))
        );
        if let Some(ceiling) = &r.http_ceiling {
            let ceiling_rate = ceiling.per_second(ceiling.requests);
            let _ = write!(
                text,
                "   = {} of HTTP ceiling ({ceiling_rate:.0} req/s, p50 {} ms)",
                percent(rate, ceiling_rate),
                ms(ceiling.percentile_ms(0.50))
            );
        }
        line("single-event ingest", text);
    }
    let single_rate = r.single.as_ref().map(|m| m.per_second(m.events));
    let mut storage_label = "storage ceiling";
    for (measured, per_commit) in [
        (&r.storage, args.storage_batch),
        (&r.storage_grouped, args.connections as u64),
    ] {
        let Some(measured) = measured else { continue };
        let rows = storage_rate(measured);
        let mut text = format!("{rows:.0} rows/s at {per_commit} events/commit");
        if let Some(single) = single_rate {
            let _ = write!(
                text,
                "  -> Trailmark single-event reaches {} of it",
                percent(single, rows)
            );
        }
        line(storage_label, text);
        storage_label = "";
    }
    if let Some(batch) = &r.batch {
        let rate = batch.per_second(batch.events);
        let mut text = format!(
            "{rate:.0} ev/s  ({} connections x {} events, p50 {} ms a request)",
            args.batch_connections,
            args.batch_size,
            ms(batch.percentile_ms(0.50))
        );
        if let Some(storage) = &r.storage_batch {
            let rows = storage_rate(storage);
            let _ = write!(
                text,
                "  = {} of storage ceiling for batches ({rows:.0} rows/s)",
                percent(rate, rows)
            );
        }
        line("batch ingest", text);
    }
    if let Some(fixed) = &r.fixed_rate {
        line(
            &format!("fixed {}/s", args.rate),
            format!(
                "p50 {} ms  p99 {} ms  max {} ms  (achieved {:.0} ev/s)",
                ms(fixed.percentile_ms(0.50)),
                ms(fixed.percentile_ms(0.99)),
                ms(fixed.max_ms()),
                fixed.per_second(fixed.events)
            ),
        );
    }
    let failures: Vec<String> = [
        ("HTTP ceiling", &r.http_ceiling),
        ("single-event", &r.single),
        ("batch", &r.batch),
        ("fixed rate", &r.fixed_rate),
    ]
    .into_iter()
    .filter_map(|(name, m)| m.as_ref().map(|m| format!("{name} {}", m.errors)))
    .collect();
    if !failures.is_empty() {
        line("failed events", failures.join(", "));
    }
    print!("{out}");
    if let Some(text) = ledger_cost(args, r) {
        println!("ledger cost at the storage ceiling: {text}");
    }
    println!(
        "\nThe load generator runs on the same {} cores as the servers and SQLite (the HTTP ceiling \
         even in its process, on its own threads): absolute numbers understate a dedicated \
         machine; the ratios are the result. Load average at the end: {}.",
        cores(),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
    );
}

/// The throughput the ledger's work (leaf hash, Merkle nodes, frontier) takes from the storage
/// ceiling: `1 - with / without`, per shape measured both ways. Trailmark itself has no switch
/// to turn the ledger off, so this same-run pair is how its cost is reported.
fn ledger_cost(args: &Args, r: &Results) -> Option<String> {
    let pairs = [
        (
            &r.storage,
            &r.storage_no_ledger,
            format!("{} events/commit", args.storage_batch),
        ),
        (
            &r.storage_batch,
            &r.storage_batch_no_ledger,
            format!("batches of {}", args.batch_size),
        ),
    ];
    let parts: Vec<String> = pairs
        .into_iter()
        .filter_map(|(with, without, shape)| {
            let (with, without) = (
                storage_rate(with.as_ref()?),
                storage_rate(without.as_ref()?),
            );
            Some(format!(
                "{} at {shape} ({with:.0} rows/s with the ledger, {without:.0} without)",
                percent(without - with, without)
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
