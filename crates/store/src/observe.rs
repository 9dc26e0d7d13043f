//! What a store tells whoever watches it, for metrics: a hook given once, at construction
//! ([`crate::SqliteStore::open_observed`], [`crate::PostgresStore::connect_observed`]), so the
//! writers report their commits without knowing how they are counted.

use std::sync::Arc;
use std::time::Duration;

/// Receives what the store measures. Every method has a default that ignores it.
pub trait StoreObserver: Send + Sync {
    /// A group commit ended (see [`Commit`]).
    fn commit(&self, _commit: &Commit) {}
    /// An append was handed to the instance that sequences its organization (PostgreSQL with
    /// `--cluster-listen`; see [`Handover`]).
    fn handover(&self, _handover: Handover) {}
    /// A request was handed a pooled connection after waiting `waited` (zero if one was idle).
    fn connection_wait(&self, _waited: Duration) {}
    /// The store's connection pool, to be read whenever its use is wanted (a scrape): reading
    /// it counts in memory, without a query.
    fn pool(&self, _probe: PoolProbe) {}
}

/// Reads a pool's use on demand.
pub type PoolProbe = Arc<dyn Fn() -> PoolUse + Send + Sync>;

/// One group commit of events: every append that was waiting, made durable at once.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    /// Events appended in it (other writes, such as a stream's cursor, count none).
    pub events: usize,
    /// From the group's start to its durable end.
    pub total: Duration,
    /// The durable write: on SQLite the log's write and its `fdatasync`; on PostgreSQL the last
    /// round trip, in which the server executes the group's inserts and its `COMMIT` (flushing
    /// its WAL).
    pub flush: Duration,
    /// Whether it committed; a failed commit fails every write in it.
    pub committed: bool,
}

/// What became of an append handed to another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// The other instance committed it (or refused it) and said so.
    Answered,
    /// This instance committed the append after all: the other could not be reached, failed it
    /// or did not answer, or the append was too large to hand over.
    CommittedHere,
}

/// How a connection pool is used right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections the pool may open.
    pub max: usize,
    /// Connections handed out.
    pub in_use: usize,
    /// Connections open and idle.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// The observer of a store nobody watches.
pub(crate) struct Unobserved;

impl StoreObserver for Unobserved {}
