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
}

impl StateRecord {
    pub(crate) fn encode(pos: u64, frame: &StateFrame) -> Result<Vec<u8>, String> {
        let body = encode_value(frame, "state").map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&pos.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8], object: &ObjectKey) -> Result<Self, String> {
        let (pos, body) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("{} bytes, too short for a state", bytes.len()))?;
        let frame: StateFrame = decode_exact(body, "state").map_err(|e| e.to_string())?;
        if frame.object != *object {
            return Err(format!("it holds the state of {}", frame.object));
        }
        Ok(Self {
            pos: u64::from_be_bytes(*pos),
            frame,
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
}
