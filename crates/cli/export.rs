//! `trailmark export`: write one organization's events to a CSV or NDJSON file, from the local
//! database or from a running server's search API, with a progress line on a terminal and a
//! summary at the end.

use std::io::{BufWriter, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::query::{ActionPattern, EventFilter, FilterNames};
use trailmark_export::{Snapshot, write_export};

use crate::args::{ExportArgs, FormatArg};
use crate::serve::open_store;

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
    };

    let partial = args.out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    let mut progress = Progress::new();
    let written = match &args.server {
        None => {
            let store = open_store(&args.storage).await?;
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
        Some(server) => {
            let key = args
                .api_key
                .as_deref()
                .context("--server needs --api-key (or TRAILMARK_API_KEY)")?;
            export_from_server(
                server,
                key,
                &args.organization,
                &args,
                format,
                &mut out,
                &mut progress,
            )
            .await?
        }
    };
    let file = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?;
    file.sync_all()?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("cannot move the export to {}", args.out.display()))?;
    progress.finish();
    eprintln!(
        "Exported {written} events of {} to {} ({}) in {:.1}s.",
        args.organization,
        args.out.display(),
        format.as_str(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pages through `GET /audit_logs/events` in log order.
async fn export_from_server(
    server: &str,
    key: &str,
    organization: &str,
    args: &ExportArgs,
    format: ExportFormat,
    out: &mut impl Write,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let base = format!("{}/audit_logs/events", server.trim_end_matches('/'));
    let mut query: Vec<(&str, String)> = vec![
        ("organization_id", organization.to_owned()),
        ("order", "asc".into()),
        ("limit", "100".into()),
    ];
    for (name, value) in [
        ("range_start", &args.since),
        ("range_end", &args.until),
        ("q", &args.q),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    for (name, values) in [
        ("actions", &args.actions),
        ("actor_ids", &args.actor_ids),
        ("actor_names", &args.actor_names),
        ("target_ids", &args.target_ids),
        ("target_types", &args.target_types),
    ] {
        for value in values {
            query.push((name, value.clone()));
        }
    }
    out.write_all(format.preamble().as_bytes())?;
    let mut written = 0u64;
    let mut after: Option<String> = None;
    let mut buffer = String::new();
    loop {
        let mut request = client.get(&base).bearer_auth(key).query(&query);
        if let Some(after) = &after {
            request = request.query(&[("after", after)]);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {server}"))?;
        let status = response.status();
        let page: serde_json::Value = response
            .json()
            .await
            .context("the server's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "the server answered {status}: {}",
                page["message"].as_str().unwrap_or("no message")
            );
        }
        buffer.clear();
        let events = page["data"].as_array().cloned().unwrap_or_default();
        for event in &events {
            format.write(event, &mut buffer);
        }
        out.write_all(buffer.as_bytes())?;
        written += events.len() as u64;
        progress.update(written);
        match page["list_metadata"]["after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    out.flush()?;
    Ok(written)
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
