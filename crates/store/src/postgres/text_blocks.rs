//! Free-text search on PostgreSQL through trigram filters built behind the log.
//!
//! A pg_trgm GIN index is updated inside every append, a few hundred index entries an event:
//! measured with `pg_waldump`, 12.7 KB of WAL an event, 87% of an append's. Instead, each
//! organization's log is cut into blocks of [`BLOCK_EVENTS`] events once they are appended, and
//! each block gets one blocked Bloom filter over the trigrams of its events' search text
//! (`crate::trigram`, the filter the embedded log keeps per block too). A `q` search reads only
//! the blocks whose filter may hold every trigram of its text, and the events past the last
//! block; each row's text is still matched with `LIKE`, so the filters only prune.
//!
//! Filters are derived data: [`build_pending`] writes them behind the appends, a block and its
//! organization's `text_block_heads` row advancing in one transaction, and they can be rebuilt
//! from the events at any time. Instances share the work through that row's lock (`SKIP
//! LOCKED`): two never build the same block. When events' text changes (retention purges,
//! erasures), [`rebuild_blocks`] rewrites their blocks' filters in the same transaction, under
//! the same lock, so a filter never keeps the trigrams of erased text; each rewrite raises the
//! block's version, which is how [`FilterCache`]s on every instance see it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::Notify;

use super::pool_error;
use crate::StoreError;
use crate::trigram::{self, Bloom, for_each_trigram};

/// Events a block holds. The embedded log's blocks hold as many.
pub(super) const BLOCK_EVENTS: i64 = 4_096;
/// Blocks of one organization built in one round before the next organization's turn.
const BLOCKS_PER_TURN: usize = 16;
/// Filter bytes an instance keeps in memory: about 30 bytes an event, so the filters of some
/// two million events.
const CACHE_BYTES: usize = 64 << 20;
/// A search lists at most this many ranges of candidate blocks; closer ranges are joined.
const MAX_RANGES: usize = 32;

/// A filter over the trigrams of `texts`.
fn filter_of<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut keys = HashSet::new();
    for text in texts {
        for_each_trigram(text, |key| {
            keys.insert(key);
        });
    }
    Bloom::build(keys.len(), keys.into_iter())
}

/// The filter of the events `first … end-1` of `organization_id`'s log, read from them.
async fn filter_of_events(
    client: &impl GenericClient,
    organization_id: &str,
    first: i64,
    end: i64,
) -> Result<Vec<u8>, StoreError> {
    let rows = client
        .query(
            "SELECT search_text FROM events
             WHERE organization_id = $1 AND sequence >= $2 AND sequence < $3",
            &[&organization_id, &first, &end],
        )
        .await?;
    let texts = rows
        .iter()
        .map(|row| row.try_get::<_, &str>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(filter_of(texts.into_iter()))
}

/// Locks `organization_id`'s filters against [`build_pending`] (creating its head row) until
/// `client`'s transaction ends: taken before events' text changes, then [`rebuild_blocks`].
pub(super) async fn lock(
    client: &impl GenericClient,
    organization_id: &str,
) -> Result<(), StoreError> {
    ensure_head(client, organization_id).await?;
    client
        .execute(
            "SELECT 1 FROM text_block_heads WHERE organization_id = $1 FOR UPDATE",
            &[&organization_id],
        )
        .await?;
    Ok(())
}

/// Creates `organization_id`'s `text_block_heads` row (no filters yet) unless it exists.
async fn ensure_head(client: &impl GenericClient, organization_id: &str) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO text_block_heads (organization_id, indexed) VALUES ($1, 0)
             ON CONFLICT DO NOTHING",
            &[&organization_id],
        )
        .await?;
    Ok(())
}

/// Rewrites, inside `client`'s transaction (which holds [`lock`]), the filters of the written
/// blocks that hold any of `sequences`, from their events' current text.
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
            "SELECT first_sequence, end_sequence FROM text_blocks
             WHERE organization_id = $1 AND first_sequence = ANY($2)",
            &[&organization_id, &firsts],
        )
        .await?;
    for block in blocks {
        let (first, end): (i64, i64) = (block.try_get(0)?, block.try_get(1)?);
        let bloom = filter_of_events(client, organization_id, first, end).await?;
        client
            .execute(
                "UPDATE text_blocks SET bloom = $3, version = version + 1
                 WHERE organization_id = $1 AND first_sequence = $2",
                &[&organization_id, &first, &bloom],
            )
            .await?;
    }
    Ok(())
}

/// Builds the filters of every organization whose log has grown by a whole block past them
/// (at most [`BLOCKS_PER_TURN`] an organization); returns how many blocks it wrote.
pub(super) async fn build_pending(pool: &Pool) -> Result<usize, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let behind = client
        .query(
            "SELECT h.organization_id, h.size, COALESCE(t.indexed, 0) FROM log_heads h
             LEFT JOIN text_block_heads t ON t.organization_id = h.organization_id
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
                "building free-text search filters for earlier events"
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
            "SELECT t.indexed, h.size FROM text_block_heads t
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
    let bloom = filter_of_events(&transaction, organization_id, indexed, end).await?;
    transaction
        .execute(
            "INSERT INTO text_blocks (organization_id, first_sequence, end_sequence, version, bloom)
             VALUES ($1, $2, $3, 1, $4)",
            &[&organization_id, &indexed, &end, &bloom],
        )
        .await?;
    transaction
        .execute(
            "UPDATE text_block_heads SET indexed = $2 WHERE organization_id = $1",
            &[&organization_id, &end],
        )
        .await?;
    transaction.commit().await?;
    Ok(true)
}

/// How often an instance looks for logs grown by a whole block: a `q` search reads the events
/// past the last block directly, so this bounds them to a block and a second of appends.
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
                    tracing::warn!(%error, "building free-text search filters failed; retrying");
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

/// The sequence ranges (`[start, end)`) a search for `text` must read in `organization_id`'s
/// log: its candidate blocks, then everything past the last block. `None` when the filters
/// cannot rule anything out (text shorter than a trigram, or spanning lines).
pub(super) async fn candidate_ranges(
    client: &tokio_postgres::Client,
    cache: &FilterCache,
    organization_id: &str,
    text: &str,
) -> Result<Option<Vec<(i64, i64)>>, StoreError> {
    let keys = trigram::trigrams_of(text);
    if keys.is_empty() || text.contains('\n') {
        return Ok(None);
    }
    let blocks: Vec<(i64, i64, i64)> = client
        .query(
            "SELECT first_sequence, end_sequence, version FROM text_blocks
             WHERE organization_id = $1 ORDER BY first_sequence",
            &[&organization_id],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, StoreError>>()?;
    // Each block's filter, from the cache once; the ones it lacks are read in one query.
    let mut filters: Vec<Option<Arc<Vec<u8>>>> = blocks
        .iter()
        .map(|(first, _, version)| cache.get(organization_id, *first, *version))
        .collect();
    let missing: HashMap<i64, usize> = blocks
        .iter()
        .zip(&filters)
        .enumerate()
        .filter(|(_, (_, filter))| filter.is_none())
        .map(|(at, ((first, _, _), _))| (*first, at))
        .collect();
    if !missing.is_empty() {
        let firsts: Vec<i64> = missing.keys().copied().collect();
        for row in client
            .query(
                "SELECT first_sequence, version, bloom FROM text_blocks
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
    }
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for ((first, end, _), bloom) in blocks.iter().zip(filters) {
        // A filter not read (its block gone between the two queries) makes a candidate: never wrong.
        let candidate = bloom.is_none_or(|bloom| trigram::may_contain_all(&bloom, &keys));
        if candidate {
            push_range(&mut ranges, *first, *end);
        }
    }
    let tail = blocks.last().map_or(0, |(_, end, _)| *end);
    push_range(&mut ranges, tail, i64::MAX);
    Ok(Some(joined(ranges, MAX_RANGES)))
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
    fn a_filter_holds_the_trigrams_of_every_text_it_was_built_from() {
        let texts = ["hana okafor\ndoc_8qe82t02nb", "user_j8ezc91wbd\nenterprise"];
        let bloom = filter_of(texts.into_iter());
        for text in ["okafor", "8qe82t", "user_j8", "enterprise"] {
            assert!(
                trigram::may_contain_all(&bloom, &trigram::trigrams_of(text)),
                "{text}"
            );
        }
        assert!(!trigram::may_contain_all(
            &bloom,
            &trigram::trigrams_of("zebra crossing")
        ));
    }

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
