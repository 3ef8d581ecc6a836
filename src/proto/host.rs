//! The seam between the untyped node and typed replicas.
//!
//! The [`node`](super::node) relays ops as opaque frames; a [`Host`] is the
//! typed replica behind an object this node holds. The functions here turn
//! frames into typed ops and replica states and back; both the driver's
//! hosts and the harness's use them.

use super::id::{NodeId, ObjectKey, OpId};
use super::message::{
    decode_exact, encode_value, DecodeError, EncodeError, OpFrame, StateFrame, TentativeOp,
};
use super::replica::{Applied, ApplyError, Replica, ReplicaState};
use super::replicated::Replicated;

/// Why a host refused an op or could not export its state. The host's state
/// is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The payload is not a valid op of the object's type (a peer with a
    /// different version of the type, or a faulty peer).
    #[error("op on {object}: {source}")]
    Decode {
        /// The object.
        object: ObjectKey,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// The replica refused the op.
    #[error("op on {object}: {source}")]
    Apply {
        /// The object.
        object: ObjectKey,
        /// Why (boxed: it carries two op ids).
        #[source]
        source: Box<ApplyError>,
    },
    /// The state could not be encoded.
    #[error("state of {object}: {source}")]
    Encode {
        /// The object.
        object: ObjectKey,
        /// Why.
        #[source]
        source: EncodeError,
    },
}

/// A typed replica behind an object this node holds.
pub trait Host: Send {
    /// Decode and apply an op from a peer.
    fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError>;

    /// Export the state for a late joiner.
    fn export(&self) -> Result<StateFrame, HostError>;
}

/// Decode an op payload of type `T`.
pub fn decode_op<T: Replicated>(object: &ObjectKey, payload: &[u8]) -> Result<T::Op, HostError> {
    decode_exact(payload, "op").map_err(|source| HostError::Decode {
        object: object.clone(),
        source,
    })
}

/// Decode `frame` and apply it to `replica`; `on_applied` as in
/// [`Replica::apply`].
pub fn deliver_frame<T: Replicated>(
    replica: &mut Replica<T>,
    frame: &OpFrame,
    on_applied: impl FnOnce(&T, &T::Op, OpId),
) -> Result<Applied, HostError> {
    if replica.has_seen(&frame.id.origin, frame.id.seq) {
        // Skip decoding a duplicate; the replica would ignore it anyway.
        return Ok(Applied::Duplicate);
    }
    let op = decode_op::<T>(&frame.object, &frame.payload)?;
    replica
        .apply(frame.id, op, on_applied)
        .map_err(|source| HostError::Apply {
            object: frame.object.clone(),
            source: Box::new(source),
        })
}

/// Encode `replica`'s exported state as a [`StateFrame`].
pub fn export_frame<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
) -> Result<StateFrame, HostError> {
    let state = replica.export();
    let encode_err = |source| HostError::Encode {
        object: object.clone(),
        source,
    };
    let stable = encode_value(&state.stable, "state").map_err(encode_err)?;
    let tentative = state
        .tentative
        .iter()
        .map(|(id, op)| {
            Ok(TentativeOp {
                id: *id,
                payload: encode_value(op, "op")?,
            })
        })
        .collect::<Result<Vec<_>, EncodeError>>()
        .map_err(encode_err)?;
    Ok(StateFrame {
        object: object.clone(),
        stable,
        frontier: state.frontier,
        folded: state.folded,
        tentative,
        lamport: state.lamport,
    })
}

/// Build a replica held by `me` from a [`StateFrame`].
pub fn replica_from_frame<T: Replicated>(
    me: NodeId,
    frame: &StateFrame,
) -> Result<Replica<T>, DecodeError> {
    let stable: T = decode_exact(&frame.stable, "state")?;
    let tentative = frame
        .tentative
        .iter()
        .map(|t| Ok((t.id, decode_exact::<T::Op>(&t.payload, "op")?)))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Replica::from_state(
        me,
        ReplicaState {
            stable,
            frontier: frame.frontier,
            folded: frame.folded.clone(),
            tentative,
            lamport: frame.lamport,
        },
    ))
}
