//! The PostgreSQL benchmark (`./bench/postgres`): Trailmark's ingest over PostgreSQL with one
//! and with two instances (one database, one shared data directory), beside PostgreSQL's own
//! multi-row insert rate for the same rows into the same tables, in one run on one machine.
//!
//! Each part gets a fresh database on the server `--postgres-url` names, dropped afterwards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;

use crate::load::{self, Check, Measured, Pacing, Plan, Target};
use crate::payload::{Events, event_body, now_iso, search_text};
use crate::server::{Trailmark, create_organization};
use crate::{WorkDir, cores, load_average, ms, percent, progress, trailmark_binary};

const API_KEY: &str = "sk_bench_postgres";

#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL database the benchmark may connect to and create databases from.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Seconds measured per part, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts, per part.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent connections for single-event ingest (split between the instances).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Concurrent connections for batch ingest (split between the instances).
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Events per batch request, and rows per transaction in the raw-insert ceiling.
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// The `trailmark` binary to start [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
}

/// A database of this run's, dropped when it ends.
struct Database {
    admin_url: String,
    name: String,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl Database {
    fn create(
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
        })
    }

    fn url(&self) -> Result<String, String> {
        let (server, _) = self
            .admin_url
            .rsplit_once('/')
            .ok_or("--postgres-url needs a database name")?;
        Ok(format!("{server}/{}", self.name))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = self.runtime.block_on(admin(&self.admin_url, &statement));
    }
}

async fn admin(url: &str, statement: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .map_err(|e| format!("{statement}: {e}"))
}

pub fn run(args: &Args) -> Result<(), String> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("load")
            .build()
            .map_err(|e| format!("starting the load generator's runtime: {e}"))?,
    );
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
    println!("Trailmark PostgreSQL benchmark");
    println!(
        "  machine: {} cores shared by the load generator, PostgreSQL and the instances; load \
         average {} at the start",
        cores(),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
    );
    println!(
        "  each part: {:.1}s warm-up, then {:.1}s measured; single-event {} connections, batch \
         {} x {} events",
        args.warmup, args.duration, args.connections, args.batch_connections, args.batch_size
    );
    println!();

    progress(
        "ceiling: PostgreSQL multi-row INSERT … SELECT FROM UNNEST of the same rows, batch per transaction",
    );
    let ceiling = {
        let database = Database::create(&args.postgres_url, &runtime, "raw")?;
        // Trailmark's own migrations make the tables, so the rows land in the same schema.
        let instance = Trailmark::start_with(
            &binary,
            &WorkDir::create(None)?.path.join("raw"),
            API_KEY,
            &["--database", &database.url()?],
        )?;
        drop(instance);
        runtime.block_on(raw_inserts(
            &database.url()?,
            args.batch_connections,
            args.batch_size,
            warmup,
            duration,
        ))?
    };
    println!("    {ceiling:.0} rows/s");

    let mut lines = vec![format!(
        "{:<44} {:>12} {:>9} {:>9} {:>9}",
        "part", "events/s", "p50 ms", "p99 ms", "vs raw"
    )];
    for instances in [1usize, 2] {
        let database = Database::create(&args.postgres_url, &runtime, &format!("x{instances}"))?;
        let url = database.url()?;
        let work = WorkDir::create(None)?;
        let data_dir = work.path.join("shared-data");
        let servers = (0..instances)
            .map(|_| Trailmark::start_with(&binary, &data_dir, API_KEY, &["--database", &url]))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let organization = runtime.block_on(create_organization(addrs[0], API_KEY))?;
        let events = Events::new();
        for (label, batch) in [("single-event", None), ("batch", Some(args.batch_size))] {
            progress(&format!(
                "{instances} instance(s), {label} ingest, closed loop"
            ));
            let connections = if batch.is_some() {
                args.batch_connections
            } else {
                args.connections
            };
            let measured = runtime.block_on(spread(
                &addrs,
                &organization,
                &events,
                batch,
                connections,
                warmup,
                duration,
            ))?;
            let rate = measured.per_second(measured.events);
            lines.push(format!(
                "{:<44} {:>12.0} {:>9} {:>9} {:>9}",
                format!(
                    "{instances} instance(s), {label}{}",
                    batch.map_or_else(String::new, |b| format!(" x{b}"))
                ),
                rate,
                ms(measured.percentile_ms(0.50)),
                ms(measured.percentile_ms(0.99)),
                percent(rate, ceiling)
            ));
            if measured.errors > 0 {
                lines.push(format!(
                    "    {} errors: {:?}",
                    measured.errors, measured.error_kinds
                ));
            }
        }
        drop(servers);
    }
    println!();
    println!("PostgreSQL raw multi-row insert ceiling: {ceiling:.0} rows/s");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Closed-loop load spread evenly over the instances at `addrs`, measured together.
async fn spread(
    addrs: &[SocketAddr],
    organization: &str,
    events: &Arc<Events>,
    batch: Option<u64>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Measured, String> {
    let bearer = HeaderValue::from_str(&format!("Bearer {API_KEY}"))
        .map_err(|e| format!("API key header: {e}"))?;
    let runs = addrs.iter().map(|&addr| {
        let events = Arc::clone(events);
        let organization = organization.to_owned();
        let target = Target {
            addr,
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
            make: Arc::new(move || match batch {
                Some(size) => events.batch(&organization, size),
                None => events.single(&organization),
            }),
        };
        let plan = Plan {
            connections: (connections / addrs.len()).max(1),
            warmup,
            duration,
            pacing: Pacing::Closed,
        };
        load::run(target, plan)
    });
    let mut total = Measured::default();
    for measured in futures_util::future::join_all(runs).await {
        let measured = measured?;
        total.window = total.window.max(measured.window);
        total.merge(measured);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// Rows per second that `connections` sessions insert into `events` (and one target row each
/// into `event_targets`), `batch` rows per transaction with the same bulk statement Trailmark
/// uses, measured over `duration` after `warmup`.
async fn raw_inserts(
    url: &str,
    connections: usize,
    batch: u64,
    warmup: Duration,
    duration: Duration,
) -> Result<f64, String> {
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let mut sessions = Vec::new();
    for session in 0..connections {
        let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        tokio::spawn(connection);
        sessions.push(tokio::spawn(async move {
            let mut counted = 0u64;
            let mut next = 0u64;
            let occurred_at = now_iso();
            while Instant::now() < end {
                let rows: Vec<u64> = (next..next + batch).collect();
                next += batch;
                let organization = format!("org_raw_{session}");
                let column = |f: &dyn Fn(u64) -> String| rows.iter().map(|&n| f(n)).collect::<Vec<String>>();
                let organizations = column(&|_| organization.clone());
                let sequences: Vec<i64> = rows.iter().map(|&n| n as i64).collect();
                let ids = column(&|n| format!("event_raw_{session}_{n}"));
                let actions = column(&|_| "user.signed_in".into());
                let times: Vec<i64> = rows.iter().map(|&n| 1_780_000_000_000 + n as i64).collect();
                let actors = column(&|n| format!("user_{n}"));
                let names: Vec<Option<String>> = rows.iter().map(|n| Some(format!("Person {n}"))).collect();
                let leaves: Vec<Vec<u8>> = rows.iter().map(|n| n.to_be_bytes().repeat(4)).collect();
                let bodies = column(&|n| event_body(n, &occurred_at).to_string());
                let texts = column(&|n| search_text(n).to_lowercase());
                let targets = column(&|n| format!("team_{}", n % 100));
                let kinds = column(&|_| "team".into());
                let transaction = client.transaction().await.map_err(|e| e.to_string())?;
                transaction
                    .execute(
                        "INSERT INTO events (organization_id, sequence, id, action, occurred_at, received_at, actor_id,
                            actor_name, leaf_hash, body, search_text)
                         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $5::BIGINT[],
                            $6::TEXT[], $7::TEXT[], $8::BYTEA[], $9::TEXT[], $10::TEXT[])",
                        &[&organizations, &sequences, &ids, &actions, &times, &actors, &names, &leaves, &bodies, &texts],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                transaction
                    .execute(
                        "INSERT INTO event_targets (organization_id, sequence, target_id, target_type)
                         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[])",
                        &[&organizations, &sequences, &targets, &kinds],
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
    let mut rows = 0;
    for session in sessions {
        rows += session.await.map_err(|e| e.to_string())??;
    }
    Ok(rows as f64 / duration.as_secs_f64())
}
