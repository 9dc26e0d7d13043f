//! The read benchmark (`./bench/read`): on one organization's log of a million events, search
//! latency per filter kind through the HTTP API, exports (CLI and API), ledger proofs and
//! `trailmark verify`, each beside a raw read of the same SQLite file measured in the same run.
//!
//! The store is populated through `trailmark_store::SqliteStore` (the same code the server
//! appends with, so the rows, indexes, leaves and Merkle nodes are Trailmark's own), then closed;
//! everything measured afterwards goes through the real release `trailmark` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hyper::{Method, StatusCode};
use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::id::IdKind;
use trailmark_domain::organization::Organization;
use trailmark_store::{
    AppendOutcome, AppendRequest, EventLog, Organizations, PendingEvent, PostgresStore, SqliteStore,
};

use crate::child::{self, Finished};
use crate::client::Client;
use crate::dataset::{DAY_MS, Dataset, Random};
use crate::load::Measured;
use crate::raw::{self, Raw};
use crate::search::{Search, kinds};
use crate::server::Trailmark;
use crate::{
    WorkDir, cores, filesystem_of, load_average, machine_busy, ms, percent, progress,
    trailmark_binary,
};

const API_KEY: &str = "sk_bench_read";
/// Results per search request, as a UI page would ask.
const PAGE: usize = 10;
const MB: f64 = 1024.0 * 1024.0;

/// Aims from the issues, printed beside the figures (a benchmark reports; it does not judge).
const AIM_SEARCH_P95_MS: f64 = 50.0;
const AIM_EXPORT_ROWS_PER_S: f64 = 200_000.0;
const AIM_EXPORT_RSS_MB: f64 = 150.0;
const AIM_INCLUSION_MS: f64 = 1.0;
const AIM_VERIFY_PER_S: f64 = 500_000.0;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the organization's log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Sequential requests per search kind and per proof kind, on each side (API and raw).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Seconds per side one kind may take: a slow kind stops after twice this, API and raw
    /// together (at least 5 pairs), and the table says how many it made.
    #[arg(long, default_value_t = 15.0)]
    budget: f64,
    /// Events per `append` while populating.
    #[arg(long, default_value_t = 1000)]
    append_batch: usize,
    /// The `trailmark` binary to run [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
    /// Where the database and exports go [default: the system's temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (database, exports, logs), or with `--postgres-url` the
    /// database, and print where it is.
    #[arg(long)]
    keep: bool,
    /// Skip populating: use this data directory, kept by an earlier `--keep` run.
    #[arg(long)]
    reuse: Option<PathBuf>,
    /// Measure the searches on PostgreSQL instead: a database of this run's is made on the
    /// server at this URL (and dropped at the end), populated through `PostgresStore` and served
    /// by `trailmark serve --database`; each search's raw side is the same search through
    /// `PostgresStore` in the bench's process. Only the search part runs.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Run only these parts (repeat or separate with commas); `ledger` needs the exports, so it
    /// makes them too.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Search,
    Export,
    Ledger,
}

/// One kind of request measured both ways.
struct Paired {
    name: String,
    api: Measured,
    raw: Measured,
    /// Rows (search) or hashes (proofs) per answer, averaged over the API requests.
    per_answer: f64,
    filtered: bool,
    plan: Option<String>,
}

/// A bulk operation: rows over wall time, and the process's cost when it is one.
struct Bulk {
    name: String,
    rows: u64,
    wall: Duration,
    cpu: Option<Duration>,
    peak_rss: Option<u64>,
    bytes: u64,
}

impl Bulk {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn from_child(name: &str, rows: u64, bytes: u64, finished: &Finished) -> Self {
        Bulk {
            name: name.to_owned(),
            rows,
            wall: finished.wall,
            cpu: Some(finished.cpu),
            peak_rss: Some(finished.peak_rss),
            bytes,
        }
    }
}

#[derive(Default)]
struct Report {
    /// Measured on PostgreSQL (`--postgres-url`) rather than on an embedded data directory.
    on_postgres: bool,
    populate: Option<Bulk>,
    database_bytes: u64,
    searches: Vec<Paired>,
    proofs: Vec<Paired>,
    csv: Option<Bulk>,
    ndjson: Option<Bulk>,
    scan: Option<Bulk>,
    api_export: Option<Bulk>,
    api_export_generate: Option<Duration>,
    month_scan: Option<Bulk>,
    server_rss: Option<(u64, u64)>,
    verify: Option<Bulk>,
    verify_month: Option<Bulk>,
    hash_lines: Option<Bulk>,
}

pub fn run(args: &Args) -> Result<(), String> {
    if args.events < 2 || args.requests == 0 || args.append_batch == 0 || args.budget <= 0.0 {
        return Err(
            "--events must be at least 2; --requests, --append-batch and --budget positive".into(),
        );
    }
    let wants = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
    let mut work = WorkDir::create(args.work_dir.as_deref())?;
    work.keep = args.keep;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;

    if let Some(admin_url) = &args.postgres_url {
        return run_postgres(args, admin_url, &binary, &work, runtime);
    }
    println!("Trailmark read benchmark");
    print_machine("SQLite");
    println!(
        "  work dir: {} ({})",
        work.path.display(),
        filesystem_of(&work.path)
    );
    println!(
        "  searches: {} sequential requests per kind on one keep-alive connection, each paired \
         with its raw SQL (at most {}s a side), limit={PAGE}",
        args.requests, args.budget
    );
    println!();

    let mut report = Report::default();
    let (data_dir, organization_id, dataset) = match &args.reuse {
        Some(dir) => {
            let (organization_id, dataset) = existing(dir)?;
            progress(&format!(
                "reusing {} ({} events of {organization_id})",
                dir.display(),
                dataset.events
            ));
            (dir.clone(), organization_id, dataset)
        }
        None => {
            let data_dir = work.path.join("trailmark-data");
            let dataset = Dataset::ending_now(args.events);
            progress(&format!(
                "populating {} events through SqliteStore::append, {} per append",
                args.events, args.append_batch
            ));
            let (organization_id, populate) =
                runtime.block_on(populate(&data_dir, &dataset, args.append_batch))?;
            println!(
                "   {} events in {:.1}s = {:.0} events/s",
                populate.rows,
                populate.wall.as_secs_f64(),
                populate.rate()
            );
            report.populate = Some(populate);
            (data_dir, organization_id, dataset)
        }
    };
    let database = data_dir.join("trailmark.db");
    report.database_bytes = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", database.display())).ok())
        .map(|m| m.len())
        .sum();
    let n = dataset.events;

    let trailmark = Trailmark::start(&binary, &data_dir, API_KEY)?;
    progress(&format!(
        "trailmark serve on {} (database {:.0} MB)",
        trailmark.addr,
        report.database_bytes as f64 / MB
    ));
    let mut client = Client::new(trailmark.addr, API_KEY)?;
    let waited = runtime.block_on(wait_for_checkpoint(&mut client, &organization_id, n))?;
    println!(
        "   a checkpoint of all {n} events is signed ({:.1}s after start)",
        waited.as_secs_f64()
    );
    let public_key =
        runtime.block_on(client.get_json("/audit_logs/ledger/public_key"))?["verifier_key"]
            .as_str()
            .ok_or("the public key answer has no verifier_key")?
            .to_owned();
    let raw = Raw::open(&database)?;
    let budget = Duration::from_secs_f64(args.budget);

    if wants(Part::Search) {
        progress("search: GET /audit_logs/events per filter kind, each beside the same SQL raw");
        report.searches = runtime.block_on(measure_searches(
            &mut client,
            &dataset,
            &organization_id,
            args.requests,
            budget,
            async |search| raw.search(search, &organization_id, PAGE).map(|_| ()),
            |search| raw.plan(search, &organization_id, PAGE).map(Some),
        ))?;
    }

    let export_dir = work.path.join("exports");
    std::fs::create_dir_all(&export_dir)
        .map_err(|e| format!("creating {}: {e}", export_dir.display()))?;
    let full_ndjson = export_dir.join("all.ndjson");
    let month_ndjson = export_dir.join("month.ndjson");
    let month = {
        let start = dataset.start_ms + dataset.span_ms / 2;
        (start, start + 30 * DAY_MS)
    };
    if wants(Part::Export) || wants(Part::Ledger) {
        progress("export: trailmark export (CSV, NDJSON), the API's export, raw scans");
        for (format, out) in [
            ("csv", export_dir.join("all.csv")),
            ("ndjson", full_ndjson.clone()),
        ] {
            let mut command = Command::new(&binary);
            command
                .args([
                    "export",
                    "--organization",
                    &organization_id,
                    "--format",
                    format,
                    "--out",
                ])
                .arg(&out)
                .arg("--data-dir")
                .arg(&data_dir);
            let finished = child::run(command, &work.path, &format!("export-{format}"))?;
            let rows = exported_rows(&finished.stderr).unwrap_or(n);
            let bulk = Bulk::from_child(
                &format!("trailmark export --format {format}"),
                rows,
                file_size(&out),
                &finished,
            );
            print_bulk_row(&bulk);
            if format == "csv" {
                report.csv = Some(bulk);
            } else {
                report.ndjson = Some(bulk);
            }
        }
        let started = Instant::now();
        let (rows, bytes) =
            raw.scan_bodies(&organization_id, None, &export_dir.join("raw-scan.ndjson"))?;
        let scan = Bulk {
            name: "raw scan: SELECT body ORDER BY sequence".into(),
            rows,
            wall: started.elapsed(),
            cpu: None,
            peak_rss: None,
            bytes,
        };
        print_bulk_row(&scan);
        report.scan = Some(scan);

        let (bulk, generate, server_rss) = runtime.block_on(api_export(
            &mut client,
            &organization_id,
            month,
            &month_ndjson,
            trailmark.pid(),
        ))?;
        print_bulk_row(&bulk);
        report.api_export = Some(bulk);
        report.api_export_generate = Some(generate);
        report.server_rss = server_rss;

        let started = Instant::now();
        let (rows, bytes) = raw.scan_bodies(
            &organization_id,
            Some(month),
            &export_dir.join("raw-month.ndjson"),
        )?;
        let month_scan = Bulk {
            name: "raw scan: the same month".into(),
            rows,
            wall: started.elapsed(),
            cpu: None,
            peak_rss: None,
            bytes,
        };
        print_bulk_row(&month_scan);
        report.month_scan = Some(month_scan);
    }

    if wants(Part::Ledger) {
        progress(&format!(
            "ledger: inclusion and consistency proofs at {n} leaves, then trailmark verify"
        ));
        let mut random = Random::new(0x1ED6E4);
        let events: Vec<(u64, String)> = (0..args.requests)
            .map(|_| {
                let sequence = random.below(n);
                raw.event_id(&organization_id, sequence)
                    .map(|id| (sequence, id))
            })
            .collect::<Result<_, _>>()?;
        let paths: Vec<String> = events
            .iter()
            .map(|(_, id)| {
                format!(
                    "/audit_logs/ledger/inclusion?organization_id={organization_id}&event_id={id}&tree_size={n}"
                )
            })
            .collect();
        let (api, raw_measured, per_answer) =
            runtime.block_on(paired(&mut client, &paths, "proof", budget, async |i| {
                raw.inclusion(&organization_id, &events[i].1, n).map(|_| ())
            }))?;
        let inclusion = Paired {
            name: format!("inclusion proof, tree_size={n}"),
            api,
            raw: raw_measured,
            per_answer,
            filtered: false,
            plan: None,
        };
        print_paired_row(&inclusion);
        report.proofs.push(inclusion);

        let firsts: Vec<u64> = (0..args.requests)
            .map(|_| 1 + random.below(n - 1))
            .collect();
        let paths: Vec<String> = firsts
            .iter()
            .map(|first| {
                format!(
                    "/audit_logs/ledger/consistency?organization_id={organization_id}&first={first}&second={n}"
                )
            })
            .collect();
        let (api, raw_measured, per_answer) =
            runtime.block_on(paired(&mut client, &paths, "proof", budget, async |i| {
                raw.consistency(&organization_id, firsts[i], n).map(|_| ())
            }))?;
        let consistency = Paired {
            name: format!("consistency proof, to {n}"),
            api,
            raw: raw_measured,
            per_answer,
            filtered: false,
            plan: None,
        };
        print_paired_row(&consistency);
        report.proofs.push(consistency);

        for (file, label, tag) in [
            (&full_ndjson, "complete", "verify-all"),
            (&month_ndjson, "1 month, proofs", "verify-month"),
        ] {
            let mut command = Command::new(&binary);
            command
                .arg("verify")
                .arg(file)
                .args(["--public-key", &public_key]);
            let finished = child::run(command, &work.path, tag)?;
            if !finished.stdout.contains("OK:") {
                return Err(format!(
                    "trailmark verify did not say OK:\n{}{}",
                    finished.stdout, finished.stderr
                ));
            }
            let rows = verified_rows(&finished.stdout).unwrap_or(0);
            let bulk = Bulk::from_child(
                &format!("trailmark verify ({label})"),
                rows,
                file_size(file),
                &finished,
            );
            print_bulk_row(&bulk);
            if label == "complete" {
                report.verify = Some(bulk);
            } else {
                report.verify_month = Some(bulk);
            }
        }
        let started = Instant::now();
        let rows = raw::hash_lines(&full_ndjson)?;
        let hashed = Bulk {
            name: "read + SHA-256 every line (complete)".into(),
            rows,
            wall: started.elapsed(),
            cpu: None,
            peak_rss: None,
            bytes: file_size(&full_ndjson),
        };
        print_bulk_row(&hashed);
        report.hash_lines = Some(hashed);
    }

    drop(client);
    drop(trailmark);
    runtime.shutdown_timeout(Duration::from_secs(1));
    println!();
    print_tables(&report);
    println!();
    print_summary(&report, n);
    if args.keep {
        println!(
            "\nkept: {} (organization {organization_id}; rerun with --reuse {})",
            work.path.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// The machine's line of the report: its cores, shared with `database`, and how busy it is.
fn print_machine(database: &str) {
    println!(
        "  machine: {} cores shared by the bench, the server and {database}; busy {} before the \
         start, load average {}",
        cores(),
        machine_busy(Duration::from_millis(500))
            .map_or_else(|| "unknown".into(), |b| format!("{:.0}%", 100.0 * b)),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
    );
}

/// The search part on PostgreSQL (`--postgres-url`).
fn run_postgres(
    args: &Args,
    admin_url: &str,
    binary: &Path,
    work: &WorkDir,
    runtime: tokio::runtime::Runtime,
) -> Result<(), String> {
    let runtime = Arc::new(runtime);
    println!("Trailmark read benchmark on PostgreSQL (search)");
    print_machine("PostgreSQL");
    println!(
        "  searches: {} sequential requests per kind on one keep-alive connection, each paired \
         with the same search through PostgresStore (at most {}s a side), limit={PAGE}",
        args.requests, args.budget
    );
    println!();
    let database = crate::postgres::Database::create(admin_url, &runtime, "read")?;
    let url = database.url()?;
    let dataset = Dataset::ending_now(args.events);
    progress(&format!(
        "populating {} events through PostgresStore::append, {} per append",
        args.events, args.append_batch
    ));
    let store = runtime
        .block_on(PostgresStore::connect(&url))
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let (organization_id, populated) = runtime.block_on(append_dataset(
        &store,
        "PostgresStore",
        &dataset,
        args.append_batch,
    ))?;
    println!(
        "   {} events in {:.1}s = {:.0} events/s",
        populated.rows,
        populated.wall.as_secs_f64(),
        populated.rate()
    );
    let (blocks, waited) = runtime.block_on(wait_for_search_blocks(&url, &organization_id))?;
    println!(
        "   {blocks} search blocks built ({:.1}s after the last append)",
        waited.as_secs_f64()
    );
    let mut report = Report {
        on_postgres: true,
        populate: Some(populated),
        database_bytes: runtime.block_on(crate::postgres::database_bytes(&url))?,
        ..Report::default()
    };
    let data_dir = work.path.join("trailmark-data");
    let trailmark = Trailmark::start_with(binary, &data_dir, API_KEY, &["--database", &url])?;
    progress(&format!("trailmark serve --database on {}", trailmark.addr));
    let mut client = Client::new(trailmark.addr, API_KEY)?;
    progress("search: GET /audit_logs/events per filter kind, each beside PostgresStore's search");
    report.searches = runtime.block_on(measure_searches(
        &mut client,
        &dataset,
        &organization_id,
        args.requests,
        Duration::from_secs_f64(args.budget),
        async |search| {
            store
                .search_events(&organization_id, search.request(PAGE))
                .await
                .map(|_| ())
                .map_err(|e| format!("PostgresStore search: {e}"))
        },
        |_| Ok(None),
    ))?;
    drop(client);
    drop(trailmark);
    drop(store);
    println!();
    print_tables(&report);
    println!();
    print_summary(&report, dataset.events);
    if args.keep {
        println!(
            "\nkept: the database {} (organization {organization_id})",
            database.keep()?
        );
    }
    Ok(())
}

/// Each kind of search `requests` times (values drawn per kind from a seed of its own, so every
/// run and backend sends the same searches), through the API and through `raw`, with `plan`
/// describing how the raw side runs the first.
async fn measure_searches(
    client: &mut Client,
    dataset: &Dataset,
    organization_id: &str,
    requests: usize,
    budget: Duration,
    mut raw: impl AsyncFnMut(&Search) -> Result<(), String>,
    plan: impl Fn(&Search) -> Result<Option<String>, String>,
) -> Result<Vec<Paired>, String> {
    let mut measured = Vec::new();
    for (index, kind) in kinds().into_iter().enumerate() {
        let mut random = Random::new(0x5EA4C4 + index as u64);
        let searches: Vec<Search> = (0..requests)
            .map(|_| (kind.make)(dataset, &mut random))
            .collect();
        let paths: Vec<String> = searches
            .iter()
            .map(|s| s.url(organization_id, PAGE))
            .collect();
        let (api, raw_measured, per_answer) = paired(client, &paths, "data", budget, async |i| {
            raw(&searches[i]).await
        })
        .await?;
        let paired = Paired {
            name: kind.name.to_owned(),
            api,
            raw: raw_measured,
            per_answer,
            filtered: kind.filtered,
            plan: plan(&searches[0])?,
        };
        print_paired_row(&paired);
        measured.push(paired);
    }
    Ok(measured)
}

/// Waits until PostgreSQL's search blocks of `organization_id` stop growing (the store's builder
/// has caught up with the log); how many there are and how long that took.
async fn wait_for_search_blocks(
    url: &str,
    organization_id: &str,
) -> Result<(i64, Duration), String> {
    let client = crate::postgres::connect(url).await?;
    let started = Instant::now();
    let (mut last, mut unchanged) = (-1i64, 0);
    // The builder runs each second: three seconds without a new block means it is done.
    while unchanged < 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let blocks: i64 = client
            .query_one(
                "SELECT count(*) FROM search_blocks WHERE organization_id = $1",
                &[&organization_id],
            )
            .await
            .map_err(|e| format!("counting search blocks: {e}"))?
            .get(0);
        unchanged = if blocks == last { unchanged + 1 } else { 0 };
        last = blocks;
    }
    Ok((
        last,
        started.elapsed().saturating_sub(Duration::from_secs(3)),
    ))
}

/// Creates the organization and appends the dataset to a new SQLite store in `data_dir`, then
/// closes the store. Returns the organization's id and the populate figures.
async fn populate(
    data_dir: &Path,
    dataset: &Dataset,
    batch: usize,
) -> Result<(String, Bulk), String> {
    let path = data_dir.join("trailmark.db");
    let store = SqliteStore::open(&path).map_err(|e| format!("opening the store: {e}"))?;
    let (organization_id, populated) =
        append_dataset(&store, "SqliteStore", dataset, batch).await?;
    // Blocks and runs written, the log released, the WAL moved into the database: the server
    // starts on a data directory holding everything, as after any long-running server's work.
    store
        .close()
        .await
        .map_err(|e| format!("closing the store: {e}"))?;
    checkpoint_wal(&path)?;
    Ok((organization_id, populated))
}

/// Creates the organization and appends the dataset to `store` (named `store_name` in the
/// report), one append in flight while the next batch is generated. Returns the organization's
/// id and the populate figures.
async fn append_dataset<S>(
    store: &S,
    store_name: &str,
    dataset: &Dataset,
    batch: usize,
) -> Result<(String, Bulk), String>
where
    S: EventLog + Organizations + Clone,
{
    let now = Timestamp::now();
    let organization = store
        .insert_organization(Organization {
            id: IdKind::Organization.generate().into_string(),
            name: "Bench Read".into(),
            domains: Vec::new(),
            metadata: Default::default(),
            external_id: None,
            allow_profiles_outside_organization: false,
            retention_period_in_days: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(|e| format!("inserting the organization: {e}"))?;
    let organization_id = organization.id;
    let started = Instant::now();
    let mut next = 0u64;
    let mut in_flight: Option<tokio::task::JoinHandle<_>> = None;
    let mut reported = 0u64;
    while next < dataset.events || in_flight.is_some() {
        let events = if next < dataset.events {
            let end = (next + batch as u64).min(dataset.events);
            let events = (next..end)
                .map(|sequence| {
                    let event = NewEvent::parse(&dataset.event(sequence))
                        .map_err(|p| format!("generated event {sequence} is invalid: {p:?}"))?;
                    Ok(PendingEvent {
                        id: IdKind::Event.generate().into_string(),
                        event,
                        received_at: Timestamp::from_unix_millis(dataset.received_at(sequence)),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            next = end;
            Some(events)
        } else {
            None
        };
        if let Some(appending) = in_flight.take() {
            check_appended(appending.await.map_err(|e| format!("append task: {e}"))?)?;
        }
        if let Some(events) = events {
            let store = store.clone();
            let request = AppendRequest {
                organization_id: organization_id.clone(),
                events,
                idempotency: None,
            };
            in_flight = Some(tokio::spawn(async move { store.append(request).await }));
        }
        if next >= reported + dataset.events / 5 && next < dataset.events {
            reported = next;
            println!(
                "   {next} events generated and appended or in flight ({:.0} events/s so far)",
                next as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let size = store
        .log_size(&organization_id)
        .await
        .map_err(|e| format!("reading the log size: {e}"))?;
    let wall = started.elapsed();
    if size != dataset.events {
        return Err(format!(
            "the log holds {size} events, not {}",
            dataset.events
        ));
    }
    Ok((
        organization_id,
        Bulk {
            name: format!("populate ({store_name}::append)"),
            rows: size,
            wall,
            cpu: None,
            peak_rss: None,
            bytes: 0,
        },
    ))
}

fn check_appended(
    outcome: Result<AppendOutcome, trailmark_store::StoreError>,
) -> Result<(), String> {
    match outcome {
        Ok(AppendOutcome::Appended { .. }) => Ok(()),
        Ok(AppendOutcome::Replayed { .. }) => Err("an append was replayed, not stored".into()),
        Err(e) => Err(format!("append: {e}")),
    }
}

/// Moves the WAL into the database once the store's writer has let go of it, so the server
/// starts on a database file holding everything (as after any long-running server's checkpoint).
fn checkpoint_wal(path: &Path) -> Result<(), String> {
    let connection = rusqlite::Connection::open(path).map_err(|e| format!("reopening: {e}"))?;
    connection
        .busy_timeout(Duration::from_secs(30))
        .map_err(|e| format!("busy timeout: {e}"))?;
    for _ in 0..300 {
        let busy: i64 = connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|e| format!("checkpointing the WAL: {e}"))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the WAL could not be checkpointed: the store's writer still holds it".into())
}

/// The organization and dataset shape of a data directory populated by an earlier run.
fn existing(data_dir: &Path) -> Result<(String, Dataset), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let store = SqliteStore::open_beside(&data_dir.join("trailmark.db"))
            .map_err(|e| format!("reading {}: {e}", data_dir.display()))?;
        let read = |e: trailmark_store::StoreError| format!("reading {}: {e}", data_dir.display());
        let (organization_id, size) = store
            .log_sizes()
            .await
            .map_err(read)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} holds no log", data_dir.display()))?;
        let received = |events: Vec<trailmark_store::StoredEvent>| {
            events
                .first()
                .map(|e| e.received_at.unix_millis())
                .ok_or_else(|| "a log without its first or last event".to_owned())
        };
        let first = received(
            store
                .events_after(&organization_id, None, 1)
                .await
                .map_err(read)?,
        )?;
        let last = received(
            store
                .events_after(&organization_id, size.checked_sub(2), 1)
                .await
                .map_err(read)?,
        )?;
        Ok((
            organization_id,
            Dataset {
                events: size,
                start_ms: first,
                span_ms: ((last - first) as f64 * size as f64 / (size - 1).max(1) as f64) as i64,
            },
        ))
    })
}

async fn wait_for_checkpoint(
    client: &mut Client,
    organization_id: &str,
    size: u64,
) -> Result<Duration, String> {
    let started = Instant::now();
    let path = format!("/audit_logs/ledger/checkpoint?organization_id={organization_id}");
    loop {
        let checkpoint = client.get_json(&path).await?;
        if checkpoint["tree_size"].as_u64() == Some(size) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "no checkpoint of {size} events after 120s; the latest: {checkpoint}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A slow kind still gets this many requests, whatever the budget.
const MIN_REQUESTS: usize = 5;

/// `GET paths[i]` through the API and `raw(i)` on the raw connection, for each i in turn,
/// each timed alone, until every path is done or both sides together have used twice the
/// `budget` (but at least [`MIN_REQUESTS`] each). The two sides alternate which goes first, so
/// neither always finds the pages the other just read; two untimed rounds warm both first.
/// An API time runs from the send to the answer's last byte (parsing it is not counted).
/// Returns both sides' latencies and the average length of the array `field` in the answers.
async fn paired(
    client: &mut Client,
    paths: &[String],
    field: &str,
    budget: Duration,
    mut raw: impl AsyncFnMut(usize) -> Result<(), String>,
) -> Result<(Measured, Measured, f64), String> {
    for (i, path) in paths.iter().enumerate().take(2) {
        get_ok(client, path).await?;
        raw(i).await?;
    }
    let (mut api, mut direct) = (Measured::default(), Measured::default());
    let mut items = 0usize;
    let started = Instant::now();
    for (i, path) in paths.iter().enumerate() {
        for side in [i % 2, 1 - i % 2] {
            let began = Instant::now();
            if side == 0 {
                let body = get_ok(client, path).await?;
                api.latencies_us.push(began.elapsed().as_micros() as u64);
                let answer: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("GET {path}: {e}"))?;
                items += answer[field].as_array().map_or(0, Vec::len);
            } else {
                raw(i).await?;
                direct.latencies_us.push(began.elapsed().as_micros() as u64);
            }
        }
        if i + 1 >= MIN_REQUESTS && started.elapsed() > 2 * budget {
            break;
        }
    }
    for measured in [&mut api, &mut direct] {
        measured.latencies_us.sort_unstable();
        measured.requests = measured.latencies_us.len() as u64;
        measured.window = started.elapsed();
    }
    let per_answer = items as f64 / api.requests.max(1) as f64;
    Ok((api, direct, per_answer))
}

/// `GET path`, which must answer 200; the body, unparsed.
async fn get_ok(client: &mut Client, path: &str) -> Result<bytes::Bytes, String> {
    let (status, body) = client.send(Method::GET, path, None).await?;
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(format!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

/// `POST /audit_logs/exports` (NDJSON, one month), polls until ready, downloads. Returns the
/// export end to end (request to last byte), the generation time alone, and the server's
/// resident memory before and at its peak during the export.
async fn api_export(
    client: &mut Client,
    organization_id: &str,
    (start, end): (i64, i64),
    out: &Path,
    server_pid: u32,
) -> Result<(Bulk, Duration, Option<(u64, u64)>), String> {
    let before = child::rss_of(server_pid).map(|(_, rss)| rss);
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some((_, rss)) = child::rss_of(server_pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let created = client
        .post_json(
            "/audit_logs/exports",
            &json!({
                "organization_id": organization_id,
                "range_start": Timestamp::from_unix_millis(start).to_string(),
                "range_end": Timestamp::from_unix_millis(end).to_string(),
                "format": "ndjson",
            }),
            StatusCode::CREATED,
        )
        .await?;
    let id = created["id"]
        .as_str()
        .ok_or("the export has no id")?
        .to_owned();
    let ready = loop {
        let export = client
            .get_json(&format!("/audit_logs/exports/{id}"))
            .await?;
        match export["state"].as_str() {
            Some("ready") => break export,
            Some("pending") => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => return Err(format!("the export failed: {export}")),
        }
    };
    let generate = started.elapsed();
    let url = ready["url"].as_str().ok_or("a ready export has no url")?;
    // The link is absolute (the server's public URL); the connection is already to that server.
    let path = url
        .find("/audit_logs/")
        .map(|at| &url[at..])
        .ok_or_else(|| format!("unexpected export url {url}"))?;
    let bytes = client.download(path, out).await?;
    let wall = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let rows = ready["row_count"].as_u64().unwrap_or(0);
    Ok((
        Bulk {
            name: "API export, 1 month NDJSON + proofs".into(),
            rows,
            wall,
            cpu: None,
            peak_rss: None,
            bytes,
        },
        generate,
        before.map(|before| (before, peak.load(Ordering::Relaxed))),
    ))
}

/// "Exported 1000000 events of org_… to …" → 1000000.
fn exported_rows(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.starts_with("Exported "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// "1000000 events re-hashed; …" → 1000000.
fn verified_rows(stdout: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.contains(" events re-hashed"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn ratio(part: Option<f64>, whole: Option<f64>) -> String {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => format!("{:.1}x", p / w),
        _ => "-".into(),
    }
}

const PAIRED_HEADER: &str = "kind                                  n  rows   api p50   api p95   api max   raw p50   raw p95  api/raw p50  api/raw p95";

fn paired_row(p: &Paired) -> String {
    format!(
        "{:<34} {:>4} {:>5.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
        p.name,
        p.api.requests,
        p.per_answer,
        ms(p.api.percentile_ms(0.5)),
        ms(p.api.percentile_ms(0.95)),
        ms(p.api.max_ms()),
        ms(p.raw.percentile_ms(0.5)),
        ms(p.raw.percentile_ms(0.95)),
        ratio(p.api.percentile_ms(0.5), p.raw.percentile_ms(0.5)),
        ratio(p.api.percentile_ms(0.95), p.raw.percentile_ms(0.95)),
    )
}

fn print_paired_row(p: &Paired) {
    println!("   {}", paired_row(p));
}

const BULK_HEADER: &str = "part                                         rows   seconds      rows/s   MB/s  peak RSS MB  CPU s";

fn bulk_row(b: &Bulk) -> String {
    format!(
        "{:<42} {:>8} {:>9.2} {:>11.0} {:>6.0} {:>12} {:>6}",
        b.name,
        b.rows,
        b.wall.as_secs_f64(),
        b.rate(),
        b.bytes as f64 / MB / b.wall.as_secs_f64().max(1e-9),
        b.peak_rss
            .map_or_else(|| "-".into(), |r| format!("{:.0}", r as f64 / MB)),
        b.cpu
            .map_or_else(|| "-".into(), |c| format!("{:.1}", c.as_secs_f64())),
    )
}

fn print_bulk_row(b: &Bulk) {
    println!("   {}", bulk_row(b));
}

fn print_tables(r: &Report) {
    if !r.searches.is_empty() {
        println!(
            "Search latency, ms: GET /audit_logs/events?limit={PAGE} (sequential, one connection) \
             vs {}; rows = rows per answer",
            if r.on_postgres {
                "the same search through PostgresStore in the bench's process (no HTTP, no JSON)"
            } else {
                "the same SQL on a read-only rusqlite connection"
            }
        );
        println!("{PAIRED_HEADER}");
        println!("{}", "-".repeat(PAIRED_HEADER.len()));
        for p in &r.searches {
            println!("{}", paired_row(p));
        }
        println!();
    }
    if r.searches.iter().any(|p| p.plan.is_some()) {
        println!("Query plans (EXPLAIN QUERY PLAN of Trailmark's SQL, first search of each kind):");
        for p in &r.searches {
            if let Some(plan) = &p.plan {
                println!("  {:<34} {plan}", p.name);
            }
        }
        println!();
    }
    let bulks: Vec<&Bulk> = [
        &r.populate,
        &r.csv,
        &r.ndjson,
        &r.scan,
        &r.api_export,
        &r.month_scan,
        &r.verify,
        &r.verify_month,
        &r.hash_lines,
    ]
    .into_iter()
    .flatten()
    .collect();
    if !bulks.is_empty() {
        println!("Bulk work (wall time; peak RSS and CPU of the child process where there is one)");
        println!("{BULK_HEADER}");
        println!("{}", "-".repeat(BULK_HEADER.len()));
        for b in bulks {
            println!("{}", bulk_row(b));
        }
        println!();
    }
    if !r.proofs.is_empty() {
        println!(
            "Ledger proofs, ms: API vs the same storage reads and hashing with rusqlite; rows = hashes per proof"
        );
        println!("{PAIRED_HEADER}");
        println!("{}", "-".repeat(PAIRED_HEADER.len()));
        for p in &r.proofs {
            println!("{}", paired_row(p));
        }
    }
}

fn print_summary(r: &Report, n: u64) {
    println!(
        "Summary (ratios against {}, measured in this run)",
        if r.on_postgres {
            "the same searches through PostgresStore"
        } else {
            "raw reads of the same SQLite file"
        }
    );
    let line = |label: &str, text: String| println!("{label:<20}{text}");
    if let Some(p) = &r.populate {
        line(
            "populate",
            format!(
                "{} events in {:.1}s = {:.0} events/s through {}; database {:.0} MB ({:.0} bytes/event)",
                p.rows,
                p.wall.as_secs_f64(),
                p.rate(),
                if r.on_postgres {
                    "PostgresStore::append"
                } else {
                    "SqliteStore::append"
                },
                r.database_bytes as f64 / MB,
                r.database_bytes as f64 / n as f64
            ),
        );
    }
    let filtered: Vec<&Paired> = r.searches.iter().filter(|p| p.filtered).collect();
    if !filtered.is_empty() {
        let p95 = |p: &Paired| p.api.percentile_ms(0.95).unwrap_or(f64::INFINITY);
        let meeting = filtered
            .iter()
            .filter(|p| p95(p) < AIM_SEARCH_P95_MS)
            .count();
        line(
            "filtered search",
            format!(
                "{meeting} of {} filter kinds have p95 < {AIM_SEARCH_P95_MS} ms (the aim) at {n} events",
                filtered.len()
            ),
        );
        let mut slow: Vec<&&Paired> = filtered
            .iter()
            .filter(|p| p95(p) >= AIM_SEARCH_P95_MS)
            .collect();
        slow.sort_by(|a, b| p95(b).total_cmp(&p95(a)));
        for p in slow {
            line(
                "",
                format!(
                    "{}: p95 {} ms; the same SQL alone p95 {} ms ({} of the API's time)",
                    p.name,
                    ms(p.api.percentile_ms(0.95)),
                    ms(p.raw.percentile_ms(0.95)),
                    percent(
                        p.raw.percentile_ms(0.95).unwrap_or(0.0),
                        p.api.percentile_ms(0.95).unwrap_or(0.0)
                    )
                ),
            );
        }
        let mut overheads: Vec<f64> = r
            .searches
            .iter()
            .filter_map(|p| Some(p.api.percentile_ms(0.5)? - p.raw.percentile_ms(0.5)?))
            .collect();
        overheads.sort_by(f64::total_cmp);
        if let Some(median) = overheads.get(overheads.len() / 2) {
            line(
                "",
                format!(
                    "API cost above the SQL (p50 difference, median over kinds): {median:.2} ms a request"
                ),
            );
        }
    }
    let scan_rate = r.scan.as_ref().map(Bulk::rate);
    for (label, bulk) in [("export CSV", &r.csv), ("export NDJSON", &r.ndjson)] {
        let Some(b) = bulk else { continue };
        line(
            label,
            format!(
                "{:.0} rows/s, peak RSS {:.0} MB = {} of the raw scan ({:.0} rows/s)   aim >= {AIM_EXPORT_ROWS_PER_S:.0} rows/s, < {AIM_EXPORT_RSS_MB:.0} MB",
                b.rate(),
                b.peak_rss.unwrap_or(0) as f64 / MB,
                scan_rate.map_or_else(|| "n/a".into(), |s| percent(b.rate(), s)),
                scan_rate.unwrap_or(0.0)
            ),
        );
    }
    if let Some(b) = &r.api_export {
        let month_rate = r.month_scan.as_ref().map(Bulk::rate);
        let cli = r.ndjson.as_ref().map(Bulk::rate);
        line(
            "API export 1 month",
            format!(
                "{} rows in {:.2}s ({:.2}s to generate) = {:.0} rows/s with an inclusion proof per event = {} of the raw scan of that month, {} of the CLI's NDJSON rate",
                b.rows,
                b.wall.as_secs_f64(),
                r.api_export_generate.unwrap_or_default().as_secs_f64(),
                b.rate(),
                month_rate.map_or_else(|| "n/a".into(), |m| percent(b.rate(), m)),
                cli.map_or_else(|| "n/a".into(), |c| percent(b.rate(), c)),
            ),
        );
        if let Some((before, peak)) = r.server_rss {
            line(
                "",
                format!(
                    "server resident memory {:.0} MB before, {:.0} MB at most during it",
                    before as f64 / MB,
                    peak as f64 / MB
                ),
            );
        }
    }
    for p in &r.proofs {
        line(
            if p.name.starts_with("inclusion") {
                "inclusion proof"
            } else {
                "consistency proof"
            },
            format!(
                "p50 {} ms, p95 {} ms at {n} leaves ({:.0} hashes); storage reads alone p50 {} ms{}",
                ms(p.api.percentile_ms(0.5)),
                ms(p.api.percentile_ms(0.95)),
                p.per_answer,
                ms(p.raw.percentile_ms(0.5)),
                if p.name.starts_with("inclusion") {
                    format!("   aim < {AIM_INCLUSION_MS} ms")
                } else {
                    String::new()
                }
            ),
        );
    }
    let hash_rate = r.hash_lines.as_ref().map(Bulk::rate);
    for (label, bulk) in [
        ("verify complete", &r.verify),
        ("verify 1 month", &r.verify_month),
    ] {
        let Some(b) = bulk else { continue };
        line(
            label,
            format!(
                "{:.0} events/s, peak RSS {:.0} MB = {} of the raw scan, {} of reading and hashing each line   aim >= {AIM_VERIFY_PER_S:.0} events/s",
                b.rate(),
                b.peak_rss.unwrap_or(0) as f64 / MB,
                scan_rate.map_or_else(|| "n/a".into(), |s| percent(b.rate(), s)),
                hash_rate.map_or_else(|| "n/a".into(), |h| percent(b.rate(), h)),
            ),
        );
    }
    println!(
        "\nEverything runs on the same {} cores (load average at the end: {}); the database is in \
         the OS page cache after populating, so reads are warm. The ratios are the result.",
        cores(),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
    );
}
