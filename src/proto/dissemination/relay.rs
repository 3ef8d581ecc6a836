//! How an op travels on from here: pushed down its origin's tree to the
//! eager links, announced to the lazy ones in runs, and kept to answer
//! grafts unless the object's replica is here to answer them. Ops that
//! arrive together are relayed together: the tree is consulted once per
//! run of one origin's ops, and a run of consecutive seqs is one pending
//! announcement.

use std::hash::Hash;

use smallvec::smallvec;

use super::super::id::NodeId;
use super::super::message::{Message, OpFrame};
use super::super::time::Time;
use super::trees::{Lazy, Shortcut};
use super::{Dissemination, Group, ObjectRuns, SeqRun, Slot, Targets, TreeMsg};

impl<L: Copy + Ord + Hash + std::fmt::Debug> Dissemination<L> {
    /// An op made here.
    #[cfg(test)]
    pub(crate) fn broadcast(&mut self, now: Time, slot: Slot, frame: OpFrame) {
        self.broadcast_run(now, slot, std::iter::once(frame));
    }

    /// Ops made here, in order, on the object of `slot`: the same as
    /// [`broadcast`](Self::broadcast) on each, with the tree consulted once
    /// per run of one origin.
    pub(crate) fn broadcast_run(
        &mut self,
        now: Time,
        slot: Slot,
        frames: impl IntoIterator<Item = OpFrame>,
    ) {
        let mut frames = frames.into_iter().peekable();
        while let Some(frame) = frames.next() {
            let origin = frame.id.origin;
            let run = std::iter::once(frame).chain(std::iter::from_fn(|| {
                frames.next_if(|f| f.id.origin == origin)
            }));
            self.relay(now, slot, None, run);
        }
    }

    /// An op arrived from `from`; `first` is whether it is new here.
    #[cfg(test)]
    pub(crate) fn received(&mut self, now: Time, from: L, slot: Slot, frame: OpFrame, first: bool) {
        self.received_run(now, from, slot, std::iter::once((frame, first)));
    }

    /// Ops that arrived together from `from` on the object of `slot`, in
    /// order, each with whether it is new here: the same as
    /// [`received`](Self::received) on each, with the tree consulted once
    /// per run of new ops of one origin (a burst is mostly one run).
    pub(crate) fn received_run(
        &mut self,
        now: Time,
        from: L,
        slot: Slot,
        frames: impl IntoIterator<Item = (OpFrame, bool)>,
    ) {
        let neighbor = self.is_neighbor(&from);
        let mut frames = frames.into_iter().peekable();
        while let Some((frame, first)) = frames.next() {
            let origin = frame.id.origin;
            if !first {
                self.duplicate(now, from, origin, neighbor);
                continue;
            }
            // The tree's answer to a first copy of `origin`'s op over
            // `from` is the same for each op of the run: the first one
            // moved the links, if anything moved.
            let lazy = if neighbor {
                self.first_copy(now, from, origin)
            } else {
                None
            };
            if let Some(from) = lazy {
                let msg = Message::Tree(TreeMsg::Lazy(vec![origin]));
                self.out.push_back((smallvec![from], msg, 0));
                // Its ops still on their way over `from` arrive as
                // duplicates: they need no prune of their own.
                self.note_pruned(now, from, origin);
            }
            let run = std::iter::once(frame).chain(std::iter::from_fn(|| {
                frames
                    .next_if(|(f, first)| *first && f.id.origin == origin)
                    .map(|(f, _)| f)
            }));
            self.relay(now, slot, Some(from), run);
        }
    }

    /// The first copy of an op of `origin` came over `from`, a neighbour:
    /// the tree's change, if any, and the link to tell it is lazy now.
    fn first_copy(&mut self, now: Time, from: L, origin: NodeId) -> Option<L> {
        match self.trees.first_copy(now, origin, from) {
            None => None,
            Some(Shortcut::Take { direct, from }) => {
                self.stats.shortcuts += 1;
                let eager = Message::Tree(TreeMsg::Eager(vec![origin]));
                self.out.push_back((smallvec![direct], eager, 0));
                Some(from)
            }
            // Told once per prune interval, as a prune is.
            Some(Shortcut::Leave(from)) => self.quiet(now, from, origin).then_some(from),
        }
    }

    /// A new op came over `from`: it is no longer missing.
    fn arrived(&mut self, now: Time, from: L, slot: Slot, frame: &OpFrame) {
        if self.missing.is_empty() {
            return;
        }
        let origin = frame.id.origin;
        if self
            .no_longer_missing((slot, origin), frame.id.seq)
            .is_some_and(|grafts| grafts > 0)
        {
            self.grafted.insert((origin, from), now);
        }
    }

    /// Push each op of a run of one origin's new ops to the eager links
    /// and announce the run on the lazy ones (but `from`, which sent them:
    /// they are no longer missing). A lazy link that announced the ops too
    /// hears of them again: harmless (it holds them), and cheaper than
    /// remembering who announced which op.
    fn relay(
        &mut self,
        now: Time,
        slot: Slot,
        from: Option<L>,
        run: impl Iterator<Item = OpFrame>,
    ) {
        let mut run = run.peekable();
        let Some(origin) = run.peek().map(|f| f.id.origin) else {
            return;
        };
        let (eager, lazy) = self.trees.split(now, origin, from);
        // Announced as spans of consecutive seqs: one pending run each.
        let mut span: Option<(u64, u64)> = None;
        for frame in run {
            if let Some(from) = from {
                self.arrived(now, from, slot, &frame);
            }
            let seq = frame.id.seq;
            span = match span {
                Some((first, last)) if last.checked_add(1) == Some(seq) => Some((first, seq)),
                Some((first, last)) => {
                    self.announce(now, (slot, origin), (first, last), &lazy);
                    Some((seq, seq))
                }
                None => Some((seq, seq)),
            };
            self.push(slot, frame, &eager);
        }
        if let Some(span) = span {
            self.announce(now, (slot, origin), span, &lazy);
        }
    }

    /// [`relay`](Self::relay) of one op to links already chosen.
    pub(super) fn relay_one(
        &mut self,
        now: Time,
        slot: Slot,
        frame: OpFrame,
        eager: &Targets<L>,
        lazy: &Lazy<L>,
    ) {
        let span = (frame.id.seq, frame.id.seq);
        self.announce(now, (slot, frame.id.origin), span, lazy);
        self.push(slot, frame, eager);
    }

    /// Queue the announcement of seqs `first..=last` of `group` on each
    /// lazy link; flush when enough are pending.
    fn announce(&mut self, now: Time, group: Group, (first, last): (u64, u64), lazy: &Lazy<L>) {
        if lazy.is_empty() {
            return;
        }
        for &link in lazy {
            let runs = self.pending.entry(link).or_default();
            // Ops of one group mostly come in order: extend a recent run.
            let recent = runs.iter_mut().rev().take(8);
            match recent
                .into_iter()
                .find(|(g, _, end)| *g == group && end.checked_add(1) == Some(first))
            {
                Some(run) => run.2 = last,
                None => {
                    runs.push((group, first, last));
                    self.pending_runs += 1;
                }
            }
        }
        if self.pending_runs >= self.config.ihave_batch.max(1) {
            self.flush();
        } else if self.flush_at.is_none() {
            self.flush_at = Some(now + self.config.ihave_interval);
        }
    }

    /// Push `frame` to the eager links; keep a copy to answer grafts
    /// unless the object's replica is here to answer them.
    fn push(&mut self, slot: Slot, frame: OpFrame, eager: &Targets<L>) {
        let cached = (!self.is_served(slot)).then(|| frame.clone());
        let group = (slot, frame.id.origin);
        if !eager.is_empty() {
            let n = eager.len() as u64;
            self.stats.pushed += n;
            self.out.push_back((eager.clone(), Message::Op(frame), n));
        }
        if let Some(frame) = cached {
            self.keep(group, frame);
        }
    }

    fn is_served(&self, slot: Slot) -> bool {
        self.served.get(slot as usize) == Some(&true)
    }

    pub(super) fn flush(&mut self) {
        self.flush_at = None;
        self.pending_runs = 0;
        for (link, mut runs) in std::mem::take(&mut self.pending) {
            runs.sort_unstable();
            let mut objects: Vec<ObjectRuns> = Vec::new();
            let mut last: Option<(Group, u64)> = None;
            for (group, first, end) in runs {
                self.stats.ops_announced = self
                    .stats
                    .ops_announced
                    .saturating_add((end - first).saturating_add(1));
                let (slot, origin) = group;
                match objects.last_mut() {
                    // The same group, contiguous or overlapping: one run.
                    Some(o)
                        if last
                            .is_some_and(|(g, l)| g == group && first <= l.saturating_add(1)) =>
                    {
                        if let Some(run) = o.runs.last_mut() {
                            run.last = run.last.max(end);
                        }
                    }
                    Some(o) if last.is_some_and(|(g, _)| g.0 == slot) => {
                        o.runs.push(SeqRun {
                            origin,
                            first,
                            last: end,
                        });
                    }
                    _ => objects.push(ObjectRuns {
                        object: self.keys[slot as usize].clone(),
                        runs: vec![SeqRun {
                            origin,
                            first,
                            last: end,
                        }],
                    }),
                }
                let top = last
                    .filter(|(g, _)| *g == group)
                    .map_or(end, |(_, l)| l.max(end));
                last = Some((group, top));
            }
            if !objects.is_empty() {
                self.stats.ihaves_sent += 1;
                self.out
                    .push_back((smallvec![link], Message::Tree(TreeMsg::IHave(objects)), 0));
            }
        }
    }

    fn keep(&mut self, group: Group, frame: OpFrame) {
        if self.frames.len() >= self.config.max_cached_ops.max(1) {
            self.frames.pop_front();
        }
        self.frames.push_back((group, frame));
    }
}
