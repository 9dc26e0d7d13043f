//! Reads: searches, single events, sizes, roots and proofs.
//!
//! Every read first takes what it needs from memory (the organization's events not yet in a
//! block, and how many are), then reads the written blocks and tiles *below* that point in one
//! SQLite read transaction, then the events' records from the log. Since events leave memory
//! only after their block is committed, the two parts never miss or repeat an event.

use rusqlite::{Connection, MAIN_DB, OptionalExtension, params};
use trailmark_domain::Timestamp;
use trailmark_domain::event::NewEvent;
use trailmark_domain::json::JsonText;
use trailmark_domain::query::EventFilter;
use trailmark_ledger::LedgerError;
use trailmark_ledger::tree::{Hash, consistency_proof, inclusion_proof, tree_hash};

use super::block::{Columns, Field, IndexedEvent, Terms, candidates};
use super::format::decode_event;
use super::tiles::{TileReader, TileSource};
use super::{LogEngine, Shared, id_key, split_hashes};
use crate::StoreError;
use crate::model::{Order, RawEvent, Receipt, SearchPage, SearchRequest, StoredEvent};
use crate::trigram::{Bloom, trigrams_of};

/// An event a read found, before its record is read.
#[derive(Debug, Clone, Copy)]
struct Hit {
    sequence: u64,
    position: u64,
    length: u32,
    received_at: i64,
    purged_at: Option<i64>,
}

impl Hit {
    fn of(event: &IndexedEvent) -> Self {
        Hit {
            sequence: event.sequence,
            position: event.position,
            length: event.length,
            received_at: event.received_at,
            purged_at: event.purged_at,
        }
    }
}

/// What a read takes from memory about one organization.
struct Snapshot {
    number: u32,
    /// Whether an erasure rewrote some of its events (their bodies are in `log_erasures`).
    erased: bool,
    /// Events in written blocks: blocks are read below this.
    sealed: u64,
}

impl LogEngine {
    /// One organization's events matching `request`, each turned into an `E` by `decode`.
    ///
    /// # Errors
    ///
    /// Storage errors; [`StoreError::Corrupt`] for records or blocks that do not decode.
    pub(crate) async fn search<E: Send + 'static>(
        &self,
        organization_id: &str,
        request: SearchRequest,
        decode: fn(RawEvent) -> Result<E, StoreError>,
    ) -> Result<SearchPage<E>, StoreError> {
        let text = request.filter.text.as_ref().map(|t| t.to_lowercase());
        let low = request.after.map_or(0, |after| after.saturating_add(1));
        let high = request.before.unwrap_or(u64::MAX);
        let want = request.limit.saturating_add(1);
        let (snapshot, open) = {
            let state = self.shared.read_state()?;
            let Some(log) = state.logs.get(organization_id) else {
                return Ok(SearchPage {
                    events: Vec::new(),
                    more: false,
                });
            };
            let open: Vec<Hit> = log
                .open
                .iter()
                .filter(|e| e.sequence >= low && e.sequence < high)
                .filter(|e| e.matches(&request.filter, text.as_deref()))
                .map(|event| Hit::of(event))
                .collect();
            (
                Snapshot {
                    number: log.number,
                    erased: state.erased.contains(&log.number),
                    sealed: log.sealed,
                },
                open,
            )
        };
        let shared = std::sync::Arc::clone(&self.shared);
        let organization_id = organization_id.to_owned();
        self.shared
            .db
            .read(move |connection| {
                let descending = request.order == Order::Desc;
                let mut hits = Vec::with_capacity(want.min(1024));
                if descending {
                    hits.extend(open.iter().rev().take(want).copied());
                }
                if hits.len() < want && low < snapshot.sealed.min(high) {
                    let transaction = connection.unchecked_transaction()?;
                    sealed_hits(
                        &shared,
                        &transaction,
                        &snapshot,
                        &request.filter,
                        text.as_deref(),
                        (low, high.min(snapshot.sealed)),
                        descending,
                        want,
                        &mut hits,
                    )?;
                }
                if !descending && hits.len() < want {
                    hits.extend(open.iter().take(want - hits.len()).copied());
                }
                let more = hits.len() > request.limit;
                hits.truncate(request.limit);
                let erased = snapshot.erased.then_some(snapshot.number);
                let events = read_hits(&shared, connection, erased, &organization_id, &hits)?
                    .into_iter()
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(SearchPage { events, more })
            })
            .await
    }

    /// The event `id`, whatever its organization.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let key = id_key(id);
        let (entry, organization_id, open_purged, sealed, erased) = {
            let state = self.shared.read_state()?;
            let entry = state
                .ids
                .get(&key)
                .or_else(|| state.ids_flushing.as_ref().and_then(|f| f.get(&key)))
                .copied();
            let entry = match entry {
                Some(entry) => entry,
                None => match self.shared.ids.find(&key)? {
                    Some(entry) => entry,
                    None => return Ok(None),
                },
            };
            let Some(organization_id) = state.names.get(&entry.organization).cloned() else {
                return Ok(None);
            };
            let log = state.logs.get(&organization_id);
            let sealed = log.map_or(0, |log| log.sealed);
            let open_purged = log
                .and_then(|log| log.open.iter().find(|e| e.sequence == entry.a))
                .and_then(|e| e.purged_at);
            let erased = state
                .erased
                .contains(&entry.organization)
                .then_some(entry.organization);
            (entry, organization_id, open_purged, sealed, erased)
        };
        let shared = std::sync::Arc::clone(&self.shared);
        let id = id.to_owned();
        self.shared
            .db
            .read(move |connection| {
                let purged_at = if entry.a < sealed {
                    block_purged_at(connection, entry.organization, entry.a)?
                } else {
                    open_purged
                };
                let hit = Hit {
                    sequence: entry.a,
                    position: entry.position,
                    length: entry.length,
                    received_at: entry.b,
                    purged_at,
                };
                let raw = read_hits(&shared, connection, erased, &organization_id, &[hit])?
                    .into_iter()
                    .next()
                    .filter(|raw| raw.id == id);
                raw.map(RawEvent::decode).transpose()
            })
            .await
    }

    /// The number of events in an organization's log.
    ///
    /// # Errors
    ///
    /// A poisoned lock.
    pub(crate) fn log_size(&self, organization_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .shared
            .read_state()?
            .logs
            .get(organization_id)
            .map_or(0, |log| log.size))
    }

    /// Every organization with a non-empty log, with its size, by id.
    ///
    /// # Errors
    ///
    /// A poisoned lock.
    pub(crate) fn log_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut sizes: Vec<(String, u64)> = self
            .shared
            .read_state()?
            .logs
            .iter()
            .filter(|(_, log)| log.size > 0)
            .map(|(id, log)| (id.clone(), log.size))
            .collect();
        sizes.sort();
        Ok(sizes)
    }

    /// Runs `work` over the organization's tree (tiles plus the leaves in memory), checking
    /// every size it names is within the log.
    async fn with_tree<R: Send + 'static>(
        &self,
        organization_id: &str,
        largest: u64,
        work: impl FnOnce(&TileReader<'_, SqlTiles<'_>>) -> Result<R, LedgerError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (number, sealed, recent) = {
            let state = self.shared.read_state()?;
            let log = state.logs.get(organization_id);
            let size = log.map_or(0, |log| log.size);
            if largest > size {
                return Err(StoreError::Ledger(LedgerError::MissingNode {
                    level: 0,
                    index: largest - 1,
                }));
            }
            match log {
                Some(log) => (
                    log.number,
                    log.sealed,
                    log.open.iter().map(|e| e.leaf_hash).collect::<Vec<Hash>>(),
                ),
                None => (0, 0, Vec::new()),
            }
        };
        self.shared
            .db
            .read(move |connection| {
                let transaction = connection.unchecked_transaction()?;
                let tiles = SqlTiles::new(&transaction, number);
                Ok(work(&TileReader::new(&tiles, sealed, &recent))?)
            })
            .await
    }

    /// The root of the first `size` leaves.
    ///
    /// # Errors
    ///
    /// [`StoreError::Ledger`] if the log is smaller; storage errors.
    pub(crate) async fn tree_root(
        &self,
        organization_id: &str,
        size: u64,
    ) -> Result<Hash, StoreError> {
        self.with_tree(organization_id, size, move |tree| tree_hash(size, tree))
            .await
    }

    /// Inclusion proofs of `indexes` in the tree of `size` leaves.
    ///
    /// # Errors
    ///
    /// [`StoreError::Ledger`] for an index or size outside the log; storage errors.
    pub(crate) async fn inclusion_proofs(
        &self,
        organization_id: &str,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        self.with_tree(organization_id, size, move |tree| {
            indexes
                .into_iter()
                .map(|index| inclusion_proof(index, size, tree))
                .collect()
        })
        .await
    }

    /// Complete subtree hashes of the tree of `size` leaves (`rules::subtree_hashes`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Ledger`] for subtrees or a size outside the log; storage errors.
    pub(crate) async fn subtree_hashes(
        &self,
        organization_id: &str,
        size: u64,
        level: u32,
        start: u64,
        count: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.with_tree(organization_id, size, move |tree| {
            crate::rules::subtree_hashes(tree, size, level, start, count)
        })
        .await
    }

    /// The consistency proof from `first` to `second` leaves.
    ///
    /// # Errors
    ///
    /// [`StoreError::Ledger`] for sizes outside the log; storage errors.
    pub(crate) async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.with_tree(organization_id, second, move |tree| {
            consistency_proof(first, second, tree)
        })
        .await
    }
}

/// Finds matches in the written blocks of `range` (`[low, high)`, all below the snapshot's
/// sealed size), in order, until `hits` holds `want`.
#[allow(clippy::too_many_arguments)]
fn sealed_hits(
    shared: &Shared,
    connection: &Connection,
    snapshot: &Snapshot,
    filter: &EventFilter,
    text: Option<&str>,
    (low, high): (u64, u64),
    descending: bool,
    want: usize,
    hits: &mut Vec<Hit>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT rowid, min_occurred, max_occurred, first_sequence, count, locations, occurred, received, purged
         FROM log_blocks WHERE organization = ?1 AND first_sequence < ?2 AND first_sequence + count > ?3
         ORDER BY first_sequence {}",
        if descending { "DESC" } else { "ASC" }
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(params![snapshot.number, high as i64, low as i64])?;
    let (start, end) = (
        filter.range_start.map_or(i64::MIN, Timestamp::unix_millis),
        filter.range_end.map_or(i64::MAX, Timestamp::unix_millis),
    );
    while hits.len() < want
        && let Some(row) = rows.next()?
    {
        let (min_occurred, max_occurred): (i64, i64) = (row.get(1)?, row.get(2)?);
        if max_occurred < start || min_occurred > end {
            continue;
        }
        let rowid: i64 = row.get(0)?;
        let columns = Columns::from_row(row, 3)?;
        let first = columns.first_sequence;
        let mut terms = SqlTerms {
            connection,
            number: snapshot.number,
            first,
            rowid,
        };
        let found = candidates(filter, text, &columns, &mut terms)?;
        let mut offsets = found.offsets.offsets();
        if descending {
            offsets.reverse();
        }
        for offset in offsets {
            if hits.len() >= want {
                break;
            }
            let sequence = first + u64::from(offset);
            if sequence < low || sequence >= high {
                continue;
            }
            let (position, length) = columns.locations[offset as usize];
            let hit = Hit {
                sequence,
                position,
                length,
                received_at: columns.received[offset as usize],
                purged_at: columns.purged[offset as usize],
            };
            if let Some(text) = text.filter(|_| found.check_text)
                && !record_contains(shared, connection, snapshot, hit, text)?
            {
                continue;
            }
            hits.push(hit);
        }
    }
    Ok(())
}

/// Whether the search text of the event at `hit` contains `text` (lower-cased).
fn record_contains(
    shared: &Shared,
    connection: &Connection,
    snapshot: &Snapshot,
    hit: Hit,
    text: &str,
) -> Result<bool, StoreError> {
    let erased = match snapshot.erased {
        true => erased_bodies(connection, snapshot.number, &[hit])?
            .remove(&hit.sequence)
            .map(String::into_bytes),
        false => None,
    };
    let body = match erased {
        Some(body) => body,
        None => {
            let record = shared.segments.read_at(hit.position, hit.length as usize)?;
            decode_event(&record)
                .map_err(|e| StoreError::Corrupt(format!("the record at {}: {e}", hit.position)))?
                .0
                .body
        }
    };
    let Ok(json) = JsonText::parse(&body) else {
        return Ok(false);
    };
    Ok(NewEvent::read_in(&json, json.json(), "event")
        .is_ok_and(|event| event.search_text().to_lowercase().contains(text)))
}

/// The bodies an erasure gave events among `hits` of organization `number`, by sequence.
fn erased_bodies(
    connection: &Connection,
    number: u32,
    hits: &[Hit],
) -> Result<std::collections::HashMap<u64, String>, StoreError> {
    let (Some(low), Some(high)) = (
        hits.iter().map(|h| h.sequence).min(),
        hits.iter().map(|h| h.sequence).max(),
    ) else {
        return Ok(Default::default());
    };
    Ok(connection
        .prepare_cached(
            "SELECT sequence, body FROM log_erasures
             WHERE organization = ?1 AND sequence >= ?2 AND sequence <= ?3",
        )?
        .query_map(params![number, low as i64, high as i64], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// Reads the records of `hits` (in their order), reading neighbouring records in one go; an
/// event an erasure rewrote (when `erased` names its organization's number) gets its body from
/// `log_erasures`, its old record being zeros.
fn read_hits(
    shared: &Shared,
    connection: &Connection,
    erased: Option<u32>,
    organization_id: &str,
    hits: &[Hit],
) -> Result<Vec<RawEvent>, StoreError> {
    let mut erased = match erased {
        Some(number) => erased_bodies(connection, number, hits)?,
        None => Default::default(),
    };
    /// Records closer than this are read together (one `pread` instead of two).
    const COALESCE_GAP: u64 = 4096;
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by_key(|&i| hits[i].position);
    let mut events: Vec<Option<RawEvent>> = vec![None; hits.len()];
    let mut at = 0;
    while at < order.len() {
        let start = hits[order[at]].position;
        let mut end = start + u64::from(hits[order[at]].length);
        let mut last = at;
        while last + 1 < order.len() {
            let next = hits[order[last + 1]];
            if next.position > end + COALESCE_GAP {
                break;
            }
            end = end.max(next.position + u64::from(next.length));
            last += 1;
        }
        let bytes = shared.segments.read_at(start, (end - start) as usize)?;
        for &index in &order[at..=last] {
            let hit = hits[index];
            let from = (hit.position - start) as usize;
            let (event, _) = decode_event(&bytes[from..from + hit.length as usize])
                .map_err(|e| StoreError::Corrupt(format!("the record at {}: {e}", hit.position)))?;
            let body = match (hit.purged_at, erased.remove(&hit.sequence)) {
                (Some(_), _) => "{}".to_owned(),
                (None, Some(body)) => body,
                (None, None) => String::from_utf8(event.body)
                    .map_err(|_| StoreError::Corrupt(format!("event {} is not UTF-8", event.id)))?,
            };
            events[index] = Some(RawEvent {
                id: event.id,
                organization_id: organization_id.to_owned(),
                sequence: hit.sequence,
                received_at: Timestamp::from_unix_millis(hit.received_at),
                leaf_hash: event.leaf_hash,
                body,
                purged_at: hit.purged_at.map(Timestamp::from_unix_millis),
            });
        }
        at = last + 1;
    }
    Ok(events.into_iter().flatten().collect())
}

/// When retention purged event `sequence` of organization `number`, read from its block.
fn block_purged_at(
    connection: &Connection,
    number: u32,
    sequence: u64,
) -> Result<Option<i64>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT first_sequence, count, locations, occurred, received, purged FROM log_blocks
         WHERE organization = ?1 AND first_sequence <= ?2 ORDER BY first_sequence DESC LIMIT 1",
    )?;
    let mut rows = statement.query(params![number, sequence as i64])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let columns = Columns::from_row(row, 0)?;
    Ok(columns
        .purged
        .get((sequence - columns.first_sequence) as usize)
        .copied()
        .flatten())
}

/// The receipts of `count` events of an organization's log from sequence `first` on (a legacy
/// idempotency record's answer).
pub(crate) fn receipts_between(
    shared: &Shared,
    connection: &Connection,
    organization_id: &str,
    first: u64,
    count: u64,
) -> Result<Vec<Receipt>, StoreError> {
    let (number, open, sealed) = {
        let state = shared.read_state()?;
        let Some(log) = state.logs.get(organization_id) else {
            return Ok(Vec::new());
        };
        let open: Vec<Hit> = log
            .open
            .iter()
            .filter(|e| e.sequence >= first && e.sequence < first + count)
            .map(|event| Hit::of(event))
            .collect();
        (log.number, open, log.sealed)
    };
    let mut hits = Vec::new();
    if first < sealed {
        // Receipts need no bodies: erased ones are not looked up.
        let snapshot = Snapshot {
            number,
            erased: false,
            sealed,
        };
        sealed_hits(
            shared,
            connection,
            &snapshot,
            &EventFilter::default(),
            None,
            (first, (first + count).min(sealed)),
            false,
            count as usize,
            &mut hits,
        )?;
    }
    hits.extend(open);
    Ok(read_hits(shared, connection, None, organization_id, &hits)?
        .into_iter()
        .map(|raw| Receipt {
            id: raw.id,
            sequence: raw.sequence,
            leaf_hash: raw.leaf_hash,
        })
        .collect())
}

/// A block's terms and trigram filter, read from SQLite.
struct SqlTerms<'c> {
    connection: &'c Connection,
    number: u32,
    first: u64,
    rowid: i64,
}

impl Terms for SqlTerms<'_> {
    fn exact(&mut self, field: Field, value: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT postings FROM log_terms
                 WHERE organization = ?1 AND first_sequence = ?2 AND field = ?3 AND value = ?4",
            )?
            .query_row(
                params![self.number, self.first as i64, field.code(), value],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn prefixed(&mut self, field: Field, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT value, postings FROM log_terms
             WHERE organization = ?1 AND first_sequence = ?2 AND field = ?3 AND value >= ?4
             ORDER BY value",
        )?;
        let mut rows = statement.query(params![
            self.number,
            self.first as i64,
            field.code(),
            prefix
        ])?;
        let mut postings = Vec::new();
        while let Some(row) = rows.next()? {
            let value: String = row.get(0)?;
            if !value.starts_with(prefix) {
                break;
            }
            postings.push(row.get(1)?);
        }
        Ok(postings)
    }

    fn text_values(&mut self) -> Result<Vec<u8>, StoreError> {
        Ok(self.connection.query_row(
            "SELECT text_values FROM log_blocks WHERE rowid = ?1",
            [self.rowid],
            |row| row.get(0),
        )?)
    }

    fn may_contain_text(&mut self, text: &str) -> Result<bool, StoreError> {
        if text.contains('\n') {
            return Ok(true);
        }
        let blob = self
            .connection
            .blob_open(MAIN_DB, c"log_blocks", c"bloom", self.rowid, true)?;
        let mut count = [0u8; 4];
        blob.read_at_exact(&mut count, 0)?;
        let blocks = u32::from_le_bytes(count);
        let mut block = [0u8; Bloom::BLOCK_BYTES];
        for key in trigrams_of(text) {
            let at = 4 + Bloom::block_of(key, blocks) as usize * Bloom::BLOCK_BYTES;
            blob.read_at_exact(&mut block, at)?;
            if !Bloom::block_may_contain(&block, key) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// An organization's stored tiles, read from SQLite.
pub(crate) struct SqlTiles<'c> {
    connection: &'c Connection,
    number: u32,
}

impl<'c> SqlTiles<'c> {
    pub(crate) fn new(connection: &'c Connection, number: u32) -> Self {
        SqlTiles { connection, number }
    }
}

impl TileSource for SqlTiles<'_> {
    fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<Hash>>, String> {
        self.connection
            .prepare_cached(
                "SELECT hashes FROM log_tiles WHERE organization = ?1 AND level = ?2 AND idx = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![self.number, level, index as i64], |row| {
                        row.get::<_, Vec<u8>>(0)
                    })
                    .optional()
            })
            .map(|bytes| bytes.map(|bytes| split_hashes(&bytes)))
            .map_err(|e| e.to_string())
    }
}
