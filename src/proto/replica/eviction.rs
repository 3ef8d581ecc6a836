//! Membership of this replica's replica set: admitting writers, evicting
//! members gone for good, and this replica's own restart epochs (see
//! [`stability`](crate::proto::stability)).

use super::super::id::{NodeId, OpId};
use super::super::replicated::Replicated;
use super::{Ack, Replica};

/// Ops taken out of the log, in order, and where to replay from.
type Taken<T> = (Vec<(OpId, <T as Replicated>::Op)>, Option<OpId>);

impl<T: Replicated> Replica<T> {
    /// The node holding this replica. Its ops carry [`me`](Self::me): the
    /// node id itself, or the origin of a later restart epoch once an
    /// earlier one was evicted.
    pub const fn node(&self) -> NodeId {
        self.node
    }

    /// Whether this replica's origin is a member of the replica set (in
    /// the acknowledgement table): `true` for the replica that created the
    /// object and for a node that wrote to it, `false` for one that only
    /// reads it, and from the moment a member learns its origin was
    /// evicted until a member admits the new one. Ops made while not
    /// admitted are provisional: applied here, relayed only once
    /// re-stamped (see [`take_restamped`](Self::take_restamped)).
    pub const fn is_admitted(&self) -> bool {
        self.admitted
    }

    /// Enter the node `member` in the replica set, at its request (it made
    /// ops and [`wants_admission`](Self::wants_admission)); only a member
    /// may, so `None` here otherwise. Returns the origin entered (that of
    /// the node's first restart epoch not evicted) and the clock it was
    /// entered with: the new member stamps its ops above it (see
    /// [`admitted_as`](Self::admitted_as)), and it holds the frontier back
    /// until it reports.
    ///
    /// Safe because every frontier computed without the new entry is at
    /// most this member's `complete` before it, so at most its clock now;
    /// and every report of this member from now on carries the entry. An
    /// origin already in the table keeps its entry (a clock raised after
    /// the member made ops would claim ops it has not reported).
    pub fn admit(&mut self, member: NodeId) -> Option<(NodeId, u64)> {
        if !self.admitted {
            return None;
        }
        let origin = self.acks.origin_for(member);
        if let Some(held) = self.acks.get(&origin) {
            return Some((origin, held.clock));
        }
        let ack = Ack {
            clock: self.clock.now(),
            seq: self.seen.max_seq(&origin),
            complete: 0,
        };
        self.acks.report(origin, ack);
        self.revision += 1;
        Some((origin, ack.clock))
    }

    /// Whether this replica's origin was evicted (it moved to a new
    /// restart epoch) and the new one is not admitted yet: this node was
    /// cut off, or down, for longer than the eviction period.
    pub fn awaits_readmission(&self) -> bool {
        !self.admitted && self.me != self.node
    }

    /// Whether provisional ops wait for a member to admit this replica's
    /// origin: the node should ask one (see [`admit`](Self::admit) and
    /// [`admitted_as`](Self::admitted_as)).
    pub const fn wants_admission(&self) -> bool {
        !self.admitted && self.awaiting
    }

    /// A member answered this replica's request: it entered `origin` in
    /// the replica set with clock `clock` (see [`admit`](Self::admit)).
    /// If `origin` is this replica's and not admitted yet, it is now: its
    /// entry goes in its own table, and its provisional ops are re-stamped
    /// above `clock`. Returns whether it was admitted.
    pub fn admitted_as(&mut self, origin: NodeId, clock: u64) -> bool {
        if self.admitted || origin != self.me || self.acks.eviction(&origin).is_some() {
            return false;
        }
        let ack = Ack {
            clock,
            seq: self.seen.max_seq(&origin),
            complete: 0,
        };
        self.acks.report(origin, ack);
        self.admit_self(clock);
        true
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

    /// Whether this replica may evict: it is a member, and holds every op
    /// up to the clock it was admitted with. Then every op stable anywhere
    /// is here: a frontier computed with this member's entry is at most its
    /// `complete`, and one computed before it is at most that clock. A
    /// replica outside the table, or a new member still catching up, may
    /// lack ops folded elsewhere, and its cut could void them.
    pub fn may_evict(&self) -> bool {
        self.admitted
            && self
                .acks
                .get(&self.me)
                .is_some_and(|a| a.complete >= self.admitted_at)
    }

    /// Evict every member (but this replica) that `gone` says is gone,
    /// each with the cut of the ops this replica holds of it contiguously;
    /// returns how many were evicted. Nothing unless this replica
    /// [`may_evict`](Self::may_evict).
    pub fn evict_gone(&mut self, gone: impl Fn(NodeId) -> bool) -> usize {
        if !self.may_evict() {
            return 0;
        }
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

    /// The ids of the ops waiting in [`take_restamped`](Self::take_restamped),
    /// in order.
    pub fn restamped_ids(&self) -> &[OpId] {
        &self.restamped
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
        self.awaiting = false;
        self.next_seq = self.seen.max_seq(&origin) + 1;
        self.push_provisional(ops);
        self.revision += 1;
    }

    /// Apply `ops` as provisional ops of this replica's origin, after
    /// everything seen (they never left the node: their ids are new).
    pub(super) fn push_provisional(&mut self, ops: Vec<T::Op>) {
        self.awaiting |= !ops.is_empty();
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
    /// of them leaves the node until a member admits this replica's
    /// origin (see [`wants_admission`](Self::wants_admission)); they are
    /// then re-stamped, as they would have been without the restart.
    pub fn resume_awaiting_admission(&mut self, ops: Vec<T::Op>) {
        self.admitted = false;
        self.push_provisional(ops);
        self.revision += 1;
    }

    /// A member admitted this replica's origin (its answer, or a table
    /// showing the origin: only a member enters one): it is admitted.
    /// Its provisional ops are re-stamped after `clock` (every frontier
    /// that passed without this origin is behind it), become ordinary
    /// ops, and wait to be relayed.
    pub(super) fn admit_self(&mut self, clock: u64) {
        self.clock.witness(clock);
        self.admitted_at = clock;
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
        self.awaiting = false;
        self.revision += 1;
    }
}
