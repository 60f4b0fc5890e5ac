//! permessage-deflate (RFC 7692) for the gateway, in both directions.
//!
//! Outbound, one event is compressed once per node and the same bytes are written to every client
//! subscribed to it. That is only possible without context takeover: with it, each connection's
//! compressor would carry its own history and every event would have to be compressed once per
//! client. So we negotiate `server_no_context_takeover` and compress each message with a fresh
//! (reset) raw-DEFLATE stream. We also ask for `client_no_context_takeover`, so inbound messages
//! can be inflated with a fresh decompressor and an idle connection holds no 32 KiB window.
//!
//! Inbound, the WebSocket library (tungstenite) has no deflate support, so [`Inflater`] rewrites
//! the client's byte stream, replacing each compressed message with an uncompressed one. Its size
//! limit applies to the inflated size because that is what costs memory: a few hundred compressed
//! bytes can inflate to megabytes (a decompression bomb), so limiting the wire size alone would
//! protect nothing.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Level 1 (fast). Measured with miniz_oxide optimised (dev profile, deps at opt-level 3), reused
/// compressor reset per message, 20 000 runs: a 997-byte tutor metrics JSON row → fast 581 bytes
/// (58.3 %) in ~12.6 µs, default (6) 555 bytes (55.7 %) in ~18.8 µs; a 200-byte JSON object → 156
/// bytes at both levels, ~9.0 µs vs ~10.8 µs. Default saves 26 bytes (4.5 %) on the 1 KB row for
/// ~50 % more CPU, nothing on the small one: not worth it. (Of that, ~5.6 µs is the reset itself,
/// which clears miniz_oxide's hash tables; a fresh Compress per message measured ~53 µs.)
const LEVEL: Compression = Compression::fast();

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.1 removes it on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// At most this much is inflated per decompressor call, so a bomb is caught within one chunk.
const CHUNK: usize = 32 * 1024;

const RESPONSE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const RESPONSE_WITH_WINDOW: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15";

/// The response to a client's offer, if it offered permessage-deflate:
/// "permessage-deflate; server_no_context_takeover; client_no_context_takeover".
/// Accepts the first offer (over every Sec-WebSocket-Extensions value and comma-separated offer)
/// whose name is permessage-deflate and whose parameters we can all honour.
/// An offer that named `server_max_window_bits=15` gets it back (RFC 7692
/// §7.1.2.1: a response to such an offer must carry it).
pub fn negotiate(headers: &axum::http::HeaderMap) -> Option<axum::http::HeaderValue> {
    let window_named = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(acceptable)?;
    Some(axum::http::HeaderValue::from_static(if window_named {
        RESPONSE_WITH_WINDOW
    } else {
        RESPONSE
    }))
}

/// `Some(whether it names server_max_window_bits)` for an offer we accept.
fn acceptable(offer: &str) -> Option<bool> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
    {
        return None;
    }
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = value.map(|v| match v.parse::<u8>() {
            Ok(b @ 8..=15) if !v.starts_with(['0', '+']) => Some(b),
            _ => None,
        });
        let (slot, ok) = match name {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            // We never take context over, so the client's window size does not matter to us.
            "client_max_window_bits" => (2, bits != Some(None)),
            // We compress with a 15-bit window and cannot promise a smaller one.
            "server_max_window_bits" => (3, bits == Some(Some(15))),
            _ => return None,
        };
        // RFC 7692 §7: an offer with a malformed or repeated parameter must be declined.
        if !ok || std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(seen[3])
}

thread_local! {
    // One compressor per thread, reset after each message, so no per-call state allocation.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(LEVEL, false));
}

/// Compresses one message payload for a frame with RSV1 set: raw DEFLATE, sync flush, the trailing
/// 00 00 ff ff removed, no context kept between calls.
#[cfg(test)]
fn compress(payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    compress_into(payload, &mut out);
    Bytes::from(out)
}

fn compress_into(payload: &[u8], out: &mut Vec<u8>) {
    COMPRESSOR.with_borrow_mut(|c| {
        let start = out.len();
        out.reserve(payload.len() / 2 + 64);
        // total_in counts from the last reset; measure from here in case an earlier call panicked.
        let base = c.total_in();
        loop {
            let done = (c.total_in() - base) as usize;
            c.compress_vec(&payload[done..], out, FlushCompress::Sync)
                .expect("raw deflate of an in-memory buffer cannot fail");
            // The flush is complete once all input is in and the output was not filled up.
            if (c.total_in() - base) as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        c.reset();
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    });
}

/// A whole server text frame carrying `payload` compressed: FIN + RSV1 + text (0xC1), unmasked.
pub fn text_frame(payload: &[u8]) -> Bytes {
    // Compress after room for the longest unmasked header, then put the header just before it.
    let mut buf = vec![0; 10];
    compress_into(payload, &mut buf);
    let (head, len) = frame_header(0xC1, false, buf.len() - 10);
    buf[10 - len..10].copy_from_slice(&head[..len]);
    Bytes::from(buf).slice(10 - len..)
}

/// An RFC 6455 frame header; when `masked`, the masking key is 00 00 00 00.
fn frame_header(byte0: u8, masked: bool, len: usize) -> ([u8; 14], usize) {
    let mut h = [0; 14];
    h[0] = byte0;
    let mask = if masked { 0x80 } else { 0 };
    let n = match len {
        0..=125 => {
            h[1] = mask | len as u8;
            2
        }
        126..=0xffff => {
            h[1] = mask | 126;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            h[1] = mask | 127;
            h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (h, if masked { n + 4 } else { n })
}

/// Why a compressed message from a client was refused: the session closes
/// with 1009 (too large) or 1002 (not valid permessage-deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("a compressed message inflates past the inbound size limit")]
    TooLarge,
    #[error("a compressed message is not valid permessage-deflate")]
    Corrupt,
}

/// Inflates one compressed message (as received, without the 00 00 ff ff tail) with a fresh
/// decompressor; TooLarge as soon as the output would exceed `max` bytes.
#[cfg(test)]
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    inflate_into(compressed, max, &mut out)?;
    Ok(out)
}

/// Appends the inflated message to `out` (left as it was on error). Output is produced at most a
/// chunk at a time and never beyond max + 1 bytes, so a bomb costs at most that much memory.
fn inflate_into(compressed: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
    let start = out.len();
    let limit = start.saturating_add(max).saturating_add(1);
    let mut d = Decompress::new(false);
    let result = (|| {
        for input in [compressed, &TAIL[..]] {
            let mut used = 0;
            loop {
                let len = out.len();
                if len - start > max {
                    return Err(InflateError::TooLarge);
                }
                let room = CHUNK.min(limit - len);
                if out.capacity() < len + room {
                    // Grow geometrically (no quadratic copying), but never past the limit.
                    let target = (out.capacity() * 2).clamp(len + room, limit);
                    out.reserve_exact(target - len);
                }
                out.resize(len + room, 0);
                let (in0, out0) = (d.total_in(), d.total_out());
                let status = d.decompress(&input[used..], &mut out[len..], FlushDecompress::None);
                let produced = (d.total_out() - out0) as usize;
                out.truncate(len + produced);
                used += (d.total_in() - in0) as usize;
                match status {
                    Err(_) => return Err(InflateError::Corrupt),
                    // A block with BFINAL set ends the message; anything after it is ignored.
                    Ok(Status::StreamEnd) => return Ok(()),
                    Ok(_) if used == input.len() && produced < room => break,
                    Ok(_) if produced == 0 && d.total_in() == in0 => {
                        return Err(InflateError::Corrupt);
                    }
                    Ok(_) => {}
                }
            }
        }
        if out.len() - start > max {
            return Err(InflateError::TooLarge);
        }
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[derive(Debug)]
enum State {
    /// Collecting the next frame header in `Inflater::head`.
    Header,
    /// Copying a frame through verbatim.
    Pass { remaining: u64 },
    /// Unmasking a compressed message's frame into the pending buffer.
    Deflated {
        remaining: u64,
        key: [u8; 4],
        fin: bool,
    },
}

/// The data message currently open (between its first frame and its FIN frame).
#[derive(Debug)]
enum Message {
    None,
    Plain,
    Deflated { opcode: u8, data: Vec<u8> },
}

/// Rewrites a client→server byte stream so that a library without deflate support can read it:
/// every frame passes through byte for byte except compressed messages, each replaced once complete
/// by one FIN frame (RSV1 clear, same opcode, masked with key 00 00 00 00) carrying the inflated
/// payload. Control frames between fragments pass through in place.
#[derive(Debug)]
pub struct Inflater {
    max: usize,
    head: [u8; 14],
    head_len: u8,
    state: State,
    message: Message,
    failed: Option<InflateError>,
}

impl Inflater {
    pub fn new(max_message: usize) -> Self {
        Inflater {
            max: max_message,
            head: [0; 14],
            head_len: 0,
            state: State::Header,
            message: Message::None,
            failed: None,
        }
    }

    /// Consumes `input` (raw bytes read from the socket) and appends to `out` the bytes to hand to
    /// the library. After an error the inflater stays failed.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.run(input, out);
        if let Err(e) = result {
            self.failed = Some(e);
            self.message = Message::None;
        }
        result
    }

    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        loop {
            match &mut self.state {
                State::Header => {
                    let have = self.head_len as usize;
                    let need = header_len(&self.head[..have]);
                    if have == need {
                        self.head_len = 0;
                        self.start_frame(need, out)?;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(());
                    }
                    let n = (need - have).min(input.len());
                    self.head[have..have + n].copy_from_slice(&input[..n]);
                    self.head_len += n as u8;
                    input = &input[n..];
                }
                State::Pass { remaining: 0 } => self.state = State::Header,
                State::Pass { remaining } => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    // Verbatim frames are streamed as they arrive, never held back.
                    let n = input
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..n]);
                    *remaining -= n as u64;
                    input = &input[n..];
                }
                State::Deflated {
                    remaining: 0, fin, ..
                } => {
                    let fin = *fin;
                    self.state = State::Header;
                    if fin {
                        self.finish(out)?;
                    }
                }
                State::Deflated { remaining, key, .. } => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let Message::Deflated { data, .. } = &mut self.message else {
                        unreachable!("a deflated frame is only started inside a deflated message");
                    };
                    let n = input
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let k = *key;
                    data.extend(input[..n].iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
                    key.rotate_left(n % 4);
                    *remaining -= n as u64;
                    input = &input[n..];
                }
            }
        }
    }

    fn start_frame(&mut self, head_len: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
        let h = self.head;
        let (fin, rsv1, opcode) = (h[0] & 0x80 != 0, h[0] & 0x40 != 0, h[0] & 0x0f);
        let len = match h[1] & 0x7f {
            126 => u16::from_be_bytes([h[2], h[3]]) as u64,
            127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
            n => n as u64,
        };
        if h[0] & 0x30 != 0 {
            return Err(InflateError::Corrupt);
        }
        let compressed = if opcode & 0x08 != 0 {
            // Control frames are never compressed (RFC 7692 §6.1).
            if rsv1 {
                return Err(InflateError::Corrupt);
            }
            false
        } else {
            match (&self.message, opcode, rsv1) {
                (_, 0, true) => return Err(InflateError::Corrupt),
                (Message::None, 0, _) => return Err(InflateError::Corrupt),
                (Message::Deflated { .. }, 0, false) => true,
                (Message::Plain, 0, false) => {
                    if fin {
                        self.message = Message::None;
                    }
                    false
                }
                // A new data message inside a compressed one cannot be reordered sensibly.
                (Message::Deflated { .. }, _, _) | (Message::Plain, _, true) => {
                    return Err(InflateError::Corrupt);
                }
                (_, 1 | 2, true) => {
                    let data = Vec::new();
                    self.message = Message::Deflated { opcode, data };
                    true
                }
                (_, _, true) => return Err(InflateError::Corrupt),
                // Anything else odd here (reserved opcodes, nesting) is left for the library to reject.
                (_, _, false) => {
                    if !fin {
                        self.message = Message::Plain;
                    }
                    false
                }
            }
        };
        if !compressed {
            out.extend_from_slice(&h[..head_len]);
            self.state = State::Pass { remaining: len };
            return Ok(());
        }
        // The library would reject an unmasked client frame; we must too, as we hide the mask bit.
        if h[1] & 0x80 == 0 {
            return Err(InflateError::Corrupt);
        }
        let Message::Deflated { data, .. } = &mut self.message else {
            unreachable!("compressed frames only belong to a deflated message");
        };
        // Refuse on the declared length, before buffering a byte of it.
        let total = (data.len() as u64).saturating_add(len);
        if total > self.max as u64 {
            return Err(InflateError::TooLarge);
        }
        // What arrives, not what a header claims: a 14-byte header may promise
        // 64 KiB and send nothing more.
        data.reserve_exact((len as usize).min(CHUNK));
        let key = h[head_len - 4..head_len].try_into().expect("4 bytes");
        self.state = State::Deflated {
            remaining: len,
            key,
            fin,
        };
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), InflateError> {
        // Taking the message drops its buffer, so an idle connection holds no payload memory.
        let Message::Deflated { opcode, data } =
            std::mem::replace(&mut self.message, Message::None)
        else {
            unreachable!("finish is only called at the end of a deflated message");
        };
        // Inflate straight into `out` after room for the longest header, then close the gap.
        let start = out.len();
        out.extend_from_slice(&[0; 14]);
        if let Err(e) = inflate_into(&data, self.max, out) {
            out.truncate(start);
            return Err(e);
        }
        let n = out.len() - start - 14;
        let (head, len) = frame_header(0x80 | opcode, true, n);
        out.copy_within(start + 14.., start + len);
        out.truncate(start + len + n);
        out[start..start + len].copy_from_slice(&head[..len]);
        Ok(())
    }

    #[cfg(test)]
    fn pending_capacity(&self) -> usize {
        match &self.message {
            Message::Deflated { data, .. } => data.capacity(),
            _ => 0,
        }
    }
}

/// The length of the frame header that starts with `head` (2 until the second byte is known).
fn header_len(head: &[u8]) -> usize {
    let Some(&b1) = head.get(1) else { return 2 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 64 * 1024;

    /// A masked client frame, as a browser sends it.
    fn client_frame(byte0: u8, payload: &[u8]) -> Vec<u8> {
        let (head, len) = frame_header(byte0, true, payload.len());
        let mut f = head[..len].to_vec();
        f[len - 4..].copy_from_slice(&KEY);
        f.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
        f
    }

    /// Parses one frame by hand: (byte0, masking key if any, unmasked payload, rest).
    fn parse(f: &[u8]) -> (u8, Option<[u8; 4]>, Vec<u8>, &[u8]) {
        let mut at = 2;
        let len = match f[1] & 0x7f {
            126 => u16::from_be_bytes([f[2], f[3]]) as usize,
            127 => u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
            n => n as usize,
        };
        at += header_len(f) - 2 - if f[1] & 0x80 != 0 { 4 } else { 0 };
        let key: Option<[u8; 4]> = (f[1] & 0x80 != 0).then(|| f[at..at + 4].try_into().unwrap());
        at += if key.is_some() { 4 } else { 0 };
        let k = key.unwrap_or([0; 4]);
        let p = f[at..at + len]
            .iter()
            .zip(k.iter().cycle())
            .map(|(b, k)| b ^ k);
        (f[0], key, p.collect(), &f[at + len..])
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        for i in 0.. {
            if s.len() >= n {
                break;
            }
            s += &format!(
                "{{\"tutor\":{i},\"sessions\":{},\"rating\":4.{}}},",
                i * 7,
                i % 10
            );
        }
        s.into_bytes()[..n].to_vec()
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn offer(values: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in values {
            h.append(
                axum::http::header::SEC_WEBSOCKET_EXTENSIONS,
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn compress_then_inflate_round_trips_every_size() {
        for n in [0, 1, 200, 70_000] {
            let payload = json(n);
            let c = compress(&payload);
            assert!(!c.ends_with(&TAIL), "tail must be stripped for {n}");
            assert_eq!(inflate(&c, 100_000).unwrap(), payload, "size {n}");
        }
    }

    #[test]
    fn compressed_output_is_what_a_standard_raw_inflater_reads() {
        for payload in [json(1000), noise(5000), Vec::new()] {
            let mut wire = compress(&payload).to_vec();
            wire.extend_from_slice(&TAIL);
            let mut d = Decompress::new(false);
            let mut out = Vec::with_capacity(payload.len() + 1024);
            d.decompress_vec(&wire, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(d.total_in() as usize, wire.len());
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn no_context_is_kept_between_messages() {
        let a = compress(&json(1000));
        assert_eq!(
            compress(&json(1000)),
            a,
            "a second compression must not refer back"
        );
    }

    #[test]
    fn text_frame_is_fin_rsv1_text_unmasked_with_rfc6455_length() {
        for (payload, len7) in [(json(100), 80), (noise(1000), 126), (noise(70_000), 127)] {
            let f = text_frame(&payload);
            assert_eq!(f[0], 0xC1);
            assert_eq!(f[1] & 0x80, 0, "server frames are unmasked");
            assert!(f[1] & 0x7f == len7 || (len7 == 80 && f[1] < 126));
            let (_, key, body, rest) = parse(&f);
            assert!(key.is_none() && rest.is_empty());
            assert_eq!(inflate(&body, 100_000).unwrap(), payload);
        }
    }

    #[test]
    fn negotiate_accepts_chrome_and_firefox_offers() {
        let chrome = offer(&["permessage-deflate; client_max_window_bits"]);
        assert_eq!(negotiate(&chrome).unwrap(), RESPONSE);
        assert_eq!(
            negotiate(&offer(&["permessage-deflate"])).unwrap(),
            RESPONSE
        );
        let full = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                    client_max_window_bits=\"10\"; server_max_window_bits=15";
        assert_eq!(
            negotiate(&offer(&[full])).unwrap(),
            RESPONSE_WITH_WINDOW,
            "a named server window is echoed"
        );
    }

    #[test]
    fn negotiate_declines_what_it_cannot_honour() {
        assert!(negotiate(&axum::http::HeaderMap::new()).is_none());
        for o in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate;",
        ] {
            assert!(negotiate(&offer(&[o])).is_none(), "{o}");
        }
    }

    #[test]
    fn negotiate_accepts_a_later_offer_in_the_same_or_another_header() {
        let same = offer(&["permessage-deflate; server_max_window_bits=10, permessage-deflate"]);
        assert!(negotiate(&same).is_some());
        let other = offer(&["x-webkit-deflate-frame", "permessage-deflate"]);
        assert!(negotiate(&other).is_some());
    }

    #[test]
    fn an_uncompressed_masked_text_frame_passes_byte_for_byte() {
        let mut wire = client_frame(0x81, b"hello");
        wire.extend(client_frame(0x01, &noise(300)));
        wire.extend(client_frame(0x89, b"ping"));
        wire.extend(client_frame(0x80, &noise(70_000)));
        let mut inf = Inflater::new(MAX);
        let mut out = Vec::new();
        // Streamed as it arrives: half a frame comes out at once, not when the frame completes.
        let half = wire.len() - 35_000;
        inf.push(&wire[..half], &mut out).unwrap();
        assert_eq!(out, &wire[..half]);
        inf.push(&wire[half..], &mut out).unwrap();
        assert_eq!(out, wire);
    }

    #[test]
    fn a_compressed_message_is_inflated_for_tungstenite() {
        let payload = json(1000);
        let wire = client_frame(0xC1, &compress(&payload));
        let mut out = Vec::new();
        Inflater::new(MAX).push(&wire, &mut out).unwrap();
        // Checked by hand, no WebSocket library: FIN + text, RSV clear, MASK set, zero key.
        let (byte0, key, body, rest) = parse(&out);
        assert_eq!(byte0, 0x81);
        assert_eq!(key, Some([0; 4]));
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(
            &out[8..],
            &payload[..],
            "zero key: payload bytes are the inflated bytes"
        );
        assert_eq!((body, rest), (payload, &[][..]));
    }

    #[test]
    fn input_fed_one_byte_at_a_time_gives_the_same_output() {
        let mut wire = client_frame(0x81, b"plain");
        wire.extend(client_frame(0xC2, &compress(&noise(500))));
        wire.extend(client_frame(0xC1, &compress(b"")));
        let mut whole = Vec::new();
        Inflater::new(MAX).push(&wire, &mut whole).unwrap();
        let (mut inf, mut bytewise) = (Inflater::new(MAX), Vec::new());
        for b in &wire {
            inf.push(std::slice::from_ref(b), &mut bytewise).unwrap();
        }
        assert_eq!(bytewise, whole);
        let (_, _, _, rest) = parse(&whole);
        let (byte0, _, body, rest) = parse(rest);
        assert_eq!((byte0, body), (0x82, noise(500)));
        assert_eq!(parse(rest).2, b"");
    }

    #[test]
    fn a_fragmented_compressed_message_yields_the_ping_first_then_one_frame() {
        let payload = json(3000);
        let c = compress(&payload);
        let (a, rest) = c.split_at(c.len() / 3);
        let (b, z) = rest.split_at(rest.len() / 2);
        let ping = client_frame(0x89, b"are you there");
        let mut wire = client_frame(0x41, a);
        wire.extend(&ping);
        wire.extend(client_frame(0x00, b));
        wire.extend(client_frame(0x80, z));
        let mut inf = Inflater::new(MAX);
        let mut out = Vec::new();
        inf.push(&wire, &mut out).unwrap();
        assert_eq!(&out[..ping.len()], &ping[..]);
        let (byte0, key, body, rest) = parse(&out[ping.len()..]);
        assert_eq!(
            (byte0, key, body, rest),
            (0x81, Some([0; 4]), payload, &[][..])
        );
        assert_eq!(
            inf.pending_capacity(),
            0,
            "the pending buffer is released when idle"
        );
    }

    #[test]
    fn a_decompression_bomb_is_too_large_without_allocating_it() {
        let bomb = compress(&vec![0; 1 << 20]);
        assert!(
            bomb.len() < MAX,
            "the bomb itself fits: only its inflated size is refused"
        );
        let mut buf = Vec::new();
        assert_eq!(
            inflate_into(&bomb, MAX, &mut buf),
            Err(InflateError::TooLarge)
        );
        assert!(
            buf.capacity() <= MAX + 64 * 1024,
            "allocated {}",
            buf.capacity()
        );
        let mut inf = Inflater::new(MAX);
        let mut out = Vec::new();
        let r = inf.push(&client_frame(0xC2, &bomb), &mut out);
        assert_eq!(r, Err(InflateError::TooLarge));
        assert!(
            out.capacity() <= MAX + 64 * 1024,
            "allocated {}",
            out.capacity()
        );
        assert!(out.is_empty());
        assert_eq!(
            inf.push(b"\x81", &mut out),
            Err(InflateError::TooLarge),
            "stays failed"
        );
    }

    #[test]
    fn rsv1_on_a_control_or_continuation_frame_is_corrupt() {
        let mut out = Vec::new();
        let ping = client_frame(0xC9, b"");
        assert_eq!(
            Inflater::new(MAX).push(&ping, &mut out),
            Err(InflateError::Corrupt)
        );
        let mut wire = client_frame(0x41, &compress(b"abc"));
        wire.extend(client_frame(0xC0, b""));
        let r = Inflater::new(MAX).push(&wire, &mut out);
        assert_eq!(r, Err(InflateError::Corrupt));
    }

    #[test]
    fn rsv2_or_an_orphan_continuation_is_corrupt() {
        for f in [client_frame(0xA1, b"x"), client_frame(0x80, b"x")] {
            assert_eq!(
                Inflater::new(MAX).push(&f, &mut Vec::new()),
                Err(InflateError::Corrupt)
            );
        }
    }

    #[test]
    fn garbage_deflate_data_is_corrupt() {
        assert_eq!(inflate(&[0xff; 16], MAX), Err(InflateError::Corrupt));
        let f = client_frame(0xC1, &[0xff; 16]);
        assert_eq!(
            Inflater::new(MAX).push(&f, &mut Vec::new()),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn a_huge_declared_compressed_frame_is_too_large_at_once() {
        let mut head = vec![0xC1, 0x80 | 127];
        head.extend(10_000_000u64.to_be_bytes());
        head.extend(KEY);
        let mut inf = Inflater::new(MAX);
        let mut out = Vec::new();
        assert_eq!(inf.push(&head, &mut out), Err(InflateError::TooLarge));
        assert_eq!(inf.pending_capacity(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn an_idle_inflater_is_small() {
        assert!(
            std::mem::size_of::<Inflater>() <= 96,
            "{}",
            std::mem::size_of::<Inflater>()
        );
    }
}
