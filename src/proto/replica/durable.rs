//! Holding back what is not durable yet (the write-ahead rule).
//!
//! A node with a store writes every op it applies to its log, in the order
//! it applies them, and commits in batches. Until an op is committed, a
//! crash would lose it, so nothing may leave the node that a restart from
//! the store could contradict:
//!
//! * **Its own ops** with a seq above the highest own seq committed are not
//!   shared: not in digests, repairs, grafts or state exports. Were one
//!   shared and then lost, the restarted node would give its seq to a new
//!   op, and the replicas would hold two ops under one id.
//! * **Its acknowledgement** says no more than the store could say after a
//!   restart: `clock` is at most the highest Lamport time committed (a
//!   restarted replica's clock starts there) and below every op still
//!   pending; `seq` is at most the highest own seq committed; `complete`,
//!   bounded by `clock`, covers only committed ops. So no peer folds an op
//!   this node could lose, and no op this node makes after a restart sorts
//!   below a frontier a peer already passed.
//!
//! Ops from peers are shared at once: their origin holds them.
//!
//! The driver tells the replica what it logged ([`Replica::shout`] and
//! [`Replica::apply`] note each new op themselves; [`Replica::note_snapshot`]
//! notes a whole state written) and what got committed
//! ([`Replica::committed`]), in the order it logged them.

use std::collections::{BTreeMap, VecDeque};

use super::super::id::{NodeId, OpId};
use super::super::replicated::Replicated;
use super::super::version::VersionVector;
use super::Replica;

/// What the store was handed and has not committed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// One op, as applied.
    Op(OpId),
    /// One of this replica's own ops logged under an id it no longer has
    /// (re-stamped on admission): its commit makes nothing of its own
    /// durable, since a restart takes it for a provisional op again.
    Restamped(OpId),
    /// The whole state: its Lamport clock, and this replica's origin and
    /// highest own seq then.
    State { lamport: u64, me: NodeId, seq: u64 },
}

/// The write-ahead state of a replica (see the module doc).
#[derive(Clone, Debug)]
pub(super) struct Gate {
    pending: VecDeque<Pending>,
    /// The Lamport times of the pending ops (a multiset): a pending state
    /// counts as time 0, since it may hold ops of any time.
    times: BTreeMap<u64, u32>,
    /// The highest own seq committed, of the origin `me` had then.
    own: (NodeId, u64),
    /// The highest Lamport time committed.
    lamport: u64,
}

impl Gate {
    fn push(&mut self, pending: Pending, time: u64) {
        self.pending.push_back(pending);
        *self.times.entry(time).or_insert(0) += 1;
    }

    fn forget_time(&mut self, time: u64) {
        if let Some(n) = self.times.get_mut(&time) {
            *n -= 1;
            if *n == 0 {
                self.times.remove(&time);
            }
        }
    }

    /// The highest own seq that may leave the node, for origin `me`.
    fn own_limit(&self, me: NodeId) -> u64 {
        if self.own.0 == me {
            self.own.1
        } else {
            0
        }
    }

    /// The most this replica's ack may say of its clock.
    fn clock_limit(&self) -> u64 {
        let below_pending = self
            .times
            .keys()
            .next()
            .map_or(u64::MAX, |t| t.saturating_sub(1));
        self.lamport.min(below_pending)
    }
}

impl<T: Replicated> Replica<T> {
    /// Start holding back what is not durable: from now on every op this
    /// replica applies is taken as written to a log but not committed until
    /// [`committed`](Self::committed) says so (see the module doc). What it
    /// holds now counts as committed. Calling it again changes nothing.
    pub fn hold_until_durable(&mut self) {
        if self.gate.is_none() {
            self.gate = Some(Gate {
                pending: VecDeque::new(),
                times: BTreeMap::new(),
                own: (self.me, self.next_seq - 1),
                lamport: self.clock.now(),
            });
            self.revision += 1;
        }
    }

    /// Whether this replica holds back what is not durable.
    pub const fn holds_until_durable(&self) -> bool {
        self.gate.is_some()
    }

    /// How many logged items (ops and states) wait to be committed.
    pub fn pending_durable(&self) -> usize {
        self.gate.as_ref().map_or(0, |g| g.pending.len())
    }

    /// The whole state was written to the log (after every op noted so
    /// far): until it is committed, this replica's ack does not grow.
    pub fn note_snapshot(&mut self) {
        let (lamport, me, seq) = (self.clock.now(), self.me, self.next_seq - 1);
        if let Some(gate) = &mut self.gate {
            gate.push(Pending::State { lamport, me, seq }, 0);
        }
    }

    /// Note an op just applied (by [`shout`](Self::shout) or
    /// [`apply`](Self::apply)).
    pub(super) fn note_op(&mut self, id: OpId) {
        if let Some(gate) = &mut self.gate {
            gate.push(Pending::Op(id), id.lamport);
        }
    }

    /// The first `n` items noted are committed (in the order noted).
    pub fn committed(&mut self, n: usize) {
        let me = self.me;
        let Some(gate) = &mut self.gate else {
            return;
        };
        for _ in 0..n {
            let Some(item) = gate.pending.pop_front() else {
                break;
            };
            match item {
                Pending::Restamped(id) => {
                    gate.forget_time(id.lamport);
                    gate.lamport = gate.lamport.max(id.lamport);
                }
                Pending::Op(id) => {
                    gate.forget_time(id.lamport);
                    gate.lamport = gate.lamport.max(id.lamport);
                    if id.origin == me {
                        let own = gate.own_limit(me).max(id.seq);
                        gate.own = (me, own);
                    }
                }
                Pending::State {
                    lamport,
                    me: then,
                    seq,
                } => {
                    gate.forget_time(0);
                    gate.lamport = gate.lamport.max(lamport);
                    if then == me {
                        let own = gate.own_limit(me).max(seq);
                        gate.own = (me, own);
                    }
                }
            }
        }
        self.revision += 1;
    }

    /// Whether op `id` may leave the node as far as durability goes: not
    /// one of this replica's own ops above the highest committed.
    pub(super) fn is_durable(&self, id: &OpId) -> bool {
        match &self.gate {
            Some(gate) if id.origin == self.me => id.seq <= gate.own_limit(self.me),
            _ => true,
        }
    }

    /// The version vector a digest may show:
    /// [`version_vector`](Self::version_vector), this replica's own entry
    /// cut to what is durable.
    pub fn shared_version_vector(&self) -> VersionVector {
        let mut vv = self.seen.version_vector();
        if let Some(gate) = &self.gate {
            let limit = gate.own_limit(self.me);
            if let Some(own) = vv.0.get_mut(&self.me) {
                *own = (*own).min(limit);
                if *own == 0 {
                    vv.0.remove(&self.me);
                }
            }
        }
        vv
    }

    /// What this replica's ack may say: `(clock, seq)` cut to what is
    /// durable.
    pub(super) fn durable_ack_bounds(&self, clock: u64, seq: u64) -> (u64, u64) {
        match &self.gate {
            Some(gate) => (
                clock.min(gate.clock_limit()),
                seq.min(gate.own_limit(self.me)),
            ),
            None => (clock, seq),
        }
    }

    /// Own ops from `seq` on changed (re-stamped): hold them back again
    /// until a whole state written after the change is committed (the op
    /// log holds their old ids).
    pub(super) fn hold_own_from(&mut self, seq: u64) {
        let me = self.me;
        if let Some(gate) = &mut self.gate {
            let own = gate.own_limit(me).min(seq.saturating_sub(1));
            gate.own = (me, own);
            // Their old ids, still to be committed, no longer count.
            for item in &mut gate.pending {
                if let Pending::Op(id) = *item {
                    if id.origin == me && id.seq >= seq {
                        *item = Pending::Restamped(id);
                    }
                }
            }
            self.revision += 1;
        }
    }

    /// Carry the write-ahead state over to a rebuilt replica.
    pub(super) fn take_gate(&mut self) -> Option<Gate> {
        self.gate.take()
    }
}

#[cfg(all(test, feature = "sim"))]
#[path = "durable_tests.rs"]
mod tests;
