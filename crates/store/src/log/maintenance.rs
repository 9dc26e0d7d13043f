//! The maintenance thread: everything written behind the log.
//!
//! - **Blocks.** An organization's events in memory are written as a block (columns, terms,
//!   trigram filter) with the tiles they complete, in one SQLite transaction that also moves
//!   `replay_from` — the log position from which a restart must read events back into memory —
//!   when 4,096 have gathered, when memory holds too many events overall (the largest go
//!   first), or when the oldest lies too far behind the log's end.
//! - **Runs.** Id and claim lookups in memory are written as sorted runs when they grow large
//!   or lie too far behind the log's end; claim runs whose every record expired are deleted.
//! - **Purges.** Retention marks events purged in their block (checking the legal hold in the
//!   same transaction) and then rewrites their bodies in the log as zeros, so their contents
//!   are gone from disk, not only from reads; a crash in between is finished at the next start
//!   (`log_redactions`).
//!
//! Blocks and runs are derived from the log, so this connection commits with
//! `synchronous=NORMAL`: a power cut may lose its last commits, never consistency, and the
//! next start reads those events back from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use trailmark_domain::Timestamp;

use super::block::{BLOCK_MAX_EVENTS, BlockRecord, Columns, IndexedEvent};
use super::format::{body_span, decode_event, rewritten_body};
use super::runs::{Memtable, Runs, memtable};
use super::{
    LogEngine, MAX_OPEN_EVENTS, OrgLog, REPLAY_WINDOW_BYTES, RUN_ENTRIES, Shared, indexed_from_body,
};
use crate::StoreError;

/// How often the thread looks for work nobody woke it for.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What the maintenance thread is asked to do.
pub(crate) enum Task {
    /// Look for blocks and runs to write.
    Look,
    /// Purge up to `limit` events of an organization received before `before` (unless it is
    /// under a legal hold); answers how many.
    Purge {
        organization_id: String,
        before: i64,
        limit: usize,
        now: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Rewrite or purge events of an organization for an erasure (unless it is under a legal
    /// hold and not forced); answers whether it was done.
    Erase {
        organization_id: String,
        changes: Vec<(u64, Change)>,
        force: bool,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Write every event in memory as blocks and every lookup as runs (before a shutdown or a
    /// copy of the data directory; tests use it to reach the written index).
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// What becomes of one event of a block that is rewritten.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Purged at this time (unix milliseconds): only its stub remains.
    Purge(i64),
    /// Its body is this (an erasure's): kept in `log_erasures`.
    Body(String),
}

pub(crate) fn wake(shared: &Shared) {
    let _ = shared.tasks.send(Task::Look);
}

/// Starts the thread. It holds the engine weakly: once the engine is dropped, the queue's sender
/// (inside it) goes too, and the thread ends.
pub(crate) fn start(
    shared: std::sync::Weak<Shared>,
    tasks: mpsc::Receiver<Task>,
) -> Result<(), StoreError> {
    let db_path = shared
        .upgrade()
        .map(|shared| shared.db_path.clone())
        .ok_or_else(|| StoreError::Unavailable("the log closed while it opened".into()))?;
    let connection = Connection::open(&db_path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // Purges and erasures delete index rows holding what they remove: the freed space is
    // zeroed, so it does not linger in the database file.
    connection.pragma_update(None, "secure_delete", true)?;
    // Every statement this thread runs stays prepared (the default keeps 16, about as many as
    // it has): re-preparing a block's inserts for each block would cost more than they save.
    connection.set_prepared_statement_cache_capacity(32);
    std::thread::Builder::new()
        .name("trailmark-log-maintenance".into())
        .spawn(move || run(&shared, &connection, &tasks))
        .map_err(|source| StoreError::Open {
            path: "the log maintenance thread".into(),
            source,
        })?;
    Ok(())
}

fn run(shared: &std::sync::Weak<Shared>, connection: &Connection, tasks: &mpsc::Receiver<Task>) {
    loop {
        let task = match tasks.recv_timeout(LOOK_EVERY) {
            Ok(task) => task,
            Err(RecvTimeoutError::Timeout) => Task::Look,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let shared = shared.as_ref();
        match task {
            Task::Look => {
                if let Err(error) = look(shared, connection) {
                    tracing::error!(%error, "writing the log's index failed; it is retried");
                }
            }
            Task::Purge {
                organization_id,
                before,
                limit,
                now,
                reply,
            } => {
                let _ = reply.send(purge(
                    shared,
                    connection,
                    &organization_id,
                    before,
                    limit,
                    now,
                ));
            }
            Task::Erase {
                organization_id,
                changes,
                force,
                reply,
            } => {
                let _ = reply.send(erase(shared, connection, &organization_id, changes, force));
            }
            Task::Flush(reply) => {
                let _ = reply.send(flush_all(shared, connection));
            }
        }
    }
}

impl LogEngine {
    /// Purges (see [`Task::Purge`]).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn purge(
        &self,
        organization_id: &str,
        before: Timestamp,
        limit: usize,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .tasks
            .send(Task::Purge {
                organization_id: organization_id.to_owned(),
                before: before.unix_millis(),
                limit,
                now: now.unix_millis(),
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the log's maintenance has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the purge was not done".into()))?
    }

    /// Erases (see [`Task::Erase`]).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn erase(
        &self,
        organization_id: &str,
        changes: Vec<(u64, Change)>,
        force: bool,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .tasks
            .send(Task::Erase {
                organization_id: organization_id.to_owned(),
                changes,
                force,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the log's maintenance has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the erasure was not done".into()))?
    }

    /// Deletes claims whose records all expired before `now`; returns how many went.
    ///
    /// # Errors
    ///
    /// I/O errors deleting runs.
    pub(crate) fn retire_claims(&self, now: Timestamp) -> Result<u64, StoreError> {
        retire_claims(&self.shared, now.unix_millis())
    }

    /// Writes everything in memory as blocks and runs.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .tasks
            .send(Task::Flush(reply))
            .map_err(|_| StoreError::Unavailable("the log's maintenance has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the flush was not done".into()))?
    }
}

/// Writes the blocks and runs that are due.
fn look(shared: &Shared, connection: &Connection) -> Result<(), StoreError> {
    loop {
        let due = {
            let state = shared.read_state()?;
            let behind = state.end.saturating_sub(REPLAY_WINDOW_BYTES);
            let full = state
                .logs
                .iter()
                .find(|(_, log)| log.open.len() >= BLOCK_MAX_EVENTS);
            let old = state
                .logs
                .iter()
                .find(|(_, log)| log.open.first().is_some_and(|e| e.position < behind));
            let largest = (state.open_events > MAX_OPEN_EVENTS)
                .then(|| state.logs.iter().max_by_key(|(_, log)| log.open.len()))
                .flatten();
            full.or(old).or(largest).map(|(id, _)| id.clone())
        };
        match due {
            Some(organization_id) => seal(shared, connection, &organization_id)?,
            None => break,
        }
    }
    let (ids_due, claims_due) = {
        let state = shared.read_state()?;
        let behind = state.end.saturating_sub(REPLAY_WINDOW_BYTES);
        (
            state.ids.len() >= RUN_ENTRIES
                || (!state.ids.is_empty() && shared.ids.covered_to() < behind),
            state.claims.len() >= RUN_ENTRIES
                || (!state.claims.is_empty() && shared.claims.covered_to() < behind),
        )
    };
    if ids_due {
        flush_runs(shared, RunKind::Ids)?;
    }
    if claims_due {
        flush_runs(shared, RunKind::Claims)?;
    }
    Ok(())
}

fn flush_all(shared: &Shared, connection: &Connection) -> Result<(), StoreError> {
    loop {
        let next = {
            let state = shared.read_state()?;
            state
                .logs
                .iter()
                .find(|(_, log)| !log.open.is_empty())
                .map(|(id, _)| id.clone())
        };
        match next {
            Some(organization_id) => seal(shared, connection, &organization_id)?,
            None => break,
        }
    }
    flush_runs(shared, RunKind::Ids)?;
    flush_runs(shared, RunKind::Claims)
}

/// Writes the first (up to) [`BLOCK_MAX_EVENTS`] events in memory of one organization as a
/// block, with its tiles, and takes them out of memory.
fn seal(shared: &Shared, connection: &Connection, organization_id: &str) -> Result<(), StoreError> {
    let (number, events, mut edge, replay_from) = {
        let state = shared.read_state()?;
        let Some(log) = state.logs.get(organization_id) else {
            return Ok(());
        };
        let take = log.open.len().min(BLOCK_MAX_EVENTS);
        if take == 0 {
            return Ok(());
        }
        let replay_from = state
            .logs
            .iter()
            .filter_map(|(id, other)| {
                let first_left = if id == organization_id { take } else { 0 };
                other.open.get(first_left).map(|e| e.position)
            })
            .min()
            .unwrap_or(state.end);
        (
            log.number,
            log.open[..take].to_vec(),
            log.edge.clone(),
            replay_from,
        )
    };
    let record = BlockRecord::build(&events);
    let tiles = edge.extend(events.iter().map(|e| e.leaf_hash));

    let transaction = connection.unchecked_transaction()?;
    insert_block(&transaction, number, &record)?;
    {
        let mut tile = transaction.prepare_cached(
            "INSERT INTO log_tiles (organization, level, idx, hashes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (organization, level, idx) DO UPDATE SET hashes = excluded.hashes",
        )?;
        for written in &tiles {
            tile.execute(params![
                number,
                written.level,
                written.index as i64,
                written.hashes.concat()
            ])?;
        }
    }
    transaction
        .prepare_cached(
            "INSERT INTO log_meta (key, value) VALUES ('replay_from', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([replay_from as i64])?;
    transaction.commit()?;

    let mut state = shared.write_state()?;
    let log = state.logs.get_mut(organization_id).ok_or_else(|| {
        StoreError::Corrupt("an organization left the log while its block was written".into())
    })?;
    if log.open.first().map(|e| e.sequence) != Some(record.first_sequence) {
        return Err(StoreError::Corrupt(
            "the events in memory changed while their block was written".into(),
        ));
    }
    log.open.drain(..events.len());
    log.sealed += events.len() as u64;
    log.edge = edge;
    state.open_events -= events.len();
    Ok(())
}

/// Inserts a block's row and its terms (also the conversion of a database from before the log,
/// `legacy`).
pub(super) fn insert_block(
    transaction: &rusqlite::Transaction<'_>,
    number: u32,
    record: &BlockRecord,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO log_blocks (organization, first_sequence, count, min_occurred, max_occurred,
                min_received, max_received, locations, occurred, received, purged, bloom, text_values)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            number,
            record.first_sequence as i64,
            record.count,
            record.min_occurred,
            record.max_occurred,
            record.min_received,
            record.max_received,
            record.locations,
            record.occurred,
            record.received,
            record.purged,
            record.bloom,
            record.text_values,
        ])?;
    // A block has a few thousand terms: several go in each statement, which shares a step's
    // fixed cost (bindings, reset, the call itself) among them.
    let mut chunks = record.terms.chunks_exact(TERMS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = transaction.prepare_cached(&terms_insert(TERMS_PER_INSERT))?;
        for chunk in &mut chunks {
            bind_terms(&mut many, number, record.first_sequence, chunk)?;
            many.raw_execute()?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut one = transaction.prepare_cached(&terms_insert(1))?;
        for term in chunks.remainder() {
            bind_terms(
                &mut one,
                number,
                record.first_sequence,
                std::slice::from_ref(term),
            )?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

/// Term rows a full statement of [`insert_block`] inserts (3 parameters a row and 2 shared:
/// far below SQLite's bound on a statement's parameters).
const TERMS_PER_INSERT: usize = 64;

/// The `INSERT` of `rows` term rows of one block: `?1` is the organization, `?2` the block's
/// first sequence, and each row's field, value and postings follow.
fn terms_insert(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO log_terms (organization, first_sequence, field, value, postings) VALUES ",
    );
    for row in 0..rows {
        let at = 3 + row * 3;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?1, ?2, ?{at}, ?{}, ?{})", at + 1, at + 2));
    }
    sql
}

/// Binds [`terms_insert`]'s parameters for `terms`.
fn bind_terms(
    statement: &mut rusqlite::CachedStatement<'_>,
    number: u32,
    first_sequence: u64,
    terms: &[(super::block::Field, String, Vec<u8>)],
) -> Result<(), StoreError> {
    statement.raw_bind_parameter(1, number)?;
    statement.raw_bind_parameter(2, first_sequence as i64)?;
    for (row, (field, value, postings)) in terms.iter().enumerate() {
        let at = 3 + row * 3;
        statement.raw_bind_parameter(at, field.code())?;
        statement.raw_bind_parameter(at + 1, value.as_str())?;
        statement.raw_bind_parameter(at + 2, postings.as_slice())?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum RunKind {
    Ids,
    Claims,
}

/// Writes one kind's memtable as a run. The memtable stays readable (as "flushing") until the
/// run is in place.
fn flush_runs(shared: &Shared, kind: RunKind) -> Result<(), StoreError> {
    let runs: &Runs = match kind {
        RunKind::Ids => &shared.ids,
        RunKind::Claims => &shared.claims,
    };
    let (entries, covered_to) = {
        let mut state = shared.write_state()?;
        let covered_to = state.end;
        let table = match kind {
            // A full-size table again (see `LogEngine::open`).
            RunKind::Ids => std::mem::replace(&mut state.ids, memtable(RUN_ENTRIES)),
            RunKind::Claims => std::mem::take(&mut state.claims),
        };
        let table: Arc<Memtable> = Arc::new(table);
        match kind {
            RunKind::Ids => state.ids_flushing = Some(Arc::clone(&table)),
            RunKind::Claims => state.claims_flushing = Some(Arc::clone(&table)),
        }
        (table, covered_to)
    };
    let now = Timestamp::now().unix_millis();
    let written = runs.write(
        entries
            .values()
            .copied()
            .filter(|entry| matches!(kind, RunKind::Ids) || entry.b > now),
        runs.covered_to(),
        covered_to,
    );
    let mut state = shared.write_state()?;
    match kind {
        RunKind::Ids => state.ids_flushing = None,
        RunKind::Claims => state.claims_flushing = None,
    }
    if let Err(error) = written {
        // Put the entries back: they are still needed, and the next flush tries again.
        let table = match kind {
            RunKind::Ids => &mut state.ids,
            RunKind::Claims => &mut state.claims,
        };
        for (key, entry) in entries.iter() {
            table.entry(*key).or_insert(*entry);
        }
        return Err(error);
    }
    Ok(())
}

fn purge(
    shared: &Shared,
    connection: &Connection,
    organization_id: &str,
    before: i64,
    limit: usize,
    now: i64,
) -> Result<u64, StoreError> {
    let sealed = seal_while(shared, connection, organization_id, |log| {
        log.open.iter().any(|e| e.received_at < before)
    })?;
    let Some(number) = sealed else {
        return Ok(0);
    };
    // IMMEDIATE: it reads the hold and the blocks, then writes; a deferred transaction could
    // not take the write lock after another connection committed.
    let transaction =
        rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
    let held: bool = transaction.query_row(
        "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE organization_id = ?1)",
        [organization_id],
        |row| row.get(0),
    )?;
    if held {
        return Ok(0);
    }
    let mut expired = Vec::new();
    {
        let mut blocks = transaction.prepare_cached(
            "SELECT first_sequence, count, locations, occurred, received, purged FROM log_blocks
             WHERE organization = ?1 AND min_received < ?2 ORDER BY first_sequence",
        )?;
        let mut rows = blocks.query(params![number, before])?;
        while expired.len() < limit
            && let Some(row) = rows.next()?
        {
            let columns = Columns::from_row(row, 0)?;
            expired.extend(
                (0..columns.len())
                    .filter(|&o| columns.received[o] < before && columns.purged[o].is_none())
                    .take(limit - expired.len())
                    .map(|o| (columns.first_sequence + o as u64, Change::Purge(now))),
            );
        }
    }
    let zeroed = rewrite_blocks(shared, &transaction, number, &expired)?;
    transaction.commit()?;
    forget_bodies(shared, connection, number, &zeroed)?;
    Ok(expired.len() as u64)
}

/// Writes an organization's events in memory as blocks while `in_memory` says some that a
/// purge or an erasure changes are still there, so that it only changes blocks. Returns the
/// organization's number, `None` if it has no log.
fn seal_while(
    shared: &Shared,
    connection: &Connection,
    organization_id: &str,
    in_memory: impl Fn(&OrgLog) -> bool,
) -> Result<Option<u32>, StoreError> {
    loop {
        {
            let state = shared.read_state()?;
            match state.logs.get(organization_id) {
                None => return Ok(None),
                Some(log) if !in_memory(log) => return Ok(Some(log.number)),
                Some(_) => {}
            }
        }
        seal(shared, connection, organization_id)?;
    }
}

/// Erases: the events of `changes` get their new bodies or are purged, in their blocks (whose
/// index is rebuilt without the old values) and in `log_erasures`, committed durably; then their
/// old records are rewritten as zeros. Nothing under a legal hold unless `force`.
fn erase(
    shared: &Shared,
    connection: &Connection,
    organization_id: &str,
    mut changes: Vec<(u64, Change)>,
    force: bool,
) -> Result<bool, StoreError> {
    changes.sort_by_key(|(sequence, _)| *sequence);
    let Some(last) = changes.last().map(|(sequence, _)| *sequence) else {
        return Ok(true);
    };
    let sealed = seal_while(shared, connection, organization_id, |log| {
        log.sealed <= last && !log.open.is_empty()
    })?;
    let Some(number) = sealed else {
        return Ok(true);
    };
    // The new bodies exist nowhere else once the old records are zeroed: unlike the index, they
    // cannot be rebuilt from the log, so this commit is synced.
    connection.pragma_update(None, "synchronous", "FULL")?;
    let committed = commit_erasure(shared, connection, organization_id, number, &changes, force);
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let Some(zeroed) = committed? else {
        return Ok(false);
    };
    forget_bodies(shared, connection, number, &zeroed)?;
    Ok(true)
}

/// [`erase`]'s transaction: `None` under a legal hold not forced, else the old records to zero.
fn commit_erasure(
    shared: &Shared,
    connection: &Connection,
    organization_id: &str,
    number: u32,
    changes: &[(u64, Change)],
    force: bool,
) -> Result<Option<Vec<(u64, u32)>>, StoreError> {
    let transaction =
        rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
    let held: bool = transaction.query_row(
        "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE organization_id = ?1)",
        [organization_id],
        |row| row.get(0),
    )?;
    if held && !force {
        return Ok(None);
    }
    let zeroed = rewrite_blocks(shared, &transaction, number, changes)?;
    // Reads look in `log_erasures` from now on (before the commit: until it, they find nothing
    // there and read the old records, which are still intact).
    shared.write_state()?.erased.insert(number);
    transaction.commit()?;
    Ok(Some(zeroed))
}

/// Applies `changes` (sorted by sequence, all in written blocks of organization `number`) to
/// their blocks: each block touched is built anew from its events' current bodies, so its terms,
/// trigram filter and text values no longer hold what was purged or erased; new bodies go to
/// `log_erasures`, and each block is listed in `log_redactions` until its old records are
/// zeroed. Returns where those records lie. Events already purged, or past the blocks, are
/// left as they are.
fn rewrite_blocks(
    shared: &Shared,
    transaction: &rusqlite::Transaction<'_>,
    number: u32,
    changes: &[(u64, Change)],
) -> Result<Vec<(u64, u32)>, StoreError> {
    let mut zeroed = Vec::new();
    let mut at = 0;
    while at < changes.len() {
        let sequence = changes[at].0;
        let columns = {
            let mut block = transaction.prepare_cached(
                "SELECT first_sequence, count, locations, occurred, received, purged FROM log_blocks
                 WHERE organization = ?1 AND first_sequence <= ?2 ORDER BY first_sequence DESC LIMIT 1",
            )?;
            let mut rows = block.query(params![number, sequence as i64])?;
            match rows.next()? {
                Some(row) => Columns::from_row(row, 0)?,
                None => {
                    at += 1;
                    continue;
                }
            }
        };
        let end = columns.first_sequence + columns.len() as u64;
        let count = changes[at..]
            .iter()
            .take_while(|(sequence, _)| *sequence < end)
            .count()
            .max(1);
        if sequence < end {
            zeroed.extend(rewrite_block(
                shared,
                transaction,
                number,
                &columns,
                &changes[at..at + count],
            )?);
        }
        at += count;
    }
    Ok(zeroed)
}

/// [`rewrite_blocks`] for one block.
fn rewrite_block(
    shared: &Shared,
    transaction: &rusqlite::Transaction<'_>,
    number: u32,
    columns: &Columns,
    changes: &[(u64, Change)],
) -> Result<Vec<(u64, u32)>, StoreError> {
    let first = columns.first_sequence;
    let end = first + columns.len() as u64;
    let mut bodies: HashMap<u64, String> = transaction
        .prepare_cached(
            "SELECT sequence, body FROM log_erasures
             WHERE organization = ?1 AND sequence >= ?2 AND sequence < ?3",
        )?
        .query_map(params![number, first as i64, end as i64], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut purged = columns.purged.clone();
    let mut zeroed = Vec::new();
    for (sequence, change) in changes {
        let offset = (sequence - first) as usize;
        if purged[offset].is_some() {
            continue;
        }
        zeroed.push(columns.locations[offset]);
        match change {
            Change::Purge(at) => {
                purged[offset] = Some(*at);
                bodies.remove(sequence);
                transaction
                    .prepare_cached(
                        "DELETE FROM log_erasures WHERE organization = ?1 AND sequence = ?2",
                    )?
                    .execute(params![number, *sequence as i64])?;
            }
            Change::Body(body) => {
                bodies.insert(*sequence, body.clone());
                transaction
                    .prepare_cached(
                        "INSERT INTO log_erasures (organization, sequence, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT (organization, sequence) DO UPDATE SET body = excluded.body",
                    )?
                    .execute(params![number, *sequence as i64, body])?;
            }
        }
    }
    let mut events = Vec::with_capacity(columns.len());
    for (offset, &purged_at) in purged.iter().enumerate() {
        let sequence = first + offset as u64;
        let (position, length) = columns.locations[offset];
        let (occurred_at, received_at) = (columns.occurred[offset], columns.received[offset]);
        let stub = || IndexedEvent {
            sequence,
            position,
            length,
            id: String::new(),
            leaf_hash: [0; 32],
            received_at,
            occurred_at,
            action: String::new(),
            actor_id: String::new(),
            actor_name: None,
            targets: Vec::new(),
            text: String::new(),
            purged_at,
        };
        let event = match (purged_at, bodies.get(&sequence)) {
            (Some(_), _) => stub(),
            (None, Some(body)) => indexed_from_body(
                body.as_bytes(),
                sequence,
                position,
                length,
                String::new(),
                [0; 32],
                received_at,
            )?,
            (None, None) => {
                let record = shared.segments.read_at(position, length as usize)?;
                let (record, _) = decode_event(&record)
                    .map_err(|e| StoreError::Corrupt(format!("the record at {position}: {e}")))?;
                indexed_from_body(
                    &record.body,
                    sequence,
                    position,
                    length,
                    record.id,
                    record.leaf_hash,
                    received_at,
                )?
            }
        };
        events.push(event);
    }
    transaction
        .prepare_cached("DELETE FROM log_terms WHERE organization = ?1 AND first_sequence = ?2")?
        .execute(params![number, first as i64])?;
    transaction
        .prepare_cached("DELETE FROM log_blocks WHERE organization = ?1 AND first_sequence = ?2")?
        .execute(params![number, first as i64])?;
    insert_block(transaction, number, &BlockRecord::build(&events))?;
    transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO log_redactions (organization, first_sequence) VALUES (?1, ?2)",
        )?
        .execute(params![number, first as i64])?;
    Ok(zeroed)
}

/// After a purge or an erasure committed: zeroes the old records, then drops the redaction
/// marks and checkpoints the write-ahead log, whose old page images still held the old index.
fn forget_bodies(
    shared: &Shared,
    connection: &Connection,
    number: u32,
    zeroed: &[(u64, u32)],
) -> Result<(), StoreError> {
    erase_bodies(shared, zeroed)?;
    connection.execute(
        "DELETE FROM log_redactions WHERE organization = ?1",
        [number],
    )?;
    if !zeroed.is_empty() {
        // A reader still on an older snapshot keeps some pages from being checkpointed; what it
        // holds goes at a later checkpoint.
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// Rewrites the bodies of the events at `locations` as zeros (with their CRCs), durably.
fn erase_bodies(shared: &Shared, locations: &[(u64, u32)]) -> Result<(), StoreError> {
    for &(position, length) in locations {
        let record = shared.segments.read_at(position, length as usize)?;
        let (at, body_len) = body_span(&record)
            .map_err(|e| StoreError::Corrupt(format!("the record at {position}: {e}")))?;
        shared
            .segments
            .overwrite_at(position + at as u64, &rewritten_body(body_len, None))?;
    }
    if !locations.is_empty() {
        shared.segments.sync_all()?;
    }
    Ok(())
}

/// Finishes purges and erasures a crash interrupted between committing them and zeroing the
/// old records.
pub(crate) fn finish_pending_redactions(
    shared: &Shared,
    connection: &Connection,
) -> Result<(), StoreError> {
    let pending: Vec<(u32, i64)> = connection
        .prepare("SELECT organization, first_sequence FROM log_redactions")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (number, first) in pending {
        let mut statement = connection.prepare(
            "SELECT first_sequence, count, locations, occurred, received, purged FROM log_blocks
             WHERE organization = ?1 AND first_sequence = ?2",
        )?;
        let mut rows = statement.query(params![number, first])?;
        let Some(row) = rows.next()? else {
            continue;
        };
        let columns = Columns::from_row(row, 0)?;

        let end = columns.first_sequence + columns.len() as u64;
        let erased: std::collections::HashSet<u64> = connection
            .prepare_cached(
                "SELECT sequence FROM log_erasures
                 WHERE organization = ?1 AND sequence >= ?2 AND sequence < ?3",
            )?
            .query_map(params![number, first, end as i64], |row| {
                Ok(row.get::<_, i64>(0)? as u64)
            })?
            .collect::<Result<_, _>>()?;
        let locations: Vec<(u64, u32)> = (0..columns.len())
            .filter(|&o| {
                columns.purged[o].is_some() || erased.contains(&(columns.first_sequence + o as u64))
            })
            .map(|o| columns.locations[o])
            .collect();
        erase_bodies(shared, &locations)?;
        connection.execute(
            "DELETE FROM log_redactions WHERE organization = ?1 AND first_sequence = ?2",
            params![number, first],
        )?;
    }
    Ok(())
}

/// Deletes claim runs and memtable entries whose records all expired before `now`; returns how
/// many records went.
fn retire_claims(shared: &Shared, now: i64) -> Result<u64, StoreError> {
    let mut retired = shared.claims.retire_below(now)?;
    let mut state = shared.write_state()?;
    let before = state.claims.len();
    state.claims.retain(|_, entry| entry.b > now);
    retired += (before - state.claims.len()) as u64;
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::block::Field;

    /// Terms go in by the statement-full and one by one for the rest: every one arrives, as it
    /// was, whatever the count.
    #[test]
    fn a_blocks_terms_are_all_inserted_whatever_their_count() {
        for count in [
            0,
            1,
            TERMS_PER_INSERT - 1,
            TERMS_PER_INSERT,
            3 * TERMS_PER_INSERT + 5,
        ] {
            let connection = Connection::open_in_memory().expect("open");
            connection
                .execute_batch(
                    "CREATE TABLE log_blocks (organization INTEGER NOT NULL,
                        first_sequence INTEGER NOT NULL, count INTEGER NOT NULL,
                        min_occurred INTEGER NOT NULL, max_occurred INTEGER NOT NULL,
                        min_received INTEGER NOT NULL, max_received INTEGER NOT NULL,
                        locations BLOB NOT NULL, occurred BLOB NOT NULL, received BLOB NOT NULL,
                        purged BLOB NOT NULL, bloom BLOB NOT NULL, text_values BLOB NOT NULL,
                        UNIQUE (organization, first_sequence));
                     CREATE TABLE log_terms (organization INTEGER NOT NULL,
                        first_sequence INTEGER NOT NULL, field INTEGER NOT NULL,
                        value TEXT NOT NULL, postings BLOB NOT NULL,
                        PRIMARY KEY (organization, first_sequence, field, value)) WITHOUT ROWID;",
                )
                .expect("schema");
            let terms: Vec<(Field, String, Vec<u8>)> = (0..count)
                .map(|i| {
                    let field = if i % 2 == 0 {
                        Field::ActorId
                    } else {
                        Field::TargetId
                    };
                    (field, format!("value_{i:04}"), vec![i as u8, 1])
                })
                .collect();
            let record = BlockRecord {
                first_sequence: 4096,
                count: 1,
                min_occurred: 0,
                max_occurred: 0,
                min_received: 0,
                max_received: 0,
                locations: vec![0, 1],
                occurred: vec![0],
                received: vec![0],
                purged: Vec::new(),
                bloom: vec![0; 4],
                text_values: Vec::new(),
                terms,
            };
            let transaction = connection.unchecked_transaction().expect("begin");
            insert_block(&transaction, 7, &record).expect("insert");
            transaction.commit().expect("commit");
            let mut stored: Vec<(u32, i64, i64, String, Vec<u8>)> = connection
                .prepare(
                    "SELECT organization, first_sequence, field, value, postings FROM log_terms",
                )
                .expect("prepare")
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            stored.sort();
            let mut expected: Vec<_> = record
                .terms
                .iter()
                .map(|(field, value, postings)| {
                    (7, 4096, field.code(), value.clone(), postings.clone())
                })
                .collect();
            expected.sort();
            assert_eq!(stored, expected, "{count} terms");
        }
    }
}
