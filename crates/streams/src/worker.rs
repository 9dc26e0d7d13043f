//! The delivery engine. A supervisor keeps one task per stream; each task loops:
//!
//! 1. take the stream's lease, so only one worker delivers it at a time (renewed once a third of
//!    it has passed, not on every batch: each renewal is a durable write);
//! 2. read the events after the stream's cursor, in log order, up to a batch;
//! 3. if the batch is neither full nor old enough ([`crate::batch`]), wait for whichever comes
//!    first (the log growing to a full batch, or the oldest event's deadline) and start over;
//! 4. send as many as one request holds ([`crate::destination`]);
//! 5. on success, advance the cursor to the last event sent — only if the lease is still held and
//!    no replay moved the cursor meanwhile; on a retryable failure, mark the stream `error` and
//!    wait as long as it has been failing ([`crate::backoff`]: at least what `Retry-After`
//!    asked); on a refusal, mark it `invalid` and try again after `invalid_retry` (a minute by
//!    default). New events never cut such a wait short (a failing destination gets fewer
//!    requests, not more); a change to the stream itself (PATCH, replay, pause) does, and the
//!    lease is kept meanwhile, so no other instance starts the stream's attempts over.
//!
//! The cursor never passes an event the destination did not acknowledge, so delivery is
//! at-least-once and in order; nothing is ever skipped. Each stream waits only for itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use trailmark_domain::Timestamp;
use trailmark_store::{Store, StoredEvent, StreamRecord, StreamState};

use crate::Outcome;
use crate::backoff::{FailureStreak, RetryPolicy};
use crate::batch::{BatchPolicy, Decision};
use crate::destination::{Context, Shared, Sink};
use crate::egress::{self, Proxy, Route, Via};
use crate::filter::Filters;
use crate::format::EventFormat;
use crate::net;
use crate::observe::{Attempt, AttemptOutcome, DeliveryObserver, Health};
use crate::seal::Sealer;
use crate::settings::{Secrets, Settings, StreamKind, describe};

/// Takes a stream out of the running set when its task ends, however it ends.
struct Running {
    workers: Arc<StreamWorkers>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.workers.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// Timing of the engine; tests shorten it.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Deliver to private and loopback addresses (`--allow-private-destinations`).
    pub allow_private: bool,
    /// The operator's egress proxy, and whether streams may set their own
    /// (`--egress-proxy`, `--egress-proxy-required`).
    pub egress: crate::egress::Egress,
    /// CA certificates streams trust besides Mozilla's roots (`--stream-ca-file`): for
    /// destinations inside an organization's own PKI.
    pub trusted: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Shortest wait after a retryable failure; waits then grow with the time the stream has
    /// been failing, up to `backoff_max` ([`crate::backoff`]).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Wait after the destination refused credentials or configuration.
    pub invalid_retry: Duration,
    /// How often an idle stream looks for new events (ingest also wakes it at once).
    pub idle_poll: Duration,
    /// How long a lease lasts without renewal (a crashed worker's streams move after this).
    pub lease: Duration,
    /// How often a stream looks for a newer signed checkpoint of its organization to deliver
    /// (`--stream-checkpoint-interval-secs`): at most one a minute by default.
    pub checkpoint_every: Duration,
    /// What time it is for a batch's deadline, which is measured from its oldest event's
    /// `received_at` (the wall clock; tests put it on tokio's paused clock).
    pub clock: Clock,
    /// The AWS credentials this process runs with, lent to `s3` streams that set no keys of
    /// their own (`--aws-default-credentials`); `None`: such streams are `invalid`.
    pub aws_default_chain: Option<crate::s3::credentials::DefaultChain>,
}

/// The time a batch's age is measured at.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn new(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

/// The wall clock.
impl Default for Clock {
    fn default() -> Self {
        Clock::new(Timestamp::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            allow_private: false,
            egress: crate::egress::Egress::default(),
            trusted: Vec::new(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            invalid_retry: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            lease: Duration::from_secs(15),
            checkpoint_every: Duration::from_secs(60),
            clock: Clock::default(),
            aws_default_chain: None,
        }
    }
}

/// Runs every stream's delivery.
pub struct StreamWorkers {
    store: Arc<dyn Store>,
    sealer: Sealer,
    client: reqwest::Client,
    config: WorkerConfig,
    /// This process's lease identity.
    holder: String,
    /// Events were appended.
    wake: Notify,
    /// Counts changes, replays and deletions of streams: a task holding a batch back sees any
    /// that happened since it last read its stream, and reads it again at once.
    changes: watch::Sender<u64>,
    running: Mutex<HashSet<String>>,
    /// What destinations keep between attempts (access tokens).
    shared: Shared,
    observer: Arc<dyn DeliveryObserver>,
    /// Stops every stream task (the application's shutdown signal).
    shutdown: CancellationToken,
}

impl StreamWorkers {
    /// # Errors
    ///
    /// If the HTTP client cannot be built (TLS backend).
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        config: WorkerConfig,
        holder: String,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, reqwest::Error> {
        Self::observed(
            store,
            sealer,
            config,
            holder,
            shutdown,
            Arc::new(crate::observe::Unobserved),
        )
    }

    /// [`StreamWorkers::new`], reporting every delivery attempt and each stream's health to
    /// `observer`.
    ///
    /// # Errors
    ///
    /// If the HTTP client cannot be built (TLS backend).
    pub fn observed(
        store: Arc<dyn Store>,
        sealer: Sealer,
        config: WorkerConfig,
        holder: String,
        shutdown: CancellationToken,
        observer: Arc<dyn DeliveryObserver>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let client = crate::net::client(config.allow_private, &config.trusted)?;
        Ok(Arc::new(StreamWorkers {
            store,
            sealer,
            client,
            config,
            holder,
            wake: Notify::new(),
            changes: watch::Sender::new(0),
            running: Mutex::new(HashSet::new()),
            shared: Shared::default(),
            observer,
            shutdown,
        }))
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn allow_private(&self) -> bool {
        self.config.allow_private
    }

    pub fn egress(&self) -> &crate::egress::Egress {
        &self.config.egress
    }

    /// Tells idle streams that events were appended.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Tells the streams that one was updated, replayed or deleted, so its task reads it again
    /// at once, even while it holds a batch back.
    pub fn stream_changed(&self) {
        self.changes.send_modify(|count| *count += 1);
        self.wake.notify_waiters();
    }

    /// The stored settings of a stream, credentials decrypted.
    ///
    /// # Errors
    ///
    /// A message if the type is unknown or the credentials do not open.
    pub fn open_settings(&self, stream: &StreamRecord) -> Result<Settings, String> {
        let kind = StreamKind::parse(&stream.kind)
            .ok_or_else(|| format!("unknown stream type '{}'", stream.kind))?;
        let secrets = self
            .sealer
            .open(&stream.id, &stream.secrets)
            .map_err(|e| e.to_string())?;
        let public = stream.config.as_object().cloned().unwrap_or_default();
        Ok(Settings::stored(
            kind,
            public,
            Secrets::from_bytes(&secrets)?,
        ))
    }

    /// Sends `events` once (the delivery loop, and the streams API's "send test event"), in a
    /// `stream.delivery` span: a child of the request that asked for it, if any.
    pub async fn send(&self, stream: &StreamRecord, events: &[Value]) -> Outcome {
        let span = tracing::info_span!(
            "stream.delivery",
            stream_id = %stream.id,
            "type" = %stream.kind,
            events = events.len(),
            outcome = tracing::field::Empty,
        );
        let outcome = self.deliver(stream, events).instrument(span.clone()).await;
        span.record(
            "outcome",
            match &outcome {
                Outcome::Delivered(_) => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Invalid(_) => "invalid",
            },
        );
        outcome
    }

    async fn deliver(&self, stream: &StreamRecord, events: &[Value]) -> Outcome {
        match self.sink(stream) {
            Ok((sink, proxy)) => {
                sink.send(&self.context(stream, proxy.as_deref()), events)
                    .await
            }
            Err(outcome) => outcome,
        }
    }

    /// The stream's configured destination, every URL it reaches checked against the
    /// private-destination guard (names are checked again by the client's resolver, or before
    /// the proxy is asked to connect; addresses written as IPs never reach a resolver), and the
    /// egress proxy it goes through.
    fn sink(&self, stream: &StreamRecord) -> Result<(Box<dyn Sink>, Route), Outcome> {
        let settings = self.open_settings(stream).map_err(Outcome::Invalid)?;
        let sink = settings
            .sink()
            .map_err(|problems| Outcome::Invalid(describe(&problems)))?;
        for target in sink.targets() {
            net::check_literal(&target.url, self.config.allow_private)
                .map_err(|error| Outcome::Invalid(error.to_string()))?;
        }
        let proxy = egress::route(
            &settings.public,
            settings.secrets.get("egress_proxy_password"),
            &self.config.egress,
        )
        .map_err(Outcome::Invalid)?;
        Ok((sink, proxy))
    }

    fn context<'a>(&'a self, stream: &'a StreamRecord, proxy: Option<&'a Proxy>) -> Context<'a> {
        Context {
            stream_id: &stream.id,
            client: &self.client,
            allow_private: self.config.allow_private,
            shared: &self.shared,
            proxy: proxy.map(|proxy| Via {
                proxy,
                trusted: &self.config.trusted,
            }),
            clock: &self.config.clock,
            aws_default_chain: self.config.aws_default_chain.as_ref(),
            format: EventFormat::of(&stream.config),
        }
    }

    /// The supervisor: every second it starts a task for each stream without one, so a stream
    /// whose task ended (its stream was deleted, or it panicked) is looked at again. Runs until
    /// the future is dropped.
    pub async fn supervise(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            self.start_new_streams().await;
        }
    }

    /// Starts tasks for streams that have none (the streams API calls it after a create, so a new
    /// stream does not wait for the supervisor's next tick).
    pub async fn start_new_streams(self: &Arc<Self>) {
        let streams = match self.store.list_streams(None).await {
            Ok(streams) => streams,
            Err(error) => {
                tracing::warn!(%error, "cannot list streams");
                return;
            }
        };
        for stream in streams {
            let fresh = self
                .running
                .lock()
                .map(|mut running| running.insert(stream.id.clone()))
                .unwrap_or(false);
            if fresh {
                let workers = Arc::clone(self);
                let shutdown = self.shutdown.clone();
                tokio::spawn(async move {
                    // However the task ends — its stream deleted, shutdown, or a panic — the
                    // stream leaves the running set, so the supervisor starts it again if it
                    // still exists.
                    let _running = Running {
                        workers: Arc::clone(&workers),
                        id: stream.id.clone(),
                    };
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = workers.run(stream.id.clone()) => {}
                    }
                });
            }
        }
    }

    async fn run(self: Arc<Self>, id: String) {
        let mut streak = FailureStreak::default();
        let mut lease = LeaseClock::default();
        // The first look waits an interval too: a stream that starts (or restarts) does not
        // send the checkpoint its previous run may have sent a moment ago.
        let mut checkpoints = CheckpointClock {
            next_look: Some(Instant::now() + self.config.checkpoint_every),
            delivered: None,
        };
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let stream = match self.store.get_stream(&id).await {
                Ok(Some(stream)) => stream,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(stream = %id, %error, "cannot read the stream");
                    tokio::time::sleep(self.config.backoff_initial).await;
                    continue;
                }
            };
            match self
                .step(&stream, &mut streak, &mut lease, &mut checkpoints)
                .await
            {
                None => {}
                Some(Pause::Idle(wait)) => {
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                }
                Some(Pause::Filling { deadline, full_at }) => {
                    let organization_id = stream.organization_id.as_deref().unwrap_or("");
                    self.wait_for_batch(organization_id, deadline, full_at, &mut changes)
                        .await;
                }
                Some(Pause::Backoff(wait)) => {
                    self.back_off(&stream, wait, &mut lease, &mut changes).await;
                }
            }
        }
        self.observer.released(&id);
    }

    /// After a failed attempt: waits `wait`, keeping the stream's lease, and returns early only
    /// when the stream itself was changed (settings, state or cursor: a PATCH or a replay
    /// deserves a fresh attempt), deleted, or its lease lost. New events do not end the wait,
    /// and neither do changes to other streams.
    async fn back_off(
        &self,
        stream: &StreamRecord,
        wait: Duration,
        lease: &mut LeaseClock,
        changes: &mut watch::Receiver<u64>,
    ) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let renew_at = tokio::time::Instant::now() + self.config.lease / 3;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = tokio::time::sleep_until(renew_at), if renew_at < deadline => {
                    if self.renew_lease(stream, lease).await != Some(true) {
                        return;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    match self.store.get_stream(&stream.id).await {
                        Ok(Some(now)) if same_delivery(stream, &now) => {}
                        _ => return,
                    }
                }
            }
        }
    }

    /// Takes or renews `stream`'s lease if a third of it has passed: whether this worker holds
    /// it (`None`: the store could not say).
    async fn renew_lease(&self, stream: &StreamRecord, lease: &mut LeaseClock) -> Option<bool> {
        if !lease.due(self.config.lease) {
            return Some(true);
        }
        let now = Timestamp::now();
        let until = now.plus_millis(self.config.lease.as_millis() as i64);
        let started = std::time::Instant::now();
        match self
            .store
            .lease_stream(&stream.id, &self.holder, until, now)
            .await
        {
            Ok(true) => {
                lease.renewed(started);
                Some(true)
            }
            Ok(false) => {
                *lease = LeaseClock::default();
                // Another instance delivers it, and reports it.
                self.observer.released(&stream.id);
                Some(false)
            }
            Err(error) => {
                tracing::warn!(stream = %stream.id, %error, "cannot lease the stream");
                None
            }
        }
    }

    /// Reports the stream's health as this task now knows it: `delivered` events acknowledged
    /// (the cursor plus one), `lag_events` after them.
    fn report(
        &self,
        stream: &StreamRecord,
        state: StreamState,
        delivered: u64,
        lag_events: u64,
        oldest_pending: Option<Timestamp>,
    ) {
        self.observer.health(&Health {
            stream_id: &stream.id,
            // Empty for an operator-wide stream.
            organization_id: stream.organization_id.as_deref().unwrap_or(""),
            kind: &stream.kind,
            state,
            delivered,
            lag_events,
            oldest_pending,
        });
    }

    /// While a batch fills: returns at `deadline`, once the organization's log holds `full_at`
    /// events (checked when ingest wakes the streams: the log's size is one cheap read, the batch
    /// itself is read again only when it may be sent), when a stream changed, or after a third
    /// of a lease, so the lease is renewed while a long batch window is open.
    async fn wait_for_batch(
        &self,
        organization_id: &str,
        deadline: tokio::time::Instant,
        full_at: u64,
        changes: &mut watch::Receiver<u64>,
    ) {
        let until = deadline.min(tokio::time::Instant::now() + self.config.lease / 3);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                _ = changes.changed() => return,
                () = self.wake.notified() => match self.store.log_size(organization_id).await {
                    Ok(size) if size < full_at => {}
                    _ => return,
                },
            }
        }
    }

    /// One attempt; returns how to wait before the next (`None`: go on at once).
    async fn step(
        &self,
        stream: &StreamRecord,
        streak: &mut FailureStreak,
        lease: &mut LeaseClock,
        checkpoints: &mut CheckpointClock,
    ) -> Option<Pause> {
        if !stream.enabled {
            self.report(stream, stream.state, acknowledged(stream), 0, None);
            return Some(Pause::Idle(self.config.idle_poll));
        }
        // A type this release does not know sends at once: the attempt then finds the stream
        // `invalid` as every unreadable configuration is ([`StreamWorkers::open_settings`]).
        let no_settings = serde_json::Map::new();
        let policy = StreamKind::parse(&stream.kind).map_or(BatchPolicy::AT_ONCE, |kind| {
            BatchPolicy::of(kind, stream.config.as_object().unwrap_or(&no_settings))
        });
        // A lease renewed less than a third of its length ago cannot have been taken by anyone.
        if lease.due(self.config.lease) {
            match self.renew_lease(stream, lease).await {
                Some(true) => {}
                Some(false) => return Some(Pause::Idle(self.config.lease / 3)),
                None => return Some(Pause::Idle(self.config.backoff_initial)),
            }
        }
        let Some(organization_id) = stream.organization_id.as_deref() else {
            return self.step_all(stream, policy, streak).await;
        };
        if checkpoints.due() {
            let pause = self
                .deliver_checkpoint(stream, organization_id, streak, checkpoints)
                .await;
            if pause.is_some() {
                return pause;
            }
        }
        let started = std::time::Instant::now();
        let events = match self
            .store
            .events_after(organization_id, stream.cursor, policy.max_events)
            .await
        {
            Ok(events) if events.is_empty() => {
                self.report(stream, stream.state, acknowledged(stream), 0, None);
                return Some(Pause::Idle(self.config.idle_poll));
            }
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(stream = %stream.id, %error, "cannot read the log");
                return Some(Pause::Idle(self.config.backoff_initial));
            }
        };
        let first = &events[0];
        // A batch shorter than the stream's maximum holds every pending event; a full one may
        // have more behind it, which the log's size tells.
        let lag_events = if events.len() < policy.max_events {
            events.len() as u64
        } else {
            match self.store.log_size(organization_id).await {
                Ok(size) => size.saturating_sub(first.sequence),
                Err(_) => events.len() as u64,
            }
        };
        self.report(
            stream,
            stream.state,
            acknowledged(stream),
            lag_events,
            Some(first.received_at),
        );
        let waited = self.config.clock.now().unix_millis() - first.received_at.unix_millis();
        let oldest_age = Duration::from_millis(u64::try_from(waited).unwrap_or(0));
        if let Decision::Wait(wait) = policy.decide(events.len(), oldest_age) {
            return Some(Pause::Filling {
                deadline: tokio::time::Instant::now() + wait,
                full_at: first.sequence + policy.max_events as u64,
            });
        }
        let read = started.elapsed();
        let outcome = self.send_batch(stream, &events).await;
        let sent = started.elapsed();
        let now = Timestamp::now();
        match outcome {
            Outcome::Delivered(count) if count > 0 => {
                let to = events[count - 1].sequence;
                if let Err(error) = self
                    .store
                    .record_delivery(&stream.id, &self.holder, stream.cursor, to, now)
                    .await
                {
                    tracing::warn!(stream = %stream.id, %error, "cannot advance the cursor; the batch will be sent again");
                }
                self.report(
                    stream,
                    StreamState::Active,
                    to + 1,
                    lag_events.saturating_sub(count as u64),
                    events.get(count).map(|next| next.received_at),
                );
                // Where a stream's time goes (`TRAILMARK_LOG=trailmark_streams=debug`): reading
                // and building event objects, the request, and the durable cursor update.
                tracing::debug!(
                    stream = %stream.id,
                    events = count,
                    read_ms = read.as_secs_f64() * 1000.0,
                    send_ms = (sent - read).as_secs_f64() * 1000.0,
                    record_ms = (started.elapsed() - sent).as_secs_f64() * 1000.0,
                    "delivered"
                );
                streak.recovered();
                None
            }
            Outcome::Delivered(_) => Some(Pause::Idle(self.config.idle_poll)),
            failure => Some(
                self.failed(
                    stream,
                    failure,
                    streak,
                    acknowledged(stream),
                    lag_events,
                    Some(first.received_at),
                )
                .await,
            ),
        }
    }

    /// Sends a batch read from a log, as much as one attempt holds, of the events the stream's
    /// filters let through, and reports the attempt; the outcome counts the events read that
    /// the cursor may pass: all before the first chosen event the destination did not
    /// acknowledge (filtered-out events included). Nothing chosen: no request, and the cursor
    /// passes the batch.
    async fn send_batch(&self, stream: &StreamRecord, events: &[StoredEvent]) -> Outcome {
        let objects: Vec<Value> = events.iter().map(|e| e.to_object()).collect();
        // What the filters let through, with each one's place in the batch read.
        let filters = Filters::of(&stream.config);
        let (chosen, places): (Vec<Value>, Vec<usize>) = if filters.is_empty() {
            let places = (0..objects.len()).collect();
            (objects, places)
        } else {
            objects
                .into_iter()
                .enumerate()
                .filter(|(_, object)| filters.matches(object))
                .map(|(place, object)| (object, place))
                .unzip()
        };
        if chosen.is_empty() {
            return Outcome::Delivered(events.len());
        }
        let started = std::time::Instant::now();
        let outcome = self.send(stream, &chosen).await;
        let (attempt, delivered) = match &outcome {
            Outcome::Delivered(count) => (AttemptOutcome::Delivered, *count),
            Outcome::Retry { .. } => (AttemptOutcome::Retry, 0),
            Outcome::Invalid(_) => (AttemptOutcome::Invalid, 0),
        };
        self.observer.attempt(&Attempt {
            stream_id: &stream.id,
            kind: &stream.kind,
            events: chosen.len(),
            delivered,
            outcome: attempt,
            took: started.elapsed(),
        });
        match outcome {
            Outcome::Delivered(count) => {
                Outcome::Delivered(places.get(count).copied().unwrap_or(events.len()))
            }
            other => other,
        }
    }

    /// Records a failed attempt (`Retry`: `error`, `Invalid`: `invalid`) and says how long to
    /// wait before the next.
    async fn failed(
        &self,
        stream: &StreamRecord,
        failure: Outcome,
        streak: &mut FailureStreak,
        acknowledged: u64,
        lag_events: u64,
        oldest_pending: Option<Timestamp>,
    ) -> Pause {
        let now = Timestamp::now();
        let (state, reason, wait) = match failure {
            Outcome::Retry { reason, after } => {
                let failing_for = streak.failed(tokio::time::Instant::now());
                let wait = self.retry_policy().delay(failing_for, after, random());
                tracing::info!(stream = %stream.id, %reason, failing_s = failing_for.as_secs(), retry_in_ms = wait.as_millis() as u64, "delivery failed; retrying");
                (StreamState::Error, reason, wait)
            }
            Outcome::Invalid(reason) => {
                streak.failed(tokio::time::Instant::now());
                tracing::info!(stream = %stream.id, %reason, "the destination refused the stream's configuration");
                (StreamState::Invalid, reason, self.config.invalid_retry)
            }
            Outcome::Delivered(_) => return Pause::Idle(self.config.idle_poll),
        };
        self.record_failure(stream, state, &reason, now).await;
        self.report(stream, state, acknowledged, lag_events, oldest_pending);
        Pause::Backoff(wait)
    }

    /// One attempt of an operator-wide stream: each organization's log with events after its
    /// cursor, in organization id order, a batch each, in the log's order; the first failure
    /// stops the attempt, and the logs after it wait with it. Signed checkpoints are each
    /// organization's and go to its own streams only.
    async fn step_all(
        &self,
        stream: &StreamRecord,
        policy: BatchPolicy,
        streak: &mut FailureStreak,
    ) -> Option<Pause> {
        let (cursors, sizes) = match (
            self.store.organization_cursors(&stream.id).await,
            self.store.log_sizes().await,
        ) {
            (Ok(cursors), Ok(sizes)) => {
                (cursors.into_iter().collect::<HashMap<String, u64>>(), sizes)
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(stream = %stream.id, %error, "cannot read the logs");
                return Some(Pause::Idle(self.config.backoff_initial));
            }
        };
        let next = |organization: &str| cursors.get(organization).map_or(0, |c| c + 1);
        let mut acknowledged: u64 = sizes.iter().map(|(o, _)| next(o)).sum();
        let mut lag: u64 = sizes
            .iter()
            .map(|(o, size)| size.saturating_sub(next(o)))
            .sum();
        let mut delivered_any = false;
        let mut sooner: Option<Duration> = None;
        for (organization_id, size) in &sizes {
            let cursor = cursors.get(organization_id).copied();
            if next(organization_id) >= *size {
                continue;
            }
            let events = match self
                .store
                .events_after(organization_id, cursor, policy.max_events)
                .await
            {
                Ok(events) if events.is_empty() => continue,
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(stream = %stream.id, %error, "cannot read the log");
                    return Some(Pause::Idle(self.config.backoff_initial));
                }
            };
            let first_received = events[0].received_at;
            let waited = self.config.clock.now().unix_millis() - first_received.unix_millis();
            let oldest_age = Duration::from_millis(u64::try_from(waited).unwrap_or(0));
            if let Decision::Wait(wait) = policy.decide(events.len(), oldest_age) {
                sooner = Some(sooner.map_or(wait, |s| s.min(wait)));
                continue;
            }
            match self.send_batch(stream, &events).await {
                Outcome::Delivered(count) if count > 0 => {
                    let to = events[count - 1].sequence;
                    match self
                        .store
                        .record_organization_delivery(
                            &stream.id,
                            &self.holder,
                            organization_id,
                            cursor,
                            to,
                            Timestamp::now(),
                        )
                        .await
                    {
                        Ok(true) => {
                            acknowledged += count as u64;
                            lag = lag.saturating_sub(count as u64);
                            delivered_any = true;
                            streak.recovered();
                        }
                        // A replay moved the cursor, or the lease was lost: read again.
                        Ok(false) => return None,
                        Err(error) => {
                            tracing::warn!(stream = %stream.id, %error, "cannot advance the cursor; the batch will be sent again");
                            return Some(Pause::Idle(self.config.backoff_initial));
                        }
                    }
                }
                Outcome::Delivered(_) => {}
                failure => {
                    return Some(
                        self.failed(
                            stream,
                            failure,
                            streak,
                            acknowledged,
                            lag,
                            Some(first_received),
                        )
                        .await,
                    );
                }
            }
        }
        let state = if delivered_any {
            StreamState::Active
        } else {
            stream.state
        };
        self.report(stream, state, acknowledged, lag, None);
        if delivered_any {
            None
        } else {
            Some(Pause::Idle(sooner.map_or(self.config.idle_poll, |wait| {
                wait.max(Duration::from_millis(10))
            })))
        }
    }

    /// Delivers the organization's latest signed checkpoint if it is newer than the last one
    /// this task delivered (after a restart, or a move to another instance, the latest is sent
    /// once more: receivers keep checkpoints by tree size). A failure waits like a failed batch.
    async fn deliver_checkpoint(
        &self,
        stream: &StreamRecord,
        organization_id: &str,
        streak: &mut FailureStreak,
        checkpoints: &mut CheckpointClock,
    ) -> Option<Pause> {
        checkpoints.next_look = Some(Instant::now() + self.config.checkpoint_every);
        let checkpoint = match self.store.latest_checkpoint(organization_id).await {
            Ok(Some(checkpoint))
                if checkpoints
                    .delivered
                    .is_none_or(|size| checkpoint.tree_size > size) =>
            {
                checkpoint
            }
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(stream = %stream.id, %error, "cannot read the latest checkpoint");
                return None;
            }
        };
        let outcome = match self.sink(stream) {
            Ok((sink, proxy)) => {
                let cx = self.context(stream, proxy.as_deref());
                sink.send_checkpoint(&cx, &checkpoint.to_object()).await
            }
            Err(outcome) => outcome,
        };
        let now = Timestamp::now();
        match outcome {
            Outcome::Delivered(_) => {
                tracing::debug!(stream = %stream.id, tree_size = checkpoint.tree_size, "delivered a checkpoint");
                checkpoints.delivered = Some(checkpoint.tree_size);
                None
            }
            Outcome::Retry { reason, after } => {
                // Tried again as soon as the wait is over, not a whole interval later.
                checkpoints.next_look = None;
                let failing_for = streak.failed(tokio::time::Instant::now());
                let wait = self.retry_policy().delay(failing_for, after, random());
                let reason = format!("delivering a checkpoint: {reason}");
                self.record_failure(stream, StreamState::Error, &reason, now)
                    .await;
                Some(Pause::Backoff(wait))
            }
            Outcome::Invalid(reason) => {
                checkpoints.next_look = None;
                streak.failed(tokio::time::Instant::now());
                let reason = format!("delivering a checkpoint: {reason}");
                self.record_failure(stream, StreamState::Invalid, &reason, now)
                    .await;
                Some(Pause::Backoff(self.config.invalid_retry))
            }
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: self.config.backoff_initial,
            max: self.config.backoff_max,
        }
    }

    async fn record_failure(
        &self,
        stream: &StreamRecord,
        state: StreamState,
        reason: &str,
        now: Timestamp,
    ) {
        if let Err(error) = self
            .store
            .record_stream_failure(&stream.id, state, reason, now)
            .await
        {
            tracing::warn!(stream = %stream.id, %error, "cannot record the failure");
        }
    }
}

/// When a stream's task next looks for a checkpoint to deliver (`None`: at once), and the size
/// of the last one it delivered.
struct CheckpointClock {
    next_look: Option<Instant>,
    delivered: Option<u64>,
}

impl CheckpointClock {
    fn due(&self) -> bool {
        self.next_look.is_none_or(|at| Instant::now() >= at)
    }
}

/// Events the stream's destination acknowledged, by its stored cursor.
fn acknowledged(stream: &StreamRecord) -> u64 {
    stream.cursor.map_or(0, |cursor| cursor + 1)
}

/// How a stream's task waits between attempts.
enum Pause {
    /// Up to this long, or until ingest wakes it.
    Idle(Duration),
    /// A batch is filling: until `deadline`, or until the log holds `full_at` events.
    Filling {
        deadline: tokio::time::Instant,
        full_at: u64,
    },
    /// After a failure: this long, whatever is ingested meanwhile ([`StreamWorkers::back_off`]).
    Backoff(Duration),
}

/// Whether nothing that decides what and where a stream delivers changed between two reads of
/// it (the state and last error a failure records do not count).
fn same_delivery(before: &StreamRecord, after: &StreamRecord) -> bool {
    before.cursor == after.cursor
        && before.enabled == after.enabled
        && before.config == after.config
        && before.secrets == after.secrets
}

/// When this task last took or renewed its stream's lease (by the monotonic clock, read before
/// the renewal was sent, so the lease is never thought to last longer than it does).
#[derive(Default)]
struct LeaseClock {
    renewed_at: Option<std::time::Instant>,
}

impl LeaseClock {
    /// Whether a third of the lease has passed since it was renewed (or it never was).
    fn due(&self, lease: Duration) -> bool {
        self.renewed_at.is_none_or(|at| at.elapsed() >= lease / 3)
    }

    fn renewed(&mut self, at: std::time::Instant) {
        self.renewed_at = Some(at);
    }
}

/// A random number for jitter (0 if the OS random source fails: the wait is then its shortest).
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map(|()| u64::from_le_bytes(bytes))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::http::{HeaderMap, StatusCode};
    use serde_json::json;
    use tokio::time::Instant as VirtualInstant;
    use trailmark_domain::event::NewEvent;
    use trailmark_domain::id::IdKind;
    use trailmark_domain::organization::OrganizationChanges;
    use trailmark_store::{AppendRequest, PendingEvent, SqliteStore};

    use super::*;
    use crate::backoff::RetryPolicy;

    /// What the receiver saw: when (on the paused clock) each request came and how it was
    /// answered.
    #[derive(Default)]
    struct Seen {
        requests: Vec<(Duration, StatusCode, usize)>,
    }

    /// A webhook receiver that checks each request is a signed Standard Webhooks delivery of
    /// WorkOS envelopes, answers 503 until `healthy` is set, then 200.
    async fn strict_local_receiver(
        secret: String,
        start: VirtualInstant,
        healthy: Arc<AtomicBool>,
        seen: Arc<Mutex<Seen>>,
    ) -> String {
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (secret, healthy, seen) = (secret.clone(), Arc::clone(&healthy), Arc::clone(&seen));
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let (Some(id), Some(timestamp), Some(signature)) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                ) else {
                    return StatusCode::BAD_REQUEST;
                };
                let expected = timestamp
                    .parse()
                    .ok()
                    .and_then(|t| crate::http::signature(&secret, &id, t, &body));
                if expected.as_deref() != Some(signature.as_str()) {
                    return StatusCode::UNAUTHORIZED;
                }
                let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                if items
                    .iter()
                    .any(|item| item["event"]["id"] != item["keySuffix"])
                {
                    return StatusCode::BAD_REQUEST;
                }
                let status = if healthy.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                if let Ok(mut seen) = seen.lock() {
                    seen.requests.push((start.elapsed(), status, items.len()));
                }
                status
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let app = axum::Router::new().route("/hook", axum::routing::post(handler));
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{address}/hook")
    }

    /// A batch goes out once it holds `max_events`, or once its oldest event has waited
    /// `max_wait_seconds` since it was received, whichever comes first: on the paused clock, two
    /// events wait their ten seconds and go together; five go at once.
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_its_window_or_goes_out_when_full_strict_local_receiver() {
        // The clock moves only when this test advances it (see the test below).
        let spinner = tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
        let directory = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&directory.path().join("t.db")).expect("store"));
        let organization = store
            .insert_organization(
                OrganizationChanges::parse(&json!({"name": "Acme"}), true)
                    .expect("organization")
                    .into_new_organization(Timestamp::now()),
            )
            .await
            .expect("insert organization");
        let start = VirtualInstant::now();
        let base = Timestamp::now();
        // Events are received, and batches aged, on the paused clock.
        let clock = Clock::new(move || base.plus_millis(start.elapsed().as_millis() as i64));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let secret = crate::settings::new_signing_secret().expect("secret");
        let url = strict_local_receiver(
            secret.clone(),
            start,
            Arc::new(AtomicBool::new(true)),
            Arc::clone(&seen),
        )
        .await;
        let sealer = Sealer::new(&[9; 32]);
        let settings = Settings::parse(
            StreamKind::parse("http").expect("http streams"),
            &json!({"url": url, "signing_secret": secret,
                    "batch": {"max_events": 5, "max_wait_seconds": 10}}),
            String::new,
        )
        .expect("settings");
        let id = IdKind::LogStream.generate().into_string();
        let now = Timestamp::now();
        store
            .insert_stream(StreamRecord {
                secrets: sealer
                    .seal(&id, &settings.secrets.to_bytes())
                    .expect("seal"),
                id: id.clone(),
                organization_id: Some(organization.id.clone()),
                kind: "http".into(),
                name: "SIEM".into(),
                config: Value::Object(settings.public),
                enabled: true,
                state: StreamState::Active,
                cursor: None,
                last_synced_at: None,
                last_error: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("stream");
        let workers = StreamWorkers::new(
            Arc::clone(&store),
            sealer,
            WorkerConfig {
                allow_private: true,
                clock: clock.clone(),
                ..WorkerConfig::default()
            },
            "worker_test".into(),
            CancellationToken::new(),
        )
        .expect("workers");
        workers.start_new_streams().await;
        let append = |count: usize| {
            let (store, organization, clock) =
                (Arc::clone(&store), organization.id.clone(), clock.clone());
            async move {
                for n in 0..count {
                    let event = NewEvent::parse(&json!({
                        "action": "user.signed_in",
                        "occurred_at": "2026-08-01T10:00:00Z",
                        "actor": {"id": format!("user_{n}"), "type": "user"},
                        "targets": [],
                        "context": {"location": "192.0.2.1"},
                        "metadata": {"n": n, "at": clock.now().unix_millis()},
                    }))
                    .expect("event");
                    store
                        .append(AppendRequest {
                            organization_id: organization.clone(),
                            events: vec![PendingEvent {
                                id: IdKind::Event.generate().into_string(),
                                event,
                                received_at: clock.now(),
                            }],
                            idempotency: None,
                        })
                        .await
                        .expect("append");
                }
            }
        };
        let requests = || seen.lock().map(|s| s.requests.clone()).unwrap_or_default();
        // Moves the paused clock until the receiver has seen `count` requests (or `limit`).
        let run_until = |count: usize, limit: Duration| {
            let requests = &requests;
            async move {
                while requests().len() < count && start.elapsed() < limit {
                    tokio::time::advance(Duration::from_millis(50)).await;
                    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
                        .await
                        .expect("sleep");
                }
            }
        };

        append(2).await;
        workers.wake();
        run_until(1, Duration::from_secs(30)).await;
        let first = requests();
        assert_eq!(first.len(), 1, "{first:?}");
        let (at, status, count) = first[0];
        assert_eq!((status, count), (StatusCode::OK, 2), "{first:?}");
        assert!(
            at >= Duration::from_secs(10) && at <= Duration::from_millis(10_600),
            "two events waited their window: sent at {at:?}"
        );

        let full_from = start.elapsed();
        append(5).await;
        workers.wake();
        run_until(2, full_from + Duration::from_secs(30)).await;
        let second = requests();
        assert_eq!(second.len(), 2, "{second:?}");
        let (at, _, count) = second[1];
        assert_eq!(count, 5, "{second:?}");
        assert!(
            at - full_from < Duration::from_secs(1),
            "a full batch goes at once: sent {:?} after the first of its events",
            at - full_from
        );
        spinner.abort();
    }

    /// The storm: a receiver down for 4 s while 500 events arrive one by one, each waking
    /// the streams. On the paused clock, the stream tries a handful of times (its waits grow
    /// with the outage, and no event cuts one short), then delivers everything within the wait
    /// that was in force when the receiver came back.
    #[tokio::test(start_paused = true)]
    async fn events_arriving_during_an_outage_never_shorten_the_backoff_strict_local_receiver() {
        // The clock moves only when this test advances it: a task that is always ready keeps
        // the runtime from jumping to the next timer while SQLite's writer thread works.
        let spinner = tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
        let directory = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&directory.path().join("t.db")).expect("store"));
        let organization = store
            .insert_organization(
                OrganizationChanges::parse(&json!({"name": "Acme"}), true)
                    .expect("organization")
                    .into_new_organization(Timestamp::now()),
            )
            .await
            .expect("insert organization");

        let start = VirtualInstant::now();
        let healthy = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let secret = crate::settings::new_signing_secret().expect("secret");
        let http = StreamKind::parse("http").expect("http streams");
        let url = strict_local_receiver(
            secret.clone(),
            start,
            Arc::clone(&healthy),
            Arc::clone(&seen),
        )
        .await;
        let sealer = Sealer::new(&[9; 32]);
        let settings = Settings::parse(
            http,
            &json!({"url": url, "signing_secret": secret}),
            String::new,
        )
        .expect("settings");
        let id = IdKind::LogStream.generate().into_string();
        let now = Timestamp::now();
        store
            .insert_stream(StreamRecord {
                secrets: sealer
                    .seal(&id, &settings.secrets.to_bytes())
                    .expect("seal"),
                id: id.clone(),
                organization_id: Some(organization.id.clone()),
                kind: "http".into(),
                name: "SIEM".into(),
                config: Value::Object(settings.public),
                enabled: true,
                state: StreamState::Active,
                cursor: None,
                last_synced_at: None,
                last_error: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("stream");
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        };
        let workers = StreamWorkers::new(
            Arc::clone(&store),
            sealer,
            WorkerConfig {
                allow_private: true,
                backoff_initial: policy.initial,
                backoff_max: policy.max,
                ..WorkerConfig::default()
            },
            "worker_test".into(),
            CancellationToken::new(),
        )
        .expect("workers");
        workers.start_new_streams().await;

        let outage = Duration::from_secs(4);
        for n in 0..500 {
            let event = NewEvent::parse(&json!({
                "action": "user.signed_in",
                "occurred_at": "2026-08-01T10:00:00Z",
                "actor": {"id": format!("user_{n}"), "type": "user"},
                "targets": [],
                "context": {"location": "192.0.2.1"},
            }))
            .expect("event");
            store
                .append(AppendRequest {
                    organization_id: organization.id.clone(),
                    events: vec![PendingEvent {
                        id: IdKind::Event.generate().into_string(),
                        event,
                        received_at: Timestamp::now(),
                    }],
                    idempotency: None,
                })
                .await
                .expect("append");
            workers.wake();
            tokio::time::advance(outage / 500).await;
        }
        healthy.store(true, Ordering::SeqCst);
        let recovered_at = start.elapsed();

        let delivered = |seen: &Seen| {
            seen.requests
                .iter()
                .filter(|(_, status, _)| status.is_success())
                .map(|(_, _, count)| count)
                .sum::<usize>()
        };
        // Until everything arrived, the clock runs at most a few times faster than real time, so
        // the real time an attempt takes (reading 500 events, the request) shows up on the
        // paused clock as tens of milliseconds, not seconds.
        while seen.lock().map(|s| delivered(&s)).unwrap_or(0) < 500 {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "never delivered"
            );
            tokio::time::advance(Duration::from_millis(4)).await;
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
                .await
                .expect("sleep");
        }

        let requests = seen.lock().expect("seen").requests.clone();
        let failures: Vec<Duration> = requests
            .iter()
            .filter(|(_, status, _)| !status.is_success())
            .map(|(at, _, _)| *at)
            .collect();
        assert!(
            (2..=8).contains(&failures.len()),
            "{} attempts during a 4 s outage with 500 events arriving: {requests:?}",
            failures.len()
        );
        for pair in failures.windows(2) {
            assert!(
                pair[1] - pair[0] >= policy.initial / 2,
                "attempts came closer than the shortest wait: {requests:?}"
            );
        }
        let (first_failure, last_failure) = (failures[0], failures[failures.len() - 1]);
        let in_force = policy.in_force(last_failure - first_failure);
        let first_success = requests
            .iter()
            .find(|(_, status, _)| status.is_success())
            .map(|(at, _, _)| *at)
            .expect("a success");
        assert!(
            first_success >= recovered_at.min(last_failure),
            "{requests:?}"
        );
        // The next attempt comes within the wait in force when the outage ended; the slack
        // covers the clock this test moved while the attempt was under way.
        assert!(
            first_success <= last_failure + in_force + Duration::from_millis(500),
            "resumed at {first_success:?}, last failure at {last_failure:?} with {in_force:?} in force: {requests:?}"
        );
        // The cursor moves once the worker has the destination's answer.
        let mut cursor = None;
        for _ in 0..1000 {
            cursor = store
                .get_stream(&id)
                .await
                .expect("read")
                .expect("stream")
                .cursor;
            if cursor == Some(499) {
                break;
            }
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(2)))
                .await
                .expect("sleep");
        }
        assert_eq!(cursor, Some(499));
        spinner.abort();
    }
}
