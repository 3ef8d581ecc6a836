//! The versioned wire enum and its codec.
//!
//! A frame is one version byte followed by the CBOR encoding of a
//! [`Message`]. Every decoder here treats its input as untrusted: anything
//! malformed, oversize, or of an unknown version is a [`DecodeError`], never
//! a panic.

use serde::{Deserialize, Serialize};

use super::data::DataFrame;
use super::id::{NodeId, ObjectKey, OpId};
use super::version::VersionVector;

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;

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
    },
    /// Sent on every new link after the hellos: the peers the sender knows
    /// and their addresses, so a joiner learns the cluster from any seed.
    Welcome {
        /// `(node id, address)` of every peer the sender knows.
        peers: Vec<(NodeId, Option<String>)>,
    },
    /// A shout, relayed hop by hop.
    Op(OpFrame),
    /// A late joiner asks for an object's state; flooded like an op and
    /// answered along the reverse path.
    Fetch {
        /// The request's id (unique per requester).
        fetch: FetchId,
        /// The object asked for.
        object: ObjectKey,
    },
    /// The answer to a [`Message::Fetch`].
    State {
        /// The request answered.
        fetch: FetchId,
        /// The object's state.
        state: StateFrame,
    },
    /// Raw application data (see [`Spread`](super::data::Spread)).
    Data(DataFrame),
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
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
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

impl Message {
    /// Encode as a frame: the version byte, then CBOR. Fails if the frame
    /// would be over `max_frame` bytes.
    pub fn encode(&self, max_frame: usize) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.push(WIRE_VERSION);
        encode_into(self, &mut out, "message")?;
        if out.len() > max_frame {
            return Err(EncodeError::Oversize {
                what: "message",
                len: out.len(),
                max: max_frame,
            });
        }
        Ok(out)
    }

    /// Decode a frame made by [`Message::encode`].
    pub fn decode(frame: &[u8], max_frame: usize) -> Result<Self, DecodeError> {
        if frame.len() > max_frame {
            return Err(DecodeError::Oversize {
                len: frame.len(),
                max: max_frame,
            });
        }
        let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnknownVersion { found: version });
        }
        decode_exact(body, "message")
    }
}

/// CBOR-encode `value`, appending to `out`.
pub fn encode_into<V: Serialize + ?Sized>(
    value: &V,
    out: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), EncodeError> {
    ciborium::into_writer(value, &mut *out).map_err(|e| EncodeError::Serialize {
        what,
        reason: e.to_string(),
    })
}

/// CBOR-encode `value` into a new buffer.
pub fn encode_value<V: Serialize + ?Sized>(
    value: &V,
    what: &'static str,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(32);
    encode_into(value, &mut out, what)?;
    Ok(out)
}

/// Decode exactly one CBOR value from `bytes`; trailing bytes are an error.
pub fn decode_exact<V: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<V, DecodeError> {
    let mut rest = bytes;
    let value = ciborium::from_reader(&mut rest).map_err(|e| DecodeError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Message {
        Message::Op(OpFrame {
            object: ObjectKey::new("demo.Frog", "kermit"),
            id: OpId {
                lamport: 7,
                origin: NodeId::from_u64(3),
                seq: 2,
            },
            payload: vec![0x61, 0x61],
        })
    }

    #[test]
    fn messages_round_trip() {
        let frame = op()
            .encode(DEFAULT_MAX_FRAME)
            .expect("small message encodes");
        assert_eq!(frame[0], WIRE_VERSION);
        assert_eq!(
            Message::decode(&frame, DEFAULT_MAX_FRAME).expect("valid frame"),
            op()
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let frame = op()
            .encode(DEFAULT_MAX_FRAME)
            .expect("small message encodes");
        assert!(matches!(Message::decode(&[], 100), Err(DecodeError::Empty)));
        assert!(matches!(
            Message::decode(&frame, 4),
            Err(DecodeError::Oversize { max: 4, .. })
        ));
        let mut wrong_version = frame.clone();
        wrong_version[0] = 99;
        assert!(matches!(
            Message::decode(&wrong_version, DEFAULT_MAX_FRAME),
            Err(DecodeError::UnknownVersion { found: 99 })
        ));
        for cut in 1..frame.len() {
            assert!(
                Message::decode(&frame[..cut], DEFAULT_MAX_FRAME).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = frame;
        trailing.push(0);
        assert!(matches!(
            Message::decode(&trailing, DEFAULT_MAX_FRAME),
            Err(DecodeError::Trailing { .. })
        ));
    }

    #[test]
    fn oversize_messages_fail_to_encode() {
        assert!(matches!(
            op().encode(8),
            Err(EncodeError::Oversize { max: 8, .. })
        ));
    }
}
