//! Prometheus metrics at `GET /metrics`, in the OpenMetrics text format, through the official
//! `prometheus-client` registry and encoder.
//!
//! Every series is kept in memory and updated where the thing happens (a request, a commit, a
//! delivery, a job); a scrape reads memory only, never the database. The storage and stream
//! engines report through their observer hooks ([`StoreObserver`], [`DeliveryObserver`]), which
//! [`Metrics`] implements. README "Metrics" lists every series.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use trailmark_domain::Timestamp;
use trailmark_store::{Commit, PoolProbe, Receipt, StoreObserver, StreamState};
use trailmark_streams::observe::{Attempt, DeliveryObserver, Health};

/// Latency buckets, in seconds: 1 ms to 10 s.
const SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Linux reports CPU times in /proc in clock ticks of this many per second (`USER_HZ`, fixed
/// by the kernel's ABI whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    route: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream_id: String,
    organization_id: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamStateLabels {
    stream_id: String,
    organization_id: String,
    r#type: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    stream_id: String,
    r#type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    r#type: String,
}

type SecondsGauge = Gauge<f64, AtomicU64>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS)
}

/// A stream's health as its task last reported it.
struct StreamHealth {
    labels: StreamLabels,
    state: StreamState,
    /// Events delivered (the cursor plus one).
    delivered: u64,
    oldest_pending: Option<Timestamp>,
}

/// The process's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejections: Family<RejectionLabels, Counter>,
    events_ingested: Counter,
    idempotent_replays: Counter,
    commits: Family<OutcomeLabels, Counter>,
    commit_events: Histogram,
    commit_seconds: Histogram,
    fsync_seconds: Histogram,
    pool_wait_seconds: Histogram,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    pool_waiting: Gauge,
    pool: OnceLock<PoolProbe>,
    stream_requests: Family<AttemptLabels, Counter>,
    stream_events: Family<StreamLabels, Counter>,
    stream_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    stream_lag_events: Family<StreamLabels, Gauge>,
    stream_lag_seconds: Family<StreamLabels, SecondsGauge>,
    stream_state: Family<StreamStateLabels, Gauge>,
    streams: Mutex<HashMap<String, StreamHealth>>,
    /// The largest size of each organization's log this instance has seen (its own appends
    /// and its streams' reads).
    log_sizes: Mutex<HashMap<String, u64>>,
    checkpoints: Family<OutcomeLabels, Counter>,
    checkpoint_seconds: Histogram,
    exports: Family<OutcomeLabels, Counter>,
    export_seconds: Histogram,
    export_bytes: Counter,
    export_events: Counter,
    retention_runs: Family<OutcomeLabels, Counter>,
    retention_seconds: Histogram,
    retention_purged: Counter,
    process: ProcessGauges,
}

/// Standard `process_*` series, read from /proc at each scrape.
#[derive(Default)]
struct ProcessGauges {
    start_time: SecondsGauge,
    cpu: Counter<f64, AtomicU64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(seconds_histogram),
            rejections: Family::default(),
            events_ingested: Counter::default(),
            idempotent_replays: Counter::default(),
            commits: Family::default(),
            commit_events: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            commit_seconds: seconds_histogram(),
            fsync_seconds: seconds_histogram(),
            pool_wait_seconds: seconds_histogram(),
            pool_connections: Family::default(),
            pool_max: Gauge::default(),
            pool_waiting: Gauge::default(),
            pool: OnceLock::new(),
            stream_requests: Family::default(),
            stream_events: Family::default(),
            stream_seconds: Family::new_with_constructor(seconds_histogram),
            stream_lag_events: Family::default(),
            stream_lag_seconds: Family::default(),
            stream_state: Family::default(),
            streams: Mutex::new(HashMap::new()),
            log_sizes: Mutex::new(HashMap::new()),
            checkpoints: Family::default(),
            checkpoint_seconds: seconds_histogram(),
            exports: Family::default(),
            export_seconds: seconds_histogram(),
            export_bytes: Counter::default(),
            export_events: Counter::default(),
            retention_runs: Family::default(),
            retention_seconds: seconds_histogram(),
            retention_purged: Counter::default(),
            process: ProcessGauges::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let process = &self.process;
        let root = &mut self.registry;
        root.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            process.start_time.clone(),
        );
        root.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            process.cpu.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes",
            process.resident.clone(),
        );
        root.register(
            "process_virtual_memory_bytes",
            "Virtual memory size, in bytes",
            process.virtual_memory.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors",
            process.open_fds.clone(),
        );
        root.register(
            "process_max_fds",
            "Most file descriptors the process may open",
            process.max_fds.clone(),
        );
        root.register(
            "process_threads",
            "Threads in the process",
            process.threads.clone(),
        );

        let r = root.sub_registry_with_prefix("trailmark");
        r.register(
            "build",
            "The running Trailmark's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            self.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route template",
            self.durations.clone(),
        );
        r.register(
            "rejections",
            "Requests refused, by route template and reason (unauthorized, forbidden, validation, invalid_event, not_found, conflict, payload_too_large, rate_limited, unavailable and others)",
            self.rejections.clone(),
        );
        r.register(
            "events_ingested",
            "Events durably stored",
            self.events_ingested.clone(),
        );
        r.register(
            "idempotent_replays",
            "Requests answered from a stored idempotent response",
            self.idempotent_replays.clone(),
        );
        r.register(
            "store_commits",
            "Group commits, by outcome (committed or failed)",
            self.commits.clone(),
        );
        r.register(
            "store_commit_events",
            "Events appended per group commit",
            self.commit_events.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "Time of a group commit, from its first statement to the end of its COMMIT",
            self.commit_seconds.clone(),
        );
        r.register(
            "store_fsync_duration_seconds",
            "Time of the COMMIT alone: SQLite's WAL write and fsync, or PostgreSQL's WAL flush round trip",
            self.fsync_seconds.clone(),
        );
        r.register(
            "store_pool_wait_duration_seconds",
            "Time a request waited for a database connection",
            self.pool_wait_seconds.clone(),
        );
        r.register(
            "store_pool_connections",
            "Database connections, by state (in_use or idle)",
            self.pool_connections.clone(),
        );
        r.register(
            "store_pool_max_connections",
            "Database connections the pool may open",
            self.pool_max.clone(),
        );
        r.register(
            "store_pool_waiting",
            "Requests waiting for a database connection",
            self.pool_waiting.clone(),
        );
        r.register(
            "stream_requests",
            "Requests to stream destinations, by stream, type and outcome (delivered, retry, invalid)",
            self.stream_requests.clone(),
        );
        r.register(
            "stream_events_delivered",
            "Events destinations acknowledged, by stream",
            self.stream_events.clone(),
        );
        r.register(
            "stream_request_duration_seconds",
            "Time of a request to a stream destination, by type",
            self.stream_seconds.clone(),
        );
        r.register(
            "stream_lag_events",
            "Events in the log not yet delivered by the stream (streams this instance delivers)",
            self.stream_lag_events.clone(),
        );
        r.register(
            "stream_lag_seconds",
            "Age of the oldest event the stream has not delivered",
            self.stream_lag_seconds.clone(),
        );
        r.register(
            "stream_state",
            "The stream's state (1 for the current one)",
            self.stream_state.clone(),
        );
        r.register(
            "checkpoints_signed",
            "Checkpoint signings, by outcome (signed or failed)",
            self.checkpoints.clone(),
        );
        r.register(
            "checkpoint_signing_duration_seconds",
            "Time to compute, sign and store one checkpoint",
            self.checkpoint_seconds.clone(),
        );
        r.register(
            "export_jobs",
            "Export jobs finished, by outcome (ready or error)",
            self.exports.clone(),
        );
        r.register(
            "export_duration_seconds",
            "Time to write one export file",
            self.export_seconds.clone(),
        );
        r.register(
            "export_bytes",
            "Bytes of export files written",
            self.export_bytes.clone(),
        );
        r.register(
            "export_events",
            "Events written to export files",
            self.export_events.clone(),
        );
        r.register(
            "retention_runs",
            "Retention passes, by outcome (ok or failed)",
            self.retention_runs.clone(),
        );
        r.register(
            "retention_duration_seconds",
            "Time of one retention pass over every organization",
            self.retention_seconds.clone(),
        );
        r.register(
            "retention_events_purged",
            "Events whose contents retention removed",
            self.retention_purged.clone(),
        );
        if let Some(started) = process_start_time() {
            self.process.start_time.set(started);
        }
    }

    pub(crate) fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn rejection(&self, route: &str, reason: &str) {
        self.rejections
            .get_or_create(&RejectionLabels {
                route: route.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Events this instance appended: counted, and the organization's log size noted, so its
    /// streams' lag grows at once, not only at their next attempt.
    pub(crate) fn events_ingested(&self, organization_id: &str, receipts: &[Receipt]) {
        self.events_ingested.inc_by(receipts.len() as u64);
        if let Some(last) = receipts.iter().map(|r| r.sequence).max()
            && let Ok(mut sizes) = self.log_sizes.lock()
        {
            let size = sizes.entry(organization_id.to_owned()).or_default();
            *size = (*size).max(last + 1);
        }
    }

    pub(crate) fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }

    pub(crate) fn checkpoint(&self, signed: bool, took: Duration) {
        self.checkpoints
            .get_or_create(&outcome(if signed { "signed" } else { "failed" }))
            .inc();
        self.checkpoint_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn export_finished(&self, events: Option<u64>, bytes: u64, took: Duration) {
        let state = if events.is_some() { "ready" } else { "error" };
        self.exports.get_or_create(&outcome(state)).inc();
        self.export_seconds.observe(took.as_secs_f64());
        self.export_bytes.inc_by(bytes);
        self.export_events.inc_by(events.unwrap_or(0));
    }

    pub(crate) fn retention_run(&self, failed: bool, purged: u64, took: Duration) {
        self.retention_runs
            .get_or_create(&outcome(if failed { "failed" } else { "ok" }))
            .inc();
        self.retention_seconds.observe(took.as_secs_f64());
        self.retention_purged.inc_by(purged);
    }

    /// The exposition: what memory holds now, with the gauges that depend on the moment (ages,
    /// the pool's use, the process's own figures) brought up to date first.
    pub(crate) fn render(&self) -> String {
        self.refresh_streams();
        if let Some(probe) = self.pool.get() {
            let pool = probe();
            self.pool_max.set(pool.max as i64);
            self.pool_waiting.set(pool.waiting as i64);
            for (state, count) in [("in_use", pool.in_use), ("idle", pool.idle)] {
                self.pool_connections
                    .get_or_create(&PoolLabels {
                        state: state.to_owned(),
                    })
                    .set(count as i64);
            }
        }
        self.refresh_process();
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn refresh_streams(&self) {
        let Ok(streams) = self.streams.lock() else {
            return;
        };
        let sizes = self
            .log_sizes
            .lock()
            .map(|sizes| sizes.clone())
            .unwrap_or_default();
        // Rebuilt from the reported health, so a stream that is gone leaves no series behind.
        self.stream_lag_events.clear();
        self.stream_lag_seconds.clear();
        self.stream_state.clear();
        let now = Timestamp::now().unix_millis();
        for health in streams.values() {
            let size = sizes
                .get(&health.labels.organization_id)
                .copied()
                .unwrap_or(0);
            self.stream_lag_events
                .get_or_create(&health.labels)
                .set(size.saturating_sub(health.delivered) as i64);
            let age = health.oldest_pending.map_or(0.0, |received| {
                (now - received.unix_millis()).max(0) as f64 / 1000.0
            });
            self.stream_lag_seconds
                .get_or_create(&health.labels)
                .set(age);
            for state in [
                StreamState::Active,
                StreamState::Inactive,
                StreamState::Error,
                StreamState::Invalid,
            ] {
                self.stream_state
                    .get_or_create(&StreamStateLabels {
                        stream_id: health.labels.stream_id.clone(),
                        organization_id: health.labels.organization_id.clone(),
                        r#type: health.labels.r#type.clone(),
                        state: state.as_str().to_owned(),
                    })
                    .set(i64::from(state == health.state));
            }
        }
    }

    fn refresh_process(&self) {
        let process = &self.process;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
            // After the name: state is field 0, utime 11, stime 12, threads 17, vsize 20,
            // rss (pages) 21 (proc(5), counting from field 3).
            if let (Some(user), Some(system)) = (field(11), field(12)) {
                // A counter only grows: it is moved up to the process's total.
                let total = (user + system) / USER_HZ;
                let counted = process.cpu.get();
                if total > counted {
                    process.cpu.inc_by(total - counted);
                }
            }
            if let Some(threads) = field(17) {
                process.threads.set(threads as i64);
            }
            if let Some(bytes) = field(20) {
                process.virtual_memory.set(bytes as i64);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kilobytes) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
        {
            process.resident.set(kilobytes * 1024);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            process.open_fds.set(entries.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
            && let Some(soft) = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<i64>().ok())
        {
            process.max_fds.set(soft);
        }
    }
}

fn outcome(name: &str) -> OutcomeLabels {
    OutcomeLabels {
        outcome: name.to_owned(),
    }
}

/// When this process started, in seconds since the Unix epoch: boot time plus the start tick.
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + start_ticks / USER_HZ)
}

impl StoreObserver for Metrics {
    fn commit(&self, commit: &Commit) {
        self.commits
            .get_or_create(&outcome(if commit.committed {
                "committed"
            } else {
                "failed"
            }))
            .inc();
        if commit.committed {
            self.commit_events.observe(commit.events as f64);
            self.commit_seconds.observe(commit.total.as_secs_f64());
            self.fsync_seconds.observe(commit.flush.as_secs_f64());
        }
    }

    fn connection_wait(&self, waited: Duration) {
        self.pool_wait_seconds.observe(waited.as_secs_f64());
    }

    fn pool(&self, probe: PoolProbe) {
        let _ = self.pool.set(probe);
    }
}

impl DeliveryObserver for Metrics {
    fn attempt(&self, attempt: &Attempt<'_>) {
        self.stream_requests
            .get_or_create(&AttemptLabels {
                stream_id: attempt.stream_id.to_owned(),
                r#type: attempt.kind.to_owned(),
                outcome: attempt.outcome.as_str().to_owned(),
            })
            .inc();
        self.stream_seconds
            .get_or_create(&KindLabels {
                r#type: attempt.kind.to_owned(),
            })
            .observe(attempt.took.as_secs_f64());
        if attempt.delivered > 0 {
            let labels = self
                .streams
                .lock()
                .ok()
                .and_then(|streams| streams.get(attempt.stream_id).map(|s| s.labels.clone()));
            if let Some(labels) = labels {
                self.stream_events
                    .get_or_create(&labels)
                    .inc_by(attempt.delivered as u64);
            }
        }
    }

    fn health(&self, health: &Health<'_>) {
        if let Ok(mut sizes) = self.log_sizes.lock() {
            let size = sizes.entry(health.organization_id.to_owned()).or_default();
            *size = (*size).max(health.delivered + health.lag_events);
        }
        if let Ok(mut streams) = self.streams.lock() {
            streams.insert(
                health.stream_id.to_owned(),
                StreamHealth {
                    labels: StreamLabels {
                        stream_id: health.stream_id.to_owned(),
                        organization_id: health.organization_id.to_owned(),
                        r#type: health.kind.to_owned(),
                    },
                    state: health.state,
                    delivered: health.delivered,
                    oldest_pending: health.oldest_pending,
                },
            );
        }
    }

    fn released(&self, stream_id: &str) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(stream_id);
        }
    }
}
