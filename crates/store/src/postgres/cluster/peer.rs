//! Handing appends to the instance that sequences them, and taking them from the others.
//!
//! To each peer, an instance keeps one connection of its own ([`Peers`]; the peer keeps one the
//! other way). Appends waiting to go out leave together in one frame, as answers come back
//! together: the hand-over costs a frame per group, not per append. Only an answer that the
//! owner committed (or that the organization does not exist) counts: an append whose answer
//! does not come — the peer cannot be reached, the connection broke, the answer is late, the
//! owner failed — is committed by this instance after all. That is safe because only appends
//! with an idempotency claim are handed over: if the peer committed it, this instance's turn
//! finds its claim under the head's lock and answers with the peer's receipts; if it did not,
//! and commits later, the peer's turn finds this one's. A connection on which nothing at all
//! was answered while an answer was awaited is closed and its peer left alone for a while, so
//! that later appends do not each wait for a peer that hangs; a late answer beside others
//! (one organization slow on the owner) closes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::channel::{self, ChannelError, FrameReader, FrameWriter, Secret};
use super::wire::{self, Answer, Forward, Refusal};
use crate::model::AppendOutcome;
use crate::postgres::appender::Appender;
use crate::rules::PreparedAppend;

/// How long a connection and its handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that could not be reached is not tried again for this long: meanwhile its
/// organizations' appends are committed here, without a connection attempt each.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A frame stops growing at this size, so one frame never holds up the next for long.
const FRAME_BYTES: usize = 4 << 20;
/// An append larger than this (as bytes) is committed here rather than handed over: with
/// [`FRAME_BYTES`] of others beside it, it stays below what a peer accepts as a frame.
const MAX_HANDED: usize = channel::MAX_FRAME / 2;
/// Peers' connections an instance serves at once, past their handshake; a further one is
/// closed at once.
const MAX_PEER_CONNECTIONS: usize = 64;
/// Handshakes in progress at once, at most: connections that have proved nothing yet cannot
/// take the places of peers' connections.
const MAX_HANDSHAKES: usize = 16;
/// A peer's connection with no frame for this long is closed: its peer may have gone without
/// closing it (the peer reconnects when it next hands something over).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type AnswerSender = oneshot::Sender<Result<AppendOutcome, Refusal>>;

/// An append on its way to a peer, already encoded by the task that hands it over.
struct Outgoing {
    append: Vec<u8>,
    answer: AnswerSender,
}

/// The connections to this instance's peers.
pub(crate) struct Peers {
    secret: Arc<Secret>,
    answer_timeout: Duration,
    by_address: Mutex<HashMap<String, Arc<Peer>>>,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct Peer {
    link: Mutex<Link>,
    /// Held while connecting, so that the appends that find no connection wait for one
    /// attempt rather than each making their own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    unreachable_until: Option<Instant>,
}

/// An open connection, as the appends that use it see it.
#[derive(Clone)]
struct Connection {
    id: u64,
    sender: mpsc::UnboundedSender<Outgoing>,
    /// Ends the connection's task.
    close: Arc<Notify>,
    /// Answer frames received so far: a late answer closes the connection only if none came
    /// while it was awaited.
    answer_frames: Arc<AtomicU64>,
}

/// What a connection's task keeps of it: no sender, so that the task ends when the peers are
/// dropped.
struct TaskSide {
    id: u64,
    close: Arc<Notify>,
    answer_frames: Arc<AtomicU64>,
}

impl Connection {
    fn clone_for_task(&self) -> TaskSide {
        TaskSide {
            id: self.id,
            close: Arc::clone(&self.close),
            answer_frames: Arc::clone(&self.answer_frames),
        }
    }
}

/// What became of an append handed to a peer.
pub(crate) enum Handed {
    Answered(Result<AppendOutcome, Refusal>),
    /// No answer: the caller commits the append itself.
    Unanswered,
}

impl Peers {
    pub(crate) fn new(secret: Arc<Secret>, answer_timeout: Duration) -> Self {
        Peers {
            secret,
            answer_timeout,
            by_address: Mutex::default(),
            next_connection: AtomicU64::new(0),
        }
    }

    /// Hands `append` to the peer at `address` and waits for its answer.
    pub(crate) async fn hand(&self, address: &str, append: &PreparedAppend) -> Handed {
        let Some(peer) = self.peer(address) else {
            return Handed::Unanswered;
        };
        let Some(connection) = self.connection(address, &peer).await else {
            return Handed::Unanswered;
        };
        // Encoded only once there is a connection to send it on: a peer left alone costs its
        // appends no copy.
        let mut encoded = Vec::with_capacity(append.events.iter().map(|e| e.body.len() * 2).sum());
        wire::write_append(append, &mut encoded);
        if encoded.len() > MAX_HANDED {
            return Handed::Unanswered;
        }
        let (answer, answered) = oneshot::channel();
        let frames_before = connection.answer_frames.load(Ordering::Relaxed);
        let sent = connection.sender.send(Outgoing {
            append: encoded,
            answer,
        });
        if sent.is_err() {
            return Handed::Unanswered;
        }
        match tokio::time::timeout(self.answer_timeout, answered).await {
            Ok(Ok(outcome)) => Handed::Answered(outcome),
            // The connection ended without answering.
            Ok(Err(_)) => Handed::Unanswered,
            Err(_) if connection.answer_frames.load(Ordering::Relaxed) != frames_before => {
                // The peer answers others: this append's organization is slow there.
                Handed::Unanswered
            }
            Err(_) => {
                tracing::warn!(
                    peer = address,
                    "the instance that sequences an organization answered nothing in {} ms; closing the connection and appending here for {} s",
                    self.answer_timeout.as_millis(),
                    RETRY_AFTER.as_secs()
                );
                peer.forget(connection.id);
                peer.leave_alone();
                connection.close.notify_one();
                Handed::Unanswered
            }
        }
    }

    fn peer(&self, address: &str) -> Option<Arc<Peer>> {
        let mut peers = self.by_address.lock().ok()?;
        // Looked up before the entry is made: the address is copied once, not per append.
        if let Some(peer) = peers.get(address) {
            return Some(Arc::clone(peer));
        }
        Some(Arc::clone(peers.entry(address.to_owned()).or_default()))
    }

    /// The open connection to `peer`, made if there is none and it was not found unreachable
    /// within [`RETRY_AFTER`].
    async fn connection(&self, address: &str, peer: &Arc<Peer>) -> Option<Connection> {
        if let Some(connection) = peer.open_connection()? {
            return Some(connection);
        }
        let _connecting = peer.connecting.lock().await;
        // Another append may have connected while this one waited.
        if let Some(connection) = peer.open_connection()? {
            return Some(connection);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(address)).await {
            Ok(Ok((reads, writes))) => {
                let (sender, outgoing) = mpsc::unbounded_channel();
                let connection = Connection {
                    id: self.next_connection.fetch_add(1, Ordering::Relaxed),
                    sender,
                    close: Arc::new(Notify::new()),
                    answer_frames: Arc::new(AtomicU64::new(0)),
                };
                if let Ok(mut link) = peer.link.lock() {
                    link.connection = Some(connection.clone());
                    link.unreachable_until = None;
                }
                // The task holds no sender and only a weak reference to the peer: when the
                // peers are dropped, its queue closes and it ends.
                tokio::spawn(run_connection(
                    reads,
                    writes,
                    outgoing,
                    Arc::downgrade(peer),
                    connection.clone_for_task(),
                ));
                Some(connection)
            }
            failed => {
                let why = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "it did not answer in time".to_owned(),
                };
                tracing::warn!(
                    peer = address,
                    error = why,
                    "cannot reach the instance that sequences an organization; appending here for {} s",
                    RETRY_AFTER.as_secs()
                );
                peer.leave_alone();
                None
            }
        }
    }

    async fn connect(
        &self,
        address: &str,
    ) -> Result<
        (
            FrameReader<tokio::io::ReadHalf<TcpStream>>,
            FrameWriter<tokio::io::WriteHalf<TcpStream>>,
        ),
        ChannelError,
    > {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        channel::connect(stream, &self.secret).await
    }
}

impl Peer {
    /// `Some(Some(connection))` if connected, `Some(None)` if a connection may be tried,
    /// `None` if the peer was found unreachable a moment ago.
    fn open_connection(&self) -> Option<Option<Connection>> {
        let link = self.link.lock().ok()?;
        if let Some(connection) = &link.connection {
            return Some(Some(connection.clone()));
        }
        match link.unreachable_until {
            Some(until) if Instant::now() < until => None,
            _ => Some(None),
        }
    }

    /// Appends for this peer are committed here for [`RETRY_AFTER`], without trying it.
    fn leave_alone(&self) {
        if let Ok(mut link) = self.link.lock() {
            link.unreachable_until = Some(Instant::now() + RETRY_AFTER);
        }
    }

    /// Stops using connection `id`, if it is still the peer's.
    fn forget(&self, id: u64) {
        if let Ok(mut link) = self.link.lock()
            && link.connection.as_ref().is_some_and(|c| c.id == id)
        {
            link.connection = None;
        }
    }
}

/// Sends the appends queued for one peer and routes its answers, until the connection fails or
/// is closed; then every append without an answer is left to its sender
/// ([`Handed::Unanswered`]), as the answer senders are dropped with `waiting`.
async fn run_connection<R, W>(
    mut reads: FrameReader<R>,
    mut writes: FrameWriter<W>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    peer: Weak<Peer>,
    side: TaskSide,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let waiting: Mutex<HashMap<u64, AnswerSender>> = Mutex::default();
    let next_id = AtomicU64::new(0);
    let sending = async {
        let mut message = Vec::new();
        while let Some(first) = outgoing.recv().await {
            let mut group = vec![first];
            let mut bytes = group[0].append.len();
            while bytes < FRAME_BYTES {
                match outgoing.try_recv() {
                    Ok(more) => {
                        bytes += more.append.len();
                        group.push(more);
                    }
                    Err(_) => break,
                }
            }
            let mut forwards = Vec::with_capacity(group.len());
            {
                let Ok(mut waiting) = waiting.lock() else {
                    return;
                };
                for item in group {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    waiting.insert(id, item.answer);
                    forwards.push((id, item.append));
                }
            }
            message.clear();
            wire::write_forwards(
                forwards.iter().map(|(id, append)| (*id, append.as_slice())),
                &mut message,
            );
            if let Err(error) = writes.send(&message).await {
                tracing::warn!(%error, "a connection to a peer instance failed while sending");
                return;
            }
        }
    };
    let receiving = async {
        loop {
            let answers = match reads.receive().await {
                Ok(message) => wire::read_answers(&message).map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            let answers = match answers {
                Ok(answers) => answers,
                Err(error) => {
                    tracing::warn!(%error, "a connection to a peer instance failed while receiving");
                    return;
                }
            };
            side.answer_frames.fetch_add(1, Ordering::Relaxed);
            let Ok(mut waiting) = waiting.lock() else {
                return;
            };
            for Answer { id, outcome } in answers {
                if let Some(answer) = waiting.remove(&id) {
                    let _ = answer.send(outcome);
                }
            }
        }
    };
    tokio::select! {
        () = sending => {}
        () = receiving => {}
        () = side.close.notified() => {}
    }
    if let Some(peer) = peer.upgrade() {
        peer.forget(side.id);
    }
}

/// Takes appends from peers on `listener` and commits them through `appender`, until the task
/// is dropped (which drops every connection's task with it).
pub(crate) async fn serve(listener: TcpListener, secret: Arc<Secret>, appender: Appender) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let room = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(ended) = connections.join_next() => {
                if let Err(error) = ended {
                    tracing::error!(%error, "a peer connection's task failed");
                }
                continue;
            }
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "cannot accept a peer instance's connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused quietly: logging each would let whoever floods the port flood the log.
        let Ok(handshake) = Arc::clone(&handshakes).try_acquire_owned() else {
            continue;
        };
        let (secret, appender, room) = (Arc::clone(&secret), appender.clone(), Arc::clone(&room));
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let channel = tokio::time::timeout(CONNECT_TIMEOUT, channel::accept(stream, &secret))
                .await
                .map_err(|_| ChannelError::Refused("it did not finish its handshake in time"));
            drop(handshake);
            let (reads, writes) = match channel {
                Ok(Ok(halves)) => halves,
                Ok(Err(error)) | Err(error) => {
                    tracing::warn!(peer = %from, %error, "refused a peer instance's connection");
                    return;
                }
            };
            let Ok(_place) = room.try_acquire_owned() else {
                tracing::warn!(peer = %from, "refused a peer connection: {MAX_PEER_CONNECTIONS} are open");
                return;
            };
            if let Err(error) = serve_connection(reads, writes, appender).await {
                tracing::warn!(peer = %from, %error, "a peer instance's connection ended");
            }
        });
    }
}

async fn serve_connection<R, W>(
    mut reads: FrameReader<R>,
    mut writes: FrameWriter<W>,
    appender: Appender,
) -> Result<(), ChannelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (forwarded, mut forwards) = mpsc::unbounded_channel::<Forward>();
    // Reads whole frames: a frame is never cut by the other side of the `select!` below.
    let receiving = async {
        loop {
            let Ok(received) = tokio::time::timeout(IDLE_TIMEOUT, reads.receive()).await else {
                return Ok(());
            };
            let message = match received {
                Ok(message) => message,
                // The peer closed the connection between frames: it stopped, or restarts.
                Err(ChannelError::Io(error))
                    if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(());
                }
                Err(error) => return Err(error),
            };
            let read = wire::read_forwards(&message)
                .map_err(|_| ChannelError::Refused("it sent a malformed message"))?;
            for forward in read {
                if forwarded.send(forward).is_err() {
                    return Ok(());
                }
            }
        }
    };
    // Commits each append in a task of its own (the appender groups them, and an append that
    // waits for its organization's head does not hold up another's); the tasks end with the
    // connection's.
    let answering = async {
        let mut appends = JoinSet::new();
        let mut message = Vec::new();
        loop {
            tokio::select! {
                forward = forwards.recv() => {
                    let Some(Forward { id, append }) = forward else {
                        return Ok(());
                    };
                    let appender = appender.clone();
                    appends.spawn(async move {
                        let outcome = appender
                            .append_prepared(append)
                            .await
                            .map_err(|error| Refusal::of(&error));
                        Answer { id, outcome }
                    });
                }
                Some(first) = appends.join_next() => {
                    let mut answers = Vec::new();
                    for done in std::iter::once(first).chain(std::iter::from_fn(|| appends.try_join_next())) {
                        match done {
                            Ok(answer) => answers.push(answer),
                            // A bug; its sender gives up waiting and commits the append itself.
                            Err(error) => tracing::error!(%error, "a handed-over append's task failed"),
                        }
                    }
                    // Frames of at most about FRAME_BYTES: a peer refuses larger ones.
                    for group in frames_of(&answers) {
                        message.clear();
                        wire::write_answers(group.iter(), &mut message);
                        writes.send(&message).await?;
                    }
                }
            }
        }
    };
    tokio::select! {
        ended = receiving => ended,
        ended = answering => ended,
    }
}

/// `answers` cut into groups of at most about [`FRAME_BYTES`] each, as written.
fn frames_of(answers: &[Answer]) -> Vec<&[Answer]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (n, answer) in answers.iter().enumerate() {
        let size = wire::answer_size(answer);
        if n > start && bytes + size > FRAME_BYTES {
            groups.push(&answers[start..n]);
            start = n;
            bytes = 0;
        }
        bytes += size;
    }
    if start < answers.len() {
        groups.push(&answers[start..]);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Receipt;

    fn answer(id: u64, receipts: usize) -> Answer {
        Answer {
            id,
            outcome: Ok(AppendOutcome::Appended {
                receipts: (0..receipts)
                    .map(|n| Receipt {
                        id: format!("event_{n:026}"),
                        sequence: n as u64,
                        leaf_hash: [0; 32],
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn answers_go_out_in_frames_a_peer_accepts() {
        // Receipts of ~80 bytes: 40,000 of them make ~3.2 MB.
        let answers: Vec<Answer> = (0..4).map(|id| answer(id, 40_000)).collect();
        let groups = frames_of(&answers);
        assert!(groups.len() > 1, "{} groups", groups.len());
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), 4);
        for group in &groups {
            let mut message = Vec::new();
            wire::write_answers(group.iter(), &mut message);
            assert!(message.len() <= 2 * FRAME_BYTES, "{}", message.len());
        }
        assert_eq!(frames_of(&[]).len(), 0);
        assert_eq!(frames_of(&answers[..1]).len(), 1);
    }
}
