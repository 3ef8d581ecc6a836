//! The overlay: HyParView's active view decides which peers a node keeps
//! links to.
//!
//! [`HyParView`] speaks to peers by id and address; this module turns that
//! into link work for the driver:
//!
//! * a message to a linked peer goes on the link;
//! * a message to a peer with no link is queued, and the driver is asked to
//!   dial the peer's advertised address; the queue goes out when the link
//!   comes up, and a failed dial reports the peer down to HyParView (it
//!   leaves both views and is replaced from the passive view);
//! * links this node dialed for the overlay are *owned*: one whose peer is
//!   neither a neighbour nor awaiting an answer is closed after a short
//!   linger; the driver still sends what was queued on it (a
//!   `ShuffleReply`, a `Disconnect`) before the connection goes;
//! * links the node did not dial (the peer dialed, or the application
//!   [pinned](super::RepeaterNode::pin) them) are never closed here: the
//!   side that made a link decides when it goes;
//! * a lost link to a neighbour is a failure: HyParView replaces it. A link
//!   closed after a `Disconnect` is not.
//!
//! The node's active view, as the application sees it, is HyParView's
//! active view plus the pinned links.
//!
//! With peer sampling configured, a [`Sampling`] service runs beside
//! HyParView over the same machinery: its exchanges go to peers of its view
//! (dialed when not linked, the link closed after the answer and the
//! linger), it is seeded with the contacts and the neighbours, a peer that
//! cannot be reached leaves it, and every merge offers the sampled peers to
//! HyParView's passive view, so the backups a lost neighbour is replaced
//! from are a fresh, uniform sample of the live cluster.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::super::hyparview::{Contact, Event, HyParView, HyParViewConfig, Message};
use super::super::id::NodeId;
use super::super::sampling::{self, Descriptor, Sampling, SamplingConfig};
use super::super::time::Time;

/// How long a dial may take before the peer counts as unreachable (the
/// driver reports the outcome earlier; this is the safety net).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an owned link nobody needs stays up before it is closed: long
/// enough that the overlay's next message to the same peer (a request
/// after a shuffle's answer) does not dial again. What is queued on a link
/// still goes out when it closes.
const LINGER: Duration = Duration::from_millis(500);

/// A message of the overlay's protocols.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outgoing {
    /// HyParView's.
    View(Message<NodeId>),
    /// Peer sampling's.
    Sample(sampling::Message<NodeId>),
}

/// What the overlay asks of the node.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Send `msg` on the link to `peer` (there is one).
    Send { peer: NodeId, msg: Outgoing },
    /// Ask the driver to open a link to `peer` at `addr`.
    Dial { peer: NodeId, addr: String },
    /// Ask the driver to close the link to `peer`.
    Close { peer: NodeId },
    /// `peer` may have joined or left the active view (see
    /// [`Overlay::is_neighbor`]).
    Neighbor { peer: NodeId },
}

/// A dial in progress: what waits for the link.
#[derive(Debug)]
struct Dialing {
    queued: Vec<Outgoing>,
    deadline: Time,
}

/// Counters of the overlay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Dials asked of the driver.
    pub dials: u64,
    /// Dials that failed or timed out.
    pub dial_failures: u64,
    /// Owned links closed because nobody needed them.
    pub closes: u64,
    /// Neighbours lost without a `Disconnect` (their link dropped).
    pub neighbors_lost: u64,
    /// Cycles peer sampling has run (0 without it).
    pub sampling_cycles: u64,
}

/// HyParView plus the links it needs.
#[derive(Debug)]
pub(super) struct Overlay {
    hpv: HyParView<NodeId, StdRng>,
    sampling: Option<Sampling<NodeId, StdRng>>,
    /// Links up, per peer (two while a duplicate connection is replaced).
    linked: BTreeMap<NodeId, usize>,
    /// Peers the application linked to explicitly: always neighbours.
    pinned: BTreeSet<NodeId>,
    dialing: BTreeMap<NodeId, Dialing>,
    /// Peers whose link this node dialed for the overlay.
    owned: BTreeSet<NodeId>,
    /// Owned links nobody needs, since when.
    idle: BTreeMap<NodeId, Time>,
    actions: VecDeque<Action>,
    stats: OverlayStats,
}

impl Overlay {
    pub(super) fn new(
        me: NodeId,
        config: HyParViewConfig,
        sampling: Option<SamplingConfig>,
        mut rng: StdRng,
    ) -> Self {
        let sampling = sampling.map(|c| {
            let rng = StdRng::seed_from_u64(rng.random());
            Sampling::new(me, None, c, rng, Time::ZERO)
        });
        Self {
            hpv: HyParView::new(me, None, config, rng, Time::ZERO),
            sampling,
            linked: BTreeMap::new(),
            pinned: BTreeSet::new(),
            dialing: BTreeMap::new(),
            owned: BTreeSet::new(),
            idle: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: OverlayStats::default(),
        }
    }

    pub(super) fn set_addr(&mut self, addr: Option<String>) {
        if let Some(sampling) = &mut self.sampling {
            sampling.set_addr(addr.clone());
        }
        self.hpv.set_addr(addr);
    }

    pub(super) fn stats(&self) -> OverlayStats {
        OverlayStats {
            sampling_cycles: self.sampling.as_ref().map_or(0, Sampling::cycles),
            ..self.stats
        }
    }

    /// Peer sampling's view (empty without it).
    pub(super) fn sample(&self) -> Vec<Descriptor<NodeId>> {
        self.sampling
            .as_ref()
            .map_or_else(Vec::new, |s| s.view().to_vec())
    }

    /// Whether `peer` is in the active view (HyParView's, or pinned).
    pub(super) fn is_neighbor(&self, peer: NodeId) -> bool {
        self.hpv.is_active(peer) || (self.pinned.contains(&peer) && self.linked.contains_key(&peer))
    }

    /// The active view: HyParView's neighbours, then the pinned peers.
    pub(super) fn neighbors(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.hpv.active().iter().map(|c| c.id).collect();
        for p in &self.pinned {
            if self.linked.contains_key(p) && !out.contains(p) {
                out.push(*p);
            }
        }
        out
    }

    /// Every peer of both views, with its address (what a new link is
    /// welcomed with).
    pub(super) fn known(&self) -> Vec<(NodeId, Option<String>)> {
        let views = self.hpv.active().iter().chain(self.hpv.passive());
        views.map(|c| (c.id, c.addr.clone())).collect()
    }

    /// Join the overlay through `contact` (its link, if up, is ours to
    /// close once it is not needed).
    pub(super) fn join(&mut self, now: Time, contact: NodeId, addr: Option<String>) {
        if self.linked.contains_key(&contact) {
            self.owned.insert(contact);
        }
        if let Some(sampling) = &mut self.sampling {
            sampling.add_seed(contact, addr.clone());
        }
        self.hpv.join(now, contact, addr);
        self.pump(now);
    }

    /// The application linked to `peer` explicitly.
    pub(super) fn pin(&mut self, now: Time, peer: NodeId) {
        if self.linked.contains_key(&peer) && self.pinned.insert(peer) {
            self.owned.remove(&peer);
            self.idle.remove(&peer);
            self.actions.push_back(Action::Neighbor { peer });
        }
        self.pump(now);
    }

    pub(super) fn handle_link_up(&mut self, now: Time, peer: NodeId) {
        *self.linked.entry(peer).or_default() += 1;
        if let Some(dialing) = self.dialing.remove(&peer) {
            self.owned.insert(peer);
            for msg in dialing.queued {
                self.actions.push_back(Action::Send { peer, msg });
            }
        }
        self.pump(now);
    }

    /// A link to `peer` went down. `true` if the peer was a neighbour lost
    /// by failure (its link dropped without a `Disconnect`).
    pub(super) fn handle_link_down(&mut self, now: Time, peer: NodeId) -> bool {
        let Some(n) = self.linked.get_mut(&peer) else {
            return false;
        };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        self.linked.remove(&peer);
        self.owned.remove(&peer);
        self.idle.remove(&peer);
        let failed = self.hpv.is_active(peer);
        if self.pinned.remove(&peer) {
            self.actions.push_back(Action::Neighbor { peer });
        }
        if failed || self.hpv.is_pending(peer) {
            self.stats.neighbors_lost += u64::from(failed);
            self.hpv.handle_peer_down(now, peer);
            self.sampling_lost(peer);
        }
        self.pump(now);
        failed
    }

    /// The driver could not reach `peer`.
    pub(super) fn handle_dial_failed(&mut self, now: Time, peer: NodeId) {
        if self.dialing.remove(&peer).is_some() {
            self.stats.dial_failures += 1;
            self.hpv.handle_peer_down(now, peer);
            self.sampling_lost(peer);
            self.pump(now);
        }
    }

    /// `peer` cannot be reached: it leaves the sample.
    fn sampling_lost(&mut self, peer: NodeId) {
        if let Some(sampling) = &mut self.sampling {
            sampling.handle_peer_down(peer);
        }
    }

    /// A peer-sampling message from `from`; the sample it leaves is offered
    /// to HyParView's passive view.
    pub(super) fn handle_sample(
        &mut self,
        now: Time,
        from: NodeId,
        msg: sampling::Message<NodeId>,
    ) {
        let Some(sampling) = &mut self.sampling else {
            return;
        };
        sampling.handle_message(now, from, msg);
        for d in sampling.view() {
            if d.addr.is_some() {
                self.hpv.learn(
                    now,
                    Contact {
                        id: d.peer,
                        addr: d.addr.clone(),
                    },
                );
            }
        }
        self.pump(now);
    }

    /// A linked peer's `Welcome`: the peers of its views, offered to the
    /// passive view as backups. Without them a node whose only neighbour
    /// is its seed knows no one else until its first shuffle, and is left
    /// alone (asking the gone seed forever) if the seed leaves before that.
    pub(super) fn handle_welcome(&mut self, now: Time, peers: &[(NodeId, Option<String>)]) {
        for (id, addr) in peers {
            if addr.is_some() {
                self.hpv.learn(
                    now,
                    Contact {
                        id: *id,
                        addr: addr.clone(),
                    },
                );
            }
        }
        self.pump(now);
    }

    pub(super) fn handle_message(&mut self, now: Time, from: NodeId, msg: Message<NodeId>) {
        self.hpv.handle_message(now, from, msg);
        self.pump(now);
    }

    pub(super) fn handle_timeout(&mut self, now: Time) {
        let expired: Vec<NodeId> = self
            .dialing
            .iter()
            .filter(|(_, d)| d.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.handle_dial_failed(now, peer);
        }
        self.hpv.handle_timeout(now);
        if let Some(sampling) = &mut self.sampling {
            sampling.handle_timeout(now);
        }
        self.pump(now);
        let due: Vec<NodeId> = self
            .idle
            .iter()
            .filter(|(_, since)| **since + LINGER <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.idle.remove(&peer);
            self.stats.closes += 1;
            self.actions.push_back(Action::Close { peer });
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        let dials = self.dialing.values().map(|d| d.deadline);
        let idle = self.idle.values().map(|since| *since + LINGER);
        let sampling = self.sampling.as_ref().and_then(Sampling::poll_timeout);
        let timers = self.hpv.poll_timeout().into_iter().chain(sampling);
        dials.chain(idle).chain(timers).min()
    }

    /// Whether a dial is in progress.
    pub(super) fn is_dialing(&self) -> bool {
        !self.dialing.is_empty()
    }

    pub(super) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Turn HyParView's events into actions, then mark the owned links
    /// nobody needs.
    fn pump(&mut self, now: Time) {
        loop {
            let mut unreachable = Vec::new();
            while let Some(event) = self.hpv.poll_event() {
                match event {
                    Event::Send { to, msg } => {
                        if let Some(peer) = self.send(now, to, Outgoing::View(msg)) {
                            unreachable.push(peer);
                        }
                    }
                    Event::NeighborUp(c) => {
                        if let Some(sampling) = &mut self.sampling {
                            sampling.add_seed(c.id, c.addr.clone());
                        }
                        self.actions.push_back(Action::Neighbor { peer: c.id });
                        if !self.linked.contains_key(&c.id) && !self.dialing.contains_key(&c.id) {
                            match c.addr {
                                Some(addr) => self.dial(now, c.id, addr, Vec::new()),
                                None => unreachable.push(c.id),
                            }
                        }
                    }
                    Event::NeighborDown(peer) => {
                        self.actions.push_back(Action::Neighbor { peer });
                    }
                }
            }
            let transmits: Vec<_> = match &mut self.sampling {
                Some(sampling) => std::iter::from_fn(|| sampling.poll_transmit()).collect(),
                None => Vec::new(),
            };
            for t in transmits {
                let to = Contact {
                    id: t.to,
                    addr: t.addr,
                };
                if let Some(peer) = self.send(now, to, Outgoing::Sample(t.msg)) {
                    self.sampling_lost(peer);
                }
            }
            if unreachable.is_empty() {
                break;
            }
            for peer in unreachable {
                self.hpv.handle_peer_down(now, peer);
                self.sampling_lost(peer);
            }
        }
        for peer in &self.owned {
            let sampling = self.sampling.as_ref().is_some_and(|s| s.is_pending(*peer));
            let needed = self.hpv.is_active(*peer) || self.hpv.is_pending(*peer) || sampling;
            if needed {
                self.idle.remove(peer);
            } else {
                self.idle.entry(*peer).or_insert(now);
            }
        }
    }

    /// Send `msg` to `to`, dialing it if need be; `Some(peer)` if it cannot
    /// be reached (no link and no address).
    fn send(&mut self, now: Time, to: Contact<NodeId>, msg: Outgoing) -> Option<NodeId> {
        let peer = to.id;
        if self.linked.contains_key(&peer) {
            self.actions.push_back(Action::Send { peer, msg });
            return None;
        }
        if let Some(dialing) = self.dialing.get_mut(&peer) {
            dialing.queued.push(msg);
            return None;
        }
        if matches!(msg, Outgoing::View(Message::Disconnect { .. })) {
            // Never dial only to say goodbye: no link, nothing to undo.
            return None;
        }
        match to.addr {
            Some(addr) => {
                self.dial(now, peer, addr, vec![msg]);
                None
            }
            None => Some(peer),
        }
    }

    fn dial(&mut self, now: Time, peer: NodeId, addr: String, queued: Vec<Outgoing>) {
        self.stats.dials += 1;
        self.dialing.insert(
            peer,
            Dialing {
                queued,
                deadline: now + DIAL_TIMEOUT,
            },
        );
        self.actions.push_back(Action::Dial { peer, addr });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::from_u64(n)
    }

    fn overlay() -> Overlay {
        let mut o = Overlay::new(
            id(1),
            HyParViewConfig::default(),
            None,
            StdRng::seed_from_u64(7),
        );
        o.set_addr(Some("sim:1".into()));
        o
    }

    /// Linked to 2, joined through it, and 2 accepted.
    fn joined_through_2(o: &mut Overlay) {
        o.handle_link_up(Time::ZERO, id(2));
        o.join(Time::ZERO, id(2), Some("sim:2".into()));
        o.handle_message(
            Time::from_micros(1),
            id(2),
            Message::NeighborReply { accepted: true },
        );
    }

    fn actions(o: &mut Overlay) -> Vec<Action> {
        std::iter::from_fn(|| o.poll_action()).collect()
    }

    #[test]
    fn a_message_to_an_unlinked_peer_waits_for_the_dial() {
        let mut o = overlay();
        o.join(Time::ZERO, id(2), Some("sim:2".into()));
        let out = actions(&mut o);
        assert_eq!(
            out,
            vec![Action::Dial {
                peer: id(2),
                addr: "sim:2".into()
            }]
        );
        assert!(o.is_dialing());
        o.handle_link_up(Time::from_micros(10), id(2));
        let out = actions(&mut o);
        assert!(
            matches!(&out[..], [Action::Send { peer, msg: Outgoing::View(Message::Join { .. }) }] if *peer == id(2)),
            "{out:?}"
        );
        assert!(!o.is_dialing());
    }

    #[test]
    fn a_welcome_names_backups_so_losing_the_only_neighbour_is_not_the_end() {
        let mut o = overlay();
        joined_through_2(&mut o);
        assert_eq!(o.neighbors(), vec![id(2)]);
        // 2's welcome: peers with addresses become backups; one without
        // cannot be dialed and is left out.
        o.handle_welcome(
            Time::from_micros(2),
            &[
                (id(3), Some("sim:3".into())),
                (id(4), Some("sim:4".into())),
                (id(5), None),
            ],
        );
        let known: Vec<NodeId> = o.known().into_iter().map(|(p, _)| p).collect();
        assert!(
            known.contains(&id(3)) && known.contains(&id(4)),
            "{known:?}"
        );
        assert!(!known.contains(&id(5)));
        // With room in its active view, the node asks the backups at once;
        // when 2 goes for good before any shuffle, it still has them.
        let mut dials = dialed(actions(&mut o));
        o.handle_message(
            Time::from_micros(3),
            id(2),
            Message::Disconnect { alive: false },
        );
        dials.extend(dialed(actions(&mut o)));
        assert!(
            dials.iter().any(|p| *p == id(3) || *p == id(4)),
            "{dials:?}"
        );
        assert!(o.is_dialing(), "a backup is still being asked");
    }

    fn dialed(actions: Vec<Action>) -> Vec<NodeId> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Dial { peer, .. } => Some(peer),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_failed_dial_drops_the_queue_and_the_peer() {
        let mut o = overlay();
        o.join(Time::ZERO, id(2), Some("sim:2".into()));
        actions(&mut o);
        o.handle_dial_failed(Time::from_micros(10), id(2));
        assert!(!o.is_dialing());
        assert_eq!(o.stats().dial_failures, 1);
        // The link coming up late carries nothing of the dropped queue.
        o.handle_link_up(Time::from_micros(20), id(2));
        assert!(actions(&mut o)
            .iter()
            .all(|a| !matches!(a, Action::Send { .. })));
    }

    #[test]
    fn a_dial_that_never_answers_times_out() {
        let mut o = overlay();
        o.join(Time::ZERO, id(2), Some("sim:2".into()));
        actions(&mut o);
        let due = o.poll_timeout().expect("a deadline");
        assert!(due <= Time::ZERO + DIAL_TIMEOUT);
        o.handle_timeout(Time::ZERO + DIAL_TIMEOUT);
        // (HyParView may already be trying its contact again.)
        assert_eq!(o.stats().dial_failures, 1);
    }

    #[test]
    fn an_owned_link_nobody_needs_closes_after_the_linger_and_a_pinned_one_never() {
        let mut o = overlay();
        // Linked to 2 through a join it answered, then 2 leaves for good
        // (so it is no backup to ask again).
        joined_through_2(&mut o);
        assert!(o.is_neighbor(id(2)));
        // (A second contact, so that being alone does not send us back
        // to 2.)
        o.join(Time::from_micros(1), id(9), Some("sim:9".into()));
        o.handle_message(
            Time::from_micros(2),
            id(2),
            Message::Disconnect { alive: false },
        );
        assert!(!o.is_neighbor(id(2)));
        actions(&mut o);
        let early = Time::from_micros(2) + LINGER / 2;
        o.handle_timeout(early);
        assert!(!actions(&mut o).contains(&Action::Close { peer: id(2) }));
        o.handle_timeout(Time::from_micros(2) + LINGER);
        assert!(actions(&mut o).contains(&Action::Close { peer: id(2) }));

        // A pinned link (the application's) is a neighbour and stays.
        o.handle_link_up(Time::ZERO, id(3));
        o.pin(Time::ZERO, id(3));
        assert!(o.is_neighbor(id(3)));
        assert!(o.neighbors().contains(&id(3)));
        o.handle_timeout(Time::from_micros(3) + LINGER * 4);
        assert!(!actions(&mut o).contains(&Action::Close { peer: id(3) }));
    }

    #[test]
    fn an_inbound_link_is_never_closed_here() {
        let mut o = overlay();
        o.handle_link_up(Time::ZERO, id(4));
        o.handle_timeout(Time::ZERO + LINGER * 4);
        assert!(!actions(&mut o).contains(&Action::Close { peer: id(4) }));
    }

    #[test]
    fn a_goodbye_to_an_unlinked_peer_dials_nobody() {
        let mut o = overlay();
        let gone = Contact {
            id: id(5),
            addr: Some("sim:5".into()),
        };
        assert_eq!(
            o.send(
                Time::ZERO,
                gone,
                Outgoing::View(Message::Disconnect { alive: true })
            ),
            None
        );
        assert!(actions(&mut o).is_empty());
    }

    #[test]
    fn a_sampling_exchange_dials_an_unlinked_peer_and_closes_the_link_after_the_answer() {
        let config = SamplingConfig {
            period: Duration::from_secs(10),
            ..SamplingConfig::balanced(4)
        };
        // No backups: HyParView wants no link of its own here.
        let hpv = HyParViewConfig {
            passive_size: 0,
            ..HyParViewConfig::default()
        };
        let mut o = Overlay::new(id(1), hpv, Some(config), StdRng::seed_from_u64(7));
        o.set_addr(Some("sim:1".into()));
        o.sampling
            .as_mut()
            .expect("sampling is on")
            .add_seed(id(3), Some("sim:3".into()));
        let (mut cycle, mut out) = (Time::ZERO, Vec::new());
        for _ in 0..100 {
            cycle = o.poll_timeout().expect("a timer is due");
            o.handle_timeout(cycle);
            out = actions(&mut o);
            if !out.is_empty() {
                break;
            }
        }
        assert_eq!(
            out,
            vec![Action::Dial {
                peer: id(3),
                addr: "sim:3".into()
            }]
        );
        let up = cycle + Duration::from_millis(1);
        o.handle_link_up(up, id(3));
        let out = actions(&mut o);
        assert!(
            matches!(&out[..], [Action::Send { peer, msg: Outgoing::Sample(sampling::Message::Request { .. }) }] if *peer == id(3)),
            "{out:?}"
        );
        // Still waiting for the answer: the link stays past the linger.
        o.handle_timeout(up + LINGER * 2);
        assert!(!actions(&mut o).contains(&Action::Close { peer: id(3) }));
        let answer = vec![
            Descriptor {
                peer: id(3),
                addr: Some("sim:3".into()),
                age: 0,
            },
            Descriptor {
                peer: id(4),
                addr: Some("sim:4".into()),
                age: 2,
            },
        ];
        let at = up + LINGER * 2;
        o.handle_sample(at, id(3), sampling::Message::Reply { buffer: answer });
        let peers: Vec<NodeId> = o.sample().iter().map(|d| d.peer).collect();
        assert!(peers.contains(&id(4)), "{peers:?}");
        o.handle_timeout(at + LINGER);
        assert!(actions(&mut o).contains(&Action::Close { peer: id(3) }));
        assert_eq!(o.stats().sampling_cycles, 1);
    }

    #[test]
    fn sampled_peers_are_offered_to_the_passive_view() {
        let mut o = Overlay::new(
            id(1),
            HyParViewConfig::default(),
            Some(SamplingConfig::balanced(4)),
            StdRng::seed_from_u64(7),
        );
        let buffer = vec![Descriptor {
            peer: id(4),
            addr: Some("sim:4".into()),
            age: 0,
        }];
        o.handle_sample(Time::ZERO, id(4), sampling::Message::Push { buffer });
        assert!(o.hpv.passive().iter().any(|c| c.id == id(4)));
    }

    #[test]
    fn a_sampled_peer_that_cannot_be_dialed_leaves_the_sample() {
        let config = SamplingConfig {
            period: Duration::from_secs(1),
            ..SamplingConfig::balanced(4)
        };
        let mut o = Overlay::new(
            id(1),
            HyParViewConfig::default(),
            Some(config),
            StdRng::seed_from_u64(7),
        );
        let sampling = o.sampling.as_mut().expect("sampling is on");
        sampling.add_seed(id(3), Some("sim:3".into()));
        sampling.add_seed(id(5), None);
        let cycle = o.poll_timeout().expect("a cycle is due");
        o.handle_timeout(cycle);
        o.handle_timeout(cycle + Duration::from_secs(1));
        for action in actions(&mut o) {
            if let Action::Dial { peer, .. } = action {
                o.handle_dial_failed(cycle + Duration::from_secs(1), peer);
            }
        }
        // 5 has no address (unreachable at once), 3's dial failed.
        assert!(o.sample().is_empty(), "{:?}", o.sample());
    }

    #[test]
    fn a_lost_neighbour_link_is_a_failure_a_closed_one_is_not() {
        let mut o = overlay();
        o.handle_link_up(Time::ZERO, id(2));
        o.join(Time::ZERO, id(2), None);
        o.handle_message(
            Time::from_micros(1),
            id(2),
            Message::NeighborReply { accepted: true },
        );
        assert!(o.handle_link_down(Time::from_micros(2), id(2)));
        assert_eq!(o.stats().neighbors_lost, 1);
        assert!(!o.is_neighbor(id(2)));
        o.handle_link_up(Time::from_micros(3), id(6));
        assert!(!o.handle_link_down(Time::from_micros(4), id(6)));
    }
}
