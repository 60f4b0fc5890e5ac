//! The client's socket: counts the bytes read from it and, with
//! `--deflate`, inflates the gateway's permessage-deflate (RFC 7692)
//! messages before tungstenite sees them.
//!
//! tungstenite 0.29 has no deflate and fails a connection on any frame with
//! RSV1 set, so [`Wire`] sits between it and the `TcpStream`: it passes the
//! HTTP response through, notes whether it accepted permessage-deflate, and
//! from then on parses the server's frames as the bytes come (in any chunks)
//! and replaces each compressed message by the same message uncompressed
//! (RSV1 cleared, same opcode, inflated payload, new length). Every other
//! frame passes byte for byte. The gateway negotiates no context takeover,
//! so each message inflates alone. What the client writes passes through
//! untouched: it sends uncompressed frames, which RFC 7692 allows.
//!
//! Without `--deflate`, a read is the socket's read plus an add.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the client offers, as Chrome does.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The largest message inflated (and the largest compressed one buffered):
/// past it the connection fails instead of growing without bound.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A longer HTTP response head than this is not a gateway's.
const MAX_HEAD: usize = 16 << 10;

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.2 has the
/// receiver put it back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflated at most this much per decompressor call.
const CHUNK: usize = 32 << 10;

const RSV1: u8 = 0x40;

thread_local! {
    /// One raw-DEFLATE decompressor per client thread, reset per message:
    /// without context takeover a client keeps no window of its own.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// A client's socket. Bytes read are counted before inflating.
#[derive(Debug)]
pub struct Wire<S> {
    inner: S,
    read: u64,
    /// `--deflate`, until the response is known to have declined it.
    rewriter: Option<Box<Rewriter>>,
    negotiated: bool,
}

impl<S> Wire<S> {
    pub fn new(inner: S, deflate: bool) -> Self {
        Self {
            inner,
            read: 0,
            rewriter: deflate.then(Box::default),
            negotiated: false,
        }
    }

    /// Bytes read from the socket so far (the wire size, compressed).
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Whether the server's handshake response accepted permessage-deflate.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(rw) = this.rewriter.as_mut() else {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            this.read += (buf.filled().len() - before) as u64;
            return Poll::Ready(Ok(()));
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if rw.take(buf) {
                if rw.state == State::Raw && rw.drained() {
                    // Declined: plain reads from here on.
                    this.rewriter = None;
                }
                return Poll::Ready(Ok(()));
            }
            // Read into the caller's buffer, rewrite into ours, then copy
            // the result back over what was read.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let fresh = &buf.filled()[before..];
            if fresh.is_empty() {
                // End of stream; a frame cut short is tungstenite's to report.
                return Poll::Ready(Ok(()));
            }
            this.read += fresh.len() as u64;
            rw.feed(fresh)?;
            this.negotiated |= rw.negotiated;
            buf.set_filled(before);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// The HTTP response head, up to its blank line.
    #[default]
    Http,
    /// Declined: everything passes through.
    Raw,
    /// A frame header, partly in `head`.
    Header,
    /// This many payload bytes of a frame passed through.
    Pass(u64),
    /// This many payload bytes of a compressed message's frame still to
    /// collect; then, if the frame had FIN, the message is complete.
    Compressed { remaining: u64, fin: bool },
}

/// Rewrites the server's byte stream: fed what the socket gave, it leaves
/// the rewritten bytes in `out`.
#[derive(Debug, Default)]
pub struct Rewriter {
    state: State,
    /// The response head, or a frame header split across reads.
    head: Vec<u8>,
    /// A compressed message being collected: its opcode and payload.
    message: Option<(u8, Vec<u8>)>,
    /// Rewritten bytes not yet read, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    inflated: Vec<u8>,
    negotiated: bool,
}

impl Rewriter {
    /// Copies pending output into `buf`; false if there was none.
    fn take(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let pending = &self.out[self.out_at..];
        if pending.is_empty() {
            return false;
        }
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        self.out_at += n;
        if self.drained() {
            self.out.clear();
            self.out_at = 0;
            if self.out.capacity() > 64 << 10 {
                self.out.shrink_to(8 << 10);
            }
        }
        true
    }

    fn drained(&self) -> bool {
        self.out_at == self.out.len()
    }

    /// Takes bytes from the socket, in whatever chunks they came.
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.state {
                State::Http => {
                    // The blank line may straddle reads: look from 3 back.
                    let from = self.head.len().saturating_sub(3);
                    let take = data.len().min(MAX_HEAD + 1 - self.head.len());
                    self.head.extend_from_slice(&data[..take]);
                    match find(&self.head[from..], b"\r\n\r\n") {
                        Some(at) => {
                            let end = from + at + 4;
                            let used = take - (self.head.len() - end);
                            self.out.extend_from_slice(&self.head[..end]);
                            self.negotiated = accepts_deflate(&self.head[..end]);
                            self.state = if self.negotiated {
                                State::Header
                            } else {
                                State::Raw
                            };
                            self.head.clear();
                            data = &data[used..];
                        }
                        None if self.head.len() > MAX_HEAD => {
                            return Err(invalid("handshake response head too long"));
                        }
                        None => data = &[],
                    }
                }
                State::Raw => {
                    self.out.extend_from_slice(data);
                    data = &[];
                }
                State::Header => {
                    // Most headers are whole in one read: no copy.
                    if self.head.is_empty()
                        && let Some(n) = header_len(data).filter(|&n| n <= data.len())
                    {
                        let (header, rest) = data.split_at(n);
                        data = rest;
                        self.on_header(header)?;
                        continue;
                    }
                    // Split: collect it (2 bytes, then the rest, up to 14).
                    let need = header_len(&self.head).unwrap_or(2);
                    let n = (need - self.head.len()).min(data.len());
                    self.head.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if header_len(&self.head) == Some(self.head.len()) {
                        let head = std::mem::take(&mut self.head);
                        self.on_header(&head)?;
                        self.head = head;
                        self.head.clear();
                    }
                }
                State::Pass(remaining) => {
                    let n = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.state = match remaining - n as u64 {
                        0 => State::Header,
                        left => State::Pass(left),
                    };
                }
                State::Compressed { remaining, fin } => {
                    let n = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    if let Some((_, payload)) = self.message.as_mut() {
                        payload.extend_from_slice(&data[..n]);
                    }
                    data = &data[n..];
                    self.state = State::Compressed {
                        remaining: remaining - n as u64,
                        fin,
                    };
                    if remaining == n as u64 {
                        self.end_frame(fin)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A whole frame header: pass it on, or start (or go on) collecting a
    /// compressed message.
    fn on_header(&mut self, header: &[u8]) -> io::Result<()> {
        let b0 = header[0];
        let opcode = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        let masked = header[1] & 0x80 != 0;
        let len = payload_len(header);
        let compressed = match (b0 & RSV1 != 0, opcode, self.message.is_some()) {
            // The first frame of a compressed text or binary message.
            (true, 1 | 2, false) if !masked => true,
            // The rest of one: continuation frames, RSV1 clear.
            (false, 0, true) if !masked => true,
            // A new data frame before the compressed message ended.
            (_, 0..=7, true) => return Err(invalid("data frame inside a fragmented message")),
            // Anything else (uncompressed frames, control frames, and the
            // protocol errors tungstenite knows): byte for byte.
            _ => false,
        };
        if !compressed {
            self.out.extend_from_slice(header);
            self.state = if len == 0 {
                State::Header
            } else {
                State::Pass(len)
            };
            return Ok(());
        }
        let collected = self.message.as_ref().map_or(0, |(_, p)| p.len() as u64);
        if collected.saturating_add(len) > MAX_MESSAGE as u64 {
            return Err(invalid("compressed message over 16 MiB"));
        }
        match self.message.as_mut() {
            Some((_, payload)) => payload.reserve(len as usize),
            None => self.message = Some((opcode, Vec::with_capacity(len as usize + TAIL.len()))),
        }
        self.state = State::Compressed {
            remaining: len,
            fin,
        };
        if len == 0 {
            self.end_frame(fin)?;
        }
        Ok(())
    }

    /// A compressed message's frame is in: on its last, inflate it and
    /// write it out as one uncompressed frame.
    fn end_frame(&mut self, fin: bool) -> io::Result<()> {
        self.state = State::Header;
        if !fin {
            return Ok(());
        }
        let Some((opcode, mut payload)) = self.message.take() else {
            return Ok(());
        };
        payload.extend_from_slice(&TAIL);
        self.inflated.clear();
        INFLATE.with_borrow_mut(|d| inflate(d, &payload, &mut self.inflated))?;
        let len = self.inflated.len();
        self.out.push(0x80 | opcode);
        if len < 126 {
            self.out.push(len as u8);
        } else if len <= 0xffff {
            self.out.push(126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&self.inflated);
        if self.inflated.capacity() > 64 << 10 {
            self.inflated = Vec::new();
        }
        Ok(())
    }
}

/// Inflates one message (its payload with the tail put back) with a reset
/// decompressor, into `out`, up to [`MAX_MESSAGE`] bytes.
fn inflate(d: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    d.reset(false);
    loop {
        // Room for a few times the input, up to a chunk, and never past one
        // byte over the limit (which tells a message at it from one over).
        let len = out.len();
        let room = (input.len() * 8)
            .clamp(4096, CHUNK)
            .min(MAX_MESSAGE + 1 - len);
        out.resize(len + room, 0);
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d
            .decompress(input, &mut out[len..], FlushDecompress::Sync)
            .map_err(|err| invalid(&format!("bad deflate data: {err}")));
        let consumed = (d.total_in() - in_before) as usize;
        let produced = (d.total_out() - out_before) as usize;
        out.truncate(len + produced);
        let status = status?;
        input = &input[consumed..];
        if out.len() > MAX_MESSAGE {
            return Err(invalid("message inflates past 16 MiB"));
        }
        if status == Status::StreamEnd || (input.is_empty() && produced < room) {
            // A final block (nothing after it belongs to the message), or
            // all in and the output not full: nothing more is pending.
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            return Err(invalid("deflate data makes no progress"));
        }
    }
}

/// A frame header's length (2 to 14 bytes), once its first two bytes are in.
fn header_len(bytes: &[u8]) -> Option<usize> {
    let b1 = *bytes.get(1)?;
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 })
}

/// The payload length of a whole header.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a response head has a Sec-WebSocket-Extensions header naming
/// permessage-deflate.
fn accepts_deflate(head: &[u8]) -> bool {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                    && value.split(',').any(|ext| {
                        ext.split(';')
                            .next()
                            .is_some_and(|n| n.trim().eq_ignore_ascii_case("permessage-deflate"))
                    })
            })
        })
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("permessage-deflate: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use flate2::{Compress, Compression, FlushCompress};

    const ACCEPTED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\nsec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n";
    const DECLINED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";

    /// What the gateway sends: raw DEFLATE, sync flush, tail removed.
    fn compress(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::fast(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        loop {
            out.reserve(1024);
            let consumed = c.total_in() as usize;
            c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .unwrap();
            if c.total_in() as usize == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    /// A server (unmasked) frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Runs `stream` through a rewriter in chunks of `chunk` bytes.
    fn rewrite(stream: &[u8], chunk: usize) -> io::Result<(Vec<u8>, bool)> {
        let mut rw = Rewriter::default();
        for piece in stream.chunks(chunk) {
            rw.feed(piece)?;
        }
        Ok((rw.out, rw.negotiated))
    }

    /// JSON of `len` bytes, about as compressible as an event.
    fn text(len: usize) -> Vec<u8> {
        let mut s = br#"{"type":"loadtest","data":{"seq":1,"t":2,"pad":""#.to_vec();
        let mut i = 0;
        while s.len() < len - 3 {
            s.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[i * 7 % 36]);
            i += 1;
        }
        s.extend_from_slice(br#""}}"#);
        s
    }

    /// Incompressible bytes (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn a_compressed_frame_split_across_chunks_comes_out_uncompressed() {
        let message = text(600);
        let compressed = compress(&message);
        assert!(compressed.len() < message.len());
        let mut stream = ACCEPTED.to_vec();
        stream.extend(frame(0xC1, &compressed));
        let mut expected = ACCEPTED.to_vec();
        expected.extend(frame(0x81, &message));
        // 600 bytes: a 126 (16-bit) length out; every split point, from
        // one byte at a time (the blank line and the header cut) to whole.
        for chunk in 1..=stream.len() {
            let (out, negotiated) = rewrite(&stream, chunk).unwrap();
            assert!(negotiated);
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn uncompressed_frames_pass_byte_for_byte() {
        let mut frames = Vec::new();
        frames.extend(frame(0x81, b"small"));
        frames.extend(frame(0x81, &text(300)));
        frames.extend(frame(0x82, &[7; 70_000]));
        frames.extend(frame(0x89, b"ping")); // control frames too
        frames.extend(frame(0x81, b""));
        frames.extend(frame(0x88, &[0x03, 0xe8]));
        for head in [ACCEPTED, DECLINED] {
            let mut stream = head.to_vec();
            stream.extend_from_slice(&frames);
            for chunk in [1, 2, 3, 7, 125, 4096, stream.len()] {
                let (out, negotiated) = rewrite(&stream, chunk).unwrap();
                assert_eq!(negotiated, head == ACCEPTED);
                assert_eq!(out, stream, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn length_forms_of_126_and_127_in_and_out() {
        // Compressed size and inflated size each across the 7/16/64-bit
        // boundaries: repetitive data inflates from a short frame to a long
        // one, random-ish data stays long.
        let random = noise(80_000);
        let cases: Vec<Vec<u8>> = vec![
            vec![b'a'; 100],     // in 7-bit, out 7-bit
            vec![b'a'; 5_000],   // in 7-bit, out 16-bit
            vec![b'a'; 100_000], // in 16-bit (or 7), out 64-bit
            random[..1_000].to_vec(),
            random.clone(), // in 64-bit, out 64-bit
        ];
        let mut stream = ACCEPTED.to_vec();
        let mut expected = ACCEPTED.to_vec();
        for message in &cases {
            stream.extend(frame(0xC1, &compress(message)));
            stream.extend(frame(0x81, b"between"));
            expected.extend(frame(0x81, message));
            expected.extend(frame(0x81, b"between"));
        }
        assert!(compress(&random).len() > 0xffff);
        for chunk in [1, 5, 1000, 65_536, stream.len()] {
            let (out, _) = rewrite(&stream, chunk).unwrap();
            assert!(out == expected, "chunk {chunk}");
        }
        // The forms themselves.
        assert_eq!(header_len(&[0x81, 125]), Some(2));
        assert_eq!(header_len(&[0x81, 126]), Some(4));
        assert_eq!(header_len(&[0x81, 127]), Some(10));
        assert_eq!(payload_len(&[0x81, 126, 0x01, 0x00]), 256);
        assert_eq!(payload_len(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]), 65_536);
    }

    #[test]
    fn a_fragmented_compressed_message_comes_out_whole() {
        let message = text(2_000);
        let compressed = compress(&message);
        let (a, b) = compressed.split_at(compressed.len() / 2);
        let mut stream = ACCEPTED.to_vec();
        stream.extend(frame(0x41, a)); // RSV1, text, no FIN
        stream.extend(frame(0x89, b"p")); // a ping in between
        stream.extend(frame(0x80, b)); // continuation, FIN
        let mut expected = ACCEPTED.to_vec();
        expected.extend(frame(0x89, b"p"));
        expected.extend(frame(0x81, &message));
        for chunk in [1, 9, stream.len()] {
            assert_eq!(rewrite(&stream, chunk).unwrap().0, expected);
        }
    }

    #[test]
    fn inflating_is_bounded() {
        // 17 MiB of zeros compress to a few KiB.
        let bomb = compress(&vec![0u8; 17 << 20]);
        let mut stream = ACCEPTED.to_vec();
        stream.extend(frame(0xC1, &bomb));
        let err = rewrite(&stream, 4096).unwrap_err();
        assert!(err.to_string().contains("16 MiB"), "{err}");
        // A frame claiming more than the cap fails at its header.
        let mut stream = ACCEPTED.to_vec();
        stream.extend([0xC1, 127, 0, 0, 0, 0, 0x02, 0, 0, 0]);
        assert!(rewrite(&stream, 4096).is_err());
        // Just under the cap is fine.
        let big = compress(&vec![0u8; MAX_MESSAGE]);
        let mut stream = ACCEPTED.to_vec();
        stream.extend(frame(0xC1, &big));
        let (out, _) = rewrite(&stream, 1 << 16).unwrap();
        assert_eq!(out.len(), ACCEPTED.len() + 10 + MAX_MESSAGE);
    }

    #[tokio::test]
    async fn the_wire_counts_socket_bytes_and_reads_small_buffers() {
        let message = text(600);
        let compressed = compress(&message);
        let mut stream = ACCEPTED.to_vec();
        stream.extend(frame(0xC1, &compressed));
        stream.extend(frame(0x81, b"hi"));
        let mut expected = ACCEPTED.to_vec();
        expected.extend(frame(0x81, &message));
        expected.extend(frame(0x81, b"hi"));

        // Read in 7-byte buffers, as a small read buffer would.
        async fn read_all(wire: &mut Wire<&[u8]>) -> Vec<u8> {
            let mut out = Vec::new();
            let mut buf = [0u8; 7];
            loop {
                let mut rb = ReadBuf::new(&mut buf);
                std::future::poll_fn(|cx| Pin::new(&mut *wire).poll_read(cx, &mut rb))
                    .await
                    .unwrap();
                if rb.filled().is_empty() {
                    return out;
                }
                out.extend_from_slice(rb.filled());
            }
        }

        let mut wire = Wire::new(&stream[..], true);
        assert_eq!(read_all(&mut wire).await, expected);
        assert!(wire.negotiated());
        assert_eq!(wire.bytes_read(), stream.len() as u64);

        let mut plain = Wire::new(&stream[..], false);
        assert_eq!(read_all(&mut plain).await, stream);
        assert!(!plain.negotiated());
        assert_eq!(plain.bytes_read(), stream.len() as u64);
    }
}
