//! The upgrade from a database that kept events in tables (schema versions 1–6) to the log.
//!
//! When a store opens a database that still has the `events` table, every organization's
//! events are written into the log in sequence order — the same ids, leaf hashes, received
//! times and bodies (a purged event stays a purged stub) — with their blocks, tiles and id run,
//! and the tree each log's tiles give is checked against the tree of the old `merkle_nodes` at
//! every organization's size before the old tables are dropped. Progress is logged every tenth
//! of the way; a crash midway leaves the old tables untouched, and the next start begins again
//! from a clean log. Idempotency records of the old kind stay in their table and answer until
//! they expire.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use trailmark_ledger::LedgerError;
use trailmark_ledger::tree::{Hash, NodeReader, tree_hash};

use super::block::{BLOCK_MAX_EVENTS, BlockRecord, IndexedEvent};
use super::format::encode_frame;
use super::read::SqlTiles;
use super::runs::{Entry, Runs};
use super::segments::Segments;
use super::tiles::{TileEdge, TileReader};
use super::{id_key, indexed_from_body, log_dir};
use crate::StoreError;

/// An event as the old `events` table held it: sequence, id, received time, leaf hash, body,
/// purge time.
type LegacyRow = (i64, String, i64, Vec<u8>, String, Option<i64>);

/// The tables that held events before the log.
const DROP_LEGACY_TABLES: &str = "DROP TABLE events_fts; DROP TABLE event_targets; \
    DROP TABLE events; DROP TABLE merkle_nodes; DROP TABLE log_heads;";

/// Whether the database still holds events in the old tables.
///
/// # Errors
///
/// Storage errors.
pub(crate) fn pending(db_path: &Path) -> Result<bool, StoreError> {
    let connection = Connection::open(db_path)?;
    Ok(connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
        [],
        |row| row.get(0),
    )?)
}

/// Removes everything in the log directory `dir` but its `LOCK` file.
fn clear_except_lock(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == "LOCK" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Moves the events of an old database into the log, if it has any (see the module docs).
///
/// # Errors
///
/// Storage errors; [`StoreError::Corrupt`] if the old tables do not add up (a gap in a log, a
/// tree that does not match its nodes). The old tables are then left as they were.
pub(crate) fn convert(db_path: &Path) -> Result<(), StoreError> {
    if !pending(db_path)? {
        return Ok(());
    }
    let connection = Connection::open(db_path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let total: i64 = connection.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    let heads: i64 =
        connection.query_row("SELECT COUNT(*) FROM log_heads", [], |row| row.get(0))?;
    if total == 0 && heads == 0 {
        // A new database: its migrations made the old tables just before the log's.
        connection.execute_batch(DROP_LEGACY_TABLES)?;
        return Ok(());
    }
    // A conversion a crash interrupted starts again from nothing, but for the lock the caller
    // holds in the directory: removing it would let a second process take a new one beside it.
    let dir = log_dir(db_path);
    if dir.exists() {
        clear_except_lock(&dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
    }
    connection.execute_batch(
        "DELETE FROM log_blocks; DELETE FROM log_terms; DELETE FROM log_tiles;
         DELETE FROM log_meta; DELETE FROM log_redactions;",
    )?;
    tracing::info!(
        events = total,
        "moving events from the database into the log (an upgrade; once)"
    );

    let segments = Segments::open(&dir)?;
    let mut appender = segments.appender(0)?;
    let organizations: Vec<(String, u32, i64)> = connection
        .prepare(
            "SELECT h.organization_id, n.number, h.size FROM log_heads h
             JOIN log_organizations n ON n.id = h.organization_id ORDER BY n.number",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(total.max(0) as usize);
    let mut moved = 0i64;
    let mut reported = 0i64;
    for (organization_id, number, size) in &organizations {
        let mut edge = TileEdge::default();
        let mut next = 0i64;
        while next < *size {
            let rows: Vec<LegacyRow> = connection
                .prepare_cached(
                    "SELECT sequence, id, received_at, leaf_hash, body, purged_at FROM events
                     WHERE organization_id = ?1 AND sequence >= ?2 ORDER BY sequence LIMIT ?3",
                )?
                .query_map(
                    params![organization_id, next, BLOCK_MAX_EVENTS as i64],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            if rows.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "the log of '{organization_id}' ends at {next}, not at its size {size}"
                )));
            }
            let mut frame = Vec::new();
            let mut parts = Vec::with_capacity(rows.len());
            for (sequence, id, received_at, leaf_hash, body, _) in &rows {
                if *sequence != next + parts.len() as i64 {
                    return Err(StoreError::Corrupt(format!(
                        "the log of '{organization_id}' has a gap before {sequence}"
                    )));
                }
                let leaf: Hash = leaf_hash.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(format!(
                        "event {id} has a leaf hash of {} bytes",
                        leaf_hash.len()
                    ))
                })?;
                parts.push((id.as_str(), leaf, *received_at, body.as_bytes()));
            }
            let borrowed: Vec<(&str, &Hash, i64, &[u8])> = parts
                .iter()
                .map(|(id, leaf, received_at, body)| (*id, leaf, *received_at, *body))
                .collect();
            let records = encode_frame(&mut frame, organization_id, next as u64, None, &borrowed);
            let position = appender.append(&frame)?;
            let mut events = Vec::with_capacity(rows.len());
            for (index, ((sequence, id, received_at, _, body, purged_at), (at, length))) in
                rows.iter().zip(records).enumerate()
            {
                let (sequence, received_at) = (*sequence, *received_at);
                let (leaf, record) = (parts[index].1, position + u64::from(at));
                let event = match *purged_at {
                    Some(purged_at) => IndexedEvent {
                        sequence: sequence as u64,
                        position: record,
                        length,
                        id: id.clone(),
                        leaf_hash: leaf,
                        received_at,
                        occurred_at: received_at,
                        action: String::new(),
                        actor_id: String::new(),
                        actor_name: None,
                        targets: Vec::new(),
                        text: String::new(),
                        purged_at: Some(purged_at),
                    },
                    None => indexed_from_body(
                        body.as_bytes(),
                        sequence as u64,
                        record,
                        length,
                        id.clone(),
                        leaf,
                        received_at,
                    )?,
                };
                let key = id_key(id);
                ids.push(Entry {
                    key,
                    position: record,
                    organization: *number,
                    length,
                    a: sequence as u64,
                    b: received_at,
                });
                events.push(event);
            }
            write_block(&connection, *number, &events, &mut edge)?;
            next += events.len() as i64;
            moved += events.len() as i64;
            if total > 0 && moved * 10 / total > reported {
                reported = moved * 10 / total;
                tracing::info!(
                    moved,
                    total,
                    "moving events into the log: {}%",
                    reported * 10
                );
            }
        }
        check_tree(&connection, organization_id, *number, *size as u64)?;
    }
    let end = appender.end();
    Runs::open(&dir.join("ids"))?.write(ids, 0, end)?;
    connection.execute_batch(&format!(
        "BEGIN;
         INSERT INTO log_meta (key, value) VALUES ('replay_from', {end});
         {DROP_LEGACY_TABLES}
         COMMIT;"
    ))?;
    tracing::info!(
        moved,
        "events moved into the log; reclaiming the space they took (VACUUM)"
    );
    connection.execute_batch("VACUUM")?;
    Ok(())
}

/// Writes one block of converted events, with its tiles.
fn write_block(
    connection: &Connection,
    number: u32,
    events: &[IndexedEvent],
    edge: &mut TileEdge,
) -> Result<(), StoreError> {
    let record = BlockRecord::build(events);
    let tiles = edge.extend(events.iter().map(|e| e.leaf_hash));
    let transaction = connection.unchecked_transaction()?;
    super::maintenance::insert_block(&transaction, number, &record)?;
    for tile in tiles {
        transaction.execute(
            "INSERT INTO log_tiles (organization, level, idx, hashes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (organization, level, idx) DO UPDATE SET hashes = excluded.hashes",
            params![number, tile.level, tile.index as i64, tile.hashes.concat()],
        )?;
    }
    transaction.commit()?;
    Ok(())
}

/// Checks the tree the new tiles give at `size` against the old nodes.
fn check_tree(
    connection: &Connection,
    organization_id: &str,
    number: u32,
    size: u64,
) -> Result<(), StoreError> {
    let old = tree_hash(
        size,
        &OldNodes {
            connection,
            organization_id,
        },
    )?;
    let tiles = SqlTiles::new(connection, number);
    let new = tree_hash(size, &TileReader::new(&tiles, size, &[]))?;
    if old != new {
        return Err(StoreError::Corrupt(format!(
            "the tree of '{organization_id}' at {size} events differs after the move into the log"
        )));
    }
    Ok(())
}

struct OldNodes<'c> {
    connection: &'c Connection,
    organization_id: &'c str,
}

impl NodeReader for OldNodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let hash: Option<Vec<u8>> = self
            .connection
            .prepare_cached("SELECT hash FROM merkle_nodes WHERE organization_id = ?1 AND level = ?2 AND idx = ?3")
            .and_then(|mut statement| {
                statement
                    .query_row(params![self.organization_id, level, index as i64], |row| row.get(0))
                    .optional()
            })
            .map_err(|e| LedgerError::Read(e.to_string()))?;
        hash.and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or(LedgerError::MissingNode { level, index })
    }
}
