//! `trailmark export`: write one organization's events to a CSV or NDJSON file, from the local
//! database or through a running server's export API, with a progress line on a terminal and a
//! summary at the end. Either way the file is the one the server's exports produce: an NDJSON
//! export ends with the signed checkpoint's manifest, so `trailmark verify` can check it.

use std::io::{BufWriter, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use trailmark_client::wire::ExportRequest;
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::query::{ActionPattern, EventFilter, FilterNames};
use trailmark_export::{Snapshot, write_export};

use crate::args::{ExportArgs, FormatArg};
use crate::serve::{Access, open_store};

const CLI_FILTER_NAMES: FilterNames = FilterNames {
    range_start: "--since",
    range_end: "--until",
    actions: "--actions",
    actor_ids: "--actor-ids",
    actor_names: "--actor-names",
    target_ids: "--target-ids",
    target_types: "--target-types",
    text: "--q",
};

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let instant = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<Timestamp>> {
        value
            .as_deref()
            .map(|text| Timestamp::parse(text).map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}")))
            .transpose()
    };
    let filter = EventFilter {
        range_start: instant("--since", &args.since)?,
        range_end: instant("--until", &args.until)?,
        actions: args
            .actions
            .iter()
            .map(|a| ActionPattern::parse(a))
            .collect(),
        actor_ids: args.actor_ids.clone(),
        actor_names: args.actor_names.clone(),
        target_ids: args.target_ids.clone(),
        target_types: args.target_types.clone(),
        text: args.q.clone(),
    };
    if let Err(problems) = filter.check(&CLI_FILTER_NAMES) {
        let messages: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        bail!("{}", messages.join("; "));
    }
    let format = match args.format {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Ndjson => ExportFormat::Ndjson,
        FormatArg::Ocsf => ExportFormat::Ocsf,
    };

    // From the database, it must exist and hold the organization (live, or deleted with its log
    // kept) before any file is made: a typo is an error naming it, not an empty export.
    let source = match &args.server {
        None => {
            let store = open_store(&args.storage, Access::Beside).await?;
            let known = store.get_organization(&args.organization).await?.is_some()
                || store.log_size(&args.organization).await? > 0;
            if !known {
                bail!(
                    "organization '{}' does not exist in this database",
                    args.organization
                );
            }
            Source::Database(store)
        }
        Some(server) => Source::Server(server),
    };
    let partial = args.out.with_extension("partial");
    let file =
        private_file(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    let mut progress = Progress::new();
    let result: anyhow::Result<u64> = async {
        Ok(match &source {
            Source::Database(store) => {
                // The latest checkpoint the server signed (it signs every second) makes an NDJSON
                // export verifiable; events after it wait for the next export.
                let snapshot = store
                    .latest_checkpoint(&args.organization)
                    .await?
                    .map(|checkpoint| Snapshot { checkpoint });
                if format == ExportFormat::Ndjson && snapshot.is_none() {
                    eprintln!(
                        "note: this log has no signed checkpoint yet, so the export has no manifest; \
                         start the server once to sign one"
                    );
                }
                write_export(
                    store.as_ref(),
                    &args.organization,
                    &filter,
                    format,
                    snapshot.as_ref(),
                    &mut out,
                    |n| progress.update(n),
                )
                .await?
            }
            Source::Server(server) => {
                let key = args
                    .api_key
                    .as_deref()
                    .context("--server needs --api-key (or TRAILMARK_API_KEY)")?;
                export_from_server(server, key, &args, format, &mut out, &mut progress).await?
            }
        })
    }
    .await;
    let written = match result {
        Ok(written) => written,
        Err(error) => {
            // A half-written file is never left where a later run or a reader could take it.
            let _ = std::fs::remove_file(&partial);
            progress.finish();
            return Err(error);
        }
    };
    let file = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?;
    file.sync_all()?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("cannot move the export to {}", args.out.display()))?;
    progress.finish();
    if args.json {
        let bytes = std::fs::metadata(&args.out).map_or(0, |m| m.len());
        crate::say!(
            "{}",
            serde_json::json!({
                "file": args.out.display().to_string(),
                "organization_id": args.organization,
                "format": format.as_str(),
                "events": written,
                "bytes": bytes,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
        return Ok(());
    }
    eprintln!(
        "Exported {written} events of {} to {} ({}) in {:.1}s.",
        args.organization,
        args.out.display(),
        format.as_str(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the events come from.
enum Source<'a> {
    Database(std::sync::Arc<dyn trailmark_store::Store>),
    /// A running server's URL (`--server`).
    Server(&'a str),
}

/// Asks the server for an export job with the same filters (`POST /audit_logs/exports`), waits
/// for it, and downloads the file through the signed link it answers with.
async fn export_from_server(
    server: &str,
    key: &str,
    args: &ExportArgs,
    format: ExportFormat,
    out: &mut impl Write,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let client = trailmark_client::Client::new(server, key)?;
    let request = ExportRequest {
        organization_id: args.organization.clone(),
        range_start: args.since.clone(),
        range_end: args.until.clone(),
        actions: args.actions.clone(),
        actor_ids: args.actor_ids.clone(),
        actor_names: args.actor_names.clone(),
        targets: args.target_types.clone(),
        target_ids: args.target_ids.clone(),
        q: args.q.clone(),
        format: Some(format.as_str().to_owned()),
    };
    let mut export = client.create_export(&request).await.map_err(refusal)?;
    while export.state == "pending" {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        export = client.get_export(&export.id).await.map_err(refusal)?;
    }
    let Some(rows) = export.row_count.filter(|_| export.state == "ready") else {
        bail!(
            "export {} ended in state {}: {}",
            export.id,
            export.state,
            export
                .error
                .as_deref()
                .unwrap_or("the server gave no reason")
        );
    };
    let mut counted = CountedLines {
        inner: out,
        lines: 0,
        rows,
        progress,
    };
    client
        .download_export_to(&export, &mut counted)
        .await
        .map_err(refusal)?;
    Ok(rows)
}

/// Passes a download through, showing how many of its `rows` have arrived.
struct CountedLines<'a, W> {
    inner: &'a mut W,
    lines: u64,
    rows: u64,
    progress: &'a mut Progress,
}

impl<W: Write> Write for CountedLines<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.lines += bytes[..written].iter().filter(|&&b| b == b'\n').count() as u64;
        self.progress.update(self.lines.min(self.rows));
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The server's answer as a user reads it: its status, message and each field it names.
fn refusal(error: trailmark_client::Error) -> anyhow::Error {
    let trailmark_client::Error::Api {
        status,
        message,
        body,
        ..
    } = &error
    else {
        return error.into();
    };
    let fields: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["field"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if fields.is_empty() {
        anyhow::anyhow!("the server answered {status}: {message}")
    } else {
        anyhow::anyhow!(
            "the server answered {status}: {message} ({})",
            fields.join("; ")
        )
    }
}

/// A one-line progress counter on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn update(&mut self, written: u64) {
        if self.enabled && self.last.elapsed().as_millis() >= 100 {
            eprint!("\r{written} events exported…");
            self.last = Instant::now();
        }
    }

    fn finish(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Creates (or truncates) the export's file for its owner only (0600, whatever the umask): it
/// holds an organization's audit trail.
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
