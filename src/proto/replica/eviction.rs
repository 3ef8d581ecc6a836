//! Evicting members gone for good, and this replica's own restart epochs
//! (see [`stability`](crate::proto::stability)).

use super::super::id::{NodeId, OpId};
use super::super::replicated::Replicated;
use super::Replica;

/// Ops taken out of the log, in order, and where to replay from.
type Taken<T> = (Vec<(OpId, <T as Replicated>::Op)>, Option<OpId>);

impl<T: Replicated> Replica<T> {
    /// The node holding this replica. Its ops carry [`me`](Self::me): the
    /// node id itself, or the origin of a later restart epoch once an
    /// earlier one was evicted.
    pub const fn node(&self) -> NodeId {
        self.node
    }

    /// Whether this replica's origin is admitted: `false` from the moment
    /// it learns its origin was evicted until a peer's table shows the new
    /// one. Ops made meanwhile are provisional: applied here, relayed only
    /// once re-stamped (see [`take_restamped`](Self::take_restamped)).
    pub const fn is_admitted(&self) -> bool {
        self.admitted
    }

    /// Whether the op `id` may leave this node: every op but this replica's
    /// provisional ones.
    pub(super) fn is_shareable(&self, id: &OpId) -> bool {
        self.admitted || id.origin != self.me
    }

    /// The members (origins) of the replica set that belong to `node`.
    pub fn origins_of(&self, node: NodeId) -> Vec<NodeId> {
        self.acks
            .iter()
            .map(|(m, _)| m)
            .filter(|m| self.acks.owner(m) == node)
            .collect()
    }

    /// Evict every member (but this replica) that `gone` says is gone,
    /// each with the cut of the ops this replica holds of it contiguously;
    /// returns how many were evicted.
    pub fn evict_gone(&mut self, gone: impl Fn(NodeId) -> bool) -> usize {
        let members: Vec<NodeId> = self
            .acks
            .iter()
            .map(|(m, _)| m)
            .filter(|m| *m != self.me && gone(*m))
            .collect();
        for member in &members {
            let cut = self.seen.contiguous(member);
            self.acks.evict(*member, cut);
        }
        if !members.is_empty() {
            self.revision += 1;
            self.enforce_evictions();
        }
        members.len()
    }

    /// The ops re-stamped when this replica's new origin was admitted, in
    /// order, to relay as local ops (then forgotten here).
    pub fn take_restamped(&mut self) -> Vec<OpId> {
        std::mem::take(&mut self.restamped)
    }

    /// Whether ops wait in [`take_restamped`](Self::take_restamped).
    pub fn has_restamped(&self) -> bool {
        !self.restamped.is_empty()
    }

    /// Enforce every eviction of the table not enforced yet: void the ops
    /// after each cut; if this replica's own origin was evicted, move to
    /// its next restart epoch.
    pub(super) fn enforce_evictions(&mut self) {
        let due: Vec<(NodeId, u64)> = self
            .acks
            .evictions()
            .filter(|(o, e)| self.enforced.get(o).is_none_or(|c| e.cut < *c))
            .map(|(o, e)| (o, e.cut))
            .collect();
        for (origin, cut) in due {
            self.enforced.insert(origin, cut);
            let voided = self.void_after(origin, cut);
            if origin == self.me {
                self.next_epoch(voided);
            }
        }
    }

    /// Drop the ops of `origin` after `cut` from the log and from what was
    /// seen, rolling back and replaying if any was applied; returns them,
    /// in order.
    fn void_after(&mut self, origin: NodeId, cut: u64) -> Vec<T::Op> {
        let lamport = self
            .log
            .ids()
            .find(|id| id.origin == origin && id.seq == cut)
            .map_or_else(|| self.frontier.map_or(0, |f| f.lamport), |id| id.lamport);
        self.seen.truncate(&origin, cut, lamport);
        let Some((voided, after)) = self.take_ops(|id| id.origin == origin && id.seq > cut) else {
            return Vec::new();
        };
        let replayed = self.replay_after(after, |_, _, _| {});
        self.stats.rollbacks += 1;
        self.stats.replayed_ops += replayed as u64;
        self.revision += 1;
        voided.into_iter().map(|(_, op)| op).collect()
    }

    /// Remove the ops `which` picks from the log and rewind `current` to
    /// before the first of them; returns them, in order, and where to
    /// replay from (`None` if none was picked).
    fn take_ops(&mut self, which: impl Fn(&OpId) -> bool) -> Option<Taken<T>> {
        let ops = self.log.take_where(which);
        let first = ops.first()?.0;
        Some((ops, self.rewind_before(first)))
    }

    /// This replica's origin was evicted: take the node's next restart
    /// epoch, and make `voided` (its own ops after the cut) provisional ops
    /// of the new origin, so nothing acknowledged here is lost.
    fn next_epoch(&mut self, voided: Vec<T::Op>) {
        let origin = self.acks.origin_for(self.node);
        tracing::warn!(
            node = %self.node,
            old = %self.me,
            new = %origin,
            requeued = voided.len(),
            "this replica's origin was evicted (gone longer than the eviction period): \
             moving to a new restart epoch"
        );
        // Provisional ops still under the evicted origin (never sent) go too.
        let mut ops: Vec<T::Op> = Vec::new();
        let (me, admitted) = (self.me, self.admitted);
        if let Some((provisional, after)) = self.take_ops(|id| !admitted && id.origin == me) {
            ops.extend(provisional.into_iter().map(|(_, op)| op));
            self.replay_after(after, |_, _, _| {});
        }
        ops.extend(voided);
        self.me = origin;
        self.admitted = false;
        self.next_seq = self.seen.max_seq(&origin) + 1;
        self.acks.ensure(origin);
        self.push_provisional(ops);
        self.revision += 1;
    }

    /// Apply `ops` as provisional ops of this replica's origin, after
    /// everything seen (they never left the node: their ids are new).
    pub(super) fn push_provisional(&mut self, ops: Vec<T::Op>) {
        for op in ops {
            let id = OpId {
                lamport: self.clock.tick(),
                origin: self.me,
                seq: self.next_seq,
            };
            self.next_seq += 1;
            self.current.apply(&op);
            self.push_in_order(id, op);
        }
    }

    /// The ops made here while this replica's origin awaits admission, in
    /// order; `None` once it is admitted. [`export_all`](Self::export_all)
    /// leaves them out (they never leave the node as they are), so a store
    /// keeps them beside it: see
    /// [`resume_awaiting_admission`](Self::resume_awaiting_admission).
    pub fn provisional_ops(&self) -> Option<Vec<&T::Op>> {
        if self.admitted {
            return None;
        }
        Some(
            self.log
                .iter()
                .filter(|(id, _)| !self.is_shareable(id))
                .map(|(_, op)| op)
                .collect(),
        )
    }

    /// After a restart from a store written while this replica's origin
    /// awaited admission: await it again, with `ops` (what
    /// [`provisional_ops`](Self::provisional_ops) returned then, and the
    /// node's own ops logged after it, in order) applied after everything
    /// held, as provisional ops, exactly as when they were made. Nothing
    /// of them leaves the node until a peer's table shows this replica's
    /// origin; they are then re-stamped, as they would have been without
    /// the restart.
    pub fn resume_awaiting_admission(&mut self, ops: Vec<T::Op>) {
        self.admitted = false;
        self.acks.ensure(self.me);
        self.push_provisional(ops);
        self.revision += 1;
    }

    /// A peer's table showed this replica's new origin: it is admitted.
    /// Its provisional ops are re-stamped after `clock` (every frontier
    /// that passed without this origin is behind it), become ordinary
    /// ops, and wait to be relayed.
    pub(super) fn admit_self(&mut self, clock: u64) {
        self.clock.witness(clock);
        let me = self.me;
        if let Some((ops, after)) = self.take_ops(|id| id.origin == me) {
            if let Some((first, _)) = ops.first() {
                // Their ids change: not shared until the store has them.
                self.hold_own_from(first.seq);
            }
            for (old, op) in ops {
                let id = OpId {
                    lamport: self.clock.tick(),
                    origin: me,
                    seq: old.seq,
                };
                self.seen.insert_op(&id);
                self.log.insert(id, op);
                self.restamped.push(id);
            }
            self.replay_after(after, |_, _, _| {});
        }
        self.admitted = true;
        self.revision += 1;
    }
}
