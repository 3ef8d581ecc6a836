//! What the tests of the log and of its two parts share: ids, and checks
//! of a log against a sorted map.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use proptest::prelude::*;

use crate::proto::id::{NodeId, OpId};

/// An op id with a small origin.
pub(super) fn id(lamport: u64, origin: u8, seq: u64) -> OpId {
    OpId {
        lamport,
        origin: NodeId::from_bytes([origin; 32]),
        seq,
    }
}

/// A log under test, with `u64` ops.
pub(super) trait Sorted: Default {
    /// Insert `op` under `id`; `late` picks the late part, where there is
    /// one.
    fn put(&mut self, id: OpId, op: u64, late: bool);
    /// The ops after `after` (all for `None`), in order.
    fn ops_after(&self, after: Option<OpId>) -> Vec<(OpId, u64)>;
    /// Take out the ops at or before `upto`, in order.
    fn fold(&mut self, upto: OpId) -> Vec<(OpId, u64)>;
    /// Take out the ops `which` picks, in order.
    fn take(&mut self, which: &dyn Fn(&OpId) -> bool) -> Vec<(OpId, u64)>;
    /// How many ops, and the largest id.
    fn size(&self) -> (usize, Option<OpId>);
    /// Whether the structure's own invariants hold.
    fn sound(&self) -> bool;
}

/// The [`Sorted`] methods that call the log's own methods of the same
/// use (`after`, `take_where`, `len`, `last_id`, `drain_upto`). A log whose
/// `drain_upto` hands each op to a closure says `fold_by_closure`; one
/// whose `drain_upto` is an iterator says `fold_by_iterator`.
macro_rules! sorted_through_own_methods {
    (fold_by_closure) => {
        testing::sorted_through_own_methods!(reads);
        fn fold(&mut self, upto: OpId) -> Vec<(OpId, u64)> {
            let mut folded = Vec::new();
            self.drain_upto(upto, |i, op| folded.push((i, op)));
            folded
        }
    };
    (fold_by_iterator) => {
        testing::sorted_through_own_methods!(reads);
        fn fold(&mut self, upto: OpId) -> Vec<(OpId, u64)> {
            self.drain_upto(upto).collect()
        }
    };
    (reads) => {
        fn ops_after(&self, after: Option<OpId>) -> Vec<(OpId, u64)> {
            self.after(after).map(|(i, op)| (i, *op)).collect()
        }
        fn take(&mut self, which: &dyn Fn(&OpId) -> bool) -> Vec<(OpId, u64)> {
            self.take_where(which)
        }
        fn size(&self) -> (usize, Option<OpId>) {
            (self.len(), self.last_id())
        }
    };
}
pub(super) use sorted_through_own_methods;

/// Steps of [`behaves_as_a_sorted_map`]: `(what, lamport, origin, seq)`,
/// over more origins than a few, and each origin's ops in any order.
pub(super) fn steps() -> impl Strategy<Value = Vec<(u8, u64, u8, u64)>> {
    proptest::collection::vec((0u8..16, 0u64..400, 0u8..12, 0u64..3), 1..600)
}

/// The log behaves as a sorted map under any mix of inserts (into either
/// part, an id staying in the part it went to first), removals, reads
/// and folds.
pub(super) fn behaves_as_a_sorted_map<L: Sorted>(
    steps: Vec<(u8, u64, u8, u64)>,
) -> Result<(), TestCaseError> {
    let mut log = L::default();
    let mut model = BTreeMap::new();
    let mut late = BTreeSet::new();
    for (what, lamport, origin, seq) in steps {
        let key = id(lamport, origin, seq);
        match what {
            0..=11 => {
                let to_late = late.contains(&key) || (what % 2 == 0 && !model.contains_key(&key));
                if to_late {
                    late.insert(key);
                }
                log.put(key, lamport, to_late);
                model.insert(key, lamport);
            }
            12 | 13 => {
                let picked = |i: &OpId| i.origin == key.origin && i.lamport < lamport;
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(i, _)| picked(i))
                    .map(|(i, op)| (*i, *op))
                    .collect();
                model.retain(|i, _| !picked(i));
                prop_assert_eq!(log.take(&picked), expected);
            }
            14 => {
                let expected: Vec<_> = model
                    .range((Bound::Excluded(key), Bound::Unbounded))
                    .map(|(i, op)| (*i, *op))
                    .collect();
                prop_assert_eq!(log.ops_after(Some(key)), expected);
            }
            _ => {
                let rest = model.split_off(&key);
                let mut expected: Vec<_> =
                    std::mem::replace(&mut model, rest).into_iter().collect();
                if let Some(op) = model.remove(&key) {
                    expected.push((key, op));
                }
                prop_assert_eq!(log.fold(key), expected);
            }
        }
        late.retain(|i| model.contains_key(i));
        let theirs: Vec<_> = model.iter().map(|(i, op)| (*i, *op)).collect();
        prop_assert_eq!(log.ops_after(None), theirs);
        prop_assert_eq!(log.size(), (model.len(), model.keys().next_back().copied()));
        prop_assert!(log.sound());
    }
    Ok(())
}

/// Ops put in any order come out in order; a second put under an id
/// replaces the op; reads, folds and removals cut where they should.
pub(super) fn reads_folds_and_removals_cut_where_they_should<L: Sorted>() {
    let mut log = L::default();
    for (l, o) in [(5, 1), (2, 1), (9, 2), (2, 2), (7, 1), (1, 3)] {
        log.put(id(l, o, l), l, false);
    }
    let ids: Vec<_> = log.ops_after(None).iter().map(|(i, _)| *i).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(log.size(), (6, Some(id(9, 2, 9))));
    log.put(id(5, 1, 5), 50, false);
    assert_eq!(
        log.ops_after(Some(id(2, 2, 2))),
        [(id(5, 1, 5), 50), (id(7, 1, 7), 7), (id(9, 2, 9), 9)]
    );

    let mut log = L::default();
    for l in 1..=10 {
        log.put(id(l, (l % 2) as u8, l), l, false);
    }
    let ops = |v: Vec<(OpId, u64)>| v.into_iter().map(|(_, op)| op).collect::<Vec<_>>();
    assert_eq!(ops(log.ops_after(Some(id(7, 1, 7)))), [8, 9, 10]);
    // An id between two entries: everything after it.
    assert_eq!(ops(log.ops_after(Some(id(4, 9, 0))))[0], 5);
    assert_eq!(ops(log.fold(id(3, 1, 3))), [1, 2, 3]);
    assert_eq!(ops(log.take(&|i| i.lamport % 2 == 1)), [5, 7, 9]);
    assert_eq!(ops(log.ops_after(None)), [4, 6, 8, 10]);
    assert_eq!(log.size(), (4, Some(id(10, 0, 10))));
    assert!(log.take(&|_| false).is_empty());
    assert!(log.sound());
}
