//! The repeater: a node's routing state machine.
//!
//! A node has links (generic `L`: the driver's connection ids, the
//! harness's integers) and hosts (the objects it holds). Every op is relayed
//! to every link except the one it came from, once per op: the per-object
//! [`SeenSet`] drops duplicates, so any connected topology — chain, star,
//! tree, graph with cycles — delivers each op exactly once to each host.
//!
//! A late joiner [`opens`](RepeaterNode::open) an object: a
//! [`Message::Fetch`] is flooded the same way; the first node holding the
//! object answers with its state, which travels back along the reverse path
//! the fetch took. Ops on the object that arrive while the fetch is pending
//! are buffered and delivered once the driver hosts the new replica.
//!
//! Inputs are `handle_*` methods; outputs are drained with
//! [`poll_event`](RepeaterNode::poll_event) and
//! [`poll_timeout`](RepeaterNode::poll_timeout).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;

use super::anti_entropy::{AntiEntropy, AntiEntropyStats, HostRef};
use super::data::{DataFrame, DataSpreads, Spread, SpreadError};
use super::dissemination::{Dissemination, ObjectRuns, SeqRun, Slot, TreeMsg, TreeStats};
use super::host::Host;
use super::id::{NodeId, ObjectKey};
use super::membership::{Membership, MembershipEvent};
use super::message::{FetchId, Message, ObjectDigest, OpFrame};
use super::pieces::{is_transfer, Transfers};
use super::swim::{FailureEvent, Swim, SwimConfig};
use super::time::Time;
use super::version::SeenSet;

mod admission;
mod eviction;
mod fetch;
mod neighbors;
mod ops;
mod overlay;
mod types;

use eviction::Departures;
use ops::{deliver, RunResults};
use overlay::Overlay;
pub use overlay::OverlayStats;
pub use types::{GossipStats, OutEvent, RepeaterConfig, RepeaterStats};

/// What the node keeps per object it has seen ops of.
struct Route {
    /// The object's number in the broadcast tree.
    slot: Slot,
    seen: SeenSet,
    host: Option<Box<dyn Host>>,
}

/// An open of ours in flight.
#[derive(Debug)]
struct PendingOpen {
    object: ObjectKey,
    deadline: Option<Time>,
    buffered: Vec<OpFrame>,
}

/// Someone else's fetch we saw: where to send the answer, until when.
#[derive(Debug)]
struct FetchRoute<L> {
    back: Option<L>,
    deadline: Time,
}

/// The routing state machine of one node.
pub struct RepeaterNode<L> {
    me: NodeId,
    config: RepeaterConfig,
    /// Every link up, with its peer.
    links: BTreeMap<L, NodeId>,
    /// The links ops, fetches, data and anti-entropy travel: every link
    /// without an overlay; with one, the links to neighbours only (a
    /// transient link carries overlay messages, nothing else).
    mesh: BTreeMap<L, NodeId>,
    membership: Membership,
    data: DataSpreads,
    /// Per object: the ops seen (for dedupe) and the replica, if hosted.
    /// One map, so an op costs one lookup; Fx-hashed (the keys come from
    /// authenticated peers only).
    objects: FxHashMap<ObjectKey, Route>,
    opens: HashMap<FetchId, PendingOpen>,
    opening: HashMap<ObjectKey, FetchId>,
    routes: HashMap<FetchId, FetchRoute<L>>,
    /// Our admission requests in flight, per object, until when.
    admitting: BTreeMap<ObjectKey, admission::Asking>,
    next_fetch: u64,
    anti_entropy: AntiEntropy<L>,
    tree: Dissemination<L>,
    swim: Swim<NodeId, StdRng>,
    /// HyParView and the links it needs, when the config asks for it.
    overlay: Option<Overlay>,
    /// Peers seen gone, for eviction.
    departed: Departures,
    /// State transfers cut into pieces and put back together.
    transfers: Transfers<L>,
    /// When each linked peer was last heard from (any message): the
    /// eviction guard counts only peers heard from within the period.
    heard: BTreeMap<NodeId, Time>,
    /// When any linked peer was last heard from.
    heard_any: Time,
    /// The latest time given to a `handle_*` call.
    clock: Time,
    /// Draws gossip partners; seeded from the node id, so runs replay.
    rng: StdRng,
    out: VecDeque<OutEvent<L>>,
    stats: RepeaterStats,
    /// Reused buffers of the op path (see [`handle_messages`](Self::handle_messages)).
    run: Vec<OpFrame>,
    fresh: Vec<bool>,
    results: RunResults,
}

impl<L: fmt::Debug> fmt::Debug for RepeaterNode<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepeaterNode")
            .field("me", &self.me)
            .field("links", &self.links.keys().collect::<Vec<_>>())
            .field(
                "hosts",
                &self
                    .objects
                    .iter()
                    .filter(|(_, r)| r.host.is_some())
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// A node with no links and no objects. Its random choices are seeded
    /// from `me`.
    pub fn new(me: NodeId, config: RepeaterConfig) -> Self {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&me.as_bytes()[24..]);
        Self::with_seed(me, config, u64::from_be_bytes(seed))
    }

    /// A node with no links and no objects, its random choices seeded with
    /// `seed`.
    pub fn with_seed(me: NodeId, config: RepeaterConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let anti_entropy = AntiEntropy::new(config.anti_entropy.clone(), &mut rng);
        let tree = Dissemination::new(&config.dissemination);
        let swim_rng = StdRng::seed_from_u64(rng.random());
        let swim = Swim::new(me, config.failure_detector.clone(), swim_rng).unwrap_or_else(|e| {
            // An invalid detector setting falls back to the defaults, loudly.
            tracing::error!("failure detector settings: {e}; using the defaults");
            Swim::new(me, SwimConfig::default(), StdRng::seed_from_u64(seed))
                .expect("the default failure detector settings are valid")
        });
        let mut membership = Membership::new(me);
        let transfers = Transfers::new(config.transfers.clone());
        let overlay = config.overlay.clone().map(|c| {
            membership.use_overlay();
            let sampling = config.sampling.clone();
            Overlay::new(me, c, sampling, StdRng::seed_from_u64(rng.random()))
        });
        Self {
            me,
            config,
            links: BTreeMap::new(),
            mesh: BTreeMap::new(),
            membership,
            data: DataSpreads::default(),
            objects: FxHashMap::default(),
            opens: HashMap::new(),
            opening: HashMap::new(),
            routes: HashMap::new(),
            admitting: BTreeMap::new(),
            next_fetch: 1,
            anti_entropy,
            tree,
            swim,
            overlay,
            departed: Departures::default(),
            transfers,
            heard: BTreeMap::new(),
            heard_any: Time::ZERO,
            clock: Time::ZERO,
            rng,
            out: VecDeque::new(),
            stats: RepeaterStats::default(),
            run: Vec::new(),
            fresh: Vec::new(),
            results: Vec::new(),
        }
    }

    /// The failure detector's counters.
    pub fn failure_detector_stats(&self) -> super::swim::SwimStats {
        *self.swim.stats()
    }

    /// The broadcast tree's counters.
    pub fn tree_stats(&self) -> TreeStats {
        self.tree.stats()
    }

    /// Every counter at once.
    pub fn gossip_stats(&self) -> GossipStats {
        GossipStats {
            relay: self.stats,
            tree: self.tree.stats(),
            anti_entropy: self.anti_entropy.stats(),
            failure_detector: *self.swim.stats(),
            overlay: self
                .overlay
                .as_ref()
                .map(Overlay::stats)
                .unwrap_or_default(),
            transfers: self.transfers.stats(),
        }
    }

    /// The anti-entropy counters.
    pub const fn anti_entropy_stats(&self) -> AntiEntropyStats {
        self.anti_entropy.stats()
    }

    /// This node's id.
    pub const fn me(&self) -> NodeId {
        self.me
    }

    /// The counters.
    pub const fn stats(&self) -> RepeaterStats {
        self.stats
    }

    /// The links, in order.
    pub fn links(&self) -> impl Iterator<Item = L> + '_ {
        self.links.keys().copied()
    }

    /// Whether this node holds `object`.
    pub fn is_hosting(&self, object: &ObjectKey) -> bool {
        self.objects.get(object).is_some_and(|r| r.host.is_some())
    }

    /// The node started; `seeds` is whether it joins through seeds.
    pub fn handle_start(&mut self, seeds: bool) {
        self.membership.handle_start(seeds);
    }

    /// The node shut down.
    pub fn handle_shutdown(&mut self) {
        self.membership.handle_shutdown();
    }

    /// The membership view: every peer known, linked or heard of.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A link to `peer` (which listens on `addr`, if it said) came up: it
    /// is welcomed with the peers this node knows, and opens still waiting
    /// for an answer ask it too.
    pub fn handle_link_up(&mut self, now: Time, link: L, peer: NodeId, addr: Option<String>) {
        // With an overlay, a new link is welcomed with its views only: the
        // full list of known peers grows with the cluster.
        let known = match &self.overlay {
            Some(overlay) => overlay.known(),
            None => self.membership.welcome(),
        };
        let known: Vec<(NodeId, Option<String>)> =
            known.into_iter().filter(|(id, _)| *id != peer).collect();
        self.out.push_back(OutEvent::Send {
            to: link,
            msg: Message::Welcome { peers: known },
        });
        self.links.insert(link, peer);
        self.departed.back(peer);
        self.membership.handle_link_up(peer, addr);
        match &mut self.overlay {
            None => {
                // With an overlay, only neighbours are watched, and only
                // their links join the mesh (see `pump_overlay`).
                self.swim.add_member(now, peer);
                self.join_mesh(link, peer);
            }
            Some(overlay) => {
                overlay.handle_link_up(now, peer);
                if overlay.is_neighbor(peer) {
                    self.neighbor_changed(now, peer);
                }
                self.pump_overlay(now);
            }
        }
    }

    /// A link went down. Answers routed through it are dropped when they
    /// arrive.
    pub fn handle_link_down(&mut self, now: Time, link: L) {
        self.clock = now;
        self.transfers.link_down(link);
        if let Some(peer) = self.links.remove(&link) {
            self.membership.handle_link_down(peer);
            let last = link_to(&self.links, peer).is_none();
            if last {
                self.heard.remove(&peer);
            }
            if let Some(overlay) = &mut self.overlay {
                // Whether the link failed or was closed on purpose, the
                // overlay replaces the neighbour; the failure detector
                // watches neighbours over their links, so it forgets it.
                if overlay.handle_link_down(now, peer) {
                    self.note_departure(peer, now);
                }
                if last {
                    self.swim.remove_member(peer);
                }
                self.pump_overlay(now);
            } else if last {
                self.note_departure(peer, now);
            }
        }
        self.leave_mesh(link);
    }

    /// Hold `object` from now on: ops on it are delivered to `host`. Ops
    /// buffered by a pending open of the object are delivered now.
    pub fn host(&mut self, object: ObjectKey, mut host: Box<dyn Host>) {
        if let Some(fetch) = self.opening.remove(&object) {
            if let Some(open) = self.opens.remove(&fetch) {
                for frame in open.buffered {
                    deliver(&mut self.out, &mut *host, &frame, None);
                }
            }
        }
        let route = self.route(&object);
        route.host = Some(host);
        let slot = route.slot;
        self.tree.serve(slot);
        // A replica restored from a store may hold ops that wait for
        // admission.
        let now = self.clock;
        self.request_admission(now, &object);
    }

    /// A local op was made (and applied) on a hosted object: relay it.
    pub fn handle_local_op(&mut self, now: Time, frame: OpFrame) {
        self.handle_local_ops(now, std::iter::once(frame));
    }

    /// Ops made here, in the order they were made: the same as
    /// [`handle_local_op`](Self::handle_local_op) on each, with one route
    /// lookup per run of ops on one object.
    pub fn handle_local_ops(&mut self, now: Time, frames: impl IntoIterator<Item = OpFrame>) {
        let mut run = std::mem::take(&mut self.run);
        let mut frames = frames.into_iter().peekable();
        while let Some(first) = frames.next() {
            run.clear();
            run.push(first);
            while let Some(frame) = frames.next_if(|f| f.object == run[0].object) {
                run.push(frame);
            }
            let route = self.route(&run[0].object);
            let slot = route.slot;
            let made = run.len();
            run.retain(|f| route.seen.insert(f.id.origin, f.id.seq));
            self.stats.duplicates += (made - run.len()) as u64;
            self.stats.ops_seen += run.len() as u64;
            self.tree.broadcast_run(now, slot, run.drain(..));
        }
        self.run = run;
    }

    /// A message arrived on `from`.
    pub fn handle_message(&mut self, now: Time, from: L, msg: Message) {
        self.clock = now;
        self.note_heard(now, from);
        if let Some(&peer) = self.links.get(&from) {
            // Any message is proof of life for the failure detector, but
            // only over the link its probes use: a peer that restarted and
            // dialed again talks over its new link while the old one is
            // dead, and the dead one must still fail its probes and close.
            if link_to(&self.links, peer) == Some(from) {
                self.swim.heard_from(now, peer);
            }
        }
        let msg_kind = msg.kind();
        match msg {
            Message::Hello { .. } => {}
            Message::Welcome { peers } => {
                if let Some(overlay) = &mut self.overlay {
                    overlay.handle_welcome(now, &peers);
                }
                self.membership.handle_welcome(peers);
                self.pump_overlay(now);
            }
            Message::Data(frame) => self.handle_data(from, frame),
            Message::Op(frame) | Message::Repair(frame) => {
                let repair = matches!(msg_kind, "repair");
                let mut run = std::mem::take(&mut self.run);
                run.push(frame);
                self.handle_ops(now, from, &mut run, repair);
                self.run = run;
            }
            Message::Tree(TreeMsg::IHave(objects)) => self.handle_ihave(now, from, objects),
            Message::Tree(TreeMsg::Graft(objects)) => {
                // A hosted object answers from its replica's log, which
                // holds every op not yet stable; the frame cache, bounded by
                // count, only serves objects this node relays.
                let budget = self.config.anti_entropy.repair_budget;
                for o in objects {
                    let slot = self.tree.slot_of(&o.object);
                    let held = self
                        .objects
                        .get(&o.object)
                        .and_then(|r| r.host.as_deref())
                        .and_then(|h| h.ops_in(&o.runs, budget).ok());
                    self.tree.handle_graft(now, from, slot, &o.runs, held);
                }
            }
            Message::Tree(msg) => self.tree.handle_tree_change(now, from, &msg),
            Message::Overlay(msg) => self.handle_overlay(now, from, msg),
            Message::Sampling(msg) => self.handle_sampling(now, from, msg),
            Message::Piece(piece) => match self.transfers.receive(now, from, piece) {
                // A state transfer, whole again: handled as if it had come
                // in one frame (it is never itself a piece).
                Ok(Some(whole)) => self.handle_message(now, from, whole),
                Ok(None) => {}
                Err(error) => tracing::warn!(?from, %error, "state transfer piece refused"),
            },
            Message::Probe(msg) => {
                if let Some(peer) = self.links.get(&from) {
                    self.swim.handle_message(now, *peer, msg);
                }
            }
            Message::Fetch { fetch, object } => self.handle_fetch(now, from, fetch, object),
            Message::State { fetch, state } => self.handle_state(fetch, *state),
            Message::Admit { fetch, object } => self.handle_admit(now, from, fetch, object),
            Message::Admitted {
                fetch,
                object,
                origin,
                clock,
            } => self.handle_admitted(now, fetch, object, origin, clock),
            Message::Evict {
                fetch,
                object,
                origin,
            } => self.handle_evict(now, from, fetch, object, origin),
            Message::Summary { set, root } => {
                let mut hosts = sorted_hosts(&mut self.objects);
                let replies = self
                    .anti_entropy
                    .handle_summary(from, set, root, &mut hosts);
                self.send_all(from, replies);
            }
            Message::Digest {
                objects,
                reply,
                first,
                last,
            } => self.handle_digest(now, from, objects, (reply, first, last)),
            Message::Snapshot(state) => {
                let mut hosts = sorted_hosts(&mut self.objects);
                self.anti_entropy.handle_snapshot(&state, &mut hosts);
                self.forget_departures_if_evicted([&state.object]);
                self.relay_restamped(now, [&state.object]);
            }
        }
    }

    /// Announced ops: the tree tracks those not seen here.
    fn handle_ihave(&mut self, now: Time, from: L, objects: Vec<ObjectRuns>) {
        if !self.tree.is_neighbor(&from) {
            return;
        }
        for o in objects {
            let route = self.route(&o.object);
            let mut lacking = Vec::new();
            for run in &o.runs {
                lacking.extend(
                    route
                        .seen
                        .missing(&run.origin, run.first, run.last)
                        .into_iter()
                        .map(|(first, last)| SeqRun {
                            origin: run.origin,
                            first,
                            last,
                        }),
                );
            }
            if !lacking.is_empty() {
                let slot = route.slot;
                self.tree.announced(now, from, slot, lacking);
            }
        }
    }

    fn handle_digest(
        &mut self,
        now: Time,
        from: L,
        objects: Vec<ObjectDigest>,
        flags: (bool, bool, bool),
    ) {
        let keys: Vec<ObjectKey> = objects.iter().map(|d| d.object.clone()).collect();
        let mut hosts = sorted_hosts(&mut self.objects);
        let replies = self
            .anti_entropy
            .handle_digest(from, objects, flags, &mut hosts);
        self.send_all(from, replies);
        // A peer's acks may have evicted this node, or admitted a replica's
        // new origin.
        self.forget_departures_if_evicted(&keys);
        self.relay_restamped(now, &keys);
    }

    fn send_all(&mut self, to: L, msgs: Vec<Message>) {
        for msg in msgs {
            self.out.push_back(OutEvent::Send { to, msg });
        }
    }

    /// Send application data by `spread`; `rng` draws `Random` targets.
    pub fn send_data(
        &mut self,
        spread: Spread,
        payload: Vec<u8>,
        rng: &mut impl Rng,
    ) -> Result<(), SpreadError> {
        let links = self.mesh.iter().map(|(l, p)| (*l, *p));
        let view: Vec<NodeId> = self.membership.view().iter().map(|p| p.id).collect();
        for (to, frame) in self
            .data
            .send(self.me, spread, payload, (links, &view), rng)?
        {
            self.out.push_back(OutEvent::Multicast {
                to,
                msg: Message::Data(frame),
            });
        }
        Ok(())
    }

    fn handle_data(&mut self, from: L, frame: DataFrame) {
        if !self.data.receive(&frame) {
            return;
        }
        self.out.push_back(OutEvent::Data {
            from: frame.from,
            payload: frame.payload.clone(),
            clock: frame.clock.clone(),
        });
        if frame.relay {
            let to: Vec<L> = self.mesh.keys().copied().filter(|l| *l != from).collect();
            if !to.is_empty() {
                self.out.push_back(OutEvent::Multicast {
                    to,
                    msg: Message::Data(frame),
                });
            }
        }
    }

    /// Time has reached a deadline from [`poll_timeout`](Self::poll_timeout)
    /// (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        self.clock = now;
        self.evict_departed(now);
        if let Some(overlay) = &mut self.overlay {
            overlay.handle_timeout(now);
            self.pump_overlay(now);
        }
        self.tree.handle_timeout(now);
        self.swim.handle_timeout(now);
        let mut hosts = sorted_hosts(&mut self.objects);
        let summaries = self.anti_entropy.handle_timeout(
            now,
            self.mesh.keys().copied(),
            &mut hosts,
            &mut self.rng,
        );
        for (to, msg) in summaries {
            self.out.push_back(OutEvent::Send { to, msg });
        }
        self.routes.retain(|_, r| r.deadline > now);
        self.retry_admissions(now);
        let expired: Vec<FetchId> = self
            .opens
            .iter()
            .filter(|(_, o)| o.deadline.is_some_and(|d| d <= now))
            .map(|(f, _)| *f)
            .collect();
        for fetch in expired {
            if let Some(open) = self.opens.remove(&fetch) {
                self.opening.remove(&open.object);
                self.out.push_back(OutEvent::OpenFailed {
                    fetch,
                    object: open.object,
                });
            }
        }
    }

    /// The next output, if any.
    pub fn poll_event(&mut self) -> Option<OutEvent<L>> {
        if let Some(event) = self.membership.poll_event() {
            return Some(OutEvent::Membership(event));
        }
        while let Some(event) = self.out.pop_front() {
            match event {
                OutEvent::Send { to, msg } if is_transfer(&msg) => {
                    match self.transfers.split(&msg) {
                        Ok(None) => return Some(OutEvent::Send { to, msg }),
                        Ok(Some(pieces)) => {
                            for msg in pieces.into_iter().rev() {
                                self.out.push_front(OutEvent::Send { to, msg });
                            }
                        }
                        // Too large to transfer even in pieces: the peer
                        // asks again (an open fails at its deadline).
                        Err(error) => tracing::warn!(?to, %error, "state transfer not sent"),
                    }
                }
                event => return Some(event),
            }
        }
        if let Some(event) = self.swim.poll_event() {
            match event {
                FailureEvent::Down(peer) => self.note_departure(peer, self.clock),
                FailureEvent::Alive(peer) => self.departed.back(peer),
                _ => {}
            }
            if let (FailureEvent::Down(peer), Some(_)) = (event, &self.overlay) {
                // A neighbour that stopped answering over a live link (a
                // hung process): close its links, and the overlay replaces
                // it when they go down.
                self.swim.remove_member(peer);
                for link in self.links_of(peer) {
                    self.out.push_back(OutEvent::Close { link });
                }
            }
            return Some(OutEvent::Membership(match event {
                FailureEvent::Suspected(p) => MembershipEvent::Suspected(p),
                FailureEvent::Down(p) => MembershipEvent::Down(p),
                FailureEvent::Alive(p) => MembershipEvent::Back(p),
                FailureEvent::Joined(p) => MembershipEvent::Learned(p),
            }));
        }
        while let Some((peer, msg)) = self.swim.poll_transmit() {
            // Probes reach linked peers only; one to a peer without a link
            // is lost, as on a network that cannot reach it.
            if let Some(to) = link_to(&self.links, peer) {
                return Some(OutEvent::Send {
                    to,
                    msg: Message::Probe(msg),
                });
            }
        }
        let (to, msg, ops) = self.tree.poll_send()?;
        self.stats.ops_sent += ops;
        Some(match to[..] {
            [one] => OutEvent::Send { to: one, msg },
            _ => OutEvent::Multicast {
                to: to.into_vec(),
                msg,
            },
        })
    }

    /// Whether the node waits on a timer other than its anti-entropy
    /// rounds and failure-detector probes: an open or a relayed fetch in
    /// flight, an announced op missing, announcements waiting to go out.
    pub fn is_waiting(&self) -> bool {
        !self.routes.is_empty()
            || !self.admitting.is_empty()
            || self.opens.values().any(|o| o.deadline.is_some())
            || !self.tree.is_idle()
            || self.overlay.as_ref().is_some_and(Overlay::is_dialing)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let routes = self.routes.values().map(|r| r.deadline);
        let opens = self.opens.values().filter_map(|o| o.deadline);
        let round = std::iter::once(self.anti_entropy.next_round());
        let tree = self.tree.poll_timeout();
        let swim = self.swim.poll_timeout();
        let overlay = self.overlay.as_ref().and_then(Overlay::poll_timeout);
        let eviction = self.next_eviction();
        routes
            .chain(eviction)
            .chain(self.next_admission_retry())
            .chain(opens)
            .chain(round)
            .chain(tree)
            .chain(swim)
            .chain(overlay)
            .min()
    }

    /// The object's route, made on first sight.
    fn route(&mut self, object: &ObjectKey) -> &mut Route {
        // Looked up before inserting: the common case clones no key.
        if !self.objects.contains_key(object) {
            let route = Route {
                slot: self.tree.slot(object),
                seen: SeenSet::default(),
                host: None,
            };
            self.objects.insert(object.clone(), route);
        }
        self.objects
            .get_mut(object)
            .expect("the route was just made")
    }
}

/// A link to `peer`, if one is up.
fn link_to<L: Copy>(links: &BTreeMap<L, NodeId>, peer: NodeId) -> Option<L> {
    links.iter().find(|(_, p)| **p == peer).map(|(l, _)| *l)
}

/// The hosted objects, sorted by key (anti-entropy walks them in order).
fn sorted_hosts(objects: &mut FxHashMap<ObjectKey, Route>) -> Vec<HostRef<'_>> {
    let mut hosts: Vec<HostRef<'_>> = objects
        .iter_mut()
        .filter_map(|(k, r)| r.host.as_deref_mut().map(|h| (k, h)))
        .collect();
    hosts.sort_unstable_by(|a, b| a.0.cmp(b.0));
    hosts
}
