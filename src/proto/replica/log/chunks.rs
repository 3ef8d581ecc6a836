//! The log's main part: ops in order, in a ring of small sorted chunks.
//!
//! The replica's own ops, in-order arrivals and late ops that do not
//! commute come here (late commutative ops go to the
//! [`Lanes`](super::lanes::Lanes)). It is a one-level B+ tree:
//!
//! * an in-order op is a push onto the last chunk (a new chunk every
//!   [`CHUNK`] ops: one allocation per chunk, not per op);
//! * a late op finds its chunk by a search over the chunks' last ids that
//!   gallops from the back (late ops land near the end), then its place
//!   inside by binary search; it shifts fewer than `2 * CHUNK` entries,
//!   and a chunk that grows to that splits in two;
//! * folding pops whole chunks off the front and keeps a few of them,
//!   emptied, for the next pushes ([`SPARE`]);
//! * a walk in order (a replay after a late op that does not commute)
//!   scans the chunks' contiguous memory.
//!
//! A single ring buffer was tried first: a late op then shifted everything
//! after it, and under three concurrent writers that memmove took a third
//! of the CPU. A `BTreeMap` allocates per few ops and chases pointers on
//! every walk.

use std::collections::VecDeque;

use crate::proto::id::OpId;

/// Entries a chunk gets when it is made; a chunk splits at twice this.
const CHUNK: usize = 16;

/// Emptied chunks kept for reuse, at most. A fold empties chunks at the
/// front while the replica's own ops fill new ones at the back: at about
/// 1.3 KB a chunk of 64-byte ops, each new one was a request large enough
/// to make glibc's allocator consolidate its fast bins first
/// (`malloc_consolidate`, about 2% of quicbench's CPU with the chunks' own
/// allocations and frees). A fold under load takes dozens of chunks at
/// once, so eight were too few. The spares are never more than the log
/// held before the fold that emptied them, and 32 such chunks are about
/// 40 KB.
const SPARE: usize = 32;

/// Ops sorted by id, each id at most once.
#[derive(Clone, Debug)]
pub(in crate::proto::replica) struct Chunks<O> {
    /// Sorted chunks, each non-empty, every id in one below every id in
    /// the next.
    chunks: VecDeque<Vec<(OpId, O)>>,
    len: usize,
    /// Empty chunks, each with room for at least [`CHUNK`] entries.
    spare: Vec<Vec<(OpId, O)>>,
}

impl<O> Default for Chunks<O> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<O> Chunks<O> {
    /// How many ops the log holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The largest id in the log.
    pub(super) fn last_id(&self) -> Option<OpId> {
        self.chunks.back().and_then(|c| c.last()).map(|(id, _)| *id)
    }

    /// Put `op` in its place; an op already there under `id` is replaced.
    pub(super) fn insert(&mut self, id: OpId, op: O) {
        if self.last_id().is_none_or(|last| id > last) {
            match self.chunks.back_mut() {
                Some(last) if last.len() < CHUNK => last.push((id, op)),
                _ => {
                    let mut chunk = self
                        .spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(CHUNK));
                    chunk.push((id, op));
                    self.chunks.push_back(chunk);
                }
            }
            self.len += 1;
            return;
        }
        let at = self.chunk_for(id);
        let chunk = &mut self.chunks[at];
        match chunk.binary_search_by(|(e, _)| e.cmp(&id)) {
            Ok(i) => {
                chunk[i].1 = op;
                return;
            }
            Err(i) => chunk.insert(i, (id, op)),
        }
        self.len += 1;
        if chunk.len() >= 2 * CHUNK {
            let upper = chunk.split_off(CHUNK);
            self.chunks.insert(at + 1, upper);
        }
    }

    /// The first chunk that does not end before `id`, which must not be
    /// past the last id. Late ops land near the back, so the search
    /// gallops from the back (probing the last chunks, which are in cache)
    /// before it halves: `O(log d)` for a place `d` chunks from the end.
    fn chunk_for(&self, id: OpId) -> usize {
        let mut hi = self.chunks.len().saturating_sub(1);
        let mut lo = 0;
        let mut step = 1;
        while step <= hi {
            let probe = hi - step;
            if ends_before(&self.chunks[probe], id) {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
        // The answer is in lo..=hi, and chunk `hi` does not end before `id`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if ends_before(&self.chunks[mid], id) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Every op, in order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (OpId, &O)> + '_ {
        self.chunks.iter().flatten().map(|(id, op)| (*id, op))
    }

    /// Every id, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.chunks.iter().flatten().map(|(id, _)| *id)
    }

    /// The ops after `after` (every op for `None`), in order.
    pub(super) fn after(&self, after: Option<OpId>) -> impl Iterator<Item = (OpId, &O)> + '_ {
        self.slices_after(after).flatten().map(|(id, op)| (*id, op))
    }

    /// The ops after `after` (every op for `None`), in order, as slices.
    pub(super) fn slices_after(
        &self,
        after: Option<OpId>,
    ) -> impl Iterator<Item = &[(OpId, O)]> + '_ {
        let (from_chunk, from) = match after {
            None => (0, 0),
            Some(a) => {
                let at = self.chunks.partition_point(|c| ends_at_or_before(c, a));
                let from = self
                    .chunks
                    .get(at)
                    .map_or(0, |c| c.partition_point(|(id, _)| *id <= a));
                (at, from)
            }
        };
        self.chunks
            .range(from_chunk..)
            .enumerate()
            .map(move |(k, c)| &c[if k == 0 { from } else { 0 }..])
    }

    /// Take out every op at or before `upto` and hand each to `each`, in
    /// order.
    pub(super) fn drain_upto(&mut self, upto: OpId, mut each: impl FnMut(OpId, O)) {
        let whole = self.chunks.partition_point(|c| ends_at_or_before(c, upto));
        self.len -= self.chunks.range(..whole).map(Vec::len).sum::<usize>();
        for mut chunk in self.chunks.drain(..whole) {
            for (id, op) in chunk.drain(..) {
                each(id, op);
            }
            if self.spare.len() < SPARE && chunk.capacity() >= CHUNK {
                self.spare.push(chunk);
            }
        }
        if let Some(first) = self.chunks.front_mut() {
            let part = first.partition_point(|(id, _)| *id <= upto);
            self.len -= part;
            for (id, op) in first.drain(..part) {
                each(id, op);
            }
        }
    }

    /// Take out every op whose id `which` picks, in order; the rest stay.
    pub(super) fn take_where(&mut self, which: impl Fn(&OpId) -> bool) -> Vec<(OpId, O)> {
        if !self.ids().any(|id| which(&id)) {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = Self::default();
        for entry in std::mem::take(self) {
            if which(&entry.0) {
                taken.push(entry);
            } else {
                // In order: every insert is an append.
                kept.insert(entry.0, entry.1);
            }
        }
        *self = kept;
        taken
    }
}

/// Whether every id of `chunk` is below `id` (chunks are never empty; an
/// empty one would count as below everything).
fn ends_before<O>(chunk: &[(OpId, O)], id: OpId) -> bool {
    chunk.last().is_none_or(|(last, _)| *last < id)
}

/// Whether every id of `chunk` is at or below `id`.
fn ends_at_or_before<O>(chunk: &[(OpId, O)], id: OpId) -> bool {
    chunk.last().is_none_or(|(last, _)| *last <= id)
}

impl<O> IntoIterator for Chunks<O> {
    type Item = (OpId, O);
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::IntoIter<Vec<(OpId, O)>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::testing::{self, id, Sorted};
    use super::*;

    impl Sorted for Chunks<u64> {
        fn put(&mut self, id: OpId, op: u64, _late: bool) {
            self.insert(id, op);
        }
        testing::sorted_through_own_methods!(fold_by_closure);
        fn sound(&self) -> bool {
            // Chunks are small and not empty, and the galloping search
            // finds what halving does.
            self.chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() < 2 * CHUNK)
                && self.spare.iter().all(Vec::is_empty)
                && self.spare.len() <= SPARE
                && self
                    .chunks
                    .iter()
                    .filter_map(|c| c.first())
                    .all(|(first, _)| {
                        self.chunk_for(*first)
                            == self.chunks.partition_point(|c| ends_before(c, *first))
                    })
        }
    }

    #[test]
    fn reads_folds_and_removals_cut_where_they_should() {
        testing::reads_folds_and_removals_cut_where_they_should::<Chunks<u64>>();
    }

    #[test]
    fn late_ops_split_chunks_and_stay_in_order() {
        let mut log = Chunks::default();
        // Evens in order, then odds from the back: every odd is late, and
        // lands in the middle of some chunk.
        for l in (0..2000).step_by(2) {
            log.insert(id(l, 1, l), l);
        }
        for l in (1..2000u64).rev().step_by(2) {
            log.insert(id(l, 1, l), l);
        }
        assert_eq!(log.len(), 2000);
        let ops: Vec<_> = log.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, (0..2000).collect::<Vec<_>>());
        assert!(log.sound());
        let tail: Vec<_> = log
            .after(Some(id(1500, 1, 1500)))
            .map(|(_, op)| *op)
            .collect();
        assert_eq!(tail, (1501..2000).collect::<Vec<_>>());
        let mut folded = 0;
        log.drain_upto(id(999, 1, 999), |_, _| folded += 1);
        assert_eq!((folded, log.len()), (1000, 1000));
        assert_eq!(log.iter().next().map(|(_, op)| *op), Some(1000));
        assert!(log.sound());
    }

    #[test]
    fn folded_chunks_are_kept_for_the_next_pushes() {
        let n = 2 * SPARE as u64;
        let mut log = Chunks::default();
        for l in 0..(2 * n * CHUNK as u64) {
            log.insert(id(l, 1, l), l);
        }
        // A fold of more chunks than are kept.
        let upto = n * CHUNK as u64 - 1;
        log.drain_upto(id(upto, 1, upto), |_, _| {});
        assert_eq!(log.spare.len(), SPARE);
        assert!(log.spare.iter().all(|c| c.capacity() >= CHUNK));
        for l in 0..(3 * CHUNK as u64) {
            let l = 2 * n * CHUNK as u64 + l;
            log.insert(id(l, 1, l), l);
        }
        assert_eq!(log.spare.len(), SPARE - 3);
        assert_eq!(log.len(), (n as usize + 3) * CHUNK);
        assert!(log.sound());
    }

    proptest! {
        #[test]
        fn behaves_as_a_sorted_map(steps in testing::steps()) {
            testing::behaves_as_a_sorted_map::<Chunks<u64>>(steps)?;
        }
    }
}
