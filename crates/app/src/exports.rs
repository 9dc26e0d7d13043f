//! Background export jobs: each pending export is streamed from storage into
//! `<data-dir>/exports/<id>.<csv|ndjson|ocsf.ndjson>` (written under a `.partial` name, fsync'd, then renamed,
//! so a file that exists is complete), then marked ready with its row count, or `error` with the
//! reason. Each job runs under a lease in the database ([`EXPORT_LEASE`], renewed while it
//! runs), so of several instances over one database exactly one generates it; a sweep every
//! [`SWEEP_INTERVAL`] takes over jobs whose lease ran out (their instance crashed or restarted),
//! so no export stays pending forever. NDJSON exports end with a manifest holding a checkpoint
//! signed for them (see `trailmark_export`). An organization may have at most
//! `--export-max-pending` exports pending (counted in the database, so across instances), and
//! the sweep deletes the file of an export `--export-file-ttl-hours` after it was requested,
//! failing the export as expired, so files never pile up on disk; together they take at most
//! `--export-max-disk-bytes` (a new export is refused at the bound, one that would cross it
//! fails and leaves no file).
//!
//! Removing contents from the log (retention's purge, an erasure) reaches the exports too:
//! [`Trailmark::refresh_exports`] rewrites every ready export of the organization from the
//! store as it is now, with its original filters, renaming the new file over the old one (so a
//! link issued before serves the new file), or, if the file cannot be written again, deletes it
//! and fails the export with the reason. Downloads of the organization are withheld (503) while
//! that runs, and a job generating one of its exports meanwhile starts again, so what it read
//! before the change is never published. Refreshes and the end of every job take one lock, so
//! a job either finishes before a refresh lists the ready exports or sees the refresh and runs
//! again. These guards are per process: over one PostgreSQL database, another instance's
//! download of a file being rewritten serves the old file until the new one is renamed over it.

use std::collections::{HashMap, HashSet};
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

use crate::audit::{Change, Origin};
use crate::{AppError, NotFoundKind, Trailmark};

/// Export jobs that run at once; more wait their turn (each streams from storage to a file).
const EXPORT_JOBS_AT_ONCE: usize = 2;

/// This process's export jobs.
pub(crate) struct ExportJobs {
    permits: Arc<Semaphore>,
    /// Exports this process is generating (or queued to), so a sweep does not start them twice.
    running: Mutex<HashSet<String>>,
    /// Held by a refresh while it rewrites, and by a job while it publishes its outcome.
    rewrites: tokio::sync::Mutex<()>,
    /// How many refreshes each organization has had, so a job running across one runs again.
    refreshes: Mutex<HashMap<String, u64>>,
    /// Organizations whose downloads are withheld, with how many holders.
    withheld: Mutex<HashMap<String, usize>>,
}

impl Default for ExportJobs {
    fn default() -> Self {
        ExportJobs {
            permits: Arc::new(Semaphore::new(EXPORT_JOBS_AT_ONCE)),
            running: Mutex::new(HashSet::new()),
            rewrites: tokio::sync::Mutex::new(()),
            refreshes: Mutex::new(HashMap::new()),
            withheld: Mutex::new(HashMap::new()),
        }
    }
}

impl ExportJobs {
    fn refreshes(&self, organization_id: &str) -> u64 {
        self.refreshes.lock().map_or(0, |counts| {
            counts.get(organization_id).copied().unwrap_or(0)
        })
    }

    fn is_withheld(&self, organization_id: &str) -> bool {
        self.withheld
            .lock()
            .is_ok_and(|withheld| withheld.contains_key(organization_id))
    }
}

/// While it lives, the organization's export downloads are refused (see
/// [`Trailmark::withhold_downloads`]).
pub(crate) struct Withheld {
    app: Trailmark,
    organization_id: String,
}

impl Drop for Withheld {
    fn drop(&mut self) {
        if let Ok(mut withheld) = self.app.inner.exports.withheld.lock()
            && let Some(holders) = withheld.get_mut(&self.organization_id)
        {
            *holders -= 1;
            if *holders == 0 {
                withheld.remove(&self.organization_id);
            }
        }
    }
}

/// What [`Trailmark::refresh_exports`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportRefresh {
    /// Ready exports whose file was written again from the store.
    pub rewritten: u64,
    /// Ready exports whose file could not be written again: deleted, the export failed.
    pub withdrawn: u64,
}

/// The file of a finished export.
fn export_file(data_dir: &Path, id: &str, format: ExportFormat) -> PathBuf {
    data_dir
        .join("exports")
        .join(format!("{id}.{}", format.extension()))
}

impl Trailmark {
    /// Records a new pending export of `organization_id`'s events matching `filter`, starts
    /// writing it, and records that `origin` asked for it ([`crate::audit`]).
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`], or a storage error recording the job.
    pub async fn begin_export(
        &self,
        organization_id: &str,
        format: ExportFormat,
        filter: EventFilter,
        origin: &Origin,
    ) -> Result<ExportRecord, AppError> {
        self.live_organization(organization_id).await?;
        // Counted in the database, so the limit holds across instances (up to requests racing
        // each other's count).
        let limit = self.inner.config.export_max_pending;
        let pending = self
            .store()
            .exports_in_state(ExportState::Pending)
            .await?
            .iter()
            .filter(|export| export.organization_id == organization_id)
            .count();
        let (used, bound) = (
            exports_disk_use(&self.inner.config.data_dir),
            self.inner.config.export_max_disk_bytes,
        );
        if used >= bound {
            return Err(AppError::TooMuchWork {
                code: "export_storage_full",
                message: format!(
                    "Export files take {used} bytes, the most they may (--export-max-disk-bytes); retry once older exports expired."
                ),
            });
        }
        if pending >= limit as usize {
            return Err(AppError::TooMuchWork {
                code: "too_many_exports",
                message: format!(
                    "This organization has {pending} exports pending, the most it may have (--export-max-pending); retry once one is ready."
                ),
            });
        }
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
        // Recorded before the job starts, so whether an export holds the record of its own
        // creation depends on its filters only, never on timing.
        self.audit(organization_id, origin, Change::ExportCreated(&export))
            .await?;
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

    /// A ready export and its file, opened.
    ///
    /// # Errors
    ///
    /// [`AppError::NotFound`] if it does not exist, is not ready or its file is gone;
    /// [`AppError::Busy`] while its organization's exports are being rewritten.
    pub async fn open_ready_export(
        &self,
        id: &str,
    ) -> Result<(ExportRecord, tokio::fs::File), AppError> {
        let export = self
            .store()
            .get_export(id)
            .await?
            .filter(|export| export.state == ExportState::Ready)
            .ok_or_else(|| AppError::not_found(NotFoundKind::Export, id))?;
        let path = export_file(&self.inner.config.data_dir, &export.id, export.format);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            // Withdrawn between the read above and now.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(AppError::not_found(NotFoundKind::Export, id));
            }
            Err(error) => {
                return Err(AppError::Internal(format!(
                    "export file {}: {error}",
                    path.display()
                )));
            }
        };
        // Checked once the file is open: a file opened before the organization's contents began
        // to change holds nothing removed yet, and one opened after waits for its rewrite.
        if self.inner.exports.is_withheld(&export.organization_id) {
            return Err(AppError::Busy {
                code: "export_being_rewritten",
                message: "This export is being rewritten because events' contents were removed; retry shortly.".into(),
            });
        }
        Ok((export, file))
    }

    /// Refuses the organization's downloads until the guard is dropped: taken before contents
    /// are removed from its log and kept until its exports are rewritten.
    pub(crate) fn withhold_downloads(&self, organization_id: &str) -> Withheld {
        if let Ok(mut withheld) = self.inner.exports.withheld.lock() {
            *withheld.entry(organization_id.to_owned()).or_default() += 1;
        }
        Withheld {
            app: self.clone(),
            organization_id: organization_id.to_owned(),
        }
    }

    /// Rewrites every ready export of `organization_id` from the store as it is now (after
    /// retention or an erasure removed contents from its log), with its original format and
    /// filters, so no file or link serves the removed contents. Each new file is renamed over
    /// the old one; a file that cannot be written again is deleted and its export fails with
    /// the reason. Downloads of the organization are refused meanwhile, and its exports being
    /// generated now start again.
    ///
    /// # Errors
    ///
    /// Storage errors listing or recording the exports (files already rewritten stay so).
    pub async fn refresh_exports(&self, organization_id: &str) -> Result<ExportRefresh, AppError> {
        let _withheld = self.withhold_downloads(organization_id);
        let _rewriting = self.inner.exports.rewrites.lock().await;
        if let Ok(mut counts) = self.inner.exports.refreshes.lock() {
            *counts.entry(organization_id.to_owned()).or_default() += 1;
        }
        let ready = self.store().exports_in_state(ExportState::Ready).await?;
        let mut refresh = ExportRefresh::default();
        for export in ready
            .into_iter()
            .filter(|export| export.organization_id == organization_id)
        {
            let outcome = match run(self, &export).await {
                Ok(rows) => {
                    refresh.rewritten += 1;
                    Ok(rows)
                }
                Err(reason) => {
                    let path = export_file(&self.inner.config.data_dir, &export.id, export.format);
                    if let Err(error) = std::fs::remove_file(&path)
                        && error.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::error!(export = %export.id, %error, "cannot delete an export file that holds removed contents");
                    }
                    refresh.withdrawn += 1;
                    tracing::warn!(export = %export.id, %reason, "export withdrawn: its file could not be written again");
                    Err(format!(
                        "withdrawn: events' contents were removed from the log and the file could not be written again without them ({reason})"
                    ))
                }
            };
            self.store()
                .revise_export(&export.id, outcome, Timestamp::now())
                .await?;
        }
        if refresh != ExportRefresh::default() {
            tracing::info!(organization = %organization_id, rewritten = refresh.rewritten, withdrawn = refresh.withdrawn, "exports rewritten without removed contents");
        }
        Ok(refresh)
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
        let (outcome, _rewriting) = loop {
            let refreshes = app.inner.exports.refreshes(&export.organization_id);
            let outcome = tokio::select! {
                outcome = run(&app, &export) => outcome,
                () = shutdown.cancelled() => {
                    renewal.abort();
                    return;
                }
            };
            let rewriting = app.inner.exports.rewrites.lock().await;
            if refreshes == app.inner.exports.refreshes(&export.organization_id) {
                break (outcome, rewriting);
            }
            // Contents were removed from the log while this ran, and what it read may hold
            // them: write it again.
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
        let failure = outcome.as_ref().err().cloned();
        if let Some(reason) = &failure {
            tracing::warn!(export = %export.id, %reason, "export failed");
        }
        match app
            .store()
            .finish_export(&export.id, outcome, Timestamp::now())
            .await
        {
            Ok(()) => {
                if let Some(reason) = failure {
                    app.export_failed(&export, &reason).await;
                }
            }
            Err(error) => {
                tracing::error!(export = %export.id, %error, "could not record the export's outcome");
            }
        }
    });
}

impl Trailmark {
    /// Looks for pending exports now and every [`SWEEP_INTERVAL`], and starts those no live
    /// instance is generating ([`start`] claims them; a claimed one is left alone); deletes the
    /// files of exports past `--export-file-ttl-hours`.
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
            if let Err(error) = self.delete_expired_exports(Timestamp::now()).await {
                tracing::error!(%error, "cannot delete expired exports");
            }
        }
    }

    /// Deletes the file of every ready export requested longer than the file TTL before `now`,
    /// and fails the export as expired; returns how many.
    async fn delete_expired_exports(&self, now: Timestamp) -> Result<u64, AppError> {
        let ttl = self.inner.config.export_file_ttl;
        let ready = self.store().exports_in_state(ExportState::Ready).await?;
        let expired: Vec<_> = ready
            .into_iter()
            .filter(|export| file_expired(export, ttl, now))
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        // Not while a refresh rewrites files.
        let _rewriting = self.inner.exports.rewrites.lock().await;
        for export in &expired {
            let path = export_file(&self.inner.config.data_dir, &export.id, export.format);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(export = %export.id, %error, "cannot delete an expired export file");
                continue;
            }
            self.store()
                .revise_export(
                    &export.id,
                    Err(format!(
                        "expired: export files are deleted {} hours after the export was requested (--export-file-ttl-hours); request a new export",
                        ttl.as_secs() / 3600
                    )),
                    now,
                )
                .await?;
        }
        tracing::info!(deleted = expired.len(), "expired export files deleted");
        Ok(expired.len() as u64)
    }
}

/// Whether `export`'s file has outlived `ttl` at `now` (counted from the request, so a file
/// rewritten after a purge keeps its first deadline).
fn file_expired(export: &ExportRecord, ttl: Duration, now: Timestamp) -> bool {
    let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    now.unix_millis()
        .saturating_sub(export.created_at.unix_millis())
        >= ttl_millis
}

async fn run(app: &Trailmark, export: &ExportRecord) -> Result<u64, String> {
    let path = export_file(&app.inner.config.data_dir, &export.id, export.format);
    // Named for this instance: should a lease lapse while this run is slow, another instance's
    // run of the same export writes its own draft, and each rename publishes a complete file.
    let partial = path.with_extension(format!(
        "{}.{}.partial",
        export.format.extension(),
        app.instance_id()
    ));
    if let Some(directory) = path.parent() {
        private_directory(directory)
            .map_err(|e| format!("cannot create {}: {e}", directory.display()))?;
    }
    let file =
        private_file(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let outcome = write_partial(app, export, file, &partial, &path).await;
    if outcome.is_err()
        && let Err(error) = std::fs::remove_file(&partial)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(export = %export.id, %error, "cannot delete an unfinished export file");
    }
    outcome
}

/// Bytes the files under `<data-dir>/exports` take now (0 before the first export).
fn exports_disk_use(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("exports")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
    })
}

/// A writer that fails once it has been given more than `left` bytes.
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: std::io::Write> std::io::Write for Bounded<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let Some(left) = self.left.checked_sub(bytes.len() as u64) else {
            return Err(std::io::Error::other(
                "export files would take more than --export-max-disk-bytes",
            ));
        };
        let written = self.inner.write(bytes)?;
        self.left = left + (bytes.len() - written) as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the export into `partial` (within what the disk bound leaves), then publishes it as
/// `path`.
async fn write_partial(
    app: &Trailmark,
    export: &ExportRecord,
    file: std::fs::File,
    partial: &Path,
    path: &Path,
) -> Result<u64, String> {
    let left = app
        .inner
        .config
        .export_max_disk_bytes
        .saturating_sub(exports_disk_use(&app.inner.config.data_dir));
    let mut out = BufWriter::with_capacity(1 << 20, Bounded { inner: file, left });
    // NDJSON exports are made against a checkpoint covering everything committed so far.
    let snapshot = match export.format {
        ExportFormat::Ndjson => Some(Snapshot {
            checkpoint: app
                .fresh_checkpoint(&export.organization_id)
                .await
                .map_err(|e| e.to_string())?,
        }),
        ExportFormat::Csv | ExportFormat::Ocsf => None,
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
    let file = out.into_inner().map_err(|e| e.into_error().to_string())?;
    file.inner
        .sync_all()
        .map_err(|e| format!("cannot sync the export file: {e}"))?;
    std::fs::rename(partial, path).map_err(|e| format!("cannot publish the export file: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_at(created_at: Timestamp) -> ExportRecord {
        ExportRecord {
            id: "audit_log_export_1".into(),
            organization_id: "org_1".into(),
            state: ExportState::Ready,
            format: ExportFormat::Csv,
            filter: EventFilter::default(),
            row_count: Some(1),
            error: None,
            created_at,
            updated_at: created_at,
        }
    }

    #[test]
    fn a_file_expires_its_ttl_after_the_request() {
        let requested = Timestamp::from_unix_millis(1_000_000);
        let export = ready_at(requested);
        let day = Duration::from_secs(86_400);
        assert!(!file_expired(&export, day, requested));
        assert!(!file_expired(
            &export,
            day,
            requested.plus_millis(86_399_999)
        ));
        assert!(file_expired(
            &export,
            day,
            requested.plus_millis(86_400_000)
        ));
        // A clock set back never expires anything early.
        assert!(!file_expired(&export, day, requested.plus_millis(-5_000)));
    }
}
