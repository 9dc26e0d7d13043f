//! The read ceilings: the same data directory, opened in-process beside the server
//! (`SqliteStore::open_beside`, as `trailmark verify` opens it) and read through the store's own
//! calls: the storage part of each operation and nothing else — no HTTP, no JSON parsing or
//! writing of responses, no reader pool of the server's.
//!
//! The store is async; the bench calls these from inside its own runtime, so the store lives on
//! a thread of its own with a runtime of its own, and each call waits for its answer there.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;

use trailmark_domain::Timestamp;
use trailmark_domain::query::EventFilter;
use trailmark_ledger::tree::leaf_hash;
use trailmark_store::{EventLog, LedgerStore, Order, SearchRequest, SqliteStore};

use crate::search::Search;

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &SqliteStore) + Send>;

pub struct Raw {
    jobs: mpsc::Sender<Job>,
}

impl Raw {
    pub fn open(path: &Path) -> Result<Self, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, opening) = mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = opened.send(Err(format!("raw read: runtime: {e}")));
                    return;
                }
            };
            let store = match SqliteStore::open_beside(&path) {
                Ok(store) => store,
                Err(e) => {
                    let _ = opened.send(Err(format!("raw read: {e}")));
                    return;
                }
            };
            let _ = opened.send(Ok(()));
            while let Ok(job) = queue.recv() {
                job(&runtime, &store);
            }
        });
        opening
            .recv()
            .map_err(|_| "raw read: the reader thread died".to_owned())??;
        Ok(Raw { jobs })
    }

    fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&tokio::runtime::Runtime, &SqliteStore) -> Result<R, String> + Send + 'static,
    ) -> Result<R, String> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |runtime, store| {
                let _ = answer.send(work(runtime, store));
            }))
            .map_err(|_| "raw read: the reader thread stopped".to_owned())?;
        answered
            .recv()
            .map_err(|_| "raw read: the reader thread stopped".to_owned())?
    }

    /// Runs `search` through the store and touches every event's body; returns the number of
    /// events.
    pub fn search(
        &self,
        search: &Search,
        organization_id: &str,
        limit: usize,
    ) -> Result<usize, String> {
        let request = search.request(limit);
        let organization_id = organization_id.to_owned();
        self.call(move |runtime, store| {
            let page = runtime
                .block_on(store.search_raw_events(&organization_id, request))
                .map_err(|e| e.to_string())?;
            for event in &page.events {
                std::hint::black_box((&event.id, &event.body, &event.leaf_hash));
            }
            Ok(page.events.len())
        })
    }

    /// What answers a search in the embedded store (there is no query plan to show).
    pub fn plan(
        &self,
        _search: &Search,
        _organization_id: &str,
        _limit: usize,
    ) -> Result<String, String> {
        Ok("log blocks: terms, trigram filter, then records by position".into())
    }

    /// Every body of the organization's log in sequence order (within `range` of
    /// `occurred_at` if given), each written to `out` on its own line, read through the store's
    /// raw-body read: the least work an export does. Returns the rows and bytes written.
    pub fn scan_bodies(
        &self,
        organization_id: &str,
        range: Option<(i64, i64)>,
        out: &Path,
    ) -> Result<(u64, u64), String> {
        let organization_id = organization_id.to_owned();
        let out = out.to_owned();
        self.call(move |runtime, store| {
            let file =
                std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let mut file = BufWriter::with_capacity(1 << 20, file);
            let write = |e: std::io::Error| format!("{}: {e}", out.display());
            let filter = EventFilter {
                range_start: range.map(|(start, _)| Timestamp::from_unix_millis(start)),
                range_end: range.map(|(_, end)| Timestamp::from_unix_millis(end)),
                ..EventFilter::default()
            };
            let (mut count, mut bytes, mut after) = (0u64, 0u64, None);
            loop {
                let request = SearchRequest {
                    filter: filter.clone(),
                    after,
                    before: None,
                    order: Order::Asc,
                    limit: 1_000,
                };
                let page = runtime
                    .block_on(store.search_raw_events(&organization_id, request))
                    .map_err(|e| e.to_string())?;
                for event in &page.events {
                    file.write_all(event.body.as_bytes()).map_err(write)?;
                    file.write_all(b"\n").map_err(write)?;
                    count += 1;
                    bytes += event.body.len() as u64 + 1;
                }
                match (page.more, page.events.last()) {
                    (true, Some(last)) => after = Some(last.sequence),
                    _ => break,
                }
            }
            file.flush().map_err(write)?;
            Ok((count, bytes))
        })
    }

    /// The id of the event at `sequence`.
    pub fn event_id(&self, organization_id: &str, sequence: u64) -> Result<String, String> {
        let organization_id = organization_id.to_owned();
        self.call(move |runtime, store| {
            let events = runtime
                .block_on(store.events_after(&organization_id, sequence.checked_sub(1), 1))
                .map_err(|e| e.to_string())?;
            events
                .into_iter()
                .next()
                .map(|event| event.id)
                .ok_or_else(|| format!("no event {sequence}"))
        })
    }

    /// The storage reads of `GET /audit_logs/ledger/inclusion` with a `tree_size`: the event
    /// by id, the log size, the audit path and the root. Returns the proof's length.
    pub fn inclusion(
        &self,
        organization_id: &str,
        event_id: &str,
        size: u64,
    ) -> Result<usize, String> {
        let (organization_id, event_id) = (organization_id.to_owned(), event_id.to_owned());
        self.call(move |runtime, store| {
            runtime.block_on(async {
                let event = store
                    .get_event(&event_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no event {event_id}"))?;
                store
                    .log_size(&organization_id)
                    .await
                    .map_err(|e| e.to_string())?;
                let proof = store
                    .inclusion_proofs(&organization_id, vec![event.sequence], size)
                    .await
                    .map_err(|e| e.to_string())?;
                std::hint::black_box(
                    store
                        .tree_root(&organization_id, size)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                Ok(proof.first().map_or(0, Vec::len))
            })
        })
    }

    /// The storage reads of `GET /audit_logs/ledger/consistency`: the log size, the proof and
    /// both roots. Returns the proof's length.
    pub fn consistency(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<usize, String> {
        let organization_id = organization_id.to_owned();
        self.call(move |runtime, store| {
            runtime.block_on(async {
                store
                    .log_size(&organization_id)
                    .await
                    .map_err(|e| e.to_string())?;
                let proof = store
                    .consistency_proof(&organization_id, first, second)
                    .await
                    .map_err(|e| e.to_string())?;
                for size in [first, second] {
                    std::hint::black_box(
                        store
                            .tree_root(&organization_id, size)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                Ok(proof.len())
            })
        })
    }
}

/// The least work a verifier must do with an export file: read each line and hash it once
/// (SHA-256 with RFC 6962's leaf prefix). `trailmark verify` also parses the JSON, rebuilds the
/// canonical form, checks proofs and rebuilds the tree. Returns the lines hashed.
pub fn hash_lines(path: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    let mut count = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        std::hint::black_box(leaf_hash(&line));
        count += 1;
    }
    Ok(count)
}
