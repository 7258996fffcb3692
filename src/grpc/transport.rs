//! Connections, before any request: the accept loop that hands tonic its connections.
//!
//! A sidecar on a pod network meets clients that open connections and say nothing,
//! or open more connections than it has file descriptors. So:
//! - at most `--max-connections` are open at once. Over the cap, the loop stops
//!   calling `accept`: new connections wait in the kernel's listen backlog (and are
//!   refused by the kernel once that is full) until one closes, and a warning names
//!   the flag. Waiting beats accept-and-close: a client that arrives during a burst is
//!   served late instead of failing;
//! - a connection must deliver the 24-byte HTTP/2 preface (or, over HTTP/1.1, which
//!   Connect and gRPC-Web callers may speak, the first 24 bytes of a request) within
//!   `--handshake-timeout` of being accepted (with TLS: the handshake and the preface
//!   inside it), or its reads fail and it is closed. TLS is terminated here, not in
//!   tonic, so the deadline can count the preface's bytes after decryption;
//! - accepted sockets get `TCP_NODELAY` and TCP keepalive.
//!
//! The file descriptor limit is raised to the hard limit at start ([`raise_fd_limit`]),
//! and the connection cap is kept below it ([`connection_cap`]).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// The client's HTTP/2 connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// File descriptors kept out of the connection cap: the ledger pool, Redis, the
/// metrics listener and its scrapes, log and SQLite files.
const FD_RESERVE: u64 = 256;

/// How long the accept loop pauses after an accept error such as `EMFILE`, so an
/// error that persists does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections accepted but not yet picked up by the server.
const HANDOFF_QUEUE: usize = 64;

/// How the accept loop treats connections.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// Time from accept to the HTTP/2 preface (TLS handshake included).
    pub handshake_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Idle time before TCP keepalive probes; `None`: no keepalive.
    pub tcp_keepalive: Option<Duration>,
}

/// Raises this process's soft limit on open files to its hard limit, and logs the
/// result. Each connection costs a descriptor; the usual soft limit (1024) is far
/// below what a sidecar on a pod network may be asked to hold.
pub fn raise_fd_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(raised)) if raised > soft => {
            tracing::info!(from = soft, to = raised, hard, "raised the open-file limit");
        }
        (_, Ok(limit)) => tracing::info!(limit, "open-file limit"),
        (_, Err(error)) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// `requested` connections, or fewer if the open-file limit would not hold them and
/// the descriptors the rest of the sidecar needs; logs when it lowers the cap.
pub fn connection_cap(requested: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return requested;
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if requested > room {
        tracing::warn!(
            requested,
            cap = room,
            open_file_limit = soft,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    requested.min(room)
}

/// The connections tonic serves, accepted by a task of their own.
pub struct Incoming {
    connections: mpsc::Receiver<Connection>,
}

impl Incoming {
    /// Starts accepting on `listener`. The returned task ends when the server drops
    /// the `Incoming` (at shutdown), closing the listener.
    pub fn start(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        limits: TransportLimits,
    ) -> (Self, JoinHandle<()>) {
        let (sender, connections) = mpsc::channel(HANDOFF_QUEUE);
        let task = tokio::spawn(accept_loop(listener, tls, limits, sender));
        (Self { connections }, task)
    }

    /// The stream `serve_with_incoming_shutdown` takes.
    pub fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<Connection, Infallible>> + Send + 'static {
        ReceiverStream::new(self.connections).map(Ok)
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: TransportLimits,
    sender: mpsc::Sender<Connection>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let at_cap = Throttle::default();
    let accept_failed = Throttle::default();
    let silent = Arc::new(Throttle::default());
    let mut incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(limits.tcp_keepalive);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(times) = at_cap.hit() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times,
                        "connection limit reached: new connections wait in the listen \
                         backlog until one closes (--max-connections)"
                    );
                }
                tokio::select! {
                    _ = sender.closed() => return,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let stream = tokio::select! {
            _ = sender.closed() => return,
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    if let Some(times) = accept_failed.hit() {
                        tracing::warn!(%error, times, "cannot accept a connection");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
                None => return,
            },
        };
        let deadline = Instant::now() + limits.handshake_timeout;
        let info = stream.connect_info();
        let silent = silent.clone();
        match &tls {
            None => {
                let connection =
                    Connection::new(Stream::Plain(stream), info, deadline, slot, silent);
                if sender.send(connection).await.is_err() {
                    return;
                }
            }
            // Handshakes run beside the loop, each holding its connection's slot, so
            // a slow one delays nobody and their number stays under the cap.
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let stream = Stream::Tls(Box::new(stream));
                            let connection = Connection::new(stream, info, deadline, slot, silent);
                            let _ = sender.send(connection).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, peer = ?info.remote_addr, "TLS handshake failed");
                        }
                        Err(_) => note_silent(&silent, &info),
                    }
                });
            }
        }
    }
}

/// Logs (at most every so often) that connections were closed for saying nothing.
fn note_silent(silent: &Throttle, info: &TcpConnectInfo) {
    tracing::debug!(peer = ?info.remote_addr, "closed a connection that sent no HTTP/2 preface in time");
    if let Some(times) = silent.hit() {
        tracing::warn!(
            times,
            "closed connections that sent no HTTP/2 preface within --handshake-timeout"
        );
    }
}

/// A plaintext or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection: its reads fail once its handshake deadline passes without
/// a preface, and it holds one of the `--max-connections` slots until dropped.
pub struct Connection {
    stream: Stream,
    info: TcpConnectInfo,
    /// Until the preface has arrived: the deadline and the bytes read so far.
    handshake: Option<Handshake>,
    _slot: OwnedSemaphorePermit,
}

struct Handshake {
    deadline: Pin<Box<Sleep>>,
    received: usize,
    silent: Arc<Throttle>,
}

impl Connection {
    fn new(
        stream: Stream,
        info: TcpConnectInfo,
        deadline: Instant,
        slot: OwnedSemaphorePermit,
        silent: Arc<Throttle>,
    ) -> Self {
        Self {
            stream,
            info,
            handshake: Some(Handshake {
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                received: 0,
                silent,
            }),
            _slot: slot,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        let Some(handshake) = &mut this.handshake else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                handshake.received += buf.filled().len() - before;
                if handshake.received >= PREFACE_LEN {
                    this.handshake = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if handshake.deadline.as_mut().poll(cx).is_ready() => {
                note_silent(&handshake.silent, &this.info);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within --handshake-timeout",
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Lets a log line about a recurring event through at most once per interval, saying
/// how often the event happened since the last line, so an attack cannot flood the
/// log and an operator still learns its size.
pub(crate) struct Throttle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    last_line: Option<Instant>,
    unlogged: u64,
}

/// At most one line per event kind this often.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Default for Throttle {
    fn default() -> Self {
        Self {
            interval: LOG_INTERVAL,
            state: Mutex::new(ThrottleState {
                last_line: None,
                unlogged: 0,
            }),
        }
    }
}

impl Throttle {
    /// Counts one occurrence; `Some(occurrences since the last line)` when a line is due.
    pub(crate) fn hit(&self) -> Option<u64> {
        // A std Mutex: a few arithmetic operations, never held across an await.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.unlogged += 1;
        let now = Instant::now();
        let due = state
            .last_line
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        state.last_line = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttled_event_is_logged_once_per_interval_with_its_count() {
        let throttle = Throttle::default();
        assert_eq!(throttle.hit(), Some(1), "the first occurrence is logged");
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        tokio::time::advance(LOG_INTERVAL).await;
        assert_eq!(throttle.hit(), Some(3), "then how many there were since");
    }
}
