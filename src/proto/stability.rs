//! When an op becomes stable: the acknowledgement table of a replica set.
//!
//! An op is **stable** once no op ordered before it can still arrive. The
//! **members** of an object's replica set are the origins that may make
//! ops: the replica that created the object and every node that wrote to
//! it. A node that only reads the object is not a member; its first op
//! makes it one (see **Admission** below). So a table has one entry per
//! writer, not per node holding the object: at 10,000 nodes with 20
//! writers, 20 entries.
//!
//! Each member `m` reports an [`Ack`] about itself, spread by anti-entropy
//! digests and merged field by field (each field only grows at its member,
//! so the merge of two reports is the newer one):
//!
//! * `clock`, `seq`: `m`'s Lamport clock and its own highest seq, read
//!   together. Every op `m` made with Lamport time at most `clock` has a seq
//!   at most `seq`, and every op `m` makes later has a Lamport time above
//!   `clock`.
//! * `complete`: `m` holds every op of the object whose Lamport time is at
//!   most `complete`.
//!
//! Every node (member or not) computes its own `complete` from the table:
//! for each member `k`, if it holds `k`'s ops contiguously up to `k`'s
//! reported `seq`, it holds every op of `k` up to `k`'s reported `clock`;
//! otherwise it holds `k`'s ops up to the Lamport time of the top of its
//! contiguous prefix from `k`. `complete` is the minimum over `k`. The
//! **stable frontier** is the minimum `complete` over the live members:
//! every member holds every op at or below it, and no op at or below it can
//! be made any more. A member folds the ops at or below it into the
//! snapshot; a node outside the table folds up to the smaller of the
//! frontier and its own `complete`, so it never folds past an op it lacks.
//! A node outside the table does not hold the frontier back: one that lags
//! (or is down) catches up from ops still unfolded or, for ops every
//! member folded already, from a snapshot, as anti-entropy does for anyone.
//!
//! **Admission.** A node outside the table that makes an op keeps it
//! *provisional* (applied here, not relayed, not yet counted anywhere) and
//! asks a member to admit it. The member enters the node's origin with its
//! own clock `c` and `complete = 0`, and answers with `c`; the node then
//! re-stamps its provisional ops above `c` and relays them. This is safe:
//! every frontier computed without the new entry is at most the member's
//! `complete` reported before it, so at most `c`; and every report of that
//! member from then on carries the entry, which holds the frontier back
//! until the new member reports. Only a member may admit: a node outside
//! the table has no say in the frontier, so its clock bounds nothing.
//!
//! **Eviction.** A member gone for good would hold the frontier back
//! forever. A member that saw it down longer than
//! [`RepeaterConfig::evict_after`](super::node::RepeaterConfig::evict_after)
//! evicts it with a *cut*, the top of the member's ops it holds
//! contiguously: the member's ops up to the cut stay, later ones are void
//! everywhere (refused, and rolled back where they were applied). The
//! eviction spreads in the table; two evictions of one member merge to the
//! lower cut, which is safe because every op stable anywhere is at or
//! below each evicter's cut: each evicter is a member whose `complete`
//! bounds every frontier computed with its entry and has passed the clock
//! it was admitted with, which bounds every frontier computed before. A
//! node outside the table, or a new member still catching up, may lag
//! behind what was folded: it does not evict, but sends the members a
//! notice (see [`node`](super::node)). An evicted member no longer counts for
//! the frontier; every member still waits until it holds the evicted
//! member's ops up to the cut.
//!
//! **Restart epochs.** A node whose origin was evicted (it was partitioned
//! away, or down, for longer than the period) cannot go on with it: its
//! later ops are void. It takes the origin of its next *restart epoch*
//! ([`epoch_origin`]), re-stamps its own void ops under it, and asks for
//! admission as any new writer does (see
//! [`Replica`](super::replica::Replica)).
//!
//! **Limit.** A new writer needs a live member to admit it. If every member
//! of an object is gone for good at once (crashed and never back), no one
//! is left to evict them or admit anyone: new ops stay provisional on the
//! nodes that made them until a member returns.

use std::collections::BTreeMap;
use std::ops::Bound;

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

/// A member of a replica set that is no longer one: its ops after `cut`
/// are void everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u32)", into = "(u64, u32)")]
pub struct Eviction {
    /// The member's ops with a seq at most this stay; later ones are void.
    pub cut: u64,
    /// Unused, reserved (zero): a reason code for a later release.
    reserved: u32,
}

impl Eviction {
    /// An eviction keeping the member's ops up to `cut`.
    pub const fn new(cut: u64) -> Self {
        Self { cut, reserved: 0 }
    }
}

impl From<(u64, u32)> for Eviction {
    fn from((cut, reserved): (u64, u32)) -> Self {
        Self { cut, reserved }
    }
}

impl From<Eviction> for (u64, u32) {
    fn from(e: Eviction) -> Self {
        (e.cut, e.reserved)
    }
}

/// The acks of an object's replica set, by member, plus the members it
/// evicted and the restart epochs of the nodes that came back.
///
/// A member is an *origin*: the id its ops carry. A node's first origin on
/// an object is its node id; a node whose origin was evicted takes a new
/// one, [`epoch_origin`]`(node, epoch)`, recorded in `epochs` so its peers
/// know whose it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckTable {
    #[serde(rename = "a", deserialize_with = "bulk_map")]
    acks: BTreeMap<NodeId, Ack>,
    #[serde(rename = "e", default, skip_serializing_if = "BTreeMap::is_empty")]
    evicted: BTreeMap<NodeId, Eviction>,
    #[serde(rename = "n", default, skip_serializing_if = "BTreeMap::is_empty")]
    epochs: BTreeMap<NodeId, (NodeId, u32)>,
}

/// A map read into a vector first and built in bulk: a table has an entry
/// per member (thousands), and serde's own reader searches the tree for
/// each. Duplicate keys keep the last, as serde's does.
fn bulk_map<'de, D, K, V>(de: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    struct Entries<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> serde::de::Visitor<'de>
        for Entries<K, V>
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            // Capped: the length is the sender's word.
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries.into_iter().collect())
        }
    }
    de.deserialize_map(Entries(std::marker::PhantomData))
}

/// The origin a node takes on an object in its restart epoch `epoch`:
/// the node id itself for epoch 0, else a hash of both.
pub fn epoch_origin(node: NodeId, epoch: u32) -> NodeId {
    if epoch == 0 {
        return node;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"plexus/epoch");
    ctx.update(node.as_bytes());
    ctx.update(&epoch.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    NodeId::from_bytes(out)
}

impl AckTable {
    /// A table of these acks (no evictions).
    pub fn from_acks(acks: impl IntoIterator<Item = (NodeId, Ack)>) -> Self {
        Self {
            acks: acks.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Merge another table; returns whether anything changed. Evictions
    /// merge to the lowest cut (see [`evict`](Self::evict)), and an evicted
    /// member's acks are dropped.
    pub fn merge(&mut self, other: &AckTable) -> bool {
        let mut changed = false;
        for (origin, e) in &other.evicted {
            changed |= self.evict(*origin, e.cut);
        }
        for (origin, owner) in &other.epochs {
            if !self.epochs.contains_key(origin) {
                self.epochs.insert(*origin, *owner);
                changed = true;
            }
        }
        let evicted = |member: &NodeId| self.evicted.contains_key(member);
        if self.acks.is_empty() {
            // A first table (a digest's, a snapshot's): taken whole, which
            // builds the map in bulk from its sorted entries.
            let kept = other.acks.iter().filter(|(m, _)| !evicted(m));
            self.acks = kept.map(|(m, a)| (*m, *a)).collect();
            return changed || !self.acks.is_empty();
        }
        // Both maps are sorted: walk them side by side instead of looking
        // every member up (tables have one entry per member, thousands).
        let mut fresh = Vec::new();
        let mut mine = self.acks.iter_mut().peekable();
        for (member, ack) in &other.acks {
            if !self.evicted.is_empty() && self.evicted.contains_key(member) {
                continue;
            }
            while mine.next_if(|(m, _)| *m < member).is_some() {}
            match mine.next_if(|(m, _)| *m == member) {
                Some((_, held)) => changed |= held.merge(*ack),
                None => fresh.push((*member, *ack)),
            }
        }
        if !fresh.is_empty() {
            changed = true;
            if fresh.len() * 8 >= self.acks.len() {
                // Many new members (the pieces of a split digest, each a
                // range of its own): one linear merge of two sorted maps.
                let mut more: BTreeMap<NodeId, Ack> = fresh.into_iter().collect();
                self.acks.append(&mut more);
            } else {
                self.acks.extend(fresh);
            }
        }
        changed
    }

    /// Evict `origin`, keeping its ops up to `cut`; returns whether the
    /// table changed. Two evictions of the same origin merge to the lower
    /// cut: every op of it that is stable anywhere is at or below both
    /// (each evicter held it when it evicted), so nothing stable is undone.
    pub fn evict(&mut self, origin: NodeId, cut: u64) -> bool {
        let removed = self.acks.remove(&origin).is_some();
        match self.evicted.get_mut(&origin) {
            Some(e) if e.cut <= cut => removed,
            Some(e) => {
                e.cut = cut;
                true
            }
            None => {
                self.evicted.insert(origin, Eviction::new(cut));
                true
            }
        }
    }

    /// The eviction of `origin`, if it was evicted.
    pub fn eviction(&self, origin: &NodeId) -> Option<Eviction> {
        self.evicted.get(origin).copied()
    }

    /// Every evicted origin, with its eviction.
    pub fn evictions(&self) -> impl Iterator<Item = (NodeId, Eviction)> + '_ {
        self.evicted.iter().map(|(o, e)| (*o, *e))
    }

    /// The node that `origin` belongs to (itself, unless it is a later
    /// epoch's origin).
    pub fn owner(&self, origin: &NodeId) -> NodeId {
        self.epochs.get(origin).map_or(*origin, |(node, _)| *node)
    }

    /// The origin `node` takes now: that of its first epoch not evicted.
    /// Records the epoch when it is not the first.
    pub fn origin_for(&mut self, node: NodeId) -> NodeId {
        let mut epoch = 0;
        loop {
            let origin = epoch_origin(node, epoch);
            if !self.evicted.contains_key(&origin) {
                if epoch > 0 {
                    self.epochs.insert(origin, (node, epoch));
                }
                return origin;
            }
            epoch += 1;
        }
    }

    /// Make sure `member` has an entry (a zero one if new, which holds the
    /// frontier back until the member reports); returns whether it was new.
    /// An evicted member gets none.
    pub fn ensure(&mut self, member: NodeId) -> bool {
        if self.acks.contains_key(&member) || self.evicted.contains_key(&member) {
            return false;
        }
        self.acks.insert(member, Ack::default());
        true
    }

    /// Merge `ack` into `member`'s entry (made if missing, unless the member
    /// was evicted); returns whether it grew.
    pub fn report(&mut self, member: NodeId, ack: Ack) -> bool {
        if self.evicted.contains_key(&member) {
            return false;
        }
        match self.acks.get_mut(&member) {
            Some(mine) => mine.merge(ack),
            None => {
                self.acks.insert(member, ack);
                true
            }
        }
    }

    /// The ack of `member`, if any.
    pub fn get(&self, member: &NodeId) -> Option<Ack> {
        self.acks.get(member).copied()
    }

    /// Every live member with its ack.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Ack)> + '_ {
        self.acks.iter().map(|(m, a)| (*m, *a))
    }

    /// Every restart epoch recorded: `(origin, (node, epoch))`.
    pub fn epochs(&self) -> impl Iterator<Item = (NodeId, (NodeId, u32))> + '_ {
        self.epochs.iter().map(|(o, e)| (*o, *e))
    }

    /// The part of the table about the origins in `range`: their acks,
    /// evictions and epochs (as [`restricted`](Self::restricted), found by
    /// range instead of by testing every member).
    pub fn range(&self, range: (Bound<NodeId>, Bound<NodeId>)) -> AckTable {
        let copy = |m: &NodeId, a: &Ack| (*m, *a);
        AckTable {
            acks: self.acks.range(range).map(|(m, a)| copy(m, a)).collect(),
            evicted: self.evicted.range(range).map(|(o, e)| (*o, *e)).collect(),
            epochs: self.epochs.range(range).map(|(o, e)| (*o, *e)).collect(),
        }
    }

    /// The part of the table about the origins `keep` keeps: their acks,
    /// evictions and epochs.
    pub fn restricted(&self, keep: impl Fn(&NodeId) -> bool) -> AckTable {
        AckTable {
            acks: self
                .acks
                .iter()
                .filter(|(m, _)| keep(m))
                .map(|(m, a)| (*m, *a))
                .collect(),
            evicted: self
                .evicted
                .iter()
                .filter(|(o, _)| keep(o))
                .map(|(o, e)| (*o, *e))
                .collect(),
            epochs: self
                .epochs
                .iter()
                .filter(|(o, _)| keep(o))
                .map(|(o, e)| (*o, *e))
                .collect(),
        }
    }

    /// The number of live members.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    /// Whether no live member is known.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// The largest clock any member reported.
    pub fn max_clock(&self) -> u64 {
        self.acks.values().map(|a| a.clock).max().unwrap_or(0)
    }

    /// The Lamport time up to which `me`, which has seen `seen` and whose
    /// clock is `clock`, holds every op (see the module docs). An evicted
    /// origin bounds it until `me` holds its ops up to the cut.
    pub fn complete_at(&self, me: NodeId, clock: u64, seen: &SeenSet) -> u64 {
        let mut complete = clock;
        // Both maps are sorted by id: walk them side by side.
        let mut seen_iter = seen.iter().peekable();
        for (member, ack) in &self.acks {
            while seen_iter.next_if(|(o, _)| *o < member).is_some() {}
            let held = seen_iter
                .peek()
                .filter(|(o, _)| *o == member)
                .map(|(_, s)| *s);
            if *member == me {
                continue;
            }
            let contiguous = held.map_or(0, |s| s.contiguous());
            let bound = if contiguous >= ack.seq {
                ack.clock
            } else {
                held.map_or(0, |s| s.top_lamport())
            };
            complete = complete.min(bound);
        }
        for (origin, e) in &self.evicted {
            let held = seen.origin(origin);
            if held.map_or(0, |s| s.contiguous()) < e.cut {
                complete = complete.min(held.map_or(0, |s| s.top_lamport()));
            }
        }
        complete
    }

    /// The stable frontier: the smallest `complete` of any live member.
    /// `None` for an empty table.
    pub fn frontier(&self) -> Option<u64> {
        self.acks.values().map(|a| a.complete).min()
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
        table.report(id(2), Ack::from((9, 2, 0)));
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
        table.report(id(1), Ack::from((9, 1, 6)));
        table.report(id(2), Ack::from((9, 1, 4)));
        assert_eq!(table.frontier(), Some(4));
        let mut other = AckTable::default();
        other.report(id(2), Ack::from((9, 1, 8)));
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

    fn table(entries: &[(u8, (u8, u8, u8))], evicted: &[u8]) -> AckTable {
        let mut t = AckTable::default();
        for (m, (c, q, k)) in entries {
            t.report(
                id(u64::from(*m)),
                Ack::from((u64::from(*c), u64::from(*q), u64::from(*k))),
            );
        }
        for e in evicted {
            t.evict(id(u64::from(*e)), 1);
        }
        t
    }

    /// The merge that walks both tables side by side, as looking each
    /// member up did.
    fn merged_one_by_one(mut a: AckTable, b: &AckTable) -> (AckTable, bool) {
        let mut changed = false;
        for (origin, e) in &b.evicted {
            changed |= a.evict(*origin, e.cut);
        }
        for (member, ack) in &b.acks {
            if !a.evicted.contains_key(member) {
                changed |= a.report(*member, *ack);
            }
        }
        (a, changed)
    }

    proptest::proptest! {
        #[test]
        fn merging_side_by_side_equals_merging_one_by_one(
            a in proptest::collection::vec((0u8..40, (0u8..5, 0u8..5, 0u8..5)), 0..30),
            b in proptest::collection::vec((0u8..40, (0u8..5, 0u8..5, 0u8..5)), 0..30),
            ea in proptest::collection::vec(0u8..40, 0..3),
            eb in proptest::collection::vec(0u8..40, 0..3),
        ) {
            let (a, b) = (table(&a, &ea), table(&b, &eb));
            let (want, want_changed) = merged_one_by_one(a.clone(), &b);
            let mut got = a;
            let got_changed = got.merge(&b);
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(got_changed, want_changed);
        }
    }

    #[test]
    fn a_table_decodes_as_it_was_encoded() {
        let t = table(&[(3, (1, 2, 3)), (1, (4, 5, 6)), (2, (0, 0, 0))], &[7]);
        let mut out = Vec::new();
        ciborium::into_writer(&t, &mut out).expect("encodes");
        let back: AckTable = ciborium::from_reader(&out[..]).expect("decodes");
        assert_eq!(back, t);
    }
}
