//! What holds one connection to its bounds: time limits on a client that says nothing or reads
//! nothing, a switch that cuts it from outside, and the back-off of an accept loop that fails.
//!
//! How a connection is bounded in time:
//! 1. The request head: hyper's `header_read_timeout` ([`HEADER_TIMEOUT`], with
//!    `hyper_util`'s `TokioTimer`). Its timer starts whenever hyper begins to read a head,
//!    which is both when the connection opens and as soon as the previous response has been
//!    written on a kept-alive connection (hyper 1.12 `proto/h1/conn.rs`, `poll_read_head`, with
//!    `notify_read` set when a message ends). So one bound covers a client that sends nothing, a
//!    client that sends half a header, and a kept-alive connection left idle; hyper closes the
//!    connection without an answer. It never runs while a response is being written, so a long
//!    response (an MJPEG stream, an operation wait) is not touched, and an upgraded connection
//!    (the events websocket) has left hyper.
//! 2. Writing: a write that makes no progress for [`WRITE_STALL_TIMEOUT`] fails the connection
//!    ([`GuardedIo`]), so a client that stops reading (a "slow read") cannot hold a response, and
//!    its memory, forever. Long responses that are idle do not write, so they are not touched.
//! 3. A [`Cutoff`] shared with [`GuardedIo`] fails every later read and write when cut, and wakes
//!    the task that waits on them: the server cuts a TLS connection whose certificate stopped
//!    being trusted, whatever runs on it (requests, a stream, an upgraded websocket).
//! 4. [`AcceptBackoff`]: an `accept` that fails (out of descriptors: `EMFILE`, `ENFILE`; out of
//!    memory) would fail again at once, so the listener rests, longer after each failure in a
//!    row, instead of spinning.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// How long a client may take to send a whole request head, counted from when the connection
/// opens (after the TLS handshake) or from the end of the previous response on a kept-alive
/// connection: 10 s is ample for any client on any network to send a few hundred bytes, and
/// short enough that a client holding connections open costs little. It is also the idle bound
/// of a kept-alive connection (Apache's `KeepAliveTimeout` is 5 s; a client reconnects).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write may make no progress before the connection is closed: far longer than any
/// live client takes to read a screenshot, or an MJPEG frame, on a slow link.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The first rest of a failing accept loop.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// The longest rest of a failing accept loop: long enough that a loop out of descriptors costs
/// nothing, short enough that it serves again soon after descriptors are freed.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A switch that fails a connection's I/O from outside; see [`GuardedIo`].
#[derive(Debug, Default)]
pub struct Cutoff {
    cut: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Cutoff {
    /// Fails every later read and write of the connection, and wakes whoever waits on them.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
    }

    /// Whether [`Self::cut`] was called; after registering `waker`, so a cut that races with
    /// the check still wakes it.
    fn is_cut(&self, waker: &AtomicWaker, context: &Context<'_>) -> bool {
        if self.cut.load(Ordering::SeqCst) {
            return true;
        }
        waker.register(context.waker());
        self.cut.load(Ordering::SeqCst)
    }
}

/// A connection's stream with the bounds of steps 2 and 3: writes that stall fail, and every
/// read and write fails once its [`Cutoff`] is cut.
#[derive(Debug)]
pub struct GuardedIo<S> {
    inner: S,
    cutoff: Arc<Cutoff>,
    /// Armed when a write first returns `Pending`, disarmed when one makes progress.
    stall: Option<Pin<Box<Sleep>>>,
    /// What the connection holds while its stream lives, upgraded or not: its connection slot.
    _held: Box<dyn std::any::Any + Send + Sync>,
    /// Dropped with the stream: tells [`GuardedIo::new`]'s caller that the connection is gone.
    _alive: oneshot::Sender<()>,
}

impl<S> GuardedIo<S> {
    /// Guards `inner`, holding `held` (a connection slot) until the stream is dropped; returns
    /// its cutoff and a receiver that resolves once the stream is dropped (the connection is
    /// over, upgraded or not).
    pub fn new(
        inner: S,
        held: Box<dyn std::any::Any + Send + Sync>,
    ) -> (Self, Arc<Cutoff>, oneshot::Receiver<()>) {
        let cutoff = Arc::new(Cutoff::default());
        let (alive, gone) = oneshot::channel();
        let io = Self {
            inner,
            cutoff: cutoff.clone(),
            stall: None,
            _held: held,
            _alive: alive,
        };
        (io, cutoff, gone)
    }

    /// Disarms the stall timer after progress, or fails the write once it has fired.
    fn watch_stall<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(outcome) => {
                self.stall = None;
                Poll::Ready(outcome)
            }
            Poll::Pending => {
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
                if stall.as_mut().poll(context).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing for too long",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

/// The error of a cut connection.
fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the connection was cut")
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cutoff.is_cut(&this.cutoff.reader, context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cutoff.is_cut(&this.cutoff.writer, context) {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(context, buf);
        this.watch_stall(polled, context)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cutoff.is_cut(&this.cutoff.writer, context) {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(context, bufs);
        this.watch_stall(polled, context)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cutoff.is_cut(&this.cutoff.writer, context) {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = Pin::new(&mut this.inner).poll_flush(context);
        this.watch_stall(polled, context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }
}

/// The rests of a listener whose `accept` fails (step 4).
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The next rest; `None` after a success.
    next: Option<Duration>,
    /// Until when the listener rests.
    until: Option<Instant>,
}

impl AcceptBackoff {
    /// Records a failed accept: the listener rests, twice as long as after the previous failure
    /// in a row, from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`]. Returns the rest.
    pub fn failed(&mut self) -> Duration {
        let rest = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((rest * 2).min(MAX_BACKOFF));
        self.until = Some(Instant::now() + rest);
        rest
    }

    /// Records a successful accept: the next failure rests briefly again.
    pub fn succeeded(&mut self) {
        self.next = None;
        self.until = None;
    }

    /// Resolves when the listener may accept again.
    pub async fn rested(&self) {
        if let Some(until) = self.until {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let rests: Vec<_> = (0..10).map(|_| backoff.failed()).collect();
        assert_eq!(rests[0], Duration::from_millis(10));
        assert_eq!(rests[1], Duration::from_millis(20));
        assert_eq!(rests[6], Duration::from_millis(640));
        assert!(
            rests[7..].iter().all(|rest| *rest == MAX_BACKOFF),
            "{rests:?}"
        );
        backoff.succeeded();
        assert_eq!(backoff.failed(), FIRST_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_rests_until_its_deadline() {
        let mut backoff = AcceptBackoff::default();
        let started = Instant::now();
        backoff.rested().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        backoff.failed();
        backoff.failed();
        let started = Instant::now();
        backoff.rested().await;
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_cut_fails_a_pending_read_and_reports_the_stream_gone() {
        let (server, mut client) = tokio::io::duplex(64);
        let (mut guarded, cutoff, gone) = GuardedIo::new(server, Box::new(()));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        guarded.read_exact(&mut buf).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = [0; 4];
            let outcome = guarded.read(&mut buf).await;
            (outcome.map_err(|error| error.kind()), guarded)
        });
        tokio::task::yield_now().await;
        cutoff.cut();
        let (outcome, guarded) = reader.await.unwrap();
        assert_eq!(outcome.unwrap_err(), io::ErrorKind::ConnectionAborted);
        drop(guarded);
        assert!(gone.await.is_err(), "the stream's drop is seen");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stalls_fails_after_the_bound() {
        // A peer that reads nothing: the pipe fills, the write waits.
        let (server, _client) = tokio::io::duplex(16);
        let (mut guarded, _cutoff, _gone) = GuardedIo::new(server, Box::new(()));
        let started = Instant::now();
        let error = guarded.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), WRITE_STALL_TIMEOUT);
    }
}
