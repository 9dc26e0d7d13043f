//! State shared by every request: the store, the configuration, the compiled-schema cache and
//! the metrics registry. Cheap to clone (`Arc`s inside).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use trailmark_domain::Timestamp;
use trailmark_domain::schema::CompiledSchema;
use trailmark_store::{SchemaLookup, Store};

use trailmark_domain::id::IdKind;
use trailmark_ledger::checkpoint::NoteSigner;
use trailmark_streams::seal::Sealer;
use trailmark_streams::worker::{StreamWorkers, WorkerConfig};

use crate::auth::KeyCache;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::links::LinkSigner;
use crate::metrics::Metrics;

/// Settings the CLI resolves from flags and environment variables.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where export files are written (`<data-dir>/exports`).
    pub data_dir: PathBuf,
    /// The base URL clients reach this server at; download links start with it.
    pub public_url: String,
    /// The instance's secrets key (the secrets key file); download-link keys derive from it.
    pub secrets_key: [u8; 32],
    /// How long a download link stays valid; every `GET` of the export makes a new one.
    pub export_link_ttl: Duration,
    /// Longest `range_end - range_start` an export may span, if the operator set one.
    pub export_max_range_days: Option<u32>,
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
    /// Largest accepted request body, in bytes; batch ingest accepts [`BATCH_BODY_FACTOR`] times it.
    pub max_body_bytes: usize,
    /// SHA-256 of the key given by `TRAILMARK_API_KEY`, valid with full rights and never stored.
    pub bootstrap_key_hash: Option<[u8; 32]>,
}

/// Export jobs that run at once; more wait their turn (each streams from storage to a file).
const EXPORT_JOBS_AT_ONCE: usize = 2;

/// How long a portal link can be opened: WorkOS's links expire after 5 minutes.
const PORTAL_LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// Portal links and sessions are deleted this long after they expired, so that until then a
/// used or expired link is still told apart from a forged one.
const PORTAL_PURGE_AFTER_MILLIS: i64 = 24 * 3600 * 1000;

/// A batch may carry up to 1,000 events, so its body limit is this multiple of the normal one.
pub const BATCH_BODY_FACTOR: usize = 16;

impl std::fmt::Debug for ServerConfig {
    /// Keys and key hashes never appear; everything else does, for the startup log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field("export_link_ttl", &self.export_link_ttl)
            .field("export_max_range_days", &self.export_max_range_days)
            .field("ledger_name", &self.ledger_name)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("retention_interval", &self.retention_interval)
            .field("streams", &self.streams)
            .field("require_schemas", &self.require_schemas)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "bootstrap_key",
                &self.bootstrap_key_hash.map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) schemas: Arc<SchemaCache>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) links: LinkSigner,
    pub(crate) export_jobs: Arc<Semaphore>,
    /// Exports this process is generating (or queued to), so a sweep does not start them twice.
    pub(crate) running_exports: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// This process's name in leases (streams, exports) shared with other instances.
    pub(crate) instance_id: Arc<str>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) streams: Arc<StreamWorkers>,
    /// How long an Admin Portal link can be opened after it was issued.
    pub(crate) portal_link_ttl: Duration,
}

impl AppState {
    /// # Errors
    ///
    /// A message if the ledger name cannot be a signing key's name, or the HTTP client for
    /// streams cannot be built.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Result<Self, String> {
        Self::with_metrics(store, config, Arc::new(Metrics::new()))
    }

    /// [`AppState::new`] with a metrics registry made beforehand, so the store (opened with it
    /// as its observer) reports into the same one.
    ///
    /// # Errors
    ///
    /// As [`AppState::new`].
    pub fn with_metrics(
        store: Arc<dyn Store>,
        config: ServerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let signer =
            NoteSigner::new(&config.ledger_name, config.signing_key).map_err(|e| e.to_string())?;
        let instance_id: Arc<str> = IdKind::Worker.generate().into_string().into();
        let streams = StreamWorkers::observed(
            Arc::clone(&store),
            Sealer::new(&config.secrets_key),
            config.streams.clone(),
            instance_id.to_string(),
            Arc::clone(&metrics) as Arc<dyn trailmark_streams::observe::DeliveryObserver>,
        )
        .map_err(|e| format!("cannot build the HTTP client for streams: {e}"))?;
        Ok(AppState {
            store,
            schemas: Arc::new(SchemaCache::default()),
            ledger: Arc::new(Ledger::new(
                signer,
                config.checkpoint_interval,
                Arc::clone(&metrics),
            )),
            metrics,
            keys: Arc::new(KeyCache::default()),
            links: LinkSigner::new(
                &config.secrets_key,
                config.export_link_ttl,
                &config.public_url,
            ),
            export_jobs: Arc::new(Semaphore::new(EXPORT_JOBS_AT_ONCE)),
            running_exports: Arc::default(),
            instance_id,
            streams,
            portal_link_ttl: PORTAL_LINK_TTL,
            config: Arc::new(config),
        })
    }

    /// Changes how long portal links stay valid (WorkOS's 5 minutes by default). Only tests
    /// shorten it, to see an expired link refused without waiting five minutes.
    #[must_use]
    pub fn with_portal_link_ttl(mut self, ttl: Duration) -> Self {
        self.portal_link_ttl = ttl;
        self
    }

    /// Starts the background work: pending export jobs nobody is running (left by a previous
    /// run, or by an instance that died) are taken over, checkpoints are signed, retention
    /// purges expired events, and expired idempotency records, portal links and portal sessions
    /// are deleted hourly.
    pub(crate) fn spawn_maintenance(&self) {
        crate::exports::resume_pending(self.clone());
        Arc::clone(&self.ledger).spawn_signer(Arc::clone(&self.store));
        crate::retention::spawn(self.clone(), self.config.retention_interval);
        self.streams.spawn();
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                match store.purge_idempotency(Timestamp::now()).await {
                    Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
                    Err(error) => tracing::warn!(%error, "could not purge idempotency records"),
                }
                let portal_cutoff = Timestamp::now().plus_millis(-PORTAL_PURGE_AFTER_MILLIS);
                match store.purge_portal(portal_cutoff).await {
                    Ok(purged) => {
                        tracing::debug!(purged, "expired portal links and sessions deleted")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not purge portal links and sessions")
                    }
                }
            }
        });
    }
}

/// How long "this action has no schema" is believed. Schema versions never change, so found
/// versions are cached for good; only absence can change, when a schema is created, possibly
/// by another instance sharing the database.
const ABSENCE_TTL: Duration = Duration::from_secs(1);

/// Compiled schema versions by `(action, version)`, and recently seen absences.
#[derive(Default)]
pub(crate) struct SchemaCache {
    compiled: Mutex<HashMap<(String, u32), Arc<CompiledSchema>>>,
    absent: Mutex<HashMap<String, Instant>>,
}

/// What an event's action and version resolve to.
pub(crate) enum SchemaFor {
    None,
    Compiled(Arc<CompiledSchema>),
    UnknownVersion { latest: u32 },
}

impl SchemaCache {
    pub(crate) async fn lookup(
        &self,
        store: &dyn Store,
        action: &str,
        version: Option<u32>,
    ) -> Result<SchemaFor, ApiError> {
        let key = (action.to_owned(), version.unwrap_or(1));
        if let Some(compiled) = self.compiled.lock().map_err(poisoned)?.get(&key) {
            return Ok(SchemaFor::Compiled(Arc::clone(compiled)));
        }
        let recently_absent = self
            .absent
            .lock()
            .map_err(poisoned)?
            .get(action)
            .is_some_and(|seen| seen.elapsed() < ABSENCE_TTL);
        if recently_absent {
            return Ok(SchemaFor::None);
        }
        match store.schema_for_event(action, version).await? {
            SchemaLookup::NoSchema => {
                self.absent
                    .lock()
                    .map_err(poisoned)?
                    .insert(action.to_owned(), Instant::now());
                Ok(SchemaFor::None)
            }
            SchemaLookup::UnknownVersion { latest } => Ok(SchemaFor::UnknownVersion { latest }),
            SchemaLookup::Found(schema) => {
                let compiled =
                    Arc::new(CompiledSchema::compile(&schema).map_err(ApiError::Internal)?);
                self.compiled
                    .lock()
                    .map_err(poisoned)?
                    .insert(key, Arc::clone(&compiled));
                Ok(SchemaFor::Compiled(compiled))
            }
        }
    }

    /// Forgets that `action` had no schema, after this instance created one.
    pub(crate) fn schema_created(&self, action: &str) {
        if let Ok(mut absent) = self.absent.lock() {
            absent.remove(action);
        }
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ApiError {
    ApiError::Internal("schema cache lock poisoned".into())
}
