//! The harness itself: nodes, links, an event queue in virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::proto::host::replica_from_frame;
use crate::proto::membership::MembershipEvent;
use crate::proto::message::{Message, OpFrame, DEFAULT_MAX_FRAME};
use crate::proto::node::{OutEvent, RepeaterConfig, RepeaterNode};
use crate::proto::replica::Replica;
use crate::proto::time::Time;
use crate::proto::{NodeId, ObjectKey, OpId, Replicated};

use super::latency::LinkLatency;
use super::trace::OpTrace;

/// The seed in `PLEXUS_SEED`, or a fresh random one; printed either way so a
/// failing run can be replayed with `PLEXUS_SEED=<seed>`.
pub fn seed_from_env() -> u64 {
    let seed = match std::env::var("PLEXUS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PLEXUS_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("harness seed: PLEXUS_SEED={seed}");
    seed
}

/// How the harness's links behave.
#[derive(Clone, Debug)]
pub struct HarnessConfig {
    /// The shortest one-way latency. Default: 1 ms.
    pub min_latency: Duration,
    /// The longest one-way latency. Default: 20 ms.
    pub max_latency: Duration,
    /// The chance that a message is delivered twice. Default: 0.
    pub duplicate: f64,
    /// The chance that a message is lost. Default: 0.
    pub loss: f64,
    /// The routing state machine's settings.
    pub repeater: RepeaterConfig,
    /// A latency per link instead of one drawn per message from
    /// `min_latency..=max_latency` (which lets messages on one link
    /// overtake each other). Default: `None`.
    pub link_latency: Option<LinkLatency>,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        Self {
            min_latency: Duration::from_millis(1),
            max_latency: Duration::from_millis(20),
            duplicate: 0.0,
            loss: 0.0,
            repeater: RepeaterConfig::default(),
            link_latency: None,
        }
    }
}

struct SimNode<T: Replicated> {
    proto: RepeaterNode<usize>,
    objects: BTreeMap<String, Arc<Mutex<SimHost<T>>>>,
    failed_opens: BTreeSet<String>,
    /// The queue key of its one pending wake-up, if any.
    timer: Option<queue::Key>,
    received: Vec<(NodeId, Vec<u8>)>,
    /// `false` while crashed: it hears nothing and its timers do not fire.
    alive: bool,
    /// What its failure detector said, when.
    failures: Vec<(Time, MembershipEvent)>,
    /// The nodes it is linked to, each since when (kept across a crash, to
    /// relink).
    links: BTreeMap<usize, Time>,
    /// With an overlay: the node it joined through (joined again after a
    /// restart).
    contact: Option<usize>,
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        /// Shared by every copy of a multicast. The sender encoded it once
        /// (to check that it fits a frame and to count its bytes); the copy
        /// delivered is the message itself, as the codec's round trip is
        /// tested on its own (`message_tests`, the fuzz targets).
        msg: Arc<Message>,
        /// Its encoded size.
        len: usize,
    },
    Timeout {
        node: usize,
    },
    /// An overlay dial completes (or fails, if `to` is down or cut off).
    Connect {
        from: usize,
        to: usize,
    },
    /// `from` closes its link to `to`.
    Close {
        from: usize,
        to: usize,
    },
    /// `node` tries its join contact again (it was down or cut off), as a
    /// driver retries its seeds.
    Join {
        node: usize,
    },
}

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages delivered.
    pub messages: u64,
    /// Bytes delivered (frames as encoded).
    pub bytes: u64,
    /// Messages lost (loss, partition, or a crashed receiver).
    pub dropped: u64,
    /// The largest frame of the kind sent, in bytes.
    pub largest: u64,
}

#[path = "durable.rs"]
mod durable;
#[path = "faults.rs"]
mod faults;
#[path = "overlay.rs"]
mod overlay;
#[path = "queue.rs"]
mod queue;
#[path = "restamps.rs"]
mod restamps;
#[path = "sim_host.rs"]
mod sim_host;

pub use durable::{DurableBook, DurableConfig, DurableShout, SeqConflict, ShoutFate};
use queue::EventQueue;
use sim_host::SharedHost;
pub use sim_host::SimHost;

/// Nodes of one replicated type `T`, linked by lossless links with random
/// latency, in virtual time.
pub struct Harness<T: Replicated> {
    config: HarnessConfig,
    rng: ChaCha8Rng,
    seed: u64,
    now: Time,
    nodes: Vec<SimNode<T>>,
    queue: EventQueue<Event>,
    /// A buffer to encode sent messages in.
    scratch: Vec<u8>,
    steps: u64,
    messages: u64,
    bytes: u64,
    /// Node pairs (smaller first) that cannot reach each other.
    blocked: BTreeSet<(usize, usize)>,
    traffic: BTreeMap<&'static str, Traffic>,
    /// Set by [`Harness::trace_ops`].
    trace: Option<OpTrace>,
    /// The largest frame sent.
    largest: usize,
    /// The durable nodes and their stores (see [`Harness::make_durable`]).
    durable: Option<durable::Durable>,
}

impl<T: Replicated> std::fmt::Debug for Harness<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<T: Replicated> Harness<T> {
    /// `n` unlinked nodes (ids 1..=n), seeded with `seed`.
    pub fn new(n: usize, seed: u64, config: HarnessConfig) -> Self {
        let nodes = (1..=n as u64)
            .map(|i| SimNode {
                proto: overlay::node_proto(
                    NodeId::from_u64(i),
                    &config.repeater,
                    (i - 1) as usize,
                    None,
                ),
                objects: BTreeMap::new(),
                failed_opens: BTreeSet::new(),
                timer: None,
                received: Vec::new(),
                alive: true,
                failures: Vec::new(),
                links: BTreeMap::new(),
                contact: None,
            })
            .collect();
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            now: Time::ZERO,
            nodes,
            queue: EventQueue::new(),
            scratch: Vec::new(),
            steps: 0,
            messages: 0,
            bytes: 0,
            blocked: BTreeSet::new(),
            traffic: BTreeMap::new(),
            trace: None,
            largest: 0,
            durable: None,
        }
    }

    /// `n` nodes seeded from `PLEXUS_SEED` (see [`seed_from_env`]).
    pub fn from_env(n: usize, config: HarnessConfig) -> Self {
        Self::new(n, seed_from_env(), config)
    }

    /// The seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// The virtual time.
    pub const fn now(&self) -> Time {
        self.now
    }

    /// Steps taken, messages delivered, bytes delivered.
    pub const fn counters(&self) -> (u64, u64, u64) {
        (self.steps, self.messages, self.bytes)
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].proto.me()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The random number generator (for tests that draw their own choices
    /// from the same seed).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Link every node to the next on a ring (so the graph is connected)
    /// and to `extra` others drawn from the harness's RNG.
    pub fn link_ring(&mut self, extra: usize) {
        let n = self.nodes.len();
        for i in 0..n {
            self.link(i, (i + 1) % n);
            for _ in 0..extra {
                let j = self.rng.random_range(0..n);
                if j != i {
                    self.link(i, j);
                }
            }
        }
    }

    /// Link nodes `a` and `b` both ways.
    pub fn link(&mut self, a: usize, b: usize) {
        assert_ne!(a, b, "a node cannot link to itself");
        if self.nodes[a].links.contains_key(&b) {
            return;
        }
        let now = self.now;
        self.nodes[a].links.insert(b, now);
        self.nodes[b].links.insert(a, now);
        if !(self.nodes[a].alive && self.nodes[b].alive) {
            return;
        }
        let (ida, idb) = (self.id(a), self.id(b));
        self.nodes[a].proto.handle_link_up(now, b, idb, None);
        self.nodes[b].proto.handle_link_up(now, a, ida, None);
        self.flush(a);
        self.flush(b);
    }

    /// Cut the link between `a` and `b`.
    pub fn unlink(&mut self, a: usize, b: usize) {
        self.nodes[a].links.remove(&b);
        self.nodes[b].links.remove(&a);
        let now = self.now;
        self.nodes[a].proto.handle_link_down(now, b);
        self.nodes[b].proto.handle_link_down(now, a);
    }

    /// The nodes `node` is linked to.
    pub fn links_of(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes[node].links.keys().copied()
    }

    /// Since when `a` and `b` are linked (a link closed and opened again
    /// counts from the new one), or `None` if they are not.
    pub fn linked_since(&self, a: usize, b: usize) -> Option<Time> {
        self.nodes[a].links.get(&b).copied()
    }

    /// Whether node `node` is up.
    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].alive
    }

    /// What node `node`'s failure detector reported (suspected, down,
    /// back), with when.
    pub fn failure_events(&self, node: usize) -> &[(Time, MembershipEvent)] {
        &self.nodes[node].failures
    }

    /// Record every op shouted from now on: when each node first gets a
    /// copy, over how many hops, and how many copies cross links (see
    /// [`Harness::trace`]).
    pub fn trace_ops(&mut self) {
        self.trace.get_or_insert_with(OpTrace::default);
    }

    /// The ops recorded since [`Harness::trace_ops`].
    pub fn trace(&self) -> Option<&OpTrace> {
        self.trace.as_ref()
    }

    /// The largest frame any node sent, in bytes.
    pub const fn largest_frame(&self) -> usize {
        self.largest
    }

    /// Traffic by message kind (see [`Message::kind`]).
    pub fn traffic(&self) -> &BTreeMap<&'static str, Traffic> {
        &self.traffic
    }

    /// The broadcast tree's counters of node `node`.
    pub fn tree_stats(&self, node: usize) -> crate::proto::dissemination::TreeStats {
        self.nodes[node].proto.tree_stats()
    }

    /// The anti-entropy counters of node `node`.
    pub fn anti_entropy_stats(&self, node: usize) -> crate::proto::anti_entropy::AntiEntropyStats {
        self.nodes[node].proto.anti_entropy_stats()
    }

    /// The state-transfer counters of node `node`.
    pub fn transfer_stats(&self, node: usize) -> crate::proto::pieces::TransferStats {
        self.nodes[node].proto.gossip_stats().transfers
    }

    /// Create object `name` on node `node`.
    pub fn create(&mut self, node: usize, name: &str, initial: T) {
        let host = Replica::new(self.id(node), initial);
        self.host(node, name, host);
    }

    /// Give node `node` a copy of `name` as an answered open would: the
    /// state `source` exports now, without the messages (to set up a large
    /// run quickly). Like any opener, `node` is not a member of the replica
    /// set until it writes.
    pub fn open_from(&mut self, node: usize, source: usize, name: &str) {
        let state = {
            let host = self.nodes[source].objects.get(name).unwrap_or_else(|| {
                panic!("node {source} does not hold {name}");
            });
            let state = host.lock().replica.export();
            state
        };
        let replica = Replica::from_state(self.id(node), state);
        self.host(node, name, replica);
    }

    fn host(&mut self, node: usize, name: &str, mut replica: Replica<T>) {
        self.log_fresh(node, name, &mut replica);
        let shared = Arc::new(Mutex::new(SimHost {
            replica,
            fired: Vec::new(),
            stable: Vec::new(),
            restamps: Vec::new(),
        }));
        let n = &mut self.nodes[node];
        n.objects.insert(name.to_owned(), shared.clone());
        let key = ObjectKey::new(T::TYPE_TAG, name);
        let host = durable::host_box(self.durable.as_ref(), node, key.clone(), shared);
        n.proto.host(key, host);
        self.flush(node);
    }

    /// Shout `op` on node `node`'s copy of `name`.
    pub fn shout(&mut self, node: usize, name: &str, op: T::Op) -> OpId {
        if self.is_durable(node) {
            return self.shout_durable(node, name, op);
        }
        let shared = self.nodes[node].objects.get(name).unwrap_or_else(|| {
            panic!("node {node} does not hold {name}");
        });
        let payload = crate::proto::message::encode_value(&op, "op").expect("test ops encode");
        let (id, relay) = {
            let mut host = shared.lock();
            let SimHost { replica, fired, .. } = &mut *host;
            let id = replica.shout(op, |_, _, id| fired.push(id));
            (id, replica.is_admitted())
        };
        if let Some(trace) = &mut self.trace {
            trace.shouted(id, node, self.nodes.len(), self.now);
        }
        if !relay {
            // Provisional: relayed once a member admits this node and it
            // is re-stamped (see `Replica`).
            let now = self.now;
            let key = ObjectKey::new(T::TYPE_TAG, name);
            self.nodes[node].proto.request_admission(now, &key);
            self.flush(node);
            return id;
        }
        let frame = OpFrame {
            object: ObjectKey::new(T::TYPE_TAG, name),
            id,
            payload: payload.into(),
        };
        let now = self.now;
        self.nodes[node].proto.handle_local_op(now, frame);
        self.flush(node);
        id
    }

    /// Start opening `name` on node `node`; [`drive`](Self::drive) to finish.
    pub fn open(&mut self, node: usize, name: &str) {
        let now = self.now;
        self.nodes[node]
            .proto
            .open(now, ObjectKey::new(T::TYPE_TAG, name));
        self.flush(node);
    }

    /// Send application data from node `node`.
    pub fn send_data(
        &mut self,
        node: usize,
        spread: crate::proto::data::Spread,
        payload: Vec<u8>,
    ) -> Result<(), crate::proto::data::SpreadError> {
        let result = self.nodes[node]
            .proto
            .send_data(spread, payload, &mut self.rng);
        self.flush(node);
        result
    }

    /// The data node `node` received, in order, with each sender.
    pub fn received(&self, node: usize) -> &[(NodeId, Vec<u8>)] {
        &self.nodes[node].received
    }

    /// Whether an open of `name` on `node` failed.
    pub fn open_failed(&self, node: usize, name: &str) -> bool {
        self.nodes[node].failed_opens.contains(name)
    }

    /// Node `node`'s copy of `name`, if it holds one.
    pub fn host_of(&self, node: usize, name: &str) -> Option<Arc<Mutex<SimHost<T>>>> {
        self.nodes[node].objects.get(name).cloned()
    }

    /// A clone of node `node`'s current state of `name`.
    pub fn state(&self, node: usize, name: &str) -> Option<T> {
        self.host_of(node, name)
            .map(|h| h.lock().replica.state().clone())
    }

    /// The CBOR bytes of node `node`'s current state of `name`.
    pub fn snapshot_bytes(&self, node: usize, name: &str) -> Option<Vec<u8>> {
        self.host_of(node, name).map(|h| {
            crate::proto::message::encode_value(h.lock().replica.state(), "state")
                .expect("test states encode")
        })
    }

    /// Deliver the next event. `false` when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some((key, event)) = self.queue.pop() else {
            return false;
        };
        let at = key.0;
        if let Event::Timeout { node } = event {
            if self.nodes[node].timer != Some(key) {
                // A wake-up cancelled or replaced since it was queued.
                return true;
            }
        }
        self.now = self.now.max(at);
        self.steps += 1;
        self.maybe_commit();
        match event {
            Event::Deliver { to, from, msg, len } => {
                // Frames due on one link at one instant arrive as one batch,
                // as one read does on a real link.
                let mut msgs = Vec::new();
                self.admit(to, from, msg, len, &mut msgs);
                while let Some((next, Event::Deliver { to: t, from: f, .. })) = self.queue.peek() {
                    if next.0 != at || (*t, *f) != (to, from) {
                        break;
                    }
                    if let Some((_, Event::Deliver { msg, len, .. })) = self.queue.pop() {
                        self.steps += 1;
                        self.admit(to, from, msg, len, &mut msgs);
                    }
                }
                if !msgs.is_empty() {
                    let now = self.now;
                    self.nodes[to].proto.handle_messages(now, from, msgs);
                    self.flush(to);
                }
            }
            Event::Connect { from, to } => self.connect(from, to),
            Event::Close { from, to } => self.close(from, to),
            Event::Join { node } => self.retry_join(node),
            Event::Timeout { node } => {
                self.nodes[node].timer = None;
                if !self.nodes[node].alive {
                    return true;
                }
                let now = self.now;
                self.nodes[node].proto.handle_timeout(now);
                self.flush(node);
            }
        }
        true
    }

    /// Count a message arriving at `to` from `from`; add it to `msgs`
    /// unless the link or the node is gone.
    fn admit(
        &mut self,
        to: usize,
        from: usize,
        msg: Arc<Message>,
        len: usize,
        msgs: &mut Vec<Message>,
    ) {
        let traffic = self.traffic.entry(msg.kind()).or_default();
        if !self.nodes[to].alive
            || !self.nodes[to].links.contains_key(&from)
            || self.blocked.contains(&(to.min(from), to.max(from)))
        {
            traffic.dropped += 1;
            return;
        }
        traffic.messages += 1;
        traffic.bytes += len as u64;
        if let (Some(trace), Message::Op(op) | Message::Repair(op)) = (&mut self.trace, &*msg) {
            trace.delivered(&op.id, from, to, self.now);
        }
        self.messages += 1;
        self.bytes += len as u64;
        // The last copy of a multicast (and every unicast) moves out.
        msgs.push(Arc::try_unwrap(msg).unwrap_or_else(|shared| Message::clone(&shared)));
    }

    /// Step through every event due up to `now + duration`, then move the
    /// clock there.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.queue.peek().is_some_and(|((at, _), _)| at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Step until no message is in flight and no node waits on a timer
    /// other than its anti-entropy rounds (which never stop). Panics after
    /// 10,000,000 steps: a protocol that never goes quiet is a bug.
    pub fn drive(&mut self) {
        assert!(
            self.drive_bounded(10_000_000),
            "not quiescent after 10,000,000 steps"
        );
    }

    /// [`drive`](Self::drive) for at most `max_steps` steps; `true` if it
    /// went quiet.
    pub fn drive_bounded(&mut self, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if self.is_quiet() || !self.step() {
                return true;
            }
        }
        self.is_quiet()
    }

    fn is_quiet(&self) -> bool {
        let in_flight = self
            .queue
            .events()
            .any(|e| matches!(e, Event::Deliver { .. } | Event::Connect { .. }));
        !in_flight && !self.nodes.iter().any(|n| n.alive && n.proto.is_waiting())
    }

    /// Carry out node `node`'s output events.
    fn flush(&mut self, node: usize) {
        while let Some(event) = self.nodes[node].proto.poll_event() {
            match event {
                OutEvent::Send { to, msg } => self.send(node, &[to], msg),
                OutEvent::Multicast { to, msg } => self.send(node, &to, msg),
                OutEvent::Opened { fetch, state } => {
                    let name = state.object.name.to_string();
                    match replica_from_frame::<T>(self.id(node), &state) {
                        Ok(replica) => self.host(node, &name, replica),
                        Err(_) => {
                            self.nodes[node].proto.abandon(fetch);
                            self.nodes[node].failed_opens.insert(name);
                        }
                    }
                }
                OutEvent::OpenFailed { object, .. } => {
                    self.nodes[node]
                        .failed_opens
                        .insert(object.name.to_string());
                }
                OutEvent::Data { from, payload, .. } => {
                    self.nodes[node].received.push((from, payload));
                }
                OutEvent::Membership(
                    event @ (MembershipEvent::Suspected(_)
                    | MembershipEvent::Down(_)
                    | MembershipEvent::Back(_)),
                ) => {
                    let now = self.now;
                    self.nodes[node].failures.push((now, event));
                }
                OutEvent::Dial { peer, addr } => self.dial(node, peer, &addr),
                OutEvent::Close { link } => {
                    // As a driver's writer does, send what is queued first.
                    let at = self.now + self.config.max_latency;
                    self.queue.push(
                        at,
                        Event::Close {
                            from: node,
                            to: link,
                        },
                    );
                }
                OutEvent::Rejected { .. } | OutEvent::Membership(_) => {}
            }
        }
        self.set_timer(node);
    }

    /// Keep exactly one wake-up queued for `node`, at the deadline its
    /// state machine asks for. A deadline that moved (earlier or later)
    /// replaces the queued one, so no node ever wakes for nothing.
    fn set_timer(&mut self, node: usize) {
        let want = self.nodes[node].proto.poll_timeout();
        if want == self.nodes[node].timer.map(|(at, _)| at) {
            return;
        }
        self.cancel_timer(node);
        if let Some(at) = want {
            let key = self.queue.push(at, Event::Timeout { node });
            self.nodes[node].timer = Some(key);
        }
    }

    /// Cancel `node`'s queued wake-up (it is skipped when it comes up).
    pub(super) fn cancel_timer(&mut self, node: usize) {
        self.nodes[node].timer = None;
    }

    fn send(&mut self, from: usize, to: &[usize], msg: Message) {
        self.scratch.clear();
        msg.encode_into(&mut self.scratch, DEFAULT_MAX_FRAME)
            .expect("harness messages fit a frame");
        let len = self.scratch.len();
        // Test builds also check the round trip the copies skip.
        if cfg!(debug_assertions) {
            let back = Message::decode(&self.scratch, DEFAULT_MAX_FRAME)
                .expect("a message the harness sends decodes");
            assert_eq!(back, msg, "a message the harness sends decodes as itself");
        }
        let kind = msg.kind();
        let shared = Arc::new(msg);
        self.largest = self.largest.max(len);
        let mut dropped = 0;
        for &to in to {
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
                dropped += 1;
                continue;
            }
            let copies = if self.rng.random_bool(self.config.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.latency(from, to);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to,
                        from,
                        msg: Arc::clone(&shared),
                        len,
                    },
                );
            }
        }
        let traffic = self.traffic.entry(kind).or_default();
        traffic.largest = traffic.largest.max(len as u64);
        traffic.dropped += dropped;
    }

    fn latency(&mut self, from: usize, to: usize) -> Duration {
        if let Some(model) = &self.config.link_latency {
            return model.between(self.seed, from, to);
        }
        let (lo, hi) = (self.config.min_latency, self.config.max_latency);
        if hi <= lo {
            return lo;
        }
        Duration::from_micros(
            self.rng
                .random_range(lo.as_micros() as u64..=hi.as_micros() as u64),
        )
    }
}
