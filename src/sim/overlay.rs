//! The harness's side of the overlay: nodes advertise `sim:<index>`, dials
//! complete after a round trip (or fail when the peer is down or cut off),
//! and a restarted node joins again through its contact.

use super::{Event, Harness};
use crate::proto::node::{OverlayStats, RepeaterConfig, RepeaterNode};
use crate::proto::{NodeId, Replicated};

/// How long a node whose join contact cannot be reached waits before it
/// tries again.
const JOIN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The address node `index` advertises.
fn addr_of(index: usize) -> String {
    format!("sim:{index}")
}

/// A fresh routing state for node `index` (seeded from its id, or `seed`).
pub(super) fn node_proto(
    me: NodeId,
    config: &RepeaterConfig,
    index: usize,
    seed: Option<u64>,
) -> RepeaterNode<usize> {
    let mut proto = match seed {
        Some(seed) => RepeaterNode::with_seed(me, config.clone(), seed),
        None => RepeaterNode::new(me, config.clone()),
    };
    proto.set_addr(Some(addr_of(index)));
    proto
}

impl<T: Replicated> Harness<T> {
    /// With an overlay: node `node` joins it through `contact` (linked at
    /// once if both are up and not cut off, as a driver links its seed;
    /// tried again every second while the contact cannot be reached, as a
    /// driver retries its seeds). A restarted node joins through the same
    /// contact again.
    pub fn join(&mut self, node: usize, contact: usize) {
        self.nodes[node].contact = Some(contact);
        if !self.nodes[contact].alive || self.is_blocked(node, contact) {
            let at = self.now + JOIN_RETRY;
            self.queue.push(at, Event::Join { node });
            return;
        }
        self.link(node, contact);
        let now = self.now;
        let id = self.id(contact);
        self.nodes[node].proto.join(now, id, Some(addr_of(contact)));
        self.flush(node);
    }

    /// A join retry is due: try the contact again if `node` is up and still
    /// alone (a restart since has joined again on its own).
    pub(super) fn retry_join(&mut self, node: usize) {
        let alone = self.nodes[node].links.is_empty();
        if let (true, true, Some(contact)) =
            (self.nodes[node].alive, alone, self.nodes[node].contact)
        {
            self.join(node, contact);
        }
    }

    /// Node `node`'s active view, as node indices.
    pub fn neighbors(&self, node: usize) -> Vec<usize> {
        let ids = self.nodes[node].proto.neighbors();
        ids.into_iter().filter_map(|id| self.index_of(id)).collect()
    }

    /// Node `node`'s peer sample, as node indices (see
    /// [`RepeaterNode::peer_sample`]).
    pub fn peer_sample(&self, node: usize) -> Vec<usize> {
        let sample = self.nodes[node].proto.peer_sample();
        sample
            .iter()
            .filter_map(|d| self.index_of(d.peer))
            .collect()
    }

    /// Node `node`'s overlay counters.
    pub fn overlay_stats(&self, node: usize) -> OverlayStats {
        self.nodes[node].proto.gossip_stats().overlay
    }

    /// How many parts the overlay of the live nodes is in: the connected
    /// components of their active views (a link counts if either end has
    /// the other as a neighbour). One when every live node can reach every
    /// other over the overlay; more means anti-entropy, which runs over
    /// links, cannot repair across the gap.
    pub fn overlay_parts(&self) -> usize {
        let index: std::collections::HashMap<NodeId, usize> =
            (0..self.nodes.len()).map(|i| (self.id(i), i)).collect();
        let mut parent: Vec<usize> = (0..self.nodes.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (a, node) in self.nodes.iter().enumerate() {
            if !node.alive {
                continue;
            }
            for id in node.proto.neighbors() {
                let Some(&b) = index.get(&id) else { continue };
                if self.nodes[b].alive {
                    let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                    parent[ra] = rb;
                }
            }
        }
        let live = (0..self.nodes.len()).filter(|i| self.nodes[*i].alive);
        let roots: std::collections::BTreeSet<usize> = live.map(|i| root(&mut parent, i)).collect();
        roots.len()
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.id(*i) == id)
    }

    fn is_blocked(&self, a: usize, b: usize) -> bool {
        self.blocked.contains(&(a.min(b), a.max(b)))
    }

    /// A restarted node forgets the links it had (its peers saw them go
    /// down at the crash) and joins again.
    pub(super) fn rejoin(&mut self, node: usize) {
        let stale: Vec<usize> = std::mem::take(&mut self.nodes[node].links)
            .into_keys()
            .collect();
        for peer in stale {
            self.nodes[peer].links.remove(&node);
        }
        if let Some(contact) = self.nodes[node].contact {
            self.join(node, contact);
        }
        self.flush(node);
    }

    /// Node `node` asked to dial `peer` at `addr`: the answer comes after
    /// a round trip.
    pub(super) fn dial(&mut self, node: usize, peer: NodeId, addr: &str) {
        let target = addr
            .strip_prefix("sim:")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < self.nodes.len() && self.id(*i) == peer);
        match target {
            Some(to) => {
                let at = self.now + self.latency(node, to) + self.latency(to, node);
                self.queue.push(at, Event::Connect { from: node, to });
            }
            None => {
                let now = self.now;
                self.nodes[node].proto.handle_dial_failed(now, peer);
            }
        }
    }

    pub(super) fn connect(&mut self, from: usize, to: usize) {
        if !self.nodes[from].alive {
            return;
        }
        if self.nodes[to].alive && !self.is_blocked(from, to) {
            self.link(from, to);
        } else {
            let now = self.now;
            let id = self.id(to);
            self.nodes[from].proto.handle_dial_failed(now, id);
            self.flush(from);
        }
    }

    pub(super) fn close(&mut self, from: usize, to: usize) {
        if self.nodes[from].links.contains_key(&to) {
            self.unlink(from, to);
            self.flush(from);
            self.flush(to);
        }
    }
}
