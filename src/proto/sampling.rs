//! Gossip-based peer sampling: a small, ever-changing random view of the
//! cluster.
//!
//! This is the generic protocol of Jelasity, Voulgaris, Guerraoui, Kermarrec
//! and van Steen, "Gossip-based peer sampling", ACM TOCS 25(3), 2007. Every
//! node keeps a *partial view* of at most `c` [`Descriptor`]s, each a peer and
//! an *age* (how many cycles ago the descriptor was created by its peer). Once
//! per cycle (every `period` of the [`SamplingConfig`]) the node runs the active
//! thread of the paper:
//!
//! 1. **Peer selection** ([`PeerSelection`]): a random peer of the view
//!    (`Rand`) or the oldest one (`Tail`).
//! 2. **View propagation** ([`Propagation`]): the node builds a buffer — its
//!    own descriptor with age 0, then, after permuting the view and moving
//!    its `H` oldest descriptors to the end, the first `c/2 - 1` — and sends
//!    it. With `Push` that is all; with `PushPull` the peer answers with a
//!    buffer built the same way, and both sides merge what they received.
//! 3. **View selection** (merging a received buffer): append the buffer,
//!    remove duplicates keeping the youngest, remove the `min(H, size - c)`
//!    oldest, remove the `min(S, size - c)` first (the head: what was just
//!    sent away), then remove random descriptors down to `c`.
//! 4. Every descriptor of the view grows one cycle older.
//!
//! The passive side does the same on every message: answer a request with a
//! buffer (permute, move the `H` oldest to the end, take the head), merge,
//! then age the view.
//!
//! `H` (*healer*) and `S` (*swapper*) tune the merge: a large `H` drops old
//! descriptors aggressively, so the descriptors of dead peers (which nobody
//! refreshes) vanish within a few cycles; a large `S` swaps descriptors
//! between the two parties, which balances in-degrees. The paper requires
//! `H <= c/2` and `S <= c/2 - H` (larger values are clamped). The named
//! presets are [`SamplingConfig::blind`] `(0, 0)`, [`SamplingConfig::healer`]
//! `(c/2, 0)`, [`SamplingConfig::swapper`] `(0, c/2)` and
//! [`SamplingConfig::balanced`] `(1, c/2 - 1)`, the default.
//!
//! # Adapting the paper to an asynchronous, sans-IO world
//!
//! * Nothing here blocks: the active thread's "receive the answer" is a
//!   pending exchange, completed by [`Sampling::handle_message`] with a
//!   [`Message::Reply`] from that peer. An exchange still unanswered when
//!   the next cycle starts is abandoned (its late answer is ignored), and
//!   the view ages then, so it ages once per cycle of the active thread
//!   either way.
//! * Between sending a request and merging its answer the view may have
//!   been reshuffled by other exchanges. Before merging an answer, the
//!   descriptors that were sent (and are still in the view) are moved back
//!   to the head, so that the swapper removes exactly what was given away.
//! * A node never keeps a descriptor of itself, and merges at most `c`
//!   descriptors from any one buffer; addresses longer than
//!   [`MAX_ADDR_LEN`] bytes are dropped.
//! * The first cycle falls at a random point of the first period, so that
//!   nodes started together do not gossip in lockstep.
//!
//! # Peers and addresses
//!
//! A peer is any `P` (the node id; plexus uses its 32-byte `NodeId`, tests
//! use `u64`). Each descriptor also carries the address the peer advertised
//! for dialing, as an `Option<String>`; the driver uses it to reach a peer it
//! has no connection to. Duplicates keep the youngest descriptor, and the
//! address of an older copy when the youngest has none.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::time::Time;

/// The longest address accepted from a peer, in bytes; a longer one is
/// dropped (the descriptor is kept, without an address).
pub const MAX_ADDR_LEN: usize = 256;

/// How the active thread picks the peer to gossip with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerSelection {
    /// A peer of the view, uniformly at random.
    Rand,
    /// The peer with the oldest descriptor (ties broken at random).
    Tail,
}

/// Which way views travel in an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Propagation {
    /// The initiator sends its buffer; the peer does not answer.
    Push,
    /// The initiator sends its buffer and the peer answers with its own.
    PushPull,
}

/// The protocol's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplingConfig {
    /// `c`: the most descriptors a view holds (at least 1).
    pub view_size: usize,
    /// `H`: how many of the oldest descriptors a merge may drop (clamped to
    /// `c/2`).
    pub healer: usize,
    /// `S`: how many of the descriptors just sent a merge may drop (clamped
    /// to `c/2 - H`).
    pub swapper: usize,
    /// How the active thread picks its peer.
    pub selection: PeerSelection,
    /// Push only, or push-pull.
    pub propagation: Propagation,
    /// The length of a cycle (a zero period counts as one millisecond).
    pub period: Duration,
}

impl SamplingConfig {
    /// The `blind` preset `(H, S) = (0, 0)`: descriptors are dropped at
    /// random. Random selection, push-pull, a 5 s cycle.
    pub fn blind(view_size: usize) -> Self {
        Self {
            view_size,
            healer: 0,
            swapper: 0,
            selection: PeerSelection::Rand,
            propagation: Propagation::PushPull,
            period: Duration::from_secs(5),
        }
    }

    /// The `healer` preset `(H, S) = (c/2, 0)`: the oldest descriptors go
    /// first, so dead peers vanish quickly. Otherwise as [`Self::blind`].
    pub fn healer(view_size: usize) -> Self {
        Self {
            healer: view_size / 2,
            ..Self::blind(view_size)
        }
    }

    /// The `swapper` preset `(H, S) = (0, c/2)`: the descriptors sent away
    /// go first, which balances in-degrees. Otherwise as [`Self::blind`].
    pub fn swapper(view_size: usize) -> Self {
        Self {
            swapper: view_size / 2,
            ..Self::blind(view_size)
        }
    }

    /// The `balanced` preset `(H, S) = (1, c/2 - 1)`: one old descriptor
    /// goes first, so dead peers still age out within a few cycles, and the
    /// rest of the room goes to swapping, so no peer becomes a hub (the
    /// healer alone lets a few peers into three times the mean number of
    /// views). Otherwise as [`Self::blind`].
    pub fn balanced(view_size: usize) -> Self {
        Self {
            healer: 1,
            swapper: (view_size / 2).saturating_sub(1),
            ..Self::blind(view_size)
        }
    }

    fn c(&self) -> usize {
        self.view_size.max(1)
    }

    fn h(&self) -> usize {
        self.healer.min(self.c() / 2)
    }

    fn s(&self) -> usize {
        self.swapper.min(self.c() / 2 - self.h())
    }

    fn period(&self) -> Duration {
        if self.period.is_zero() {
            Duration::from_millis(1)
        } else {
            self.period
        }
    }
}

impl Default for SamplingConfig {
    /// [`SamplingConfig::balanced`] with the paper's `c = 30`: random peer
    /// selection, push-pull, a 5 s cycle.
    fn default() -> Self {
        Self::balanced(30)
    }
}

/// One entry of a view: a peer, where to reach it, and how old the entry is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Descriptor<P> {
    /// The peer.
    pub peer: P,
    /// The address the peer advertised for dialing, if any.
    pub addr: Option<String>,
    /// How many cycles ago the peer created this descriptor.
    pub age: u32,
}

/// What nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<P> {
    /// A buffer, no answer wanted (push propagation).
    Push {
        /// The sender's descriptor (age 0) and part of its view.
        buffer: Vec<Descriptor<P>>,
    },
    /// A buffer; answer with a [`Message::Reply`] (push-pull propagation).
    Request {
        /// The sender's descriptor (age 0) and part of its view.
        buffer: Vec<Descriptor<P>>,
    },
    /// The answer to a [`Message::Request`].
    Reply {
        /// The sender's descriptor (age 0) and part of its view.
        buffer: Vec<Descriptor<P>>,
    },
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<P> {
    /// The peer to send it to.
    pub to: P,
    /// The address that peer advertised, if known (for dialing).
    pub addr: Option<String>,
    /// The message.
    pub msg: Message<P>,
}

/// The active thread's exchange awaiting its answer.
#[derive(Debug)]
struct Exchange<P> {
    /// Who was asked.
    peer: P,
    /// The peers whose descriptors were sent (the sender's own excepted).
    sent: Vec<P>,
}

/// The peer-sampling state machine of one node.
///
/// It owns its random number generator `R` (seed it, e.g. with
/// `ChaCha8Rng::seed_from_u64`, for reproducible runs).
#[derive(Debug)]
pub struct Sampling<P, R> {
    me: P,
    addr: Option<String>,
    config: SamplingConfig,
    rng: R,
    view: Vec<Descriptor<P>>,
    pending: Option<Exchange<P>>,
    next_cycle: Time,
    cycles: u64,
    out: VecDeque<Transmit<P>>,
}

impl<P, R> Sampling<P, R>
where
    P: Copy + Ord + Hash + Debug + Serialize + DeserializeOwned,
    R: Rng,
{
    /// A node `me`, reachable at `addr`, with an empty view; its first cycle
    /// falls within one period of `now`.
    pub fn new(me: P, addr: Option<String>, config: SamplingConfig, mut rng: R, now: Time) -> Self {
        let period = config.period().as_micros().clamp(1, u128::from(u64::MAX));
        let jitter = rng.random_range(0..u64::try_from(period).unwrap_or(u64::MAX));
        Self {
            me,
            addr: sanitize(addr),
            config,
            rng,
            view: Vec::new(),
            pending: None,
            next_cycle: now + Duration::from_micros(jitter),
            cycles: 0,
            out: VecDeque::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> P {
        self.me
    }

    /// The parameters.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// Sets the address this node advertises in its own descriptor.
    pub fn set_addr(&mut self, addr: Option<String>) {
        self.addr = sanitize(addr);
    }

    /// Whether the active thread's exchange waits on `peer`'s answer.
    pub fn is_pending(&self, peer: P) -> bool {
        self.pending.as_ref().is_some_and(|ex| ex.peer == peer)
    }

    /// The current view, in its internal order.
    pub fn view(&self) -> &[Descriptor<P>] {
        &self.view
    }

    /// How many cycles the active thread has run.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// A peer drawn uniformly from the view (the paper's `getPeer()`), or
    /// `None` while the view is empty.
    pub fn sample(&mut self) -> Option<P> {
        if self.view.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.view.len());
        Some(self.view[i].peer)
    }

    /// Puts `peer` in the view with age 0, to bootstrap from. A full view
    /// makes room by dropping its oldest descriptor; a known peer only gets
    /// its address updated (when `addr` is given). Ourselves is ignored.
    pub fn add_seed(&mut self, peer: P, addr: Option<String>) {
        if peer == self.me {
            return;
        }
        let addr = sanitize(addr);
        if let Some(d) = self.view.iter_mut().find(|d| d.peer == peer) {
            if addr.is_some() {
                d.addr = addr;
            }
            return;
        }
        if self.view.len() >= self.config.c() {
            self.remove_oldest(1);
        }
        self.view.push(Descriptor { peer, addr, age: 0 });
    }

    /// The driver learnt that `peer` is gone (optional: the protocol heals
    /// without it): its descriptor leaves the view, and an exchange waiting
    /// on it is abandoned.
    pub fn handle_peer_down(&mut self, peer: P) {
        self.view.retain(|d| d.peer != peer);
        if self.pending.take_if(|ex| ex.peer == peer).is_some() {
            self.increase_age();
        }
    }

    /// Runs the active thread's cycle if it is due (see
    /// [`Self::poll_timeout`]); does nothing otherwise.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_cycle {
            return;
        }
        let next = self.next_cycle + self.config.period();
        self.next_cycle = if next > now {
            next
        } else {
            now + self.config.period()
        };
        if self.pending.take().is_some() {
            // The last exchange went unanswered: age as if it had ended.
            self.increase_age();
        }
        self.cycles += 1;
        let Some(target) = self.select_peer() else {
            return;
        };
        let (to, addr) = (self.view[target].peer, self.view[target].addr.clone());
        let buffer = self.make_buffer();
        match self.config.propagation {
            Propagation::Push => {
                self.out.push_back(Transmit {
                    to,
                    addr,
                    msg: Message::Push { buffer },
                });
                self.increase_age();
            }
            Propagation::PushPull => {
                let sent = buffer[1..].iter().map(|d| d.peer).collect();
                self.pending = Some(Exchange { peer: to, sent });
                self.out.push_back(Transmit {
                    to,
                    addr,
                    msg: Message::Request { buffer },
                });
            }
        }
    }

    /// Handles a message from `from` (the peer the driver received it
    /// from). Messages from ourselves and answers nobody waits for are
    /// ignored.
    pub fn handle_message(&mut self, _now: Time, from: P, msg: Message<P>) {
        if from == self.me {
            return;
        }
        match msg {
            Message::Push { buffer } => {
                self.select(buffer);
                self.increase_age();
            }
            Message::Request { buffer } => {
                let addr = buffer
                    .iter()
                    .chain(self.view.iter())
                    .find(|d| {
                        d.peer == from && d.addr.as_ref().is_some_and(|a| a.len() <= MAX_ADDR_LEN)
                    })
                    .and_then(|d| d.addr.clone());
                let reply = self.make_buffer();
                self.out.push_back(Transmit {
                    to: from,
                    addr,
                    msg: Message::Reply { buffer: reply },
                });
                self.select(buffer);
                self.increase_age();
            }
            Message::Reply { buffer } => {
                let Some(exchange) = self.pending.take_if(|ex| ex.peer == from) else {
                    return;
                };
                self.move_to_head(&exchange.sent);
                self.select(buffer);
                self.increase_age();
            }
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.out.pop_front()
    }

    /// When the next cycle is due: call [`Self::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_cycle)
    }

    /// The index of the peer to gossip with, if the view is not empty.
    fn select_peer(&mut self) -> Option<usize> {
        if self.view.is_empty() {
            return None;
        }
        match self.config.selection {
            PeerSelection::Rand => Some(self.rng.random_range(0..self.view.len())),
            PeerSelection::Tail => {
                let oldest = self.view.iter().map(|d| d.age).max()?;
                let ties: Vec<usize> = (0..self.view.len())
                    .filter(|&i| self.view[i].age == oldest)
                    .collect();
                Some(ties[self.rng.random_range(0..ties.len())])
            }
        }
    }

    /// Permutes the view, moves the `H` oldest to the end, and returns our
    /// own descriptor followed by the first `c/2 - 1` of the view.
    fn make_buffer(&mut self) -> Vec<Descriptor<P>> {
        self.view.shuffle(&mut self.rng);
        let oldest = self.oldest(self.config.h());
        let (young, old): (Vec<_>, Vec<_>) = std::mem::take(&mut self.view)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| !oldest[*i]);
        self.view = young.into_iter().chain(old).map(|(_, d)| d).collect();
        let n = (self.config.c() / 2).saturating_sub(1).min(self.view.len());
        let mut buffer = Vec::with_capacity(n + 1);
        buffer.push(Descriptor {
            peer: self.me,
            addr: self.addr.clone(),
            age: 0,
        });
        buffer.extend(self.view[..n].iter().cloned());
        buffer
    }

    /// The paper's `view.select(c, H, S, buffer)`.
    fn select(&mut self, buffer: Vec<Descriptor<P>>) {
        let c = self.config.c();
        let me = self.me;
        self.view.extend(
            buffer
                .into_iter()
                .take(c)
                .filter(|d| d.peer != me)
                .map(|d| Descriptor {
                    addr: sanitize(d.addr),
                    ..d
                }),
        );
        self.remove_duplicates();
        let excess = self.view.len().saturating_sub(c);
        self.remove_oldest(self.config.h().min(excess));
        let excess = self.view.len().saturating_sub(c);
        self.view.drain(..self.config.s().min(excess));
        while self.view.len() > c {
            let i = self.rng.random_range(0..self.view.len());
            self.view.remove(i);
        }
    }

    /// Keeps, for each peer, its youngest descriptor (the first of equally
    /// young ones), at that descriptor's position.
    fn remove_duplicates(&mut self) {
        let mut best: BTreeMap<P, usize> = BTreeMap::new();
        for (i, d) in self.view.iter().enumerate() {
            best.entry(d.peer)
                .and_modify(|b| {
                    if d.age < self.view[*b].age {
                        *b = i;
                    }
                })
                .or_insert(i);
        }
        if best.len() == self.view.len() {
            return;
        }
        let mut addrs: BTreeMap<P, String> = BTreeMap::new();
        for d in &self.view {
            if let Some(a) = &d.addr {
                addrs.entry(d.peer).or_insert_with(|| a.clone());
            }
        }
        let view = std::mem::take(&mut self.view);
        self.view = view
            .into_iter()
            .enumerate()
            .filter(|(i, d)| best.get(&d.peer) == Some(i))
            .map(|(_, mut d)| {
                if d.addr.is_none() {
                    d.addr = addrs.remove(&d.peer);
                }
                d
            })
            .collect();
    }

    /// Marks the `n` oldest descriptors (equal ages: the later first).
    fn oldest(&self, n: usize) -> Vec<bool> {
        let mut order: Vec<usize> = (0..self.view.len()).collect();
        order.sort_by(|&a, &b| self.view[b].age.cmp(&self.view[a].age).then(b.cmp(&a)));
        let mut marks = vec![false; self.view.len()];
        for &i in order.iter().take(n) {
            marks[i] = true;
        }
        marks
    }

    fn remove_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let marks = self.oldest(n);
        let mut i = 0;
        self.view.retain(|_| {
            i += 1;
            !marks[i - 1]
        });
    }

    /// Moves the descriptors of `peers` that are still in the view to its
    /// head, in that order; the others keep their relative order.
    fn move_to_head(&mut self, peers: &[P]) {
        let mut head = Vec::with_capacity(peers.len());
        for p in peers {
            if let Some(i) = self.view.iter().position(|d| d.peer == *p) {
                head.push(self.view.remove(i));
            }
        }
        head.append(&mut self.view);
        self.view = head;
    }

    fn increase_age(&mut self) {
        for d in &mut self.view {
            d.age = d.age.saturating_add(1);
        }
    }
}

/// Drops an address longer than [`MAX_ADDR_LEN`].
fn sanitize(addr: Option<String>) -> Option<String> {
    addr.filter(|a| a.len() <= MAX_ADDR_LEN)
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;
