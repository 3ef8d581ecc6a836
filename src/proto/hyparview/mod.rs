//! HyParView: a small, symmetric active view for dissemination, backed by a
//! larger passive view for repairs.
//!
//! This is the membership protocol of Leitão, Pereira and Rodrigues,
//! "HyParView: a membership protocol for reliable gossip-based broadcast",
//! DSN 2007. Every node keeps two partial views of the cluster:
//!
//! * the **active view** (default 5 peers, `log10(n) + 1` for ~10k nodes):
//!   the peers it keeps links to and gossips over. Links are symmetric: `a`
//!   is in `b`'s active view exactly when `b` is in `a`'s. The driver opens
//!   a connection on [`Event::NeighborUp`] and closes it on
//!   [`Event::NeighborDown`];
//! * the **passive view** (default 30 peers): a backup list of peers known
//!   to exist, refreshed by shuffles, from which failed links are replaced.
//!
//! The protocol, message by message ([`Message`]):
//!
//! * **Join.** A new node sends `Join` to any one contact. The contact adds
//!   it to its active view (dropping a random neighbour if full) and sends a
//!   `ForwardJoin` with TTL `ARWL` (active random walk length, 6) to each of
//!   its other neighbours.
//! * **ForwardJoin** walks at random over active links. Where the TTL is 0,
//!   or where there is nowhere else to go, the node asks the new node to be
//!   its neighbour with high priority; where the TTL equals `PRWL` (passive
//!   random walk length, 3) it puts the new node in its passive view.
//! * **Neighbor** asks a peer to join the active view. A high-priority
//!   request is always accepted (dropping a random neighbour if needed); a
//!   low-priority one only when there is room. Requests are high priority
//!   only when the requester has no neighbour at all (or, here, rotates
//!   its view: see island healing below). **NeighborReply**
//!   answers; the requester adds the peer to its active view on acceptance.
//! * **Disconnect** tells a neighbour it was dropped: it moves the sender to
//!   its passive view (or forgets it if the sender is leaving).
//! * **Shuffle**, every shuffle interval: a node sends itself, `ka` (3)
//!   active and `kp` (4) passive peers on a random walk of its own length.
//!   The node where the walk ends answers straight to the origin with as
//!   many peers of its passive view (**ShuffleReply**); both add what they
//!   received to their passive views, evicting first what they sent.
//! * **Failure.** When the driver reports a neighbour down
//!   ([`HyParView::handle_peer_down`]), the node asks random passive peers
//!   to be its neighbour until the active view is full again. A passive peer
//!   that fails, or does not answer within the neighbour timeout, leaves the
//!   passive view; one that refuses is not asked again before the next
//!   shuffle.
//!
//! # Choices this implementation makes
//!
//! * The paper relies on TCP connections to make links symmetric; here the
//!   handshakes are explicit. A node adds a peer to its active view when it
//!   accepts that peer's `Join` or `Neighbor` request (and answers), or when
//!   the peer accepts its own request. The driver must deliver messages
//!   between two peers in order (one connection per peer pair does that).
//! * Lost messages cannot leave a link half-open for long: a request that
//!   times out is followed by a `Disconnect` (in case the acceptance was
//!   lost), an acceptance nobody waits for is answered with a `Disconnect`,
//!   and so is a `ForwardJoin` or `Shuffle` from a peer that is not a
//!   neighbour.
//! * A join is sent again every shuffle interval until the contact accepts
//!   it, so that a lost `Join` cannot leave the node (and whoever joins
//!   through it) on an island; it is also sent again whenever the active
//!   view has room and the passive view is empty (a node alone, or a small
//!   island whose members know only each other).
//! * **Island healing** (not in the paper): HyParView can split into parts
//!   that never meet again, for instance when many nodes join at once and a
//!   group's links to the rest are all dropped for joiners. The members of
//!   such a group fill their active views with each other, and a full view
//!   asks nobody. So at each shuffle a node with a full view, one time in
//!   [`HyParViewConfig::rotation`], asks a random passive peer to be its
//!   neighbour with high priority, and drops a random neighbour when the
//!   peer accepts: a group whose passive views still name a peer outside it
//!   meets the rest. Degrees stay as they were; the two dropped neighbours
//!   refill from their passive views. It is off by default (each swap
//!   costs the broadcast trees a graft; see the field's docs): the node's
//!   peer sampling keeps passive views a sample of the whole cluster, so a
//!   group that loses its links refills outside itself.
//! * At most `2 * active_size` requests are out at once; a join walk ending
//!   beyond that only puts the new node in the passive view.
//! * Low-priority repair requests are rate-limited: at most `active_size`
//!   per shuffle interval, plus one for each neighbour lost.
//! * Nonsense from peers is ignored or clamped: messages about ourselves,
//!   walks with TTLs above the configured lengths, lists longer than a
//!   shuffle, addresses longer than [`MAX_ADDR_LEN`] bytes (dropped), and
//!   answers to requests never made.
//!
//! # Peers and addresses
//!
//! A peer is any `P` (plexus uses its 32-byte `NodeId`, tests use `u64`),
//! carried with the address it advertised for dialing as a [`Contact`].

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use rand::seq::index;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::time::Time;

mod types;

use types::Request;
pub use types::{Contact, Event, HyParViewConfig, Message, Priority, MAX_ADDR_LEN};

/// The HyParView state machine of one node.
///
/// It owns its random number generator `R` (seed it, e.g. with
/// `ChaCha8Rng::seed_from_u64`, for reproducible runs).
#[derive(Debug)]
pub struct HyParView<P, R> {
    me: Contact<P>,
    config: HyParViewConfig,
    rng: R,
    active: Vec<Contact<P>>,
    passive: Vec<Contact<P>>,
    pending: Vec<Request<P>>,
    /// Passive peers that refused a repair since the last shuffle.
    refused: Vec<P>,
    /// Low-priority repair requests left until the next shuffle.
    budget: usize,
    /// The peers sent in the shuffle awaiting its answer.
    shuffled: Option<Vec<P>>,
    /// The contact of the last join, to join again until it accepts, and
    /// whenever the active view has room and the passive view is empty.
    contact: Option<Contact<P>>,
    /// Whether that contact accepted us.
    joined: bool,
    next_shuffle: Time,
    events: VecDeque<Event<P>>,
}

impl<P, R> HyParView<P, R>
where
    P: Copy + Ord + Hash + Debug + Serialize + DeserializeOwned,
    R: Rng,
{
    /// A node `me`, reachable at `addr`, that knows nobody yet; its first
    /// shuffle falls within one interval of `now`.
    pub fn new(
        me: P,
        addr: Option<String>,
        config: HyParViewConfig,
        mut rng: R,
        now: Time,
    ) -> Self {
        let interval = u64::try_from(config.interval().as_micros()).unwrap_or(u64::MAX);
        let jitter = Duration::from_micros(rng.random_range(0..interval));
        Self {
            me: Contact {
                id: me,
                addr: sanitize(addr),
            },
            budget: config.active_size(),
            config,
            rng,
            active: Vec::new(),
            passive: Vec::new(),
            pending: Vec::new(),
            refused: Vec::new(),
            shuffled: None,
            contact: None,
            joined: false,
            next_shuffle: now + jitter,
            events: VecDeque::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> &Contact<P> {
        &self.me
    }

    /// Sets the address this node advertises in joins, requests and
    /// shuffles (one longer than [`MAX_ADDR_LEN`] is dropped).
    pub fn set_addr(&mut self, addr: Option<String>) {
        self.me.addr = sanitize(addr);
    }

    /// The parameters.
    pub fn config(&self) -> &HyParViewConfig {
        &self.config
    }

    /// The active view: the current neighbours.
    pub fn active(&self) -> &[Contact<P>] {
        &self.active
    }

    /// The passive view: the backups.
    pub fn passive(&self) -> &[Contact<P>] {
        &self.passive
    }

    /// Whether `peer` is a neighbour.
    pub fn is_active(&self, peer: P) -> bool {
        self.active.iter().any(|c| c.id == peer)
    }

    /// Joins the overlay through `contact` (any live member).
    ///
    /// Until another call, the node sends the join again at every shuffle
    /// interval until `contact` accepts it (a lost join must not leave the
    /// node, and whoever joins through it, cut off), and later whenever
    /// the active view has room and the passive view is empty. Call again with another contact if that one
    /// is gone.
    pub fn join(&mut self, now: Time, contact: P, addr: Option<String>) {
        let to = Contact {
            id: contact,
            addr: sanitize(addr),
        };
        if to.id != self.me.id {
            self.contact = Some(to.clone());
            self.joined = false;
        }
        self.send_join(now, to);
    }

    fn send_join(&mut self, now: Time, to: Contact<P>) {
        if to.id == self.me.id || self.is_active(to.id) || self.is_pending(to.id) {
            return;
        }
        self.pending.push(Request {
            to: to.clone(),
            priority: Priority::High,
            deadline: now + self.config.neighbor_timeout,
        });
        let addr = self.me.addr.clone();
        self.send(to, Message::Join { addr });
    }

    /// Leaves the overlay: tells every neighbour, and forgets both views and
    /// the join contact. The node then stays alone until the next
    /// [`Self::join`] (or until a peer asks it to be its neighbour).
    pub fn leave(&mut self) {
        for c in std::mem::take(&mut self.active) {
            let id = c.id;
            self.send(c, Message::Disconnect { alive: false });
            self.events.push_back(Event::NeighborDown(id));
        }
        self.pending.clear();
        self.passive.clear();
        self.contact = None;
    }

    /// Handles a message from `from` (the peer the driver received it from).
    pub fn handle_message(&mut self, now: Time, from: P, msg: Message<P>) {
        if from == self.me.id {
            return;
        }
        self.on_message(now, from, msg);
        // A message may have brought passive peers to a node with free
        // active slots: ask them now, not at the next shuffle.
        self.refill(now);
    }

    fn on_message(&mut self, now: Time, from: P, msg: Message<P>) {
        match msg {
            Message::Join { addr } => {
                let joiner = Contact {
                    id: from,
                    addr: sanitize(addr),
                };
                self.on_join(joiner);
            }
            Message::ForwardJoin { joiner, ttl } => {
                self.repair(from);
                self.on_forward_join(now, from, clean(joiner), ttl);
            }
            Message::Neighbor { priority, addr } => {
                let peer = Contact {
                    id: from,
                    addr: sanitize(addr),
                };
                self.on_neighbor(peer, priority);
            }
            Message::NeighborReply { accepted } => self.on_reply(now, from, accepted),
            Message::Disconnect { alive } => {
                if let Some(c) = self.remove_active(from) {
                    if alive {
                        self.add_passive(c, &[]);
                    }
                    self.budget = self.budget.saturating_add(1);
                }
                if !alive {
                    self.passive.retain(|c| c.id != from);
                    self.pending.retain(|r| r.to.id != from);
                }
                self.refill(now);
            }
            Message::Shuffle { origin, ttl, nodes } => {
                self.repair(from);
                self.on_shuffle(from, clean(origin), ttl, nodes);
            }
            Message::ShuffleReply { nodes } => {
                if let Some(sent) = self.shuffled.take() {
                    let nodes: Vec<_> = nodes
                        .into_iter()
                        .take(self.config.shuffle_len().saturating_add(1))
                        .map(clean)
                        .collect();
                    for c in nodes {
                        self.add_passive(c, &sent);
                    }
                }
            }
        }
    }

    /// The driver lost `peer` (its connection failed, or it could not be
    /// dialled): it leaves both views, and a lost neighbour is replaced from
    /// the passive view. A connection closed after a
    /// [`Event::NeighborDown`] on either side is no failure: do not report
    /// it (the peer would leave the passive view for nothing).
    pub fn handle_peer_down(&mut self, now: Time, peer: P) {
        if self.remove_active(peer).is_some() {
            self.budget = self.budget.saturating_add(1);
        }
        self.pending.retain(|r| r.to.id != peer);
        self.passive.retain(|c| c.id != peer);
        self.refill(now);
    }

    /// Expires unanswered requests and runs the shuffle if it is due (see
    /// [`Self::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Time) {
        let mut expired = Vec::new();
        self.pending.retain(|r| {
            let keep = r.deadline > now;
            if !keep {
                expired.push(r.to.clone());
            }
            keep
        });
        for c in expired {
            self.passive.retain(|p| p.id != c.id);
            // In case it accepted and the answer was lost.
            self.send(c, Message::Disconnect { alive: true });
        }
        if now >= self.next_shuffle {
            let next = self.next_shuffle + self.config.interval();
            self.next_shuffle = if next > now {
                next
            } else {
                now + self.config.interval()
            };
            self.refused.clear();
            self.budget = self.config.active_size();
            self.shuffle();
            self.rotate(now);
            // A node with room and no one left to ask (a small island
            // whose members know only each other) joins again too.
            let lonely = self.active.len() < self.config.active_size() && self.passive.is_empty();
            if let Some(contact) = self.contact.clone() {
                self.joined |= self.is_active(contact.id);
                if !self.joined || lonely {
                    self.send_join(now, contact);
                }
            }
        }
        self.refill(now);
    }

    /// The next thing to do, if any.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due: the next shuffle or the
    /// earliest request deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        let deadlines = self.pending.iter().map(|r| r.deadline);
        deadlines.chain([self.next_shuffle]).min()
    }

    fn on_join(&mut self, joiner: Contact<P>) {
        let known = self.is_active(joiner.id);
        self.add_active(joiner.clone());
        self.send(joiner.clone(), Message::NeighborReply { accepted: true });
        if known {
            return;
        }
        let others: Vec<_> = self
            .active
            .iter()
            .filter(|c| c.id != joiner.id)
            .cloned()
            .collect();
        for c in others {
            let ttl = self.config.arwl;
            let joiner = joiner.clone();
            self.send(c, Message::ForwardJoin { joiner, ttl });
        }
    }

    fn on_forward_join(&mut self, now: Time, from: P, joiner: Contact<P>, ttl: u32) {
        if joiner.id == self.me.id || self.is_active(joiner.id) {
            return;
        }
        let ttl = ttl.min(self.config.arwl);
        let next = self.random_active(&[from, joiner.id]);
        match next {
            Some(next) if ttl > 0 => {
                if ttl == self.config.prwl {
                    self.add_passive(joiner.clone(), &[]);
                }
                let ttl = ttl - 1;
                self.send(next, Message::ForwardJoin { joiner, ttl });
            }
            _ => self.request(now, joiner, Priority::High),
        }
    }

    fn on_neighbor(&mut self, peer: Contact<P>, priority: Priority) {
        let accepted = self.is_active(peer.id)
            || priority == Priority::High
            || self.active.len() < self.config.active_size();
        if accepted {
            self.add_active(peer.clone());
        } else {
            self.add_passive(peer.clone(), &[]);
        }
        self.send(peer, Message::NeighborReply { accepted });
    }

    fn on_reply(&mut self, now: Time, from: P, accepted: bool) {
        let Some(i) = self.pending.iter().position(|r| r.to.id == from) else {
            if accepted && !self.is_active(from) {
                // Accepted a request we gave up on: undo.
                let to = self.contact(from);
                self.send(to, Message::Disconnect { alive: true });
            }
            return;
        };
        let request = self.pending.remove(i);
        if accepted && self.contact.as_ref().is_some_and(|c| c.id == from) {
            self.joined = true;
        }
        let full = self.active.len() >= self.config.active_size();
        if accepted && (request.priority == Priority::High || !full) {
            self.add_active(request.to);
        } else {
            if accepted {
                self.send(request.to.clone(), Message::Disconnect { alive: true });
            } else {
                self.refused.push(from);
            }
            self.add_passive(request.to, &[]);
            self.refill(now);
        }
    }

    fn on_shuffle(&mut self, from: P, origin: Contact<P>, ttl: u32, nodes: Vec<Contact<P>>) {
        if origin.id == self.me.id {
            return;
        }
        let mut nodes: Vec<_> = nodes
            .into_iter()
            .take(self.config.shuffle_len())
            .map(clean)
            .collect();
        let ttl = ttl.min(self.config.shuffle_rwl).saturating_sub(1);
        if ttl > 0 {
            if let Some(next) = self.random_active(&[from, origin.id]) {
                let msg = Message::Shuffle { origin, ttl, nodes };
                self.send(next, msg);
                return;
            }
        }
        let candidates: Vec<_> = self
            .passive
            .iter()
            .filter(|c| c.id != origin.id)
            .cloned()
            .collect();
        let reply = pick(&mut self.rng, &candidates, nodes.len() + 1);
        let sent: Vec<P> = reply.iter().map(|c| c.id).collect();
        self.send(origin.clone(), Message::ShuffleReply { nodes: reply });
        nodes.insert(0, origin);
        for c in nodes {
            self.add_passive(c, &sent);
        }
    }

    /// Starts a shuffle with a random neighbour.
    fn shuffle(&mut self) {
        self.shuffled = None;
        let Some(target) = self.random_active(&[]) else {
            return;
        };
        let others: Vec<_> = self
            .active
            .iter()
            .filter(|c| c.id != target.id)
            .cloned()
            .collect();
        let mut nodes = pick(&mut self.rng, &others, self.config.shuffle_active);
        let passive = pick(&mut self.rng, &self.passive, self.config.shuffle_passive);
        nodes.extend(passive);
        self.shuffled = Some(nodes.iter().map(|c| c.id).collect());
        let origin = self.me.clone();
        let ttl = self.config.shuffle_rwl;
        self.send(target, Message::Shuffle { origin, ttl, nodes });
    }

    /// One time in `rotation`, with a full active view and no request out,
    /// asks a random passive peer to replace a neighbour (see
    /// [`HyParViewConfig::rotation`]).
    fn rotate(&mut self, now: Time) {
        let n = self.config.rotation;
        let full = self.active.len() >= self.config.active_size();
        if n == 0 || !full || !self.pending.is_empty() || self.rng.random_range(0..n) != 0 {
            return;
        }
        if let Some(to) = pick(&mut self.rng, &self.passive, 1).pop() {
            self.request(now, to, Priority::High);
        }
    }

    /// Asks passive peers to fill the free slots of the active view.
    fn refill(&mut self, now: Time) {
        while self.active.len() + self.pending.len() < self.config.active_size() {
            let high = self.active.is_empty() && self.pending.is_empty();
            if !high && self.budget == 0 {
                return;
            }
            let candidates: Vec<_> = self
                .passive
                .iter()
                .filter(|c| !self.refused.contains(&c.id) && !self.is_pending(c.id))
                .cloned()
                .collect();
            let Some(to) = pick(&mut self.rng, &candidates, 1).pop() else {
                return;
            };
            if high {
                self.request(now, to, Priority::High);
            } else {
                self.budget -= 1;
                self.request(now, to, Priority::Low);
            }
        }
    }

    /// Sends a `Neighbor` request, unless one is out or `to` is a neighbour.
    /// With too many requests out already (a flood of join walks), `to` only
    /// goes to the passive view.
    fn request(&mut self, now: Time, to: Contact<P>, priority: Priority) {
        if to.id == self.me.id || self.is_active(to.id) || self.is_pending(to.id) {
            return;
        }
        if self.pending.len() >= 2 * self.config.active_size() {
            self.add_passive(to, &[]);
            return;
        }
        self.pending.push(Request {
            to: to.clone(),
            priority,
            deadline: now + self.config.neighbor_timeout,
        });
        let addr = self.me.addr.clone();
        self.send(to, Message::Neighbor { priority, addr });
    }

    /// Answers a message only neighbours send with a `Disconnect` when the
    /// sender is not one (nor about to be): the link is half-open.
    fn repair(&mut self, from: P) {
        if !self.is_active(from) && !self.is_pending(from) {
            let to = self.contact(from);
            self.send(to, Message::Disconnect { alive: true });
        }
    }

    /// Adds `peer` to the active view, dropping a random neighbour if full.
    fn add_active(&mut self, peer: Contact<P>) {
        if peer.id == self.me.id {
            return;
        }
        if let Some(c) = self.active.iter_mut().find(|c| c.id == peer.id) {
            if peer.addr.is_some() {
                c.addr = peer.addr;
            }
            return;
        }
        self.passive.retain(|c| c.id != peer.id);
        self.pending.retain(|r| r.to.id != peer.id);
        while self.active.len() >= self.config.active_size() {
            let i = self.rng.random_range(0..self.active.len());
            let dropped = self.active.remove(i);
            self.send(dropped.clone(), Message::Disconnect { alive: true });
            self.events.push_back(Event::NeighborDown(dropped.id));
            self.add_passive(dropped, &[]);
        }
        self.active.push(peer.clone());
        self.events.push_back(Event::NeighborUp(peer));
    }

    fn remove_active(&mut self, peer: P) -> Option<Contact<P>> {
        let i = self.active.iter().position(|c| c.id == peer)?;
        let c = self.active.remove(i);
        self.events.push_back(Event::NeighborDown(peer));
        Some(c)
    }

    /// Adds `peer` to the passive view unless it is known; a full view
    /// evicts one of `prefer` if it can, a random peer otherwise.
    fn add_passive(&mut self, peer: Contact<P>, prefer: &[P]) {
        if peer.id == self.me.id || self.is_active(peer.id) || self.config.passive_size == 0 {
            return;
        }
        if let Some(c) = self.passive.iter_mut().find(|c| c.id == peer.id) {
            if peer.addr.is_some() {
                c.addr = peer.addr;
            }
            return;
        }
        while self.passive.len() >= self.config.passive_size {
            let i = prefer
                .iter()
                .find_map(|p| self.passive.iter().position(|c| c.id == *p))
                .unwrap_or_else(|| self.rng.random_range(0..self.passive.len()));
            self.passive.remove(i);
        }
        self.passive.push(peer);
    }

    /// Offers `peer` (from peer sampling) to the passive view, as a backup.
    pub fn learn(&mut self, now: Time, peer: Contact<P>) {
        self.add_passive(clean(peer), &[]);
        self.refill(now);
    }

    /// A random neighbour other than `except`.
    fn random_active(&mut self, except: &[P]) -> Option<Contact<P>> {
        let candidates: Vec<_> = self
            .active
            .iter()
            .filter(|c| !except.contains(&c.id))
            .cloned()
            .collect();
        pick(&mut self.rng, &candidates, 1).pop()
    }

    /// Whether a `Join` or `Neighbor` request to `peer` awaits its answer.
    pub fn is_pending(&self, peer: P) -> bool {
        self.pending.iter().any(|r| r.to.id == peer)
    }

    /// What we know of `peer`'s address.
    fn contact(&self, peer: P) -> Contact<P> {
        let pending = self.pending.iter().map(|r| &r.to);
        let mut known = self.active.iter().chain(&self.passive).chain(pending);
        let found = known.find(|c| c.id == peer).cloned();
        found.unwrap_or(Contact {
            id: peer,
            addr: None,
        })
    }

    fn send(&mut self, to: Contact<P>, msg: Message<P>) {
        self.events.push_back(Event::Send { to, msg });
    }
}

/// Up to `k` distinct items of `items`, at random.
fn pick<T: Clone>(rng: &mut impl Rng, items: &[T], k: usize) -> Vec<T> {
    let k = k.min(items.len());
    index::sample(rng, items.len(), k)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// Drops an address longer than [`MAX_ADDR_LEN`].
fn sanitize(addr: Option<String>) -> Option<String> {
    addr.filter(|a| a.len() <= MAX_ADDR_LEN)
}

fn clean<P>(c: Contact<P>) -> Contact<P> {
    Contact {
        id: c.id,
        addr: sanitize(c.addr),
    }
}

#[cfg(test)]
mod tests;
