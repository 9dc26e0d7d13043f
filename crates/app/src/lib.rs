//! Trailmark's application layer: one handle, [`Trailmark`], whose methods are the use cases.
//!
//! Every adapter — the HTTP API, the Admin Portal's pages, the CLI — turns its input into domain
//! values and calls a method here; none of them talks to storage or does a use case's follow-up
//! work itself. That follow-up is done once, here, for every caller: after an append commits,
//! the metrics count it, the log streams wake, and live readers hear that the log grew
//! ([`effects`]). Background work (checkpoint signing, export jobs, retention, the streams'
//! supervisor, hourly clean-ups) runs under one shutdown signal, and a task that panics is
//! restarted ([`tasks`]).
//!
//! Layout, a module per use case:
//! - [`ingest`]: events from apps, single and batch, idempotent (receipts; the adapter renders
//!   the response after the commit).
//! - [`system`]: events Trailmark writes about itself (portal actions, legal holds);
//!   [`audit`]: the changes made with API keys, recorded by the use cases that make them.
//! - [`schemas`]: versioned event schemas and the compiled-schema cache ingest checks against.
//! - [`organizations`], [`keys`], [`portal`]: tenants, API keys, Admin Portal links and sessions.
//! - [`console`]: operator accounts, console sign-in and sessions, and Trailmark's own log of
//!   what operators do; [`oidc`]: signing operators in with an OpenID Connect provider.
//! - [`read`]: searches and single events; [`live`]: following a log as it grows (live events).
//! - [`streams`]: log streams' create/update/replay/delete/test over `trailmark-streams`.
//! - [`exports`], [`retention`], [`ledger`]: export jobs, the purge job and legal holds,
//!   checkpoints and proofs.
//! - [`alerts`]: incidents (streams failing too long, failed exports) and the operator's
//!   signed webhook.
//!
//! What it deliberately does not do: HTTP (statuses, bodies, headers live in
//! `trailmark-server`), SQL (in `trailmark-store`), validation rules (in `trailmark-domain`).

pub mod alerts;
pub mod audit;
pub mod console;
pub mod effects;
pub mod erasure;
pub mod error;
pub mod exports;
pub mod ingest;
pub mod keys;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod oidc;
pub mod organizations;
pub mod portal;
pub mod read;
pub mod retention;
pub mod schemas;
pub mod streams;
pub mod system;
mod tasks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trailmark_domain::Timestamp;
use trailmark_domain::id::IdKind;
use trailmark_ledger::checkpoint::NoteSigner;
use trailmark_store::Store;
use trailmark_streams::seal::Sealer;
use trailmark_streams::worker::{StreamWorkers, WorkerConfig};

pub use error::{AppError, NotFoundKind};
pub use exports::ExportRefresh;
pub use ledger::WitnessConfig;

/// What the application layer is configured with (resolved by the CLI from flags).
#[derive(Clone)]
pub struct AppConfig {
    /// Where export files are written (`<data-dir>/exports`).
    pub data_dir: PathBuf,
    /// The instance's secrets key: stream credentials are sealed with it.
    pub secrets_key: [u8; 32],
    /// The ledger's key name, also the first part of every checkpoint's origin.
    pub ledger_name: String,
    /// The Ed25519 seed checkpoints are signed with (the signing key file).
    pub signing_key: [u8; 32],
    /// How often logs that grew get a new checkpoint.
    pub checkpoint_interval: Duration,
    /// How often the retention job looks for expired events.
    pub retention_interval: Duration,
    /// How log streams are delivered (and whether private destinations are allowed).
    pub streams: WorkerConfig,
    /// Refuse events whose action has no schema (`--require-schemas`).
    pub require_schemas: bool,
    /// Longest `range_end - range_start` an export may span, if the operator set one.
    pub export_max_range_days: Option<u32>,
    /// Exports of one organization pending (waiting or being written) at once; one more is
    /// refused until one finishes.
    pub export_max_pending: u32,
    /// How long an export's file is kept after the export was requested; then it is deleted and
    /// the export fails as expired.
    pub export_file_ttl: Duration,
    /// Bytes the files under `<data-dir>/exports` may take together: a new export is refused at
    /// the bound, and one that would cross it fails.
    pub export_max_disk_bytes: u64,
    /// SHA-256 of the key given by `TRAILMARK_API_KEY`, valid with full rights and never stored.
    pub bootstrap_key_hash: Option<[u8; 32]>,
    /// Witnesses asked to cosign each new checkpoint (`--witness`).
    pub witnesses: Vec<WitnessConfig>,
    /// Who hears of failing streams and failed exports, and when (`--alert-*`).
    pub alerts: alerts::AlertConfig,
}

#[cfg(test)]
impl AppConfig {
    /// What the unit tests run with: fixed keys, a checkpoint a second, no limits in the way.
    fn for_tests(data_dir: &std::path::Path) -> Self {
        AppConfig {
            data_dir: data_dir.to_owned(),
            secrets_key: [1; 32],
            ledger_name: "trailmark.test".into(),
            signing_key: [2; 32],
            checkpoint_interval: Duration::from_secs(1),
            retention_interval: Duration::from_secs(3600),
            streams: WorkerConfig::default(),
            require_schemas: false,
            export_max_range_days: None,
            export_max_pending: 4,
            export_max_disk_bytes: 1 << 30,
            export_file_ttl: Duration::from_secs(3600),
            bootstrap_key_hash: None,
            witnesses: Vec::new(),
            alerts: alerts::AlertConfig::default(),
        }
    }
}

impl std::fmt::Debug for AppConfig {
    /// Keys and key hashes never appear.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("data_dir", &self.data_dir)
            .field("ledger_name", &self.ledger_name)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("retention_interval", &self.retention_interval)
            .field("streams", &self.streams)
            .field("require_schemas", &self.require_schemas)
            .field("export_max_range_days", &self.export_max_range_days)
            .field("export_max_pending", &self.export_max_pending)
            .field("export_file_ttl", &self.export_file_ttl)
            .field("export_max_disk_bytes", &self.export_max_disk_bytes)
            .field(
                "bootstrap_key",
                &self.bootstrap_key_hash.map(|_| "<redacted>"),
            )
            .field("alerts", &self.alerts)
            .finish_non_exhaustive()
    }
}

/// The application: cheap to clone (one `Arc` inside), shared by every adapter.
#[derive(Clone)]
pub struct Trailmark {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: AppConfig,
    schemas: schemas::SchemaCache,
    keys: keys::KeyCache,
    ledger: ledger::Ledger,
    streams: Arc<StreamWorkers>,
    exports: exports::ExportJobs,
    effects: effects::Effects,
    /// This process's name in leases (streams, exports) shared with other instances.
    instance_id: Arc<str>,
    tasks: tasks::Tasks,
    console: console::Console,
    alerts: alerts::Alerts,
}

impl Trailmark {
    /// The application over `store`. Nothing runs in the background until [`Trailmark::start`].
    ///
    /// # Errors
    ///
    /// [`AppError::Internal`] if the ledger name cannot be a signing key's name, or the HTTP
    /// client for streams cannot be built.
    pub fn new(store: Arc<dyn Store>, config: AppConfig) -> Result<Self, AppError> {
        Self::with_metrics(store, config, Arc::new(metrics::AppMetrics::default()))
    }

    /// [`Trailmark::new`] with metrics made beforehand, so the store (opened with them as its
    /// [`trailmark_store::StoreObserver`]) reports into the same ones.
    ///
    /// # Errors
    ///
    /// As [`Trailmark::new`].
    pub fn with_metrics(
        store: Arc<dyn Store>,
        config: AppConfig,
        metrics: Arc<metrics::AppMetrics>,
    ) -> Result<Self, AppError> {
        let signer = NoteSigner::new(&config.ledger_name, config.signing_key)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let instance_id: Arc<str> = IdKind::Worker.generate().into_string().into();
        let tasks = tasks::Tasks::default();
        let streams = StreamWorkers::observed(
            Arc::clone(&store) as _,
            Sealer::new(&config.secrets_key),
            config.streams.clone(),
            instance_id.to_string(),
            tasks.shutdown_signal(),
            Arc::clone(&metrics) as _,
        )
        .map_err(|e| {
            AppError::Internal(format!("cannot build the HTTP client for streams: {e}"))
        })?;
        let alerts = alerts::Alerts::new().map_err(|e| {
            AppError::Internal(format!("cannot build the HTTP client for alerts: {e}"))
        })?;
        Ok(Trailmark {
            inner: Arc::new(Inner {
                alerts,
                effects: effects::Effects::new(Arc::clone(&metrics), Arc::clone(&streams)),
                ledger: ledger::Ledger::new(
                    signer,
                    config.checkpoint_interval,
                    config.witnesses.clone(),
                ),
                schemas: schemas::SchemaCache::default(),
                keys: keys::KeyCache::default(),
                exports: exports::ExportJobs::default(),
                store,
                streams,
                instance_id,
                tasks,
                console: console::Console::default(),
                config,
            }),
        })
    }

    /// Starts the background work: checkpoint signing, pending export jobs (left by a previous
    /// run or by an instance that died), retention, the streams' supervisor, alerts, and the
    /// hourly deletion of expired idempotency records, portal links, portal sessions, console
    /// sessions and old alert incidents.
    pub fn start(&self) {
        let tasks = &self.inner.tasks;
        let app = self.clone();
        tasks.spawn("checkpoint signer", move || {
            let app = app.clone();
            async move { app.sign_grown_logs_forever().await }
        });
        let app = self.clone();
        tasks.spawn("export sweeper", move || {
            let app = app.clone();
            async move { app.resume_pending_exports_forever().await }
        });
        let app = self.clone();
        tasks.spawn("retention", move || {
            let app = app.clone();
            async move { app.purge_expired_forever().await }
        });
        let streams = Arc::clone(&self.inner.streams);
        tasks.spawn("stream supervisor", move || {
            let streams = Arc::clone(&streams);
            async move { streams.supervise().await }
        });
        let app = self.clone();
        tasks.spawn("alerts", move || {
            let app = app.clone();
            async move { app.watch_incidents_forever().await }
        });
        let app = self.clone();
        tasks.spawn("hourly clean-up", move || {
            let app = app.clone();
            async move { app.clean_up_hourly().await }
        });
    }

    /// Stops every background task and waits for them to end. Work in flight elsewhere (HTTP
    /// requests) is the adapter's to drain.
    pub async fn shutdown(&self) {
        self.inner.tasks.shutdown().await;
    }

    /// The storage behind the application, for adapters that only need to know it is reachable
    /// (`/readyz`).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn ping(&self) -> Result<(), AppError> {
        Ok(self.inner.store.ping().await?)
    }

    pub fn config(&self) -> &AppConfig {
        &self.inner.config
    }

    /// The application's own counters, for the metrics endpoint.
    pub fn metrics(&self) -> &metrics::AppMetrics {
        self.inner.effects.metrics()
    }

    /// This process's name in leases shared with other instances.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    async fn clean_up_hourly(&self) {
        /// Portal links and sessions are deleted this long after they expired, so that until
        /// then a used or expired link is still told apart from a forged one.
        const PORTAL_PURGE_AFTER_MILLIS: i64 = 24 * 3600 * 1000;
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match self.store().purge_idempotency(Timestamp::now()).await {
                Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
                Err(error) => tracing::warn!(%error, "could not purge idempotency records"),
            }
            let portal_cutoff = Timestamp::now().plus_millis(-PORTAL_PURGE_AFTER_MILLIS);
            match self.store().purge_portal(portal_cutoff).await {
                Ok(purged) => tracing::debug!(purged, "expired portal links and sessions deleted"),
                Err(error) => tracing::warn!(%error, "could not purge portal links and sessions"),
            }
            match self.store().purge_operator_sessions(Timestamp::now()).await {
                Ok(purged) => tracing::debug!(purged, "expired console sessions deleted"),
                Err(error) => tracing::warn!(%error, "could not purge console sessions"),
            }
            self.purge_incidents().await;
        }
    }
}
