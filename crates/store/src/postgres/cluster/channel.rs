//! The connection between two instances: a handshake in which each proves it knows the
//! cluster's secret (derived from the secrets key every instance is given, so only the
//! operator's instances can take part), then frames that each carry an HMAC-SHA256 tag under a
//! key of that connection, over a counter per direction, so a frame cannot be forged, changed,
//! replayed, reordered or reflected.
//!
//! The channel is authenticated, not encrypted: events cross it as they cross a PostgreSQL
//! connection without TLS. Instances are meant to reach each other on a private network.
//!
//! The handshake: the accepting side sends [`MAGIC`] and a random nonce; the connecting side
//! answers with its own nonce and `HMAC(secret, "client" ‖ both nonces)`; the accepting side
//! checks it and answers `HMAC(secret, "server" ‖ both nonces)`, which the connecting side
//! checks. Both then tag frames under `HMAC(secret, "session" ‖ both nonces)`.

use ring::hmac;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// What an accepting instance says first: this protocol, this version.
const MAGIC: &[u8; 8] = b"TMPEER01";
const NONCE: usize = 32;
const TAG: usize = 32;
/// The largest frame accepted: above the largest append an instance hands over
/// (`peer::MAX_HANDED`) with a frame's worth of others beside it, far below what would exhaust
/// memory.
pub(crate) const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer is not a Trailmark instance of this cluster: {0}")]
    Refused(&'static str),
    #[error("a frame of {0} bytes is larger than any instance sends")]
    TooLarge(usize),
}

/// The cluster's shared secret, as the key of its proofs.
pub(crate) struct Secret(hmac::Key);

impl Secret {
    /// The channel's secret, derived from `key` (the instances' shared secrets key) so that it
    /// is no other use's key.
    pub(crate) fn derive(key: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            b"trailmark cluster channel v1",
        );
        Secret(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn sign(&self, label: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(label);
        context.update(server_nonce);
        context.update(client_nonce);
        context.sign()
    }

    fn session(&self, server_nonce: &[u8], client_nonce: &[u8]) -> hmac::Key {
        let tag = self.sign(b"session", server_nonce, client_nonce);
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }
}

/// Which way a frame goes, in its tag: a frame cannot be reflected back to its sender.
#[derive(Clone, Copy)]
enum Direction {
    ToAccepter = 0,
    ToConnecter = 1,
}

/// The sending half of a channel.
pub(crate) struct FrameWriter<W> {
    io: W,
    key: hmac::Key,
    direction: Direction,
    counter: u64,
    buffer: Vec<u8>,
}

/// The receiving half of a channel.
pub(crate) struct FrameReader<R> {
    io: R,
    key: hmac::Key,
    direction: Direction,
    counter: u64,
}

fn tag(key: &hmac::Key, direction: Direction, counter: u64, payload: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(&[direction as u8]);
    context.update(&counter.to_be_bytes());
    context.update(payload);
    context.sign()
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Sends `payload` as one frame.
    pub(crate) async fn send(&mut self, payload: &[u8]) -> Result<(), ChannelError> {
        if payload.len() > MAX_FRAME {
            return Err(ChannelError::TooLarge(payload.len()));
        }
        let tag = tag(&self.key, self.direction, self.counter, payload);
        self.counter += 1;
        self.buffer.clear();
        // At most MAX_FRAME, checked above.
        self.buffer
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.buffer.extend_from_slice(payload);
        self.buffer.extend_from_slice(tag.as_ref());
        self.io.write_all(&self.buffer).await?;
        self.io.flush().await?;
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// The next frame's payload, once its tag is checked.
    pub(crate) async fn receive(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut length = [0u8; 4];
        self.io.read_exact(&mut length).await?;
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_FRAME {
            return Err(ChannelError::TooLarge(length));
        }
        let mut frame = vec![0u8; length + TAG];
        self.io.read_exact(&mut frame).await?;
        let (payload, received) = frame.split_at(length);
        let expected = tag(&self.key, self.direction, self.counter, payload);
        if !constant_time_eq(expected.as_ref(), received) {
            return Err(ChannelError::Refused("a frame's tag is wrong"));
        }
        self.counter += 1;
        frame.truncate(length);
        Ok(frame)
    }
}

/// Compares two tags in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Halves<S> = (FrameReader<ReadHalf<S>>, FrameWriter<WriteHalf<S>>);

fn nonce() -> Result<[u8; NONCE], ChannelError> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

fn halves<S: AsyncRead + AsyncWrite>(
    stream: S,
    key: hmac::Key,
    reads: Direction,
    writes: Direction,
) -> Halves<S> {
    let (read, write) = tokio::io::split(stream);
    (
        FrameReader {
            io: read,
            key: key.clone(),
            direction: reads,
            counter: 0,
        },
        FrameWriter {
            io: write,
            key,
            direction: writes,
            counter: 0,
            buffer: Vec::new(),
        },
    )
}

/// The accepting side's handshake over `stream`.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    secret: &Secret,
) -> Result<Halves<S>, ChannelError> {
    let server_nonce = nonce()?;
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&server_nonce);
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut answer = [0u8; NONCE + TAG];
    stream.read_exact(&mut answer).await?;
    let (client_nonce, proof) = answer.split_at(NONCE);
    let expected = secret.sign(b"client", &server_nonce, client_nonce);
    if !constant_time_eq(expected.as_ref(), proof) {
        return Err(ChannelError::Refused(
            "its proof of the cluster's secret is wrong",
        ));
    }
    let own_proof = secret.sign(b"server", &server_nonce, client_nonce);
    stream.write_all(own_proof.as_ref()).await?;
    stream.flush().await?;
    let key = secret.session(&server_nonce, client_nonce);
    Ok(halves(
        stream,
        key,
        Direction::ToAccepter,
        Direction::ToConnecter,
    ))
}

/// The connecting side's handshake over `stream`.
pub(crate) async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    secret: &Secret,
) -> Result<Halves<S>, ChannelError> {
    let mut hello = [0u8; MAGIC.len() + NONCE];
    stream.read_exact(&mut hello).await?;
    let (magic, server_nonce) = hello.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(ChannelError::Refused("it does not speak this protocol"));
    }
    let client_nonce = nonce()?;
    let proof = secret.sign(b"client", server_nonce, &client_nonce);
    let mut answer = client_nonce.to_vec();
    answer.extend_from_slice(proof.as_ref());
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let mut their_proof = [0u8; TAG];
    stream.read_exact(&mut their_proof).await?;
    let expected = secret.sign(b"server", server_nonce, &client_nonce);
    if !constant_time_eq(expected.as_ref(), &their_proof) {
        return Err(ChannelError::Refused(
            "its proof of the cluster's secret is wrong",
        ));
    }
    let key = secret.session(server_nonce, &client_nonce);
    Ok(halves(
        stream,
        key,
        Direction::ToConnecter,
        Direction::ToAccepter,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Duplex = Halves<tokio::io::DuplexStream>;

    /// Both ends of a channel over an in-memory stream, handshakes made with `secret` each.
    async fn paired(secret: &Secret) -> (Duplex, Duplex) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (accepted, connected) = tokio::join!(accept(a, secret), connect(b, secret));
        (accepted.expect("accepts"), connected.expect("connects"))
    }

    /// A frame's bytes as they cross: length, `payload`, then `tag` (which a forger chooses).
    fn raw_frame(payload: &[u8], tag: &hmac::Tag) -> Vec<u8> {
        let mut raw = (payload.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(payload);
        raw.extend_from_slice(tag.as_ref());
        raw
    }

    #[tokio::test]
    async fn instances_with_the_secret_exchange_frames_both_ways() {
        let secret = Secret::derive(b"the cluster's secret");
        let (
            (mut accepter_reads, mut accepter_writes),
            (mut connecter_reads, mut connecter_writes),
        ) = paired(&secret).await;
        for n in 0..3u8 {
            connecter_writes.send(&[n; 10]).await.expect("sends");
            assert_eq!(
                accepter_reads.receive().await.expect("receives"),
                vec![n; 10]
            );
        }
        accepter_writes.send(b"answer").await.expect("sends");
        assert_eq!(
            connecter_reads.receive().await.expect("receives"),
            b"answer"
        );
        accepter_writes
            .send(b"")
            .await
            .expect("sends an empty frame");
        assert_eq!(connecter_reads.receive().await.expect("receives"), b"");
    }

    #[tokio::test]
    async fn a_connecter_without_the_secret_is_refused_and_refuses_in_turn() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let ours = Secret::derive(b"the cluster's secret");
        let theirs = Secret::derive(b"a guess");
        let (accepted, connected) = tokio::join!(accept(a, &ours), connect(b, &theirs));
        assert!(matches!(accepted, Err(ChannelError::Refused(_))));
        // The accepter sent no proof of its own: the connecter's read ends.
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn a_changed_or_replayed_frame_is_refused() {
        // A man in the middle who relays the handshake then edits a frame.
        let secret = Secret::derive(b"the cluster's secret");
        let ((mut reads, _), (_, mut writes)) = paired(&secret).await;
        writes.send(b"first").await.expect("sends");
        assert_eq!(reads.receive().await.expect("receives"), b"first");

        // The same tag over the next counter: a replay of the first frame.
        let key = writes.key.clone();
        let replayed = tag(&key, Direction::ToAccepter, 0, b"first");
        let raw = raw_frame(b"first", &replayed);
        writes.io.write_all(&raw).await.expect("writes");
        assert!(matches!(
            reads.receive().await,
            Err(ChannelError::Refused("a frame's tag is wrong"))
        ));
    }

    #[tokio::test]
    async fn a_frame_changed_on_the_way_or_reflected_to_its_sender_is_refused() {
        let secret = Secret::derive(b"the cluster's secret");
        let ((mut reads, _), (connecter_reads, mut writes)) = paired(&secret).await;

        // A frame whose payload was changed after it was tagged.
        let key = writes.key.clone();
        let tagged = tag(&key, Direction::ToAccepter, 0, b"append 1");
        let raw = raw_frame(b"append 2", &tagged);
        writes.io.write_all(&raw).await.expect("writes");
        assert!(matches!(
            reads.receive().await,
            Err(ChannelError::Refused("a frame's tag is wrong"))
        ));

        // The connecter's own first frame, sent back to it as if from the accepter: the same
        // key and counter, the other direction.
        let own = tag(&key, Direction::ToAccepter, 0, b"append");
        let reflected = raw_frame(b"append", &own);
        let mut connecter_reads_reflected = FrameReader {
            io: &reflected[..],
            key: connecter_reads.key.clone(),
            direction: connecter_reads.direction,
            counter: 0,
        };
        assert!(matches!(
            connecter_reads_reflected.receive().await,
            Err(ChannelError::Refused("a frame's tag is wrong"))
        ));
    }

    #[tokio::test]
    async fn a_frame_larger_than_any_instance_sends_is_refused_before_it_is_read() {
        let secret = Secret::derive(b"s");
        let ((mut reads, _), (_, mut writes)) = paired(&secret).await;
        writes
            .io
            .write_all(&u32::MAX.to_be_bytes())
            .await
            .expect("writes");
        assert!(matches!(
            reads.receive().await,
            Err(ChannelError::TooLarge(_))
        ));
    }
}
