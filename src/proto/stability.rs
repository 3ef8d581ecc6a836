//! When an op becomes stable: the acknowledgement table of a replica set.
//!
//! An op is **stable** once no op ordered before it can still arrive. Each
//! member `m` of an object's replica set reports an [`Ack`] about itself,
//! spread by anti-entropy digests and merged field by field (each field only
//! grows at its member, so the merge of two reports is the newer one):
//!
//! * `clock`, `seq`: `m`'s Lamport clock and its own highest seq, read
//!   together. Every op `m` made with Lamport time at most `clock` has a seq
//!   at most `seq`, and every op `m` makes later has a Lamport time above
//!   `clock`.
//! * `complete`: `m` holds every op of the object whose Lamport time is at
//!   most `complete`.
//!
//! A member computes its own `complete` from the table: for each member `k`,
//! if it holds `k`'s ops contiguously up to `k`'s reported `seq`, it holds
//! every op of `k` up to `k`'s reported `clock`; otherwise it holds `k`'s
//! ops up to the Lamport time of the top of its contiguous prefix from `k`.
//! `complete` is the minimum over `k`. The **stable frontier** is the
//! minimum `complete` over the live members: every member holds every op at
//! or below it, and no op at or below it can be made any more. Ops at or
//! below the frontier fold into the snapshot.
//!
//! Unknown members cannot break this: a node that joins through a state
//! transfer is entered in the exporter's table (with `complete = 0`) before
//! the state leaves, and any report that lets the frontier pass the
//! exporter's clock at that moment carries that entry with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::NodeId;
use super::version::SeenSet;

/// What one member of a replica set reported about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64, u64)", into = "(u64, u64, u64)")]
pub struct Ack {
    /// The member's Lamport clock for the object.
    pub clock: u64,
    /// The member's own highest seq, read with `clock`.
    pub seq: u64,
    /// The member holds every op with a Lamport time at most this.
    pub complete: u64,
}

impl Ack {
    /// Merge another report of the same member: field by field, the larger.
    /// Returns whether anything grew.
    pub fn merge(&mut self, other: Ack) -> bool {
        let before = *self;
        self.clock = self.clock.max(other.clock);
        self.seq = self.seq.max(other.seq);
        self.complete = self.complete.max(other.complete);
        *self != before
    }
}

impl From<(u64, u64, u64)> for Ack {
    fn from((clock, seq, complete): (u64, u64, u64)) -> Self {
        Self {
            clock,
            seq,
            complete,
        }
    }
}

impl From<Ack> for (u64, u64, u64) {
    fn from(a: Ack) -> Self {
        (a.clock, a.seq, a.complete)
    }
}

/// The acks of an object's replica set, by member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckTable(pub BTreeMap<NodeId, Ack>);

impl AckTable {
    /// Merge another table; returns whether anything changed.
    pub fn merge(&mut self, other: &AckTable) -> bool {
        let mut changed = false;
        for (member, ack) in &other.0 {
            match self.0.get_mut(member) {
                Some(mine) => changed |= mine.merge(*ack),
                None => {
                    self.0.insert(*member, *ack);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Make sure `member` has an entry (a zero one if new, which holds the
    /// frontier back until the member reports); returns whether it was new.
    pub fn ensure(&mut self, member: NodeId) -> bool {
        if self.0.contains_key(&member) {
            return false;
        }
        self.0.insert(member, Ack::default());
        true
    }

    /// The ack of `member`, if any.
    pub fn get(&self, member: &NodeId) -> Option<Ack> {
        self.0.get(member).copied()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no member is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The Lamport time up to which `me`, which has seen `seen` and whose
    /// clock is `clock`, holds every op (see the module docs).
    pub fn complete_at(&self, me: NodeId, clock: u64, seen: &SeenSet) -> u64 {
        let mut complete = clock;
        for (member, ack) in &self.0 {
            if *member == me {
                continue;
            }
            let held = seen.origin(member);
            let contiguous = held.map_or(0, |s| s.contiguous());
            let bound = if contiguous >= ack.seq {
                ack.clock
            } else {
                held.map_or(0, |s| s.top_lamport())
            };
            complete = complete.min(bound);
        }
        complete
    }

    /// The stable frontier: the smallest `complete` of any member. `None`
    /// for an empty table.
    pub fn frontier(&self) -> Option<u64> {
        self.0.values().map(|a| a.complete).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::OpId;

    fn id(n: u64) -> NodeId {
        NodeId::from_u64(n)
    }

    fn op(lamport: u64, origin: u64, seq: u64) -> OpId {
        OpId {
            lamport,
            origin: id(origin),
            seq,
        }
    }

    #[test]
    fn acks_merge_field_by_field() {
        let mut a = Ack::from((5, 2, 1));
        assert!(a.merge(Ack::from((4, 3, 1))));
        assert_eq!(a, Ack::from((5, 3, 1)));
        assert!(!a.merge(Ack::from((1, 1, 1))), "nothing grew");
    }

    #[test]
    fn complete_waits_for_every_members_reported_ops() {
        let me = id(1);
        let mut table = AckTable::default();
        // Member 2 made two ops, the second at Lamport 7, and its clock is 9.
        table.0.insert(id(2), Ack::from((9, 2, 0)));
        let mut seen = SeenSet::default();
        seen.insert_op(&op(3, 2, 1));
        // We lack member 2's second op: we hold its ops up to Lamport 3.
        assert_eq!(table.complete_at(me, 12, &seen), 3);
        seen.insert_op(&op(7, 2, 2));
        // Now every op member 2 made up to its clock 9 is here.
        assert_eq!(table.complete_at(me, 12, &seen), 9);
        // Our own clock bounds it too.
        assert_eq!(table.complete_at(me, 8, &seen), 8);
        // A member that never reported holds everything back.
        table.ensure(id(3));
        assert_eq!(table.complete_at(me, 12, &seen), 0);
    }

    #[test]
    fn the_frontier_is_the_least_complete_member() {
        let mut table = AckTable::default();
        assert_eq!(table.frontier(), None);
        table.0.insert(id(1), Ack::from((9, 1, 6)));
        table.0.insert(id(2), Ack::from((9, 1, 4)));
        assert_eq!(table.frontier(), Some(4));
        let mut other = AckTable::default();
        other.0.insert(id(2), Ack::from((9, 1, 8)));
        assert!(table.merge(&other));
        assert_eq!(table.frontier(), Some(6));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn acks_are_three_integers_on_the_wire() {
        let a = Ack::from((300, 2, 1));
        let mut out = Vec::new();
        ciborium::into_writer(&a, &mut out).expect("encodes");
        assert_eq!(out, vec![0x83, 0x19, 0x01, 0x2c, 0x02, 0x01]);
    }
}
