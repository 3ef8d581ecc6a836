//! Membership basics: the node's lifecycle, its links' peers, and the peers
//! it has heard of.
//!
//! The lifecycle follows the seed protocol:
//!
//! ```text
//! INITIALIZED --start--> JOINING --first link up--> CONNECTED
//!                   \                                  |  ^
//!                    `--(no seeds)--> CONNECTED        |  | a link up
//!                                     last link down   v  |
//!                                                   DISCONNECTED
//! any --shutdown--> DESTROYED
//! ```
//!
//! A node started without seeds is the first of its cluster: it is
//! CONNECTED at once. On every new link both sides send a
//! [`Message::Welcome`](super::message::Message::Welcome) with the peers
//! they know, so a joiner learns the cluster through any single seed.
//!
//! Every peer known carries whether it is in the node's **active view**:
//! the neighbours the node keeps links to and gossips with. Without an
//! overlay that is every linked peer; with one (HyParView, see
//! [`hyparview`](super::hyparview)) it is the overlay's active view plus
//! the links the application made itself, and changes to it are reported
//! as [`MembershipEvent::NeighborUp`] and [`MembershipEvent::NeighborDown`].

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::id::NodeId;

/// Where a node is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Built, not started.
    Initialized,
    /// Started with seeds; no link is up yet.
    Joining,
    /// At least one link is up (or the node is the first of its cluster).
    Connected,
    /// Every link went down; the node keeps trying its links.
    Disconnected,
    /// Shut down.
    Destroyed,
}

/// A peer this node knows of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its node id.
    pub id: NodeId,
    /// The address it accepts links on, as it advertised it.
    pub addr: Option<String>,
    /// How many links to it are up.
    pub links: usize,
    /// Whether it is in this node's active view (a neighbour).
    pub active: bool,
}

/// What changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipEvent {
    /// The node's lifecycle state changed.
    State(NodeState),
    /// The first link to a peer came up.
    PeerUp(NodeId),
    /// The last link to a peer went down.
    PeerDown(NodeId),
    /// A peer was heard of (through a welcome) for the first time.
    Learned(NodeId),
    /// The failure detector suspects a peer: it missed its probes. It is
    /// declared [`Down`](Self::Down) unless it refutes in time.
    Suspected(NodeId),
    /// The failure detector declared a peer down.
    Down(NodeId),
    /// A peer that was suspected or down is alive again.
    Back(NodeId),
    /// With an overlay: a peer joined the node's active view.
    NeighborUp(NodeId),
    /// With an overlay: a peer left the node's active view.
    NeighborDown(NodeId),
}

/// The membership state machine.
#[derive(Debug)]
pub struct Membership {
    me: NodeId,
    state: NodeState,
    peers: BTreeMap<NodeId, PeerInfo>,
    /// Whether an overlay decides the active view (else: the linked peers).
    overlay: bool,
    out: VecDeque<MembershipEvent>,
}

impl Membership {
    /// A node that has not started.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            state: NodeState::Initialized,
            peers: BTreeMap::new(),
            overlay: false,
            out: VecDeque::new(),
        }
    }

    /// From now on an overlay decides the active view, through
    /// [`set_active`](Self::set_active).
    pub fn use_overlay(&mut self) {
        self.overlay = true;
    }

    /// The lifecycle state.
    pub const fn state(&self) -> NodeState {
        self.state
    }

    /// Every peer known, linked or only heard of, by id.
    pub fn view(&self) -> Vec<PeerInfo> {
        self.peers.values().cloned().collect()
    }

    /// The active view: the neighbours, by id.
    pub fn active_view(&self) -> Vec<PeerInfo> {
        self.peers.values().filter(|p| p.active).cloned().collect()
    }

    /// With an overlay: whether `peer` is in the active view now. Reports
    /// a change as a neighbour event.
    pub fn set_active(&mut self, peer: NodeId, active: bool) {
        if peer == self.me {
            return;
        }
        self.learn(peer, None);
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if entry.active != active {
            entry.active = active;
            self.out.push_back(if active {
                MembershipEvent::NeighborUp(peer)
            } else {
                MembershipEvent::NeighborDown(peer)
            });
        }
    }

    /// The node started; `seeds` is whether it has seeds to join through.
    pub fn handle_start(&mut self, seeds: bool) {
        if self.state == NodeState::Initialized {
            self.set(if seeds {
                NodeState::Joining
            } else {
                NodeState::Connected
            });
        }
    }

    /// A link to `peer` came up.
    pub fn handle_link_up(&mut self, peer: NodeId, addr: Option<String>) {
        let known = self.peers.contains_key(&peer);
        let entry = self.peers.entry(peer).or_insert(PeerInfo {
            id: peer,
            addr: None,
            links: 0,
            active: false,
        });
        if addr.is_some() {
            entry.addr = addr;
        }
        entry.links += 1;
        if !self.overlay {
            entry.active = true;
        }
        if entry.links == 1 {
            if !known {
                self.out.push_back(MembershipEvent::Learned(peer));
            }
            self.out.push_back(MembershipEvent::PeerUp(peer));
        }
        if matches!(self.state, NodeState::Joining | NodeState::Disconnected) {
            self.set(NodeState::Connected);
        }
    }

    /// A link to `peer` went down.
    pub fn handle_link_down(&mut self, peer: NodeId) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        if entry.links == 0 {
            return;
        }
        entry.links -= 1;
        if entry.links == 0 {
            if !self.overlay {
                entry.active = false;
            }
            self.out.push_back(MembershipEvent::PeerDown(peer));
            let linked = self.peers.values().any(|p| p.links > 0);
            if !linked && self.state == NodeState::Connected {
                self.set(NodeState::Disconnected);
            }
        }
    }

    /// A peer told us of the peers it knows.
    pub fn handle_welcome(&mut self, peers: Vec<(NodeId, Option<String>)>) {
        for (id, addr) in peers {
            self.learn(id, addr);
        }
    }

    /// `id` exists and listens on `addr`, if given.
    pub fn learn(&mut self, id: NodeId, addr: Option<String>) {
        if id == self.me {
            return;
        }
        match self.peers.get_mut(&id) {
            Some(known) => {
                if known.addr.is_none() {
                    known.addr = addr;
                }
            }
            None => {
                let info = PeerInfo {
                    id,
                    addr,
                    links: 0,
                    active: false,
                };
                self.peers.insert(id, info);
                self.out.push_back(MembershipEvent::Learned(id));
            }
        }
    }

    /// What to tell a new peer: every peer we know, with its address.
    pub fn welcome(&self) -> Vec<(NodeId, Option<String>)> {
        self.peers
            .values()
            .map(|p| (p.id, p.addr.clone()))
            .collect()
    }

    /// The node shut down.
    pub fn handle_shutdown(&mut self) {
        self.set(NodeState::Destroyed);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.out.pop_front()
    }

    fn set(&mut self, state: NodeState) {
        if self.state != state && self.state != NodeState::Destroyed {
            self.state = state;
            self.out.push_back(MembershipEvent::State(state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Membership) -> Vec<MembershipEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn lifecycle_through_a_seed() {
        let (me, seed, other) = (
            NodeId::from_u64(1),
            NodeId::from_u64(2),
            NodeId::from_u64(3),
        );
        let mut m = Membership::new(me);
        assert_eq!(m.state(), NodeState::Initialized);
        m.handle_start(true);
        assert_eq!(
            drain(&mut m),
            vec![MembershipEvent::State(NodeState::Joining)]
        );
        m.handle_link_up(seed, Some("seed:1".into()));
        assert_eq!(
            drain(&mut m),
            vec![
                MembershipEvent::Learned(seed),
                MembershipEvent::PeerUp(seed),
                MembershipEvent::State(NodeState::Connected)
            ]
        );
        m.handle_welcome(vec![(other, Some("other:1".into())), (me, None)]);
        assert_eq!(drain(&mut m), vec![MembershipEvent::Learned(other)]);
        assert_eq!(m.view().len(), 2);
        m.handle_link_down(seed);
        assert_eq!(
            drain(&mut m),
            vec![
                MembershipEvent::PeerDown(seed),
                MembershipEvent::State(NodeState::Disconnected)
            ]
        );
        m.handle_link_up(seed, None);
        assert_eq!(
            drain(&mut m),
            vec![
                MembershipEvent::PeerUp(seed),
                MembershipEvent::State(NodeState::Connected)
            ]
        );
        m.handle_shutdown();
        m.handle_link_down(seed);
        assert_eq!(m.state(), NodeState::Destroyed);
    }

    #[test]
    fn a_node_without_seeds_is_connected_at_once_and_counts_links() {
        let mut m = Membership::new(NodeId::from_u64(1));
        m.handle_start(false);
        assert_eq!(m.state(), NodeState::Connected);
        let peer = NodeId::from_u64(2);
        m.handle_link_up(peer, None);
        m.handle_link_up(peer, None);
        drain(&mut m);
        m.handle_link_down(peer);
        assert!(drain(&mut m).is_empty(), "one of two links is still up");
        m.handle_link_down(peer);
        assert_eq!(m.state(), NodeState::Disconnected);
    }
}
