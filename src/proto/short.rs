//! The short op frame: an op on the same object, from the same origin, as
//! the op frame before it on a stream, without the object key and origin.
//!
//! An op frame `[2, tag, name, lamport, origin, seq, payload]` spends
//! about 50 bytes on its object key and 32-byte origin. Ops come in runs
//! (one writer's burst on one object), so a link's writer
//! ([`OpShortener`]) writes the second and later ops of a run as
//! `[4, lamport, seq, payload]`, and the link's reader
//! ([`Decoder`](super::message::Decoder)) fills the key and origin in from
//! the last full op frame it decoded. With a 64-byte argument a frame
//! shrinks from 138 to 87 bytes; on a three-process loopback benchmark
//! the bytes were about a quarter of the CPU per op (the kernel's UDP
//! path, AES-GCM, copies).
//!
//! Both ends follow one rule: the reference is the object key and origin
//! of the last full op or repair frame on the stream. The writer parses
//! every frame it queues; a frame it cannot parse as an op frame is
//! written as it is, and if it claimed to be an op the reference is
//! dropped, so the next op goes in full and both ends agree again. A
//! stateless decode ([`Message::decode`](super::message::Message::decode))
//! refuses a short frame: it has nothing to fill it in from.

use super::message::{KIND_OP, KIND_REPAIR, KIND_SHORT_OP, OP_ITEMS, SHORT_OP_ITEMS, WIRE_VERSION};

/// CBOR major types used by the op frame.
const UINT: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;

/// The writing side of one stream's short op frames.
#[derive(Debug, Default, Clone)]
pub struct OpShortener {
    /// The CBOR bytes of the last full op frame's tag and name.
    key: Vec<u8>,
    /// Its origin.
    origin: [u8; 32],
    /// Whether `key` and `origin` hold a reference the reader shares.
    valid: bool,
}

/// The byte ranges of an op frame's fields.
struct OpSpans {
    kind: u64,
    key: (usize, usize),
    lamport: (usize, usize),
    origin: (usize, usize),
    seq: (usize, usize),
    payload: (usize, usize),
}

impl OpShortener {
    /// A stream with no op on it yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `frame` (a whole encoded frame, without its length prefix)
    /// to `out`, as a short op frame when it is an op on the object and
    /// origin of the last full op frame appended here. Returns the bytes
    /// appended.
    pub fn append(&mut self, frame: &[u8], out: &mut Vec<u8>) -> usize {
        let Some(op) = op_spans(frame) else {
            if frame
                .get(2)
                .is_some_and(|&k| k == KIND_OP as u8 || k == KIND_REPAIR as u8)
            {
                // Claims to be an op but does not parse: the reader may
                // still take it as one, so start over from a full frame.
                self.valid = false;
            }
            out.extend_from_slice(frame);
            return frame.len();
        };
        let range = |(a, b): (usize, usize)| &frame[a..b];
        if op.kind == KIND_OP
            && self.valid
            && range(op.key) == self.key.as_slice()
            && range(op.origin) == self.origin.as_slice()
        {
            let start = out.len();
            out.push(WIRE_VERSION);
            out.push(0x80 | SHORT_OP_ITEMS as u8);
            out.push(KIND_SHORT_OP as u8);
            out.extend_from_slice(range(op.lamport));
            out.extend_from_slice(range(op.seq));
            out.extend_from_slice(range(op.payload));
            return out.len() - start;
        }
        self.key.clear();
        self.key.extend_from_slice(range(op.key));
        self.origin.copy_from_slice(range(op.origin));
        self.valid = true;
        out.extend_from_slice(frame);
        frame.len()
    }
}

/// Where the fields of an op or repair frame are, if `frame` is one.
fn op_spans(frame: &[u8]) -> Option<OpSpans> {
    let [version, array, kind, ..] = *frame else {
        return None;
    };
    let kind = u64::from(kind);
    if version != WIRE_VERSION
        || array != 0x80 | OP_ITEMS as u8
        || (kind != KIND_OP && kind != KIND_REPAIR)
    {
        return None;
    }
    let mut pos = 3;
    let tag = item(frame, &mut pos, TEXT)?;
    let name = item(frame, &mut pos, TEXT)?;
    let lamport = item(frame, &mut pos, UINT)?;
    let origin_head = pos;
    let origin = item(frame, &mut pos, BYTES)?;
    if origin.1 - origin_head != 34 {
        // A 32-byte string: a two-byte head (0x58 0x20), then the bytes.
        return None;
    }
    let seq = item(frame, &mut pos, UINT)?;
    let payload = item(frame, &mut pos, BYTES)?;
    (pos == frame.len()).then_some(OpSpans {
        kind,
        key: (tag.0, name.1),
        lamport,
        origin: (origin.1 - 32, origin.1),
        seq,
        payload,
    })
}

/// The range of the item of major type `major` at `pos` (head included),
/// moving `pos` past it.
fn item(frame: &[u8], pos: &mut usize, major: u8) -> Option<(usize, usize)> {
    let start = *pos;
    let first = *frame.get(start)?;
    if first >> 5 != major {
        return None;
    }
    let (head, value) = match first & 0x1f {
        info @ 0..=23 => (1, u64::from(info)),
        24 => (2, u64::from(*frame.get(start + 1)?)),
        25 => (
            3,
            u64::from(u16::from_be_bytes(
                frame.get(start + 1..start + 3)?.try_into().ok()?,
            )),
        ),
        26 => (
            5,
            u64::from(u32::from_be_bytes(
                frame.get(start + 1..start + 5)?.try_into().ok()?,
            )),
        ),
        27 => (
            9,
            u64::from_be_bytes(frame.get(start + 1..start + 9)?.try_into().ok()?),
        ),
        _ => return None,
    };
    let body = if major == UINT {
        0
    } else {
        usize::try_from(value).ok()?
    };
    let end = start.checked_add(head)?.checked_add(body)?;
    if end > frame.len() {
        return None;
    }
    *pos = end;
    Some((start, end))
}

#[cfg(test)]
#[path = "short_tests.rs"]
mod tests;
