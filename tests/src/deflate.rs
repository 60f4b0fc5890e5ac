//! A WebSocket client that offers permessage-deflate (RFC 7692), written
//! on a raw TCP socket: tungstenite has no deflate, and the tests need to
//! see what is on the wire (which frames are compressed, how many bytes).

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::PATIENCE;

/// One frame from the server, inflated if it was compressed.
#[derive(Debug)]
pub struct WireFrame {
    pub compressed: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// Its size on the wire (header and payload as sent).
    pub wire_len: usize,
}

pub struct DeflateClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer (`None`: not
    /// negotiated).
    pub extensions: Option<String>,
    /// Bytes read from the socket after the handshake.
    pub bytes_read: usize,
}

impl DeflateClient {
    /// Opens `path` offering `offer` (e.g. `permessage-deflate;
    /// client_max_window_bits`, Chrome's), or no extension with `None`.
    pub async fn connect(addr: SocketAddr, path: &str, offer: Option<&str>) -> Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                .await
                .context("handshake timed out")??;
            if n == 0 {
                bail!("closed during the handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            bail!("not upgraded: {}", head.lines().next().unwrap_or(""));
        }
        let extensions = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        buf.drain(..head_end);
        let bytes_read = buf.len();
        Ok(Self {
            stream,
            buf,
            extensions,
            bytes_read,
        })
    }

    async fn fill(&mut self, need: usize) -> Result<()> {
        while self.buf.len() < need {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .context("no frame in time")??;
            if n == 0 {
                bail!("connection ended");
            }
            self.bytes_read += n;
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// The next frame (server frames are unmasked, unfragmented here).
    pub async fn next_frame(&mut self) -> Result<WireFrame> {
        self.fill(2).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let (len, header) = match b1 & 0x7f {
            126 => {
                self.fill(4).await?;
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                self.fill(10).await?;
                let len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
                (len as usize, 10)
            }
            short => (usize::from(short), 2),
        };
        self.fill(header + len).await?;
        let raw: Vec<u8> = self.buf.drain(..header + len).skip(header).collect();
        let compressed = b0 & 0x40 != 0;
        let payload = if compressed { inflate(&raw)? } else { raw };
        Ok(WireFrame {
            compressed,
            opcode: b0 & 0x0f,
            payload,
            wire_len: header + len,
        })
    }

    /// The next text frame as JSON (control frames skipped), and whether it
    /// came compressed.
    pub async fn next_json(&mut self) -> Result<(bool, Value)> {
        loop {
            let frame = self.next_frame().await?;
            match frame.opcode {
                1 => return Ok((frame.compressed, serde_json::from_slice(&frame.payload)?)),
                8 => bail!("closed: {:?}", close_code(&frame.payload)),
                _ => continue,
            }
        }
    }

    /// Reads until a close frame: its code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next_frame().await {
                Ok(frame) if frame.opcode == 8 => return close_code(&frame.payload),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends a masked text frame, compressed (RSV1) when `compress`.
    pub async fn send_text(&mut self, text: &str, compress: bool) -> Result<()> {
        let payload = if compress {
            deflate(text.as_bytes())
        } else {
            text.as_bytes().to_vec()
        };
        let first = if compress { 0xC1 } else { 0x81 };
        self.send_frame(first, &payload).await
    }

    /// Sends one masked frame with first byte `b0` (FIN, RSV bits, opcode)
    /// carrying `payload` as is.
    pub async fn send_frame(&mut self, b0: u8, payload: &[u8]) -> Result<()> {
        let key = [0x12u8, 0x34, 0x56, 0x78];
        let mut wire = vec![b0];
        match payload.len() {
            n if n < 126 => wire.push(0x80 | n as u8),
            n if n <= 0xffff => {
                wire.push(0x80 | 126);
                wire.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                wire.push(0x80 | 127);
                wire.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        wire.extend_from_slice(&key);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.stream.write_all(&wire).await?;
        Ok(())
    }
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Raw DEFLATE with a sync flush, the 00 00 ff ff tail removed (what a
/// browser sends).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let done = compress.total_in() as usize;
        compress
            .compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

fn inflate(data: &[u8]) -> Result<Vec<u8>> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    loop {
        let done = decompress.total_in() as usize;
        decompress.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)?;
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(1024));
    }
}
