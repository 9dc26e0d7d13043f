//! The load generator: one keep-alive HTTP/1 connection per worker, closed-loop (each worker
//! sends its next request as soon as the previous answer is read) or open-loop (requests are
//! due at fixed times, whatever the server does).
//!
//! Every target (Trailmark, its `/healthz` and the HTTP ceiling) is driven by this same code with the same
//! settings, so the generator's own cost weighs equally on both sides of a ratio.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::probe::{Probe, Sample};

/// A request that has not answered by then counts as an error; it bounds the drain at the end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct error messages kept for the report; the count covers all of them.
const ERROR_KINDS_KEPT: usize = 5;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// One request body, ready to send.
pub struct Prepared {
    /// Empty for a `GET`.
    pub body: Bytes,
    pub idempotency_key: Option<String>,
    /// Events the body carries; an accepted request counts this many.
    pub events: u64,
}

/// How to judge an answer.
#[derive(Clone, Copy)]
pub enum Check {
    /// A 200 accepts the one event.
    Status200,
    /// A 200 carries one result per event; each `"success":false` in it is a failed event.
    BatchItems,
}

/// Where and what to send.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: &'static str,
    pub bearer: Option<HeaderValue>,
    pub check: Check,
    pub make: Arc<dyn Fn() -> Prepared + Send + Sync>,
}

pub enum Pacing {
    /// Each connection sends back to back.
    Closed,
    /// Requests are due every `1/rate` seconds. A request that found every connection busy
    /// counts its latency from when it was due, so a stalled server is charged for the requests
    /// it kept waiting (no coordinated omission).
    Open { rate: f64 },
}

pub struct Plan {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub pacing: Pacing,
    /// Read when the measured window opens and when it closes; the difference is
    /// [`Measured::probed`].
    pub probe: Option<Probe>,
}

/// What one phase measured. Successes and latencies count only answers that arrived inside
/// the measured window; errors count every failed request of the phase, warm-up included.
#[derive(Default)]
pub struct Measured {
    pub requests: u64,
    pub events: u64,
    /// Microseconds, one per successful request in the window; sorted by `finish`.
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Open loop only: the longest a due request waited for a free connection (in the window).
    pub max_send_lag: Duration,
    pub window: Duration,
    /// Events accepted over the whole phase, warm-up and the drain after the window included:
    /// what the server stored.
    pub stored: u64,
    /// What the plan's probe saw change over the measured window.
    pub probed: Option<Sample>,
}

impl Measured {
    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile in milliseconds; `None` when nothing succeeded.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((p * self.latencies_us.len() as f64).ceil() as usize).max(1);
        Some(self.latencies_us[rank.min(self.latencies_us.len()) - 1] as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.latencies_us.last().map(|&us| us as f64 / 1000.0)
    }

    pub fn merge(&mut self, other: Measured) {
        self.requests += other.requests;
        self.events += other.events;
        self.stored += other.stored;
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for (kind, count) in other.error_kinds {
            self.note_errors(kind, count);
        }
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
    }

    fn note_errors(&mut self, kind: String, count: u64) {
        if self.error_kinds.len() < ERROR_KINDS_KEPT || self.error_kinds.contains_key(&kind) {
            *self.error_kinds.entry(kind).or_default() += count;
        }
    }

    fn error(&mut self, kind: String, failed: u64) {
        self.errors += failed;
        self.note_errors(kind, failed);
    }

    fn finish(&mut self) {
        self.latencies_us.sort_unstable();
    }
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        // Small requests and answers: without this, Nagle plus delayed ACKs add tens of ms.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            // The error, if any, reaches the next send on this connection, which reports it.
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }
}

/// Outcome of one request: events accepted, or an error description and the events it lost.
enum Answer {
    Accepted(u64),
    PartlyFailed { accepted: u64, failed: u64 },
    Failed { kind: String, failed: u64 },
}

async fn send(connection: &mut Connection, target: &Target, host: &HeaderValue) -> Answer {
    let prepared = (target.make)();
    let events = prepared.events;
    let failed = |kind: String| Answer::Failed {
        kind,
        failed: events,
    };
    let mut request = Request::builder()
        .method(target.method.clone())
        .uri(target.path)
        .header(HOST, host.clone());
    if !prepared.body.is_empty() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    if let Some(bearer) = &target.bearer {
        request = request.header(AUTHORIZATION, bearer.clone());
    }
    if let Some(key) = prepared.idempotency_key {
        request = request.header(&IDEMPOTENCY_KEY, key);
    }
    let request = match request.body(Full::new(prepared.body)) {
        Ok(request) => request,
        Err(e) => return failed(format!("building the request: {e}")),
    };
    let exchange = async {
        connection
            .sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        // Read the whole body: the connection is reusable only after it, and a real client
        // reads the answer too.
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => failed(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        Ok(Err(kind)) => failed(kind),
        Ok(Ok((status, body))) if status != hyper::StatusCode::OK => {
            let text = String::from_utf8_lossy(&body);
            let excerpt: String = text.chars().take(160).collect();
            failed(format!("HTTP {}: {excerpt}", status.as_u16()))
        }
        Ok(Ok((_, body))) => match target.check {
            Check::Status200 => Answer::Accepted(events),
            Check::BatchItems => {
                let failures = count_occurrences(&body, b"\"success\":false");
                if failures == 0 {
                    Answer::Accepted(events)
                } else {
                    Answer::PartlyFailed {
                        accepted: events.saturating_sub(failures),
                        failed: failures,
                    }
                }
            }
        },
    }
}

fn count_occurrences(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

/// Runs `plan` against `target` and returns what the measured window saw.
pub async fn run(target: Target, plan: Plan) -> Result<Measured, String> {
    let host =
        HeaderValue::from_str(&target.addr.to_string()).map_err(|e| format!("host header: {e}"))?;
    // Connecting before the clock starts keeps TCP handshakes out of the first latencies.
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        connections.push(Connection::open(target.addr).await?);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let window_start = start + plan.warmup;
    let end = window_start + plan.duration;
    let interval = match plan.pacing {
        Pacing::Closed => None,
        Pacing::Open { rate } => Some(1.0 / rate),
    };
    let next_due = Arc::new(AtomicU64::new(0));
    let probing = plan.probe.map(|probe| {
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start).await;
            let opened = probe().await?;
            tokio::time::sleep_until(end).await;
            Ok::<_, String>(probe().await?.since(&opened))
        })
    });

    let mut workers = Vec::with_capacity(connections.len());
    for connection in connections {
        let target = target.clone();
        let host = host.clone();
        let next_due = Arc::clone(&next_due);
        workers.push(tokio::spawn(async move {
            let mut connection = Some(connection);
            let mut measured = Measured::default();
            tokio::time::sleep_until(start).await;
            loop {
                // `due` is when the request should go out; latency counts from `counted_from`.
                let (due, counted_from) = match interval {
                    None => {
                        let now = tokio::time::Instant::now();
                        (now, now)
                    }
                    Some(interval) => {
                        let slot = next_due.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(slot as f64 * interval);
                        if due >= end {
                            break;
                        }
                        let taken = tokio::time::Instant::now();
                        if taken >= due {
                            // Every connection was busy when this request fell due: the server
                            // kept it waiting, so the wait is part of its latency.
                            if due >= window_start {
                                measured.max_send_lag =
                                    measured.max_send_lag.max(taken.duration_since(due));
                            }
                            (due, due)
                        } else {
                            // An idle connection waited for the slot. The timer wakes it up to
                            // a millisecond late; that is the generator's delay, not the
                            // server's, so latency counts from the actual send.
                            tokio::time::sleep_until(due).await;
                            (due, tokio::time::Instant::now())
                        }
                    }
                };
                if due >= end {
                    break;
                }
                let open = match connection.as_mut() {
                    Some(open) => open,
                    None => match Connection::open(target.addr).await {
                        Ok(open) => connection.insert(open),
                        Err(kind) => {
                            measured.error(kind, 1);
                            // A refused connect returns at once; pausing keeps a dead server
                            // from turning this loop into a busy spin until the end.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let answer = send(open, &target, &host).await;
                let done = tokio::time::Instant::now();
                let in_window = done >= window_start && done <= end;
                let latency_us = done.saturating_duration_since(counted_from).as_micros() as u64;
                match answer {
                    Answer::Accepted(events) => {
                        measured.stored += events;
                        if in_window {
                            measured.requests += 1;
                            measured.events += events;
                            measured.latencies_us.push(latency_us);
                        }
                    }
                    Answer::PartlyFailed { accepted, failed } => {
                        measured.stored += accepted;
                        if in_window {
                            measured.requests += 1;
                            measured.events += accepted;
                            measured.latencies_us.push(latency_us);
                        }
                        measured.error("batch items with \"success\":false".into(), failed);
                    }
                    Answer::Failed { kind, failed } => {
                        measured.error(kind, failed);
                        // After a transport error hyper's connection is unusable; an HTTP
                        // error leaves it healthy, but reopening is harmless and simpler.
                        connection = None;
                    }
                }
            }
            measured
        }));
    }

    let mut total = Measured {
        window: plan.duration,
        ..Measured::default()
    };
    for worker in workers {
        total.merge(
            worker
                .await
                .map_err(|e| format!("a load worker failed: {e}"))?,
        );
    }
    if let Some(probing) = probing {
        total.probed = Some(
            probing
                .await
                .map_err(|e| format!("the window's probe failed: {e}"))??,
        );
    }
    total.finish();
    Ok(total)
}

/// Says when the open loop could not send on time because every connection was busy; the
/// latencies already include that wait, the note says how large it got.
pub fn lag_note(measured: &Measured) -> Option<String> {
    (measured.max_send_lag > Duration::from_millis(1)).then(|| {
        format!(
            "a due request waited up to {:.1} ms for a free connection (counted in its latency)",
            measured.max_send_lag.as_secs_f64() * 1000.0
        )
    })
}
