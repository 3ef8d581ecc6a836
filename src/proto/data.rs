//! Raw data spreads (the seed protocol's DIRECT / RANDOM / BROADCAST):
//! bytes for the application, outside any replicated object.
//!
//! * `Direct(peer)`: to one linked peer.
//! * `Random(k)`: to `k` linked peers drawn at random (fewer if there are
//!   fewer links); they do not relay it.
//! * `Broadcast`: to every node reachable through the links, each once:
//!   relayed like an op and deduplicated by `(sender, number)`.
//!
//! Every data event carries a [`VectorClock`] (the Go seed's feature): the
//! sender counts its own data events and merges the clocks of those it
//! received, and stamps each frame with its clock restricted to itself and
//! the peers in its view. A receiver compares two stamps to tell whether
//! one event happened before the other or they are concurrent.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rand::seq::IteratorRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::id::NodeId;
use super::version::SeenSet;

/// Where a piece of data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Spread {
    /// To this linked peer.
    Direct(NodeId),
    /// To this many linked peers, drawn at random.
    Random(usize),
    /// To every node reachable through the links.
    Broadcast,
}

/// Data on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFrame {
    /// The node that sent it.
    pub from: NodeId,
    /// The sender's counter, from 1 (receivers deduplicate by it).
    pub n: u64,
    /// Whether receivers relay it (a broadcast).
    pub relay: bool,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The sender's vector clock when it sent this (see the module docs).
    pub clock: VectorClock,
}

/// A vector clock over nodes: per node, how many data events of that node
/// happened before (or at) the stamped one. Missing entries are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorClock(pub BTreeMap<NodeId, u64>);

impl VectorClock {
    /// The entry of `node` (0 if none).
    pub fn get(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Take the larger entry of each node.
    pub fn merge(&mut self, other: &VectorClock) {
        for (node, n) in &other.0 {
            let mine = self.0.entry(*node).or_insert(0);
            *mine = (*mine).max(*n);
        }
    }

    /// How two stamps order: `Less` if `self` happened before `other`,
    /// `Greater` if after, `Equal` if the same, `None` if concurrent.
    pub fn compare(&self, other: &VectorClock) -> Option<Ordering> {
        let mut less = false;
        let mut greater = false;
        for node in self.0.keys().chain(other.0.keys()) {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (true, true) => None,
        }
    }

    /// Whether the event stamped `self` happened before the one stamped
    /// `other`.
    pub fn happened_before(&self, other: &VectorClock) -> bool {
        self.compare(other) == Some(Ordering::Less)
    }
}

/// Why data could not be sent. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpreadError {
    /// `Direct` names a peer this node has no link to.
    #[error("no link to {0}")]
    NotLinked(NodeId),
    /// The node has no links at all.
    #[error("no links to send on")]
    NoLinks,
}

/// The sending and deduplicating side of data spreads.
///
/// Broadcasts are numbered in one sequence per sender (every node sees all
/// of them, so the receivers' [`SeenSet`]s stay gap-free); direct and random
/// frames in one sequence per sender and receiver, for the same reason.
#[derive(Debug, Default)]
pub struct DataSpreads {
    next_broadcast: u64,
    next_direct: BTreeMap<NodeId, u64>,
    seen_broadcast: SeenSet,
    seen_direct: SeenSet,
    clock: VectorClock,
}

impl DataSpreads {
    /// Make the frames from `me` for `spread` and choose their first hops
    /// among `links` (`(link, peer)` pairs): one `(links, frame)` pair per
    /// distinct frame, stamped with the clock restricted to `me` and `view`.
    pub fn send<L: Copy>(
        &mut self,
        me: NodeId,
        spread: Spread,
        payload: Vec<u8>,
        (links, view): (impl Iterator<Item = (L, NodeId)>, &[NodeId]),
        rng: &mut impl Rng,
    ) -> Result<Vec<(Vec<L>, DataFrame)>, SpreadError> {
        let targets: Vec<(L, NodeId)> = match spread {
            Spread::Direct(peer) => {
                let link = links.into_iter().find(|(_, p)| *p == peer);
                vec![link.ok_or(SpreadError::NotLinked(peer))?]
            }
            Spread::Random(k) => links.choose_multiple(rng, k),
            Spread::Broadcast => links.collect(),
        };
        if targets.is_empty() {
            return Err(SpreadError::NoLinks);
        }
        *self.clock.0.entry(me).or_insert(0) += 1;
        let clock = VectorClock(
            self.clock
                .0
                .iter()
                .filter(|(node, _)| **node == me || view.contains(node))
                .map(|(node, n)| (*node, *n))
                .collect(),
        );
        if spread == Spread::Broadcast {
            self.next_broadcast += 1;
            let n = self.next_broadcast;
            self.seen_broadcast.insert(me, n);
            let frame = DataFrame {
                from: me,
                n,
                relay: true,
                payload,
                clock,
            };
            return Ok(vec![(targets.into_iter().map(|(l, _)| l).collect(), frame)]);
        }
        Ok(targets
            .into_iter()
            .map(|(link, peer)| {
                let next = self.next_direct.entry(peer).or_insert(0);
                *next += 1;
                let frame = DataFrame {
                    from: me,
                    n: *next,
                    relay: false,
                    payload: payload.clone(),
                    clock: clock.clone(),
                };
                (vec![link], frame)
            })
            .collect())
    }

    /// A frame arrived: `true` if it is new (deliver it, and relay it if it
    /// says so), `false` for a duplicate (a broadcast that came by another
    /// path, or any frame delivered twice).
    pub fn receive(&mut self, frame: &DataFrame) -> bool {
        let seen = if frame.relay {
            &mut self.seen_broadcast
        } else {
            &mut self.seen_direct
        };
        if !seen.insert(frame.from, frame.n) {
            return false;
        }
        self.clock.merge(&frame.clock);
        true
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn spreads_pick_their_targets() {
        let me = NodeId::from_u64(1);
        let links = || (10..15u32).map(|l| (l, NodeId::from_u64(u64::from(l))));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut d = DataSpreads::default();
        let sent = d
            .send(
                me,
                Spread::Direct(NodeId::from_u64(12)),
                vec![1],
                (links(), &[]),
                &mut rng,
            )
            .expect("linked");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].0.clone(), sent[0].1.relay, sent[0].1.n),
            (vec![12], false, 1)
        );
        let sent = d
            .send(me, Spread::Random(2), vec![2], (links(), &[]), &mut rng)
            .expect("links");
        assert_eq!(sent.len(), 2, "one frame per target, numbered per target");
        let sent = d
            .send(me, Spread::Broadcast, vec![3], (links(), &[]), &mut rng)
            .expect("links");
        let (to, f) = &sent[0];
        assert_eq!((to.len(), f.relay, f.n), (5, true, 1));
        assert_eq!(
            d.send(
                me,
                Spread::Direct(NodeId::from_u64(99)),
                vec![],
                (links(), &[]),
                &mut rng
            ),
            Err(SpreadError::NotLinked(NodeId::from_u64(99)))
        );
        assert_eq!(
            d.send(
                me,
                Spread::Broadcast,
                vec![],
                (std::iter::empty::<(u32, NodeId)>(), &[]),
                &mut rng
            ),
            Err(SpreadError::NoLinks)
        );
        // Every frame is deduplicated by (sender, number), per kind.
        let mut other = DataSpreads::default();
        assert!(other.receive(f));
        assert!(!other.receive(f));
        assert!(!d.receive(f), "the sender has seen its own broadcast");
    }

    #[test]
    fn vector_clocks_order_data_events_by_happened_before() {
        let (a, b, c) = (
            NodeId::from_u64(1),
            NodeId::from_u64(2),
            NodeId::from_u64(3),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut da, mut db, mut dc) = (
            DataSpreads::default(),
            DataSpreads::default(),
            DataSpreads::default(),
        );
        let view = [a, b, c];
        let link = |p: NodeId| std::iter::once((0u32, p));
        let first = da
            .send(a, Spread::Direct(b), vec![1], (link(b), &view), &mut rng)
            .expect("linked")
            .remove(0)
            .1;
        assert!(db.receive(&first));
        // b sends after hearing a: a's event happened before b's.
        let second = db
            .send(b, Spread::Direct(c), vec![2], (link(c), &view), &mut rng)
            .expect("linked")
            .remove(0)
            .1;
        assert!(first.clock.happened_before(&second.clock));
        assert_eq!(second.clock.compare(&first.clock), Some(Ordering::Greater));
        // c sends without hearing anything: concurrent with both.
        let third = dc
            .send(c, Spread::Direct(a), vec![3], (link(a), &view), &mut rng)
            .expect("linked")
            .remove(0)
            .1;
        assert_eq!(third.clock.compare(&first.clock), None);
        assert_eq!(third.clock.compare(&second.clock), None);
        assert_eq!(first.clock.compare(&first.clock), Some(Ordering::Equal));
        // Entries outside the view are left out of the stamp.
        let lone = da
            .send(a, Spread::Direct(b), vec![4], (link(b), &[]), &mut rng)
            .expect("linked")
            .remove(0)
            .1;
        assert_eq!(lone.clock.0.keys().collect::<Vec<_>>(), vec![&a]);
    }
}
