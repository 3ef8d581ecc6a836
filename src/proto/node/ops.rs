//! Ops from peers: dedupe, delivery to the replica, relay down the tree.
//!
//! Ops arrive in bursts: a link's reader hands the driver everything one
//! read brought, and most of it is ops on one object.
//! [`RepeaterNode::handle_messages`] cuts such a burst into runs of ops on
//! one object and treats each run at once: one route lookup, one call into
//! the replica ([`Host::deliver_run`], which takes the replica's lock once),
//! then the relay of each op. Per op, only the dedupe, the decode, the
//! apply and the relay remain.

use std::fmt;
use std::hash::Hash;

use super::super::host::{Host, HostError};
use super::super::message::{Message, OpFrame};
use super::super::replica::Applied;
use super::super::time::Time;
use super::{OutEvent, RepeaterNode};

/// The most ops handed to a replica in one call (its lock is held that
/// long, and application threads wait to read it).
const MAX_RUN: usize = 256;

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// Messages that arrived together on `from`, in order: the same as
    /// [`handle_message`](Self::handle_message) on each, but runs of ops on
    /// one object are delivered to its replica in one call.
    pub fn handle_messages(&mut self, now: Time, from: L, msgs: impl IntoIterator<Item = Message>) {
        self.note_heard(now, from);
        let mut run = std::mem::take(&mut self.run);
        let mut repairs = false;
        for msg in msgs {
            let (frame, repair) = match msg {
                Message::Op(frame) => (frame, false),
                Message::Repair(frame) => (frame, true),
                msg => {
                    self.handle_ops(now, from, &mut run, repairs);
                    self.handle_message(now, from, msg);
                    continue;
                }
            };
            let other = run
                .last()
                .is_some_and(|f: &OpFrame| f.object != frame.object);
            if other || repair != repairs || run.len() >= MAX_RUN {
                self.handle_ops(now, from, &mut run, repairs);
            }
            repairs = repair;
            run.push(frame);
        }
        self.handle_ops(now, from, &mut run, repairs);
        self.run = run;
    }

    /// A run of ops on one object from `from` (drained); `repair` if
    /// anti-entropy sent them.
    pub(super) fn handle_ops(&mut self, now: Time, from: L, run: &mut Vec<OpFrame>, repair: bool) {
        let Some(first) = run.first() else { return };
        self.clock = now;
        if !self.departed.is_empty() {
            // Their ops still arrive: the origins' nodes are not gone.
            for frame in run.iter() {
                self.departed.back(frame.id.origin);
            }
        }
        let slot = self.route(&first.object).slot;
        let Some(route) = self.objects.get_mut(&first.object) else {
            return;
        };
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.clear();
        fresh.extend(run.iter().map(|f| route.seen.insert(f.id.origin, f.id.seq)));
        let new = fresh.iter().filter(|f| **f).count();
        self.stats.ops_seen += new as u64;
        self.stats.duplicates += (run.len() - new) as u64;
        if let Some(host) = route.host.as_deref_mut() {
            let mut results = std::mem::take(&mut self.results);
            if new == run.len() {
                host.deliver_run(run, &mut results);
            } else {
                // Seen here before, but maybe not by the replica: this node
                // may have relayed an op before it held the object, and
                // anti-entropy repairs exactly such gaps. The replica drops
                // true duplicates without decoding them.
                for frame in run.iter() {
                    results.push(host.deliver(frame));
                }
            }
            for (frame, result) in run.iter().zip(results.drain(..)) {
                if let Err(error) = result {
                    self.out.push_back(OutEvent::Rejected {
                        from,
                        op: Some(frame.id),
                        error,
                    });
                }
            }
            self.results = results;
        } else if let Some(open) = self
            .opening
            .get(&first.object)
            .and_then(|f| self.opens.get_mut(f))
        {
            for (frame, _) in run.iter().zip(&fresh).filter(|(_, new)| **new) {
                if open.buffered.len() < self.config.max_buffered_ops {
                    open.buffered.push(frame.clone());
                } else {
                    self.stats.buffer_overflow += 1;
                }
            }
        }
        let frames = run.drain(..).zip(fresh.iter().copied());
        if repair {
            for (frame, new) in frames {
                self.tree.repaired(now, from, slot, frame, new);
            }
        } else {
            self.tree.received_run(now, from, slot, frames);
        }
        self.fresh = fresh;
    }
}

/// Apply `frame`, which `from` sent (`None`: buffered here), to `host`;
/// report a refusal.
pub(super) fn deliver<L>(
    out: &mut std::collections::VecDeque<OutEvent<L>>,
    host: &mut dyn Host,
    frame: &OpFrame,
    from: Option<L>,
) {
    if let (Err(error), Some(from)) = (host.deliver(frame), from) {
        out.push_back(OutEvent::Rejected {
            from,
            op: Some(frame.id),
            error,
        });
    }
}

/// What a replica did with each op of a run, in order.
pub(super) type RunResults = Vec<Result<Applied, HostError>>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use super::super::super::dissemination::SeqRun;
    use super::super::super::host::Repair;
    use super::super::super::id::{NodeId, ObjectKey, OpId};
    use super::super::super::message::{ObjectDigest, Span, StateFrame};
    use super::super::super::stability::AckTable;
    use super::super::super::version::VersionVector;
    use super::super::RepeaterConfig;
    use super::*;

    /// What a host was asked to do: `(run length, None)` for a
    /// `deliver_run`, `(0, Some(op))` for each op delivered.
    type Calls = Arc<Mutex<Vec<(usize, Option<OpId>)>>>;

    /// A host that records its calls and drops duplicates, as a replica does.
    struct Recorder {
        calls: Calls,
        seen: BTreeSet<OpId>,
    }

    impl Host for Recorder {
        fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError> {
            self.calls.lock().expect("lock").push((0, Some(frame.id)));
            Ok(if self.seen.insert(frame.id) {
                Applied::InOrder
            } else {
                Applied::Duplicate
            })
        }
        fn deliver_run(&mut self, frames: &[OpFrame], results: &mut RunResults) {
            self.calls.lock().expect("lock").push((frames.len(), None));
            results.extend(frames.iter().map(|f| self.deliver(f)));
        }
        fn export(&mut self) -> Result<StateFrame, HostError> {
            unreachable!("not asked in these tests")
        }
        fn admit(&mut self, _: NodeId) -> Result<Option<(NodeId, u64)>, HostError> {
            unreachable!("not asked in these tests")
        }
        fn wants_admission(&self) -> bool {
            false
        }
        fn may_evict(&self) -> bool {
            true
        }
        fn admitted_as(&mut self, _: NodeId, _: u64) -> bool {
            false
        }
        fn refresh(&mut self) -> u64 {
            0
        }
        fn digest(&self, _: &ObjectKey) -> ObjectDigest {
            unreachable!("not asked in these tests")
        }
        fn merge_acks(&mut self, _: &AckTable) {}
        fn repair(
            &self,
            _: &VersionVector,
            _: &[SeqRun],
            _: Option<&VersionVector>,
            _: Option<&Span>,
            _: usize,
        ) -> Result<Repair, HostError> {
            Ok(Repair::Ops(Vec::new()))
        }
        fn ops_in(&self, _: &[SeqRun], _: usize) -> Result<Vec<OpFrame>, HostError> {
            Ok(Vec::new())
        }
        fn rebase(&mut self, _: &StateFrame) -> Result<bool, HostError> {
            Ok(false)
        }
        fn awaits_admission(&self) -> bool {
            false
        }
        fn origins_of(&self, _: NodeId) -> Vec<NodeId> {
            Vec::new()
        }
        fn evict_gone(&mut self, _: &dyn Fn(NodeId) -> bool) -> usize {
            0
        }
        fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError> {
            Ok(Vec::new())
        }
    }

    fn op(object: &ObjectKey, seq: u64) -> OpFrame {
        OpFrame {
            object: object.clone(),
            id: OpId {
                lamport: seq,
                origin: NodeId::from_u64(9),
                seq,
            },
            payload: Bytes::from_static(&[0xf6]),
        }
    }

    #[test]
    fn a_burst_is_cut_into_runs_per_object_and_relayed_in_order() {
        let (a, b) = (ObjectKey::new("t", "a"), ObjectKey::new("t", "b"));
        let mut node: RepeaterNode<u32> =
            RepeaterNode::new(NodeId::from_u64(1), RepeaterConfig::default());
        let calls: [Calls; 2] = Default::default();
        for (key, calls) in [(&a, &calls[0]), (&b, &calls[1])] {
            let host = Recorder {
                calls: calls.clone(),
                seen: BTreeSet::new(),
            };
            node.host(key.clone(), Box::new(host));
        }
        let now = Time::ZERO;
        node.handle_link_up(now, 1, NodeId::from_u64(2), None);
        node.handle_link_up(now, 2, NodeId::from_u64(3), None);
        while node.poll_event().is_some() {}

        let hello = Message::Hello {
            node: NodeId::from_u64(2),
            addr: None,
            nonce: 0,
            pinned: false,
        };
        let burst = vec![
            Message::Op(op(&a, 1)),
            Message::Op(op(&a, 2)),
            Message::Op(op(&b, 1)),
            Message::Op(op(&b, 2)),
            Message::Op(op(&b, 1)), // a duplicate inside a run
            hello,
            Message::Op(op(&a, 3)),
        ];
        node.handle_messages(now, 1, burst);

        let seq = |s: u64| Some(op(&a, s).id);
        // `a`: a run of two in one call, then a run of one after the hello.
        assert_eq!(
            *calls[0].lock().expect("lock"),
            vec![(2, None), (0, seq(1)), (0, seq(2)), (1, None), (0, seq(3))]
        );
        // `b`: the run holds a duplicate, so it goes op by op; the replica
        // sees the duplicate and drops it.
        assert_eq!(
            *calls[1].lock().expect("lock"),
            vec![(0, seq(1)), (0, seq(2)), (0, seq(1))]
        );
        assert_eq!(node.stats().ops_seen, 5);
        assert_eq!(node.stats().duplicates, 1);
        // Every new op is pushed on to the other link, in arrival order.
        let mut pushed = Vec::new();
        while let Some(event) = node.poll_event() {
            let to = match &event {
                OutEvent::Multicast {
                    to,
                    msg: Message::Op(f),
                } => Some((to.clone(), f)),
                OutEvent::Send {
                    to,
                    msg: Message::Op(f),
                } => Some((vec![*to], f)),
                _ => None,
            };
            if let Some((to, f)) = to {
                assert_eq!(to, vec![2], "pushed on the other link only");
                pushed.push((f.object.name.to_string(), f.id.seq));
            }
        }
        let expect = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("a", 3)];
        assert_eq!(pushed, expect.map(|(o, s)| (o.to_string(), s)).to_vec());
    }
}
