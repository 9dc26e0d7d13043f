//! The listener: its own accept loop over hyper's HTTP/1.1 connections, so that no client can
//! hold the server's sockets or its shutdown hostage.
//!
//! - **Header timeout.** A request's head must arrive within `header_timeout`, counted from its
//!   first byte (or from the accept, for a new connection's first request). A half-sent head is
//!   then closed.
//! - **Body timeout.** A request's body must arrive within `body_timeout` of its head; the
//!   extractor reading it answers 408 (`Connection: close`) otherwise.
//! - **Idle timeout.** A kept-alive connection with no request for `idle_timeout` is closed.
//! - **A cap.** At most `max_connections` at once (the CLI keeps it below the open-file limit).
//!   When a new connection arrives at the cap, the connection idle the longest (no request in
//!   flight: an idle keep-alive, or a client that sent nothing or half a head) is closed to make
//!   room; only when every connection is busy with a request is the new one answered 503. So a
//!   flood of idle sockets cannot keep `/healthz` or real traffic out.
//! - **Shutdown.** When the shutdown future completes, the listener closes, idle connections are
//!   closed at once, busy ones finish their request (then close), and whatever remains after
//!   `shutdown_grace` is dropped: a client holding a half-sent request never delays it longer.
//! - **HTTP-level errors.** hyper answers a request it cannot parse (400), one whose head is too
//!   large (431) or whose URI is (414) itself, before the application sees it, with an empty
//!   body and no `Content-Type` (every answer of the application has one), so [`Tracked`]
//!   recognizes them and replaces them with WorkOS-shaped JSON, as every other error is.
//!
//! The time of every decision is tokio's, so tests can run them on a paused clock.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use trailmark_domain::id::IdKind;

/// How the listener treats connections (`--max-connections` and the timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// The longest a request's head may take to arrive, from its first byte.
    pub header_timeout: Duration,
    /// The longest a request's body may take to arrive, from the end of its head.
    pub body_timeout: Duration,
    /// The longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight before dropping their connections.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            // Longer than the SDKs keep idle connections (Node 4 s, Python 5 s), as nginx's 75 s.
            idle_timeout: Duration::from_secs(75),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The largest request head hyper reads: past it, a 431. Room for a URI of 64 KiB (hyper's own
/// URI limit, past which a 414) and ample headers.
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// One open connection's state, shared by its task, its socket wrapper and its requests.
struct Connection {
    /// Requests handed to the application whose answer is not yet fully written.
    busy: AtomicUsize,
    idle: Mutex<Idle>,
    /// The first byte of a request arrived: the deadline may have moved earlier (nothing else
    /// moves it earlier, so nothing else wakes the connection's task).
    changed: Notify,
    /// No request is in flight and no byte of the next one has come: the next read is a first
    /// byte. Read without the lock, so most reads take none.
    awaiting_first_byte: AtomicBool,
    /// The listener wants this connection closed to make room.
    evict: Notify,
    /// Told to close to make room: no longer counted against the cap, nor chosen again.
    evicted: AtomicBool,
}

/// When a connection last had nothing in flight.
#[derive(Clone, Copy)]
struct Idle {
    /// Since when nothing was in flight (the accept, or the end of the last answer).
    since: Instant,
    /// Whether a request was ever served: a new connection gets the header timeout to send its
    /// first one, a kept-alive one the idle timeout.
    served: bool,
    /// The first byte of the next request, once it came.
    first_byte: Option<Instant>,
}

impl Connection {
    fn new() -> Self {
        Connection {
            busy: AtomicUsize::new(0),
            idle: Mutex::new(Idle {
                since: Instant::now(),
                served: false,
                first_byte: None,
            }),
            changed: Notify::new(),
            awaiting_first_byte: AtomicBool::new(true),
            evict: Notify::new(),
            evicted: AtomicBool::new(false),
        }
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    fn idle(&self) -> Option<Idle> {
        self.idle.lock().ok().map(|idle| *idle)
    }

    /// When the connection is to be closed unless a request arrives: `None` while busy.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.is_busy() {
            return None;
        }
        let idle = self.idle()?;
        Some(match idle.first_byte {
            Some(at) => at + limits.header_timeout,
            None if idle.served => idle.since + limits.idle_timeout,
            None => idle.since + limits.header_timeout,
        })
    }

    /// When the connection's task looks at it next: its deadline, or, while a request is in
    /// flight (when no event wakes the task: its end only moves the deadline later), after an
    /// idle timeout, to find the deadline the request's end set.
    fn next_look(&self, limits: &ConnectionLimits) -> Instant {
        self.deadline(limits)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout)
    }

    fn bytes_arrived(&self) {
        if !self.awaiting_first_byte.swap(false, Ordering::SeqCst) || self.is_busy() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.first_byte.is_none()
        {
            idle.first_byte = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    fn request_began(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.awaiting_first_byte.store(false, Ordering::SeqCst);
    }

    fn request_ended(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Ok(mut idle) = self.idle.lock() {
                *idle = Idle {
                    since: Instant::now(),
                    served: true,
                    first_byte: None,
                };
            }
            self.awaiting_first_byte.store(true, Ordering::SeqCst);
        }
    }
}

/// A request in flight; dropped with its answer's body, once written (or abandoned).
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The open connections, for the cap.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    /// A connection was removed (its socket closed).
    closed: Notify,
}

/// How long a new connection at the cap waits for the evicted one to close.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

impl Registry {
    /// Connections counted against the cap (those told to close are on their way out).
    fn len(&self) -> usize {
        self.open
            .lock()
            .map(|open| {
                open.values()
                    .filter(|connection| !connection.evicted.load(Ordering::SeqCst))
                    .count()
            })
            .unwrap_or(0)
    }

    fn insert(&self) -> (u64, Arc<Connection>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new());
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, Arc::clone(&connection));
        }
        (id, connection)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
        self.closed.notify_waiters();
    }

    /// Tells the connection idle the longest to close; whether there was one.
    fn evict_idlest(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let idlest = open
            .values()
            .filter(|connection| {
                !connection.is_busy() && !connection.evicted.load(Ordering::SeqCst)
            })
            .filter_map(|connection| connection.idle().map(|idle| (idle.since, connection)))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, connection)) => {
                connection.evicted.store(true, Ordering::SeqCst);
                connection.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes (see the module docs).
///
/// # Errors
///
/// None today: accept errors (out of file descriptors, aborted handshakes) are logged and
/// retried, never fatal.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if registry.len() >= limits.max_connections {
                        // The evicted connection's socket is closed before this one is served,
                        // so the cap holds in descriptors, not only in count (briefly waited
                        // for: a connection busy between the choice and the close stays).
                        let closed = registry.closed.notified();
                        tokio::pin!(closed);
                        closed.as_mut().enable();
                        if !registry.evict_idlest() {
                            refuse_busy(stream);
                            continue;
                        }
                        let _ = tokio::time::timeout(EVICTION_WAIT, closed).await;
                    }
                    let (id, connection) = registry.insert();
                    let registry = Arc::clone(&registry);
                    let task = serve_connection(
                        stream,
                        peer,
                        Arc::clone(&connection),
                        router.clone(),
                        limits,
                        stopping.clone(),
                    );
                    connections.spawn(async move {
                        task.await;
                        registry.remove(id);
                    });
                }
                Err(error) => {
                    // Out of file descriptors, most likely: make room and let the backlog wait
                    // a moment rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    registry.evict_idlest();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = &mut grace => {
                tracing::warn!(
                    open = connections.len(),
                    "shutdown grace period over: dropping the connections still open"
                );
                connections.abort_all();
                break;
            }
        }
    }
    Ok(())
}

/// Answers a connection the server has no room for, and closes it.
fn refuse_busy(stream: TcpStream) {
    let response = json_response(
        503,
        "Service Unavailable",
        "service_unavailable",
        "The server is at its connection limit; retry shortly.",
        &[("retry-after", "1")],
    );
    // Best effort and never waiting: the socket's buffer takes a few hundred bytes at once.
    let _ = stream.try_write(&response);
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    connection: Arc<Connection>,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&connection)));
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            connection.request_began();
            let in_flight = InFlight(Arc::clone(&connection));
            let mut request =
                request.map(|body| Body::new(TimedBody::new(body, limits.body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let Ok(response) = router.oneshot(request).await;
                // The request stays in flight until its answer's body is written or dropped.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    // The timeouts are this module's; hyper's own header timeout would also end idle
    // keep-alives.
    builder
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut shutting_down = *stopping.borrow();
    let look = tokio::time::sleep_until(connection.next_look(&limits));
    tokio::pin!(look);
    loop {
        if shutting_down && !connection.is_busy() {
            return;
        }
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = connection.changed.notified() => {
                look.as_mut().reset(connection.next_look(&limits));
            }
            () = connection.evict.notified() => {
                // A request may have begun since it was chosen: then it stays, and counts again.
                if connection.is_busy() {
                    connection.evicted.store(false, Ordering::SeqCst);
                } else {
                    tracing::debug!(%peer, "idle connection closed to make room");
                    return;
                }
            }
            () = look.as_mut() => {
                if connection.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "connection timed out waiting for a request");
                    return;
                }
                look.as_mut().reset(connection.next_look(&limits));
            }
            changed = stopping.changed(), if !shutting_down => {
                shutting_down = changed.is_err() || *stopping.borrow();
                if shutting_down {
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A request body that must arrive within a time limit of the request's head. The timer is
/// armed only when the body is waited for: most bodies are read at once, and a timer per request
/// would cost more than the request.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Instant::now() + limit,
            timer: None,
        }
    }
}

/// The request body did not arrive in time (see [`ConnectionLimits::body_timeout`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, watched: reads mark the start of a request's head (for the header timeout), and
/// an answer written while no request is in flight (hyper's own, to a request it could not
/// parse) is replaced by the same status with a JSON body.
struct Tracked {
    stream: TcpStream,
    connection: Arc<Connection>,
    /// The JSON answer replacing hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Tracked {
    fn new(stream: TcpStream, connection: Arc<Connection>) -> Self {
        Tracked {
            stream,
            connection,
            replacement: None,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.connection.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none()
            && !self.connection.is_busy()
            && let Some(status) = automatic_status(buf)
        {
            self.replacement = Some((protocol_error(status), 0));
        }
        let this = &mut *self;
        match &mut this.replacement {
            None => Pin::new(&mut this.stream).poll_write(cx, buf),
            Some((bytes, written)) => {
                while *written < bytes.len() {
                    let n = ready!(Pin::new(&mut this.stream).poll_write(cx, &bytes[*written..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *written += n;
                }
                // hyper's own answer (and anything after it: the connection closes) is dropped.
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The status of an answer hyper wrote by itself: a whole `HTTP/1.x NNN` head with an error
/// status and no `Content-Type`. Every answer of the application has one (JSON or a portal
/// page), so only hyper's own, bodiless ones match.
fn automatic_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let typed = head.contains("\r\ncontent-type:");
    ((400..600).contains(&status) && !typed).then_some(status)
}

/// The JSON answer for a request hyper refused before routing.
fn protocol_error(status: u16) -> Vec<u8> {
    let (reason, code, message) = match status {
        431 => (
            "Request Header Fields Too Large",
            "request_header_fields_too_large",
            format!(
                "The request's head is too large: at most {} KiB and 100 headers.",
                MAX_HEAD_BYTES / 1024
            ),
        ),
        414 => (
            "URI Too Long",
            "uri_too_long",
            "The request's URI is too long.".to_owned(),
        ),
        400 => (
            "Bad Request",
            "bad_request",
            "The request is not valid HTTP/1.1.".to_owned(),
        ),
        _ => (
            "Error",
            "protocol_error",
            "The request could not be read.".to_owned(),
        ),
    };
    json_response(status, reason, code, &message, &[])
}

/// A whole HTTP/1.1 answer with a WorkOS-shaped JSON body, a request id, and `Connection:
/// close`.
fn json_response(
    status: u16,
    reason: &str,
    code: &str,
    message: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let body = json!({"message": message, "code": code}).to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n",
        body.len(),
        IdKind::Request.generate().into_string()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_answers_are_recognized_as_hyper_s_own() {
        let hyper_s =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_status(hyper_s), Some(431));
        assert_eq!(
            automatic_status(b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        let ours = b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(automatic_status(ours), None);
        assert_eq!(automatic_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(
            automatic_status(b"HTTP/1.1 431 Request"),
            None,
            "a partial head"
        );
        assert_eq!(automatic_status(b"{\"a\":1}"), None);
        assert_eq!(automatic_status(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn protocol_errors_are_json_with_a_request_id_and_close() {
        let bytes = protocol_error(414);
        let text = String::from_utf8(bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("connection: close"));
        assert!(head.contains("x-request-id: req_"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(parsed["code"], "uri_too_long");
    }

    /// The deadlines on a paused clock: a new connection has the header timeout to start, a
    /// started head the header timeout from its first byte, a kept-alive one the idle timeout,
    /// and a busy one none.
    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection_s_state() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ConnectionLimits::default()
        };
        let connection = Connection::new();
        let accepted = Instant::now();
        assert_eq!(
            connection.deadline(&limits),
            Some(accepted + Duration::from_secs(10))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        connection.bytes_arrived();
        assert_eq!(
            connection.deadline(&limits),
            Some(accepted + Duration::from_secs(13))
        );
        connection.request_began();
        assert_eq!(connection.deadline(&limits), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(
            connection.deadline(&limits),
            None,
            "a busy connection waits"
        );
        assert_eq!(
            connection.next_look(&limits),
            Instant::now() + Duration::from_secs(60),
            "and is looked at again an idle timeout later"
        );
        connection.request_ended();
        let done = Instant::now();
        assert_eq!(
            connection.deadline(&limits),
            Some(done + Duration::from_secs(60))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        connection.bytes_arrived();
        assert_eq!(
            connection.deadline(&limits),
            Some(done + Duration::from_secs(15)),
            "the next head has the header timeout from its first byte"
        );
    }
}
