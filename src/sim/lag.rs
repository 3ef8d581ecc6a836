//! Stability lag: how long after its shout an op became stable (folded into
//! the snapshot) at every live node.
//!
//! An op is stable at a node once the node folded it; the watch samples
//! what every live node folded of each origin, per object, at a fixed
//! virtual interval, and marks an op stable everywhere at the first sample
//! where every live node folded its origin's ops up to its seq. (By origin
//! and seq, not by the op's id: an op made before its node was admitted to
//! the replica set is re-stamped, a later Lamport time, before it leaves.)
//! The figures are therefore accurate to the sampling interval.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::Harness;
use super::report::Percentiles;
use super::tally::Tally;
use crate::proto::time::Time;
use crate::proto::{NodeId, OpId};

/// One watched op.
#[derive(Clone, Copy, Debug)]
struct Watched {
    id: OpId,
    object: usize,
    shouted: Time,
    stable_at: Option<Time>,
}

/// Samples the stable frontiers of every live node.
#[derive(Debug)]
pub(super) struct StabilityWatch {
    names: Vec<String>,
    ops: Vec<Watched>,
    /// Index of the first op not known stable everywhere (the ops before it
    /// are); ops are checked from here on.
    unstable: usize,
    every: Duration,
    last: Option<Time>,
}

impl StabilityWatch {
    /// A watch over the objects `names`, sampling every `every`.
    pub(super) fn new(names: &[String], every: Duration) -> Self {
        Self {
            names: names.to_vec(),
            ops: Vec::new(),
            unstable: 0,
            every,
            last: None,
        }
    }

    /// Op `id` on object number `object` was shouted at `at`.
    pub(super) fn shouted(&mut self, id: OpId, object: usize, at: Time) {
        self.ops.push(Watched {
            id,
            object,
            shouted: at,
            stable_at: None,
        });
    }

    /// Whether every watched op is stable at every live node.
    pub(super) fn all_stable(&self) -> bool {
        self.unstable == self.ops.len()
    }

    /// Run `h` for `duration`, sampling as it goes.
    pub(super) fn run_for(&mut self, h: &mut Harness<Tally>, duration: Duration) {
        let end = h.now() + duration;
        loop {
            let due = self.last.map_or(h.now(), |t| t + self.every);
            if due > end {
                break;
            }
            if due > h.now() {
                h.run_for(due.since(h.now()));
            }
            self.sample(h);
        }
        if end > h.now() {
            h.run_for(end.since(h.now()));
        }
    }

    /// Read every live node's frontiers now.
    fn sample(&mut self, h: &Harness<Tally>) {
        let now = h.now();
        self.last = Some(now);
        if self.all_stable() {
            return;
        }
        // Per object, per origin of an op not yet stable everywhere: the
        // lowest seq folded over the live nodes (0 where a live node lacks
        // the object).
        let mut lowest: Vec<BTreeMap<NodeId, u64>> = vec![BTreeMap::new(); self.names.len()];
        for w in self.ops[self.unstable..]
            .iter()
            .filter(|w| w.stable_at.is_none())
        {
            lowest[w.object].insert(w.id.origin, u64::MAX);
        }
        for (object, name) in self.names.iter().enumerate() {
            let origins = &mut lowest[object];
            if origins.is_empty() {
                continue;
            }
            for i in (0..h.len()).filter(|i| h.is_alive(*i)) {
                let host = h.host_of(i, name);
                let host = host.as_ref().map(|host| host.lock());
                for (origin, low) in origins.iter_mut() {
                    let folded = host.as_ref().map_or(0, |h| h.replica.folded_upto(origin));
                    *low = (*low).min(folded);
                }
            }
        }
        for w in &mut self.ops[self.unstable..] {
            let folded = lowest[w.object].get(&w.id.origin).copied().unwrap_or(0);
            if w.stable_at.is_none() && folded >= w.id.seq {
                w.stable_at = Some(now);
            }
        }
        while self
            .ops
            .get(self.unstable)
            .is_some_and(|w| w.stable_at.is_some())
        {
            self.unstable += 1;
        }
    }

    /// The lag of the ops stable everywhere, in milliseconds, and how many
    /// are not.
    pub(super) fn lag(&self) -> (Percentiles, u64) {
        let lags = self
            .ops
            .iter()
            .filter_map(|w| {
                w.stable_at
                    .map(|t| t.since(w.shouted).as_secs_f64() * 1000.0)
            })
            .collect();
        let unstable = self.ops.iter().filter(|w| w.stable_at.is_none()).count();
        (Percentiles::of(lags), unstable as u64)
    }
}
