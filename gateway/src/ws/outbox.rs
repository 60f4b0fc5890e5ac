//! The write side of one client's socket, shared by the node's fan-out and
//! the client's own session.
//!
//! Why not let the session write everything, as tungstenite would: at 100
//! events/s a client gets one frame every 10 ms, so a task per client woken
//! per event (ring notify, `select!`, tungstenite framing, a timer, then the
//! `send()`) costs as much again as the `send()` itself. Here the fan-out
//! writes each event's pre-framed bytes (one encoding per node, see
//! [`crate::hub::Frame::wire`]) straight to every socket with a non-blocking
//! write, and no client task wakes at all while its socket keeps up.
//!
//! Order and atomicity: every write (broadcast frames from the fan-out, the
//! session's own frames — greeting, replay, replies, pings — and
//! tungstenite's control replies — pongs, close) goes through the outbox
//! under one lock, as whole frames, so frames never interleave. When the
//! socket does not take a frame at once, it and all that
//! follows wait in the queue, and the session is notified to drain it
//! (`writev` of up to [`MAX_IOV`] frames per call, under its write timeout).
//! While a drain is pending, later frames simply join the queue: a client that
//! is momentarily behind gets several frames per syscall.
//!
//! Bound: broadcast frames queue up to `limit` (`CLIENT_BUFFER`) frames;
//! one more and the client is marked overflowed (closed with 1013, like a
//! client that lagged the ring). The session's own frames are bounded by
//! what it writes before it drains (a replay page, a reply) and by the write
//! timeout; tungstenite's by the message rate limit.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Most frames handed to one `writev`.
pub const MAX_IOV: usize = 64;

#[derive(Debug)]
pub struct Outbox {
    stream: TcpStream,
    queue: Mutex<Queue>,
    /// Wakes the session: the queue needs draining, or it overflowed, or a
    /// write failed.
    pub ready: Notify,
    /// Broadcast frames a client may have waiting (`CLIENT_BUFFER`).
    limit: usize,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    written: usize,
    /// More than `limit` broadcast frames were waiting: the client is too slow.
    overflowed: bool,
    /// A write failed: the peer is gone.
    failed: bool,
}

/// What the session should do after being woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Drain,
    Overflowed,
    Failed,
}

impl Outbox {
    pub fn new(stream: TcpStream, limit: usize) -> Self {
        Self {
            stream,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            limit,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Plain data, and nothing under the lock panics.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands broadcast frames (each a header and payload) to the socket:
    /// written now, with one `write`/`writev`, if nothing is waiting and the
    /// socket takes them; what it does not take is queued. Never waits.
    /// Borrowed, so a frame written at once costs no refcount.
    pub fn push_broadcast(&self, frames: &[&Bytes]) {
        let mut queue = self.queue();
        if queue.failed || queue.overflowed {
            return;
        }
        if !queue.frames.is_empty() {
            if queue.frames.len() + frames.len() > self.limit {
                // Policy: a client this far behind is closed with 1013 (it
                // can resume with `?since=`); nobody else waits for it.
                queue.overflowed = true;
                drop(queue);
                self.ready.notify_one();
            } else {
                // The session was notified when the queue became non-empty.
                queue.frames.extend(frames.iter().map(|&f| f.clone()));
            }
            return;
        }
        let written = match frames {
            [one] => self.stream.try_write(one),
            _ => {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                for (slice, frame) in slices.iter_mut().zip(frames) {
                    *slice = IoSlice::new(frame);
                }
                self.stream
                    .try_write_vectored(&slices[..frames.len().min(MAX_IOV)])
            }
        };
        let mut n = match written {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                queue.failed = true;
                drop(queue);
                self.ready.notify_one();
                return;
            }
        };
        for &frame in frames {
            if queue.frames.is_empty() {
                if n >= frame.len() {
                    n -= frame.len();
                    continue;
                }
                queue.written = n;
            }
            queue.frames.push_back(frame.clone());
        }
        if !queue.frames.is_empty() {
            drop(queue);
            self.ready.notify_one();
        }
    }

    /// Marks the client too slow (closed with 1013 by its session).
    pub fn overflow(&self) {
        self.queue().overflowed = true;
        self.ready.notify_one();
    }

    /// Hands one of the session's own frames (built by [`super::frame`]) to
    /// the socket, in order after everything before it. Never waits; the
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
        if !queue.frames.is_empty() {
            // The session was notified when the queue became non-empty.
            queue.frames.push_back(owned());
            return Ok(());
        }
        match self.stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                queue.frames.push_back(owned());
                queue.written = n;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => queue.frames.push_back(owned()),
            Err(err) => {
                queue.failed = true;
                return Err(err);
            }
        }
        drop(queue);
        self.ready.notify_one();
        Ok(())
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

    /// Broadcast frames waiting to be written (what a catch-up paces by).
    pub fn waiting(&self) -> usize {
        self.queue().frames.len()
    }

    /// Writes everything queued (`writev`, [`MAX_IOV`] frames at a time),
    /// waiting for the socket as needed; callers bound it with their timeout.
    pub async fn drain(&self) -> io::Result<()> {
        loop {
            if self.write_some()? {
                return Ok(());
            }
            self.stream.writable().await?;
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
            for (i, frame) in queue.frames.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { queue.written } else { 0 };
                slices[i] = IoSlice::new(&frame[skip..]);
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
            while n > 0 {
                let left = queue.frames[0].len() - queue.written;
                if n < left {
                    queue.written += n;
                    break;
                }
                n -= left;
                queue.frames.pop_front();
                queue.written = 0;
            }
        }
        Ok(true)
    }
}

/// The socket as tungstenite sees it: reads come from the TCP stream,
/// writes go through the [`Outbox`] (so they keep their place among
/// broadcast frames). A write never blocks here; the session drains.
#[derive(Debug)]
pub struct Io(pub Arc<Outbox>);

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = &self.0.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.push_own(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued bytes are the session's to drain (`Outbox::drain`).
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
