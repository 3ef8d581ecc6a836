//! HyParView's parameters and messages (see [`super`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::time::Time;

/// The longest address accepted from a peer, in bytes; a longer one is
/// dropped (the contact is kept, without an address).
pub const MAX_ADDR_LEN: usize = 256;

/// The protocol's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyParViewConfig {
    /// The most peers in the active view (at least 1). The paper uses
    /// `log10(n) + 1`: 5 for ~10,000 nodes.
    pub active_size: usize,
    /// The most peers in the passive view. The paper uses
    /// `k * (log10(n) + 1)` with `k = 6`: 30 for ~10,000 nodes.
    pub passive_size: usize,
    /// Active random walk length: the TTL a `ForwardJoin` starts with.
    pub arwl: u32,
    /// Passive random walk length: the TTL at which a `ForwardJoin` puts the
    /// new node in the passive view.
    pub prwl: u32,
    /// The TTL a `Shuffle` starts with.
    pub shuffle_rwl: u32,
    /// `ka`: active peers sent in a shuffle.
    pub shuffle_active: usize,
    /// `kp`: passive peers sent in a shuffle.
    pub shuffle_passive: usize,
    /// How often a node shuffles (and retries refused repairs).
    pub shuffle_interval: Duration,
    /// How long a `Join` or `Neighbor` request waits for its answer.
    pub neighbor_timeout: Duration,
    /// Island healing: at each shuffle, a node whose active view is full
    /// asks a random passive peer to be its neighbour with high priority
    /// one time in `rotation` (0: never), and drops a random neighbour
    /// when it accepts. HyParView alone can split into parts that never
    /// meet again: a group whose members' active views are full of each
    /// other never asks anyone outside. A rotation reaches outside the
    /// group whenever its passive view still names a peer there (peer
    /// sampling keeps those fresh). Default: 0 (off). Each swap moves four
    /// links, and the broadcast trees repair each broken one with a graft
    /// on the next op: in the simulator at 1,000 nodes, one swap per node
    /// every 5 minutes (`rotation = 30`) raised latency to all from 180 to
    /// 750 ms. With peer sampling (on by default) the passive views are a
    /// sample of the whole cluster, and the splits seen without it did not
    /// form (`faults-500`, seeds 1–6); turn rotation on where an overlay
    /// must heal from a split that left every view full.
    pub rotation: u32,
}

impl Default for HyParViewConfig {
    /// The paper's values for ~10,000 nodes: active 5, passive 30, ARWL 6,
    /// PRWL 3, shuffles of 1 + 3 + 4 peers on walks of 6 hops, every 10 s;
    /// requests time out after 2 s; no rotation.
    fn default() -> Self {
        Self {
            active_size: 5,
            passive_size: 30,
            arwl: 6,
            prwl: 3,
            shuffle_rwl: 6,
            shuffle_active: 3,
            shuffle_passive: 4,
            shuffle_interval: Duration::from_secs(10),
            neighbor_timeout: Duration::from_secs(2),
            rotation: 0,
        }
    }
}

impl HyParViewConfig {
    pub(super) fn active_size(&self) -> usize {
        self.active_size.max(1)
    }

    /// The longest list a shuffle may carry (the origin comes on top).
    pub(super) fn shuffle_len(&self) -> usize {
        self.shuffle_active.saturating_add(self.shuffle_passive)
    }

    pub(super) fn interval(&self) -> Duration {
        self.shuffle_interval.max(Duration::from_millis(1))
    }
}

/// A peer and the address it advertised for dialing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contact<P> {
    /// The peer.
    pub id: P,
    /// Where to dial it, if known.
    pub addr: Option<String>,
}

/// How insistent a `Neighbor` request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Always accepted: the requester has no neighbour, ends a join walk,
    /// or rotates its view (see [`HyParViewConfig::rotation`]).
    High,
    /// Accepted only if the active view has room.
    Low,
}

/// What nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<P> {
    /// "Let me in": sent by a new node to its contact.
    Join {
        /// The sender's address.
        addr: Option<String>,
    },
    /// A new node's random walk over active links.
    ForwardJoin {
        /// The new node.
        joiner: Contact<P>,
        /// Hops left.
        ttl: u32,
    },
    /// "Be my neighbour."
    Neighbor {
        /// How insistent the request is.
        priority: Priority,
        /// The sender's address.
        addr: Option<String>,
    },
    /// The answer to a `Join` or `Neighbor` request.
    NeighborReply {
        /// Whether the sender added the requester to its active view.
        accepted: bool,
    },
    /// "You are no longer my neighbour."
    Disconnect {
        /// False when the sender is leaving for good.
        alive: bool,
    },
    /// A shuffle's random walk.
    Shuffle {
        /// The node that started it (the answer goes there).
        origin: Contact<P>,
        /// Hops left.
        ttl: u32,
        /// Peers of the origin's views.
        nodes: Vec<Contact<P>>,
    },
    /// The answer to a shuffle, sent straight to its origin.
    ShuffleReply {
        /// Peers of the answerer's passive view.
        nodes: Vec<Contact<P>>,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// Send `msg` to `to` (dialing `to.addr` if there is no connection).
    Send {
        /// The recipient.
        to: Contact<P>,
        /// The message.
        msg: Message<P>,
    },
    /// The peer joined the active view: keep a connection to it.
    NeighborUp(Contact<P>),
    /// The peer left the active view: the connection may close (after the
    /// messages already queued for it, such as a `Disconnect`, went out).
    NeighborDown(P),
}

/// A `Join` or `Neighbor` request awaiting its answer.
#[derive(Debug)]
pub(super) struct Request<P> {
    pub(super) to: Contact<P>,
    pub(super) priority: Priority,
    pub(super) deadline: Time,
}
