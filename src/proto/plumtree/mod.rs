//! Epidemic broadcast trees (Plumtree), sans-IO.
//!
//! The protocol is the one of Leitão, Pereira and Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007. Every node splits its neighbours (the
//! *active view* a membership layer such as HyParView maintains) into two
//! sets:
//!
//! * **eager** peers get every new message's payload at once ("eager push");
//! * **lazy** peers only get an [`PlumMsg::IHave`] announcing the message's
//!   id ("lazy push"), batched and sent on a short timer.
//!
//! A neighbour starts eager. The first time a payload arrives its sender
//! stays (or becomes) eager; a *duplicate* payload means two eager paths
//! lead here, so its sender is told [`PlumMsg::Prune`] and both ends move
//! the link to lazy. After the first few broadcasts the eager links form a
//! spanning tree and a broadcast costs about one payload per node, while the
//! lazy links keep announcing ids as a safety net.
//!
//! When an `IHave` names an id that has not arrived, a missing-message timer
//! starts (`graft_timeout_1`). Should it expire before the payload arrives,
//! the node sends [`PlumMsg::Graft`] to the first announcer, which answers
//! with the payload and, like the grafting node, moves the link to eager:
//! the tree is repaired on the spot. Each further expiry (`graft_timeout_2`)
//! grafts the next announcer. A neighbour that goes away simply leaves both
//! sets; the next broadcast that needed it arrives by `IHave` and is grafted,
//! which mends the tree.
//!
//! Payloads carry a hop count. The optional optimisation of the paper
//! (section 3.8) is built in: an `IHave` whose hop count beats the eager
//! path's by at least `optimization_threshold` grafts the announcer and
//! prunes the old eager sender, so the tree shortens over time.
//!
//! # Driving it
//!
//! The tree never sees a payload: it deals in message ids `M` and peers `P`.
//! The caller owns the bytes and deduplicates messages itself:
//!
//! * [`Plumtree::broadcast`] for a message originated here, and
//!   [`Plumtree::handle_received`] for each payload that arrives, saying
//!   whether it is new;
//! * [`Plumtree::handle_message`] for the control messages ([`PlumMsg`]);
//! * [`Plumtree::handle_neighbor_up`] / [`Plumtree::handle_neighbor_down`]
//!   as the active view changes;
//! * [`Plumtree::handle_timeout`] once [`Plumtree::poll_timeout`] is due;
//! * then drain [`Plumtree::poll_event`]: [`Event::Send`] a control message,
//!   or [`Event::Push`] a payload (the caller attaches the bytes, and skips
//!   ids it no longer has).
//!
//! State is bounded: received ids are kept for `horizon`, a missing id
//! until it arrives or `max_graft_attempts` grafts have gone unanswered,
//! announcements until the next flush.
//!
//! Time is passed in, nothing is random and every collection iterated is
//! ordered, so the same inputs give the same outputs. Input from peers never
//! panics: control messages from peers outside the active view are ignored
//! (a `Graft` is still answered), as are ids the tree knows nothing of.
//!
//! # Lossy transports
//!
//! The paper assumes reliable links. Grafts are retried (rotating through
//! the announcers, up to `max_graft_attempts`), so a lost `Graft` or lost
//! answer only costs time. A node whose payload *and* every announcement
//! were lost would never hear of the message, though; on lossy transports
//! set `ihave_repeats` so that every id pushed or announced to a neighbour
//! is announced to it again later (an extension of the paper's protocol).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::mem;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::time::Time;

/// What the tree needs of a peer id (blanket-implemented).
pub trait PeerId: Copy + Ord + Hash + Debug {}

impl<T: Copy + Ord + Hash + Debug> PeerId for T {}

/// What the tree needs of a message id (blanket-implemented).
///
/// Ids must be globally unique: two broadcasts never share one.
pub trait MessageId: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned {}

impl<T: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned> MessageId for T {}

/// Tuning knobs. [`Config::default`] documents each default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long after the first `IHave` for a missing id the node waits for
    /// the eager copy before grafting. Default 100 ms: longer than a typical
    /// difference between the eager path and a direct lazy link.
    pub graft_timeout_1: Duration,
    /// How long after each graft the node waits before grafting the next
    /// announcer for the same id. Default 50 ms.
    pub graft_timeout_2: Duration,
    /// How many grafts one missing id gets before the node gives up on it
    /// (a new `IHave` starts over). Default 10.
    pub max_graft_attempts: u32,
    /// How long announcements wait to share one `IHave`. Default 10 ms;
    /// zero sends them as soon as [`Plumtree::handle_timeout`] is called.
    pub ihave_interval: Duration,
    /// The most ids one `IHave` carries; a full batch is sent at once.
    /// Default 64 (zero counts as one).
    pub ihave_batch: usize,
    /// For lossy transports: how many times each relayed id is announced
    /// again to every neighbour it was pushed or announced to, so that a
    /// node whose copies were all lost still hears of it. Default 0: the
    /// links are reliable streams.
    pub ihave_repeats: u32,
    /// The gap between a push or announcement and each repeat. Default
    /// 200 ms.
    pub ihave_repeat_interval: Duration,
    /// How long a received id is remembered (its hop count, to answer
    /// grafts and weigh announcements). The caller stays the source of truth
    /// for "have I got it"; this only bounds memory. An `IHave` or `Graft`
    /// for an id older than this is treated as for an unknown id. Default
    /// 60 s.
    pub horizon: Duration,
    /// The tree optimisation: when an `IHave` offers an id already received
    /// with a hop count at least this much lower than the eager copy's, the
    /// announcer is grafted and the eager sender pruned. `None` turns it
    /// off; `Some(0)` counts as one. Default `Some(3)`.
    pub optimization_threshold: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            graft_timeout_1: Duration::from_millis(100),
            graft_timeout_2: Duration::from_millis(50),
            max_graft_attempts: 10,
            ihave_interval: Duration::from_millis(10),
            ihave_batch: 64,
            ihave_repeats: 0,
            ihave_repeat_interval: Duration::from_millis(200),
            horizon: Duration::from_secs(60),
            optimization_threshold: None,
        }
    }
}

/// One id offered in an [`PlumMsg::IHave`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement<M> {
    /// The message.
    pub id: M,
    /// The hop count the payload would have on arriving from the announcer.
    pub hops: u32,
}

/// The control messages nodes exchange; payloads travel beside them, as the
/// caller sends them on [`Event::Push`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlumMsg<M> {
    /// "I have these messages": the lazy push.
    IHave(Vec<Announcement<M>>),
    /// "Send me these payloads, and push to me eagerly from now on". An
    /// empty list only moves the link to eager (the tree optimisation).
    Graft(Vec<M>),
    /// "Stop pushing payloads to me; announce them instead."
    Prune,
}

/// What the tree asks the caller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P, M> {
    /// Send a control message to a peer.
    Send {
        /// The peer.
        to: P,
        /// The message.
        msg: PlumMsg<M>,
    },
    /// Send the payload of `id` to each of `to`, tagged with `hops`, which
    /// the receiver passes to [`Plumtree::handle_received`]. The caller
    /// skips an id whose payload it no longer has.
    Push {
        /// The peers (never empty).
        to: Vec<P>,
        /// The message.
        id: M,
        /// Its hop count on arrival (1 for the origin's neighbours).
        hops: u32,
    },
}

/// Counters since the tree was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payloads the caller was asked to send, one per recipient (eager
    /// pushes and answers to grafts).
    pub payloads_pushed: u64,
    /// Payloads reported as duplicates.
    pub duplicates: u64,
    /// `Prune` messages sent (on duplicates and by the optimisation).
    pub prunes_sent: u64,
    /// `IHave` messages sent, repeats included.
    pub ihaves_sent: u64,
    /// Ids announced in them, one per id per message.
    pub ids_announced: u64,
    /// `Graft` messages sent.
    pub grafts_sent: u64,
    /// Missing ids asked for in them.
    pub ids_grafted: u64,
    /// Eager links swapped by the tree optimisation.
    pub tree_swaps: u64,
}

/// A message this node has received (or originated).
#[derive(Debug)]
struct Seen<P> {
    /// Its hop count here (0 at the origin).
    hops: u32,
    /// Who it came from (`None` at the origin), updated by the optimisation.
    from: Option<P>,
    /// When it was received, for the horizon.
    at: Time,
}

/// A message announced but not received.
#[derive(Debug)]
struct Missing<P> {
    /// Neighbours that announced it, in order; rotated as they are grafted.
    announcers: VecDeque<P>,
    /// When the missing-message timer fires.
    due: Time,
    /// Grafts sent so far.
    grafts: u32,
    /// The neighbour grafted last, if any.
    last_graft: Option<P>,
}

/// An id to announce again to a peer it was pushed or announced to.
#[derive(Debug)]
struct Repeat<P, M> {
    at: Time,
    to: P,
    announcement: Announcement<M>,
    /// Repeats left after this one.
    left: u32,
}

/// The Plumtree state machine of one node, for peers `P` and message ids `M`.
#[derive(Debug)]
pub struct Plumtree<P, M> {
    config: Config,
    eager: BTreeSet<P>,
    lazy: BTreeSet<P>,
    seen: HashMap<M, Seen<P>>,
    /// Received ids in order of arrival, for forgetting them.
    seen_order: VecDeque<(Time, M)>,
    missing: BTreeMap<M, Missing<P>>,
    /// The missing-message timers: `(due, id)` for each `missing` entry.
    graft_due: BTreeSet<(Time, M)>,
    /// Announcements waiting for the next `IHave` to each lazy peer.
    pending: BTreeMap<P, Vec<Announcement<M>>>,
    flush_at: Option<Time>,
    repeats: VecDeque<Repeat<P, M>>,
    out: VecDeque<Event<P, M>>,
    stats: Stats,
}

impl<P: PeerId, M: MessageId> Plumtree<P, M> {
    /// A node with no neighbours.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            missing: BTreeMap::new(),
            graft_due: BTreeSet::new(),
            pending: BTreeMap::new(),
            flush_at: None,
            repeats: VecDeque::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The neighbours payloads are pushed to, in order.
    pub fn eager_peers(&self) -> impl Iterator<Item = P> + '_ {
        self.eager.iter().copied()
    }

    /// The neighbours that only get announcements, in order.
    pub fn lazy_peers(&self) -> impl Iterator<Item = P> + '_ {
        self.lazy.iter().copied()
    }

    /// Whether `peer` is in the active view.
    pub fn is_neighbor(&self, peer: &P) -> bool {
        self.eager.contains(peer) || self.lazy.contains(peer)
    }

    /// Whether nothing is under way: no id missing, no announcement or
    /// repeat waiting to go out.
    pub fn is_idle(&self) -> bool {
        self.missing.is_empty() && self.pending.is_empty() && self.repeats.is_empty()
    }

    /// How many announced ids have not arrived (and are still waited for).
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }

    /// How many received ids are remembered (bounded by the horizon).
    pub fn remembered_count(&self) -> usize {
        self.seen.len()
    }

    /// `peer` joined the active view; it starts eager. Nothing happens if
    /// it is already a neighbour.
    pub fn handle_neighbor_up(&mut self, peer: P) {
        if !self.lazy.contains(&peer) {
            self.eager.insert(peer);
        }
    }

    /// `peer` left the active view. It leaves both sets and every list of
    /// announcers; an id whose last graft went to it is grafted from the
    /// next announcer at once.
    pub fn handle_neighbor_down(&mut self, now: Time, peer: P) {
        self.eager.remove(&peer);
        self.lazy.remove(&peer);
        self.pending.remove(&peer);
        if self.pending.is_empty() {
            self.flush_at = None;
        }
        self.repeats.retain(|r| r.to != peer);
        let mut rearm = Vec::new();
        for (id, m) in &mut self.missing {
            m.announcers.retain(|p| *p != peer);
            if m.last_graft == Some(peer) {
                m.last_graft = None;
                if m.due > now {
                    rearm.push((m.due, id.clone()));
                    m.due = now;
                }
            }
        }
        for (old, id) in rearm {
            self.graft_due.remove(&(old, id.clone()));
            self.graft_due.insert((now, id));
        }
    }

    /// Broadcast a message originated here: push it to the eager peers and
    /// announce it to the lazy ones. An id already received is ignored.
    pub fn broadcast(&mut self, now: Time, id: M) {
        if self.seen.contains_key(&id) {
            return;
        }
        let holders = self.stop_waiting(&id);
        self.remember(now, id.clone(), 0, None);
        self.relay(now, None, id, 0, &holders);
    }

    /// The payload of `id` arrived from `from`, tagged with `hops`;
    /// `first_time` is whether the caller had not had it before.
    ///
    /// The first time, the sender becomes eager, the payload is pushed on to
    /// the other eager peers and announced to the lazy ones (but those that
    /// announced it here). A duplicate prunes the sender. A sender outside
    /// the active view changes no link: its payload is only relayed.
    pub fn handle_received(&mut self, now: Time, from: P, id: M, hops: u32, first_time: bool) {
        let neighbor = self.is_neighbor(&from);
        if first_time {
            let holders = self.stop_waiting(&id);
            self.remember(now, id.clone(), hops, Some(from));
            if neighbor {
                self.make_eager(from);
            }
            self.relay(now, Some(from), id, hops, &holders);
        } else {
            self.stats.duplicates += 1;
            if neighbor {
                self.make_lazy(from);
                self.stats.prunes_sent += 1;
                self.out.push_back(Event::Send {
                    to: from,
                    msg: PlumMsg::Prune,
                });
            }
        }
    }

    /// A control message arrived from `from`.
    pub fn handle_message(&mut self, now: Time, from: P, msg: PlumMsg<M>) {
        match msg {
            PlumMsg::IHave(batch) => {
                if self.is_neighbor(&from) {
                    for a in batch {
                        self.on_ihave(now, from, a);
                    }
                }
            }
            PlumMsg::Graft(ids) => self.on_graft(from, ids),
            PlumMsg::Prune => {
                if self.eager.contains(&from) {
                    self.make_lazy(from);
                }
            }
        }
    }

    /// Run the timers due at `now`: queue repeated announcements, flush
    /// batched ones, graft missing messages (one `Graft` per peer) and
    /// forget ids older than the horizon.
    pub fn handle_timeout(&mut self, now: Time) {
        let mut again = Vec::new();
        while self.repeats.front().is_some_and(|r| r.at <= now) {
            let Some(mut r) = self.repeats.pop_front() else {
                break;
            };
            if !self.is_neighbor(&r.to) {
                continue;
            }
            self.announce(now, r.to, r.announcement.clone());
            if r.left > 0 {
                r.left -= 1;
                r.at = now + self.config.ihave_repeat_interval;
                again.push(r);
            }
        }
        self.repeats.extend(again);
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush();
        }
        self.fire_grafts(now);
        while let Some((at, _)) = self.seen_order.front() {
            if *at + self.config.horizon > now {
                break;
            }
            if let Some((at, id)) = self.seen_order.pop_front() {
                if self.seen.get(&id).is_some_and(|s| s.at == at) {
                    self.seen.remove(&id);
                }
            }
        }
    }

    /// When [`Plumtree::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.flush_at,
            self.repeats.front().map(|r| r.at),
            self.graft_due.first().map(|(t, _)| *t),
            self.seen_order
                .front()
                .map(|(t, _)| *t + self.config.horizon),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to do, if any.
    pub fn poll_event(&mut self) -> Option<Event<P, M>> {
        self.out.pop_front()
    }

    /// An announcement from the neighbour `from`.
    fn on_ihave(&mut self, now: Time, from: P, a: Announcement<M>) {
        if let Some(seen) = self.seen.get_mut(&a.id) {
            // Already here: only the tree optimisation cares.
            let Some(threshold) = self.config.optimization_threshold else {
                return;
            };
            let Some(parent) = seen.from else {
                return;
            };
            if parent == from
                || !self.eager.contains(&parent)
                || self.eager.contains(&from)
                || a.hops.saturating_add(threshold.max(1)) > seen.hops
            {
                return;
            }
            seen.hops = a.hops;
            seen.from = Some(from);
            self.make_lazy(parent);
            self.make_eager(from);
            self.stats.tree_swaps += 1;
            self.stats.grafts_sent += 1;
            self.stats.prunes_sent += 1;
            self.out.push_back(Event::Send {
                to: from,
                msg: PlumMsg::Graft(Vec::new()),
            });
            self.out.push_back(Event::Send {
                to: parent,
                msg: PlumMsg::Prune,
            });
            return;
        }
        if let Some(m) = self.missing.get_mut(&a.id) {
            if !m.announcers.contains(&from) {
                m.announcers.push_back(from);
            }
            return;
        }
        let due = now + self.config.graft_timeout_1;
        self.graft_due.insert((due, a.id.clone()));
        self.missing.insert(
            a.id,
            Missing {
                announcers: VecDeque::from([from]),
                due,
                grafts: 0,
                last_graft: None,
            },
        );
    }

    /// A graft from `from`: answer with the payloads remembered, and push to
    /// it eagerly if it is a neighbour.
    fn on_graft(&mut self, from: P, mut ids: Vec<M>) {
        if self.is_neighbor(&from) {
            self.make_eager(from);
        }
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Some(seen) = self.seen.get(&id) {
                let hops = seen.hops.saturating_add(1);
                self.stats.payloads_pushed += 1;
                self.out.push_back(Event::Push {
                    to: vec![from],
                    id,
                    hops,
                });
            }
        }
    }

    /// Fire the missing-message timers due at `now`, one `Graft` per peer.
    fn fire_grafts(&mut self, now: Time) {
        let mut grafts: BTreeMap<P, Vec<M>> = BTreeMap::new();
        let mut rearm = Vec::new();
        while self.graft_due.first().is_some_and(|(t, _)| *t <= now) {
            let Some((_, id)) = self.graft_due.pop_first() else {
                break;
            };
            let Some(m) = self.missing.get_mut(&id) else {
                continue;
            };
            let next = if m.grafts < self.config.max_graft_attempts {
                m.announcers.pop_front()
            } else {
                None
            };
            let Some(peer) = next else {
                self.missing.remove(&id);
                continue;
            };
            m.announcers.push_back(peer);
            m.grafts += 1;
            m.last_graft = Some(peer);
            m.due = now + self.config.graft_timeout_2;
            rearm.push((m.due, id.clone()));
            grafts.entry(peer).or_default().push(id);
        }
        self.graft_due.extend(rearm);
        for (peer, ids) in grafts {
            self.make_eager(peer);
            self.stats.grafts_sent += 1;
            self.stats.ids_grafted += ids.len() as u64;
            self.out.push_back(Event::Send {
                to: peer,
                msg: PlumMsg::Graft(ids),
            });
        }
    }

    /// Stop waiting for `id`; the peers that announced it (they have it).
    fn stop_waiting(&mut self, id: &M) -> Vec<P> {
        match self.missing.remove(id) {
            Some(m) => {
                self.graft_due.remove(&(m.due, id.clone()));
                m.announcers.into()
            }
            None => Vec::new(),
        }
    }

    /// Remember `id` as received now.
    fn remember(&mut self, now: Time, id: M, hops: u32, from: Option<P>) {
        self.seen_order.push_back((now, id.clone()));
        self.seen.insert(
            id,
            Seen {
                hops,
                from,
                at: now,
            },
        );
    }

    /// Push `id` to the eager peers but `from`, announce it to the lazy
    /// peers but `from` and the `holders` known to have it.
    fn relay(&mut self, now: Time, from: Option<P>, id: M, hops: u32, holders: &[P]) {
        let next = hops.saturating_add(1);
        let to: Vec<P> = self.eager_peers().filter(|p| Some(*p) != from).collect();
        let lazy: Vec<P> = self
            .lazy_peers()
            .filter(|p| Some(*p) != from && !holders.contains(p))
            .collect();
        let a = Announcement {
            id: id.clone(),
            hops: next,
        };
        if let Some(left) = self.config.ihave_repeats.checked_sub(1) {
            let at = now + self.config.ihave_repeat_interval;
            for &to in to.iter().chain(&lazy) {
                let announcement = a.clone();
                self.repeats.push_back(Repeat {
                    at,
                    to,
                    announcement,
                    left,
                });
            }
        }
        for peer in lazy {
            self.announce(now, peer, a.clone());
        }
        if !to.is_empty() {
            self.stats.payloads_pushed += to.len() as u64;
            self.out.push_back(Event::Push { to, id, hops: next });
        }
    }

    /// Queue an announcement for `to`, sending the batch if it is full.
    fn announce(&mut self, now: Time, to: P, a: Announcement<M>) {
        let batch = self.pending.entry(to).or_default();
        batch.push(a);
        if batch.len() >= self.config.ihave_batch.max(1) {
            let batch = self.pending.remove(&to).unwrap_or_default();
            if self.pending.is_empty() {
                self.flush_at = None;
            }
            self.send_ihave(to, batch);
        } else if self.flush_at.is_none() {
            self.flush_at = Some(now + self.config.ihave_interval);
        }
    }

    /// Send every queued announcement.
    fn flush(&mut self) {
        self.flush_at = None;
        for (to, batch) in mem::take(&mut self.pending) {
            if !batch.is_empty() {
                self.send_ihave(to, batch);
            }
        }
    }

    /// Send one `IHave`.
    fn send_ihave(&mut self, to: P, batch: Vec<Announcement<M>>) {
        self.stats.ihaves_sent += 1;
        self.stats.ids_announced += batch.len() as u64;
        self.out.push_back(Event::Send {
            to,
            msg: PlumMsg::IHave(batch),
        });
    }

    fn make_eager(&mut self, peer: P) {
        self.lazy.remove(&peer);
        self.eager.insert(peer);
    }

    fn make_lazy(&mut self, peer: P) {
        self.eager.remove(&peer);
        self.lazy.insert(peer);
    }
}

#[cfg(test)]
mod tests;
