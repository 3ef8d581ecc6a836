//! Which ops a replica or a repeater has seen: per-origin sequence sets and
//! version vectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::{NodeId, OpId};

/// The set of sequence numbers seen from one origin: a contiguous prefix
/// `1..=contiguous` plus the numbers seen above it out of order.
///
/// Memory is bounded by the number of gaps, which close as delivery
/// completes; in the common in-order case it is two integers.
///
/// Each number may carry the Lamport time of its op (0 when the caller does
/// not track it), so the set can tell the Lamport time of the op at the top
/// of the contiguous prefix: stability needs it (see
/// [`stability`](super::stability)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqSet {
    contiguous: u64,
    /// The Lamport time of op `contiguous` (a lower bound after a prefix
    /// was inserted wholesale).
    top_lamport: u64,
    above: BTreeMap<u64, u64>,
}

impl SeqSet {
    /// The highest `n` such that all of `1..=n` are in the set.
    pub const fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// The Lamport time of the op at the top of the contiguous prefix (0
    /// when empty or not tracked).
    pub const fn top_lamport(&self) -> u64 {
        self.top_lamport
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.above.contains_key(&seq)
    }

    /// Add `seq`; returns `false` if it was already there. Zero is never a
    /// valid sequence number and is reported as already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_at(seq, 0)
    }

    /// Add `seq`, whose op has Lamport time `lamport`; returns `false` if it
    /// was already there (zero is never a valid sequence number).
    pub fn insert_at(&mut self, seq: u64, lamport: u64) -> bool {
        if seq == 0 || self.contains(seq) {
            return false;
        }
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            self.top_lamport = self.top_lamport.max(lamport);
            self.close_gaps();
        } else {
            self.above.insert(seq, lamport);
        }
        true
    }

    /// Mark every seq in `1..=upto` as seen; `lamport` is a lower bound of
    /// the Lamport time of op `upto`.
    pub fn insert_prefix(&mut self, upto: u64, lamport: u64) {
        if upto > self.contiguous {
            self.contiguous = upto;
            self.top_lamport = self.top_lamport.max(lamport);
            self.above = self.above.split_off(&(upto + 1));
            self.close_gaps();
        }
    }

    /// Forget every seq above `cut` (the ops of an evicted origin after its
    /// cut are void); `lamport` is a lower bound of the Lamport time of op
    /// `cut`, used when the contiguous prefix shrinks to it.
    pub fn truncate(&mut self, cut: u64, lamport: u64) {
        self.above.retain(|seq, _| *seq <= cut);
        if self.contiguous > cut {
            self.contiguous = cut;
            self.top_lamport = if cut == 0 { 0 } else { lamport };
        }
    }

    /// The highest seq in the set (0 if empty).
    pub fn max(&self) -> u64 {
        self.above
            .last_key_value()
            .map_or(self.contiguous, |(s, _)| *s)
    }

    fn close_gaps(&mut self) {
        while let Some(lamport) = self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
            self.top_lamport = self.top_lamport.max(lamport);
        }
    }

    /// The runs of `first..=last` not in the set, in order, as inclusive
    /// `(first, last)` pairs. Costs one step per number held above the
    /// contiguous prefix within the range, not one per number asked about.
    pub fn missing(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = first.max(self.contiguous.saturating_add(1)).max(1);
        if next > last {
            return gaps;
        }
        for &held in self.above.range(next..=last).map(|(s, _)| s) {
            if held > next {
                gaps.push((next, held - 1));
            }
            next = held + 1;
        }
        if next <= last {
            gaps.push((next, last));
        }
        gaps
    }

    /// The runs held above the contiguous prefix, in order, at most `max`.
    pub fn runs_above(&self, max: usize) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &seq in self.above.keys() {
            if let Some(run) = runs.last_mut().filter(|r| r.1 + 1 == seq) {
                run.1 = seq;
            } else if runs.len() == max {
                break;
            } else {
                runs.push((seq, seq));
            }
        }
        runs
    }

    /// How many numbers above the contiguous prefix are held.
    pub fn gaps_len(&self) -> usize {
        self.above.len()
    }
}

/// Per-origin [`SeqSet`]s: what has been seen, origin by origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenSet {
    origins: BTreeMap<NodeId, SeqSet>,
}

impl SeenSet {
    /// Add `(origin, seq)`; `false` if it was already there.
    pub fn insert(&mut self, origin: NodeId, seq: u64) -> bool {
        self.origins.entry(origin).or_default().insert(seq)
    }

    /// Add the op `id`, remembering its Lamport time; `false` if it was
    /// already there.
    pub fn insert_op(&mut self, id: &OpId) -> bool {
        self.origins
            .entry(id.origin)
            .or_default()
            .insert_at(id.seq, id.lamport)
    }

    /// The set of one origin, if any of its ops was seen.
    pub fn origin(&self, origin: &NodeId) -> Option<&SeqSet> {
        self.origins.get(origin)
    }

    /// Every origin seen with what was seen of it, in origin order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &SeqSet)> + '_ {
        self.origins.iter()
    }

    /// The origins seen.
    pub fn origins(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.origins.keys()
    }

    /// Whether `(origin, seq)` was seen.
    pub fn contains(&self, origin: &NodeId, seq: u64) -> bool {
        self.origins.get(origin).is_some_and(|s| s.contains(seq))
    }

    /// Mark every seq in `1..=upto` from `origin` as seen; `lamport` is a
    /// lower bound of the Lamport time of op `upto`.
    pub fn insert_prefix(&mut self, origin: NodeId, upto: u64, lamport: u64) {
        self.origins
            .entry(origin)
            .or_default()
            .insert_prefix(upto, lamport);
    }

    /// Forget every seq of `origin` above `cut` (see [`SeqSet::truncate`]).
    pub fn truncate(&mut self, origin: &NodeId, cut: u64, lamport: u64) {
        if let Some(set) = self.origins.get_mut(origin) {
            set.truncate(cut, lamport);
        }
    }

    /// Runs `(origin, first, last)` held above the contiguous prefixes, at
    /// most `max` in all (see [`SeqSet::runs_above`]).
    pub fn held_above(&self, max: usize) -> Vec<(NodeId, u64, u64)> {
        let mut runs = Vec::new();
        for (origin, set) in &self.origins {
            let left = max - runs.len();
            if left == 0 {
                break;
            }
            runs.extend(
                set.runs_above(left)
                    .into_iter()
                    .map(|(first, last)| (*origin, first, last)),
            );
        }
        runs
    }

    /// The runs of `first..=last` of `origin` not seen (see
    /// [`SeqSet::missing`]).
    pub fn missing(&self, origin: &NodeId, first: u64, last: u64) -> Vec<(u64, u64)> {
        match self.origins.get(origin) {
            Some(set) => set.missing(first, last),
            None if first.max(1) <= last => vec![(first.max(1), last)],
            None => Vec::new(),
        }
    }

    /// The highest seq seen from `origin` (0 if none).
    pub fn max_seq(&self, origin: &NodeId) -> u64 {
        self.origins.get(origin).map_or(0, SeqSet::max)
    }

    /// The highest contiguous seq seen from `origin` (0 if none).
    pub fn contiguous(&self, origin: &NodeId) -> u64 {
        self.origins.get(origin).map_or(0, SeqSet::contiguous)
    }

    /// The contiguous version vector: `origin -> highest contiguous seq`.
    pub fn version_vector(&self) -> VersionVector {
        VersionVector(
            self.origins
                .iter()
                .map(|(o, s)| (*o, s.contiguous()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

/// `origin -> highest contiguous seq`: a compact summary of the ops an
/// object's replica holds, exchanged by anti-entropy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(pub BTreeMap<NodeId, u64>);

impl VersionVector {
    /// The highest contiguous seq for `origin` (0 if none).
    pub fn get(&self, origin: &NodeId) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// Whether this vector has seen everything `other` has.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(o, n)| self.get(o) >= *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_closes_gaps() {
        let mut s = SeqSet::default();
        assert!(s.insert(2));
        assert!(s.insert(4));
        assert_eq!(s.contiguous(), 0);
        assert!(s.insert(1));
        assert_eq!(s.contiguous(), 2);
        assert!(!s.insert(2), "duplicate");
        assert!(s.insert(3));
        assert_eq!(s.contiguous(), 4);
        assert_eq!(s.gaps_len(), 0);
        assert!(!s.insert(0), "zero is never a valid seq");
    }

    #[test]
    fn seq_set_names_its_gaps() {
        let mut s = SeqSet::default();
        assert_eq!(s.missing(1, 3), vec![(1, 3)]);
        assert_eq!(s.missing(0, 0), vec![], "zero is never missing");
        for seq in [1, 2, 5, 6, 9] {
            s.insert(seq);
        }
        assert_eq!(s.missing(1, 10), vec![(3, 4), (7, 8), (10, 10)]);
        assert_eq!(s.runs_above(8), vec![(5, 6), (9, 9)]);
        assert_eq!(s.runs_above(1), vec![(5, 6)]);
        assert_eq!(s.missing(5, 6), vec![]);
        assert_eq!(s.missing(4, 7), vec![(4, 4), (7, 7)]);
        assert_eq!(s.missing(9, 3), vec![], "an empty range");
        assert_eq!(
            s.missing(u64::MAX - 1, u64::MAX),
            vec![(u64::MAX - 1, u64::MAX)]
        );
        let mut seen = SeenSet::default();
        let a = NodeId::from_u64(1);
        assert_eq!(seen.missing(&a, 0, 2), vec![(1, 2)]);
        seen.insert(a, 1);
        assert_eq!(seen.missing(&a, 1, 2), vec![(2, 2)]);
    }

    #[test]
    fn version_vectors_compare_by_domination() {
        let a = NodeId::from_u64(1);
        let b = NodeId::from_u64(2);
        let mut seen = SeenSet::default();
        seen.insert(a, 1);
        seen.insert(a, 2);
        seen.insert(b, 2);
        let vv = seen.version_vector();
        assert_eq!(vv.get(&a), 2);
        assert_eq!(vv.get(&b), 0, "b's seq 1 is missing");
        let mut other = VersionVector::default();
        other.0.insert(a, 1);
        assert!(vv.dominates(&other));
        other.0.insert(b, 1);
        assert!(!vv.dominates(&other));
    }
}
