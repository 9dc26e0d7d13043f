//! Prometheus metrics at `GET /metrics`, in the OpenMetrics text format, through the official
//! `prometheus-client` registry and encoder.
//!
//! This registry holds the HTTP series (requests, latencies, refusals by reason), the build and
//! the process; the application's own series (commits, the connection pool, streams, jobs) are
//! registered into it from [`AppMetrics`]. Every series is kept in memory and updated where the
//! thing happens; a scrape reads memory only, never the database. README "Metrics" lists them.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use trailmark_app::metrics::{AppMetrics, SECONDS};

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

type SecondsGauge = Gauge<f64, AtomicU64>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS)
}

/// The process's metrics registry.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejections: Family<RejectionLabels, Counter>,
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

impl Metrics {
    /// The registry, with the application's series registered beside the HTTP ones.
    pub(crate) fn new(app: &AppMetrics) -> Self {
        let mut metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(seconds_histogram),
            rejections: Family::default(),
            process: ProcessGauges::default(),
        };
        metrics.register(app);
        metrics
    }

    fn register(&mut self, app: &AppMetrics) {
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
        app.register(r);
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
    /// The exposition: what memory holds now, with the series that depend on the moment (ages,
    /// the pool's use, the process's own figures) brought up to date first.
    pub(crate) fn render(&self, app: &AppMetrics) -> String {
        app.refresh();
        self.refresh_process();
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
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
