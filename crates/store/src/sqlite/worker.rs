//! The two halves of SQLite access: one writer thread that commits in groups, and a small pool
//! of reader connections.
//!
//! SQLite allows one writer at a time, and each commit in `synchronous=FULL` costs an fsync
//! (about 1,400 a second on the reference disk). So every write is a *job* sent to one thread,
//! which takes all jobs waiting at that moment, runs each inside its own savepoint of one
//! transaction, commits once, and only then answers each job's caller. Under load, hundreds of
//! requests share one fsync; with no load, a lone job commits at once. A job that fails or panics
//! is rolled back to its savepoint without disturbing the others in its group.
//!
//! Readers use separate connections; in WAL mode they see the last commit and never block the
//! writer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::StoreError;
use crate::observe::{PoolUse, StoreObserver};

/// Jobs committed together at most; bounds the latency one commit adds to its first job.
const MAX_JOBS_PER_COMMIT: usize = 1_024;
/// Jobs that may wait for the writer before senders wait too (back-pressure).
const WRITE_QUEUE_DEPTH: usize = 8_192;
/// Concurrent reader connections; more would only contend for the two cores.
const READERS: usize = 4;
/// How much of the database a reader maps into memory.
const READER_MMAP_BYTES: i64 = 1 << 30;
/// Each reader's page cache, in KiB (negative: SQLite's unit for "KiB").
const READER_CACHE_KIB: i64 = -65_536;
/// How long a connection waits for another process's lock (a CLI command beside the server).
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Called after the commit with `None`, or with the reason the commit failed.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;
/// Runs inside the transaction; says whether it succeeded and how to answer after the commit.
type Job = Box<dyn FnOnce(&Connection, &mut GroupWork) -> (bool, Finish) + Send>;

/// Work a job hands to its group, done once for all jobs after their savepoints are released
/// and before the commit.
///
/// FTS5 flushes its pending index data at every savepoint boundary, so inserting search text
/// inside each job's savepoint wrote one tiny index segment per request, and merging those
/// segments stalled the writer. Collected here, the whole group's text goes into one segment.
#[derive(Default)]
pub(crate) struct GroupWork {
    /// `(events rowid, search text)` rows for the free-text index.
    pub(crate) search_rows: Vec<(i64, String)>,
}

#[derive(Clone)]
pub(crate) struct Database {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
    /// Told of reader waits here, and of the log's group commits by its writer.
    observer: Arc<dyn StoreObserver>,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// Reads waiting for a connection, for [`PoolUse`].
    waiting: AtomicUsize,
}

impl ReadPool {
    fn in_use(&self) -> PoolUse {
        PoolUse {
            max: READERS,
            in_use: READERS - self.permits.available_permits(),
            idle: self.idle.lock().map_or(0, |idle| idle.len()),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// Creates the database file (and its missing directories) readable by its owner only, whatever
/// the umask: a new database is 0600 in directories of 0700. SQLite gives the WAL and shared
/// memory files it creates beside it the database file's mode, so they are 0600 too. An existing
/// file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private::create_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        // The umask may have taken bits the mode asked for; the mode is set exactly.
        Ok(_) => crate::private::set_mode(path, 0o600),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

impl Database {
    /// Opens (creating if needed) the database at `path`, applies `migrate` on the writer
    /// connection, and starts the writer thread.
    pub(crate) fn open(
        path: &Path,
        migrate: impl FnOnce(&mut Connection) -> Result<(), StoreError>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<Self, StoreError> {
        create_private(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut writer = Connection::open(path)?;
        super::register_functions(&writer)?;
        writer.busy_timeout(std::time::Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))?;
        // WAL lets readers run beside the writer; FULL makes every commit durable before it
        // returns, which is what an acknowledged audit event requires.
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        // Each job runs in a savepoint, whose sub-journal keeps the pages the job first touches
        // so it can be rolled back alone. In a file, that cost a write(2) per page per job, a
        // third of the writer's time; in memory it is a copy. It only ever serves a rollback
        // inside the open transaction, so durability does not depend on it.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        migrate(&mut writer)?;

        let (jobs, queue) = mpsc::channel(WRITE_QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("trailmark-sqlite-writer".into())
            .spawn(move || run_writer(writer, queue))
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let readers = Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(READERS),
            waiting: AtomicUsize::new(0),
        });
        let probe = Arc::clone(&readers);
        observer.pool(Arc::new(move || probe.in_use()));
        Ok(Database {
            jobs,
            readers,
            observer,
        })
    }

    /// Runs `work` in the next group commit and returns its result once that commit is durable.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_in_group(move |connection, _| work(connection))
            .await
    }

    /// Like [`Database::write`], for work that also hands [`GroupWork`] to its group.
    pub(crate) async fn write_in_group<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &mut GroupWork) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection, group| {
            let result = work(connection, group);
            let succeeded = result.is_ok();
            let finish: Finish = Box::new(move |commit_failure| {
                let outcome = match commit_failure {
                    None => result,
                    Some(reason) => {
                        Err(StoreError::Unavailable(format!("commit failed: {reason}")))
                    }
                };
                // The caller may have gone away (client disconnected); the write stands anyway.
                let _ = reply.send(outcome);
            });
            (succeeded, finish)
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the write was not committed".into()))?
    }

    /// Who is told what this store measures (the log's writer reports its commits to it).
    pub(crate) fn observer(&self) -> &dyn StoreObserver {
        self.observer.as_ref()
    }

    /// Runs `work` on a reader connection, off the async threads.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let readers = Arc::clone(&self.readers);
        let asked = Instant::now();
        readers.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = readers.permits.acquire().await;
        readers.waiting.fetch_sub(1, Ordering::Relaxed);
        let _permit = permit.map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        self.observer.connection_wait(asked.elapsed());
        let pool = Arc::clone(&readers);
        tokio::task::spawn_blocking(move || {
            let connection = pool.take()?;
            let result = work(&connection);
            pool.give_back(connection);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a read task failed: {e}")))?
    }
}

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .map_err(|_| StoreError::Unavailable("reader pool poisoned".into()))?
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => {
                let connection = Connection::open(&self.path)?;
                super::register_functions(&connection)?;
                connection
                    .busy_timeout(std::time::Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))?;
                connection.pragma_update(None, "query_only", true)?;
                // Reads of the log's index go through whole blocks' blobs (a free-text search
                // scans every block's text values): mapped pages and a larger cache spare a
                // read(2) per 4 KiB page. Address space, not memory: the OS shares the pages.
                connection.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
                connection.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
                Ok(connection)
            }
        }
    }

    fn give_back(&self, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
    }
}

fn run_writer(connection: Connection, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&connection, group);
    }
}

fn commit_group(connection: &Connection, group: Vec<Job>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs drops their reply channels: each caller gets `Unavailable`.
        tracing::error!(%error, jobs = group.len(), "could not begin a write transaction");
        return;
    }
    let mut finishes = Vec::with_capacity(group.len());
    let mut work = GroupWork::default();
    for job in group {
        let handed_over = work.search_rows.len();
        if let Err(error) = connection.execute_batch("SAVEPOINT job") {
            tracing::error!(%error, "could not open a savepoint; the job is dropped uncommitted");
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job(connection, &mut work))) {
            Ok((true, finish)) => {
                let _ = connection.execute_batch("RELEASE job");
                finishes.push(finish);
            }
            Ok((false, finish)) => {
                let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
                work.search_rows.truncate(handed_over);
                finishes.push(finish);
            }
            // The job's reply channel was dropped in the unwind, so its caller learns of it.
            Err(_) => {
                tracing::error!("a storage job panicked; its writes were rolled back");
                let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
                work.search_rows.truncate(handed_over);
            }
        }
    }
    let commit = index_search_text(connection, &work.search_rows)
        .and_then(|()| connection.execute_batch("COMMIT"))
        .map_err(|e| e.to_string());
    if commit.is_err() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    let failure = commit.err();
    for finish in finishes {
        finish(failure.as_deref());
    }
}

fn index_search_text(connection: &Connection, rows: &[(i64, String)]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert =
        connection.prepare_cached("INSERT INTO events_fts (rowid, text) VALUES (?1, ?2)")?;
    for (rowid, text) in rows {
        insert.execute(rusqlite::params![rowid, text])?;
    }
    Ok(())
}
