//! The public types of the routing state machine: its settings, its output
//! events and its counters.

use std::time::Duration;

use super::super::anti_entropy::{AntiEntropyConfig, AntiEntropyStats};
use super::super::data::VectorClock;
use super::super::dissemination::{DisseminationConfig, TreeStats};
use super::super::host::HostError;
use super::super::hyparview::HyParViewConfig;
use super::super::id::{NodeId, ObjectKey, OpId};
use super::super::membership::MembershipEvent;
use super::super::message::{FetchId, Message, StateFrame};
use super::super::pieces::{TransferConfig, TransferStats};
use super::super::sampling::SamplingConfig;
use super::super::swim::{SwimConfig, SwimStats};
use super::overlay::OverlayStats;
#[cfg(doc)]
use super::RepeaterNode;

/// Settings of the routing state machine.
#[derive(Clone, Debug)]
pub struct RepeaterConfig {
    /// How long an `open` waits for some node to answer with the object's
    /// state before it fails. Default: 5 s.
    pub fetch_timeout: Duration,
    /// How many ops are buffered per pending open; ops past this are dropped
    /// from the buffer (counted in [`RepeaterStats::buffer_overflow`]).
    /// Default: 65,536.
    pub max_buffered_ops: usize,
    /// Anti-entropy: repair rounds and stability.
    pub anti_entropy: AntiEntropyConfig,
    /// How ops travel: the broadcast tree over the links.
    pub dissemination: DisseminationConfig,
    /// The failure detector (SWIM) over the linked peers.
    pub failure_detector: SwimConfig,
    /// The overlay: with `Some`, HyParView keeps a small symmetric active
    /// view of peers (the node asks its driver to dial and close links for
    /// it, see [`OutEvent::Dial`] and [`OutEvent::Close`]), so a large
    /// cluster needs no full mesh and no hand-made topology. With `None`
    /// (the default) the links are exactly the ones the driver makes.
    /// Every node of a cluster must use the same choice.
    pub overlay: Option<HyParViewConfig>,
    /// Peer sampling (Jelasity et al.; see [`sampling`](super::super::sampling))
    /// beside the overlay: with `Some` and an overlay, every node keeps a
    /// small random view of the live cluster, renewed every cycle by
    /// exchanges with sampled peers (dialed when not linked), readable as
    /// [`RepeaterNode::peer_sample`](super::RepeaterNode::peer_sample), and
    /// HyParView's passive view is refreshed from it. Ignored without an
    /// overlay. Default: on ([`SamplingConfig::default`]: a view of 30, a
    /// 5 s cycle). Keep it on in large clusters: it is what keeps an
    /// overlay whole. HyParView's own shuffles walk the active links, so
    /// the passive views of a group that split off name only each other,
    /// and its members refill their views inside the group; sampled peers
    /// come from the whole cluster. In the simulator's `faults-500` (500
    /// nodes, 5% loss, 30 faulty nodes) one seed in five split for good
    /// without it (see also [`HyParViewConfig::rotation`]).
    pub sampling: Option<SamplingConfig>,
    /// Evict a member of an object's replica set once this node has seen
    /// its node down (declared down by the failure detector, or its last
    /// link lost without a goodbye) for this long, with nothing heard of it
    /// since. An evicted member no longer holds the stable frontier back;
    /// its later ops are void, and if it comes back it takes a new restart
    /// epoch and re-stamps them (see [`stability`](super::super::stability)).
    /// Too short a period only costs a live but cut-off member that
    /// re-stamping. `None` never evicts: a member gone for good then holds
    /// every object's frontier, and its tentative log, forever.
    /// Default: 10 minutes.
    pub evict_after: Option<Duration>,
    /// State transfers (an open's answer, anti-entropy's snapshots): over
    /// `max_piece_bytes` they travel in pieces, so no message grows with an
    /// object's state or membership (see [`pieces`](super::super::pieces)).
    pub transfers: TransferConfig,
}

impl Default for RepeaterConfig {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(5),
            max_buffered_ops: 1 << 16,
            anti_entropy: AntiEntropyConfig::default(),
            dissemination: DisseminationConfig::default(),
            failure_detector: SwimConfig::default(),
            overlay: None,
            sampling: Some(SamplingConfig::default()),
            evict_after: Some(Duration::from_secs(600)),
            transfers: TransferConfig::default(),
        }
    }
}

/// What the node asks its driver to do, or tells it.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutEvent<L> {
    /// Send `msg` on link `to`.
    Send {
        /// The link.
        to: L,
        /// The message.
        msg: Message,
    },
    /// Send `msg` on every link in `to` (encode it once).
    Multicast {
        /// The links.
        to: Vec<L>,
        /// The message.
        msg: Message,
    },
    /// A hosted object refused an op, or could not export its state for a
    /// fetch. A refused op is still relayed: the repeater does not judge
    /// payloads.
    Rejected {
        /// The link the op or fetch came from.
        from: L,
        /// The refused op (`None` for a failed export).
        op: Option<OpId>,
        /// Why.
        error: HostError,
    },
    /// An open succeeded: build a replica from `state` and call
    /// [`RepeaterNode::host`] (or [`RepeaterNode::abandon`]).
    Opened {
        /// The open's id.
        fetch: FetchId,
        /// The state to start from (boxed, as in [`Message::State`]).
        state: Box<StateFrame>,
    },
    /// Application data arrived (see [`RepeaterNode::send_data`]).
    Data {
        /// The node that sent it.
        from: NodeId,
        /// The bytes.
        payload: Vec<u8>,
        /// The sender's vector clock when it sent them.
        clock: VectorClock,
    },
    /// Membership changed (lifecycle state, peers up or down or learned).
    Membership(MembershipEvent),
    /// An open found no node holding the object in time.
    OpenFailed {
        /// The open's id.
        fetch: FetchId,
        /// The object.
        object: ObjectKey,
    },
    /// The overlay needs a link to `peer`, which advertised `addr`: open
    /// one, then report [`RepeaterNode::handle_link_up`], or
    /// [`RepeaterNode::handle_dial_failed`] if it cannot be reached.
    Dial {
        /// The peer.
        peer: NodeId,
        /// Where it said it listens.
        addr: String,
    },
    /// The overlay no longer needs this link, which this node dialed for
    /// it: close it once what is queued on it went out, then report
    /// [`RepeaterNode::handle_link_down`].
    Close {
        /// The link.
        link: L,
    },
}

/// Counters of the routing state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepeaterStats {
    /// Ops relayed for the first time (received or local).
    pub ops_seen: u64,
    /// Duplicate ops dropped.
    pub duplicates: u64,
    /// Op messages sent.
    pub ops_sent: u64,
    /// Ops dropped from a full open buffer.
    pub buffer_overflow: u64,
    /// Members of replica sets this node evicted (see
    /// [`RepeaterConfig::evict_after`]).
    pub evicted: u64,
    /// This node's ops re-stamped and relayed once its origin on an object
    /// was admitted to the replica set (its first ops on an object it only
    /// read, or its ops after its origin was evicted).
    pub restamped: u64,
    /// Admission requests this node sent (see
    /// [`RepeaterNode::request_admission`](super::RepeaterNode::request_admission)).
    pub admissions_asked: u64,
    /// Origins this node, a member, entered in a replica set at a peer's
    /// request.
    pub admitted: u64,
    /// Notices this node sent the members of a replica set that a member
    /// it saw gone for the eviction period should be evicted (it is not a
    /// member itself, so may not evict).
    pub evict_notices: u64,
}

/// Every counter of a node's gossip layers, read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// The repeater: ops seen, duplicates, op messages sent.
    pub relay: RepeaterStats,
    /// The broadcast tree: pushes, prunes, announcements, grafts.
    pub tree: TreeStats,
    /// Anti-entropy: rounds, digests, ops repaired, snapshots.
    pub anti_entropy: AntiEntropyStats,
    /// The failure detector.
    pub failure_detector: SwimStats,
    /// The overlay (all zero without one).
    pub overlay: OverlayStats,
    /// State transfers sent and received in pieces.
    pub transfers: TransferStats,
}
