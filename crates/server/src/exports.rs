//! Background export jobs: each pending export is streamed from storage into
//! `<data-dir>/exports/<id>.<csv|ndjson>` (written under a `.partial` name, fsync'd, then renamed,
//! so a file that exists is complete), then marked ready with its row count, or `error` with the
//! reason. Each job runs under a lease in the database ([`EXPORT_LEASE`], renewed while it
//! runs), so of several instances over one database exactly one generates it; a sweep every
//! [`SWEEP_INTERVAL`] takes over jobs whose lease ran out (their instance crashed or restarted),
//! so no export stays pending forever. NDJSON exports end with a manifest holding a checkpoint
//! signed for them (see `trailmark_export`).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::id::IdKind;
use trailmark_domain::query::EventFilter;
use trailmark_export::{Snapshot, write_export};
use trailmark_store::{ExportRecord, ExportState};

use crate::error::ApiError;
use crate::state::AppState;

/// The file of a finished export.
pub(crate) fn export_file(data_dir: &Path, id: &str, format: ExportFormat) -> PathBuf {
    data_dir
        .join("exports")
        .join(format!("{id}.{}", format.as_str()))
}

/// Records a new pending export of `organization_id`'s events matching `filter` and starts
/// writing it. Shared by the exports API and the portal.
///
/// # Errors
///
/// A storage error recording the job.
pub(crate) async fn begin(
    state: &AppState,
    organization_id: String,
    format: ExportFormat,
    filter: EventFilter,
) -> Result<ExportRecord, ApiError> {
    let now = Timestamp::now();
    let export = ExportRecord {
        id: IdKind::Export.generate().into_string(),
        organization_id,
        state: ExportState::Pending,
        format,
        filter,
        row_count: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_export(export.clone()).await?;
    start(state.clone(), export.clone());
    Ok(export)
}

/// How long a claim on an export lasts unless renewed.
const EXPORT_LEASE: Duration = Duration::from_secs(30);
/// How often pending exports without a live runner are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Removes an export from the running set when its task ends, however it ends.
struct Running {
    state: AppState,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.state.running_exports.lock() {
            running.remove(&self.id);
        }
    }
}

async fn claim(state: &AppState, id: &str) -> bool {
    let now = Timestamp::now();
    let until = now.plus_millis(EXPORT_LEASE.as_millis() as i64);
    match state
        .store
        .claim_export(id, &state.instance_id, until, now)
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
pub(crate) fn start(state: AppState, export: ExportRecord) {
    let newly_running = state
        .running_exports
        .lock()
        .is_ok_and(|mut running| running.insert(export.id.clone()));
    if !newly_running {
        return;
    }
    tokio::spawn(async move {
        let _running = Running {
            state: state.clone(),
            id: export.id.clone(),
        };
        let Ok(_permit) = state.export_jobs.clone().acquire_owned().await else {
            return;
        };
        if !claim(&state, &export.id).await {
            return;
        }
        let renewal = tokio::spawn({
            let (state, id) = (state.clone(), export.id.clone());
            async move {
                loop {
                    tokio::time::sleep(EXPORT_LEASE / 3).await;
                    claim(&state, &id).await;
                }
            }
        });
        let started = std::time::Instant::now();
        let outcome = run(&state, &export).await;
        renewal.abort();
        let bytes = outcome.as_ref().map_or(0, |_| {
            std::fs::metadata(export_file(
                &state.config.data_dir,
                &export.id,
                export.format,
            ))
            .map_or(0, |file| file.len())
        });
        state
            .metrics
            .export_finished(outcome.as_ref().ok().copied(), bytes, started.elapsed());
        if let Err(reason) = &outcome {
            tracing::warn!(export = %export.id, %reason, "export failed");
        }
        if let Err(error) = state
            .store
            .finish_export(&export.id, outcome, Timestamp::now())
            .await
        {
            tracing::error!(export = %export.id, %error, "could not record the export's outcome");
        }
    });
}

/// Looks for pending exports now and every [`SWEEP_INTERVAL`], and starts those no live
/// instance is generating ([`start`] claims them; a claimed one is left alone).
pub(crate) fn resume_pending(state: AppState) {
    tokio::spawn(async move {
        let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            sweeps.tick().await;
            match state.store.exports_in_state(ExportState::Pending).await {
                Ok(pending) => {
                    for export in pending {
                        start(state.clone(), export);
                    }
                }
                Err(error) => tracing::error!(%error, "cannot list pending exports"),
            }
        }
    });
}

async fn run(state: &AppState, export: &ExportRecord) -> Result<u64, String> {
    let path = export_file(&state.config.data_dir, &export.id, export.format);
    // Named for this instance: should a lease lapse while this run is slow, another instance's
    // run of the same export writes its own draft, and each rename publishes a complete file.
    let partial = path.with_extension(format!(
        "{}.{}.partial",
        export.format.as_str(),
        state.instance_id
    ));
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory)
            .map_err(|e| format!("cannot create {}: {e}", directory.display()))?;
    }
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // NDJSON exports are made against a checkpoint covering everything committed so far.
    let snapshot = match export.format {
        ExportFormat::Ndjson => Some(Snapshot {
            checkpoint: state
                .ledger
                .fresh(state.store.as_ref(), &export.organization_id)
                .await
                .map_err(|e| e.to_string())?,
        }),
        ExportFormat::Csv => None,
    };
    let rows = write_export(
        state.store.as_ref(),
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
