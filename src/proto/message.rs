//! The versioned wire enum and its codec.
//!
//! A frame is one version byte followed by one CBOR array whose first item
//! says what the frame is:
//!
//! * `[2, tag, name, lamport, origin, seq, payload]`: an op
//!   ([`Message::Op`]), array-shaped and written by hand. Ops are nearly all
//!   the traffic, so their codec matters: about 0.1 µs to encode and decode
//!   an op with a 64-byte argument, against about 2 µs for the same frame as
//!   a serde-derived CBOR map. Byte strings are sliced out of the received
//!   buffer, not copied.
//! * `[3, tag, name, lamport, origin, seq, payload]`: an op sent by
//!   anti-entropy ([`Message::Repair`]), the same shape: a repair is
//!   delivered and relayed like a pushed op, but says nothing about the
//!   broadcast tree's links.
//! * `[4, lamport, seq, payload]`: an op on the same object, from the same
//!   origin, as the last op frame on the stream (see
//!   [`short`](super::short)); only a stream's stateful [`Decoder`] can
//!   read it.
//! * `[1, message]`: any other message, the serde CBOR encoding of
//!   [`Message`] (rare, small, and easier to evolve as a map).
//!
//! Every decoder here treats its input as untrusted: anything malformed,
//! oversize, or of an unknown version is a [`DecodeError`], never a panic.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::cbor::{self, CborError, Reader};

use super::data::DataFrame;
use super::dissemination::{SeqRun, TreeMsg};
use super::id::{NodeId, ObjectKey, OpId};
use super::stability::AckTable;
use super::swim::SwimMessage;
use super::version::VersionVector;

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 3;

/// The default largest frame, in bytes: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// One message between two linked nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// The first message on a link, in both directions: who is speaking.
    Hello {
        /// The sender's node id.
        node: NodeId,
        /// The address the sender accepts links on, if it listens.
        addr: Option<String>,
        /// A random number per connection: when two nodes end up with two
        /// connections, both keep the one whose dialer is the smaller node
        /// id and, among those, whose dialer sent the smaller nonce.
        nonce: u64,
        /// Whether the sender's application made this link
        /// (`Node::link`): both ends then keep it as a neighbour, outside
        /// the overlay's choices. Absent (false) from older senders.
        #[serde(default)]
        pinned: bool,
    },
    /// Sent on every new link after the hellos: the peers the sender knows
    /// and their addresses, so a joiner learns the cluster from any seed.
    Welcome {
        /// `(node id, address)` of every peer the sender knows.
        peers: Vec<(NodeId, Option<String>)>,
    },
    /// A shout, relayed hop by hop.
    Op(OpFrame),
    /// A shout a peer lacked, sent by anti-entropy rather than pushed down
    /// the broadcast tree: delivered and relayed as an op, but neither its
    /// arrival nor a copy that arrives later moves a tree link.
    Repair(OpFrame),
    /// A late joiner asks for an object's state; flooded like an op and
    /// answered along the reverse path.
    Fetch {
        /// The request's id (unique per requester).
        fetch: FetchId,
        /// The object asked for.
        object: ObjectKey,
    },
    /// A replica that made ops asks to be entered in an object's replica
    /// set (see [`Replica::admit`](super::replica::Replica::admit)):
    /// flooded like a fetch, and answered by the first member it reaches,
    /// along the reverse path.
    Admit {
        /// The request's id (unique per requester, shared with fetches).
        fetch: FetchId,
        /// The object.
        object: ObjectKey,
    },
    /// A member's answer to a [`Message::Admit`]: the requester's origin is
    /// in the replica set, entered with this clock.
    Admitted {
        /// The request answered.
        fetch: FetchId,
        /// The object.
        object: ObjectKey,
        /// The origin entered.
        origin: NodeId,
        /// The member's clock when it entered it.
        clock: u64,
    },
    /// A node that saw a member of an object's replica set gone for the
    /// eviction period, but is not a member itself (so may not evict),
    /// asks the members to: flooded like a fetch; each member that gets
    /// it evicts `origin` with its own cut (see
    /// [`Replica::evict_gone`](super::replica::Replica::evict_gone)).
    Evict {
        /// The notice's id (unique per sender, shared with fetches).
        fetch: FetchId,
        /// The object.
        object: ObjectKey,
        /// The member gone.
        origin: NodeId,
    },
    /// The answer to a [`Message::Fetch`].
    State {
        /// The request answered.
        fetch: FetchId,
        /// The object's state (boxed: a rare message need not make every
        /// message, ops included, as large as a state).
        state: Box<StateFrame>,
    },
    /// Raw application data (see [`Spread`](super::data::Spread)).
    Data(DataFrame),
    /// Anti-entropy: a summary of the sender's digests for the objects both
    /// ends hold (see [`anti_entropy`](super::anti_entropy)).
    Summary {
        /// A hash of the set of objects the sender holds.
        set: u64,
        /// A hash of the sender's digests of the objects both hold, as far
        /// as the sender knows the receiver's objects.
        root: u64,
    },
    /// Anti-entropy: the sender's digests of the objects it holds.
    Digest {
        /// One digest per object, in key order.
        objects: Vec<ObjectDigest>,
        /// Whether the receiver should answer with its own digests.
        reply: bool,
        /// Whether this is the first part of the sender's digests.
        first: bool,
        /// Whether this is the last part.
        last: bool,
    },
    /// Anti-entropy: the state of an object, for a replica that lacks ops
    /// the sender already folded into its snapshot.
    Snapshot(Box<StateFrame>),
    /// The broadcast tree's control messages (see
    /// [`dissemination`](super::dissemination)).
    Tree(TreeMsg),
    /// The failure detector's probes (see [`swim`](super::swim)).
    Probe(SwimMessage<NodeId>),
    /// The overlay's membership messages (see
    /// [`hyparview`](super::hyparview)).
    Overlay(super::hyparview::Message<NodeId>),
    /// Peer sampling's exchanges (see [`sampling`](super::sampling)).
    Sampling(super::sampling::Message<NodeId>),
    /// One piece of a state transfer too large for one message (see
    /// [`pieces`](super::pieces)).
    Piece(super::pieces::PieceFrame),
}

impl Message {
    /// A short name of the message's kind, for counters and logs.
    pub const fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Op(_) => "op",
            Message::Repair(_) => "repair",
            Message::Fetch { .. } => "fetch",
            Message::Admit { .. } => "admit",
            Message::Admitted { .. } => "admitted",
            Message::Evict { .. } => "evict",
            Message::State { .. } => "state",
            Message::Data(_) => "data",
            Message::Summary { .. } => "summary",
            Message::Digest { .. } => "digest",
            Message::Snapshot(_) => "snapshot",
            Message::Tree(TreeMsg::IHave(_)) => "ihave",
            Message::Tree(TreeMsg::Graft(_)) => "graft",
            Message::Tree(TreeMsg::Prune(_)) => "prune",
            Message::Tree(TreeMsg::Eager(_)) => "eager",
            Message::Tree(TreeMsg::Lazy(_)) => "lazy",
            Message::Probe(_) => "probe",
            Message::Overlay(_) => "overlay",
            Message::Sampling(_) => "sampling",
            Message::Piece(_) => "piece",
        }
    }
}

/// What one node holds of one object, for anti-entropy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDigest {
    /// The object.
    pub object: ObjectKey,
    /// Per origin, the highest seq the sender holds with no gap below.
    pub held: VersionVector,
    /// Runs the sender holds above `held` (ops that came by another path
    /// before the ones below them), at most [`ObjectDigest::MAX_ABOVE`]
    /// per object: a repair skips them.
    #[serde(default)]
    pub above: Vec<SeqRun>,
    /// The replica set's acknowledgements, as the sender knows them.
    pub acks: AckTable,
    /// When the object's digest is too large for one message, the origins
    /// this piece covers: `held`, `above` and `acks` hold only those, and
    /// an origin of the span missing from `held` is one the sender holds
    /// nothing of. `None`: the whole digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
}

impl ObjectDigest {
    /// The most runs above the contiguous prefix a digest names per object
    /// (the rest may be pushed again: harmless, only bytes).
    pub const MAX_ABOVE: usize = 64;
}

/// The origins one piece of a split [`ObjectDigest`] covers, and which
/// piece it is.
///
/// The pieces of one digest share `round`, are numbered `0..parts`, and
/// their spans cover every id from [`NodeId::MIN`] to [`NodeId::MAX`]
/// without overlap. A receiver repairs each piece as it comes, but merges
/// the acks only once it holds every piece of the round: a table missing a
/// member could let its stable frontier pass ops that member lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(NodeId, Option<NodeId>, u32, u16, u16)")]
#[serde(into = "(NodeId, Option<NodeId>, u32, u16, u16)")]
pub struct Span {
    /// The first origin covered.
    pub from: NodeId,
    /// The first origin past the span; `None`: through [`NodeId::MAX`].
    pub to: Option<NodeId>,
    /// Which of the sender's digests the piece belongs to.
    pub round: u32,
    /// The piece's number, from 0.
    pub part: u16,
    /// How many pieces the digest has.
    pub parts: u16,
}

impl Span {
    /// The most pieces one object's digest is split into.
    pub const MAX_PARTS: u16 = 1024;

    /// Whether `origin` is in the span.
    pub fn contains(&self, origin: &NodeId) -> bool {
        *origin >= self.from && self.to.is_none_or(|to| *origin < to)
    }

    /// Whether the span is well formed: a piece number under a count of at
    /// most [`MAX_PARTS`](Self::MAX_PARTS), and a non-empty range.
    pub fn is_valid(&self) -> bool {
        self.parts > 0
            && self.parts <= Self::MAX_PARTS
            && self.part < self.parts
            && self.to.is_none_or(|to| to > self.from)
    }
}

impl From<(NodeId, Option<NodeId>, u32, u16, u16)> for Span {
    fn from((from, to, round, part, parts): (NodeId, Option<NodeId>, u32, u16, u16)) -> Self {
        Self {
            from,
            to,
            round,
            part,
            parts,
        }
    }
}

impl From<Span> for (NodeId, Option<NodeId>, u32, u16, u16) {
    fn from(s: Span) -> Self {
        (s.from, s.to, s.round, s.part, s.parts)
    }
}

/// A shout on the wire: the object, the op id, and the op's encoded call.
///
/// The payload stays opaque to repeaters, so a node relays ops of types it
/// does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpFrame {
    /// The object the op is on.
    pub object: ObjectKey,
    /// The op's id.
    pub id: OpId,
    /// The op's encoded call (CBOR of the type's op enum).
    pub payload: Bytes,
}

/// The id of a fetch: the requester and its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FetchId {
    /// The node that asked.
    pub requester: NodeId,
    /// The requester's counter.
    pub n: u64,
}

/// A replica's exported state, encoded: what a late joiner starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFrame {
    /// The object.
    pub object: ObjectKey,
    /// CBOR of the stable snapshot.
    #[serde(with = "serde_bytes")]
    pub stable: Vec<u8>,
    /// The stable frontier.
    pub frontier: Option<OpId>,
    /// Per origin, the highest seq folded into the snapshot.
    pub folded: VersionVector,
    /// The tentative ops, in order, payloads encoded as in [`OpFrame`].
    pub tentative: Vec<TentativeOp>,
    /// The exporter's Lamport clock for the object.
    pub lamport: u64,
    /// The replica set's acknowledgements, as the exporter knew them.
    pub acks: AckTable,
}

/// One tentative op inside a [`StateFrame`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TentativeOp {
    /// The op's id.
    pub id: OpId,
    /// The op's encoded call.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Why a frame could not be decoded. Nothing was changed by the attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is empty: not even a version byte.
    #[error("empty frame")]
    Empty,
    /// The frame is larger than the configured maximum.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    Oversize {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte names a version this build does not speak.
    #[error("unknown wire version {found} (this build speaks {WIRE_VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The body is not valid CBOR for the expected type.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded (`message`, `op`, `state`).
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// Bytes were left over after the body.
    #[error("{extra} trailing bytes after the {what}")]
    Trailing {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value's `Serialize` impl failed.
    #[error("could not encode {what}: {reason}")]
    Serialize {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's complaint.
        reason: String,
    },
    /// The encoded frame is larger than the configured maximum.
    #[error("encoded {what} is {len} bytes, over the {max}-byte limit")]
    Oversize {
        /// What was being encoded.
        what: &'static str,
        /// Its encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The first item of a frame's array: what the frame holds.
const KIND_SERDE: u64 = 1;
pub(crate) const KIND_OP: u64 = 2;
pub(crate) const KIND_REPAIR: u64 = 3;
/// An op on the object and origin of the stream's last op frame (see
/// [`short`](super::short)).
pub(crate) const KIND_SHORT_OP: u64 = 4;
/// The length of an op frame's array.
pub(crate) const OP_ITEMS: u64 = 7;
/// The length of a short op frame's array.
pub(crate) const SHORT_OP_ITEMS: u64 = 4;

impl Message {
    /// Encode as a frame: the version byte, then CBOR. Fails if the frame
    /// would be over `max_frame` bytes.
    pub fn encode(&self, max_frame: usize) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out, max_frame)?;
        Ok(out)
    }

    /// Append the frame to `out` (see [`Message::encode`]). On error `out`
    /// is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>, max_frame: usize) -> Result<(), EncodeError> {
        let start = out.len();
        out.push(WIRE_VERSION);
        let body = match self {
            Message::Op(frame) => {
                frame.encode_body(out, KIND_OP);
                Ok(())
            }
            Message::Repair(frame) => {
                frame.encode_body(out, KIND_REPAIR);
                Ok(())
            }
            other => {
                cbor::write_head(out, cbor::ARRAY, 2);
                cbor::write_head(out, cbor::UINT, KIND_SERDE);
                encode_into(other, out, "message")
            }
        };
        let len = out.len() - start;
        let result = body.and(if len > max_frame {
            Err(EncodeError::Oversize {
                what: "message",
                len,
                max: max_frame,
            })
        } else {
            Ok(())
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Decode a frame made by [`Message::encode`].
    pub fn decode(frame: &[u8], max_frame: usize) -> Result<Self, DecodeError> {
        if frame.len() > max_frame {
            return Err(DecodeError::Oversize {
                len: frame.len(),
                max: max_frame,
            });
        }
        Decoder::new(max_frame).decode(&Bytes::copy_from_slice(frame))
    }
}

impl OpFrame {
    /// The most bytes a frame adds around an op's payload, its object key
    /// aside: the version byte, the array and kind, the string heads, and
    /// the largest possible [`OpId`].
    pub const MAX_OVERHEAD: usize = 1 + 1 + 1 + 9 + 9 + 9 + (2 + 32) + 9 + 9;

    /// The CBOR array of an op frame (after the version byte).
    fn encode_body(&self, out: &mut Vec<u8>, kind: u64) {
        out.reserve(64 + self.object.tag.len() + self.object.name.len() + self.payload.len());
        cbor::write_head(out, cbor::ARRAY, OP_ITEMS);
        cbor::write_head(out, cbor::UINT, kind);
        cbor::write_text(out, &self.object.tag);
        cbor::write_text(out, &self.object.name);
        cbor::write_head(out, cbor::UINT, self.id.lamport);
        cbor::write_bytes(out, self.id.origin.as_bytes());
        cbor::write_head(out, cbor::UINT, self.id.seq);
        cbor::write_bytes(out, &self.payload);
    }
}

/// Decodes the frames of one link.
///
/// It remembers the last object key it decoded, so a run of ops on the
/// same object (the common case) shares one key instead of allocating one
/// per frame.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: usize,
    last_key: Option<ObjectKey>,
    /// The origin of the last full op frame: with `last_key`, what a short
    /// op frame leaves out.
    last_origin: Option<NodeId>,
}

impl Decoder {
    /// A decoder refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            last_key: None,
            last_origin: None,
        }
    }

    /// Decode one frame. Byte strings in the result share `frame`'s memory.
    pub fn decode(&mut self, frame: &Bytes) -> Result<Message, DecodeError> {
        self.decode_in(frame, 0..frame.len())
    }

    /// Decode the frame at `at` in `block`, a buffer of several frames
    /// (a link's reader cuts a whole read at once: the frames then share
    /// one handle on the buffer, and each payload takes a reference of
    /// its own, instead of each frame too). Byte strings in the result
    /// share `block`'s memory. A range past the block's end is refused as
    /// truncated.
    pub fn decode_in(
        &mut self,
        block: &Bytes,
        at: std::ops::Range<usize>,
    ) -> Result<Message, DecodeError> {
        let len = at.end.saturating_sub(at.start);
        if len > self.max_frame {
            return Err(DecodeError::Oversize {
                len,
                max: self.max_frame,
            });
        }
        let frame = block
            .get(at.clone())
            .ok_or_else(|| DecodeError::Malformed {
                what: "message",
                reason: CborError::Truncated.to_string(),
            })?;
        let (&version, _) = frame.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnknownVersion { found: version });
        }
        let mut r = Reader::within(block, at.start + 1, at.end);
        let bad = |e: CborError| DecodeError::Malformed {
            what: "message",
            reason: e.to_string(),
        };
        let items = r.array().map_err(bad)?;
        let msg = match (r.uint().map_err(bad)?, items) {
            (KIND_OP, OP_ITEMS) => Message::Op(self.op_body(&mut r).map_err(bad)?),
            (KIND_REPAIR, OP_ITEMS) => Message::Repair(self.op_body(&mut r).map_err(bad)?),
            (KIND_SHORT_OP, SHORT_OP_ITEMS) => {
                let (Some(object), Some(origin)) = (self.last_key.clone(), self.last_origin) else {
                    return Err(DecodeError::Malformed {
                        what: "message",
                        reason: "a short op frame with no op frame before it".into(),
                    });
                };
                let lamport = r.uint().map_err(bad)?;
                let seq = r.uint().map_err(bad)?;
                let id = OpId {
                    lamport,
                    origin,
                    seq,
                };
                Message::Op(op_frame(object, id, r.bytes().map_err(bad)?))
            }
            (KIND_SERDE, 2) => {
                let pos = r.position();
                return decode_exact(&block[pos..at.end], "message");
            }
            (kind, items) => {
                return Err(DecodeError::Malformed {
                    what: "message",
                    reason: format!("unknown frame kind {kind} with {items} items"),
                })
            }
        };
        if r.remaining() > 0 {
            return Err(DecodeError::Trailing {
                what: "message",
                extra: r.remaining(),
            });
        }
        Ok(msg)
    }

    fn op_body(&mut self, r: &mut Reader<'_>) -> Result<OpFrame, CborError> {
        let tag = r.text_raw()?;
        let name = r.text_raw()?;
        // Ops come in runs on one object: the same bytes as the last key
        // are that key, already checked.
        let object = match &self.last_key {
            Some(k) if k.tag.as_bytes() == tag && k.name.as_bytes() == name => k.clone(),
            _ => {
                let k = ObjectKey::new(cbor::utf8(tag)?, cbor::utf8(name)?);
                self.last_key = Some(k.clone());
                k
            }
        };
        let lamport = r.uint()?;
        let origin = NodeId::from_bytes(r.bytes_n::<32>()?);
        self.last_origin = Some(origin);
        let seq = r.uint()?;
        let id = OpId {
            lamport,
            origin,
            seq,
        };
        Ok(op_frame(object, id, r.bytes()?))
    }
}

fn op_frame(object: ObjectKey, id: OpId, payload: Bytes) -> OpFrame {
    OpFrame {
        object,
        id,
        payload,
    }
}

/// How deep containers may nest in a decoded value (the serde decoder
/// recurses once per level; deeper input from a peer is refused rather than
/// allowed to exhaust the stack).
pub const MAX_NESTING: usize = 256;

/// CBOR-encode `value`, appending to `out`.
///
/// Values go through `minicbor-serde`: plain definite-length CBOR (RFC
/// 8949), decoded about five times faster than with `ciborium`, which
/// zeroes a 4 KiB scratch buffer on every call (measured in `quicbench`'s
/// codec line: a 64-byte op payload decoded in about 60 ns instead of 300).
pub fn encode_into<V: Serialize + ?Sized>(
    value: &V,
    out: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), EncodeError> {
    value
        .serialize(&mut minicbor_serde::Serializer::new(&mut *out))
        .map_err(|e| EncodeError::Serialize {
            what,
            reason: e.to_string(),
        })
}

/// CBOR-encode `value` into a new buffer.
pub fn encode_value<V: Serialize + ?Sized>(
    value: &V,
    what: &'static str,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out, what)?;
    Ok(out)
}

/// Decode exactly one CBOR value from `bytes`; trailing bytes, and
/// containers nested deeper than [`MAX_NESTING`], are errors.
pub fn decode_exact<V: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<V, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed { what, reason };
    // Every level of nesting takes at least one byte: a value no longer
    // than the limit cannot pass it, and most ops are that short.
    if bytes.len() > MAX_NESTING {
        cbor::check_nesting(bytes, MAX_NESTING).map_err(|e| malformed(e.to_string()))?;
    }
    let mut de = minicbor_serde::Deserializer::new(bytes);
    let value = V::deserialize(&mut de).map_err(|e| malformed(e.to_string()))?;
    let extra = bytes.len().saturating_sub(de.decoder().position());
    if extra > 0 {
        return Err(DecodeError::Trailing { what, extra });
    }
    Ok(value)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
