//! The write side of one client's socket, shared by the node's fan-out and
//! the client's own session.
//!
//! Why not let the session write everything, as tungstenite would: at 100
//! events/s a client gets one frame every 10 ms, so a task per client woken
//! per event (ring notify, `select!`, tungstenite framing, a timer, then the
//! `send()`) costs as much again as the `send()` itself. Here the fan-out
//! writes each batch's pre-framed bytes (one encoding per node, see
//! [`crate::hub::Event::wire`]) straight to every socket with a non-blocking
//! write, and no client task wakes at all while its socket keeps up.
//!
//! Order and atomicity: every write (broadcast batches from the fan-out, the
//! session's own frames — greeting, replay, replies, pings — and
//! tungstenite's control replies — pongs, close) goes through the outbox
//! under one lock, as whole frames, so frames never interleave. When the
//! socket does not take something at once, it and all that follows wait in
//! the queue, and the session is notified to drain it (`writev` of up to
//! [`MAX_IOV`] buffers per call). While a drain is pending, later batches
//! simply join the queue: a client that is momentarily behind gets several
//! batches per syscall.
//!
//! Slowness is the client's own, measured as a user would: its unsent bytes
//! and the age of its oldest unsent byte. A broadcast that would take the
//! unsent bytes past `max_bytes` (`CLIENT_BUFFER_BYTES`), or that finds the
//! oldest unsent buffer older than `max_age` (`WRITE_TIMEOUT_MS`), marks the
//! client overflowed (closed with 1013, to resume with `?since=`); the
//! session's drain gives up at the same age. Nobody else waits for it. The
//! queued buffers are the fan-out's shared ones (reference-counted), so a
//! client's queue costs it a few words per batch, not a copy of the events.
//! The session's own frames are bounded by what it writes before it drains
//! (a replay page, a reply) and by the same age; tungstenite's by the
//! message rate limit.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::deflate::{InflateError, Inflater};
use super::stream::Stream;

/// Most buffers handed to one `writev`.
pub const MAX_IOV: usize = 64;

#[derive(Debug)]
pub struct Outbox {
    stream: Stream,
    queue: Mutex<Queue>,
    /// Wakes the session: the queue needs draining, or it overflowed, or a
    /// write failed.
    pub ready: Notify,
}

/// How far behind a client may fall before it is closed as too slow. The
/// same for every client of a node, so held by the fan-out and the session
/// limits, not by each outbox (an idle connection's bytes count).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Unsent bytes (`CLIENT_BUFFER_BYTES`).
    pub max_bytes: usize,
    /// Age of the oldest unsent byte (`WRITE_TIMEOUT_MS`).
    pub max_age: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_bytes: crate::config::DEFAULT_CLIENT_BUFFER_BYTES,
            max_age: Duration::from_millis(crate::config::DEFAULT_WRITE_TIMEOUT_MS),
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// What the socket has not taken yet, with when each was queued.
    frames: VecDeque<(Bytes, Instant)>,
    /// Bytes in `frames` (a partly written front is sliced past what went
    /// out: a `Bytes` slice, no copy).
    bytes: usize,
    /// Past the budget: the client is too slow.
    overflowed: bool,
    /// A write failed: the peer is gone.
    failed: bool,
}

impl Queue {
    fn push(&mut self, bytes: Bytes, at: Instant) {
        self.bytes += bytes.len();
        self.frames.push_back((bytes, at));
    }

    fn unsent(&self) -> usize {
        self.bytes
    }

    /// Whether one more broadcast of `len` bytes (at `now`) is past the
    /// budget.
    fn past(&self, budget: &Budget, len: usize, now: Instant) -> bool {
        self.unsent() + len > budget.max_bytes
            || self
                .frames
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) > budget.max_age)
    }
}

/// What the session should do after being woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Drain,
    Overflowed,
    Failed,
}

/// Why a drain stopped before the queue was empty.
#[derive(Debug)]
pub enum DrainError {
    /// The oldest unsent byte waited longer than the budget's age.
    TooOld,
    /// The socket failed: the peer is gone.
    Gone,
}

impl Outbox {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Plain data, and nothing under the lock panics.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands broadcast bytes (whole frames) to the socket: written now, with
    /// one `write`, if nothing is waiting and the socket takes them; what it
    /// does not take is queued (a reference, not a copy). Never waits.
    /// Borrowed, so bytes written at once cost no refcount. `budget`: how
    /// far behind the client may fall.
    pub fn push_broadcast(&self, bytes: &Bytes, now: Instant, budget: &Budget) {
        let mut queue = self.queue();
        if queue.failed || queue.overflowed {
            return;
        }
        if !queue.frames.is_empty() {
            if queue.past(budget, bytes.len(), now) {
                // Policy: a client this far behind (by bytes or by age) is
                // closed with 1013 (it can resume with `?since=`); nobody
                // else waits for it.
                queue.overflowed = true;
                drop(queue);
                self.ready.notify_one();
            } else {
                // The session was notified when the queue became non-empty.
                queue.push(bytes.clone(), now);
            }
            return;
        }
        let n = match self.stream.try_write(bytes) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                queue.failed = true;
                drop(queue);
                self.ready.notify_one();
                return;
            }
        };
        if n == bytes.len() {
            return;
        }
        if bytes.len() - n > budget.max_bytes {
            queue.overflowed = true;
        } else {
            queue.push(bytes.slice(n..), now);
        }
        drop(queue);
        self.ready.notify_one();
    }

    /// Marks the client too slow (closed with 1013 by its session).
    pub fn overflow(&self) {
        self.queue().overflowed = true;
        self.ready.notify_one();
    }

    /// Hands one of the session's own messages (in its transport's
    /// encoding) to the socket, in order after everything before it. Never waits; the
    /// session drains what the socket did not take.
    pub fn push_frame(&self, frame: Bytes) -> io::Result<()> {
        self.push_whole(&frame, || frame.clone())
    }

    /// Hands bytes of whole frames from tungstenite (its control replies:
    /// pongs, the close echo) to the socket, in order after everything
    /// before them.
    fn push_own(&self, bytes: &[u8]) -> io::Result<()> {
        self.push_whole(bytes, || Bytes::copy_from_slice(bytes))
    }

    /// Writes `bytes` now if nothing waits and the socket takes them;
    /// queues the rest (`owned` makes the queued copy) and wakes the session.
    fn push_whole(&self, bytes: &[u8], owned: impl FnOnce() -> Bytes) -> io::Result<()> {
        let mut queue = self.queue();
        if queue.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let now = Instant::now();
        if !queue.frames.is_empty() {
            // The session was notified when the queue became non-empty.
            queue.push(owned(), now);
            return Ok(());
        }
        match self.stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => queue.push(owned().slice(n..), now),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => queue.push(owned(), now),
            Err(err) => {
                queue.failed = true;
                return Err(err);
            }
        }
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// Resolves once the peer has closed its end or the socket failed: how
    /// a transport the client never writes to (SSE) learns it is gone.
    /// Anything read meanwhile is discarded.
    pub async fn closed(&self) {
        let mut scratch = [0u8; 64];
        loop {
            if std::future::poll_fn(|cx| self.stream.poll_read_ready(cx))
                .await
                .is_err()
            {
                return;
            }
            match self.stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    /// Why the session was woken.
    pub fn status(&self) -> Status {
        let queue = self.queue();
        if queue.failed {
            Status::Failed
        } else if queue.overflowed {
            Status::Overflowed
        } else {
            Status::Drain
        }
    }

    /// Writes everything queued (`writev`, [`MAX_IOV`] buffers at a time),
    /// waiting for the socket as needed; callers bound it with their timeout.
    pub async fn drain(&self) -> io::Result<()> {
        loop {
            if self.write_some()? {
                return Ok(());
            }
            self.stream.writable().await?;
        }
    }

    /// [`Self::drain`], giving up once the oldest unsent byte is older than
    /// `max_age`: a client that reads slowly but steadily keeps its
    /// connection for as long as it stays within the age, however long the
    /// drain takes in all.
    pub async fn drain_within(&self, max_age: Duration) -> Result<(), DrainError> {
        loop {
            if self.write_some().map_err(|_| DrainError::Gone)? {
                return Ok(());
            }
            let oldest = self.queue().frames.front().map(|(_, at)| *at);
            let Some(oldest) = oldest else { continue };
            let deadline = oldest + max_age;
            match tokio::time::timeout_at(deadline, self.stream.writable()).await {
                Ok(ready) => ready.map_err(|_| DrainError::Gone)?,
                // Still the same front (nothing was written meanwhile)?
                Err(_) if self.queue().frames.front().map(|(_, at)| *at) == Some(oldest) => {
                    return Err(DrainError::TooOld);
                }
                Err(_) => {}
            }
        }
    }

    /// One `writev` of what is queued; true once the queue is empty.
    fn write_some(&self) -> io::Result<bool> {
        let mut queue = self.queue();
        if queue.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        while !queue.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slice, (frame, _)) in slices.iter_mut().zip(queue.frames.iter()) {
                *slice = IoSlice::new(frame);
                count += 1;
            }
            let mut n = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => {
                    queue.failed = true;
                    return Err(err);
                }
            };
            queue.bytes -= n;
            while n > 0 {
                let front = &mut queue.frames[0].0;
                if n < front.len() {
                    front.advance(n);
                    break;
                }
                n -= front.len();
                queue.frames.pop_front();
            }
        }
        Ok(true)
    }
}

/// The socket as tungstenite sees it: reads come from the TCP stream (for
/// a client that negotiated permessage-deflate, through an [`Inflater`]
/// that hands tungstenite its compressed messages inflated), writes go
/// through the [`Outbox`] (so they keep their place among broadcast
/// frames). A write never blocks here; the session drains.
#[derive(Debug)]
pub struct Io {
    outbox: Arc<Outbox>,
    /// Boxed: a connection without compression holds one pointer for it.
    inflating: Option<Box<Inflating>>,
}

#[derive(Debug)]
struct Inflating {
    inflater: Inflater,
    /// Bytes read from the socket the inflater has not been given yet,
    /// from `raw_at`: it gets them a byte at a time and only while
    /// tungstenite has nothing to read, so one read holds at most one
    /// inflated message (a few bytes on the wire can inflate to the whole
    /// inbound limit: a read of many of them must not inflate them all).
    raw: Vec<u8>,
    raw_at: usize,
    /// Inflated bytes tungstenite has not read yet, from `at`.
    ready: Vec<u8>,
    at: usize,
}

impl Inflating {
    /// Hands the inflater raw bytes until it has output or none are left.
    fn feed(&mut self) -> Result<(), InflateError> {
        self.ready.clear();
        self.at = 0;
        while self.ready.is_empty() && self.raw_at < self.raw.len() {
            let byte = self.raw_at;
            self.raw_at += 1;
            self.inflater
                .push(&self.raw[byte..byte + 1], &mut self.ready)?;
        }
        if self.raw_at == self.raw.len() {
            // Not kept at the size of a large first read for the
            // connection's life.
            if self.raw.capacity() > 4096 {
                self.raw = Vec::new();
            }
            self.raw.clear();
            self.raw_at = 0;
        }
        Ok(())
    }
}

impl Io {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            inflating: None,
        }
    }

    /// Reads through an inflater: compressed messages of up to `max`
    /// inflated bytes (larger ones end the connection with 1009). `early`:
    /// what the client sent right after its request head (read already),
    /// inflated first.
    pub fn inflating(outbox: Arc<Outbox>, max: usize, early: Vec<u8>) -> Self {
        let inflating = Inflating {
            inflater: Inflater::new(max),
            raw: early,
            raw_at: 0,
            ready: Vec::new(),
            at: 0,
        };
        Self {
            outbox,
            inflating: Some(Box::new(inflating)),
        }
    }
}

/// One non-blocking read of `stream` into `buf` once it is readable.
fn poll_read_stream(
    stream: &Stream,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read(buf) {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Poll::Ready(Err(err)),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream = &this.outbox.stream;
        let Some(inflating) = this.inflating.as_deref_mut() else {
            let n = ready!(poll_read_stream(stream, cx, buf.initialize_unfilled()))?;
            buf.advance(n);
            return Poll::Ready(Ok(()));
        };
        // Until the inflater has something for tungstenite (a partial
        // compressed frame yields nothing yet), or the peer is done.
        while inflating.at == inflating.ready.len() {
            if inflating.raw_at == inflating.raw.len() {
                let mut raw = [0u8; 1024];
                let n = ready!(poll_read_stream(stream, cx, &mut raw))?;
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                inflating.raw.extend_from_slice(&raw[..n]);
            }
            inflating
                .feed()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        }
        let take = buf.remaining().min(inflating.ready.len() - inflating.at);
        buf.put_slice(&inflating.ready[inflating.at..inflating.at + take]);
        inflating.at += take;
        if inflating.at == inflating.ready.len() && inflating.ready.capacity() > 4096 {
            // A large message's buffer is not kept for the connection's life.
            inflating.ready = Vec::new();
            inflating.at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.outbox.push_own(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued bytes are the session's to drain (`Outbox::drain`).
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;

    /// A masked client frame, FIN + RSV1 + text, carrying `payload`.
    fn compressed_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xC1, 0x80 | 126];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    #[tokio::test]
    async fn one_read_holds_at_most_one_inflated_message_however_many_arrive_at_once() {
        const MAX: usize = 64 * 1024;
        let (near, mut far) = UnixStream::pair().unwrap();
        let outbox = Arc::new(Outbox::new(Stream::Unix(near)));
        // 60 KiB of spaces deflates to a few hundred bytes: forty of them
        // in one write would be 2.4 MiB inflated at once.
        let text = vec![b' '; 60 * 1024];
        let body = super::super::deflate::text_frame(&text);
        let frame = compressed_frame(&body[4..]);
        let mut wire = Vec::new();
        for _ in 0..40 {
            wire.extend_from_slice(&frame);
        }
        assert!(wire.len() < 40 * 1024, "{} bytes on the wire", wire.len());
        far.write_all(&wire).await.unwrap();
        let mut io = Io::inflating(outbox, MAX, Vec::new());
        let mut got = 0;
        let mut buf = vec![0u8; 16 * 1024];
        while got < 40 * (text.len() + 8) {
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got += n;
            let held = io.inflating.as_ref().unwrap().ready.len();
            assert!(held <= MAX + 14, "{held} bytes inflated and waiting");
        }
        assert_eq!(got, 40 * (text.len() + 8), "every message, rebuilt");
    }
}
