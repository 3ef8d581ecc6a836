//! The repeater's side of the overlay: joining, pinned links, dials, and
//! carrying out what HyParView asks (see [`overlay`](super::overlay)).

use std::fmt;
use std::hash::Hash;

use super::super::hyparview::Message as OverlayMsg;
use super::super::id::NodeId;
use super::super::message::Message;
use super::super::sampling::{Descriptor, Message as SampleMsg};
use super::super::time::Time;
use super::overlay::{Action, Outgoing};
use super::{link_to, OutEvent, RepeaterNode};

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// The address this node advertises for dialing, in the overlay's
    /// messages (set it before joining).
    pub fn set_addr(&mut self, addr: Option<String>) {
        if let Some(overlay) = &mut self.overlay {
            overlay.set_addr(addr);
        }
    }

    /// The active view: the neighbours this node keeps links to (with an
    /// overlay, HyParView's active view plus the pinned links; without,
    /// every linked peer).
    pub fn neighbors(&self) -> Vec<NodeId> {
        match &self.overlay {
            Some(overlay) => overlay.neighbors(),
            None => {
                let mut peers: Vec<NodeId> = self.links.values().copied().collect();
                peers.sort_unstable();
                peers.dedup();
                peers
            }
        }
    }

    /// Peer sampling's view: a small random sample of the live cluster,
    /// renewed every cycle (empty without an overlay with sampling, see
    /// [`RepeaterConfig::sampling`](super::RepeaterConfig::sampling)).
    pub fn peer_sample(&self) -> Vec<Descriptor<NodeId>> {
        self.overlay
            .as_ref()
            .map_or_else(Vec::new, super::overlay::Overlay::sample)
    }

    /// With an overlay: join it through `contact` (reachable at `addr`),
    /// typically a seed the driver has just linked to. Without one: does
    /// nothing.
    pub fn join(&mut self, now: Time, contact: NodeId, addr: Option<String>) {
        if let Some(overlay) = &mut self.overlay {
            overlay.join(now, contact, addr);
            self.pump_overlay(now);
        }
    }

    /// The application made `link` itself (an explicit `link`): with an
    /// overlay, its peer stays in the active view for as long as the link
    /// is up, and the overlay never closes it.
    pub fn pin(&mut self, now: Time, link: L) {
        if let (Some(overlay), Some(peer)) = (&mut self.overlay, self.links.get(&link)) {
            overlay.pin(now, *peer);
            self.pump_overlay(now);
        }
    }

    /// A [`OutEvent::Dial`] to `peer` failed.
    pub fn handle_dial_failed(&mut self, now: Time, peer: NodeId) {
        if let Some(overlay) = &mut self.overlay {
            overlay.handle_dial_failed(now, peer);
            self.pump_overlay(now);
        }
    }

    pub(super) fn handle_overlay(&mut self, now: Time, from: L, msg: OverlayMsg<NodeId>) {
        // Without an overlay, its messages are ignored: every node of a
        // cluster must make the same choice.
        if let (Some(overlay), Some(peer)) = (&mut self.overlay, self.links.get(&from)) {
            overlay.handle_message(now, *peer, msg);
            self.pump_overlay(now);
        }
    }

    pub(super) fn handle_sampling(&mut self, now: Time, from: L, msg: SampleMsg<NodeId>) {
        if let (Some(overlay), Some(peer)) = (&mut self.overlay, self.links.get(&from)) {
            overlay.handle_sample(now, *peer, msg);
            self.pump_overlay(now);
        }
    }

    /// Carry out what the overlay asks: messages, dials, closes, and the
    /// active view as membership and the failure detector see it.
    pub(super) fn pump_overlay(&mut self, now: Time) {
        let Some(overlay) = &mut self.overlay else {
            return;
        };
        let actions: Vec<Action> = std::iter::from_fn(|| overlay.poll_action()).collect();
        let mut changed = false;
        for action in actions {
            match action {
                Action::Send { peer, msg } => {
                    if let Some(to) = link_to(&self.links, peer) {
                        let msg = match msg {
                            Outgoing::View(msg) => Message::Overlay(msg),
                            Outgoing::Sample(msg) => Message::Sampling(msg),
                        };
                        self.out.push_back(OutEvent::Send { to, msg });
                    }
                }
                Action::Dial { peer, addr } => self.out.push_back(OutEvent::Dial { peer, addr }),
                Action::Close { peer } => {
                    for link in self.links_of(peer) {
                        self.out.push_back(OutEvent::Close { link });
                    }
                }
                Action::Neighbor { peer } => {
                    self.neighbor_changed(now, peer);
                    changed = true;
                }
            }
        }
        if let (true, Some(overlay)) = (changed, &self.overlay) {
            for (peer, addr) in overlay.known() {
                self.membership.learn(peer, addr);
            }
        }
    }

    /// `peer` may have joined or left the active view: its links join or
    /// leave the mesh, and the failure detector watches it or not. A peer
    /// dropped on purpose leaves the detector; one whose link failed stays
    /// until it is declared down.
    pub(super) fn neighbor_changed(&mut self, now: Time, peer: NodeId) {
        let active = self.overlay.as_ref().is_some_and(|o| o.is_neighbor(peer));
        let links = self.links_of(peer);
        for link in &links {
            if active {
                self.join_mesh(*link, peer);
            } else {
                self.leave_mesh(*link);
            }
        }
        if active && !links.is_empty() {
            self.swim.add_member(now, peer);
        } else if !active && !links.is_empty() {
            self.swim.remove_member(peer);
        }
        self.membership.set_active(peer, active);
    }

    /// `link` carries ops from now on; opens still waiting ask it too.
    pub(super) fn join_mesh(&mut self, link: L, peer: NodeId) {
        if self.mesh.insert(link, peer).is_some() {
            return;
        }
        self.tree.handle_link_up(link, peer);
        for (fetch, open) in &self.opens {
            if open.deadline.is_some() {
                self.out.push_back(OutEvent::Send {
                    to: link,
                    msg: Message::Fetch {
                        fetch: *fetch,
                        object: open.object.clone(),
                    },
                });
            }
        }
    }

    /// `link` carries no more ops (it may stay up for the overlay).
    pub(super) fn leave_mesh(&mut self, link: L) {
        if self.mesh.remove(&link).is_some() {
            self.anti_entropy.handle_link_down(link);
            self.tree.handle_link_down(link);
        }
    }

    pub(super) fn links_of(&self, peer: NodeId) -> Vec<L> {
        let links = self.links.iter().filter(|(_, p)| **p == peer);
        links.map(|(l, _)| *l).collect()
    }
}
