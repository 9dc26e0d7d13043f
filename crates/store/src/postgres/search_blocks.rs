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
//! - the range of its events' `occurred_at`;
//! - a blocked Bloom filter over the trigrams of its events' search text (`crate::trigram`).
//!
//! A search ([`candidates`]) takes from the blocks the events its filters' terms name, only in
//! blocks whose time range and trigram filter allow a match, and reads every event past the last
//! block. Each row read is still checked against every condition in SQL, so the blocks only
//! choose which rows to read: a stale or missing block makes a search slower, never wrong.
//!
//! Blocks are derived data: [`build_pending`] writes them behind the appends, a block and its
//! organization's `search_block_heads` row advancing in one transaction, and they can be rebuilt
//! from the events at any time. Instances share the work through that row's lock (`SKIP
//! LOCKED`): two never build the same block. When events change (retention purges, erasures),
//! [`rebuild_blocks`] rewrites their blocks in the same transaction, under the same lock, so a
//! block never keeps the terms or trigrams of erased values; each rewrite raises the block's
//! version, which is how [`FilterCache`]s on every instance see it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::Notify;
use trailmark_domain::query::EventFilter;

use super::pool_error;
use crate::StoreError;
use crate::log::block::{BlockRecord, Field, IndexedEvent, OffsetSet, decode_postings};
use crate::trigram;

/// Events a block holds: as many as the embedded log's blocks.
pub(super) const BLOCK_EVENTS: i64 = crate::log::block::BLOCK_MAX_EVENTS as i64;
/// Blocks of one organization built in one round before the next organization's turn.
const BLOCKS_PER_TURN: usize = 16;
/// Filter bytes an instance keeps in memory: about 30 bytes an event, so the filters of some
/// two million events.
const CACHE_BYTES: usize = 64 << 20;
/// A search lists at most this many ranges of candidate blocks; closer ranges are joined.
const MAX_RANGES: usize = 32;

/// The block of the events `first … end-1` of `organization_id`'s log, read from them.
async fn block_of_events(
    client: &impl GenericClient,
    organization_id: &str,
    first: i64,
    end: i64,
) -> Result<BlockRecord, StoreError> {
    let rows = client
        .query(
            "SELECT sequence, occurred_at, action, actor_id, actor_name, target_ids, target_types,
                search_text, purged_at
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
    let events = rows
        .iter()
        .map(|row| {
            let ids: Vec<String> = row.try_get(5)?;
            let types: Vec<String> = row.try_get(6)?;
            Ok(IndexedEvent {
                sequence: row.try_get::<_, i64>(0)? as u64,
                // Where a record lies is the embedded log's; these blocks never read it.
                position: 0,
                length: 0,
                id: String::new(),
                leaf_hash: [0; 32],
                received_at: 0,
                occurred_at: row.try_get(1)?,
                action: row.try_get(2)?,
                actor_id: row.try_get(3)?,
                actor_name: row.try_get(4)?,
                targets: ids.into_iter().zip(types).collect(),
                text: row.try_get(7)?,
                purged_at: row.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(BlockRecord::build(&events))
}

/// Writes `block`'s terms, inside the transaction that writes its `search_blocks` row.
async fn insert_terms(
    client: &impl GenericClient,
    organization_id: &str,
    first: i64,
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
            "INSERT INTO search_block_terms (organization_id, first_sequence, field, value, postings)
             SELECT $1, $2, * FROM UNNEST($3::SMALLINT[], $4::TEXT[], $5::BYTEA[])",
            &[&organization_id, &first, &fields, &values, &postings],
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

/// Creates `organization_id`'s `search_block_heads` row (no blocks yet) unless it exists.
async fn ensure_head(client: &impl GenericClient, organization_id: &str) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO search_block_heads (organization_id, indexed) VALUES ($1, 0)
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
            "SELECT first_sequence, end_sequence FROM search_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)",
            &[&organization_id, &firsts],
        )
        .await?;
    for block in blocks {
        let (first, end): (i64, i64) = (block.try_get(0)?, block.try_get(1)?);
        let record = block_of_events(client, organization_id, first, end).await?;
        client
            .execute(
                "UPDATE search_blocks SET bloom = $3, min_occurred = $4, max_occurred = $5,
                    version = version + 1
                 WHERE organization_id = $1 AND first_sequence = $2",
                &[
                    &organization_id,
                    &first,
                    &record.bloom,
                    &record.min_occurred,
                    &record.max_occurred,
                ],
            )
            .await?;
        client
            .execute(
                "DELETE FROM search_block_terms WHERE organization_id = $1 AND first_sequence = $2",
                &[&organization_id, &first],
            )
            .await?;
        insert_terms(client, organization_id, first, &record).await?;
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
    transaction
        .execute(
            "INSERT INTO search_blocks (organization_id, first_sequence, end_sequence, version, bloom,
                min_occurred, max_occurred)
             VALUES ($1, $2, $3, 1, $4, $5, $6)",
            &[
                &organization_id,
                &indexed,
                &end,
                &record.bloom,
                &record.min_occurred,
                &record.max_occurred,
            ],
        )
        .await?;
    insert_terms(&transaction, organization_id, indexed, &record).await?;
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

/// Block filters an instance has read, by organization and first sequence, with the version
/// each was read at. Filters change only through [`rebuild_blocks`], which raises the version.
#[derive(Default)]
pub(super) struct FilterCache {
    filters: Mutex<CachedFilters>,
}

/// A block: its organization and first sequence.
type BlockKey = (String, i64);
/// A filter as read: its version and bytes.
type Versioned = (i64, Arc<Vec<u8>>);

#[derive(Default)]
struct CachedFilters {
    by_block: HashMap<BlockKey, Versioned>,
    bytes: usize,
}

impl FilterCache {
    fn get(&self, organization_id: &str, first: i64, version: i64) -> Option<Arc<Vec<u8>>> {
        let filters = self.filters.lock().ok()?;
        filters
            .by_block
            .get(&(organization_id.to_owned(), first))
            .filter(|(cached, _)| *cached == version)
            .map(|(_, bloom)| Arc::clone(bloom))
    }

    fn put(&self, organization_id: &str, first: i64, version: i64, bloom: Arc<Vec<u8>>) {
        let Ok(mut filters) = self.filters.lock() else {
            return;
        };
        if filters.bytes + bloom.len() > CACHE_BYTES {
            // Whole-cache eviction: simple, and a search reads the filters it needs back in
            // one query.
            filters.by_block.clear();
            filters.bytes = 0;
        }
        filters.bytes += bloom.len();
        if let Some((_, old)) = filters
            .by_block
            .insert((organization_id.to_owned(), first), (version, bloom))
        {
            filters.bytes -= old.len();
        }
    }
}

/// Which of an organization's events a search must read.
#[derive(Debug, PartialEq)]
pub(super) enum Candidates {
    /// The blocks rule nothing out.
    Everything,
    /// The events in these sequence ranges (`[start, end)`, ascending), the last running past
    /// the end of the log.
    Ranges(Vec<(i64, i64)>),
    /// These events of the blocks (ascending), then every event from `tail` on.
    Sequences { sequences: Vec<i64>, tail: i64 },
}

/// A block as a search sees it before reading its terms or filter.
struct BlockHead {
    first: i64,
    end: i64,
    version: i64,
    min_occurred: i64,
    max_occurred: i64,
}

/// The events of `organization_id`'s log a search with `filter` must read (`text`, its free
/// text as stored: lower-cased, without NUL).
pub(super) async fn candidates(
    client: &tokio_postgres::Client,
    cache: &FilterCache,
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
    if terms.is_empty() && trigrams.is_none() && !timed {
        return Ok(Candidates::Everything);
    }
    let mut blocks: Vec<BlockHead> = client
        .query(
            "SELECT first_sequence, end_sequence, version, min_occurred, max_occurred
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
        let filters = filters_of(client, cache, organization_id, &blocks).await?;
        let mut filters = filters.into_iter();
        // A filter not read (its block gone between the two queries) keeps its block: never wrong.
        blocks.retain(|_| {
            filters
                .next()
                .flatten()
                .is_none_or(|bloom| trigram::may_contain_all(&bloom, trigrams))
        });
    }
    if terms.is_empty() {
        let mut ranges = Vec::new();
        for block in &blocks {
            push_range(&mut ranges, block.first, block.end);
        }
        push_range(&mut ranges, tail, i64::MAX);
        return Ok(Candidates::Ranges(joined(ranges, MAX_RANGES)));
    }
    // Each field's values name some events of some blocks; a candidate is named by every field.
    let mut chosen: Option<HashMap<i64, OffsetSet>> = None;
    for (field, lookups) in terms {
        let firsts: Vec<i64> = match &chosen {
            None => blocks.iter().map(|block| block.first).collect(),
            Some(chosen) => chosen.keys().copied().collect(),
        };
        let mut named: HashMap<i64, OffsetSet> = HashMap::new();
        for lookup in lookups {
            for row in lookup.rows(client, organization_id, &firsts, field).await? {
                let first: i64 = row.try_get(0)?;
                let offsets = decode_postings(row.try_get(1)?).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the postings of block {first} of {organization_id}"
                    ))
                })?;
                let set = named
                    .entry(first)
                    .or_insert_with(|| OffsetSet::none(BLOCK_EVENTS as usize));
                for offset in offsets {
                    set.insert(offset);
                }
            }
        }
        chosen = Some(match chosen {
            None => named,
            Some(mut chosen) => {
                chosen.retain(|first, set| {
                    named.get(first).is_some_and(|other| {
                        set.intersect(other);
                        !set.is_empty()
                    })
                });
                chosen
            }
        });
    }
    let mut chosen: Vec<(i64, OffsetSet)> = chosen.unwrap_or_default().into_iter().collect();
    chosen.sort_unstable_by_key(|(first, _)| *first);
    let sequences = chosen
        .iter()
        .flat_map(|(first, set)| set.offsets().into_iter().map(move |o| first + i64::from(o)))
        .collect();
    Ok(Candidates::Sequences { sequences, tail })
}

/// How a search names the terms of one field.
enum Lookup<'a> {
    /// Any of these values.
    Exact(Vec<&'a str>),
    /// Any value starting with this.
    Prefix(&'a str),
}

impl Lookup<'_> {
    /// The `(first_sequence, postings)` of the terms in the blocks `firsts` that match.
    async fn rows(
        &self,
        client: &tokio_postgres::Client,
        organization_id: &str,
        firsts: &[i64],
        field: Field,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let field = field.code() as i16;
        Ok(match self {
            Lookup::Exact(values) => {
                client
                    .query(
                        "SELECT first_sequence, postings FROM search_block_terms
                         WHERE organization_id = $1 AND first_sequence = ANY($2) AND field = $3
                           AND value = ANY($4)",
                        &[&organization_id, &firsts, &field, values],
                    )
                    .await?
            }
            Lookup::Prefix(prefix) => {
                // A byte-order range (the column is COLLATE "C"), case-sensitive as the
                // embedded log's prefix match.
                let high = format!("{prefix}\u{10FFFF}");
                client
                    .query(
                        "SELECT first_sequence, postings FROM search_block_terms
                         WHERE organization_id = $1 AND first_sequence = ANY($2) AND field = $3
                           AND value >= $4 AND value < $5",
                        &[&organization_id, &firsts, &field, prefix, &high],
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

/// The trigram filter of each of `blocks`, from the cache or, for those it lacks, one query;
/// `None` for a block whose filter is gone.
async fn filters_of(
    client: &tokio_postgres::Client,
    cache: &FilterCache,
    organization_id: &str,
    blocks: &[BlockHead],
) -> Result<Vec<Option<Arc<Vec<u8>>>>, StoreError> {
    let mut filters: Vec<Option<Arc<Vec<u8>>>> = blocks
        .iter()
        .map(|block| cache.get(organization_id, block.first, block.version))
        .collect();
    let missing: HashMap<i64, usize> = blocks
        .iter()
        .zip(&filters)
        .enumerate()
        .filter(|(_, (_, filter))| filter.is_none())
        .map(|(at, (block, _))| (block.first, at))
        .collect();
    if missing.is_empty() {
        return Ok(filters);
    }
    let firsts: Vec<i64> = missing.keys().copied().collect();
    for row in client
        .query(
            "SELECT first_sequence, version, bloom FROM search_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)",
            &[&organization_id, &firsts],
        )
        .await?
    {
        let (first, version): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let bloom = Arc::new(row.try_get::<_, Vec<u8>>(2)?);
        cache.put(organization_id, first, version, Arc::clone(&bloom));
        if let Some(&at) = missing.get(&first) {
            filters[at] = Some(bloom);
        }
    }
    Ok(filters)
}

/// Appends `[start, end)` to `ranges`, extending the last range when they touch.
fn push_range(ranges: &mut Vec<(i64, i64)>, start: i64, end: i64) {
    match ranges.last_mut() {
        Some(last) if last.1 == start => last.1 = end,
        _ => ranges.push((start, end)),
    }
}

/// `ranges` (sorted, disjoint) cut to at most `max` by joining the ranges with the smallest
/// gaps between them: a search then reads a little more, never less.
fn joined(mut ranges: Vec<(i64, i64)>, max: usize) -> Vec<(i64, i64)> {
    while ranges.len() > max.max(1) {
        let Some(at) = (1..ranges.len()).min_by_key(|&i| ranges[i].0 - ranges[i - 1].1) else {
            break;
        };
        ranges[at - 1].1 = ranges[at].1;
        ranges.remove(at);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_ranges_become_one() {
        let mut ranges = Vec::new();
        push_range(&mut ranges, 0, 4096);
        push_range(&mut ranges, 4096, 8192);
        push_range(&mut ranges, 12288, 16384);
        assert_eq!(ranges, vec![(0, 8192), (12288, 16384)]);
    }

    #[test]
    fn too_many_ranges_are_joined_across_the_smallest_gaps() {
        let ranges = vec![(0, 10), (12, 20), (100, 110), (111, 120), (500, 510)];
        assert_eq!(
            joined(ranges.clone(), 3),
            vec![(0, 20), (100, 120), (500, 510)]
        );
        assert_eq!(joined(ranges.clone(), 1), vec![(0, 510)]);
        assert_eq!(joined(ranges.clone(), 10), ranges);
    }
}
