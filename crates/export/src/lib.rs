//! Exports: one organization's events, filtered, written as CSV or NDJSON
//! (formats in `trailmark_domain::export`).
//!
//! [`write_export`] reads the log in sequence order, [`PAGE_SIZE`] events at a time, and writes
//! each page before reading the next, so memory stays flat whatever the export's size. It is
//! used by the server's background export jobs and by `trailmark export`.
//!
//! This crate does not know where the bytes go (a file, stdout, a socket) nor how exports are
//! requested; it turns a filter into a byte stream.

use std::io::Write;

use trailmark_domain::export::ExportFormat;
use trailmark_domain::query::EventFilter;
use trailmark_store::{Order, SearchRequest, Store, StoreError};

/// Events read per storage query: large enough to amortize a query, small enough to keep
/// memory flat (about 1 MB of events in flight).
pub const PAGE_SIZE: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes every event of `organization_id` matching `filter` to `out` in `format`, in log order,
/// calling `progress` with the running count after each page. Returns the number of events.
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
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    out.write_all(format.preamble().as_bytes())?;
    let mut written = 0u64;
    let mut after = None;
    let mut buffer = String::with_capacity(PAGE_SIZE * 512);
    loop {
        let request = SearchRequest {
            filter: filter.clone(),
            after,
            before: None,
            order: Order::Asc,
            limit: PAGE_SIZE,
        };
        let page = store.search_events(organization_id, request).await?;
        buffer.clear();
        for event in &page.events {
            format.write(&event.to_object(), &mut buffer);
        }
        out.write_all(buffer.as_bytes())?;
        written += page.events.len() as u64;
        progress(written);
        match page.events.last() {
            Some(last) if page.more => after = Some(last.sequence),
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}
