//! The repeater actor: owns a node's fan-out set and routes its ops.
//!
//! One actor per node. Its mailbox takes link events, batches of decoded
//! inbound messages, wake-ups for local ops, hosting requests and opens;
//! each is handed to the sans-IO [`RepeaterNode`], whose output events the
//! actor turns into frames on links, timers and replies.
//!
//! The op path is batched end to end: a link's reader sends everything that
//! arrived in one read as one message; local shouts queue in [`LocalOps`]
//! and wake the actor once per burst; outbound frames are encoded once and
//! appended to each link's [`Outbox`], whose writer sends a burst in one
//! write.

use std::collections::HashMap;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use rustc_hash::FxHashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::OpenError;
use crate::proto::host::Host;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::proto::data::{Spread, SpreadError, VectorClock};
use crate::proto::membership::{MembershipEvent, NodeState, PeerInfo};
use crate::proto::message::{DecodeError, FetchId, Message, OpFrame, StateFrame};
use parking_lot::Mutex;

use super::frames::{Outbox, Pushed, Tally};
use crate::proto::node::{GossipStats, OutEvent, RepeaterConfig, RepeaterNode, RepeaterStats};
use crate::proto::sampling::Descriptor;
use crate::proto::time::Time;
use crate::proto::{NodeId, ObjectKey};

/// A node-local link number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LinkId(pub(crate) u64);

/// Builds the typed replica for an answered open; `Ok(None)` when the object
/// appeared locally meanwhile.
pub(crate) type OpenBuilder =
    Box<dyn FnOnce(&StateFrame) -> Result<Option<Box<dyn Host>>, DecodeError> + Send>;

/// Application data received from a peer (see
/// [`Node::send_data`](crate::Node::send_data)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedData {
    /// The node that sent it.
    pub from: NodeId,
    /// The bytes.
    pub payload: Vec<u8>,
    /// The sender's vector clock when it sent them: compare two with
    /// [`VectorClock::compare`] to order data events (happened before, after,
    /// or concurrent).
    pub clock: VectorClock,
}

/// What a linked peer looks like from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The peer's node id.
    pub peer: NodeId,
    /// What this node sent on the link (every message: ops, gossip,
    /// data, control).
    pub sent: LinkTraffic,
    /// What this node received on it.
    pub received: LinkTraffic,
    /// Bytes queued for the link now and not yet written to the
    /// transport (at most about
    /// [`NodeConfig::max_link_queue`](crate::NodeConfig::max_link_queue)
    /// plus one frame, and what other messages add).
    pub queued: u64,
    /// Op frames not sent on the link because more than
    /// [`NodeConfig::max_link_queue`](crate::NodeConfig::max_link_queue)
    /// bytes were queued for it (the peer, or the path to it, was slower
    /// than the ops; anti-entropy repairs them). Not counted in `sent`.
    pub shed: u64,
}

/// Messages and bytes that crossed a link one way, since it came up. Bytes
/// are frame bytes (each with its 4-byte length prefix), not counting
/// QUIC's and UDP's own headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkTraffic {
    /// Messages (frames).
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

impl LinkTraffic {
    fn of(tally: &Tally) -> Self {
        let (messages, bytes) = tally.read();
        Self { messages, bytes }
    }
}

/// The actor's mailbox.
pub(crate) enum RepeaterMsg {
    LinkUp {
        link: LinkId,
        peer: NodeId,
        addr: Option<String>,
        dial: DialKey,
        out: Arc<Outbox>,
        /// What arrives on the link, counted by its reader.
        received: Arc<Tally>,
        /// Whether the application made this link ([`Node::link`]): the
        /// overlay keeps it.
        ///
        /// [`Node::link`]: crate::Node::link
        pinned: bool,
        /// `true`: the link is kept; `false`: it duplicates a preferred
        /// connection to the same peer and must be closed.
        kept: oneshot::Sender<bool>,
    },
    Shutdown,
    SendData {
        spread: Spread,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), SpreadError>>,
    },
    LinkDown {
        link: LinkId,
    },
    /// With an overlay: join it through `peer`, just linked at `addr`.
    Join {
        peer: NodeId,
        addr: String,
    },
    /// An overlay dial to `peer` failed.
    DialFailed {
        peer: NodeId,
    },
    Inbound {
        link: LinkId,
        msgs: Vec<Message>,
    },
    /// Local ops are waiting in [`LocalOps`].
    LocalOps,
    /// The replica of `object` made ops while not a member of its replica
    /// set: ask a member to admit it.
    Admission {
        object: ObjectKey,
    },
    Host {
        object: ObjectKey,
        host: Box<dyn Host>,
    },
    Open {
        object: ObjectKey,
        build: OpenBuilder,
        reply: oneshot::Sender<Result<(), OpenError>>,
    },
    Links(oneshot::Sender<Vec<LinkInfo>>),
    Stats(oneshot::Sender<RepeaterStats>),
    GossipStats(oneshot::Sender<GossipStats>),
    PeerSample(oneshot::Sender<Vec<Descriptor<NodeId>>>),
    Tick,
}

pub(crate) struct RepeaterArgs {
    pub(crate) me: NodeId,
    pub(crate) seeds: bool,
    pub(crate) membership: MembershipSink,
    pub(crate) config: RepeaterConfig,
    pub(crate) max_frame: usize,
    /// Op frames are shed on a link with more than this queued (see
    /// [`NodeConfig::max_link_queue`](crate::NodeConfig::max_link_queue)).
    pub(crate) max_link_queue: Option<usize>,
    pub(crate) local: Arc<LocalOps>,
    /// The address this node advertises.
    pub(crate) addr: String,
    /// Where the overlay's dial requests go.
    pub(crate) dials: mpsc::UnboundedSender<(NodeId, String)>,
}

/// Ops shouted here, waiting for the actor. Shouters append under a short
/// lock (while holding their object's lock, so one origin's ops stay in
/// seq order); the one that finds the queue empty wakes the actor, which
/// takes the whole queue at once.
#[derive(Debug, Default)]
pub(crate) struct LocalOps {
    queue: Mutex<Vec<OpFrame>>,
}

impl LocalOps {
    /// Queue `frame`; `true` if the actor must be woken.
    pub(crate) fn push(&self, frame: OpFrame) -> bool {
        let mut queue = self.queue.lock();
        queue.push(frame);
        queue.len() == 1
    }

    /// Swap the queue with `spare` (empty, its capacity kept for the next
    /// burst): the queued ops end up in `spare`.
    fn take_into(&self, spare: &mut Vec<OpFrame>) {
        std::mem::swap(&mut *self.queue.lock(), spare);
    }
}

struct PendingOpen {
    object: ObjectKey,
    build: OpenBuilder,
    reply: oneshot::Sender<Result<(), OpenError>>,
    started: Instant,
}

struct Link {
    peer: NodeId,
    dial: DialKey,
    out: Arc<Outbox>,
    received: Arc<Tally>,
}

impl Drop for Link {
    /// A link the actor forgets is closed: its writer finishes the stream.
    fn drop(&mut self) {
        self.out.close();
    }
}

/// Who dialed a connection, and the nonce the dialer sent: facts both ends
/// share, so both pick the same connection when a pair has two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DialKey {
    pub(crate) dialer: NodeId,
    pub(crate) nonce: u64,
}

impl DialKey {
    /// Whether `self`, a new connection, is preferred over `other`, one
    /// already up, between `a` and `b`. Two dialed by one node in different
    /// runs (the high half of the nonce names the run): the new one, since
    /// the dialer restarted and holds only it (keeping the old, dead one
    /// would refuse the restarted node until the old one idles out).
    /// Otherwise the connection dialed by the smaller id wins, then the
    /// smaller nonce: both ends agree.
    fn preferred_over(self, other: DialKey, a: NodeId, b: NodeId) -> bool {
        if self.dialer == other.dialer && self.nonce >> 32 != other.nonce >> 32 {
            return true;
        }
        let low = a.min(b);
        let rank = |k: DialKey| (k.dialer != low, k.nonce);
        rank(self) < rank(other)
    }
}

/// Where membership news goes: the current state and an event stream.
#[derive(Clone)]
pub(crate) struct MembershipSink {
    pub(crate) state: Arc<watch::Sender<NodeState>>,
    pub(crate) view: Arc<watch::Sender<Vec<PeerInfo>>>,
    pub(crate) events: broadcast::Sender<MembershipEvent>,
    pub(crate) data: broadcast::Sender<ReceivedData>,
}

pub(crate) struct RepeaterState {
    proto: RepeaterNode<LinkId>,
    rng: StdRng,
    membership: MembershipSink,
    links: FxHashMap<LinkId, Link>,
    opens: HashMap<FetchId, PendingOpen>,
    epoch: Instant,
    timer_at: Option<Time>,
    max_frame: usize,
    max_link_queue: Option<usize>,
    local: Arc<LocalOps>,
    /// The local ops being relayed (its buffer swaps with the queue's).
    local_ops: Vec<OpFrame>,
    dials: mpsc::UnboundedSender<(NodeId, String)>,
    /// Reused for encoding outbound frames.
    scratch: Vec<u8>,
}

impl RepeaterState {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// The actor itself (stateless; its state is [`RepeaterState`]).
pub(crate) struct RepeaterActor;

impl Actor for RepeaterActor {
    type Msg = RepeaterMsg;
    type State = RepeaterState;
    type Arguments = RepeaterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RepeaterArgs,
    ) -> Result<RepeaterState, ActorProcessingErr> {
        let mut proto = RepeaterNode::new(args.me, args.config);
        proto.set_addr(Some(args.addr));
        proto.handle_start(args.seeds);
        let mut state = RepeaterState {
            proto,
            rng: StdRng::from_os_rng(),
            membership: args.membership,
            links: FxHashMap::default(),
            opens: HashMap::new(),
            epoch: Instant::now(),
            timer_at: None,
            max_frame: args.max_frame,
            max_link_queue: args.max_link_queue,
            local: args.local,
            local_ops: Vec::new(),
            dials: args.dials,
            scratch: Vec::with_capacity(1024),
        };
        drain(&mut state);
        Ok(state)
    }

    /// Connection actors are linked to the repeater. One that ends has
    /// already reported its link down; the repeater carries on (ractor's
    /// default would stop the supervisor with any child).
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut RepeaterState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(who, error) => {
                tracing::error!(actor = %who.get_id(), %error, "a connection actor failed");
            }
            other => tracing::trace!(?other, "connection actor event"),
        }
        Ok(())
    }

    /// The node is stopping: so is every connection.
    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut RepeaterState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(Some("node shut down".into()));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RepeaterMsg,
        state: &mut RepeaterState,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.now();
        match msg {
            RepeaterMsg::LinkUp {
                link,
                peer,
                addr,
                dial,
                out,
                received,
                pinned,
                kept,
            } => {
                let me = state.proto.me();
                let existing = state.links.iter().find(|(_, l)| l.peer == peer);
                let old = existing.map(|(id, l)| (*id, l.dial));
                if let Some((_, old_dial)) = old.filter(|(_, d)| !dial.preferred_over(*d, me, peer))
                {
                    // The linker closes it once the peer has had our hello.
                    tracing::debug!(?link, %peer, ?old_dial, "duplicate connection; keeping the other");
                    drop(out);
                    let _ = kept.send(false);
                    if let (true, Some((old, _))) = (pinned, old) {
                        state.proto.pin(now, old);
                    }
                } else {
                    tracing::debug!(?link, %peer, ?addr, "link up");
                    let _ = kept.send(true);
                    state.links.insert(
                        link,
                        Link {
                            peer,
                            dial,
                            out,
                            received,
                        },
                    );
                    state.proto.handle_link_up(now, link, peer, addr);
                    if pinned {
                        state.proto.pin(now, link);
                    }
                    if let Some((old, _)) = old {
                        // Dropping its sender closes the old connection.
                        tracing::debug!(?old, %peer, "duplicate connection replaced");
                        state.links.remove(&old);
                        state.proto.handle_link_down(now, old);
                    }
                }
            }
            RepeaterMsg::Shutdown => state.proto.handle_shutdown(),
            RepeaterMsg::SendData {
                spread,
                payload,
                reply,
            } => {
                let _ = reply.send(state.proto.send_data(spread, payload, &mut state.rng));
            }
            RepeaterMsg::LinkDown { link } => {
                if let Some(l) = state.links.remove(&link) {
                    tracing::debug!(?link, peer = %l.peer, "link down");
                }
                state.proto.handle_link_down(now, link);
            }
            RepeaterMsg::Join { peer, addr } => state.proto.join(now, peer, Some(addr)),
            RepeaterMsg::DialFailed { peer } => state.proto.handle_dial_failed(now, peer),
            RepeaterMsg::Inbound { link, msgs } => {
                if state.links.contains_key(&link) {
                    state.proto.handle_messages(now, link, msgs);
                }
            }
            // Taken below, after every message.
            RepeaterMsg::LocalOps => {}
            RepeaterMsg::Admission { object } => state.proto.request_admission(now, &object),
            RepeaterMsg::Host { object, host } => state.proto.host(object, host),
            RepeaterMsg::Open {
                object,
                build,
                reply,
            } => {
                let fetch = state.proto.open(now, object.clone());
                state.opens.insert(
                    fetch,
                    PendingOpen {
                        object,
                        build,
                        reply,
                        started: Instant::now(),
                    },
                );
            }
            RepeaterMsg::Stats(reply) => {
                let _ = reply.send(state.proto.stats());
            }
            RepeaterMsg::GossipStats(reply) => {
                let _ = reply.send(state.proto.gossip_stats());
            }
            RepeaterMsg::PeerSample(reply) => {
                let _ = reply.send(state.proto.peer_sample());
            }
            RepeaterMsg::Links(reply) => {
                let mut links: Vec<_> = state.links.iter().collect();
                links.sort_by_key(|(id, _)| **id);
                let _ = reply.send(
                    links
                        .into_iter()
                        .map(|(_, l)| LinkInfo {
                            peer: l.peer,
                            sent: LinkTraffic::of(&l.out.sent),
                            received: LinkTraffic::of(&l.received),
                            queued: l.out.queued() as u64,
                            shed: l.out.shed(),
                        })
                        .collect(),
                );
            }
            RepeaterMsg::Tick => {
                state.timer_at = None;
                state.proto.handle_timeout(now);
            }
        }
        // Local ops are taken after every message, not only on their own
        // wake-up: an observer that shouts while an inbound batch is
        // applied has its op relayed in this same turn.
        let mut local = std::mem::take(&mut state.local_ops);
        state.local.take_into(&mut local);
        state.proto.handle_local_ops(now, local.drain(..));
        state.local_ops = local;
        drain(state);
        schedule_timer(&myself, state);
        Ok(())
    }
}

/// Carry out every output event of the state machine.
fn drain(state: &mut RepeaterState) {
    while let Some(event) = state.proto.poll_event() {
        match event {
            OutEvent::Send { to, msg } => send(state, &[to], &msg),
            OutEvent::Multicast { to, msg } => send(state, &to, &msg),
            OutEvent::Dial { peer, addr } => {
                if state.dials.send((peer, addr)).is_err() {
                    state.proto.handle_dial_failed(state.now(), peer);
                }
            }
            OutEvent::Close { link } => {
                // The writer sends what is queued, then closes; the
                // connection actor then reports the link down.
                if let Some(l) = state.links.get(&link) {
                    tracing::debug!(?link, peer = %l.peer, "overlay closes an unneeded link");
                    l.out.close();
                }
            }
            OutEvent::Rejected { from, op, error } => {
                let peer = state.links.get(&from).map(|l| l.peer.to_string());
                let op = op.map(|o| o.to_string());
                tracing::warn!(?from, ?peer, ?op, %error, "refused a peer's request");
            }
            OutEvent::Opened {
                fetch,
                state: frame,
            } => {
                let Some(open) = state.opens.remove(&fetch) else {
                    state.proto.abandon(fetch);
                    continue;
                };
                match (open.build)(&frame) {
                    Ok(Some(host)) => {
                        state.proto.host(open.object, host);
                        let _ = open.reply.send(Ok(()));
                    }
                    Ok(None) => {
                        state.proto.abandon(fetch);
                        let _ = open.reply.send(Ok(()));
                    }
                    Err(source) => {
                        state.proto.abandon(fetch);
                        let _ = open.reply.send(Err(OpenError::Decode {
                            object: open.object,
                            source,
                        }));
                    }
                }
            }
            OutEvent::Data {
                from,
                payload,
                clock,
            } => {
                let _ = state.membership.data.send(ReceivedData {
                    from,
                    payload,
                    clock,
                });
            }
            OutEvent::Membership(event) => {
                tracing::debug!(?event, "membership");
                // View, event, state, in that order: whoever hears the event
                // sees the view it implies, and whoever sees the new state
                // can already read the events that led to it.
                let membership = state.proto.membership();
                state.membership.view.send_replace(membership.view());
                let _ = state.membership.events.send(event);
                state
                    .membership
                    .state
                    .send_replace(state.proto.membership().state());
            }
            OutEvent::OpenFailed { fetch, object } => {
                if let Some(open) = state.opens.remove(&fetch) {
                    let waited = open.started.elapsed();
                    let _ = open.reply.send(Err(OpenError::NotFound { object, waited }));
                }
            }
        }
    }
}

/// Encode `msg` once and queue it on every link in `to`. A link whose
/// connection is gone is dropped.
fn send(state: &mut RepeaterState, to: &[LinkId], msg: &Message) {
    state.scratch.clear();
    if let Err(error) = msg.encode_into(&mut state.scratch, state.max_frame) {
        tracing::error!(%error, "could not encode an outbound message; dropped");
        return;
    }
    // Ops (tree pushes and repairs) are what a fast writer sends in bulk;
    // on a link that is behind they are shed, and anti-entropy repairs
    // them once it catches up. Everything else is small, and queued.
    let bound = match msg {
        Message::Op(_) | Message::Repair(_) => state.max_link_queue,
        _ => None,
    };
    for link in to {
        let closed = match state.links.get(link) {
            Some(l) => l.out.push_bounded(&state.scratch, bound) == Pushed::Closed,
            None => false,
        };
        if closed {
            state.links.remove(link);
            let now = state.now();
            state.proto.handle_link_down(now, *link);
        }
    }
}

/// Ask for a `Tick` at the state machine's next deadline, unless one is
/// already due sooner.
fn schedule_timer(myself: &ActorRef<RepeaterMsg>, state: &mut RepeaterState) {
    let Some(next) = state.proto.poll_timeout() else {
        return;
    };
    if state.timer_at.is_some_and(|at| at <= next) {
        return;
    }
    state.timer_at = Some(next);
    let delay = next.since(state.now());
    myself.send_after(delay, || RepeaterMsg::Tick);
}

#[cfg(test)]
mod tests {
    use super::DialKey;
    use crate::proto::NodeId;

    #[test]
    fn a_restarted_dialer_replaces_its_dead_connection_and_ties_agree() {
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        let run = |boot: u64, low: u64| (boot << 32) | low;
        // One run: the smaller nonce wins, seen from either end.
        let old = DialKey {
            dialer: b,
            nonce: run(7, 1),
        };
        let new = DialKey {
            dialer: b,
            nonce: run(7, 9),
        };
        assert!(!new.preferred_over(old, a, b));
        assert!(!new.preferred_over(old, b, a));
        // The dialer restarted: its new connection wins whatever the nonce.
        let restarted = DialKey {
            dialer: b,
            nonce: run(8, 9),
        };
        assert!(restarted.preferred_over(old, a, b));
        // Between dialers, the smaller id's connection wins.
        let from_a = DialKey {
            dialer: a,
            nonce: run(3, 5),
        };
        assert!(from_a.preferred_over(old, a, b));
        assert!(!old.preferred_over(from_a, a, b));
    }
}
