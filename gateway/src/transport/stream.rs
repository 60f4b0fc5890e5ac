//! The socket a client's [`super::outbox::Outbox`] writes to: the client's
//! own TCP connection (`ws://`), or the near end of a Unix socket pair — for
//! a TLS connection (`wss://` at the node), the pair its relay task encrypts
//! from (see `ws::upgrade`); for an SSE stream, the pair its response body
//! reads from (see `sse`). Both take the fan-out's shared bytes with the
//! same non-blocking calls; this type only says which one it is.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use tokio::net::{TcpStream, UnixStream};

/// The kernel send buffer asked for on each end of a relay's socket pair,
/// the same cap the listener puts on client TCP sockets (Linux doubles it):
/// a stalled `wss://` client's bytes then pile up in the outbox, where
/// `CLIENT_BUFFER` and `WRITE_TIMEOUT_MS` see them, not in the kernel.
pub const RELAY_SEND_BUFFER: usize = 64 * 1024;

#[derive(Debug)]
pub enum Stream {
    /// A plain connection: the client's socket itself.
    Tcp(TcpStream),
    /// A TLS connection: our end of the pair its relay task reads from.
    Unix(UnixStream),
}

impl Stream {
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
        }
    }

    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write_vectored(bufs),
            Stream::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
        }
    }

    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(stream: TcpStream) -> Self {
        Stream::Tcp(stream)
    }
}

impl From<UnixStream> for Stream {
    fn from(stream: UnixStream) -> Self {
        Stream::Unix(stream)
    }
}
