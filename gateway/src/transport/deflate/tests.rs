//! What a browser sees of permessage-deflate: the offers accepted and
//! refused, events arriving intact, bombs and corrupt streams refused.

use flate2::{Decompress, FlushDecompress};

use super::inflater::*;
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
