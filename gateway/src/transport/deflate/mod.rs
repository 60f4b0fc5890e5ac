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

mod inflater;

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

pub use self::inflater::{InflateError, Inflater};

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

#[cfg(test)]
mod tests;
