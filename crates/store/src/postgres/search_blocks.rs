//! Search on PostgreSQL through blocks built behind the log: the filters' postings and a
//! trigram filter for each block of an organization's events.
//!
//! An index updated inside every append costs an entry (and, for random keys, a page) per event:
//! measured with `pg_waldump`, a pg_trgm GIN index alone was 12.7 KB of WAL an event, and the
//! B-tree indexes on action, actor and time with a table of targets were most of the rest.
//! Instead, each organization's log is cut into blocks of [`BLOCK_EVENTS`] events once they are
//! appended, and each block is written once, in one transaction (`log::block`, the embedded log's
//! block, builds it):
//!
//! - its *terms*: every distinct action, actor id, actor name, target id and target type in it,
//!   each with its postings (the offsets of the events holding it), one `search_block_terms` row
//!   each, the block's rows one contiguous key range;
//! - the range of its events' `occurred_at`, and each one's (a delta-varint column);
//! - a blocked Bloom filter over the trigrams of its events' search text (`crate::trigram`);
//! - its *text values*: every distinct lower-cased value its events' search text is made of,
//!   with the offsets of the events holding each.
//!
//! A search ([`candidates`]) takes from the blocks the events its filters' terms name, only in
//! blocks whose time range and trigram filter allow a match; for free text, the events whose text
//! values contain it ([`narrow_to_text`]); then every event past the last block. Each row read is
//! still checked against the whole filter from its body (`postgres::search`), so the blocks only
//! choose which rows to read: a stale or missing block makes a search slower, never wrong.
//!
//! The blocks are built from the events' bodies (the events table keeps no copies of the fields
//! a filter reads), by the rule that checks a search's rows: [`indexed_event`].
//!
//! Blocks are derived data: [`build_pending`] writes them behind the appends, a block and its
//! organization's `search_block_heads` row advancing in one transaction, and they can be rebuilt
//! from the events at any time. Instances share the work through that row's lock (`SKIP
//! LOCKED`): two never build the same block. When events change (retention purges, erasures),
//! [`rebuild_blocks`] rewrites their blocks in the same transaction, under the same lock, so a
//! block never keeps the terms or trigrams of erased values; each rewrite raises the block's
//! version, which is how the [`BlockCache`]s of every instance see it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::Notify;
use trailmark_domain::query::EventFilter;

use super::pool_error;
use crate::StoreError;
use crate::log::block::{
    BlockRecord, Field, IndexedEvent, OffsetSet, decode_postings, text_value_offsets, undeltas,
};
use crate::trigram;

/// Events a block holds: as many as the embedded log's blocks.
pub(super) const BLOCK_EVENTS: i64 = crate::log::block::BLOCK_MAX_EVENTS as i64;
/// Blocks of one organization built in one round before the next organization's turn.
const BLOCKS_PER_TURN: usize = 16;
/// Trigram filter bytes an instance keeps in memory: about 30 bytes an event, so the filters of
/// some two million events.
const FILTER_CACHE_BYTES: usize = 64 << 20;
/// Text value bytes an instance keeps in memory: about 65 bytes an event with issue 13's
/// realistic event, so the values of some four million events. Scanned in memory, a million
/// events' values take some milliseconds; read from the database for each search, a few hundred.
const TEXT_CACHE_BYTES: usize = 256 << 20;
/// Time column bytes an instance keeps in memory: about 3 bytes an event.
const TIME_CACHE_BYTES: usize = 32 << 20;

/// The block of the events `first … end-1` of `organization_id`'s log, read from their bodies.
async fn block_of_events(
    client: &impl GenericClient,
    organization_id: &str,
    first: i64,
    end: i64,
) -> Result<BlockRecord, StoreError> {
    let rows = client
        .query(
            "SELECT sequence, occurred_at, purged_at, body, id
             FROM events WHERE organization_id = $1 AND sequence >= $2 AND sequence < $3
             ORDER BY sequence",
            &[&organization_id, &first, &end],
        )
        .await?;
    if rows.len() as i64 != end - first {
        return Err(StoreError::Corrupt(format!(
            "{organization_id}'s log lacks events between {first} and {end}"
        )));
    }
    // Parsing a block's bodies is some tens of milliseconds of CPU: off the async threads.
    tokio::task::spawn_blocking(move || {
        let events = rows
            .iter()
            .map(|row| {
                indexed_event(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                )
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(BlockRecord::build(&events))
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("building a search block failed: {e}")))?
}

/// An event as a search sees it, from its stored body, by the embedded log's rule
/// (`log::indexed_from_body`): what blocks are built from and a search's rows are checked with.
/// A purged stub (`{}`) keeps its place and time but nothing it said.
pub(super) fn indexed_event(
    sequence: i64,
    occurred_at: i64,
    purged_at: Option<i64>,
    body: &str,
    id: String,
) -> Result<IndexedEvent, StoreError> {
    if purged_at.is_some() {
        return Ok(IndexedEvent {
            sequence: sequence as u64,
            occurred_at,
            purged_at,
            id,
            ..IndexedEvent::default()
        });
    }
    // Where a record lies is the embedded log's; these blocks never read it.
    crate::log::indexed_from_body(body.as_bytes(), sequence as u64, 0, 0, id, [0; 32], 0)
}

/// Writes the terms of `block`, numbered `number` (`search_blocks.block`), inside the
/// transaction that writes its `search_blocks` row.
async fn insert_terms(
    client: &impl GenericClient,
    number: i64,
    block: &BlockRecord,
) -> Result<(), StoreError> {
    let fields: Vec<i16> = block
        .terms
        .iter()
        .map(|(field, _, _)| field.code() as i16)
        .collect();
    let values: Vec<&str> = block
        .terms
        .iter()
        .map(|(_, value, _)| value.as_str())
        .collect();
    let postings: Vec<&[u8]> = block
        .terms
        .iter()
        .map(|(_, _, postings)| postings.as_slice())
        .collect();
    client
        .execute(
            "INSERT INTO search_block_terms (block, field, value, postings)
             SELECT $1, * FROM UNNEST($2::SMALLINT[], $3::TEXT[], $4::BYTEA[])",
            &[&number, &fields, &values, &postings],
        )
        .await?;
    Ok(())
}

/// Locks `organization_id`'s blocks against [`build_pending`] (creating its head row) until
/// `client`'s transaction ends: taken before events' text changes, then [`rebuild_blocks`].
pub(super) async fn lock(
    client: &impl GenericClient,
    organization_id: &str,
) -> Result<(), StoreError> {
    ensure_head(client, organization_id).await?;
    client
        .execute(
            "SELECT 1 FROM search_block_heads WHERE organization_id = $1 FOR UPDATE",
            &[&organization_id],
        )
        .await?;
    Ok(())
}

/// Creates `organization_id`'s `search_block_heads` row (no blocks yet) unless it exists. An
/// existing row is seen without inserting: `ON CONFLICT` alone waits for a transaction that
/// updated the row (another instance building a block), which `build_next` means to skip.
async fn ensure_head(client: &impl GenericClient, organization_id: &str) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO search_block_heads (organization_id, indexed)
             SELECT $1, 0 WHERE NOT EXISTS
                (SELECT 1 FROM search_block_heads WHERE organization_id = $1)
             ON CONFLICT DO NOTHING",
            &[&organization_id],
        )
        .await?;
    Ok(())
}

/// Rewrites, inside `client`'s transaction (which holds [`lock`]), the written blocks that hold
/// any of `sequences`, from their events' current values.
pub(super) async fn rebuild_blocks(
    client: &impl GenericClient,
    organization_id: &str,
    sequences: &[i64],
) -> Result<(), StoreError> {
    let firsts: Vec<i64> = sequences
        .iter()
        .map(|sequence| sequence - sequence.rem_euclid(BLOCK_EVENTS))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let blocks = client
        .query(
            "SELECT first_sequence, end_sequence, block FROM search_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)",
            &[&organization_id, &firsts],
        )
        .await?;
    for block in blocks {
        let (first, end): (i64, i64) = (block.try_get(0)?, block.try_get(1)?);
        let number: i64 = block.try_get(2)?;
        let record = block_of_events(client, organization_id, first, end).await?;
        client
            .execute(
                "UPDATE search_blocks SET bloom = $3, min_occurred = $4, max_occurred = $5,
                    text_values = $6, occurred = $7, version = version + 1
                 WHERE organization_id = $1 AND first_sequence = $2",
                &[
                    &organization_id,
                    &first,
                    &record.bloom,
                    &record.min_occurred,
                    &record.max_occurred,
                    &record.text_values,
                    &record.occurred,
                ],
            )
            .await?;
        client
            .execute(
                "DELETE FROM search_block_terms WHERE block = $1",
                &[&number],
            )
            .await?;
        insert_terms(client, number, &record).await?;
    }
    Ok(())
}

/// Builds the blocks of every organization whose log has grown by a whole block past them
/// (at most [`BLOCKS_PER_TURN`] an organization); returns how many blocks it wrote.
pub(super) async fn build_pending(pool: &Pool) -> Result<usize, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let behind = client
        .query(
            "SELECT h.organization_id, h.size, COALESCE(t.indexed, 0) FROM log_heads h
             LEFT JOIN search_block_heads t ON t.organization_id = h.organization_id
             WHERE h.size - COALESCE(t.indexed, 0) >= $1",
            &[&BLOCK_EVENTS],
        )
        .await?;
    let mut built = 0;
    for row in behind {
        let organization_id: String = row.try_get(0)?;
        let (size, indexed): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        let waiting = (size - indexed) / BLOCK_EVENTS;
        if waiting > BLOCKS_PER_TURN as i64 {
            // A log written before these filters existed, or a long outage: say how far along.
            tracing::info!(
                organization_id,
                indexed,
                size,
                "building search blocks for earlier events"
            );
        }
        for _ in 0..BLOCKS_PER_TURN {
            if !build_next(&mut client, &organization_id).await? {
                break;
            }
            built += 1;
        }
    }
    Ok(built)
}

/// Builds the next block of `organization_id` if its log holds one and no other instance is
/// building it; whether it did.
async fn build_next(
    client: &mut deadpool_postgres::Object,
    organization_id: &str,
) -> Result<bool, StoreError> {
    let transaction = client.transaction().await?;
    ensure_head(&transaction, organization_id).await?;
    let Some(head) = transaction
        .query_opt(
            "SELECT t.indexed, h.size FROM search_block_heads t
             JOIN log_heads h ON h.organization_id = t.organization_id
             WHERE t.organization_id = $1 FOR UPDATE OF t SKIP LOCKED",
            &[&organization_id],
        )
        .await?
    else {
        return Ok(false);
    };
    let (indexed, size): (i64, i64) = (head.try_get(0)?, head.try_get(1)?);
    if size - indexed < BLOCK_EVENTS {
        // Released now, rather than when a dropped transaction's ROLLBACK reaches the server.
        transaction.rollback().await?;
        return Ok(false);
    }
    let end = indexed + BLOCK_EVENTS;
    let record = block_of_events(&transaction, organization_id, indexed, end).await?;
    let number: i64 = transaction
        .query_one(
            "INSERT INTO search_blocks (organization_id, first_sequence, end_sequence, version, bloom,
                min_occurred, max_occurred, text_values, occurred)
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8) RETURNING block",
            &[
                &organization_id,
                &indexed,
                &end,
                &record.bloom,
                &record.min_occurred,
                &record.max_occurred,
                &record.text_values,
                &record.occurred,
            ],
        )
        .await?
        .try_get(0)?;
    insert_terms(&transaction, number, &record).await?;
    transaction
        .execute(
            "UPDATE search_block_heads SET indexed = $2 WHERE organization_id = $1",
            &[&organization_id, &end],
        )
        .await?;
    transaction.commit().await?;
    Ok(true)
}

/// How often an instance looks for logs grown by a whole block: a search reads the events past
/// the last block row by row, so this bounds them to a block and a second of appends.
const BUILD_EVERY: Duration = Duration::from_secs(1);

/// The task that runs [`build_pending`] every [`BUILD_EVERY`]; it stops when the last clone of
/// its store (which holds this) is dropped.
pub(super) struct Builder {
    stop: Arc<Notify>,
}

impl Builder {
    pub(super) fn start(pool: Pool) -> Self {
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(BUILD_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.notified() => return,
                    _ = every.tick() => {}
                }
                if let Err(error) = build_pending(&pool).await {
                    tracing::warn!(%error, "building search blocks failed; retrying");
                }
            }
        });
        Builder { stop }
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // notify_one keeps the permit if the task is busy building: it stops at its next wait.
        self.stop.notify_one();
    }
}

/// The parts of blocks an instance has read and keeps in memory, each by organization and first
/// sequence with the version it was read at: a block changes only through [`rebuild_blocks`],
/// which raises its version.
pub(super) struct BlockCache {
    filters: PartCache,
    text_values: PartCache,
    times: PartCache,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            filters: PartCache::new(Part::Filter, FILTER_CACHE_BYTES),
            text_values: PartCache::new(Part::TextValues, TEXT_CACHE_BYTES),
            times: PartCache::new(Part::Times, TIME_CACHE_BYTES),
        }
    }
}

/// A part of a block a search may read.
#[derive(Clone, Copy)]
enum Part {
    /// The trigram filter.
    Filter,
    /// The text values (`log::block`'s encoding).
    TextValues,
    /// Each event's `occurred_at`, as delta varints.
    Times,
}

impl Part {
    fn column(self) -> &'static str {
        match self {
            Part::Filter => "bloom",
            Part::TextValues => "text_values",
            Part::Times => "occurred",
        }
    }
}

/// A block: its organization and first sequence.
type BlockKey = (String, i64);
/// A part as read: its block's version and its bytes.
type Versioned = (i64, Arc<Vec<u8>>);

/// One part of many blocks, in memory up to a number of bytes.
struct PartCache {
    part: Part,
    budget: usize,
    cached: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    by_block: HashMap<BlockKey, Versioned>,
    bytes: usize,
}

impl PartCache {
    fn new(part: Part, budget: usize) -> Self {
        PartCache {
            part,
            budget,
            cached: Mutex::default(),
        }
    }

    fn get(&self, organization_id: &str, first: i64, version: i64) -> Option<Arc<Vec<u8>>> {
        let cached = self.cached.lock().ok()?;
        cached
            .by_block
            .get(&(organization_id.to_owned(), first))
            .filter(|(read_at, _)| *read_at == version)
            .map(|(_, bytes)| Arc::clone(bytes))
    }

    /// Whether another block's part may be kept.
    fn has_room(&self) -> bool {
        self.cached
            .lock()
            .is_ok_and(|cached| cached.bytes < self.budget)
    }

    /// Keeps `bytes` as the part of the block at `version`, unless the budget is spent: what is
    /// kept stays, and searches read the rest from the database, rather than each search
    /// evicting what the one before read.
    fn put(&self, organization_id: &str, first: i64, version: i64, bytes: Arc<Vec<u8>>) {
        let Ok(mut cached) = self.cached.lock() else {
            return;
        };
        let key = (organization_id.to_owned(), first);
        let replaced = cached.by_block.get(&key).map_or(0, |(_, old)| old.len());
        if cached.bytes - replaced + bytes.len() > self.budget {
            return;
        }
        cached.bytes = cached.bytes - replaced + bytes.len();
        cached.by_block.insert(key, (version, bytes));
    }

    /// This part of each of `blocks` (each its first sequence and version), from memory or, for
    /// those it lacks, one query; `None` for a block that is gone.
    async fn read(
        &self,
        client: &tokio_postgres::Client,
        organization_id: &str,
        blocks: &[(i64, i64)],
    ) -> Result<Vec<Option<Arc<Vec<u8>>>>, StoreError> {
        let mut parts: Vec<Option<Arc<Vec<u8>>>> = blocks
            .iter()
            .map(|&(first, version)| self.get(organization_id, first, version))
            .collect();
        let missing: HashMap<i64, usize> = blocks
            .iter()
            .zip(&parts)
            .enumerate()
            .filter(|(_, (_, part))| part.is_none())
            .map(|(at, ((first, _), _))| (*first, at))
            .collect();
        if missing.is_empty() {
            return Ok(parts);
        }
        let firsts: Vec<i64> = missing.keys().copied().collect();
        let query = format!(
            "SELECT first_sequence, version, {} FROM search_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)",
            self.part.column()
        );
        for row in client.query(&query, &[&organization_id, &firsts]).await? {
            let (first, version): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            let bytes = Arc::new(row.try_get::<_, Vec<u8>>(2)?);
            self.put(organization_id, first, version, Arc::clone(&bytes));
            if let Some(&at) = missing.get(&first) {
                parts[at] = Some(bytes);
            }
        }
        Ok(parts)
    }
}

/// Which of an organization's events a search must read.
#[derive(Debug, PartialEq)]
pub(super) enum Candidates {
    /// The blocks rule nothing out.
    Everything,
    /// The events these blocks name (ascending), then every event from `tail` on.
    Blocks {
        blocks: Vec<BlockCandidates>,
        tail: i64,
    },
}

/// A block that may hold matches, and the events in it a search must read.
#[derive(Debug, PartialEq)]
pub(super) struct BlockCandidates {
    first: i64,
    version: i64,
    offsets: OffsetSet,
}

impl BlockCandidates {
    /// The candidates' sequences, ascending.
    pub(super) fn sequences(&self) -> Vec<i64> {
        self.offsets
            .offsets()
            .into_iter()
            .map(|offset| self.first + i64::from(offset))
            .collect()
    }
}

/// A block as a search sees it before reading its terms or filter.
struct BlockHead {
    /// Its number (`search_blocks.block`), by which its terms are keyed.
    number: i64,
    first: i64,
    end: i64,
    version: i64,
    min_occurred: i64,
    max_occurred: i64,
}

impl BlockHead {
    /// Its first sequence and version, by which its parts are cached.
    fn key(&self) -> (i64, i64) {
        (self.first, self.version)
    }
}

/// The events of `organization_id`'s log a search with `filter` must read (`text`, its free
/// text, lower-cased): from the blocks, the events their time columns and term postings name,
/// in the blocks whose trigram filter allows the text (which [`narrow_to_text`] then narrows
/// further, a few blocks at a time); then every event past the last block.
pub(super) async fn candidates(
    client: &tokio_postgres::Client,
    cache: &BlockCache,
    organization_id: &str,
    filter: &EventFilter,
    text: Option<&str>,
) -> Result<Candidates, StoreError> {
    // Text spanning lines, or shorter than a trigram, has no trigrams to rule a block out by.
    let trigrams = text
        .filter(|text| !text.contains('\n'))
        .map(trigram::trigrams_of)
        .filter(|keys| !keys.is_empty());
    let terms = term_fields(filter);
    let timed = filter.range_start.is_some() || filter.range_end.is_some();
    if terms.is_empty() && text.is_none() && !timed {
        return Ok(Candidates::Everything);
    }
    let mut blocks: Vec<BlockHead> = client
        .query(
            "SELECT first_sequence, end_sequence, version, min_occurred, max_occurred, block
             FROM search_blocks WHERE organization_id = $1 ORDER BY first_sequence",
            &[&organization_id],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(BlockHead {
                first: row.try_get(0)?,
                end: row.try_get(1)?,
                version: row.try_get(2)?,
                min_occurred: row.try_get(3)?,
                max_occurred: row.try_get(4)?,
                number: row.try_get(5)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let tail = blocks.last().map_or(0, |block| block.end);
    let (start, end) = (
        filter.range_start.map_or(i64::MIN, |t| t.unix_millis()),
        filter.range_end.map_or(i64::MAX, |t| t.unix_millis()),
    );
    blocks.retain(|block| block.max_occurred >= start && block.min_occurred <= end);
    if let Some(trigrams) = &trigrams {
        let keys: Vec<(i64, i64)> = blocks.iter().map(BlockHead::key).collect();
        let filters = cache.filters.read(client, organization_id, &keys).await?;
        let mut filters = filters.into_iter();
        // A filter not read (its block gone between the two queries) keeps its block: never wrong.
        blocks.retain(|_| {
            filters
                .next()
                .flatten()
                .is_none_or(|bloom| trigram::may_contain_all(&bloom, trigrams))
        });
    }
    // The events of each block in the time range: all of them in a block wholly inside it.
    let mut candidates: Vec<BlockCandidates> = blocks
        .iter()
        .map(|block| BlockCandidates {
            first: block.first,
            version: block.version,
            offsets: OffsetSet::all((block.end - block.first) as usize),
        })
        .collect();
    if timed {
        let straddling: Vec<&BlockHead> = blocks
            .iter()
            .filter(|block| block.min_occurred < start || block.max_occurred > end)
            .collect();
        let keys: Vec<(i64, i64)> = straddling.iter().map(|block| block.key()).collect();
        let columns = cache.times.read(client, organization_id, &keys).await?;
        let mut in_range: HashMap<i64, OffsetSet> = HashMap::new();
        for (block, column) in straddling.iter().zip(columns) {
            // A column not read (its block gone meanwhile) leaves every event a candidate.
            let Some(column) = column else { continue };
            let count = (block.end - block.first) as usize;
            let times = undeltas(&column, count).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the times of block {} of {organization_id}",
                    block.first
                ))
            })?;
            let mut offsets = OffsetSet::none(count);
            for (offset, occurred) in times.into_iter().enumerate() {
                if occurred >= start && occurred <= end {
                    offsets.insert(offset as u16);
                }
            }
            in_range.insert(block.first, offsets);
        }
        for block in &mut candidates {
            if let Some(offsets) = in_range.get(&block.first) {
                block.offsets.intersect(offsets);
            }
        }
    }
    // Each field's values name some events of some blocks; a candidate is named by every field.
    // Blocks are known by number here, as their terms are keyed.
    let numbers: HashMap<i64, i64> = blocks
        .iter()
        .map(|block| (block.first, block.number))
        .collect();
    for (field, lookups) in terms {
        candidates.retain(|block| !block.offsets.is_empty());
        let wanted: Vec<i64> = candidates
            .iter()
            .filter_map(|block| numbers.get(&block.first).copied())
            .collect();
        let mut named: HashMap<i64, OffsetSet> = HashMap::new();
        for lookup in lookups {
            for row in lookup.rows(client, &wanted, field).await? {
                let number: i64 = row.try_get(0)?;
                let offsets = decode_postings(row.try_get(1)?).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the postings of block {number} of {organization_id}"
                    ))
                })?;
                let set = named
                    .entry(number)
                    .or_insert_with(|| OffsetSet::none(BLOCK_EVENTS as usize));
                for offset in offsets {
                    set.insert(offset);
                }
            }
        }
        for block in &mut candidates {
            match numbers
                .get(&block.first)
                .and_then(|number| named.get(number))
            {
                Some(offsets) => block.offsets.intersect(offsets),
                None => block.offsets = OffsetSet::none(BLOCK_EVENTS as usize),
            }
        }
    }
    candidates.retain(|block| !block.offsets.is_empty());
    Ok(Candidates::Blocks {
        blocks: candidates,
        tail,
    })
}

/// Narrows each of `blocks` to the events whose text values contain `text` (lower-cased),
/// scanned in memory: read whole (and kept) while the cache has room; once it has none, those it
/// lacks only from the blocks whose stored bytes hold `text` (tested in SQL). A block none of
/// whose events holds it is left with no candidates.
///
/// Text spanning lines, or empty, is left to each row's check: no one value holds it.
pub(super) async fn narrow_to_text(
    client: &tokio_postgres::Client,
    cache: &BlockCache,
    organization_id: &str,
    blocks: &mut [BlockCandidates],
    text: &str,
) -> Result<(), StoreError> {
    if text.is_empty() || text.contains('\n') {
        return Ok(());
    }
    let holding = |first: i64, values: &[u8]| {
        text_value_offsets(values, text, BLOCK_EVENTS as usize).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the text values of block {first} of {organization_id}"
            ))
        })
    };
    if cache.text_values.has_room() {
        // Read whole and kept: later searches scan them in memory.
        let keys: Vec<(i64, i64)> = blocks.iter().map(|b| (b.first, b.version)).collect();
        let values = cache
            .text_values
            .read(client, organization_id, &keys)
            .await?;
        for (block, values) in blocks.iter_mut().zip(values) {
            // A block gone meanwhile keeps its candidates: never wrong.
            if let Some(values) = values {
                block.offsets.intersect(&holding(block.first, &values)?);
            }
        }
        return Ok(());
    }
    // The cache is full: what it holds is scanned in memory, and of the rest only the blocks
    // whose stored values hold the text (tested in SQL) are read.
    let mut uncached: HashMap<i64, usize> = HashMap::new();
    for (at, block) in blocks.iter_mut().enumerate() {
        match cache
            .text_values
            .get(organization_id, block.first, block.version)
        {
            Some(values) => block.offsets.intersect(&holding(block.first, &values)?),
            None => {
                uncached.insert(block.first, at);
            }
        }
    }
    if uncached.is_empty() {
        return Ok(());
    }
    let firsts: Vec<i64> = uncached.keys().copied().collect();
    for row in client
        .query(
            "SELECT first_sequence, text_values FROM search_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)
               AND position($3::BYTEA IN text_values) > 0",
            &[&organization_id, &firsts, &text.as_bytes()],
        )
        .await?
    {
        let first: i64 = row.try_get(0)?;
        if let Some(at) = uncached.remove(&first) {
            blocks[at]
                .offsets
                .intersect(&holding(first, row.try_get(1)?)?);
        }
    }
    // The blocks left lack the text.
    for at in uncached.into_values() {
        blocks[at].offsets = OffsetSet::none(BLOCK_EVENTS as usize);
    }
    Ok(())
}

/// How a search names the terms of one field.
enum Lookup<'a> {
    /// Any of these values.
    Exact(Vec<&'a str>),
    /// Any value starting with this.
    Prefix(&'a str),
}

impl Lookup<'_> {
    /// The `(block, postings)` of the terms in the blocks numbered `numbers` that match.
    async fn rows(
        &self,
        client: &tokio_postgres::Client,
        numbers: &[i64],
        field: Field,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let field = field.code() as i16;
        Ok(match self {
            Lookup::Exact(values) => {
                client
                    .query(
                        "SELECT block, postings FROM search_block_terms
                         WHERE block = ANY($1) AND field = $2 AND value = ANY($3)",
                        &[&numbers, &field, values],
                    )
                    .await?
            }
            Lookup::Prefix(prefix) => {
                // A byte-order range (the column is COLLATE "C"), case-sensitive as the
                // embedded log's prefix match.
                let high = format!("{prefix}\u{10FFFF}");
                client
                    .query(
                        "SELECT block, postings FROM search_block_terms
                         WHERE block = ANY($1) AND field = $2 AND value >= $3 AND value < $4",
                        &[&numbers, &field, prefix, &high],
                    )
                    .await?
            }
        })
    }
}

/// The fields `filter` names values of, each with how it names them.
fn term_fields(filter: &EventFilter) -> Vec<(Field, Vec<Lookup<'_>>)> {
    let mut fields = Vec::new();
    for (field, values) in [
        (Field::ActorId, &filter.actor_ids),
        (Field::ActorName, &filter.actor_names),
        (Field::TargetId, &filter.target_ids),
        (Field::TargetType, &filter.target_types),
    ] {
        if !values.is_empty() {
            let values = values.iter().map(String::as_str).collect();
            fields.push((field, vec![Lookup::Exact(values)]));
        }
    }
    if !filter.actions.is_empty() {
        let mut lookups = Vec::new();
        let exact = filter.exact_actions();
        if !exact.is_empty() {
            lookups.push(Lookup::Exact(exact));
        }
        lookups.extend(filter.action_prefixes().map(Lookup::Prefix));
        fields.push((Field::Action, lookups));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_part_cache_keeps_what_it_has_and_replaces_a_block_in_place() {
        let cache = PartCache::new(Part::TextValues, 10);
        cache.put("org", 0, 1, Arc::new(vec![0; 6]));
        cache.put("org", 4096, 1, Arc::new(vec![0; 6]));
        assert!(cache.get("org", 0, 1).is_some());
        assert!(
            cache.get("org", 4096, 1).is_none(),
            "over the budget: not kept"
        );
        assert!(
            cache.get("org", 0, 2).is_none(),
            "a version read later is not the one kept"
        );
        cache.put("org", 0, 2, Arc::new(vec![0; 9]));
        assert_eq!(cache.get("org", 0, 2).map(|bytes| bytes.len()), Some(9));
        assert!(cache.get("org", 0, 1).is_none(), "replaced");
        assert!(cache.has_room());
        cache.put("other", 0, 1, Arc::new(vec![0; 1]));
        assert!(cache.get("other", 0, 1).is_some());
        assert!(!cache.has_room());
    }
}
