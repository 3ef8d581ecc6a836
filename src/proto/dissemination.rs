//! How ops travel: an epidemic broadcast tree over the node's links.
//!
//! Every link is a neighbour of a [`Plumtree`]: the first copy of an op a
//! node receives is pushed on eagerly to the tree's eager links and
//! announced (batched `IHave`s) on the lazy ones; a duplicate prunes its
//! sender's link to lazy, so after the first few ops each op crosses about
//! one link per node instead of every link, however dense the graph. An
//! announced op that does not arrive is grafted. Anti-entropy remains the
//! safety net beneath.
//!
//! The tree deals in [`OpRef`]s; this module keeps the recent frames it may
//! be asked to push (bounded by count), and turns the tree's events into
//! messages.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::id::{ObjectKey, OpId};
use super::message::{Message, OpFrame};
use super::plumtree::{self, Event, PlumMsg, Plumtree};
use super::time::Time;

/// An op's id across objects: what the broadcast tree announces. On the
/// wire: `[[tag, name], [lamport, origin, seq]]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpRef(pub ObjectKey, pub OpId);

impl OpRef {
    fn of(frame: &OpFrame) -> Self {
        Self(frame.object.clone(), frame.id)
    }
}

/// Settings of op dissemination.
#[derive(Clone, Debug)]
pub struct DisseminationConfig {
    /// The broadcast tree's settings. Defaults here differ from the tree's
    /// own: `horizon` 5 s (announcements and grafts come within
    /// milliseconds; the memory of every id seen is bounded by it); a graft
    /// after 500 ms, then every 250 ms (links are reliable QUIC streams, so
    /// an eager copy is late, not lost, unless its link dies: under load it
    /// can trail the announcement by far more than the paper's 100 ms, and
    /// an early graft only duplicates it); announcements batched for 25 ms,
    /// up to 256 per message.
    pub tree: plumtree::Config,
    /// How many recent op frames are kept to answer grafts. Default:
    /// 65,536. An op grafted after it left is repaired by anti-entropy.
    pub max_cached_ops: usize,
}

impl Default for DisseminationConfig {
    fn default() -> Self {
        Self {
            tree: plumtree::Config {
                horizon: Duration::from_secs(5),
                graft_timeout_1: Duration::from_millis(500),
                graft_timeout_2: Duration::from_millis(250),
                ihave_interval: Duration::from_millis(25),
                ihave_batch: 256,
                ..plumtree::Config::default()
            },
            max_cached_ops: 1 << 16,
        }
    }
}

/// The broadcast tree of one node and the frames it may push.
#[derive(Debug)]
pub(crate) struct Dissemination<L> {
    tree: Plumtree<L, OpRef>,
    frames: HashMap<OpRef, OpFrame>,
    order: VecDeque<OpRef>,
    max_cached: usize,
}

impl<L: Copy + Ord + Hash + std::fmt::Debug> Dissemination<L> {
    pub(crate) fn new(config: &DisseminationConfig) -> Self {
        Self {
            tree: Plumtree::new(config.tree.clone()),
            frames: HashMap::new(),
            order: VecDeque::new(),
            max_cached: config.max_cached_ops.max(1),
        }
    }

    pub(crate) fn stats(&self) -> plumtree::Stats {
        self.tree.stats()
    }

    pub(crate) fn handle_link_up(&mut self, link: L) {
        self.tree.handle_neighbor_up(link);
    }

    pub(crate) fn handle_link_down(&mut self, now: Time, link: L) {
        self.tree.handle_neighbor_down(now, link);
    }

    /// An op made here.
    pub(crate) fn broadcast(&mut self, now: Time, frame: OpFrame) {
        let id = OpRef::of(&frame);
        self.keep(id.clone(), frame);
        self.tree.broadcast(now, id);
    }

    /// An op arrived from `from`; `first` is whether it is new here.
    pub(crate) fn received(&mut self, now: Time, from: L, frame: OpFrame, first: bool) {
        let id = OpRef::of(&frame);
        if first {
            self.keep(id.clone(), frame);
        }
        self.tree.handle_received(now, from, id, 0, first);
    }

    pub(crate) fn handle_message(&mut self, now: Time, from: L, msg: PlumMsg<OpRef>) {
        self.tree.handle_message(now, from, msg);
    }

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        self.tree.handle_timeout(now);
    }

    /// Whether the tree has nothing under way (no missing op, no
    /// announcement waiting).
    pub(crate) fn is_idle(&self) -> bool {
        self.tree.is_idle()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.tree.poll_timeout()
    }

    /// The next message to send: `(links, message, ops in it)`.
    pub(crate) fn poll_send(&mut self) -> Option<(Vec<L>, Message, u64)> {
        loop {
            match self.tree.poll_event()? {
                Event::Send { to, msg } => return Some((vec![to], Message::Tree(msg), 0)),
                Event::Push { to, id, .. } => {
                    // An op no longer cached is left to anti-entropy.
                    if let Some(frame) = self.frames.get(&id) {
                        let n = to.len() as u64;
                        return Some((to, Message::Op(frame.clone()), n));
                    }
                }
            }
        }
    }

    fn keep(&mut self, id: OpRef, frame: OpFrame) {
        if self.frames.insert(id.clone(), frame).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.max_cached {
            if let Some(old) = self.order.pop_front() {
                self.frames.remove(&old);
            }
        }
    }
}
