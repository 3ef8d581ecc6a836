//! The seam between the untyped node and typed replicas.
//!
//! The [`node`](super::node) relays ops as opaque frames; a [`Host`] is the
//! typed replica behind an object this node holds. The functions here turn
//! frames into typed ops and replica states and back; both the driver's
//! hosts and the harness's use them.

use super::dissemination::SeqRun;
use super::id::{NodeId, ObjectKey, OpId};
use super::message::{
    decode_exact, encode_value, DecodeError, EncodeError, ObjectDigest, OpFrame, Span, StateFrame,
    TentativeOp,
};
use super::replica::{Applied, ApplyError, Replica, ReplicaState};
use super::replicated::Replicated;
use super::stability::AckTable;
use super::version::VersionVector;

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
    /// The host's store could not make the change durable first (a
    /// driver with a store only).
    #[error("{object}: {reason}")]
    Store {
        /// The object.
        object: ObjectKey,
        /// Why.
        reason: String,
    },
}

/// A typed replica behind an object this node holds.
pub trait Host: Send {
    /// Decode and apply an op from a peer.
    fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError>;

    /// Decode and apply ops from a peer, in order, appending one result
    /// per frame to `results`. The default delivers them one by one; a
    /// host behind a lock overrides it to take the lock once for the run.
    fn deliver_run(&mut self, frames: &[OpFrame], results: &mut Vec<Result<Applied, HostError>>) {
        results.extend(frames.iter().map(|frame| self.deliver(frame)));
    }

    /// Export the state for a late joiner (see [`Replica::export`]). The
    /// joiner is not entered in the replica set: it asks to be when it
    /// first makes ops (see [`admit`](Self::admit)).
    fn export(&mut self) -> Result<StateFrame, HostError>;

    /// Enter the node `node` in the replica set at its request (see
    /// [`Replica::admit`]): the origin entered and the clock it was
    /// entered with, or `None` when this replica is not a member itself.
    /// A host with a store makes the admission durable before answering:
    /// a restart that forgot it would fold ops on a replica set without
    /// the new member.
    fn admit(&mut self, node: NodeId) -> Result<Option<(NodeId, u64)>, HostError>;

    /// Whether the replica made ops while not a member and waits for a
    /// member to admit it (see [`Replica::wants_admission`]).
    fn wants_admission(&self) -> bool;

    /// Whether the replica may evict members gone for good (see
    /// [`Replica::may_evict`]): a member caught up with what was folded
    /// before it joined.
    fn may_evict(&self) -> bool;

    /// A member admitted `origin` with `clock` (see
    /// [`Replica::admitted_as`]); returns whether that admitted this
    /// replica, whose re-stamped ops then wait in
    /// [`take_restamped`](Self::take_restamped). A host with a store writes
    /// the re-stamped state before they leave.
    fn admitted_as(&mut self, origin: NodeId, clock: u64) -> bool;

    /// Bring the replica's own ack up to date and fold what became stable
    /// (see [`Replica::refresh`]); returns the replica's revision after.
    fn refresh(&mut self) -> u64;

    /// What this replica holds, for a digest (call [`refresh`](Self::refresh)
    /// first).
    fn digest(&self, object: &ObjectKey) -> ObjectDigest;

    /// A hash of what [`digest`](Self::digest) would say, minus the runs
    /// above the prefix (call [`refresh`](Self::refresh) first): equal
    /// digests hash alike on every node. Anti-entropy compares these in
    /// its summaries; implementations holding a [`Replica`] should use
    /// [`digest_hash_of`], which hashes in place instead of copying the
    /// acknowledgement table.
    fn digest_hash(&self, object: &ObjectKey) -> u64 {
        let digest = self.digest(object);
        hash_parts(&digest.held, &digest.acks)
    }

    /// Merge a peer's acks and fold what became stable.
    fn merge_acks(&mut self, acks: &AckTable);

    /// What a replica holding `held` (and the runs `above` it) lacks, of
    /// `origin`'s ops no later than
    /// `upto[origin]` (no limit for an origin `upto` does not name), of the
    /// origins in `span` only (all when `None`): at most about `budget`
    /// bytes of ops, or the snapshot when it lacks ops already folded here
    /// of an origin `upto` does not name (one whose ops stopped arriving
    /// there). `upto` is `None` for a peer's first digest: every op it
    /// lacks, and never a snapshot, since it is not known yet which
    /// origins stopped.
    fn repair(
        &self,
        held: &VersionVector,
        above: &[SeqRun],
        upto: Option<&VersionVector>,
        span: Option<&Span>,
        budget: usize,
    ) -> Result<Repair, HostError>;

    /// The ops of `runs` this replica still holds unfolded, in order, at
    /// most about `budget` bytes: the answer to a graft.
    fn ops_in(&self, runs: &[SeqRun], budget: usize) -> Result<Vec<OpFrame>, HostError>;

    /// Move onto a peer's newer snapshot (see [`Replica::rebase`]); `false`
    /// when it is not ahead of this replica.
    fn rebase(&mut self, state: &StateFrame) -> Result<bool, HostError>;

    /// Whether the replica's origin was evicted and its new one is not
    /// admitted yet (see [`Replica::awaits_readmission`]).
    fn awaits_admission(&self) -> bool;

    /// The members (origins) of the replica set that belong to `node`.
    fn origins_of(&self, node: NodeId) -> Vec<NodeId>;

    /// Evict every member (origin) of the replica set that `gone` says is
    /// gone (see [`Replica::evict_gone`]); returns how many were.
    fn evict_gone(&mut self, gone: &dyn Fn(NodeId) -> bool) -> usize;

    /// The ops re-stamped when the replica's new origin was admitted, as
    /// frames to relay like local ops (see [`Replica::take_restamped`]).
    fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError>;
}

/// What anti-entropy sends a peer that lacks ops.
#[derive(Debug)]
// A repair is built and consumed at once, never stored: boxing the
// snapshot would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Repair {
    /// These ops, in order (possibly not all it lacks: the rest next round).
    Ops(Vec<OpFrame>),
    /// The object's state: the peer lacks ops already folded here.
    Snapshot(StateFrame),
}

/// The digest of `replica` for anti-entropy.
pub fn digest_of<T: Replicated>(object: &ObjectKey, replica: &Replica<T>) -> ObjectDigest {
    ObjectDigest {
        object: object.clone(),
        held: replica.shared_version_vector(),
        above: replica
            .held_above(ObjectDigest::MAX_ABOVE)
            .into_iter()
            // Own ops are contiguous; with a store, the digest's own entry
            // says what is durable, and nothing above it may show.
            .filter(|(origin, _, _)| *origin != replica.me() || !replica.holds_until_durable())
            .map(SeqRun::from)
            .collect(),
        acks: replica.acks().clone(),
        span: None,
    }
}

/// The [`Host::digest_hash`] of `replica`.
pub fn digest_hash_of<T: Replicated>(replica: &Replica<T>) -> u64 {
    hash_parts(&replica.shared_version_vector(), replica.acks())
}

/// SHA-256 (its first 8 bytes) over what a digest holds and acknowledged,
/// written into one buffer first: a table has an entry per member, and
/// hashing thousands of small pieces one call each is slow.
fn hash_parts(held: &VersionVector, acks: &AckTable) -> u64 {
    let mut buf = Vec::with_capacity(40 * held.0.len() + 56 * acks.len() + 8);
    for (origin, seq) in &held.0 {
        buf.extend_from_slice(origin.as_bytes());
        buf.extend_from_slice(&seq.to_be_bytes());
    }
    buf.push(0xff);
    for (member, ack) in acks.iter() {
        buf.extend_from_slice(member.as_bytes());
        for n in [ack.clock, ack.seq, ack.complete] {
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
    // Evictions and epochs must spread: tables that differ only in them
    // must not hash alike.
    buf.push(0xfe);
    for (origin, e) in acks.evictions() {
        buf.extend_from_slice(origin.as_bytes());
        buf.extend_from_slice(&e.cut.to_be_bytes());
    }
    buf.push(0xfd);
    for (origin, (node, epoch)) in acks.epochs() {
        buf.extend_from_slice(origin.as_bytes());
        buf.extend_from_slice(node.as_bytes());
        buf.extend_from_slice(&epoch.to_be_bytes());
    }
    let hash = ring::digest::digest(&ring::digest::SHA256, &buf);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// What `replica` can send a peer holding `held` (see [`Host::repair`]).
pub fn repair_of<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
    held: &VersionVector,
    above: &[SeqRun],
    upto: Option<&VersionVector>,
    span: Option<&Span>,
    budget: usize,
) -> Result<Repair, HostError> {
    let in_span = |o: &NodeId| span.is_none_or(|s| s.contains(o));
    // A snapshot stands in for the ops it folded, and the peer's observers
    // never see those. So an origin still arriving at the peer (one `upto`
    // limits: its count there grew since the previous digest) gets none:
    // the peer lags only by the ops in flight to it, and they will come.
    // Only an origin whose ops stopped arriving there (a loss, a partition,
    // a late join) calls for one, and a first digest cannot tell which.
    let stalled = |o: &NodeId| in_span(o) && upto.is_some_and(|u| !u.0.contains_key(o));
    let limit = |o: &NodeId| upto.and_then(|u| u.0.get(o)).copied();
    if replica.needs_snapshot_of(held, stalled) {
        return export_frame(object, replica).map(Repair::Snapshot);
    }
    // An origin limited by `upto` to seqs the peer holds has nothing to
    // send. When every origin this replica is ahead on is one of those (as
    // under load, where anti-entropy limits each origin still arriving at
    // the peer to what it holds), the log is not walked.
    if replica
        .origins_ahead_of(held)
        .filter(in_span)
        .all(|o| limit(&o).is_some_and(|limit| limit <= held.get(&o)))
    {
        return Ok(Repair::Ops(Vec::new()));
    }
    let wanted = replica
        .ops_missing(held)
        .filter(|(id, _)| in_span(&id.origin))
        .filter(|(id, _)| limit(&id.origin).is_none_or(|limit| id.seq <= limit))
        .filter(|(id, _)| !above.iter().any(|r| r.contains(id)));
    frames(object, wanted, budget).map(Repair::Ops)
}

/// The ops of `runs` that `replica` holds unfolded, as frames (see
/// [`Host::ops_in`]).
pub fn ops_in<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
    runs: &[SeqRun],
    budget: usize,
) -> Result<Vec<OpFrame>, HostError> {
    if runs.iter().all(SeqRun::is_empty) {
        return Ok(Vec::new());
    }
    let wanted = replica
        .tentative_ops()
        .filter(|(id, _)| runs.iter().any(|r| r.contains(id)));
    frames(object, wanted, budget)
}

/// The ops `replica` re-stamped on admission, as frames (see
/// [`Host::take_restamped`]).
pub fn restamped_frames<T: Replicated>(
    object: &ObjectKey,
    replica: &mut Replica<T>,
) -> Result<Vec<OpFrame>, HostError> {
    if !replica.has_restamped() {
        return Ok(Vec::new());
    }
    let ids = replica.take_restamped();
    let wanted = replica
        .tentative_ops()
        .filter(|(id, _)| ids.binary_search(id).is_ok());
    frames(object, wanted, usize::MAX)
}

/// Encode `ops` of `object` as frames, stopping once about `budget` bytes
/// are taken.
fn frames<'a, O: serde::Serialize + 'a>(
    object: &ObjectKey,
    ops: impl Iterator<Item = (OpId, &'a O)>,
    budget: usize,
) -> Result<Vec<OpFrame>, HostError> {
    let mut frames = Vec::new();
    let mut bytes = 0;
    for (id, op) in ops {
        let payload = encode_value(op, "op").map_err(|source| HostError::Encode {
            object: object.clone(),
            source,
        })?;
        bytes += payload.len() + OpFrame::MAX_OVERHEAD + object.tag.len() + object.name.len();
        frames.push(OpFrame {
            object: object.clone(),
            id,
            payload: payload.into(),
        });
        if bytes >= budget {
            break;
        }
    }
    Ok(frames)
}

/// What a store keeps of a replica beside [`export_all_frame`]: the ops it
/// made while its origin awaits admission, encoded, in order
/// ([`Replica::provisional_ops`]); `None` when it is admitted.
pub fn provisional_payloads<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
) -> Result<Option<Vec<Vec<u8>>>, HostError> {
    let Some(ops) = replica.provisional_ops() else {
        return Ok(None);
    };
    ops.into_iter()
        .map(|op| {
            encode_value(op, "op").map_err(|source| HostError::Encode {
                object: object.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Rebuild a replica from what a store holds: the state `frame` (from
/// [`export_all_frame`]), the `provisional` ops written with it (from
/// [`provisional_payloads`]), then `ops`, the ops logged after it, in the
/// order they were logged.
///
/// When the state was written while the replica's origin awaited
/// admission (`provisional` is `Some`), that admission had not come
/// before the crash either (the driver writes the whole state again on
/// admission, before anything made after it is committed): the replica
/// awaits it again, and its own ops among `ops` are provisional ones, as
/// they were. Each op refused now (one that the state's evictions or
/// frontier made void since it was logged) goes to `refused`, as a peer's
/// would; a frame or payload that does not decode as `T` is an error.
pub fn restore_replica<T: Replicated>(
    me: NodeId,
    frame: &StateFrame,
    provisional: Option<&[Vec<u8>]>,
    ops: &[OpFrame],
    mut refused: impl FnMut(HostError),
) -> Result<Replica<T>, HostError> {
    let mut replica = replica_from_frame::<T>(me, frame).map_err(|source| HostError::Decode {
        object: frame.object.clone(),
        source,
    })?;
    let origin = replica.me();
    let mut own = Vec::new();
    if let Some(payloads) = provisional {
        for payload in payloads {
            own.push(decode_op::<T>(&frame.object, payload)?);
        }
    }
    for op in ops {
        if provisional.is_some() && op.id.origin == origin {
            own.push(decode_op::<T>(&op.object, &op.payload)?);
            continue;
        }
        match deliver_frame(&mut replica, op, |_, _, _| {}) {
            Ok(_) => {}
            Err(e @ HostError::Decode { .. }) => return Err(e),
            Err(e) => refused(e),
        }
    }
    if provisional.is_some() {
        replica.resume_awaiting_admission(own);
    }
    Ok(replica)
}

/// Decode `state` and [`rebase`](Replica::rebase) `replica` onto it.
pub fn rebase_onto<T: Replicated>(
    replica: &mut Replica<T>,
    state: &StateFrame,
) -> Result<bool, HostError> {
    let decoded = state_from_frame::<T>(state).map_err(|source| HostError::Decode {
        object: state.object.clone(),
        source,
    })?;
    Ok(replica.rebase(decoded))
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

/// Encode `replica`'s exported state as a [`StateFrame`] (what may leave
/// the node: see [`Replica::export`]).
pub fn export_frame<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
) -> Result<StateFrame, HostError> {
    frame_of_state(object, replica.export())
}

/// Encode everything `replica` holds as a [`StateFrame`], for the node's
/// own store (see [`Replica::export_all`]).
pub fn export_all_frame<T: Replicated>(
    object: &ObjectKey,
    replica: &Replica<T>,
) -> Result<StateFrame, HostError> {
    frame_of_state(object, replica.export_all())
}

fn frame_of_state<T: Replicated>(
    object: &ObjectKey,
    state: ReplicaState<T>,
) -> Result<StateFrame, HostError> {
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
        acks: state.acks,
    })
}

/// Build a replica held by `me` from a [`StateFrame`].
pub fn replica_from_frame<T: Replicated>(
    me: NodeId,
    frame: &StateFrame,
) -> Result<Replica<T>, DecodeError> {
    Ok(Replica::from_state(me, state_from_frame(frame)?))
}

/// Decode a [`StateFrame`].
fn state_from_frame<T: Replicated>(frame: &StateFrame) -> Result<ReplicaState<T>, DecodeError> {
    let stable: T = decode_exact(&frame.stable, "state")?;
    let tentative = frame
        .tentative
        .iter()
        .map(|t| Ok((t.id, decode_exact::<T::Op>(&t.payload, "op")?)))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(ReplicaState {
        stable,
        frontier: frame.frontier,
        folded: frame.folded.clone(),
        tentative,
        lamport: frame.lamport,
        acks: frame.acks.clone(),
    })
}
