//! The application's metrics, kept current where things happen (a commit, a delivery, a job),
//! never computed by queries at scrape time: events ingested and replayed, storage commits and
//! the connection pool (as the store's [`StoreObserver`]), stream deliveries and health (as the
//! streams' [`DeliveryObserver`]), checkpoint signing, export and retention jobs. The HTTP
//! adapter registers them beside its own series ([`AppMetrics::register`]) and calls
//! [`AppMetrics::refresh`] before each scrape, for the values that depend on the moment.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use trailmark_domain::Timestamp;
use trailmark_store::{Commit, Handover, PoolProbe, Receipt, StoreObserver, StreamState};
use trailmark_streams::observe::{Attempt, DeliveryObserver, Health};

/// Latency buckets, in seconds: 1 ms to 10 s.
pub const SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

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
struct IncidentLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
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

pub struct AppMetrics {
    events_ingested: Counter,
    idempotent_replays: Counter,
    commits: Family<OutcomeLabels, Counter>,
    handovers: Family<OutcomeLabels, Counter>,
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
    incidents_open: Family<IncidentLabels, Gauge>,
    incidents_opened: Family<IncidentLabels, Counter>,
    alert_notifications: Family<NotificationLabels, Counter>,
}

impl Default for AppMetrics {
    fn default() -> Self {
        AppMetrics {
            events_ingested: Counter::default(),
            idempotent_replays: Counter::default(),
            commits: Family::default(),
            handovers: Family::default(),
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
            incidents_open: Family::default(),
            incidents_opened: Family::default(),
            alert_notifications: Family::default(),
        }
    }
}

impl AppMetrics {
    /// Puts every series into `registry` (the caller's `trailmark` prefix applies).
    pub fn register(&self, r: &mut Registry) {
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
            "store_handovers",
            "Appends handed to the instance that sequences their organization (--cluster-listen), by outcome: answered, or committed_here when it could not be reached or did not answer",
            self.handovers.clone(),
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
            "Time of the durable write: SQLite's log write and fsync, or PostgreSQL's last round trip (executing the inserts, and the COMMIT that flushes the WAL)",
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
        r.register(
            "alert_incidents_open",
            "Alert incidents not yet resolved, by kind (stream; an export incident closes as it opens), as the database holds them at this instance's last look",
            self.incidents_open.clone(),
        );
        r.register(
            "alert_incidents",
            "Alert incidents this instance opened, by kind (stream or export)",
            self.incidents_opened.clone(),
        );
        r.register(
            "alert_notifications",
            "Alert webhook requests this instance made, by type (stream.failing, stream.recovered, export.failed) and outcome (sent: acknowledged with a 2xx, or failed: retried)",
            self.alert_notifications.clone(),
        );
    }

    /// The open incidents of each kind, as the database holds them.
    pub(crate) fn incidents_open(&self, open: &[(trailmark_store::IncidentKind, i64)]) {
        for (kind, count) in open {
            self.incidents_open
                .get_or_create(&IncidentLabels {
                    kind: kind.as_str().into(),
                })
                .set(*count);
        }
    }

    pub(crate) fn incident_opened(&self, kind: trailmark_store::IncidentKind) {
        self.incidents_opened
            .get_or_create(&IncidentLabels {
                kind: kind.as_str().into(),
            })
            .inc();
    }

    pub(crate) fn alert_notification(&self, kind: &str, sent: bool) {
        self.alert_notifications
            .get_or_create(&NotificationLabels {
                r#type: kind.into(),
                outcome: if sent { "sent" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Events appended to an organization's log: counted, and the log's size noted, so its
    /// streams' lag grows at once, not only at their next attempt.
    pub(crate) fn events_appended(&self, organization_id: &str, receipts: &[Receipt]) {
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

    /// Events appended to any log (from apps, the portal, legal holds) since the process started.
    pub fn events_ingested(&self) -> u64 {
        self.events_ingested.get()
    }

    /// Repeated idempotent requests answered from an earlier commit.
    pub fn idempotent_replays(&self) -> u64 {
        self.idempotent_replays.get()
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

    /// Brings the series that depend on the moment up to date: the pool's use, and each
    /// stream's lag and state (rebuilt from the reported health, so a stream that is gone
    /// leaves no series behind).
    pub fn refresh(&self) {
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
        self.refresh_streams();
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
}

fn outcome(name: &str) -> OutcomeLabels {
    OutcomeLabels {
        outcome: name.to_owned(),
    }
}

impl StoreObserver for AppMetrics {
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

    fn handover(&self, handover: Handover) {
        self.handovers
            .get_or_create(&outcome(match handover {
                Handover::Answered => "answered",
                Handover::CommittedHere => "committed_here",
            }))
            .inc();
    }

    fn connection_wait(&self, waited: Duration) {
        self.pool_wait_seconds.observe(waited.as_secs_f64());
    }

    fn pool(&self, probe: PoolProbe) {
        let _ = self.pool.set(probe);
    }
}

impl DeliveryObserver for AppMetrics {
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
