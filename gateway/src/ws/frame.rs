//! Server frames (RFC 6455 §5.2) built here rather than by tungstenite:
//! server frames are not masked, so an event's frame is the same bytes for
//! every client and is built once per node; a session's own text (greeting,
//! replay, replies) goes out the same way, so tungstenite's write buffer
//! never grows to the size of a greeting and stays that size for the life of
//! an idle connection. Tungstenite still reads every frame and writes the
//! control replies it owes (pongs, the close echo).

use bytes::{BufMut, Bytes, BytesMut};

/// A ping with no payload: FIN, opcode 9, length 0.
pub const PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

/// A text frame: FIN, opcode 1, no mask; the payload length in 7, 16 or 64
/// bits.
pub fn text(text: &str) -> Bytes {
    let len = text.len();
    let mut wire = BytesMut::with_capacity(len + 10);
    wire.put_u8(0x81);
    if len < 126 {
        wire.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        wire.put_u8(126);
        wire.put_u16(len);
    } else {
        wire.put_u8(127);
        wire.put_u64(len as u64);
    }
    wire.put_slice(text.as_bytes());
    wire.freeze()
}

/// The payload of a frame [`text`] built.
#[cfg(test)]
pub fn payload(wire: &[u8]) -> &[u8] {
    let header = match wire[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &wire[header..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_frame_is_unmasked_with_the_right_length_field() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let body = "x".repeat(len);
            let wire = text(&body);
            let at = wire.len() - len;
            assert_eq!(at, header, "{len}");
            assert_eq!(wire[0], 0x81, "FIN + text, {len}");
            assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
            let declared = match wire[1] {
                126 => u16::from_be_bytes([wire[2], wire[3]]) as usize,
                127 => u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                short => short as usize,
            };
            assert_eq!(declared, len);
            assert_eq!(payload(&wire), body.as_bytes());
        }
    }
}
