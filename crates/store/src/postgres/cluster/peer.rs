//! Handing appends to the instance that sequences them, and taking them from the others.
//!
//! To a peer, an instance keeps one connection ([`Peers`]). Appends waiting to go out leave
//! together in one frame, as answers come back together: the forwarding costs a frame per
//! group, not per append. Only an answer counts: an append whose answer does not come (the
//! peer cannot be reached, the connection broke, the answer is late) is appended by this
//! instance after all, which is safe because only appends with an idempotency claim are handed
//! over. If the peer committed it, this instance's turn finds its claim under the head's lock
//! and answers with the peer's receipts; if it did not, and commits later, the peer's turn
//! finds this one's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::channel::{self, ChannelError, FrameReader, FrameWriter, Secret};
use super::wire::{self, Answer, Refusal};
use crate::model::AppendOutcome;
use crate::postgres::appender::Appender;
use crate::rules::PreparedAppend;

/// How long a connection and its handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that could not be reached is not tried again for this long: meanwhile its
/// organizations' appends are committed here, without a connection attempt each.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long an answer is waited for before the append is committed here after all. Longer than
/// any commit of a healthy database; shorter than a client's patience.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame stops growing at this size, so one frame never holds up the next for long.
const FRAME_BYTES: usize = 4 << 20;

type AnswerSender = oneshot::Sender<Result<AppendOutcome, Refusal>>;

/// An append on its way to a peer, already encoded by the task that sends it.
struct Outgoing {
    append: Vec<u8>,
    answer: AnswerSender,
}

/// The connections to this instance's peers.
pub(crate) struct Peers {
    secret: Arc<Secret>,
    by_address: Mutex<HashMap<String, Arc<Peer>>>,
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
    sender: Option<mpsc::UnboundedSender<Outgoing>>,
    unreachable_until: Option<Instant>,
}

/// What became of an append handed to a peer.
pub(crate) enum Handed {
    Answered(Result<AppendOutcome, Refusal>),
    /// No answer: the caller commits the append itself.
    Unanswered,
}

impl Peers {
    pub(crate) fn new(secret: Arc<Secret>) -> Self {
        Peers {
            secret,
            by_address: Mutex::default(),
        }
    }

    /// Hands `append` to the peer at `address` and waits for its answer.
    pub(crate) async fn hand(&self, address: &str, append: &PreparedAppend) -> Handed {
        let Some(peer) = self.peer(address) else {
            return Handed::Unanswered;
        };
        let Some(sender) = self.sender(address, &peer).await else {
            return Handed::Unanswered;
        };
        let mut encoded = Vec::with_capacity(append.events.iter().map(|e| e.body.len() * 2).sum());
        wire::write_append(append, &mut encoded);
        let (answer, answered) = oneshot::channel();
        if sender
            .send(Outgoing {
                append: encoded,
                answer,
            })
            .is_err()
        {
            return Handed::Unanswered;
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
            Ok(Ok(outcome)) => Handed::Answered(outcome),
            Ok(Err(_)) | Err(_) => Handed::Unanswered,
        }
    }

    fn peer(&self, address: &str) -> Option<Arc<Peer>> {
        let mut peers = self.by_address.lock().ok()?;
        Some(Arc::clone(peers.entry(address.to_owned()).or_default()))
    }

    /// The open connection to `peer`, made if there is none and it was not found unreachable
    /// within [`RETRY_AFTER`].
    async fn sender(
        &self,
        address: &str,
        peer: &Arc<Peer>,
    ) -> Option<mpsc::UnboundedSender<Outgoing>> {
        if let Some(sender) = peer.open_sender()? {
            return Some(sender);
        }
        let _connecting = peer.connecting.lock().await;
        // Another append may have connected while this one waited.
        if let Some(sender) = peer.open_sender()? {
            return Some(sender);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(address)).await {
            Ok(Ok((reads, writes))) => {
                let (sender, outgoing) = mpsc::unbounded_channel();
                if let Ok(mut link) = peer.link.lock() {
                    link.sender = Some(sender.clone());
                    link.unreachable_until = None;
                }
                tokio::spawn(run_connection(
                    reads,
                    writes,
                    outgoing,
                    Arc::clone(peer),
                    sender.clone(),
                ));
                Some(sender)
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
                if let Ok(mut link) = peer.link.lock() {
                    link.unreachable_until = Some(Instant::now() + RETRY_AFTER);
                }
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
    /// `Some(Some(sender))` if connected, `Some(None)` if a connection may be tried, `None` if
    /// the peer was found unreachable a moment ago.
    fn open_sender(&self) -> Option<Option<mpsc::UnboundedSender<Outgoing>>> {
        let link = self.link.lock().ok()?;
        if let Some(sender) = &link.sender {
            return Some(Some(sender.clone()));
        }
        match link.unreachable_until {
            Some(until) if Instant::now() < until => None,
            _ => Some(None),
        }
    }
}

/// Sends the appends queued for one peer and routes its answers, until the connection fails;
/// then every append without an answer is left to its sender ([`Handed::Unanswered`]).
async fn run_connection<R, W>(
    mut reads: FrameReader<R>,
    mut writes: FrameWriter<W>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    peer: Arc<Peer>,
    own_sender: mpsc::UnboundedSender<Outgoing>,
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
            message.clear();
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
    }
    // The next append connects anew; this connection's waiting appends are answered by their
    // senders, as the senders are dropped here.
    if let Ok(mut link) = peer.link.lock()
        && link
            .sender
            .as_ref()
            .is_some_and(|sender| sender.same_channel(&own_sender))
    {
        link.sender = None;
    }
}

/// Takes appends from peers on `listener` and commits them through `appender`, for as long as
/// the task runs.
pub(crate) async fn serve(listener: TcpListener, secret: Arc<Secret>, appender: Appender) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "cannot accept a peer instance's connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let secret = Arc::clone(&secret);
        let appender = appender.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(error) = serve_connection(stream, &secret, appender).await {
                tracing::warn!(peer = %from, %error, "a peer instance's connection ended");
            }
        });
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    secret: &Secret,
    appender: Appender,
) -> Result<(), ChannelError> {
    let (mut reads, mut writes) =
        tokio::time::timeout(CONNECT_TIMEOUT, channel::accept(stream, secret))
            .await
            .map_err(|_| ChannelError::Refused("it did not finish its handshake in time"))??;
    let (answer, mut answers) = mpsc::unbounded_channel::<Answer>();
    let receiving = async {
        loop {
            let message = match reads.receive().await {
                Ok(message) => message,
                // The peer closed the connection between frames: it stopped, or restarts.
                Err(ChannelError::Io(error))
                    if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(());
                }
                Err(error) => return Err(error),
            };
            let forwards = wire::read_forwards(&message)
                .map_err(|_| ChannelError::Refused("it sent a malformed message"))?;
            for forward in forwards {
                let answer = answer.clone();
                let appender = appender.clone();
                // Each its own task: the appender groups them, and a commit that waits for its
                // organization's head does not hold up another organization's.
                tokio::spawn(async move {
                    let outcome = appender
                        .append_prepared(forward.append)
                        .await
                        .map_err(|error| Refusal::of(&error));
                    let _ = answer.send(Answer {
                        id: forward.id,
                        outcome,
                    });
                });
            }
        }
    };
    let sending = async {
        let mut message = Vec::new();
        let mut group = Vec::new();
        while let Some(first) = answers.recv().await {
            group.clear();
            group.push(first);
            while let Ok(more) = answers.try_recv() {
                group.push(more);
            }
            message.clear();
            wire::write_answers(group.iter(), &mut message);
            writes.send(&message).await?;
        }
        Ok(())
    };
    tokio::select! {
        ended = receiving => ended,
        ended = sending => ended,
    }
}
