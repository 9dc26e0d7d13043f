//! The writer: one thread that assigns sequences and appends frames, with group commit.
//!
//! It takes every append waiting at that moment, checks each organization is live and each
//! idempotency identity unanswered, gives each event the next sequence of its log and its leaf
//! hash (`rules::receipt_at`), encodes all of their frames into one buffer, writes it and
//! `fdatasync`s once. Only then does it publish the events (memory index, sizes, id and claim
//! lookups) and answer each caller. A repeat of an identity already in the same group is
//! answered with the first one's receipts once the group is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};
use trailmark_domain::Timestamp;

use super::block::{BLOCK_MAX_EVENTS, IndexedEvent};
use super::format::{FrameClaim, decode_frame, encode_frame};
use super::runs::Entry;
use super::segments::Appender;
use super::{LogEngine, MAX_OPEN_EVENTS, OrgLog, RUN_ENTRIES, Shared, id_key};
use crate::StoreError;
use crate::model::{AppendOutcome, AppendRequest, Receipt};
use crate::observe::Commit;
use crate::rules::{self, IndexFields, PreparedAppend, PreparedEvent};

/// Appends waiting for the writer before callers wait too (back-pressure).
const QUEUE_DEPTH: usize = 8_192;
/// A group stops growing once it holds this many events, which bounds one write's size.
const MAX_EVENTS_PER_COMMIT: usize = 16_384;

pub(crate) struct Job {
    append: PreparedAppend<IndexFields>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

pub(crate) type Jobs = mpsc::Sender<Job>;

/// The organizations the writer has found live, with their numbers, so that a group asks the
/// database only about an organization it has not seen. A read transaction per group (with its
/// file locks) was ~5% of the server's CPU at single-event ingest (`perf record` during
/// `./bench/ingest --only single`).
///
/// Organizations are deleted only through the serving process's store (the one that holds the
/// log's lock), which calls [`LiveOrganizations::forget`] once the deletion is committed: an
/// append that starts after a deletion has answered is refused, as when the database was read
/// for every group.
#[derive(Default)]
pub(crate) struct LiveOrganizations {
    known: std::sync::Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// How many deletions were forgotten: a number read from the database is kept only if no
    /// deletion was forgotten while it was read (that deletion may have committed after the
    /// read saw the organization live).
    deletions: u64,
    numbers: HashMap<String, u32>,
}

impl LiveOrganizations {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // Nothing panics while holding the lock; were it poisoned, its map is still right.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The organization's number if it is live (exists and is not deleted).
    fn number(
        &self,
        connection: &Connection,
        organization_id: &str,
    ) -> Result<Option<u32>, StoreError> {
        let deletions = {
            let known = self.known();
            if let Some(number) = known.numbers.get(organization_id) {
                return Ok(Some(*number));
            }
            known.deletions
        };
        let number = live_number(connection, organization_id)?;
        if let Some(number) = number {
            let mut known = self.known();
            if known.deletions == deletions {
                known.numbers.insert(organization_id.to_owned(), number);
            }
        }
        Ok(number)
    }

    /// Called once the organization's deletion is committed.
    pub(crate) fn forget(&self, organization_id: &str) {
        let mut known = self.known();
        known.deletions += 1;
        known.numbers.remove(organization_id);
    }
}

impl LogEngine {
    /// Appends durably (see the module docs); returns once the frame is on disk.
    ///
    /// # Errors
    ///
    /// [`StoreError::OrganizationNotFound`] if the organization is not live;
    /// [`StoreError::Unavailable`] if the log cannot be written.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let append = PreparedAppend::prepare(request).await?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { append, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the append was not written".into()))?
    }
}

pub(crate) fn start(shared: Arc<Shared>, appender: Appender) -> Result<Jobs, StoreError> {
    let connection = Connection::open(&shared.db_path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "query_only", true)?;
    let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
    std::thread::Builder::new()
        .name("trailmark-log-writer".into())
        .spawn(move || run(&shared, appender, &connection, queue))
        .map_err(|source| StoreError::Open {
            path: "the log writer thread".into(),
            source,
        })?;
    Ok(jobs)
}

fn run(
    shared: &Shared,
    mut appender: Appender,
    connection: &Connection,
    mut queue: mpsc::Receiver<Job>,
) {
    // One group's frames, kept from group to group: a fresh buffer grew by doubling (copying
    // what it held) to a megabyte or more for every group. It keeps the largest group's size
    // (at most MAX_EVENTS_PER_COMMIT events' frames, some megabytes).
    let mut buffer = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut events = first.append.events.len();
        let mut group = vec![first];
        while events < MAX_EVENTS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => {
                    events += job.append.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        buffer.clear();
        commit(shared, &mut appender, connection, group, &mut buffer);
    }
}

/// The identities appended in a group so far: which job of the group appended each (its
/// receipts are taken from that job's outcome only if a repeat asks), and the outcome its claim
/// records.
type InGroup = HashMap<[u8; 32], (usize, Vec<u8>)>;

/// What one job of a group comes to.
enum Plan {
    /// Answered without writing (refused, or a replay of an earlier group).
    Answer(Result<AppendOutcome, StoreError>),
    /// A repeat of an identity appended earlier in this group.
    SameAsInGroup([u8; 32]),
    /// Written in this group's buffer.
    Append(Appended),
}

struct Appended {
    organization_id: String,
    number: u32,
    first_sequence: u64,
    frame_at: usize,
    frame_len: usize,
    /// `(offset from the frame's start, length)` of each event's record.
    records: Vec<(u32, u32)>,
    receipts: Vec<Receipt>,
    events: Vec<PreparedEvent<IndexFields>>,
    claim: Option<([u8; 32], i64)>,
}

/// Writes `group` (its frames encoded in `buffer`, which comes empty) and answers its jobs.
fn commit(
    shared: &Shared,
    appender: &mut Appender,
    connection: &Connection,
    group: Vec<Job>,
    buffer: &mut Vec<u8>,
) {
    let started = Instant::now();
    if shared.failed.load(Ordering::Relaxed) {
        for job in group {
            let _ = job.reply.send(Err(failed()));
        }
        return;
    }
    let now = Timestamp::now();
    let mut numbers: HashMap<String, Option<u32>> = HashMap::new();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut in_group: InGroup = HashMap::new();
    let mut plans = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    for Job { append, reply } in group {
        replies.push(reply);
        plans.push(plan(
            shared,
            connection,
            append,
            plans.len(),
            now,
            &mut numbers,
            &mut sizes,
            &mut in_group,
            buffer,
        ));
    }

    let events: usize = plans
        .iter()
        .map(|plan| match plan {
            Plan::Append(appended) => appended.receipts.len(),
            Plan::Answer(_) | Plan::SameAsInGroup(_) => 0,
        })
        .sum();
    let mut flush = Duration::ZERO;
    let written = if buffer.is_empty() {
        Ok(appender.end())
    } else {
        let before = appender.end();
        let flushing = Instant::now();
        let appended = appender.append(buffer);
        flush = flushing.elapsed();
        appended.inspect_err(|error| {
            tracing::error!(%error, "appending to the log failed");
            if appender.truncate_to(before).is_err() {
                tracing::error!("the log's end is unknown after a failed append: refusing appends until a restart");
                shared.failed.store(true, Ordering::Relaxed);
            }
        })
    };
    if !buffer.is_empty() {
        shared.db.observer().commit(&Commit {
            events,
            total: started.elapsed(),
            flush,
            committed: written.is_ok(),
        });
    }
    let outcomes = match written {
        Ok(base) => publish(shared, base, appender.end(), plans, &in_group),
        Err(error) => plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Answer(outcome) => outcome,
                Plan::SameAsInGroup(_) | Plan::Append(_) => Err(StoreError::Unavailable(format!(
                    "the log could not be written: {error}"
                ))),
            })
            .collect(),
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The caller may have gone away (client disconnected); the write stands anyway.
        let _ = reply.send(outcome);
    }
}

#[allow(clippy::too_many_arguments)]
fn plan(
    shared: &Shared,
    connection: &Connection,
    append: PreparedAppend<IndexFields>,
    index: usize,
    now: Timestamp,
    numbers: &mut HashMap<String, Option<u32>>,
    sizes: &mut HashMap<String, u64>,
    in_group: &mut InGroup,
    buffer: &mut Vec<u8>,
) -> Plan {
    let organization_id = append.organization_id;
    let number = match numbers.get(&organization_id) {
        Some(number) => *number,
        None => match shared.live.number(connection, &organization_id) {
            Ok(number) => {
                numbers.insert(organization_id.clone(), number);
                number
            }
            Err(error) => return Plan::Answer(Err(error)),
        },
    };
    let Some(number) = number else {
        return Plan::Answer(Err(StoreError::OrganizationNotFound(organization_id)));
    };
    if let Some(claim) = &append.idempotency {
        if in_group.contains_key(&claim.identity) {
            return Plan::SameAsInGroup(claim.identity);
        }
        match earlier_claim(shared, connection, &claim.identity, now) {
            Ok(Some(outcome)) => return Plan::Answer(Ok(outcome)),
            Ok(None) => {}
            Err(error) => return Plan::Answer(Err(error)),
        }
    }
    let size = match sizes.get(&organization_id) {
        Some(size) => *size,
        None => match shared.read_state() {
            Ok(state) => state.logs.get(&organization_id).map_or(0, |log| log.size),
            Err(error) => return Plan::Answer(Err(error)),
        },
    };
    let receipts: Vec<Receipt> = append
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| rules::receipt_at(size + index as u64, event))
        .collect();
    sizes.insert(organization_id.clone(), size + receipts.len() as u64);
    let claim = append.idempotency.map(|claim| FrameClaim {
        identity: claim.identity,
        expires_at: claim.expires_at.unix_millis(),
        outcome: claim.outcome,
    });
    let frame_at = buffer.len();
    let parts: Vec<(&str, &[u8; 32], i64, &[u8])> = append
        .events
        .iter()
        .zip(&receipts)
        .map(|(event, receipt)| {
            (
                event.id.as_str(),
                &receipt.leaf_hash,
                event.received_at.unix_millis(),
                event.body.as_bytes(),
            )
        })
        .collect();
    let records = encode_frame(buffer, &organization_id, size, claim.as_ref(), &parts);
    let frame_len = buffer.len() - frame_at;
    let claim = claim.map(|claim| {
        in_group.insert(claim.identity, (index, claim.outcome));
        (claim.identity, claim.expires_at)
    });
    Plan::Append(Appended {
        organization_id,
        number,
        first_sequence: size,
        frame_at,
        frame_len,
        records,
        receipts,
        events: append.events,
        claim,
    })
}

/// Makes the group's appends visible, now that they are durable at `base`, and returns each
/// job's outcome.
fn publish(
    shared: &Shared,
    base: u64,
    end: u64,
    plans: Vec<Plan>,
    in_group: &InGroup,
) -> Vec<Result<AppendOutcome, StoreError>> {
    let mut state = match shared.write_state() {
        Ok(state) => state,
        Err(error) => {
            shared.failed.store(true, Ordering::Relaxed);
            return plans
                .into_iter()
                .map(|_| Err(StoreError::Unavailable(error.to_string())))
                .collect();
        }
    };
    let mut outcomes = Vec::with_capacity(plans.len());
    let mut wake = false;
    for plan in plans {
        let appended = match plan {
            Plan::Answer(outcome) => {
                outcomes.push(outcome);
                continue;
            }
            Plan::SameAsInGroup(identity) => {
                // The first append comes earlier in the group: its outcome is already here.
                let first =
                    in_group
                        .get(&identity)
                        .and_then(|(at, outcome)| match outcomes.get(*at) {
                            Some(Ok(AppendOutcome::Appended { receipts })) => {
                                Some(Ok(AppendOutcome::Replayed {
                                    receipts: receipts.clone(),
                                    outcome: outcome.clone(),
                                }))
                            }
                            _ => None,
                        });
                outcomes.push(first.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "a repeat without its first append".into(),
                    ))
                }));
                continue;
            }
            Plan::Append(appended) => appended,
        };
        let frame_position = base + appended.frame_at as u64;
        let number = appended.number;
        state.names.insert(number, appended.organization_id.clone());
        if let Some((identity, expires_at)) = appended.claim {
            state.claims.insert(
                identity,
                Entry {
                    key: identity,
                    position: frame_position,
                    organization: number,
                    length: appended.frame_len as u32,
                    a: appended.first_sequence,
                    b: expires_at,
                },
            );
        }
        let mut indexed = Vec::with_capacity(appended.events.len());
        for ((event, receipt), (at, length)) in appended
            .events
            .into_iter()
            .zip(&appended.receipts)
            .zip(&appended.records)
        {
            let position = frame_position + u64::from(*at);
            let key = id_key(&event.id);
            state.ids.insert(
                key,
                Entry {
                    key,
                    position,
                    organization: number,
                    length: *length,
                    a: receipt.sequence,
                    b: event.received_at.unix_millis(),
                },
            );
            let fields = event.index;
            indexed.push(Arc::new(IndexedEvent {
                sequence: receipt.sequence,
                position,
                length: *length,
                id: event.id,
                leaf_hash: receipt.leaf_hash,
                received_at: event.received_at.unix_millis(),
                occurred_at: event.occurred_at.unix_millis(),
                action: fields.action,
                actor_id: fields.actor_id,
                actor_name: fields.actor_name,
                targets: fields.targets,
                text: fields.search_text,
                purged_at: None,
            }));
        }
        let added = indexed.len();
        let log = state
            .logs
            .entry(appended.organization_id)
            .or_insert_with(|| OrgLog {
                number,
                size: 0,
                sealed: 0,
                open: Vec::new(),
                edge: Default::default(),
            });
        log.open.extend(indexed);
        log.size = appended.first_sequence + added as u64;
        wake |= log.open.len() >= BLOCK_MAX_EVENTS;
        state.open_events += added;
        outcomes.push(Ok(AppendOutcome::Appended {
            receipts: appended.receipts,
        }));
    }
    state.end = end;
    wake |= state.open_events > MAX_OPEN_EVENTS
        || state.ids.len() >= RUN_ENTRIES
        || state.claims.len() >= RUN_ENTRIES;
    drop(state);
    if wake {
        super::maintenance::wake(shared);
    }
    outcomes
}

/// The organization's number if it is live (exists and is not deleted).
fn live_number(connection: &Connection, organization_id: &str) -> Result<Option<u32>, StoreError> {
    Ok(connection
        .prepare_cached(
            "SELECT n.number FROM organizations o JOIN log_organizations n ON n.id = o.id
             WHERE o.id = ?1 AND o.deleted_at IS NULL",
        )?
        .query_row([organization_id], |row| row.get(0))
        .optional()?)
}

/// The answer an earlier append with this identity gave, if its claim still answers.
fn earlier_claim(
    shared: &Shared,
    connection: &Connection,
    identity: &[u8; 32],
    now: Timestamp,
) -> Result<Option<AppendOutcome>, StoreError> {
    let in_memory = {
        let state = shared.read_state()?;
        state
            .claims
            .get(identity)
            .or_else(|| state.claims_flushing.as_ref().and_then(|f| f.get(identity)))
            .copied()
    };
    let entry = match in_memory {
        Some(entry) => Some(entry),
        None => shared.claims.find(identity)?,
    };
    if let Some(entry) = entry {
        if !rules::idempotency_record_answers(Timestamp::from_unix_millis(entry.b), now) {
            return Ok(None);
        }
        let bytes = shared
            .segments
            .read_at(entry.position, entry.length as usize)?;
        // A claimed frame's bodies may have been purged since: only they carry a CRC then.
        let frame = decode_frame(&bytes, false).map_err(|e| {
            StoreError::Corrupt(format!("a claimed frame at {}: {e}", entry.position))
        })?;
        let receipts = frame
            .events
            .iter()
            .enumerate()
            .map(|(index, (event, _, _))| Receipt {
                id: event.id.clone(),
                sequence: frame.first_sequence + index as u64,
                leaf_hash: event.leaf_hash,
            })
            .collect();
        let outcome = frame.claim.map(|claim| claim.outcome).unwrap_or_default();
        return Ok(Some(AppendOutcome::Replayed { receipts, outcome }));
    }
    match shared.legacy_claims_until {
        Some(until)
            if rules::idempotency_record_answers(Timestamp::from_unix_millis(until), now) =>
        {
            legacy_claim(shared, connection, identity, now)
        }
        _ => Ok(None),
    }
}

/// A claim recorded before the log existed (in the `idempotency` table), while it still answers.
fn legacy_claim(
    shared: &Shared,
    connection: &Connection,
    identity: &[u8; 32],
    now: Timestamp,
) -> Result<Option<AppendOutcome>, StoreError> {
    let row: Option<(String, i64, i64, Vec<u8>, i64)> = connection
        .prepare_cached(
            "SELECT organization_id, first_sequence, event_count, outcome, expires_at
             FROM idempotency WHERE identity = ?1",
        )?
        .query_row([identity.as_slice()], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    let Some((organization_id, first, count, outcome, expires_at)) = row else {
        return Ok(None);
    };
    if !rules::idempotency_record_answers(Timestamp::from_unix_millis(expires_at), now) {
        return Ok(None);
    }
    let receipts = super::read::receipts_between(
        shared,
        connection,
        &organization_id,
        first as u64,
        count as u64,
    )?;
    Ok(Some(AppendOutcome::Replayed { receipts, outcome }))
}

fn failed() -> StoreError {
    StoreError::Unavailable(
        "an earlier write to the log failed and its end is unknown; restart Trailmark".into(),
    )
}
