//! The harness's faults: partitions, loss, crashes (with or without the
//! peers noticing) and restarts.

use rand::Rng;

use super::{overlay, Harness};
use crate::proto::{ObjectKey, Replicated};

impl<T: Replicated> Harness<T> {
    /// Split the nodes into `groups`: messages between groups are lost
    /// (links stay up, as a connection does until it times out).
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g {
                    for &b in h {
                        self.blocked.insert((a.min(b), a.max(b)));
                    }
                }
            }
        }
    }

    /// Change the chance that a message is lost, from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// End every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Crash node `node`: its links go down at its peers, messages to it are
    /// lost, its timers stop. Its replicas survive, as a durable store
    /// keeps them; everything else it knew is lost.
    pub fn crash(&mut self, node: usize) {
        if !self.nodes[node].alive {
            return;
        }
        self.nodes[node].alive = false;
        self.cancel_timer(node);
        let peers: Vec<usize> = self.nodes[node].links.keys().copied().collect();
        for peer in peers {
            self.nodes[peer].proto.handle_link_down(self.now, node);
            self.flush(peer);
        }
    }

    /// Crash node `node` without its peers noticing (a host that vanished:
    /// no connection reset). Its links stay up at its peers until their
    /// failure detectors or idle timeouts act; messages to it are lost.
    pub fn crash_silently(&mut self, node: usize) {
        self.nodes[node].alive = false;
        self.cancel_timer(node);
    }

    /// Restart a crashed node: a fresh routing state, its replicas loaded
    /// back, its links reconnected (peers that still held the old
    /// connection see it go down first).
    pub fn restart(&mut self, node: usize) {
        if self.nodes[node].alive {
            return;
        }
        let stale: Vec<usize> = self.nodes[node].links.keys().copied().collect();
        for peer in stale {
            if self.nodes[peer].alive {
                let now = self.now;
                self.nodes[peer].proto.handle_link_down(now, node);
                self.flush(peer);
            }
        }
        self.reload_from_disk(node);
        let me = self.id(node);
        let seed = self.rng.random();
        let n = &mut self.nodes[node];
        n.proto = overlay::node_proto(me, &self.config.repeater, node, Some(seed));
        n.alive = true;
        for (name, shared) in &n.objects {
            let key = ObjectKey::new(T::TYPE_TAG, name);
            let host =
                super::durable::host_box(self.durable.as_ref(), node, key.clone(), shared.clone());
            n.proto.host(key, host);
        }
        if self.config.repeater.overlay.is_some() {
            // The overlay remade its links; the restarted node joins again.
            self.rejoin(node);
            return;
        }
        let peers: Vec<usize> = n.links.keys().copied().collect();
        for peer in peers {
            if self.nodes[peer].alive {
                let idp = self.id(peer);
                let now = self.now;
                self.nodes[node].proto.handle_link_up(now, peer, idp, None);
                self.nodes[peer].proto.handle_link_up(now, node, me, None);
                self.flush(peer);
            }
        }
        self.flush(node);
    }
}
