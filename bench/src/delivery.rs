//! The delivery benchmark (`./bench/delivery`): how fast one log stream delivers to a local HTTP
//! receiver, and how far behind ingest it runs, beside what the receiver itself accepts.
//!
//! 1. **Backlog.** `--events` events are ingested through `POST /audit_logs/events/batch` with no
//!    stream; then one `http` stream (NDJSON) is created from the beginning of the log and the
//!    time until the receiver holds every event gives the delivery rate.
//! 2. **Steady state.** Single events are ingested at `--rate` events/s (open loop) for
//!    `--duration` seconds while the stream runs; each event's lag is the time from its ingest
//!    acknowledgment (the client read the 200) to its arrival at the receiver.
//! 3. **Ceiling.** The receiver alone: the largest body the stream sent, posted back to back over
//!    one keep-alive connection (a stream sends one request at a time), for `--ceiling-secs`.
//!
//! The receiver runs in this process: it parses each NDJSON body, and records, per event number
//! (`metadata.n`), the first time it arrived; it verifies nothing else (the tests check payloads
//! and signatures). Trailmark runs as the real release binary with `--allow-private-destinations`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::Client;
use crate::payload::now_iso;
use crate::server::{Trailmark, create_organization};
use crate::{WorkDir, cores, filesystem_of, load_average, ms, percent, progress, trailmark_binary};

const API_KEY: &str = "sk_bench_delivery";
/// Aims from issue 5.
const AIM_EVENTS_PER_SECOND: f64 = 20_000.0;
const AIM_P99_LAG_MS: f64 = 2_000.0;
/// How long to wait for the stream to deliver everything before giving up.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(clap::Args)]
pub struct Args {
    /// Events in the backlog delivered in part 1.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events per batch request while building the backlog (Trailmark accepts up to 1,000).
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// Connections building the backlog.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Events per second ingested, one per request, during the steady-state part.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of steady-state ingest.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Connections available to the steady-state ingest; a due event waits when all are busy.
    #[arg(long, default_value_t = 64)]
    rate_connections: usize,
    /// Seconds the receiver ceiling runs.
    #[arg(long, default_value_t = 5.0)]
    ceiling_secs: f64,
    /// The `trailmark` binary to start [default: `trailmark` beside this binary].
    #[arg(long)]
    trailmark_bin: Option<PathBuf>,
    /// Where the database goes [default: the system's temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// First arrival of each event number.
    first: HashMap<u64, Instant>,
    /// Events that arrived again (at-least-once delivery may repeat a batch).
    duplicates: u64,
    requests: u64,
    /// The largest body received, replayed by the ceiling.
    largest_body: Bytes,
    largest_body_events: u64,
}

struct Receiver {
    addr: SocketAddr,
    received: Mutex<Received>,
    /// While set (the ceiling), bodies are parsed and counted but not recorded.
    ceiling: AtomicBool,
    ceiling_events: AtomicU64,
}

impl Receiver {
    fn delivered(&self) -> usize {
        self.received.lock().map_or(0, |r| r.first.len())
    }
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let numbers: Vec<u64> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|item| item["event"]["metadata"]["n"].as_u64())
        .collect();
    if receiver.ceiling.load(Ordering::Relaxed) {
        receiver
            .ceiling_events
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        return StatusCode::OK;
    }
    if let Ok(mut received) = receiver.received.lock() {
        received.requests += 1;
        for n in &numbers {
            if received.first.insert(*n, now).is_some() {
                received.duplicates += 1;
            }
        }
        if numbers.len() as u64 > received.largest_body_events {
            received.largest_body_events = numbers.len() as u64;
            received.largest_body = body;
        }
    }
    StatusCode::OK
}

async fn start_receiver() -> Result<Arc<Receiver>, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the receiver: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("receiver address: {e}"))?;
    let receiver = Arc::new(Receiver {
        addr,
        received: Mutex::new(Received::default()),
        ceiling: AtomicBool::new(false),
        ceiling_events: AtomicU64::new(0),
    });
    let router = axum::Router::new()
        .route("/in", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(receiver)
}

pub fn run(args: &Args) -> Result<(), String> {
    let binary = trailmark_binary(args.trailmark_bin.as_deref())?;
    let work = WorkDir::create(args.work_dir.as_deref())?;
    println!(
        "Delivery benchmark: {} cores, load average {}, data on {}",
        cores(),
        load_average().map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        filesystem_of(&work.path)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the bench's runtime: {e}"))?;
    let trailmark = Trailmark::start_with(
        &binary,
        &work.path.join("trailmark-data"),
        API_KEY,
        &["--allow-private-destinations"],
    )?;
    let outcome = runtime.block_on(measure(args, trailmark.addr));
    if outcome.is_err() {
        eprintln!("trailmark's log tail:\n{}", trailmark.log_tail());
    }
    outcome
}

async fn measure(args: &Args, addr: SocketAddr) -> Result<(), String> {
    let receiver = start_receiver().await?;
    let organization = create_organization(addr, API_KEY).await?;
    let next_n = Arc::new(AtomicU64::new(1));

    progress(&format!(
        "backlog: ingesting {} events ({} connections x batches of {}) with no stream",
        args.events, args.batch_connections, args.batch_size
    ));
    let started = Instant::now();
    ingest_backlog(args, addr, &organization, &next_n).await?;
    let ingest_secs = started.elapsed().as_secs_f64();
    println!(
        "   ingested in {ingest_secs:.1} s ({:.0} ev/s)",
        args.events as f64 / ingest_secs
    );

    progress("backlog: creating the stream from the beginning of the log");
    let mut client = Client::new(addr, API_KEY)?;
    let created_at = Instant::now();
    let stream = client
        .post_json(
            "/audit_logs/streams",
            &json!({"organization_id": organization, "type": "http", "name": "bench", "start": "beginning",
                    "config": {"url": format!("http://{}/in", receiver.addr), "format": "ndjson"}}),
            StatusCode::CREATED,
        )
        .await?;
    let stream_id = stream["id"].as_str().unwrap_or_default().to_owned();
    wait_delivered(&receiver, args.events as usize).await?;
    let backlog_secs = last_arrival(&receiver)
        .duration_since(created_at)
        .as_secs_f64();
    let backlog_rate = args.events as f64 / backlog_secs;
    let (requests, largest) = receiver
        .received
        .lock()
        .map(|r| (r.requests, r.largest_body_events))
        .unwrap_or_default();
    println!(
        "   delivered {} events in {backlog_secs:.2} s = {backlog_rate:.0} ev/s ({requests} requests, {:.0} events a request, at most {largest})",
        args.events,
        args.events as f64 / requests.max(1) as f64
    );

    let total = (args.rate * args.duration).round() as u64;
    progress(&format!(
        "steady state: {total} single events at {} ev/s over {} connections, stream running",
        args.rate, args.rate_connections
    ));
    let first_steady = next_n.load(Ordering::Relaxed);
    let (acks, ingest_secs) = ingest_at_rate(args, addr, &organization, &next_n, total).await?;
    wait_delivered(&receiver, (args.events + total) as usize).await?;
    let mut lags_ms: Vec<f64> = {
        let received = receiver.received.lock().map_err(|_| "receiver lock")?;
        acks.iter()
            .filter_map(|(n, ack)| {
                let arrived = received.first.get(n)?;
                Some(if arrived >= ack {
                    arrived.duration_since(*ack).as_secs_f64() * 1000.0
                } else {
                    // Delivered before the client had read its acknowledgment.
                    -(ack.duration_since(*arrived).as_secs_f64() * 1000.0)
                })
            })
            .collect()
    };
    lags_ms.sort_by(f64::total_cmp);
    let lag = |p: f64| nearest_rank(&lags_ms, p);
    println!(
        "   {} events acknowledged in {ingest_secs:.1} s ({:.0} ev/s achieved); lag p50 {} ms, p99 {} ms, max {} ms",
        acks.len(),
        acks.len() as f64 / ingest_secs,
        ms(lag(50.0)),
        ms(lag(99.0)),
        ms(lags_ms.last().copied())
    );
    let early = lags_ms.iter().filter(|l| **l < 0.0).count();
    if early > 0 {
        println!(
            "   ({early} events reached the receiver before their acknowledgment reached the client: negative lag)"
        );
    }

    progress(&format!(
        "ceiling: the receiver alone, the largest body the stream sent, back to back over one connection for {} s",
        args.ceiling_secs
    ));
    let (ceiling_rate, ceiling_p50) = receiver_ceiling(&receiver, args.ceiling_secs).await?;
    let health = client
        .get_json(&format!("/audit_logs/streams/{stream_id}"))
        .await?;
    let (duplicates, missing) = {
        let received = receiver.received.lock().map_err(|_| "receiver lock")?;
        let missing = (1..first_steady + total)
            .filter(|n| !received.first.contains_key(n))
            .count();
        (received.duplicates, missing)
    };

    println!();
    println!("Summary");
    println!(
        "  backlog delivery   {backlog_rate:>9.0} ev/s  = {} of the receiver ceiling ({ceiling_rate:.0} ev/s, p50 {} ms a request); aim >= {AIM_EVENTS_PER_SECOND:.0} ev/s: {}",
        percent(backlog_rate, ceiling_rate),
        ms(ceiling_p50),
        if backlog_rate >= AIM_EVENTS_PER_SECOND {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  steady-state lag   p50 {} ms  p99 {} ms  max {} ms at {:.0} ev/s; aim p99 < {AIM_P99_LAG_MS:.0} ms: {}",
        ms(lag(50.0)),
        ms(lag(99.0)),
        ms(lags_ms.last().copied()),
        acks.len() as f64 / ingest_secs,
        if lag(99.0).is_some_and(|p| p < AIM_P99_LAG_MS) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  delivered          {} events, {missing} missing, {duplicates} duplicates; stream state {}, lag_events {}, last_error {}",
        args.events + total,
        health["state"],
        health["lag_events"],
        health["last_error"]
    );
    Ok(())
}

async fn ingest_backlog(
    args: &Args,
    addr: SocketAddr,
    organization: &str,
    next_n: &Arc<AtomicU64>,
) -> Result<(), String> {
    let batches = args.events.div_ceil(args.batch_size);
    let next_batch = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.batch_connections.max(1) {
        let (next_batch, next_n) = (Arc::clone(&next_batch), Arc::clone(next_n));
        let organization = organization.to_owned();
        let (events, batch_size) = (args.events, args.batch_size);
        workers.push(tokio::spawn(async move {
            let mut client = Client::new(addr, API_KEY)?;
            loop {
                let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok::<_, String>(());
                }
                let size = batch_size.min(events - batch * batch_size);
                let first = next_n.fetch_add(size, Ordering::Relaxed);
                let occurred_at = now_iso();
                let mut body = format!(r#"{{"organization_id":"{organization}","events":["#);
                for n in first..first + size {
                    if n != first {
                        body.push(',');
                    }
                    push_numbered_event(&mut body, n, &occurred_at);
                }
                body.push_str("]}");
                let (status, answer) = client
                    .send(Method::POST, "/audit_logs/events/batch", Some(body))
                    .await?;
                if status != StatusCode::OK || answer.windows(17).any(|w| w == b"\"success\":false")
                {
                    return Err(format!(
                        "batch ingest answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| format!("ingest task: {e}"))??;
    }
    Ok(())
}

/// Sends `total` single events, the i-th due at `i / rate` seconds; returns each event's number
/// and the time its 200 was read, and how long ingest took.
async fn ingest_at_rate(
    args: &Args,
    addr: SocketAddr,
    organization: &str,
    next_n: &Arc<AtomicU64>,
    total: u64,
) -> Result<(Vec<(u64, Instant)>, f64), String> {
    let start = tokio::time::Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let first_n = next_n.fetch_add(total, Ordering::Relaxed);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut workers = Vec::new();
    for _ in 0..args.rate_connections.max(1) {
        let next = Arc::clone(&next);
        let organization = organization.to_owned();
        workers.push(tokio::spawn(async move {
            let mut client = Client::new(addr, API_KEY)?;
            let mut acks = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, String>(acks);
                }
                tokio::time::sleep_until(start + interval * i as u32).await;
                let n = first_n + i;
                let mut body = format!(r#"{{"organization_id":"{organization}","event":"#);
                push_numbered_event(&mut body, n, &now_iso());
                body.push('}');
                let (status, answer) = client
                    .send(Method::POST, "/audit_logs/events", Some(body))
                    .await?;
                if status != StatusCode::OK {
                    return Err(format!(
                        "ingest answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ));
                }
                acks.push((n, Instant::now()));
            }
        }));
    }
    let mut acks = Vec::with_capacity(total as usize);
    for worker in workers {
        acks.extend(worker.await.map_err(|e| format!("ingest task: {e}"))??);
    }
    Ok((acks, start.elapsed().as_secs_f64()))
}

async fn wait_delivered(receiver: &Receiver, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while receiver.delivered() < count {
        if Instant::now() > deadline {
            return Err(format!(
                "the stream delivered {} of {count} events in {} s",
                receiver.delivered(),
                DELIVERY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn last_arrival(receiver: &Receiver) -> Instant {
    receiver
        .received
        .lock()
        .ok()
        .and_then(|r| r.first.values().max().copied())
        .unwrap_or_else(Instant::now)
}

/// Posts the largest body the stream sent, one request at a time, for `secs`: events/s the
/// receiver accepted, and the median request time.
async fn receiver_ceiling(receiver: &Receiver, secs: f64) -> Result<(f64, Option<f64>), String> {
    let body = receiver
        .received
        .lock()
        .map(|r| String::from_utf8_lossy(&r.largest_body).into_owned())
        .map_err(|_| "receiver lock")?;
    receiver.ceiling.store(true, Ordering::Relaxed);
    let mut client = Client::new(receiver.addr, API_KEY)?;
    let mut times_ms = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let sent = Instant::now();
        let (status, _) = client.send(Method::POST, "/in", Some(body.clone())).await?;
        if status != StatusCode::OK {
            return Err(format!("the receiver answered {status}"));
        }
        times_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = start.elapsed().as_secs_f64();
    receiver.ceiling.store(false, Ordering::Relaxed);
    times_ms.sort_by(f64::total_cmp);
    Ok((
        receiver.ceiling_events.load(Ordering::Relaxed) as f64 / elapsed,
        nearest_rank(&times_ms, 50.0),
    ))
}

/// The p-th percentile of sorted values, nearest rank.
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One small event in the SDK shape carrying its number in `metadata.n`, which the receiver
/// reads to match each delivery with its acknowledgment.
fn push_numbered_event(out: &mut String, n: u64, occurred_at: &str) {
    let _ = write!(
        out,
        r#"{{"action":"user.signed_in","occurred_at":"{occurred_at}","actor":{{"id":"user_{n}","name":"Jon Smith","type":"user"}},"targets":[{{"id":"team_1","type":"team"}}],"context":{{"location":"192.0.2.8","user_agent":"bench"}},"metadata":{{"n":{n}}}}}"#
    );
}
