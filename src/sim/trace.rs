//! What the simulator records of each traced op: when it was shouted, when
//! and over how many hops each node first got a copy, and how many copies
//! crossed links.

use rustc_hash::FxHashMap;

use crate::proto::id::NodeId;
use crate::proto::time::Time;
use crate::proto::OpId;

/// One op's journey.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// The node that shouted it.
    pub origin: usize,
    /// When.
    pub at: Time,
    /// Per node: 0 if no copy arrived yet, else the hop count of the first
    /// copy plus one (the origin holds 1).
    hops: Vec<u8>,
    /// Nodes with a copy, the origin included.
    pub reached: usize,
    /// When the last of them got its first copy.
    pub last_at: Time,
    /// The largest hop count of a first copy.
    pub max_hop: u32,
    /// Copies that crossed a link (every `Op` message delivered).
    pub copies: u64,
}

impl OpRecord {
    /// Whether node `node` got a copy over a link, or shouted the op.
    pub fn has(&self, node: usize) -> bool {
        self.hops.get(node).is_some_and(|h| *h > 0)
    }
}

/// The records of every traced op, by origin and seq: an op made before
/// its node was admitted to the replica set is re-stamped (a new Lamport
/// time) before it leaves, and is traced from its shout all the same.
#[derive(Debug, Default)]
pub struct OpTrace {
    ops: FxHashMap<(NodeId, u64), OpRecord>,
    /// Op messages delivered for ops not traced (shouted before tracing).
    pub untraced_copies: u64,
}

impl OpTrace {
    /// `origin` (one of `n` nodes) shouted `id` at `at`.
    pub(super) fn shouted(&mut self, id: OpId, origin: usize, n: usize, at: Time) {
        let mut hops = vec![0u8; n];
        hops[origin] = 1;
        self.ops.insert(
            (id.origin, id.seq),
            OpRecord {
                origin,
                at,
                hops,
                reached: 1,
                last_at: at,
                max_hop: 0,
                copies: 0,
            },
        );
    }

    /// A copy of `id` crossed from `from` to `to`, arriving at `at`.
    pub(super) fn delivered(&mut self, id: &OpId, from: usize, to: usize, at: Time) {
        let Some(r) = self.ops.get_mut(&(id.origin, id.seq)) else {
            self.untraced_copies += 1;
            return;
        };
        r.copies += 1;
        if to >= r.hops.len() || r.hops[to] > 0 {
            return;
        }
        // A relay holds its own first copy's hop count; a node that
        // forwards an op it got by state transfer counts as one hop on.
        let before = r.hops.get(from).copied().filter(|h| *h > 0).unwrap_or(1);
        let hop = before.saturating_add(1);
        r.hops[to] = hop;
        r.reached += 1;
        r.last_at = r.last_at.max(at);
        r.max_hop = r.max_hop.max(u32::from(hop - 1));
    }

    /// Every traced op, by `(origin, seq)`, in no particular order.
    pub fn ops(&self) -> impl Iterator<Item = (&(NodeId, u64), &OpRecord)> {
        self.ops.iter()
    }

    /// How many ops are traced.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op is traced.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
