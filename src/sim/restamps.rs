//! The ids ops ended with: an op made before its node was admitted to the
//! replica set is re-stamped (a later Lamport time, the same origin and
//! seq) before it leaves its node, so the id [`Harness::shout`] returned
//! may not be the one the other replicas order it by.

use std::collections::HashMap;

use super::Harness;
use crate::proto::{NodeId, OpId, Replicated};

impl<T: Replicated> Harness<T> {
    /// The new id of every op of `name` re-stamped on its node's admission
    /// (and not lost since), by origin and seq; the last re-stamp wins (a
    /// node that lost its admission in a crash is admitted again).
    pub fn final_ids(&self, name: &str) -> HashMap<(NodeId, u64), OpId> {
        let mut ids = HashMap::new();
        for node in &self.nodes {
            if let Some(host) = node.objects.get(name) {
                for id in &host.lock().restamps {
                    ids.insert((id.origin, id.seq), *id);
                }
            }
        }
        ids
    }

    /// `ops` (as shouted) with the ids they ended with (see
    /// [`final_ids`](Self::final_ids)): an op never re-stamped keeps its
    /// id.
    pub fn with_final_ids<O: Clone>(&self, name: &str, ops: &[(OpId, O)]) -> Vec<(OpId, O)> {
        let ids = self.final_ids(name);
        ops.iter()
            .map(|(id, op)| {
                let id = ids.get(&(id.origin, id.seq)).copied().unwrap_or(*id);
                (id, op.clone())
            })
            .collect()
    }
}
