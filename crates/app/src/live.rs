//! Live events: one organization's events as they are appended, for the Server-Sent Events
//! endpoint and the portal's and console's live views.
//!
//! A reader starts after a sequence (or at the log's head), reads what follows from storage in
//! log order through the search filters, then waits. It looks again when the organization's log
//! grows: this instance's appends say so at once ([`crate::effects`]); another instance's over
//! one PostgreSQL are found by one task per instance, which reads the size of each followed log
//! every [`POLL_EVERY`] (one row each) and announces growth the same way — so a thousand open
//! streams on one organization cost one read per poll, not a thousand, and take no connections
//! from ingest. With nothing to send for [`HEARTBEAT_EVERY`], a reader sends a heartbeat, so
//! proxies keep the connection and clients notice a dead one.
//!
//! A slow consumer never slows ingest: the reader runs in a task of its own and hands items
//! through a buffer of [`LIVE_BUFFER`]; appends never wait for readers, and a reader whose buffer
//! is full stops. Its consumer is then told [`LiveItem::Behind`] with the last sequence it was
//! given, from which it resumes (reading storage, so nothing is lost), and the stream ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use trailmark_domain::Timestamp;
use trailmark_domain::query::EventFilter;
use trailmark_store::{Order, SearchRequest, StoredEvent};

use crate::{AppError, Trailmark};

/// Quiet this long, a reader sends a heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// How often a reader looks for events appended by other instances (its own instance's wake it
/// at once): an event is seen within this of its acknowledgement anywhere.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often a reader checks that its API key or browser session still opens the stream (the
/// key cache answers most key checks; see [`crate::keys::KEY_CACHE_TTL`]).
const KEY_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Items a reader may be ahead of its consumer before it is told to resume.
pub const LIVE_BUFFER: usize = 256;
/// Events read from storage at a time.
const PAGE: usize = 100;
/// Live streams one holder (an API key, a portal or console session) may have open at once.
pub const STREAMS_PER_HOLDER: usize = 8;
/// Live streams this instance serves at once. An open stream keeps its HTTP connection busy,
/// so without this a tenant's read key could take every connection the server has (1,024 by
/// default) and leave ingest answering 503.
pub const STREAMS_PER_INSTANCE: usize = 256;

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRequest {
    pub organization_id: String,
    pub filter: EventFilter,
    /// Start after this sequence; `None` starts at the log's head (only new events).
    pub after: Option<u64>,
    /// Start at the very beginning of the log instead of its head when `after` is `None`.
    pub from_start: bool,
    /// The API key the reader was opened with: checked again every second, so a revoked key's
    /// stream ends within [`crate::keys::KEY_CACHE_TTL`] and a second.
    pub key: Option<String>,
    /// The browser session the stream was opened in, checked again every second (without
    /// renewing it), so signing out or deleting the session ends the stream.
    pub session: Option<LiveSession>,
    /// Who holds the stream, for the limits ([`STREAMS_PER_HOLDER`]): the key's id, or the
    /// portal or console session's.
    pub holder: String,
    /// End the stream after this long: what was left of a browser session (portal, console)
    /// when it opened. The page then reconnects through the session check again, which renews
    /// an active session and refuses one that expired or was signed out, so a stream never
    /// outlives its session by more than that session's idle timeout.
    pub ends_within: Option<Duration>,
}

/// A browser session a stream runs in, by its cookie secret's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSession {
    Portal([u8; 32]),
    Console([u8; 32]),
}

/// One thing for the consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveItem {
    Event(Box<StoredEvent>),
    Heartbeat,
    /// The consumer fell behind: resume after this sequence (`None`: from where it started,
    /// with nothing read). Nothing follows.
    Behind {
        resume_after: Option<u64>,
    },
}

/// A running reader; dropping it stops the reader.
pub struct LiveEvents {
    items: mpsc::Receiver<LiveItem>,
    behind: Arc<AtomicBool>,
    /// The last sequence handed to the consumer, or where it started.
    last: Option<u64>,
    /// Where the log's head was when the reader started (for the consumer's first `id`).
    started_after: Option<u64>,
    told_behind: bool,
    reader: tokio::task::AbortHandle,
}

impl LiveEvents {
    /// The next item; `None` when the stream ended (after [`LiveItem::Behind`], when the key
    /// was revoked or expired, or when storage failed: the consumer reconnects from its last id).
    pub async fn next(&mut self) -> Option<LiveItem> {
        if self.told_behind {
            return None;
        }
        if self.behind.load(Ordering::Acquire) {
            self.told_behind = true;
            return Some(LiveItem::Behind {
                resume_after: self.last,
            });
        }
        let item = match self.items.recv().await {
            Some(item) => item,
            // The reader ended: full buffer (told above on the next call) or an error.
            None if self.behind.load(Ordering::Acquire) => {
                self.told_behind = true;
                LiveItem::Behind {
                    resume_after: self.last,
                }
            }
            None => return None,
        };
        if let LiveItem::Event(event) = &item {
            self.last = Some(event.sequence);
        }
        Some(item)
    }

    /// The sequence the reader started after (the log's head when none was asked for).
    pub fn started_after(&self) -> Option<u64> {
        self.started_after
    }
}

impl Drop for LiveEvents {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Trailmark {
    /// Starts following `request.organization_id`'s log.
    ///
    /// # Errors
    ///
    /// [`AppError::OrganizationNotFound`]; [`AppError::TooMuchWork`] when the holder or this
    /// instance has as many streams open as it may; storage errors.
    pub async fn live_events(&self, request: LiveRequest) -> Result<LiveEvents, AppError> {
        self.live_organization(&request.organization_id).await?;
        let slot = self.inner.effects.watched.take_slot(&request.holder)?;
        // Subscribed before the head is read, so no append between the two goes unheard.
        let growth = self.subscribe_log_growth();
        let after = match request.after {
            Some(after) => Some(after),
            None if request.from_start => None,
            None => self
                .log_size(&request.organization_id)
                .await?
                .checked_sub(1),
        };
        let (sender, items) = mpsc::channel(LIVE_BUFFER);
        let behind = Arc::new(AtomicBool::new(false));
        let watching = self.watch(&request.organization_id);
        let reader = Reader {
            _slot: slot,
            _watching: watching,
            app: self.clone(),
            request,
            cursor: after,
            sender,
            behind: Arc::clone(&behind),
        };
        let reader = tokio::spawn(reader.run(growth)).abort_handle();
        Ok(LiveEvents {
            items,
            behind,
            last: after,
            started_after: after,
            told_behind: false,
            reader,
        })
    }
}

struct Reader {
    /// The stream's place under the limits, given back when the reader ends.
    _slot: Slot,
    /// Keeps the organization followed by the poller while the reader runs.
    _watching: Watching,
    app: Trailmark,
    request: LiveRequest,
    /// The last sequence looked at (sent, or skipped by the filter).
    cursor: Option<u64>,
    sender: mpsc::Sender<LiveItem>,
    behind: Arc<AtomicBool>,
}

/// Why a reader stops.
enum Stop {
    /// The consumer is gone, fell behind, or the key no longer opens the stream.
    Done,
    Failed(AppError),
}

impl From<AppError> for Stop {
    fn from(error: AppError) -> Self {
        Stop::Failed(error)
    }
}

impl Reader {
    async fn run(
        mut self,
        mut growth: tokio::sync::broadcast::Receiver<crate::effects::LogGrowth>,
    ) {
        let organization_id = self.request.organization_id.clone();
        let mut key_check = tokio::time::interval(KEY_CHECK_EVERY);
        key_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut quiet_since = Instant::now();
        let ends = self.request.ends_within.map(|left| Instant::now() + left);
        let mut look = true;
        let stop = self.app.inner.effects.live_stop();
        let outcome: Result<(), Stop> = async {
            loop {
                if look {
                    if self.read_new().await? {
                        quiet_since = Instant::now();
                    }
                    look = false;
                }
                tokio::select! {
                    () = stop.cancelled() => return Err(Stop::Done),
                    () = ended(ends) => return Err(Stop::Done),
                    () = tokio::time::sleep_until(quiet_since + HEARTBEAT_EVERY) => {
                        self.push(LiveItem::Heartbeat)?;
                        quiet_since = Instant::now();
                    }
                    _ = key_check.tick() => self.check_credentials().await?,
                    notice = growth.recv() => match notice {
                        Ok(grown) => {
                            look = *grown.organization_id == *organization_id
                                && grown.size.checked_sub(1) > self.cursor;
                        }
                        // Notices were missed: look, storage has them all.
                        Err(RecvError::Lagged(_)) => look = true,
                        Err(RecvError::Closed) => return Err(Stop::Done),
                    },
                }
            }
        }
        .await;
        if let Err(Stop::Failed(error)) = outcome {
            tracing::warn!(%organization_id, %error, "a live reader stopped");
        }
    }

    /// Sends every matching event after the cursor up to the log's head; whether any was sent.
    async fn read_new(&mut self) -> Result<bool, Stop> {
        let organization_id = &self.request.organization_id;
        let size = self.app.log_size(organization_id).await?;
        let Some(head) = size.checked_sub(1) else {
            return Ok(false);
        };
        let mut sent = false;
        while Some(head) > self.cursor {
            let page = self
                .app
                .search(
                    organization_id,
                    SearchRequest {
                        filter: self.request.filter.clone(),
                        after: self.cursor,
                        before: Some(size),
                        order: Order::Asc,
                        limit: PAGE,
                    },
                )
                .await?;
            for event in page.events {
                self.cursor = Some(event.sequence);
                self.push(LiveItem::Event(Box::new(event)))?;
                sent = true;
            }
            if !page.more {
                // Everything up to the head was looked at, matching or not.
                self.cursor = Some(head);
            }
        }
        Ok(sent)
    }

    /// Hands `item` over without waiting: a full buffer means the consumer fell behind.
    fn push(&self, item: LiveItem) -> Result<(), Stop> {
        match self.sender.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.behind.store(true, Ordering::Release);
                Err(Stop::Done)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Done),
        }
    }

    /// Ends the reader once its key no longer authenticates (revoked or expired), or its
    /// session is no longer open (signed out, expired, deleted).
    async fn check_credentials(&self) -> Result<(), Stop> {
        if let Some(key) = &self.request.key
            && self.app.authenticate(key).await?.is_none()
        {
            return Err(Stop::Done);
        }
        let now = Timestamp::now();
        let open = match self.request.session {
            None => true,
            Some(LiveSession::Portal(hash)) => self
                .app
                .store()
                .portal_session_open(hash, now)
                .await
                .map_err(AppError::from)?,
            Some(LiveSession::Console(hash)) => self
                .app
                .store()
                .operator_session_open(hash, now)
                .await
                .map_err(AppError::from)?,
        };
        if open { Ok(()) } else { Err(Stop::Done) }
    }
}

/// Waits until `ends`, or for ever.
async fn ended(ends: Option<Instant>) {
    match ends {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The organizations this instance's live readers follow, with how many readers each, and
/// whether the poller runs.
#[derive(Default)]
pub(crate) struct Watched {
    readers: Mutex<HashMap<String, usize>>,
    polling: AtomicBool,
    /// Open streams by holder.
    holders: Arc<Mutex<HashMap<String, usize>>>,
}

impl Watched {
    /// A place for one more stream of `holder`, under both limits.
    fn take_slot(&self, holder: &str) -> Result<Slot, AppError> {
        let full = |message: String| AppError::TooMuchWork {
            code: "too_many_streams",
            message,
        };
        let mut holders = self
            .holders
            .lock()
            .map_err(|_| AppError::Internal("the live stream table was poisoned".into()))?;
        if holders.values().sum::<usize>() >= STREAMS_PER_INSTANCE {
            return Err(full(format!(
                "This instance serves {STREAMS_PER_INSTANCE} live streams at once; retry later."
            )));
        }
        let open = holders.entry(holder.to_owned()).or_default();
        if *open >= STREAMS_PER_HOLDER {
            return Err(full(format!(
                "At most {STREAMS_PER_HOLDER} live streams may be open at once with one key or session; close one first."
            )));
        }
        *open += 1;
        Ok(Slot {
            holders: Arc::clone(&self.holders),
            holder: holder.to_owned(),
        })
    }
}

/// One open stream's place under the limits; dropping it gives the place back.
struct Slot {
    holders: Arc<Mutex<HashMap<String, usize>>>,
    holder: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut holders) = self.holders.lock()
            && let Some(open) = holders.get_mut(&self.holder)
        {
            *open -= 1;
            if *open == 0 {
                holders.remove(&self.holder);
            }
        }
    }
}

/// One reader's interest in an organization; dropping it withdraws the interest.
struct Watching {
    watched: Arc<Watched>,
    organization_id: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(mut readers) = self.watched.readers.lock()
            && let Some(count) = readers.get_mut(&self.organization_id)
        {
            *count -= 1;
            if *count == 0 {
                readers.remove(&self.organization_id);
            }
        }
    }
}

impl Watched {
    fn organizations(&self) -> Vec<String> {
        self.readers
            .lock()
            .map(|readers| readers.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Trailmark {
    /// Registers a reader of `organization_id`, starting the poller if it is not running.
    fn watch(&self, organization_id: &str) -> Watching {
        let watched = Arc::clone(&self.inner.effects.watched);
        if let Ok(mut readers) = watched.readers.lock() {
            *readers.entry(organization_id.to_owned()).or_default() += 1;
        }
        if !watched.polling.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().poll_followed_logs());
        }
        Watching {
            watched,
            organization_id: organization_id.to_owned(),
        }
    }

    /// Every [`POLL_EVERY`], reads the size of each followed log and announces those that grew
    /// (appended by another instance, or by this one: readers tell a stale notice from a new
    /// one by their cursor). Ends when no reader is left, or at shutdown.
    async fn poll_followed_logs(self) {
        let effects = &self.inner.effects;
        let watched = Arc::clone(&effects.watched);
        let stop = effects.live_stop();
        let mut known: HashMap<String, u64> = HashMap::new();
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let mut organizations = watched.organizations();
            if organizations.is_empty() {
                watched.polling.store(false, Ordering::Release);
                // A reader that registered meanwhile saw the poller running and started none.
                organizations = watched.organizations();
                if organizations.is_empty() || watched.polling.swap(true, Ordering::AcqRel) {
                    break;
                }
            }
            known.retain(|organization_id, _| organizations.contains(organization_id));
            for organization_id in organizations {
                match self.log_size(&organization_id).await {
                    Ok(size) => {
                        if known.insert(organization_id.clone(), size) != Some(size) {
                            effects.grown_elsewhere(&organization_id, size);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%organization_id, %error, "cannot read a followed log's size");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use trailmark_domain::event::NewEvent;
    use trailmark_domain::id::IdKind;
    use trailmark_domain::organization::Organization;
    use trailmark_store::{AppendRequest, PendingEvent, SqliteStore, Store};

    use super::*;
    use crate::system::{SystemActor, SystemEvent};

    async fn app(data_dir: &std::path::Path) -> (Trailmark, Arc<dyn Store>, String) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&data_dir.join("t.db")).expect("store"));
        let config = crate::AppConfig::for_tests(data_dir);
        let app = Trailmark::new(Arc::clone(&store), config).expect("app");
        let now = Timestamp::now();
        let organization = store
            .insert_organization(Organization {
                id: IdKind::Organization.generate().into_string(),
                name: "Acme".into(),
                domains: Vec::new(),
                metadata: BTreeMap::new(),
                external_id: None,
                allow_profiles_outside_organization: false,
                retention_period_in_days: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("organization");
        (app, store, organization.id)
    }

    fn system_event(n: usize) -> SystemEvent {
        SystemEvent {
            action: "user.signed_in".into(),
            actor: SystemActor {
                id: format!("user_{n}"),
                kind: "user",
                name: None,
            },
            target: json!({"id": "team_1", "type": "team"}),
            location: "192.0.2.1".into(),
            user_agent: None,
            metadata: json!({"n": n}),
        }
    }

    /// Appends straight to storage, as another instance would: nothing here hears of it.
    async fn append_to(store: &dyn Store, organization_id: &str, count: usize) {
        let now = Timestamp::now();
        let events = (0..count)
            .map(|n| PendingEvent {
                id: IdKind::Event.generate().into_string(),
                event: NewEvent::parse(&json!({
                    "action": "user.signed_out",
                    "occurred_at": now.to_string(),
                    "actor": {"id": format!("user_{n}"), "type": "user"},
                    "targets": [],
                    "context": {"location": "192.0.2.1"},
                    "metadata": {"n": n},
                }))
                .expect("event"),
                received_at: now,
            })
            .collect();
        store
            .append(AppendRequest {
                organization_id: organization_id.to_owned(),
                events,
                idempotency: None,
            })
            .await
            .expect("append");
    }

    /// Runs `work` where the paused clock cannot move: storage's writer is a thread of its own,
    /// and while the runtime waited for it the clock would jump from timer to timer.
    async fn unpaused<F>(work: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(work))
            .await
            .expect("blocking")
    }

    async fn record(app: &Trailmark, organization_id: &str, n: usize) {
        let (app, organization_id) = (app.clone(), organization_id.to_owned());
        unpaused(async move { app.record(&organization_id, system_event(n)).await })
            .await
            .expect("record");
    }

    async fn append_elsewhere(store: &Arc<dyn Store>, organization_id: &str, count: usize) {
        let (store, organization_id) = (Arc::clone(store), organization_id.to_owned());
        unpaused(async move { append_to(&*store, &organization_id, count).await }).await;
    }

    fn request(organization_id: &str) -> LiveRequest {
        LiveRequest {
            organization_id: organization_id.to_owned(),
            filter: EventFilter::default(),
            after: None,
            from_start: false,
            key: None,
            session: None,
            holder: "key_test".into(),
            ends_within: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_may_keep_only_so_many_streams_open_and_a_closed_one_frees_its_place() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, _, organization) = app(dir.path()).await;
        let mut open = Vec::new();
        for _ in 0..STREAMS_PER_HOLDER {
            open.push(app.live_events(request(&organization)).await.expect("live"));
        }
        let refused = app.live_events(request(&organization)).await;
        assert!(
            matches!(
                refused,
                Err(AppError::TooMuchWork {
                    code: "too_many_streams",
                    ..
                })
            ),
            "{:?}",
            refused.err()
        );
        let other = LiveRequest {
            holder: "key_other".into(),
            ..request(&organization)
        };
        let other = app
            .live_events(other)
            .await
            .expect("another holder's stream");
        drop(open.pop());
        // The aborted reader gives its place back once it is dropped.
        tokio::task::yield_now().await;
        app.live_events(request(&organization))
            .await
            .expect("a place again");
        drop(other);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_s_stream_ends_when_what_was_left_of_the_session_has_passed() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, _, organization) = app(dir.path()).await;
        let mut live = app
            .live_events(LiveRequest {
                ends_within: Some(Duration::from_secs(20)),
                ..request(&organization)
            })
            .await
            .expect("live");
        let start = Instant::now();
        assert_eq!(live.next().await, Some(LiveItem::Heartbeat));
        assert_eq!(live.next().await, None, "the stream ends");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(20),
            "not sooner, not later"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_reader_sends_a_heartbeat_every_15_s_of_quiet_only() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, _, organization) = app(dir.path()).await;
        let mut live = app.live_events(request(&organization)).await.expect("live");
        let start = Instant::now();
        assert_eq!(live.next().await, Some(LiveItem::Heartbeat));
        assert_eq!(start.elapsed(), HEARTBEAT_EVERY, "not sooner, not later");

        tokio::time::advance(Duration::from_secs(5)).await;
        record(&app, &organization, 1).await;
        let Some(LiveItem::Event(event)) = live.next().await else {
            panic!("the event comes before any heartbeat");
        };
        assert_eq!(event.sequence, 0);
        let sent = Instant::now();
        assert_eq!(live.next().await, Some(LiveItem::Heartbeat));
        assert!(
            (HEARTBEAT_EVERY - POLL_EVERY..=HEARTBEAT_EVERY).contains(&sent.elapsed()),
            "counted from the last item: {:?}",
            sent.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn this_instance_s_appends_wake_a_reader_and_other_instances_are_polled() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, store, organization) = app(dir.path()).await;
        let mut live = app.live_events(request(&organization)).await.expect("live");
        // Let the reader settle into waiting.
        tokio::time::sleep(Duration::from_millis(10)).await;

        record(&app, &organization, 1).await;
        let appended = Instant::now();
        assert!(matches!(live.next().await, Some(LiveItem::Event(_))));
        // The next poll is due ~490 ms after the append.
        assert!(
            appended.elapsed() < Duration::from_millis(50),
            "woken by the append, not by the next poll: {:?}",
            appended.elapsed()
        );

        append_elsewhere(&store, &organization, 1).await;
        let appended = Instant::now();
        let Some(LiveItem::Event(event)) = live.next().await else {
            panic!("another instance's event is found by polling");
        };
        assert_eq!(event.sequence, 1);
        assert!(appended.elapsed() <= POLL_EVERY, "{:?}", appended.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_its_consumer_does_not_keep_up_with_stops_and_says_where_to_resume() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, store, organization) = app(dir.path()).await;
        append_elsewhere(&store, &organization, 3).await;
        let mut live = app
            .live_events(LiveRequest {
                after: Some(0),
                ..request(&organization)
            })
            .await
            .expect("live");
        let Some(LiveItem::Event(first)) = live.next().await else {
            panic!("the first event after 0");
        };
        assert_eq!(first.sequence, 1);
        // More than the buffer holds arrives while the consumer reads nothing; ingest does not
        // wait for it.
        append_elsewhere(&store, &organization, LIVE_BUFFER + 10).await;
        tokio::time::sleep(POLL_EVERY * 2).await;
        assert_eq!(
            live.next().await,
            Some(LiveItem::Behind {
                resume_after: Some(1)
            })
        );
        assert_eq!(live.next().await, None);
        assert_eq!(
            app.log_size(&organization).await.expect("size"),
            3 + LIVE_BUFFER as u64 + 10
        );
    }
}
