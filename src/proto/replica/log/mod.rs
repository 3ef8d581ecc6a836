//! The tentative log: a replica's ops past the stable frontier, in
//! [`OpId`] order.
//!
//! It has two parts, read together as one sorted sequence:
//!
//! * the **main** part ([`Chunks`]): the replica's own ops, ops that
//!   arrive in order, and late ops that do not commute (each of those
//!   rewinds and replays the ops after it, which walks this part);
//! * the **late** part ([`Lanes`]): late ops that commute. Under
//!   concurrent writers these are most of a peer's ops, hundreds or
//!   thousands of places back; a lane per origin takes each as a push onto
//!   its back instead of a search and a shift among this node's own ops.
//!
//! A walk in order merges the two; with no late commutative ops (a log of
//! ops that do not commute, or one writer) it is a walk of the main part
//! alone. Each id is in at most one part: the replica inserts an op only
//! once its seen set took the id.
//!
//! With three writers of commutative ops, the late inserts into the
//! chunks (their search and their shift) were 8–11% of the CPU of
//! `benches/pipeline.rs` and of quicbench. Lanes alone (every op in a
//! lane) made each replay after a late op that does not commute a merge
//! of the lanes op by op, and ordered shouts fell by about 40%: hence two
//! parts.

mod chunks;
mod lanes;
#[cfg(test)]
mod testing;

use std::iter::Peekable;

use super::super::id::OpId;
use chunks::Chunks;
use lanes::Lanes;

/// Ops sorted by id, each id at most once.
#[derive(Clone, Debug)]
pub(super) struct OpLog<O> {
    main: Chunks<O>,
    late: Lanes<O>,
}

impl<O> Default for OpLog<O> {
    fn default() -> Self {
        Self {
            main: Chunks::default(),
            late: Lanes::default(),
        }
    }
}

impl<O> OpLog<O> {
    /// How many ops the log holds.
    pub(super) fn len(&self) -> usize {
        self.main.len() + self.late.len()
    }

    /// The largest id in the log.
    pub(super) fn last_id(&self) -> Option<OpId> {
        self.main.last_id().max(self.late.last_id())
    }

    /// Put `op` in its place in the main part. The id must not be in the
    /// late part; one already in the main part has its op replaced.
    pub(super) fn insert(&mut self, id: OpId, op: O) {
        self.main.insert(id, op);
    }

    /// Put a late op that commutes with every other in the late part. The
    /// id must not be in the main part; one already in the late part has
    /// its op replaced.
    pub(super) fn insert_late(&mut self, id: OpId, op: O) {
        self.late.insert(id, op);
    }

    /// Every op, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (OpId, &O)> + '_ {
        self.after(None)
    }

    /// Every id, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.iter().map(|(id, _)| id)
    }

    /// The ops after `after` (every op for `None`), in order.
    pub(super) fn after(&self, after: Option<OpId>) -> impl Iterator<Item = (OpId, &O)> + '_ {
        merge(self.main.after(after), self.late.after(after))
    }

    /// Call `each` on the ops after `after` (every op for `None`), in
    /// order. A replay walks the log this way: with no late part, the walk
    /// of the main part alone is a loop of its own, with no merge (one
    /// through [`after`](Self::after) cost a replay about 25%).
    pub(super) fn for_each_after(&self, after: Option<OpId>, mut each: impl FnMut(&OpId, &O)) {
        if self.late.len() == 0 {
            for slice in self.main.slices_after(after) {
                for (id, op) in slice {
                    each(id, op);
                }
            }
        } else {
            for (id, op) in self.after(after) {
                each(&id, op);
            }
        }
    }

    /// Take out every op at or before `upto` and hand each to `each`, in
    /// order. The main part's ops go straight from its chunks (a fold
    /// needs no merge when there is no late part); the late part's are
    /// slotted in between them.
    pub(super) fn drain_upto(&mut self, upto: OpId, mut each: impl FnMut(OpId, O)) {
        if self.late.len() == 0 {
            self.main.drain_upto(upto, each);
            return;
        }
        let mut late = self.late.drain_upto(upto).peekable();
        self.main.drain_upto(upto, |id, op| {
            while let Some((l, lop)) = late.next_if(|(l, _)| *l < id) {
                each(l, lop);
            }
            each(id, op);
        });
        for (l, lop) in late {
            each(l, lop);
        }
    }

    /// Take out every op whose id `which` picks, in order; the rest stay.
    pub(super) fn take_where(&mut self, which: impl Fn(&OpId) -> bool) -> Vec<(OpId, O)> {
        let mut taken = self.main.take_where(&which);
        let late = self.late.take_where(&which);
        if !late.is_empty() {
            taken.extend(late);
            taken.sort_unstable_by_key(|(id, _)| *id);
        }
        taken
    }
}

impl<O> IntoIterator for OpLog<O> {
    type Item = (OpId, O);
    type IntoIter =
        Merge<<Chunks<O> as IntoIterator>::IntoIter, <Lanes<O> as IntoIterator>::IntoIter>;

    fn into_iter(self) -> Self::IntoIter {
        merge(self.main.into_iter(), self.late.into_iter())
    }
}

/// Two sequences sorted by id, merged.
fn merge<T, A, B>(a: A, b: B) -> Merge<A, B>
where
    A: Iterator<Item = (OpId, T)>,
    B: Iterator<Item = (OpId, T)>,
{
    Merge {
        a: a.peekable(),
        b: b.peekable(),
    }
}

/// The merge of two sequences sorted by id (see [`merge`]).
pub(super) struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<T, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (OpId, T)>,
    B: Iterator<Item = (OpId, T)>,
{
    type Item = (OpId, T);

    fn next(&mut self) -> Option<Self::Item> {
        let Some((late, _)) = self.b.peek() else {
            return self.a.next();
        };
        match self.a.peek() {
            Some((main, _)) if main < late => self.a.next(),
            _ => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::testing::{self, id, Sorted};
    use super::*;

    impl Sorted for OpLog<u64> {
        fn put(&mut self, id: OpId, op: u64, late: bool) {
            if late {
                self.insert_late(id, op);
            } else {
                self.insert(id, op);
            }
        }
        testing::sorted_through_own_methods!(fold_by_closure);
        fn sound(&self) -> bool {
            // A replay's walk sees what a read in order does.
            let mut walked = Vec::new();
            self.for_each_after(None, |i, op| walked.push((*i, *op)));
            walked == self.ops_after(None) && self.ids().eq(walked.iter().map(|(i, _)| *i))
        }
    }

    #[test]
    fn reads_folds_and_removals_cut_where_they_should() {
        testing::reads_folds_and_removals_cut_where_they_should::<OpLog<u64>>();
    }

    #[test]
    fn both_parts_read_as_one_sorted_sequence() {
        let mut log = OpLog::default();
        // This node's ops in the main part; two peers' ops, late, in lanes.
        for l in 0..100u64 {
            log.insert(id(3 * l, 1, l + 1), 3 * l);
        }
        for l in 0..100u64 {
            log.insert_late(id(3 * l + 1, 2, l + 1), 3 * l + 1);
            log.insert_late(id(3 * l + 2, 3, l + 1), 3 * l + 2);
        }
        assert_eq!(log.len(), 300);
        assert_eq!(log.last_id(), Some(id(299, 3, 100)));
        let ops: Vec<_> = log.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, (0..300).collect::<Vec<_>>());
        let tail: Vec<_> = log.after(Some(id(250, 2, 84))).map(|(_, op)| *op).collect();
        assert_eq!(tail, (251..300).collect::<Vec<_>>());
        let odd = log.take_where(|i| i.lamport % 2 == 1 && i.lamport < 10);
        assert_eq!(
            odd.iter().map(|(_, op)| *op).collect::<Vec<_>>(),
            [1, 3, 5, 7, 9]
        );
        let mut folded = Vec::new();
        log.drain_upto(id(20, 9, 0), |_, op| folded.push(op));
        assert_eq!(
            folded,
            [0, 2, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
        );
        let rest: Vec<_> = log.into_iter().map(|(_, op)| op).collect();
        assert_eq!(rest, (21..300).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn behaves_as_a_sorted_map(steps in testing::steps()) {
            testing::behaves_as_a_sorted_map::<OpLog<u64>>(steps)?;
        }
    }
}
