//! The PostgreSQL benchmark (`./bench/postgres`): Trailmark's ingest over PostgreSQL with one
//! and with two instances (one database, one shared data directory), for one organization and
//! for eight, beside PostgreSQL's own multi-row insert rate for the same events in a plain
//! table, in one run on one machine, with the realistic event of issue 13.
//!
//! The ceiling's table is not Trailmark's schema: an event row with its JSON body and a few
//! indexed columns, so the ratio keeps its meaning when Trailmark's schema changes. Each part
//! gets a fresh database on the server `--postgres-url` names, dropped afterwards.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hyper::Method;
use hyper::header::HeaderValue;

use crate::durable::DurableCeiling;
use crate::load::{self, Check, Measured, Pacing, Plan, Prepared, Target};
use crate::payload::{EventSize, Events, now_iso};
use crate::probe::{self, Probe, Sample};
use crate::relay::{Relay, round_trip};
use crate::server::{Trailmark, create_organization};
use crate::{
    WorkDir, busy_note, cores, load_average, ms, percent, progress, trailmark_binary, verdict,
};

const API_KEY: &str = "sk_bench_postgres";

/// Issue 13's aims for PostgreSQL.
const AIM_SINGLE_VS_CEILING: f64 = 0.4;
const AIM_TWO_ONE_ORG: f64 = 1.0;
const AIM_TWO_MANY_ORGS: f64 = 1.8;
const AIM_WRITTEN_X: f64 = 3.0;
const AIM_STORED_X: f64 = 2.0;

#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL database the benchmark may connect to and create databases from.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Seconds measured per part, after the warm-up.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Seconds of load before measuring starts, per part.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent connections for single-event ingest (split between the instances).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Concurrent connections for batch ingest (split between the instances), and sessions of
    /// the ceiling.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Events per batch request, and rows per transaction in the ceiling.
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// Organizations the many-organization parts spread their requests over.
    #[arg(long, default_value_t = 8)]
    organizations: usize,
    /// The `trailmark` binary to start [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
    /// Run only these parts (repeat or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Put a TCP relay between the instances and PostgreSQL that holds every chunk this many
    /// microseconds in each direction, as a network would (the ceiling and the measurements
    /// connect directly); the run prints a round trip's time with and without it.
    #[arg(long, value_name = "MICROSECONDS")]
    relay: Option<u64>,
    /// Start the instances without `--cluster-listen`, so that each commits its own appends and
    /// instances writing one organization take turns on its head's lock (by default each
    /// organization's appends are handed to the instance that sequences it).
    #[arg(long)]
    without_cluster: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// PostgreSQL's own multi-row insert rate.
    Ceiling,
    /// Single-event ingest, every instance/organization setup.
    Single,
    /// Batch ingest, every instance/organization setup.
    Batch,
}

/// A database of this run's, dropped when it ends.
pub(crate) struct Database {
    admin_url: String,
    name: String,
    runtime: Arc<tokio::runtime::Runtime>,
    /// Left in place at the end (`keep`).
    kept: bool,
}

impl Database {
    pub(crate) fn create(
        admin_url: &str,
        runtime: &Arc<tokio::runtime::Runtime>,
        label: &str,
    ) -> Result<Self, String> {
        let name = format!("trailmark_bench_{label}_{}", std::process::id());
        runtime.block_on(admin(admin_url, &format!("DROP DATABASE IF EXISTS {name}")))?;
        runtime.block_on(admin(admin_url, &format!("CREATE DATABASE {name}")))?;
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name,
            runtime: Arc::clone(runtime),
            kept: false,
        })
    }

    /// Leaves the database in place when this is dropped; its URL.
    pub(crate) fn keep(mut self) -> Result<String, String> {
        self.kept = true;
        self.url()
    }

    pub(crate) fn url(&self) -> Result<String, String> {
        let (server, _) = self
            .admin_url
            .rsplit_once('/')
            .ok_or("--postgres-url needs a database name")?;
        Ok(format!("{server}/{}", self.name))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = self.runtime.block_on(admin(&self.admin_url, &statement));
    }
}

pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn admin(url: &str, statement: &str) -> Result<(), String> {
    connect(url)
        .await?
        .batch_execute(statement)
        .await
        .map_err(|e| format!("{statement}: {e}"))
}

/// The size of the database at `url`, in bytes.
pub(crate) async fn database_bytes(url: &str) -> Result<u64, String> {
    let row = connect(url)
        .await?
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(|e| format!("reading the database's size: {e}"))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// A probe of the database at `url` (its size, and the cluster's WAL position) and of the
/// Trailmark processes `pids` (their writes and CPU).
async fn database_probe(url: &str, pids: Vec<u32>) -> Result<Probe, String> {
    let client = Arc::new(connect(url).await?);
    let processes = probe::processes(pids);
    Ok(Arc::new(move || {
        let client = Arc::clone(&client);
        let processes = Arc::clone(&processes);
        Box::pin(async move {
            let mut sample = processes().await?;
            let row = client
                .query_one(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT,
                            pg_database_size(current_database())",
                    &[],
                )
                .await
                .map_err(|e| format!("sampling PostgreSQL: {e}"))?;
            sample.wal = Some(row.get::<_, i64>(0).max(0) as u64);
            sample.database = Some(row.get::<_, i64>(1).max(0) as u64);
            sample.postgres_cpu = Some(probe::postgres_cpu());
            sample.machine_busy = Some(probe::machine_busy()?);
            Ok(sample)
        })
    }))
}

/// One measured part: its setup and what it saw.
struct Row {
    instances: usize,
    organizations: usize,
    batch: Option<u64>,
    measured: Measured,
}

impl Row {
    fn rate(&self) -> f64 {
        self.measured.per_second(self.measured.events)
    }

    fn name(&self) -> String {
        format!(
            "{} instance{}, {} org{}, {}",
            self.instances,
            if self.instances == 1 { "" } else { "s" },
            self.organizations,
            if self.organizations == 1 { "" } else { "s" },
            self.batch
                .map_or_else(|| "single-event".into(), |b| format!("batch x{b}"))
        )
    }
}

/// The ceiling's figures.
struct Ceiling {
    rate: f64,
    probed: Sample,
    rows: u64,
}

pub fn run(args: &Args) -> Result<(), String> {
    check(args)?;
    let began = Instant::now();
    let wants = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("load")
            .build()
            .map_err(|e| format!("starting the load generator's runtime: {e}"))?,
    );
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let size = EventSize::measure();
    let events = Events::new();
    println!("Trailmark PostgreSQL benchmark");
    let load = load_average();
    println!(
        "  machine: {} cores shared by the load generator, PostgreSQL and the instances; load \
         average {} at the start{}",
        cores(),
        load.map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        busy_note(load)
    );
    println!(
        "  event: {:.0} bytes of JSON on average ({}-{}), as in ./bench/ingest",
        size.mean, size.min, size.max
    );
    println!(
        "  instances: {}",
        if args.without_cluster {
            "each commits its own appends (--without-cluster)"
        } else {
            "with --cluster-listen: each organization's appends are committed by the instance that sequences it"
        }
    );
    println!(
        "  each part: {:.1}s warm-up, then {:.1}s measured; single-event {} connections, batch \
         {} x {} events, split over the instances; many organizations = {}",
        args.warmup,
        args.duration,
        args.connections,
        args.batch_connections,
        args.batch_size,
        args.organizations
    );
    let background = runtime.block_on(background_wal(&args.postgres_url))?;
    println!(
        "  WAL written by the PostgreSQL cluster with no bench load: {:.1} KB/s (other users of \
         the cluster; WAL figures below include theirs)",
        background / 1e3
    );
    let relay = if let Some(delay) = args.relay {
        let relay = Relay::start(
            Relay::upstream_of(&args.postgres_url)?,
            Duration::from_micros(delay),
        )?;
        let direct = runtime.block_on(round_trip(&args.postgres_url))?;
        let through = runtime.block_on(round_trip(&Relay::url_through(
            &args.postgres_url,
            relay.addr,
        )?))?;
        println!(
            "  relay: the instances reach PostgreSQL through {}: a round trip (SELECT 1, median) \
             {:.3} ms, against {:.3} ms direct",
            relay.addr,
            through.as_secs_f64() * 1e3,
            direct.as_secs_f64() * 1e3
        );
        Some(relay)
    } else {
        None
    };
    println!();

    let ceiling = if wants(Part::Ceiling) {
        progress(&format!(
            "ceiling: PostgreSQL multi-row INSERT … SELECT FROM UNNEST into a plain table, {} \
             sessions x {} rows a transaction",
            args.batch_connections, args.batch_size
        ));
        let database = Database::create(&args.postgres_url, &runtime, "raw")?;
        let ceiling = runtime.block_on(raw_inserts(
            &database.url()?,
            &events,
            args.batch_connections,
            args.batch_size,
            warmup,
            duration,
        ))?;
        println!(
            "    {:.0} rows/s, WAL {:.0} B/row",
            ceiling.rate,
            per(ceiling.probed.wal, ceiling.rows).unwrap_or(0.0)
        );
        Some(ceiling)
    } else {
        None
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut healthz_rate: Option<Measured> = None;
    let mut durable: Option<Measured> = None;
    let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
    let kinds: Vec<Option<u64>> = [
        wants(Part::Single).then_some(None),
        wants(Part::Batch).then_some(Some(args.batch_size)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (instances, organizations) in [
        (1usize, 1usize),
        (1, args.organizations),
        (2, 1),
        (2, args.organizations),
    ] {
        if kinds.is_empty() {
            break;
        }
        let database = Database::create(
            &args.postgres_url,
            &runtime,
            &format!("x{instances}_o{organizations}"),
        )?;
        let url = database.url()?;
        let instances_url = match &relay {
            Some(relay) => Relay::url_through(&url, relay.addr)?,
            None => url.clone(),
        };
        let work = WorkDir::create(None)?;
        let data_dir = work.path.join("shared-data");
        let mut flags = vec!["--database", &instances_url];
        if !args.without_cluster {
            flags.extend(["--cluster-listen", "127.0.0.1:0"]);
        }
        let mut servers = (0..instances)
            .map(|_| Trailmark::start_with(&binary, &data_dir, API_KEY, &flags))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let mut orgs = Vec::with_capacity(organizations);
        for _ in 0..organizations {
            orgs.push(runtime.block_on(create_organization(addrs[0], API_KEY))?);
        }
        let probe = runtime.block_on(database_probe(
            &url,
            servers.iter().map(Trailmark::pid).collect(),
        ))?;
        if instances == 1 && organizations == 1 && wants(Part::Single) {
            progress(&format!(
                "1 instance: GET /healthz, {} connections, closed loop",
                args.connections
            ));
            let measured = runtime.block_on(healthz(
                addrs[0],
                args.connections,
                warmup,
                duration,
                &probe,
            ))?;
            println!(
                "    {:.0} req/s, machine {} busy",
                measured.per_second(measured.events),
                busy_share(&measured)
            );
            healthz_rate = Some(measured);

            progress(&format!(
                "durable ceiling: axum parses the same requests, two committers insert every \
                 body waiting into the ceiling's table (one multi-row INSERT a transaction), \
                 answers 200; {} connections",
                args.connections
            ));
            let database = Database::create(&args.postgres_url, &runtime, "durable")?;
            let durable_url = database.url()?;
            runtime.block_on(async {
                connect(&durable_url)
                    .await?
                    .batch_execute(PLAIN_TABLE)
                    .await
                    .map_err(|e| format!("creating the durable ceiling's table: {e}"))
            })?;
            // Through the relay too, when there is one, as the instances reach PostgreSQL.
            let ceiling_server = DurableCeiling::in_postgres(&match &relay {
                Some(relay) => Relay::url_through(&durable_url, relay.addr)?,
                None => durable_url.clone(),
            })?;
            let durable_probe =
                runtime.block_on(database_probe(&durable_url, vec![ceiling_server.pid()]))?;
            let measured = runtime.block_on(spread(
                &[ceiling_server.addr],
                &orgs,
                &events,
                None,
                args.connections,
                warmup,
                duration,
                &durable_probe,
            ))?;
            println!(
                "    {:.0} ev/s, machine {} busy",
                measured.per_second(measured.events),
                busy_share(&measured)
            );
            durable = Some(measured);
        }
        for &batch in &kinds {
            let mut row = Row {
                instances,
                organizations,
                batch,
                measured: Measured::default(),
            };
            progress(&format!("{}, closed loop", row.name()));
            let connections = if batch.is_some() {
                args.batch_connections
            } else {
                args.connections
            };
            row.measured = runtime.block_on(spread(
                &addrs,
                &orgs,
                &events,
                batch,
                connections,
                warmup,
                duration,
                &probe,
            ))?;
            println!("    {}", format_row(&row, ceiling.as_ref(), size.mean));
            rows.push(row);
        }
        if let Some(dead) = servers.iter_mut().position(|s| !s.still_running()) {
            return Err(format!(
                "an instance exited during the run; its log:\n{}",
                servers[dead].log_tail()
            ));
        }
        if rows.iter().any(|r| r.measured.errors > 0) {
            println!(
                "    an instance's log, last lines:\n{}",
                servers[0].log_tail()
            );
        }
        println!(
            "    where the database's bytes are, per event stored: {}",
            runtime.block_on(largest_relations(&url))?
        );
        drop(servers);
    }

    println!();
    println!("{}", header());
    println!("{}", "-".repeat(118));
    if let Some(ceiling) = &ceiling {
        println!(
            "{:<36} {:>9.0} {:>8} {:>8} {:>6} {:>7} {:>13} {:>13} {:>9} {:>6} {:>8} {:>5}",
            format!("PostgreSQL ceiling ({} sessions)", args.batch_connections),
            ceiling.rate,
            "-",
            "-",
            0,
            "1.00x",
            bytes(per(ceiling.probed.wal, ceiling.rows), size.mean),
            bytes(per(ceiling.probed.database, ceiling.rows), size.mean),
            "-",
            "-",
            ceiling
                .probed
                .postgres_cpu
                .map_or_else(|| "-".into(), |cpu| format!("{:.2}", cpu / args.duration)),
            ceiling.probed.machine_busy.map_or_else(
                || "-".into(),
                |busy| format!("{:.0}%", busy * 100.0 / (cores() as f64 * args.duration))
            )
        );
    }
    for row in &rows {
        println!("{}", format_row(row, ceiling.as_ref(), size.mean));
        for (kind, count) in &row.measured.error_kinds {
            println!("    {count} x {kind}");
        }
    }
    println!(
        "(events/s and latencies count answers received in the measured window; failed = events \
         not accepted over the whole part; WAL = the cluster's WAL bytes over the window per \
         event acknowledged in it (pg_current_wal_lsn), DB = the database's growth \
         (pg_database_size), srv wrote = the instances' own write_bytes (/proc/<pid>/io), each \
         per event and as a multiple of the event's JSON; cores = the instances' CPU time over \
         the window; pg cores = every PostgreSQL process's; busy = the whole machine's busy \
         share of its cores, load generator included)"
    );
    println!();
    print_summary(
        args,
        ceiling.as_ref(),
        healthz_rate.as_ref(),
        durable.as_ref(),
        &rows,
        size.mean,
    );
    let load = load_average();
    println!(
        "\nThe load generator, PostgreSQL and the instances share {} cores: absolute numbers \
         understate a dedicated machine; the ratios are the result. Load average at the end: \
         {}{}.",
        cores(),
        load.map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        busy_note(load)
    );
    println!("The run took {:.0}s.", began.elapsed().as_secs_f64());
    Ok(())
}

fn check(args: &Args) -> Result<(), String> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err("--duration must be a positive number".into());
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        return Err("--warmup must be zero or more seconds".into());
    }
    if args.connections == 0 || args.batch_connections == 0 || args.organizations == 0 {
        return Err("connection and organization counts must be at least 1".into());
    }
    if !(1..=1000).contains(&args.batch_size) {
        return Err("--batch-size must be 1 to 1000 (Trailmark's limit)".into());
    }
    Ok(())
}

fn per(total: Option<u64>, count: u64) -> Option<f64> {
    (count > 0).then_some(total? as f64 / count as f64)
}

/// `B/event (x JSON)`, or `-`.
fn bytes(per_event: Option<f64>, event: f64) -> String {
    per_event.map_or_else(|| "-".into(), |b| format!("{b:.0} {:.1}x", b / event))
}

fn header() -> String {
    format!(
        "{:<36} {:>9} {:>8} {:>8} {:>6} {:>7} {:>13} {:>13} {:>9} {:>6} {:>8} {:>5}",
        "part",
        "events/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "/ceil",
        "WAL B/e",
        "DB B/e",
        "srv wrote",
        "cores",
        "pg cores",
        "busy"
    )
}

fn format_row(row: &Row, ceiling: Option<&Ceiling>, event: f64) -> String {
    let m = &row.measured;
    let probed = m.probed.unwrap_or_default();
    format!(
        "{:<36} {:>9.0} {:>8} {:>8} {:>6} {:>7} {:>13} {:>13} {:>9} {:>6.2} {:>8} {:>5}",
        row.name(),
        row.rate(),
        ms(m.percentile_ms(0.50)),
        ms(m.percentile_ms(0.99)),
        m.errors,
        ceiling.map_or_else(|| "-".into(), |c| format!("{:.2}x", row.rate() / c.rate)),
        bytes(per(probed.wal, m.events), event),
        bytes(per(probed.database, m.events), event),
        per(Some(probed.written), m.events).map_or_else(|| "-".into(), |b| format!("{b:.0}")),
        probed.cpu / m.window.as_secs_f64().max(f64::MIN_POSITIVE),
        probed.postgres_cpu.map_or_else(
            || "-".into(),
            |cpu| format!("{:.2}", cpu / m.window.as_secs_f64().max(f64::MIN_POSITIVE))
        ),
        busy_share(m)
    )
}

/// The share of the machine's CPU time that was busy over `measured`'s window, as `97%`.
fn busy_share(measured: &Measured) -> String {
    busy_fraction(measured).map_or_else(|| "-".into(), |b| format!("{:.0}%", b * 100.0))
}

fn busy_fraction(measured: &Measured) -> Option<f64> {
    let busy = measured.probed?.machine_busy?;
    Some(busy / (cores() as f64 * measured.window.as_secs_f64()).max(f64::MIN_POSITIVE))
}

/// CPU seconds the whole machine spent per event (or request) of `measured`.
fn machine_cpu_per(measured: &Measured) -> Option<f64> {
    per_f64(measured.probed?.machine_busy?, measured.events)
}

fn per_f64(total: f64, count: u64) -> Option<f64> {
    (count > 0).then_some(total / count as f64)
}

fn print_summary(
    args: &Args,
    ceiling: Option<&Ceiling>,
    healthz: Option<&Measured>,
    durable: Option<&Measured>,
    rows: &[Row],
    event: f64,
) {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<40}{text}");
    };
    let find = |instances: usize, organizations: usize, batch: bool| {
        rows.iter().find(|r| {
            r.instances == instances
                && r.organizations == organizations
                && r.batch.is_some() == batch
        })
    };
    if let Some(ceiling) = ceiling {
        line(
            "PostgreSQL ceiling",
            format!(
                "{:.0} rows/s (plain table, {} sessions x {} rows a transaction); WAL {}; \
                 database {} per row",
                ceiling.rate,
                args.batch_connections,
                args.batch_size,
                bytes(per(ceiling.probed.wal, ceiling.rows), event),
                bytes(per(ceiling.probed.database, ceiling.rows), event)
            ),
        );
    }
    if let Some(one) = find(1, 1, false) {
        let mut text = format!(
            "{:.0} ev/s  p50 {} ms  p99 {} ms",
            one.rate(),
            ms(one.measured.percentile_ms(0.50)),
            ms(one.measured.percentile_ms(0.99))
        );
        if let Some(ceiling) = ceiling {
            let _ = write!(
                text,
                "  = {:.2}x the ceiling; aim >= {AIM_SINGLE_VS_CEILING}x: {}",
                one.rate() / ceiling.rate,
                verdict(one.rate() >= AIM_SINGLE_VS_CEILING * ceiling.rate)
            );
        }
        line("one instance, single-event", text);
        // The bound on the aim for a server that commits these rows before it answers: the same
        // rows committed that way with nothing else done, measured beside it.
        if let (Some(ceiling), Some(durable)) = (
            ceiling,
            // A ceiling that failed bounds nothing.
            durable.filter(|d| d.errors == 0 && d.events > 0),
        ) {
            let rate = durable.per_second(durable.events);
            line(
                "  durable ceiling",
                format!(
                    "{rate:.0} ev/s = {:.2}x the ceiling (the same rows committed a group of \
                     waiting requests at a time, each answered after its COMMIT, nothing else \
                     done); one instance {} of it{}",
                    rate / ceiling.rate,
                    percent(one.rate(), rate),
                    if rate < AIM_SINGLE_VS_CEILING * ceiling.rate {
                        ": the aim is bounded here, for a server that commits these rows before \
                         it answers, at these connections"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    // What the machine allows single-event ingest at best: each event costs at least an HTTP
    // request (as /healthz costs the server and the load generator) plus a row inserted (as
    // the ceiling's rows cost PostgreSQL), all on the same cores.
    if let (Some(ceiling), Some(request)) = (ceiling, healthz.and_then(machine_cpu_per))
        && let Some(row) = ceiling
            .probed
            .machine_busy
            .and_then(|busy| per_f64(busy, ceiling.rows))
    {
        let bound = cores() as f64 / (request + row);
        line(
            "  bound on this machine",
            format!(
                "{bound:.0} ev/s = {:.2}x the ceiling: {} cores / ({:.1} us of CPU a /healthz \
                 request, server and load generator, + {:.1} us a ceiling row)",
                bound / ceiling.rate,
                cores(),
                request * 1e6,
                row * 1e6
            ),
        );
    }
    // Where single-event ingest's CPU goes, beside that bound's two parts: what keeps it from
    // the bound when the machine is busy.
    if let Some(one) = find(1, 1, false)
        && let Some(probed) = one.measured.probed
        && let Some(machine) = machine_cpu_per(&one.measured)
    {
        let micros = |cpu: f64| cpu / one.measured.events.max(1) as f64 * 1e6;
        let postgres = probed.postgres_cpu.map(micros);
        line(
            "  its CPU per event",
            format!(
                "{:.1} us on the machine: the instance {:.1} us, PostgreSQL {}, the rest (load \
                 generator, kernel) {}; the machine {} busy",
                machine * 1e6,
                micros(probed.cpu),
                postgres.map_or_else(|| "-".into(), |us| format!("{us:.1} us")),
                postgres.map_or_else(
                    || "-".into(),
                    |us| format!("{:.1} us", machine * 1e6 - micros(probed.cpu) - us)
                ),
                busy_share(&one.measured)
            ),
        );
    }
    for (organizations, aim) in [
        (1, AIM_TWO_ONE_ORG),
        (args.organizations, AIM_TWO_MANY_ORGS),
    ] {
        for batch in [false, true] {
            let (Some(one), Some(two)) =
                (find(1, organizations, batch), find(2, organizations, batch))
            else {
                continue;
            };
            let ratio = two.rate() / one.rate().max(f64::MIN_POSITIVE);
            line(
                &format!(
                    "two instances vs one, {organizations} org{}, {}",
                    if organizations == 1 { "" } else { "s" },
                    if batch { "batch" } else { "single" }
                ),
                format!(
                    "{:.0} ev/s vs one instance's {:.0} = {ratio:.2}x; aim >= {aim}x: {}{}",
                    two.rate(),
                    one.rate(),
                    verdict(ratio >= aim),
                    // At the same CPU per event, the idle share is all more instances can add.
                    busy_fraction(&one.measured).map_or_else(String::new, |busy| format!(
                        " (one instance kept the machine {:.0}% busy: at its CPU per event, \
                         {:.2}x at most)",
                        busy * 100.0,
                        1.0 / busy.max(f64::MIN_POSITIVE)
                    ))
                ),
            );
        }
    }
    if !rows.is_empty() {
        line(
            "bytes/event",
            format!(
                "WAL aim <= {AIM_WRITTEN_X}x the event's JSON ({:.0} B), database growth aim <= \
                 {AIM_STORED_X}x ({:.0} B)",
                AIM_WRITTEN_X * event,
                AIM_STORED_X * event
            ),
        );
    }
    for row in rows {
        let m = &row.measured;
        let probed = m.probed.unwrap_or_default();
        let (Some(wal), Some(db)) = (per(probed.wal, m.events), per(probed.database, m.events))
        else {
            continue;
        };
        line(
            &format!("  {}", row.name()),
            format!(
                "WAL {wal:>6.0} B = {:>4.1}x {:<6}  database +{db:>5.0} B = {:>4.1}x {}",
                wal / event,
                verdict(wal <= AIM_WRITTEN_X * event),
                db / event,
                verdict(db <= AIM_STORED_X * event)
            ),
        );
    }
    println!("Summary (issue 13's aims beside the ceiling measured in this run)");
    print!("{out}");
    println!(
        "(WAL is what PostgreSQL writes before it commits; the table and index pages it dirties \
         are written again at checkpoints, on top of it. The WAL position is the whole \
         cluster's: other databases' writes during a window count too.)"
    );
}

/// The cluster's WAL bytes per second over one idle second: what other users write.
async fn background_wal(url: &str) -> Result<f64, String> {
    let client = connect(url).await?;
    let lsn = || async {
        client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0))
            .map_err(|e| format!("reading the WAL position: {e}"))
    };
    let before = lsn().await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = lsn().await?;
    Ok((after - before).max(0) as f64 / started.elapsed().as_secs_f64())
}

/// Closed-loop load spread evenly over the instances at `addrs`, each request for the next of
/// `organizations` in turn, measured together.
#[allow(clippy::too_many_arguments)]
async fn spread(
    addrs: &[SocketAddr],
    organizations: &[String],
    events: &Arc<Events>,
    batch: Option<u64>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    probe: &Probe,
) -> Result<Measured, String> {
    let bearer = HeaderValue::from_str(&format!("Bearer {API_KEY}"))
        .map_err(|e| format!("API key header: {e}"))?;
    let turn = Arc::new(AtomicUsize::new(0));
    let runs = addrs.iter().enumerate().map(|(index, &addr)| {
        let events = Arc::clone(events);
        let organizations = organizations.to_vec();
        let turn = Arc::clone(&turn);
        let target = Target {
            addr,
            method: Method::POST,
            path: if batch.is_some() {
                "/audit_logs/events/batch"
            } else {
                "/audit_logs/events"
            },
            bearer: Some(bearer.clone()),
            check: if batch.is_some() {
                Check::BatchItems
            } else {
                Check::Status200
            },
            make: Arc::new(move || {
                let organization =
                    &organizations[turn.fetch_add(1, Ordering::Relaxed) % organizations.len()];
                match batch {
                    Some(size) => events.batch(organization, size),
                    None => events.single(organization),
                }
            }),
        };
        let plan = Plan {
            connections: (connections / addrs.len()).max(1),
            warmup,
            duration,
            pacing: Pacing::Closed,
            // One probe for all instances (it sums them): the first run's window stands for
            // all, as they start together.
            probe: (index == 0).then(|| Arc::clone(probe)),
        };
        load::run(target, plan)
    });
    let mut total = Measured::default();
    for measured in futures_util::future::join_all(runs).await {
        let measured = measured?;
        total.window = total.window.max(measured.window);
        total.probed = total.probed.or(measured.probed);
        total.merge(measured);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// The database's largest tables and indexes, in bytes per event of every log: where the
/// storage goes, whatever Trailmark's schema is.
async fn largest_relations(url: &str) -> Result<String, String> {
    let client = connect(url).await?;
    let events: i64 = client
        .query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM log_heads", &[])
        .await
        .map_err(|e| format!("counting the events: {e}"))?
        .get(0);
    let rows = client
        .query(
            "SELECT relname::TEXT, pg_relation_size(oid) FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i', 't')
             ORDER BY pg_relation_size(oid) DESC LIMIT 8",
            &[],
        )
        .await
        .map_err(|e| format!("reading the relations' sizes: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| {
            format!(
                "{} {:.0} B",
                row.get::<_, String>(0),
                row.get::<_, i64>(1) as f64 / events.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// Closed-loop `GET /healthz` on the instance at `addr`: what an HTTP request costs alone.
async fn healthz(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    probe: &Probe,
) -> Result<Measured, String> {
    let target = Target {
        addr,
        method: Method::GET,
        path: "/healthz",
        bearer: None,
        check: Check::Status200,
        make: Arc::new(|| Prepared {
            body: bytes::Bytes::new(),
            idempotency_key: None,
            events: 1,
        }),
    };
    let plan = Plan {
        connections,
        warmup,
        duration,
        pacing: Pacing::Closed,
        probe: Some(Arc::clone(probe)),
    };
    load::run(target, plan).await
}

/// A plain table for events: the columns any event log searches by, indexed, and the JSON
/// body; not Trailmark's schema, so the ceiling keeps its meaning when that changes.
pub(crate) const PLAIN_TABLE: &str = r#"
    CREATE TABLE events (
        organization_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        action TEXT COLLATE "C" NOT NULL,
        occurred_at TEXT COLLATE "C" NOT NULL,
        actor_id TEXT NOT NULL,
        leaf_hash BYTEA NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (organization_id, sequence)
    );
    CREATE INDEX events_actor ON events (organization_id, actor_id, sequence);
    CREATE INDEX events_occurred ON events (organization_id, occurred_at);
"#;

/// Events generated before the clock starts and reused in turn (each row still gets its own
/// id and sequence): generating them is the client's work, not the database's.
const POOL: u64 = 20_000;

/// Rows per second that `sessions` sessions insert into [`PLAIN_TABLE`], `batch` rows a
/// transaction in one `INSERT … SELECT FROM UNNEST`, each session for its own organization,
/// measured over `duration` after `warmup`, with the WAL and the database's growth over the
/// window.
async fn raw_inserts(
    url: &str,
    events: &Events,
    sessions: usize,
    batch: u64,
    warmup: Duration,
    duration: Duration,
) -> Result<Ceiling, String> {
    connect(url)
        .await?
        .batch_execute(PLAIN_TABLE)
        .await
        .map_err(|e| format!("creating the ceiling's table: {e}"))?;
    let occurred_at = now_iso();
    let pool: Arc<Vec<(String, String, String, String)>> = Arc::new(
        (0..POOL)
            .map(|n| {
                let mut text = String::with_capacity(520);
                events.event(&mut text, n, &occurred_at);
                let body: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                (
                    field(&body["action"]),
                    field(&body["occurred_at"]),
                    field(&body["actor"]["id"]),
                    text,
                )
            })
            .collect(),
    );
    let probe = database_probe(url, Vec::new()).await?;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut tasks = Vec::new();
    for session in 0..sessions {
        let mut client = connect(url).await?;
        let pool = Arc::clone(&pool);
        tasks.push(tokio::spawn(async move {
            let mut counted = 0u64;
            let mut next = 0u64;
            let organization = format!("org_raw_{session}");
            while Instant::now() < end {
                let rows: Vec<u64> = (next..next + batch).collect();
                next += batch;
                let pick = |n: u64| &pool[((n + session as u64 * 997) % POOL) as usize];
                let organizations: Vec<&str> = rows.iter().map(|_| organization.as_str()).collect();
                let sequences: Vec<i64> = rows.iter().map(|&n| n as i64).collect();
                let ids: Vec<String> = rows
                    .iter()
                    .map(|&n| format!("event_{session:02}{n:024}"))
                    .collect();
                let actions: Vec<&str> = rows.iter().map(|&n| pick(n).0.as_str()).collect();
                let times: Vec<&str> = rows.iter().map(|&n| pick(n).1.as_str()).collect();
                let actors: Vec<&str> = rows.iter().map(|&n| pick(n).2.as_str()).collect();
                // The size of a SHA-256 leaf hash; its value does not matter to the database.
                let leaves: Vec<Vec<u8>> = rows.iter().map(|n| n.to_be_bytes().repeat(4)).collect();
                let bodies: Vec<&str> = rows.iter().map(|&n| pick(n).3.as_str()).collect();
                let transaction = client.transaction().await.map_err(|e| e.to_string())?;
                transaction
                    .execute(
                        "INSERT INTO events (organization_id, sequence, id, action, occurred_at, actor_id, leaf_hash, body)
                         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                            $6::TEXT[], $7::BYTEA[], $8::TEXT[])",
                        &[&organizations, &sequences, &ids, &actions, &times, &actors, &leaves, &bodies],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                transaction.commit().await.map_err(|e| e.to_string())?;
                let now = Instant::now();
                if now >= window_start && now <= end {
                    counted += batch;
                }
            }
            Ok::<u64, String>(counted)
        }));
    }
    let sampling = {
        let probe = Arc::clone(&probe);
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start.into()).await;
            let opened = probe().await?;
            tokio::time::sleep_until(end.into()).await;
            Ok::<_, String>(probe().await?.since(&opened))
        })
    };
    let mut rows = 0;
    for task in tasks {
        rows += task.await.map_err(|e| e.to_string())??;
    }
    let probed = sampling.await.map_err(|e| e.to_string())??;
    Ok(Ceiling {
        rate: rows as f64 / duration.as_secs_f64(),
        probed,
        rows,
    })
}
