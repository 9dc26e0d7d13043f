//! Exports: one organization's events, filtered, written as CSV, NDJSON or OCSF
//! (formats in `trailmark_domain::export`), and for NDJSON, made verifiable.
//!
//! [`write_export`] reads the log in sequence order, [`PAGE_SIZE`] events at a time, and writes
//! each page before reading the next, so memory stays flat whatever the export's size. It is
//! used by the server's background export jobs and by `trailmark export`.
//!
//! **Verifiable NDJSON.** Given a [`Snapshot`] (a signed checkpoint), the export holds exactly
//! the matching events with a sequence below the checkpoint's tree size, and ends with one
//! manifest line:
//!
//! ```json
//! {"object": "audit_log_export_manifest", "version": 1, "organization_id": "org_…",
//!  "tree_size": 1024, "root_hash": "<base64>", "checkpoint": "<C2SP signed note>",
//!  "complete": false, "event_count": 17}
//! ```
//!
//! `complete` is true when the export has no filter at all: it then holds every event of the
//! tree, and a verifier rebuilds the root from the leaves. Otherwise each event line carries an
//! `inclusion_proof` (base64 hashes, RFC 9162 audit path to the checkpoint's root). Either way
//! each event's `leaf_hash` is recomputable from the line itself (`trailmark_ledger::leaf`).
//!
//! [`check`] reads such an export back and checks it (`trailmark verify`), so the format's
//! writer and reader live together.
//!
//! This crate does not know where the bytes go nor how exports are requested.

use std::io::Write;

use futures_util::future::join;
use serde_json::json;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::query::EventFilter;
use trailmark_ledger::encode_hash;
use trailmark_store::{Order, SearchRequest, Store, StoreError, StoredCheckpoint};

pub mod check;
mod line;

/// Events read per storage query: large enough to amortize a query, small enough to keep
/// memory flat (about 1 MB of events in flight).
pub const PAGE_SIZE: usize = 1_000;

/// The `object` of an NDJSON export's last line.
pub const MANIFEST_OBJECT: &str = "audit_log_export_manifest";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// The signed checkpoint an export is made against.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub checkpoint: StoredCheckpoint,
}

/// Writes every event of `organization_id` matching `filter` to `out` in `format`, in log order,
/// calling `progress` with the running count after each page. With a `snapshot`, only events the
/// checkpoint covers are written and an NDJSON export is made verifiable (see the crate docs).
/// Returns the number of events.
///
/// # Errors
///
/// A storage error while reading, or an I/O error while writing; `out` then holds a partial
/// export that the caller must discard.
pub async fn write_export(
    store: &dyn Store,
    organization_id: &str,
    filter: &EventFilter,
    format: ExportFormat,
    snapshot: Option<&Snapshot>,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    let verifiable = snapshot.filter(|_| format == ExportFormat::Ndjson);
    let complete = *filter == EventFilter::default();
    let before = snapshot.map(|s| s.checkpoint.tree_size);
    out.write_all(format.preamble().as_bytes())?;
    let mut written = 0u64;
    let fetch = |after: Option<u64>| {
        store.search_raw_events(
            organization_id,
            SearchRequest {
                filter: filter.clone(),
                after,
                before,
                order: Order::Asc,
                limit: PAGE_SIZE,
            },
        )
    };
    let mut buffer = String::with_capacity(PAGE_SIZE * 512);
    let mut page = fetch(None).await?;
    loop {
        let proofs = match verifiable {
            Some(snapshot) if !complete && !page.events.is_empty() => {
                let sequences = page.events.iter().map(|e| e.sequence).collect();
                Some(
                    store
                        .inclusion_proofs(organization_id, sequences, snapshot.checkpoint.tree_size)
                        .await?,
                )
            }
            _ => None,
        };
        let next = page
            .events
            .last()
            .filter(|_| page.more)
            .map(|last| last.sequence);
        let count = page.events.len() as u64;
        // The store reads and parses the next page on its own thread while this one is written.
        let write_page = async {
            buffer.clear();
            for (position, event) in page.events.into_iter().enumerate() {
                let proof = proofs.as_ref().and_then(|proofs| proofs.get(position));
                line::write_event(format, event, proof.map(Vec::as_slice), &mut buffer)?;
            }
            out.write_all(buffer.as_bytes())?;
            Ok::<_, ExportError>(())
        };
        let following = match next {
            Some(after) => {
                let (following, written_page) = join(fetch(Some(after)), write_page).await;
                written_page?;
                Some(following?)
            }
            None => {
                write_page.await?;
                None
            }
        };
        written += count;
        progress(written);
        match following {
            Some(following) => page = following,
            None => break,
        }
    }
    if let Some(snapshot) = verifiable {
        let checkpoint = &snapshot.checkpoint;
        let manifest = json!({
            "object": MANIFEST_OBJECT,
            "version": 1,
            "organization_id": organization_id,
            "tree_size": checkpoint.tree_size,
            "root_hash": encode_hash(&checkpoint.root),
            "checkpoint": checkpoint.note,
            "complete": complete,
            "event_count": written,
        });
        out.write_all(manifest.to_string().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(written)
}
