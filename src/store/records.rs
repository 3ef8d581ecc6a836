//! The byte layout of the store's records, and its tables.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | a name | `format` (one byte, [`FORMAT`]), `node_id` (32 bytes) |
//! | `names` | `(type tag, object name)` | the object's number |
//! | `states` | object number | [`StateRecord`]: the log position it covers, then a CBOR [`StateFrame`] |
//! | `ops` | `(object number, log position)` | [`encode_op`]: Lamport time, origin, seq (big-endian), then the op's CBOR payload |
//! | `peers` | a peer's address | its node id (32 bytes) |
//!
//! Every value is checked when read; one that does not decode is reported
//! as [`StoreError::Corrupt`](super::StoreError::Corrupt), naming the table
//! and the key.

use bytes::Bytes;
use redb::TableDefinition;

use crate::proto::message::{decode_exact, encode_value, StateFrame};
use crate::proto::{NodeId, ObjectKey, OpId};

/// The layout version written to `meta` as `format`.
pub(super) const FORMAT: u8 = 1;

pub(super) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
pub(super) const NAMES: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("names");
pub(super) const STATES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("states");
pub(super) const OPS: TableDefinition<'_, (u64, u64), &[u8]> = TableDefinition::new("ops");
pub(super) const PEERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("peers");

/// Bytes before an op record's payload.
const OP_HEADER: usize = 8 + 32 + 8;

/// Encode an op for the `ops` table.
pub(super) fn encode_op(id: &OpId, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(OP_HEADER + payload.len());
    out.extend_from_slice(&id.lamport.to_be_bytes());
    out.extend_from_slice(id.origin.as_bytes());
    out.extend_from_slice(&id.seq.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Decode an op record; `None` when it is too short to hold an id.
pub(super) fn decode_op(bytes: &[u8]) -> Option<(OpId, Bytes)> {
    if bytes.len() < OP_HEADER {
        return None;
    }
    let lamport = u64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let origin = NodeId::from_bytes(bytes[8..40].try_into().ok()?);
    let seq = u64::from_be_bytes(bytes[40..48].try_into().ok()?);
    let payload = Bytes::copy_from_slice(&bytes[OP_HEADER..]);
    Some((
        OpId {
            lamport,
            origin,
            seq,
        },
        payload,
    ))
}

/// A whole state of an object, and the last log position it covers.
#[derive(Debug)]
pub(crate) struct StateRecord {
    /// Ops logged at or before this position are in the state.
    pub(crate) pos: u64,
    /// The state, as a late joiner would receive it.
    pub(crate) frame: StateFrame,
    /// When the replica's origin awaited admission as the state was
    /// written: the ops it had made meanwhile (CBOR payloads, in order),
    /// which the frame leaves out. `None` when it was admitted.
    pub(crate) provisional: Option<Vec<Vec<u8>>>,
}

/// The top bit of a state record's position: set when the record carries
/// provisional ops (`[pos | FLAG, frame length (u32), frame, ops]`); a
/// record without them is `[pos, frame]`, as the first stores wrote it.
const PROVISIONAL_FLAG: u64 = 1 << 63;

impl StateRecord {
    pub(crate) fn encode(
        pos: u64,
        frame: &StateFrame,
        provisional: Option<&[Vec<u8>]>,
    ) -> Result<Vec<u8>, String> {
        if pos & PROVISIONAL_FLAG != 0 {
            return Err(format!("log position {pos} is out of range"));
        }
        let body = encode_value(frame, "state").map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(12 + body.len());
        let Some(ops) = provisional else {
            out.extend_from_slice(&pos.to_be_bytes());
            out.extend_from_slice(&body);
            return Ok(out);
        };
        let len = u32::try_from(body.len()).map_err(|_| "state over 4 GiB".to_string())?;
        let ops: Vec<&serde_bytes::Bytes> =
            ops.iter().map(|op| serde_bytes::Bytes::new(op)).collect();
        let ops = encode_value(&ops, "provisional ops").map_err(|e| e.to_string())?;
        out.extend_from_slice(&(pos | PROVISIONAL_FLAG).to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&ops);
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8], object: &ObjectKey) -> Result<Self, String> {
        let (pos, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("{} bytes, too short for a state", bytes.len()))?;
        let pos = u64::from_be_bytes(*pos);
        let (body, provisional) = if pos & PROVISIONAL_FLAG == 0 {
            (rest, None)
        } else {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| "a state with provisional ops ends in its length".to_string())?;
            let len = u32::from_be_bytes(*len) as usize;
            if rest.len() < len {
                return Err(format!(
                    "a state of {len} bytes, but only {} follow",
                    rest.len()
                ));
            }
            let (body, ops) = rest.split_at(len);
            let ops: Vec<serde_bytes::ByteBuf> =
                decode_exact(ops, "provisional ops").map_err(|e| e.to_string())?;
            (
                body,
                Some(ops.into_iter().map(|op| op.into_vec()).collect()),
            )
        };
        let frame: StateFrame = decode_exact(body, "state").map_err(|e| e.to_string())?;
        if frame.object != *object {
            return Err(format!("it holds the state of {}", frame.object));
        }
        Ok(Self {
            pos: pos & !PROVISIONAL_FLAG,
            frame,
            provisional,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_record_round_trips_and_a_short_one_is_refused() {
        let id = OpId {
            lamport: 7,
            origin: NodeId::from_bytes([3; 32]),
            seq: 9,
        };
        let mut out = Vec::new();
        encode_op(&id, b"payload", &mut out);
        let (back, payload) = decode_op(&out).expect("decodes");
        assert_eq!(back, id);
        assert_eq!(&payload[..], b"payload");
        assert!(decode_op(&out[..OP_HEADER - 1]).is_none());
    }

    fn frame() -> StateFrame {
        StateFrame {
            object: ObjectKey::new("test.Doc", "doc"),
            stable: vec![1, 2, 3],
            frontier: None,
            folded: crate::proto::version::VersionVector::default(),
            tentative: Vec::new(),
            lamport: 7,
            acks: crate::proto::stability::AckTable::default(),
        }
    }

    #[test]
    fn a_state_record_round_trips_with_and_without_provisional_ops() {
        let key = ObjectKey::new("test.Doc", "doc");
        let plain = StateRecord::encode(42, &frame(), None).expect("encodes");
        let back = StateRecord::decode(&plain, &key).expect("decodes");
        assert_eq!(
            (back.pos, &back.frame, &back.provisional),
            (42, &frame(), &None)
        );
        // The first stores' layout: the position, then the frame.
        assert_eq!(&plain[..8], &42u64.to_be_bytes());

        let ops = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let with = StateRecord::encode(42, &frame(), Some(&ops)).expect("encodes");
        let back = StateRecord::decode(&with, &key).expect("decodes");
        assert_eq!((back.pos, &back.frame), (42, &frame()));
        assert_eq!(back.provisional, Some(ops.clone()));
        let none: Vec<Vec<u8>> = Vec::new();
        let empty = StateRecord::encode(5, &frame(), Some(&none)).expect("encodes");
        assert_eq!(
            StateRecord::decode(&empty, &key)
                .expect("decodes")
                .provisional,
            Some(none)
        );

        // Damaged records are refused, never misread.
        for cut in [4, 8, 10, 12, with.len() - 1] {
            assert!(
                StateRecord::decode(&with[..cut], &key).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = with.clone();
        long.push(0);
        assert!(StateRecord::decode(&long, &key).is_err());
        let other = ObjectKey::new("test.Doc", "other");
        assert!(StateRecord::decode(&with, &other).is_err());
        assert!(StateRecord::encode(PROVISIONAL_FLAG, &frame(), None).is_err());
    }
}
