//! State shared by every request: the store, the configuration, the compiled-schema cache and
//! the metrics registry. Cheap to clone (`Arc`s inside).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trailmark_domain::Timestamp;
use trailmark_domain::schema::CompiledSchema;
use trailmark_store::{SchemaLookup, Store};

use crate::auth::KeyCache;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Settings the CLI resolves from flags and environment variables.
#[derive(Clone)]
pub struct ServerConfig {
    /// Refuse events whose action has no schema (`--require-schemas`).
    pub require_schemas: bool,
    /// Largest accepted request body, in bytes; batch ingest accepts [`BATCH_BODY_FACTOR`] times it.
    pub max_body_bytes: usize,
    /// SHA-256 of the key given by `TRAILMARK_API_KEY`, valid with full rights and never stored.
    pub bootstrap_key_hash: Option<[u8; 32]>,
}

/// A batch may carry up to 1,000 events, so its body limit is this multiple of the normal one.
pub const BATCH_BODY_FACTOR: usize = 16;

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("require_schemas", &self.require_schemas)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "bootstrap_key",
                &self.bootstrap_key_hash.map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) schemas: Arc<SchemaCache>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: Arc<KeyCache>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        AppState {
            store,
            config: Arc::new(config),
            schemas: Arc::new(SchemaCache::default()),
            metrics: Arc::new(Metrics::default()),
            keys: Arc::new(KeyCache::default()),
        }
    }

    /// Starts the background housekeeping: expired idempotency records are deleted hourly.
    pub(crate) fn spawn_maintenance(&self) {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                match store.purge_idempotency(Timestamp::now()).await {
                    Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
                    Err(error) => tracing::warn!(%error, "could not purge idempotency records"),
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
