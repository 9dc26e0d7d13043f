//! Group commit for appends: the PostgreSQL counterpart of the embedded log's writer.
//!
//! Appends wait in one queue per organization. A committer task takes every organization with
//! waiting appends that no other committer of this instance is writing (up to
//! [`MAX_ORGANIZATIONS_PER_COMMIT`]), opens one transaction, locks their log heads, and only then
//! takes all of their waiting appends (up to a bound): appends that arrive while a lock is
//! awaited — because another instance is committing for the same organization — join the group
//! instead of waiting for the next one. Sequences and Merkle nodes are computed in memory, and
//! each table gets one bulk `INSERT … SELECT FROM UNNEST(…)`. An ingest turn is three round
//! trips: `BEGIN` with the head lock, the idempotency lookup, and the inserts with the `COMMIT`,
//! each set pipelined on the connection. A turn without idempotency claims (system events)
//! takes two; one takes more to prepare a new connection's statements, to replay an earlier
//! answer, delete expired claims, skip a held head, or find an organization deleted. So one WAL
//! flush and three round trips carry the appends of many organizations: a transaction's fixed
//! cost (its round trips, its commit record and flush) is shared by all of them rather than paid
//! once per organization, which is what many organizations' small groups spent most of
//! PostgreSQL's time on.
//!
//! While a turn is in flight, the next starts only once [`PARALLEL_TURN_EVENTS`] events wait:
//! single events gather into one turn per commit, and batches still commit side by side.
//!
//! Heads another instance holds are skipped (`SKIP LOCKED`) and their appends wait for this
//! instance's next turn, so instances writing different organizations do not wait for each
//! other. A committer waits for heads only while it holds none — when every head it wants is
//! held elsewhere, or in the turn that follows a skip, which takes the skipped organizations
//! alone so that they are not skipped for ever — and then locks them in id order, so two
//! transactions never wait on each other in a cycle. An organization is created with its head,
//! so a turn makes one (while it may hold others) only for an organization that a previous
//! version, still running beside this one, created without.
//!
//! The committers run on a thread of their own ([`Appender::start`] says why).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Object, Pool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use trailmark_domain::Timestamp;
use trailmark_ledger::tree::Frontier;

use super::pool_error;
use crate::StoreError;
use crate::model::{AppendOutcome, AppendRequest, Receipt};
use crate::observe::{Commit, StoreObserver};
use crate::rows::frontier;
use crate::rules::{self, PreparedAppend, PreparedEvent};

/// Appends that may wait for a committer before senders wait too (back-pressure).
const QUEUE_DEPTH: usize = 8_192;
/// A group stops growing once it holds this many events, which bounds one transaction's size.
const MAX_EVENTS_PER_COMMIT: usize = 10_000;
/// Organizations one transaction writes at most.
const MAX_ORGANIZATIONS_PER_COMMIT: usize = 64;
/// Transactions in flight at once from this instance at most, each for other organizations.
pub(super) const COMMITTERS: usize = 4;
/// While a turn is in flight, another starts only once this many events wait for it. Small
/// appends then gather into the next turn: a committer free to start at once took one or two
/// of them, and with eight organizations turns of about ten events cost PostgreSQL twice the
/// CPU per event (measured with `trailmark-bench postgres`). Batches still commit side by side.
const PARALLEL_TURN_EVENTS: usize = 256;

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// One waiting append, holding its place in the queue.
struct Job {
    append: PreparedAppend,
    reply: Reply,
    _permit: OwnedSemaphorePermit,
}

/// The waiting appends, by organization.
#[derive(Default)]
struct Waiting {
    by_organization: HashMap<String, VecDeque<Job>>,
    /// Organizations with waiting appends, the longest waiting first.
    order: VecDeque<String>,
    /// Organizations a committer of this instance is writing now.
    busy: HashSet<String>,
    /// Organizations whose heads another instance held when a committer of this one skipped
    /// them: their next turn waits for their heads, so they are not skipped again and again.
    skipped: HashSet<String>,
    closed: bool,
}

impl Waiting {
    /// Queues `job` behind its organization's waiting appends.
    fn push(&mut self, job: Job) {
        let organization = job.append.organization_id.clone();
        let queue = self
            .by_organization
            .entry(organization.clone())
            .or_default();
        let first = queue.is_empty();
        queue.push_back(job);
        if first {
            self.order.push_back(organization);
        }
    }
}

struct Queues {
    waiting: Mutex<Waiting>,
    /// Told when an append makes a turn ready to start, when a committer takes a turn and leaves
    /// another ready ([`Queues::wake_a_committer_if_ready`]), when a turn ends, and when the
    /// queues close.
    changed: Notify,
    room: Arc<Semaphore>,
}

impl Queues {
    fn new() -> Self {
        Queues {
            waiting: Mutex::new(Waiting::default()),
            changed: Notify::new(),
            room: Arc::new(Semaphore::new(QUEUE_DEPTH)),
        }
    }

    /// Wakes a committer if one may start a turn for what `waiting` holds
    /// ([`ready_for_a_turn`]). Otherwise none is woken: the turns in flight wake them as they
    /// end (`end_turn`). Waking one for nothing (its thread sleeps in its runtime's poll, so
    /// each wake is a write to that runtime's eventfd and a context switch) cost the instance
    /// 5-17 of its 57-67 us of CPU per single event when every append did
    /// (`trailmark-bench postgres`).
    fn wake_a_committer_if_ready(&self, waiting: &Waiting) {
        if ready_for_a_turn(waiting) {
            self.changed.notify_one();
        }
    }
}

/// Closes the queues when the last [`Appender`] goes, so the committers end.
struct Handle(Arc<Queues>);

impl Drop for Handle {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.0.waiting.lock() {
            waiting.closed = true;
        }
        self.0.changed.notify_waiters();
    }
}

/// The handle appends go through; clones share the queues.
#[derive(Clone)]
pub(crate) struct Appender {
    handle: Arc<Handle>,
}

impl Appender {
    /// Starts the committer tasks on a thread of their own, writing through `pool` (which only
    /// they use); they stop when the last handle is dropped.
    ///
    /// Their own thread, because a turn is mostly round trips: each statement's answer wakes the
    /// committer, which sends the next. On the server's runtime each wake-up waited behind the
    /// HTTP requests in its queues — sampled in `pg_stat_activity`, the committers' sessions
    /// were idle in their transactions, waiting for the next statement, for most of every turn.
    /// A thread that sleeps between answers is run as soon as it wakes. The pool's connections
    /// are made on this thread, so their I/O is driven here too.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the thread or its runtime cannot be started.
    pub(crate) async fn start(
        pool: Pool,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<Self, StoreError> {
        let queues = Arc::new(Queues::new());
        // Made first: if this future is dropped before the thread has started, dropping the
        // handle closes the queues and the committers end.
        let handle = Arc::new(Handle(Arc::clone(&queues)));
        let (started, ready) = oneshot::channel();
        std::thread::Builder::new()
            .name("trailmark-committer".into())
            .spawn(move || {
                // Made (and so dropped) on this thread: a runtime may not be dropped in another's
                // asynchronous context.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(async move {
                    let mut committers = tokio::task::JoinSet::new();
                    for _ in 0..COMMITTERS {
                        committers.spawn(run_committer(
                            pool.clone(),
                            Arc::clone(&queues),
                            Arc::clone(&observer),
                        ));
                    }
                    while let Some(ended) = committers.join_next().await {
                        if let Err(error) = ended {
                            // A bug: its organizations stay busy, and their appends wait.
                            tracing::error!(%error, "an append committer stopped");
                        }
                    }
                });
            })
            .map_err(|e| StoreError::Unavailable(format!("the appender's thread: {e}")))?;
        match ready.await {
            Ok(Ok(())) => Ok(Appender { handle }),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                "the appender's runtime: {error}"
            ))),
            Err(_) => Err(StoreError::Unavailable(
                "the appender's thread ended at its start".into(),
            )),
        }
    }

    /// Appends `request` in the next group commit of its organization; returns once that
    /// commit is durable.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        // Prepared beside the other requests, so a committer only assigns sequences and writes.
        self.append_prepared(PreparedAppend::prepare(request).await?)
            .await
    }

    /// [`Appender::append`] of an append already prepared (here, or by the instance that
    /// handed it over).
    pub(crate) async fn append_prepared(
        &self,
        append: PreparedAppend,
    ) -> Result<AppendOutcome, StoreError> {
        let queues = &self.handle.0;
        let permit = Arc::clone(&queues.room)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the appender has stopped".into()))?;
        let (reply, answer) = oneshot::channel();
        {
            let mut waiting = queues
                .waiting
                .lock()
                .map_err(|_| StoreError::Unavailable("the append queue is poisoned".into()))?;
            waiting.push(Job {
                append,
                reply,
                _permit: permit,
            });
            queues.wake_a_committer_if_ready(&waiting);
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the append was not committed".into()))?
    }
}

/// The organizations a committer writes in one transaction.
struct Turn {
    organizations: Vec<String>,
    /// Wait for their heads rather than skip those another instance holds.
    wait: bool,
}

/// Picks the organizations with waiting appends that no committer of this instance is writing,
/// the longest waiting first (up to [`MAX_ORGANIZATIONS_PER_COMMIT`]), and marks them busy;
/// `None` once the queues are closed and empty. Organizations skipped last time make a turn of
/// their own, which waits for their heads. Their appends stay queued until [`take_group`], so
/// that those arriving meanwhile join the same group.
async fn next_turn(queues: &Queues) -> Option<Turn> {
    loop {
        let notified = queues.changed.notified();
        {
            let mut waiting = queues.waiting.lock().ok()?;
            let waiting = &mut *waiting;
            // While a turn is in flight, small appends wait for the next one (woken by an
            // append that makes a turn ready, and when a turn ends).
            let ready = waiting.closed || ready_for_a_turn(waiting);
            let wait = waiting
                .order
                .iter()
                .any(|o| waiting.skipped.contains(o) && !waiting.busy.contains(o));
            let mut organizations = Vec::new();
            let mut at = 0;
            while ready
                && at < waiting.order.len()
                && organizations.len() < MAX_ORGANIZATIONS_PER_COMMIT
            {
                let organization = &waiting.order[at];
                if waiting.busy.contains(organization)
                    || (wait && !waiting.skipped.contains(organization))
                {
                    at += 1;
                    continue;
                }
                if let Some(organization) = waiting.order.remove(at) {
                    waiting.skipped.remove(&organization);
                    waiting.busy.insert(organization.clone());
                    organizations.push(organization);
                }
            }
            if !organizations.is_empty() {
                // What is left may make a turn of its own (beside this one, or past the
                // organizations one turn takes at most): another committer takes it.
                queues.wake_a_committer_if_ready(waiting);
                return Some(Turn {
                    organizations,
                    wait,
                });
            }
            if waiting.closed && waiting.by_organization.is_empty() {
                return None;
            }
        }
        notified.await;
    }
}

/// Whether a committer may start a turn for the waiting appends: when no turn is in flight, or
/// when enough wait for one beside it.
fn ready_for_a_turn(waiting: &Waiting) -> bool {
    waiting.busy.is_empty() || enough_waiting_for_a_parallel_turn(waiting)
}

/// Whether at least [`PARALLEL_TURN_EVENTS`] events wait in the queues of organizations no
/// committer is writing; it stops counting there, since it runs on every append while a turn
/// is in flight and on every wake-up.
fn enough_waiting_for_a_parallel_turn(waiting: &Waiting) -> bool {
    let mut events = 0;
    waiting
        .order
        .iter()
        .filter(|organization| !waiting.busy.contains(*organization))
        .filter_map(|organization| waiting.by_organization.get(organization))
        .flatten()
        .any(|job| {
            events += job.append.events.len();
            events >= PARALLEL_TURN_EVENTS
        })
}

/// Takes `organization`'s waiting appends while the group holds fewer than `limit` events; what
/// is left waits for the organization's next turn.
fn take_group(queues: &Queues, organization: &str, limit: usize) -> Vec<Job> {
    let Ok(mut waiting) = queues.waiting.lock() else {
        return Vec::new();
    };
    let Some(queue) = waiting.by_organization.get_mut(organization) else {
        return Vec::new();
    };
    let mut events = 0;
    let mut group = Vec::new();
    while events < limit
        && let Some(job) = queue.pop_front()
    {
        events += job.append.events.len();
        group.push(job);
    }
    if queue.is_empty() {
        waiting.by_organization.remove(organization);
    } else {
        waiting.order.push_back(organization.to_owned());
    }
    group
}

/// Ends a committer's turn on `organizations`: they are free again, and `held` (whose heads
/// another instance held, so none of their appends were taken) go back to the front of the
/// queue, in their order, for a turn that waits for them.
fn end_turn(queues: &Queues, organizations: &[String], held: &[String]) {
    if let Ok(mut waiting) = queues.waiting.lock() {
        for organization in organizations {
            waiting.busy.remove(organization);
        }
        for organization in held.iter().rev() {
            waiting.order.push_front(organization.clone());
            waiting.skipped.insert(organization.clone());
        }
    }
    // Another committer may be waiting for these organizations, or for appends that queued
    // behind this turn (an append wakes none while no turn is ready).
    queues.changed.notify_waiters();
}

async fn run_committer(pool: Pool, queues: Arc<Queues>, observer: Arc<dyn StoreObserver>) {
    while let Some(turn) = next_turn(&queues).await {
        let held = commit(&pool, &queues, &turn, observer.as_ref()).await;
        end_turn(&queues, &turn.organizations, &held);
    }
}

/// Commits the waiting appends of the turn's organizations in one transaction and answers each
/// of them; returns the organizations whose heads another instance held, whose appends still
/// wait.
async fn commit(
    pool: &Pool,
    queues: &Queues,
    turn: &Turn,
    observer: &dyn StoreObserver,
) -> Vec<String> {
    let organizations = &turn.organizations;
    let mut replies = Vec::new();
    let mut held = Vec::new();
    match commit_group(pool, queues, turn, observer, &mut replies, &mut held).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have gone away (client disconnected); the write stands anyway.
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            if replies.is_empty() {
                // The transaction failed before the group was taken: it fails the waiting ones.
                held.clear();
                replies = organizations
                    .iter()
                    .flat_map(|organization| take_group(queues, organization, usize::MAX))
                    .map(|job| job.reply)
                    .collect();
            }
            // What each reply's error says (its kind is the variant). tokio-postgres keeps the
            // server's message in the error's source.
            let (transient, reason) = match &error {
                StoreError::Unavailable(reason) => (true, reason.clone()),
                StoreError::Database(inner) => (false, super::with_causes(inner.as_ref())),
                other => (false, other.to_string()),
            };
            tracing::warn!(error = %reason, jobs = replies.len(), "a group commit failed");
            for reply in replies {
                let _ = reply.send(Err(if transient {
                    StoreError::Unavailable(reason.clone())
                } else {
                    StoreError::Database(reason.clone().into())
                }));
            }
        }
    }
    held
}

/// Opens a transaction, locks the log heads of the turn's organizations — unless the turn
/// waits, only those no other instance holds (into `held` go those it does) —, then takes the
/// others' waiting appends (their replies into `replies`) and commits them. Nothing in a
/// request's content can make the transaction fail (organizations are checked and replays found
/// before anything is written; a body escapes NUL, which a text column cannot hold), so a failure
/// is the database's and fails the group.
async fn commit_group(
    pool: &Pool,
    queues: &Queues,
    turn: &Turn,
    observer: &dyn StoreObserver,
    replies: &mut Vec<Reply>,
    held: &mut Vec<String>,
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let organizations = &turn.organizations;
    // Not reported as a wait for a connection: that figure is the main pool's, and each
    // committer has a connection of this pool to itself.
    let connection = InTransaction(Some(pool.get().await.map_err(pool_error)?));
    let client = connection.client()?;
    let started = Instant::now();
    let mut flush = Duration::ZERO;
    let mut events = 0;
    let result = async {
        // `BEGIN` goes ahead of the head lock in the same round trip (as `COMMIT` goes behind
        // the writes below): a turn is mostly round trips. `biased` polls the futures, and so
        // sends their statements, in the order written.
        let (_, (heads, held_elsewhere)) = tokio::try_join!(
            biased;
            async { Ok::<_, StoreError>(client.batch_execute("BEGIN").await?) },
            async {
                if turn.wait {
                    Ok((lock_heads(client, organizations).await?, Vec::new()))
                } else {
                    lock_free_heads(client, organizations).await
                }
            },
        )?;
        *held = held_elsewhere;
        let mut requests = Vec::new();
        // Organizations that are not live are taken too: their appends fail in `append_locked`.
        for organization in organizations.iter().filter(|o| !held.contains(o)) {
            for job in take_group(
                queues,
                organization,
                MAX_EVENTS_PER_COMMIT.saturating_sub(events),
            ) {
                events += job.append.events.len();
                replies.push(job.reply);
                requests.push(job.append);
            }
        }
        // tokio-postgres's client: `append_locked` plans its lookups per group (`query_typed`).
        let (outcomes, writes) = append_locked(&***client, heads, requests).await?;
        let statements = WriteStatements::prepare(client).await?;
        let flushing = Instant::now();
        writes.write_and_commit(client, &statements).await?;
        flush = flushing.elapsed();
        Ok(outcomes)
    }
    .await;
    // The error may have come before the `COMMIT` was sent, leaving the transaction open (and
    // perhaps aborted); a connection goes back to the pool outside any. After a `COMMIT`, this
    // `ROLLBACK` only warns that no transaction is in progress.
    if result.is_ok() || client.batch_execute("ROLLBACK").await.is_ok() {
        connection.release();
    }
    observer.commit(&Commit {
        events,
        total: started.elapsed(),
        flush,
        committed: result.is_ok(),
    });
    result
}

/// A pooled connection while a turn's transaction may be open. Unless [`InTransaction::release`]d
/// once the transaction is over, it is closed rather than given back to the pool (the server then
/// rolls the transaction back): a committer that panics mid-turn must not leave the next turn on
/// this connection inside its transaction, holding its heads.
struct InTransaction(Option<Object>);

impl InTransaction {
    fn client(&self) -> Result<&Object, StoreError> {
        self.0
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the connection was released".into()))
    }

    /// Gives the connection back to the pool: its transaction is over.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(Object::take(connection));
        }
    }
}

/// The live organizations among `organizations` whose heads `client`'s transaction locked, and
/// those it left alone: heads another transaction holds are skipped (`SKIP LOCKED`), and so is
/// a live organization without a head (made by a version that created heads on first append).
/// Only when it locked none does it wait for them (and create the missing ones: [`lock_heads`]).
/// With one organization there is nothing to skip to, and it waits for it.
async fn lock_free_heads(
    client: &impl GenericClient,
    organizations: &[String],
) -> Result<(HashMap<String, Frontier>, Vec<String>), StoreError> {
    if organizations.len() == 1 {
        return Ok((lock_heads(client, organizations).await?, Vec::new()));
    }
    let heads = heads_of(&query_cached(client, LOCK_FREE_HEADS, &[&organizations]).await?)?;
    if heads.len() == organizations.len() {
        return Ok((heads, Vec::new()));
    }
    let rest: Vec<&str> = organizations
        .iter()
        .map(String::as_str)
        .filter(|organization| !heads.contains_key(*organization))
        .collect();
    let live: Vec<String> = query_cached(
        client,
        "SELECT id FROM organizations WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id",
        &[&rest],
    )
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, _>>()?;
    if heads.is_empty() && !live.is_empty() {
        // Holding no head, this transaction cannot be part of a cycle while it waits.
        return Ok((lock_heads(client, &live).await?, Vec::new()));
    }
    Ok((heads, live))
}

/// Locks the log heads of the live ones among `organizations` in id order, so that two
/// transactions never wait on each other in a cycle, and returns their frontiers; an
/// organization that is not live has none. A live organization without a head (see
/// [`lock_free_heads`]) is given one.
pub(crate) async fn lock_heads(
    client: &impl GenericClient,
    organizations: &[String],
) -> Result<HashMap<String, Frontier>, StoreError> {
    let mut rows = query_cached(client, LOCK_HEADS, &[&organizations]).await?;
    // Fewer rows: an organization that is not live, or one without a head.
    if rows.len() < organizations.len() {
        create_missing_heads(client, organizations).await?;
        rows = query_cached(client, LOCK_HEADS, &[&organizations]).await?;
    }
    heads_of(&rows)
}

/// Locks the heads of the live ones among `$1` in id order, waiting for those another
/// transaction holds ([`lock_heads`]).
const LOCK_HEADS: &str = "SELECT h.organization_id, h.size, h.frontier FROM log_heads h
     JOIN organizations o ON o.id = h.organization_id AND o.deleted_at IS NULL
     WHERE h.organization_id = ANY($1) ORDER BY h.organization_id FOR UPDATE OF h";
/// [`LOCK_HEADS`], skipping the heads another transaction holds ([`lock_free_heads`]).
const LOCK_FREE_HEADS: &str = "SELECT h.organization_id, h.size, h.frontier FROM log_heads h
     JOIN organizations o ON o.id = h.organization_id AND o.deleted_at IS NULL
     WHERE h.organization_id = ANY($1) ORDER BY h.organization_id FOR UPDATE OF h SKIP LOCKED";

/// Creates empty log heads for the live ones among `organizations` that have none. An existing
/// head is seen without inserting: `ON CONFLICT` alone waits for a transaction that updated it.
/// Since an organization is created with its head (migration 13 gave the earlier ones theirs),
/// this finds none to create unless a version that did not do so created the organization.
async fn create_missing_heads(
    client: &impl GenericClient,
    organizations: &[String],
) -> Result<(), StoreError> {
    execute_cached(
        client,
        "INSERT INTO log_heads (organization_id, size, frontier)
             SELECT o.id, 0, ''::BYTEA FROM organizations o
             WHERE o.id = ANY($1) AND o.deleted_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM log_heads h WHERE h.organization_id = o.id)
             ORDER BY o.id
             ON CONFLICT DO NOTHING",
        &[&organizations],
    )
    .await?;
    Ok(())
}

/// The frontiers of locked `log_heads` rows (organization, size, frontier), by organization.
fn heads_of(rows: &[Row]) -> Result<HashMap<String, Frontier>, StoreError> {
    rows.iter()
        .map(|row| {
            let organization: String = row.try_get(0)?;
            let head = frontier(&organization, row.try_get(1)?, row.try_get(2)?)?;
            Ok((organization, head))
        })
        .collect()
}

/// Appends every request inside `client`'s transaction, whose organizations' `heads` (from
/// [`lock_heads`]: only the live ones) it holds locked: returns each request's outcome, in
/// order, and the writes that store them, for the caller to send before its `COMMIT`. A request
/// for an organization that is not live (no head among `heads`) fails alone. An error is a
/// failure of the whole transaction.
pub(crate) async fn append_locked(
    client: &impl tokio_postgres::GenericClient,
    mut heads: HashMap<String, Frontier>,
    requests: Vec<PreparedAppend>,
) -> Result<(Vec<Result<AppendOutcome, StoreError>>, Writes), StoreError> {
    let live: HashSet<String> = heads.keys().cloned().collect();

    // Read after the heads are locked: an earlier commit with the same identity (necessarily
    // the same organization) has finished by now, and this statement sees it.
    let identities: Vec<&[u8]> = requests
        .iter()
        .filter(|r| live.contains(&r.organization_id))
        .filter_map(|r| r.idempotency.as_ref().map(|c| c.identity.as_slice()))
        .collect();
    let mut answered: HashMap<Vec<u8>, Earlier> = HashMap::new();
    // Expired records of identities in the group, deleted before it claims them anew.
    let mut expired: Vec<Vec<u8>> = Vec::new();
    if !identities.is_empty() {
        let now = Timestamp::now();
        // Planned for each group, unlike the cached statements (so is the DELETE below): a
        // plan made once for any array and cached while the table was small scans the whole
        // table (it did in `trailmark-bench postgres`, each group slower than the last, until
        // the next ANALYZE).
        for row in client
            .query_typed(
                "SELECT identity, organization_id, first_sequence, event_count, outcome, expires_at
                     FROM idempotency WHERE identity = ANY($1)",
                &[(&identities, Type::BYTEA_ARRAY)],
            )
            .await?
        {
            let expires_at = Timestamp::from_unix_millis(row.try_get(5)?);
            if rules::idempotency_record_answers(expires_at, now) {
                answered.insert(
                    row.try_get(0)?,
                    Earlier::Committed {
                        organization: row.try_get(1)?,
                        first: row.try_get(2)?,
                        count: row.try_get(3)?,
                        outcome: row.try_get(4)?,
                    },
                );
            } else {
                expired.push(row.try_get(0)?);
            }
        }
    }
    if !expired.is_empty() {
        // So the claims are plain inserts: an `ON CONFLICT` insert writes a second WAL record
        // for every row (its confirmation), about 50 bytes an event for single events. No other
        // transaction claims these identities meanwhile: each belongs to an organization whose
        // head this one holds.
        client
            .query_typed(
                "DELETE FROM idempotency WHERE identity = ANY($1)",
                &[(&expired, Type::BYTEA_ARRAY)],
            )
            .await?;
    }

    let mut rows = Rows::default();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let organization = request.organization_id;
        let Some(head) = heads.get_mut(&organization) else {
            outcomes.push(Err(StoreError::OrganizationNotFound(organization)));
            continue;
        };
        if let Some(earlier) = request
            .idempotency
            .as_ref()
            .and_then(|claim| answered.get(claim.identity.as_slice()))
        {
            let (receipts, outcome) = match earlier {
                Earlier::Committed {
                    organization,
                    first,
                    count,
                    outcome,
                } => (
                    receipts_between(client, organization, *first, *count).await?,
                    outcome.clone(),
                ),
                Earlier::InGroup { receipts, outcome } => (receipts.clone(), outcome.clone()),
            };
            outcomes.push(Ok(AppendOutcome::Replayed { receipts, outcome }));
            continue;
        }
        let first_sequence = head.size() as i64;
        let mut receipts = Vec::with_capacity(request.events.len());
        for event in &request.events {
            receipts.push(rows.add_event(head, &organization, event));
        }
        if let Some(claim) = request.idempotency {
            rows.add_claim(
                &organization,
                &claim.identity,
                first_sequence,
                receipts.len() as i64,
                &claim.outcome,
                claim.expires_at,
            );
            answered.insert(
                claim.identity.to_vec(),
                Earlier::InGroup {
                    receipts: receipts.clone(),
                    outcome: claim.outcome,
                },
            );
        }
        outcomes.push(Ok(AppendOutcome::Appended { receipts }));
    }
    let mut writes = Writes {
        rows,
        ..Writes::default()
    };
    for (organization, head) in heads {
        writes.head_organization.push(organization);
        writes.head_size.push(head.size() as i64);
        writes.head_frontier.push(head.hashes().concat());
    }
    Ok((outcomes, writes))
}

/// An earlier append with the same idempotency identity as a request in the group.
enum Earlier {
    /// Committed before this group: its receipts are read back from its events.
    Committed {
        organization: String,
        first: i64,
        count: i64,
        outcome: Vec<u8>,
    },
    /// Earlier in this group: its events are not written yet, so its receipts are kept.
    InGroup {
        receipts: Vec<Receipt>,
        outcome: Vec<u8>,
    },
}

/// The rows one group inserts, column by column, for `UNNEST`.
#[derive(Default)]
struct Rows {
    organization: Vec<String>,
    sequence: Vec<i64>,
    id: Vec<String>,
    occurred_at: Vec<i64>,
    received_at: Vec<i64>,
    leaf_hash: Vec<Vec<u8>>,
    body: Vec<String>,
    node_organization: Vec<String>,
    node_level: Vec<i32>,
    node_index: Vec<i64>,
    node_hash: Vec<Vec<u8>>,
    identity: Vec<Vec<u8>>,
    identity_organization: Vec<String>,
    first_sequence: Vec<i64>,
    event_count: Vec<i64>,
    outcome: Vec<Vec<u8>>,
    expires_at: Vec<i64>,
}

impl Rows {
    fn add_event(
        &mut self,
        head: &mut Frontier,
        organization: &str,
        event: &PreparedEvent,
    ) -> Receipt {
        let (receipt, nodes) = rules::sequence(head, event);
        let sequence = receipt.sequence as i64;
        // The leaf itself is the event's `leaf_hash`; of the nodes above, the levels the readers
        // hash the others from.
        for node in nodes
            .into_iter()
            .filter(|node| node.level > 0 && super::stored_level(node.level) == node.level)
        {
            self.node_organization.push(organization.to_owned());
            self.node_level.push(node.level as i32);
            self.node_index.push(node.index as i64);
            self.node_hash.push(node.hash.to_vec());
        }
        self.organization.push(organization.to_owned());
        self.sequence.push(sequence);
        self.id.push(event.id.clone());
        self.occurred_at.push(event.occurred_at.unix_millis());
        self.received_at.push(event.received_at.unix_millis());
        self.leaf_hash.push(receipt.leaf_hash.to_vec());
        self.body.push(event.body.clone());
        receipt
    }

    fn add_claim(
        &mut self,
        organization: &str,
        identity: &[u8; 32],
        first_sequence: i64,
        event_count: i64,
        outcome: &[u8],
        expires_at: Timestamp,
    ) {
        self.identity.push(identity.to_vec());
        self.identity_organization.push(organization.to_owned());
        self.first_sequence.push(first_sequence);
        self.event_count.push(event_count);
        self.outcome.push(outcome.to_vec());
        self.expires_at.push(expires_at.unix_millis());
    }
}

/// A group's writes: its rows, and its heads' new sizes and frontiers.
#[derive(Default)]
pub(crate) struct Writes {
    rows: Rows,
    head_organization: Vec<String>,
    head_size: Vec<i64>,
    head_frontier: Vec<Vec<u8>>,
}

/// The statements of [`Writes`], prepared on one connection.
pub(crate) struct WriteStatements {
    events: Statement,
    nodes: Statement,
    claims: Statement,
    heads: Statement,
}

impl WriteStatements {
    /// Prepares the statements on `client`: once per connection (the pool caches them), so
    /// PostgreSQL parses and plans each once rather than once per group.
    pub(crate) async fn prepare(client: &impl GenericClient) -> Result<Self, StoreError> {
        let (events, nodes, claims, heads) = tokio::try_join!(
            client.prepare_cached(
                "INSERT INTO events (organization_id, sequence, id, occurred_at, received_at, leaf_hash, body)
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[],
                    $6::BYTEA[], $7::TEXT[])"
            ),
            client.prepare_cached(
                "INSERT INTO merkle_nodes (organization_id, level, idx, hash)
                 SELECT * FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::BIGINT[], $4::BYTEA[])"
            ),
            // An expired record with the same identity was deleted before.
            client.prepare_cached(
                "INSERT INTO idempotency (identity, organization_id, first_sequence, event_count, outcome, expires_at)
                 SELECT * FROM UNNEST($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[])"
            ),
            client.prepare_cached(
                "UPDATE log_heads h SET size = u.size, frontier = u.frontier
                 FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BYTEA[]) AS u(organization_id, size, frontier)
                 WHERE h.organization_id = u.organization_id AND h.size <> u.size"
            ),
        )?;
        Ok(WriteStatements {
            events,
            nodes,
            claims,
            heads,
        })
    }
}

impl Writes {
    /// Sends the writes together, pipelined on the connection: one round trip for all.
    pub(crate) async fn write(
        &self,
        client: &impl GenericClient,
        statements: &WriteStatements,
    ) -> Result<(), StoreError> {
        let rows = &self.rows;
        let events: [&(dyn ToSql + Sync); 7] = [
            &rows.organization,
            &rows.sequence,
            &rows.id,
            &rows.occurred_at,
            &rows.received_at,
            &rows.leaf_hash,
            &rows.body,
        ];
        let nodes: [&(dyn ToSql + Sync); 4] = [
            &rows.node_organization,
            &rows.node_level,
            &rows.node_index,
            &rows.node_hash,
        ];
        let claims: [&(dyn ToSql + Sync); 6] = [
            &rows.identity,
            &rows.identity_organization,
            &rows.first_sequence,
            &rows.event_count,
            &rows.outcome,
            &rows.expires_at,
        ];
        let heads: [&(dyn ToSql + Sync); 3] = [
            &self.head_organization,
            &self.head_size,
            &self.head_frontier,
        ];
        // Each future sends its statement when first polled (the statement is prepared, so
        // nothing is awaited before), and `biased` polls them in this order: see
        // [`Writes::write_and_commit`], which relies on it.
        tokio::try_join!(
            biased;
            execute_unless_empty(client, &statements.events, rows.id.is_empty(), &events),
            execute_unless_empty(client, &statements.nodes, rows.node_hash.is_empty(), &nodes),
            execute_unless_empty(client, &statements.claims, rows.identity.is_empty(), &claims),
            execute_unless_empty(
                client,
                &statements.heads,
                self.head_organization.is_empty(),
                &heads
            ),
        )?;
        Ok(())
    }

    /// [`Writes::write`], with the transaction's `COMMIT` sent behind the writes in the same
    /// round trip. It cannot overtake them: each write is sent at its first poll, and `biased`
    /// polls the writes first. A write that fails aborts the transaction, which its `COMMIT`
    /// then rolls back — and the write's error is returned, so no such group is answered as
    /// stored.
    async fn write_and_commit(
        &self,
        client: &impl GenericClient,
        statements: &WriteStatements,
    ) -> Result<(), StoreError> {
        tokio::try_join!(
            biased;
            self.write(client, statements),
            async { Ok::<(), StoreError>(client.batch_execute("COMMIT").await?) },
        )?;
        Ok(())
    }
}

/// Runs the prepared `statement` unless it has no rows to write (`empty`). Its message is sent
/// at the first poll: nothing is awaited before.
async fn execute_unless_empty(
    client: &impl GenericClient,
    statement: &Statement,
    empty: bool,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    if !empty {
        client.execute(statement, params).await?;
    }
    Ok(())
}

/// The receipts of `count` events of a log from sequence `first` on: what an earlier append
/// answered. Sent unprepared (`query_typed`, still one round trip), as `append_locked`'s
/// client is tokio-postgres's, which caches no statements.
async fn receipts_between(
    client: &impl tokio_postgres::GenericClient,
    organization_id: &str,
    first: i64,
    count: i64,
) -> Result<Vec<Receipt>, StoreError> {
    client
        .query_typed(
            "SELECT id, sequence, leaf_hash FROM events WHERE organization_id = $1 AND sequence >= $2 AND sequence < $3
             ORDER BY sequence",
            &[
                (&organization_id, Type::TEXT),
                (&first, Type::INT8),
                (&(first + count), Type::INT8),
            ],
        )
        .await?
        .iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            let sequence: i64 = row.try_get(1)?;
            Ok(Receipt {
                leaf_hash: crate::rows::hash(row.try_get(2)?, || format!("event {id}: leaf_hash"))?,
                id,
                sequence: sequence as u64,
            })
        })
        .collect()
}

/// Runs `sql` as a statement prepared once per connection (the pool caches it): an append's
/// statements are the same every time, so PostgreSQL parses and plans each once per connection
/// rather than once per group, and a group saves a round trip per statement.
async fn execute_cached(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

/// [`execute_cached`] for a statement that returns rows.
async fn query_cached(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use trailmark_domain::event::NewEvent;

    use super::*;
    use crate::model::PendingEvent;

    /// Queues `events` events for `organization` as one append, as [`Appender::append`] does
    /// (without waking a committer).
    fn queue(queues: &Queues, organization: &str, events: u64) {
        let request = AppendRequest {
            organization_id: organization.to_owned(),
            events: (0..events)
                .map(|n| PendingEvent {
                    id: format!("event_{n:026}"),
                    event: NewEvent::parse(&json!({
                        "action": "user.signed_in",
                        "occurred_at": "2026-08-01T10:00:00Z",
                        "actor": {"id": "u", "type": "user"},
                        "targets": [],
                        "context": {"location": "::1"}
                    }))
                    .expect("valid event"),
                    received_at: Timestamp::now(),
                })
                .collect(),
            idempotency: None,
        };
        let job = Job {
            append: PreparedAppend::new(request).expect("prepared"),
            reply: oneshot::channel().0,
            _permit: Arc::clone(&queues.room)
                .try_acquire_owned()
                .expect("room in the queue"),
        };
        queues.waiting.lock().expect("queues").push(job);
    }

    /// An append wakes a committer only when a turn can start: none is in flight, or enough
    /// events wait, in organizations no turn is writing, for one beside it.
    #[test]
    fn a_turn_is_ready_when_none_is_in_flight_or_enough_wait_beside_it() {
        let queues = Queues::new();
        let ready = || ready_for_a_turn(&queues.waiting.lock().expect("queues"));
        queue(&queues, "writing", PARALLEL_TURN_EVENTS as u64);
        assert!(ready(), "no turn in flight");
        queues
            .waiting
            .lock()
            .expect("queues")
            .busy
            .insert("writing".to_owned());
        assert!(!ready(), "what waits is the busy organization's");
        queue(&queues, "other", PARALLEL_TURN_EVENTS as u64 - 1);
        assert!(!ready(), "too few beside the turn in flight");
        queue(&queues, "other", 1);
        assert!(ready(), "enough for a turn beside it");
    }

    /// The turn after a skip takes the skipped organization alone; the appends of another,
    /// enough for a turn beside the one in flight, go to a second committer at once, woken by
    /// the first (no append or turn end comes to wake it).
    #[tokio::test(start_paused = true)]
    async fn a_committer_that_leaves_a_turn_ready_wakes_another() {
        let queues = Arc::new(Queues::new());
        let committers: Vec<_> = (0..2)
            .map(|_| {
                let queues = Arc::clone(&queues);
                tokio::spawn(async move { next_turn(&queues).await.map(|t| t.organizations) })
            })
            .collect();
        // Both wait for work.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        queue(&queues, "skipped", 1);
        queue(&queues, "many", PARALLEL_TURN_EVENTS as u64 + 1);
        {
            let mut waiting = queues.waiting.lock().expect("queues");
            waiting.busy.insert("in flight".to_owned());
            waiting.skipped.insert("skipped".to_owned());
        }
        // As the append that made a turn ready does.
        queues.changed.notify_one();

        let mut turns = Vec::new();
        for committer in committers {
            let turn = tokio::time::timeout(Duration::from_secs(60), committer)
                .await
                .expect("both committers take a turn")
                .expect("the committer ran");
            turns.push(turn.expect("a turn"));
        }
        turns.sort();
        assert_eq!(turns, [vec!["many".to_owned()], vec!["skipped".to_owned()]]);
    }
}
