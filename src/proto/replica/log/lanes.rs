//! The log's late part: late ops that commute, one sorted lane per origin.
//!
//! Under concurrent writers most ops arrive *late*: a peer's burst sorts
//! among this node's own ops, hundreds or thousands of places back. But
//! each origin's ops arrive in their own order (a link is a FIFO stream,
//! and an origin's Lamport time grows with its seq), so here they are kept
//! apart by origin:
//!
//! * an insert is a push onto the back of its origin's lane; only an op
//!   that overtakes an earlier one of its own origin (a repair filling a
//!   gap) lands inside its lane;
//! * a walk in order (a fold, an export) is a k-way merge of the lanes,
//!   through a heap keyed by `(lamport, lane, seq)`: the lanes are sorted
//!   by origin, so a lane's index orders as its origin does;
//! * folding pops the lanes' fronts, and drops the lanes it empties.
//!
//! A lane stores `(lamport, seq, op)`; the origin is the lane's, so an
//! entry is 32 bytes smaller than an `OpId` with its op.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::proto::id::{NodeId, OpId};

/// Late ops by origin, each id at most once.
#[derive(Clone, Debug)]
pub(in crate::proto::replica) struct Lanes<O> {
    /// One lane per origin that has ops here, sorted by origin; none is
    /// empty between calls.
    lanes: Vec<Lane<O>>,
    /// The lane of the last insert: a burst comes one origin at a time.
    hint: usize,
    len: usize,
    /// The largest id, `None` when the log is empty.
    last: Option<OpId>,
}

/// One origin's ops, sorted by `(lamport, seq)`.
#[derive(Clone, Debug)]
struct Lane<O> {
    origin: NodeId,
    ops: VecDeque<Entry<O>>,
}

#[derive(Clone, Debug)]
struct Entry<O> {
    lamport: u64,
    seq: u64,
    op: O,
}

impl<O> Lane<O> {
    fn id(&self, e: &Entry<O>) -> OpId {
        OpId {
            lamport: e.lamport,
            origin: self.origin,
            seq: e.seq,
        }
    }
}

/// A lane's next entry in a merge: `(lamport, lane, seq, position)`. The
/// first three order as the entry's `OpId` does (lanes are sorted by
/// origin); the position finds it.
type Head = Reverse<(u64, usize, u64, usize)>;

impl<O> Default for Lanes<O> {
    fn default() -> Self {
        Self {
            lanes: Vec::new(),
            hint: 0,
            len: 0,
            last: None,
        }
    }
}

impl<O> Lanes<O> {
    /// How many ops the log holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The largest id in the log.
    pub(super) fn last_id(&self) -> Option<OpId> {
        self.last
    }

    /// Put `op` in its place; an op already there under `id` is replaced.
    pub(super) fn insert(&mut self, id: OpId, op: O) {
        let lane = self.lane_for(id.origin);
        let ops = &mut self.lanes[lane].ops;
        let key = (id.lamport, id.seq);
        let entry = Entry {
            lamport: id.lamport,
            seq: id.seq,
            op,
        };
        if ops.back().is_none_or(|b| (b.lamport, b.seq) < key) {
            ops.push_back(entry);
        } else {
            match ops.binary_search_by(|e| (e.lamport, e.seq).cmp(&key)) {
                Ok(i) => {
                    ops[i] = entry;
                    return;
                }
                Err(i) => ops.insert(i, entry),
            }
        }
        self.len += 1;
        if self.last.is_none_or(|last| id > last) {
            self.last = Some(id);
        }
    }

    /// The index of `origin`'s lane, made (empty) if it has none.
    fn lane_for(&mut self, origin: NodeId) -> usize {
        if self
            .lanes
            .get(self.hint)
            .is_some_and(|l| l.origin == origin)
        {
            return self.hint;
        }
        let at = match self.lanes.binary_search_by(|l| l.origin.cmp(&origin)) {
            Ok(at) => at,
            Err(at) => {
                self.lanes.insert(
                    at,
                    Lane {
                        origin,
                        ops: VecDeque::new(),
                    },
                );
                at
            }
        };
        self.hint = at;
        at
    }

    /// Every op, in order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> Iter<'_, O> {
        self.after(None)
    }

    /// The ops after `after` (every op for `None`), in order.
    pub(super) fn after(&self, after: Option<OpId>) -> Iter<'_, O> {
        let heads = self.lanes.iter().enumerate().filter_map(|(k, lane)| {
            let from = match after {
                None => 0,
                Some(a) => lane.ops.partition_point(|e| lane.id(e) <= a),
            };
            lane.ops
                .get(from)
                .map(|e| Reverse((e.lamport, k, e.seq, from)))
        });
        Iter {
            lanes: &self.lanes,
            heads: heads.collect(),
        }
    }

    /// Take out every op at or before `upto`, in order. Whatever the
    /// iterator is not asked for is taken out (and dropped) when it is.
    pub(super) fn drain_upto(&mut self, upto: OpId) -> Drain<'_, O> {
        let heads = fronts(&self.lanes, Some(upto));
        Drain {
            log: self,
            heads,
            upto,
        }
    }

    /// Take out every op whose id `which` picks, in order; the rest stay.
    pub(super) fn take_where(&mut self, which: impl Fn(&OpId) -> bool) -> Vec<(OpId, O)> {
        let mut taken = Vec::new();
        for lane in &mut self.lanes {
            if !lane.ops.iter().any(|e| which(&lane.id(e))) {
                continue;
            }
            for e in std::mem::take(&mut lane.ops) {
                let id = lane.id(&e);
                if which(&id) {
                    taken.push((id, e.op));
                } else {
                    lane.ops.push_back(e);
                }
            }
        }
        if !taken.is_empty() {
            taken.sort_unstable_by_key(|(id, _)| *id);
            self.len -= taken.len();
            self.tidy();
        }
        taken
    }

    /// After a removal: drop the empty lanes, give back most of the room
    /// of big lanes that shrank, and find the largest id again.
    fn tidy(&mut self) {
        self.lanes.retain(|l| !l.ops.is_empty());
        for lane in &mut self.lanes {
            if lane.ops.capacity() > 64 && lane.ops.len() * 4 < lane.ops.capacity() {
                lane.ops.shrink_to(lane.ops.len() * 2);
            }
        }
        self.hint = 0;
        self.last = self
            .lanes
            .iter()
            .filter_map(|l| l.ops.back().map(|e| l.id(e)))
            .max();
    }
}

/// The heads of a merge that takes the lanes' ops from their fronts, up to
/// `upto` (all for `None`).
fn fronts<O>(lanes: &[Lane<O>], upto: Option<OpId>) -> BinaryHeap<Head> {
    lanes
        .iter()
        .enumerate()
        .filter_map(|(k, lane)| {
            let e = lane.ops.front()?;
            upto.is_none_or(|u| lane.id(e) <= u)
                .then_some(Reverse((e.lamport, k, e.seq, 0)))
        })
        .collect()
}

/// Pop the smallest head of `heads` off its lane's front, pushing the
/// lane's next entry if it is at most `upto`.
fn pop_front<O>(
    lanes: &mut [Lane<O>],
    heads: &mut BinaryHeap<Head>,
    upto: Option<OpId>,
) -> Option<(OpId, O)> {
    let mut top = heads.peek_mut()?;
    let lane = &mut lanes[top.0 .1];
    let e = lane.ops.pop_front()?;
    let id = lane.id(&e);
    match lane.ops.front() {
        Some(next) if upto.is_none_or(|u| lane.id(next) <= u) => {
            let k = top.0 .1;
            *top = Reverse((next.lamport, k, next.seq, 0));
        }
        _ => {
            std::collections::binary_heap::PeekMut::pop(top);
        }
    }
    Some((id, e.op))
}

/// The ops of an [`Lanes`] in order, from [`Lanes::iter`] and
/// [`Lanes::after`].
pub(in crate::proto::replica) struct Iter<'a, O> {
    lanes: &'a [Lane<O>],
    heads: BinaryHeap<Head>,
}

impl<'a, O> Iterator for Iter<'a, O> {
    type Item = (OpId, &'a O);

    fn next(&mut self) -> Option<Self::Item> {
        let mut top = self.heads.peek_mut()?;
        let (_, k, _, at) = top.0;
        let lane = &self.lanes[k];
        let e = &lane.ops[at];
        match lane.ops.get(at + 1) {
            Some(next) => *top = Reverse((next.lamport, k, next.seq, at + 1)),
            None => {
                std::collections::binary_heap::PeekMut::pop(top);
            }
        }
        Some((lane.id(e), &e.op))
    }
}

/// The ops at or before a bound, taken out of an [`Lanes`] in order, from
/// [`Lanes::drain_upto`].
pub(in crate::proto::replica) struct Drain<'a, O> {
    log: &'a mut Lanes<O>,
    heads: BinaryHeap<Head>,
    upto: OpId,
}

impl<O> Iterator for Drain<'_, O> {
    type Item = (OpId, O);

    fn next(&mut self) -> Option<Self::Item> {
        let next = pop_front(&mut self.log.lanes, &mut self.heads, Some(self.upto))?;
        self.log.len -= 1;
        Some(next)
    }
}

impl<O> Drop for Drain<'_, O> {
    fn drop(&mut self) {
        for _ in &mut *self {}
        self.log.tidy();
    }
}

/// Every op of an [`Lanes`], in order, by value.
pub(in crate::proto::replica) struct IntoIter<O> {
    lanes: Vec<Lane<O>>,
    heads: BinaryHeap<Head>,
}

impl<O> Iterator for IntoIter<O> {
    type Item = (OpId, O);

    fn next(&mut self) -> Option<Self::Item> {
        pop_front(&mut self.lanes, &mut self.heads, None)
    }
}

impl<O> IntoIterator for Lanes<O> {
    type Item = (OpId, O);
    type IntoIter = IntoIter<O>;

    fn into_iter(self) -> Self::IntoIter {
        let heads = fronts(&self.lanes, None);
        IntoIter {
            lanes: self.lanes,
            heads,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::testing::{self, id, Sorted};
    use super::*;

    impl Sorted for Lanes<u64> {
        fn put(&mut self, id: OpId, op: u64, _late: bool) {
            self.insert(id, op);
        }
        testing::sorted_through_own_methods!(fold_by_iterator);
        fn sound(&self) -> bool {
            self.lanes.iter().all(|l| !l.ops.is_empty())
                && self.lanes.windows(2).all(|w| w[0].origin < w[1].origin)
        }
    }

    #[test]
    fn reads_folds_and_removals_cut_where_they_should() {
        testing::reads_folds_and_removals_cut_where_they_should::<Lanes<u64>>();
    }

    #[test]
    fn interleaved_writers_merge_in_order_and_fold_off_the_front() {
        let mut log = Lanes::default();
        // Three writers whose bursts interleave: every op of writers 2 and
        // 3 is late against writer 1's.
        for l in 0..1000u64 {
            log.insert(id(3 * l, 1, l + 1), 3 * l);
        }
        for l in 0..1000u64 {
            log.insert(id(3 * l + 1, 2, l + 1), 3 * l + 1);
            log.insert(id(3 * l + 2, 3, l + 1), 3 * l + 2);
        }
        assert_eq!(log.len(), 3000);
        let ops: Vec<_> = log.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, (0..3000).collect::<Vec<_>>());
        let tail: Vec<_> = log
            .after(Some(id(2500, 2, 834)))
            .map(|(_, op)| *op)
            .collect();
        assert_eq!(tail, (2501..3000).collect::<Vec<_>>());
        let folded = log.drain_upto(id(1499, 3, 500)).count();
        assert_eq!((folded, log.len()), (1500, 1500));
        assert_eq!(log.iter().next().map(|(_, op)| *op), Some(1500));
        assert_eq!(log.last_id(), Some(id(2999, 3, 1000)));
    }

    #[test]
    fn an_op_that_overtakes_its_own_origins_lands_inside_its_lane() {
        let mut log = Lanes::default();
        for seq in [1, 2, 5, 6, 3, 4] {
            log.insert(id(seq * 10, 1, seq), seq);
        }
        let ops: Vec<_> = log.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, [1, 2, 3, 4, 5, 6]);
        assert_eq!(log.last_id(), Some(id(60, 1, 6)));
    }

    #[test]
    fn a_drain_dropped_early_still_takes_out_everything_up_to_its_bound() {
        let mut log = Lanes::default();
        for l in 1..=10 {
            log.insert(id(l, (l % 3) as u8, l), l);
        }
        assert_eq!(
            log.drain_upto(id(6, 0, 6)).next().map(|(_, op)| op),
            Some(1)
        );
        assert_eq!(log.len(), 4);
        assert_eq!(
            log.iter().map(|(_, op)| *op).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        assert_eq!(log.drain_upto(id(99, 0, 0)).count(), 4);
        assert_eq!((log.len(), log.last_id(), log.lanes.len()), (0, None, 0));
    }

    #[test]
    fn taken_as_a_whole_in_order() {
        let mut log = Lanes::default();
        for l in [4, 1, 3, 2] {
            log.insert(id(l, (l % 2) as u8, l), l);
        }
        let all: Vec<_> = log.into_iter().map(|(_, op)| op).collect();
        assert_eq!(all, [1, 2, 3, 4]);
    }

    proptest! {
        #[test]
        fn behaves_as_a_sorted_map(steps in testing::steps()) {
            testing::behaves_as_a_sorted_map::<Lanes<u64>>(steps)?;
        }
    }
}
