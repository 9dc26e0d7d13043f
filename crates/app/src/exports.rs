//! Background export jobs: each pending export is streamed from storage into
//! `<data-dir>/exports/<id>.<csv|ndjson>` (written under a `.partial` name, fsync'd, then renamed,
//! so a file that exists is complete), then marked ready with its row count, or `error` with the
//! reason. Each job runs under a lease in the database ([`EXPORT_LEASE`], renewed while it
//! runs), so of several instances over one database exactly one generates it; a sweep every
//! [`SWEEP_INTERVAL`] takes over jobs whose lease ran out (their instance crashed or restarted),
//! so no export stays pending forever. NDJSON exports end with a manifest holding a checkpoint
//! signed for them (see `trailmark_export`).

use std::collections::HashSet;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::id::IdKind;
use trailmark_domain::query::EventFilter;
use trailmark_export::{Snapshot, write_export};
use trailmark_store::{ExportRecord, ExportState};

use crate::{AppError, NotFoundKind, Trailmark};

/// Export jobs that run at once; more wait their turn (each streams from storage to a file).
const EXPORT_JOBS_AT_ONCE: usize = 2;

/// This process's export jobs.
pub(crate) struct ExportJobs {
    permits: Arc<Semaphore>,
    /// Exports this process is generating (or queued to), so a sweep does not start them twice.
    running: Mutex<HashSet<String>>,
}

impl Default for ExportJobs {
    fn default() -> Self {
        ExportJobs {
            permits: Arc::new(Semaphore::new(EXPORT_JOBS_AT_ONCE)),
            running: Mutex::new(HashSet::new()),
        }
    }
}

/// The file of a finished export.
fn export_file(data_dir: &Path, id: &str, format: ExportFormat) -> PathBuf {
    data_dir
        .join("exports")
        .join(format!("{id}.{}", format.as_str()))
}

impl Trailmark {
    /// Records a new pending export of `organization_id`'s events matching `filter` and starts
    /// writing it.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`], or a storage error recording the job.
    pub async fn begin_export(
        &self,
        organization_id: &str,
        format: ExportFormat,
        filter: EventFilter,
    ) -> Result<ExportRecord, AppError> {
        self.live_organization(organization_id).await?;
        let now = Timestamp::now();
        let export = ExportRecord {
            id: IdKind::Export.generate().into_string(),
            organization_id: organization_id.to_owned(),
            state: ExportState::Pending,
            format,
            filter,
            row_count: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        self.store().insert_export(export.clone()).await?;
        start(self.clone(), export.clone());
        Ok(export)
    }

    /// The export `id`, if it belongs to `organization` (any organization when `None`):
    /// another organization's export is reported as not found, so its existence does not leak.
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`], or storage errors.
    pub async fn export(
        &self,
        id: &str,
        organization: Option<&str>,
    ) -> Result<ExportRecord, AppError> {
        self.store()
            .get_export(id)
            .await?
            .filter(|export| organization.is_none_or(|own| own == export.organization_id))
            .ok_or_else(|| AppError::not_found(NotFoundKind::Export, id))
    }

    /// A ready export and the path of its file.
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`] if it does not exist or is not ready.
    pub async fn ready_export(&self, id: &str) -> Result<(ExportRecord, PathBuf), AppError> {
        let export = self
            .store()
            .get_export(id)
            .await?
            .filter(|export| export.state == ExportState::Ready)
            .ok_or_else(|| AppError::not_found(NotFoundKind::Export, id))?;
        let path = export_file(&self.inner.config.data_dir, &export.id, export.format);
        Ok((export, path))
    }
}

/// How long a claim on an export lasts unless renewed.
const EXPORT_LEASE: Duration = Duration::from_secs(30);
/// How often pending exports without a live runner are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Removes an export from the running set when its task ends, however it ends.
struct Running {
    app: Trailmark,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.app.inner.exports.running.lock() {
            running.remove(&self.id);
        }
    }
}

async fn claim(app: &Trailmark, id: &str) -> bool {
    let now = Timestamp::now();
    let until = now.plus_millis(EXPORT_LEASE.as_millis() as i64);
    match app
        .store()
        .claim_export(id, app.instance_id(), until, now)
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(export = %id, %error, "cannot claim the export");
            false
        }
    }
}

/// Runs `export` in the background, unless this process already is, or another instance holds
/// its lease.
fn start(app: Trailmark, export: ExportRecord) {
    let newly_running = app
        .inner
        .exports
        .running
        .lock()
        .is_ok_and(|mut running| running.insert(export.id.clone()));
    if !newly_running {
        return;
    }
    let shutdown = app.inner.tasks.shutdown_signal();
    tokio::spawn(async move {
        let _running = Running {
            app: app.clone(),
            id: export.id.clone(),
        };
        let Ok(_permit) = Arc::clone(&app.inner.exports.permits).acquire_owned().await else {
            return;
        };
        if !claim(&app, &export.id).await {
            return;
        }
        let renewal = tokio::spawn({
            let (app, id) = (app.clone(), export.id.clone());
            async move {
                loop {
                    tokio::time::sleep(EXPORT_LEASE / 3).await;
                    claim(&app, &id).await;
                }
            }
        });
        // On shutdown the job stops unfinished; its lease lapses and the next start resumes it.
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            outcome = run(&app, &export) => outcome,
            () = shutdown.cancelled() => {
                renewal.abort();
                return;
            }
        };
        renewal.abort();
        let bytes = outcome.as_ref().map_or(0, |_| {
            std::fs::metadata(export_file(
                &app.inner.config.data_dir,
                &export.id,
                export.format,
            ))
            .map_or(0, |file| file.len())
        });
        app.metrics()
            .export_finished(outcome.as_ref().ok().copied(), bytes, started.elapsed());
        if let Err(reason) = &outcome {
            tracing::warn!(export = %export.id, %reason, "export failed");
        }
        if let Err(error) = app
            .store()
            .finish_export(&export.id, outcome, Timestamp::now())
            .await
        {
            tracing::error!(export = %export.id, %error, "could not record the export's outcome");
        }
    });
}

impl Trailmark {
    /// Looks for pending exports now and every [`SWEEP_INTERVAL`], and starts those no live
    /// instance is generating ([`start`] claims them; a claimed one is left alone).
    pub(crate) async fn resume_pending_exports_forever(&self) {
        let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            sweeps.tick().await;
            match self.store().exports_in_state(ExportState::Pending).await {
                Ok(pending) => {
                    for export in pending {
                        start(self.clone(), export);
                    }
                }
                Err(error) => tracing::error!(%error, "cannot list pending exports"),
            }
        }
    }
}

async fn run(app: &Trailmark, export: &ExportRecord) -> Result<u64, String> {
    let path = export_file(&app.inner.config.data_dir, &export.id, export.format);
    // Named for this instance: should a lease lapse while this run is slow, another instance's
    // run of the same export writes its own draft, and each rename publishes a complete file.
    let partial = path.with_extension(format!(
        "{}.{}.partial",
        export.format.as_str(),
        app.instance_id()
    ));
    if let Some(directory) = path.parent() {
        private_directory(directory)
            .map_err(|e| format!("cannot create {}: {e}", directory.display()))?;
    }
    let file =
        private_file(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // NDJSON exports are made against a checkpoint covering everything committed so far.
    let snapshot = match export.format {
        ExportFormat::Ndjson => Some(Snapshot {
            checkpoint: app
                .fresh_checkpoint(&export.organization_id)
                .await
                .map_err(|e| e.to_string())?,
        }),
        ExportFormat::Csv => None,
    };
    let rows = write_export(
        app.store(),
        &export.organization_id,
        &export.filter,
        export.format,
        snapshot.as_ref(),
        &mut out,
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    let file = out.into_inner().map_err(|e| e.to_string())?;
    file.sync_all()
        .map_err(|e| format!("cannot sync the export file: {e}"))?;
    std::fs::rename(&partial, &path).map_err(|e| format!("cannot publish the export file: {e}"))?;
    Ok(rows)
}

/// Creates `directory` (and any missing parent) for the owner only, 0700 whatever the umask: an
/// export holds an organization's whole log.
fn private_directory(directory: &std::path::Path) -> std::io::Result<()> {
    if directory.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(directory)?;
    #[cfg(unix)]
    std::fs::set_permissions(
        directory,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    Ok(())
}

/// Creates (or truncates) `path` readable and writable by the owner only, 0600 whatever the
/// umask.
fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}
