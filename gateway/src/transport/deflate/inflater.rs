//! Inbound permessage-deflate: [`Inflater`] rewrites a client's byte
//! stream for tungstenite (which has no deflate), each compressed message
//! replaced by an uncompressed one, with the inbound limit applied to the
//! inflated size (a few hundred compressed bytes can inflate to megabytes).

use flate2::{Decompress, FlushDecompress, Status};

use super::{CHUNK, TAIL, frame_header};

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
pub(super) fn inflate_into(
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
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
    pub(super) fn pending_capacity(&self) -> usize {
        match &self.message {
            Message::Deflated { data, .. } => data.capacity(),
            _ => 0,
        }
    }
}

/// The length of the frame header that starts with `head` (2 until the second byte is known).
pub(super) fn header_len(head: &[u8]) -> usize {
    let Some(&b1) = head.get(1) else { return 2 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}
