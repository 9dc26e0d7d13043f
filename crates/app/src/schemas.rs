//! Event schemas: versioned, immutable per action (wire doc §2.2), and the cache of compiled
//! versions ingest checks events against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trailmark_domain::PathProblem;
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::schema::{
    ActionName, ActionSchema, CompiledSchema, SchemaDefinition, missing_schema, unknown_version,
};
use trailmark_store::{ActionSummary, Page, PageRequest, SchemaLookup, rules};

use crate::{AppError, Trailmark};

/// How long "this action has no schema" is believed. Schema versions never change, so found
/// versions are cached for good; only absence can change, when a schema is created, possibly
/// by another instance sharing the database.
const ABSENCE_TTL: Duration = Duration::from_secs(1);

/// Compiled schema versions by `(action, version)`, recently seen absences, and the right to
/// run a check.
pub(crate) struct SchemaCache {
    compiled: Mutex<HashMap<(String, u32), Arc<CompiledSchema>>>,
    absent: Mutex<HashMap<String, Instant>>,
    /// A check runs on the blocking pool, never on the async workers: a schema's `pattern` can
    /// take a regex engine up to its backtracking limit for every value it matches, which over a
    /// batch adds up to seconds of CPU. One permit per core, so checks never take more CPU than
    /// the machine has, and requests waiting for a permit wait without holding a worker.
    checks: tokio::sync::Semaphore,
}

impl Default for SchemaCache {
    fn default() -> Self {
        SchemaCache {
            compiled: Mutex::default(),
            absent: Mutex::default(),
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        }
    }
}

/// What an event's action and version resolve to.
enum SchemaFor {
    None,
    Compiled(Arc<CompiledSchema>),
    UnknownVersion { latest: u32 },
}

impl Trailmark {
    /// Checks `event` against the schema version it names (version 1 when it names none), and,
    /// with `--require-schemas`, that its action has one.
    ///
    /// # Errors
    ///
    /// `Ok(Err(problems))` for an event the schema refuses; `Err` for storage errors.
    pub async fn check_schema(
        &self,
        event: &NewEvent,
    ) -> Result<Result<(), Vec<PathProblem>>, AppError> {
        Ok(
            match self.schema_for(event.action(), event.version()).await? {
                SchemaFor::None if self.inner.config.require_schemas => {
                    Err(vec![missing_schema(event.action())])
                }
                SchemaFor::None => Ok(()),
                SchemaFor::UnknownVersion { latest } => Err(vec![unknown_version(
                    event.action(),
                    event.version().unwrap_or(1),
                    latest,
                )]),
                SchemaFor::Compiled(schema) => {
                    let _permit = self
                        .inner
                        .schemas
                        .checks
                        .acquire()
                        .await
                        .map_err(|e| AppError::Internal(e.to_string()))?;
                    let event = event.clone();
                    let problems = tokio::task::spawn_blocking(move || schema.check(&event))
                        .await
                        .map_err(|e| AppError::Internal(format!("a schema check failed: {e}")))?;
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(problems)
                    }
                }
            },
        )
    }

    async fn schema_for(&self, action: &str, version: Option<u32>) -> Result<SchemaFor, AppError> {
        let cache = &self.inner.schemas;
        let key = (action.to_owned(), version.unwrap_or(1));
        if let Some(compiled) = cache.compiled.lock().map_err(poisoned)?.get(&key) {
            return Ok(SchemaFor::Compiled(Arc::clone(compiled)));
        }
        let recently_absent = cache
            .absent
            .lock()
            .map_err(poisoned)?
            .get(action)
            .is_some_and(|seen| seen.elapsed() < ABSENCE_TTL);
        if recently_absent {
            return Ok(SchemaFor::None);
        }
        match rules::schema_for_event(self.store(), action, version).await? {
            SchemaLookup::NoSchema => {
                cache
                    .absent
                    .lock()
                    .map_err(poisoned)?
                    .insert(action.to_owned(), Instant::now());
                Ok(SchemaFor::None)
            }
            SchemaLookup::UnknownVersion { latest } => Ok(SchemaFor::UnknownVersion { latest }),
            SchemaLookup::Found(schema) => {
                let compiled =
                    Arc::new(CompiledSchema::compile(&schema).map_err(AppError::Internal)?);
                cache
                    .compiled
                    .lock()
                    .map_err(poisoned)?
                    .insert(key, Arc::clone(&compiled));
                Ok(SchemaFor::Compiled(compiled))
            }
        }
    }

    /// Creates the next version of `action`'s schema, or returns the latest one if `definition`
    /// equals it.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn create_schema(
        &self,
        action: ActionName,
        definition: SchemaDefinition,
    ) -> Result<ActionSchema, AppError> {
        let schema =
            rules::create_schema(self.store(), action, definition, Timestamp::now()).await?;
        if let Ok(mut absent) = self.inner.schemas.absent.lock() {
            absent.remove(schema.action.as_str());
        }
        Ok(schema)
    }

    /// The versions of one action's schema.
    ///
    /// # Errors
    ///
    /// Storage errors; a cursor the list did not issue.
    pub async fn list_schemas(
        &self,
        action: &str,
        page: PageRequest,
    ) -> Result<Page<ActionSchema>, AppError> {
        Ok(self.store().list_schemas(action, page).await?)
    }

    /// Actions that have a schema, each with its latest version.
    ///
    /// # Errors
    ///
    /// Storage errors; a cursor the list did not issue.
    pub async fn list_actions(&self, page: PageRequest) -> Result<Page<ActionSummary>, AppError> {
        Ok(self.store().list_actions(page).await?)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> AppError {
    AppError::Internal("schema cache lock poisoned".into())
}
