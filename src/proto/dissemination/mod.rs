//! How ops travel: an epidemic broadcast tree over the node's links, whose
//! announcements are runs of sequence numbers.
//!
//! The protocol is PlumTree (Leitão, Pereira and Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007; [`plumtree`](super::plumtree) has the
//! generic version), specialised to ops:
//!
//! * Every link starts **eager**: the first copy of an op a node receives is
//!   pushed on at once to its eager links, and announced on the **lazy**
//!   ones. A duplicate means two eager paths lead here, so its sender is
//!   told [`TreeMsg::Prune`] and the link becomes lazy at both ends. After
//!   the first few ops the eager links form a spanning tree, and an op
//!   crosses about one link per node, however dense the graph.
//! * An announced op that has not arrived after `graft_timeout_1` is
//!   grafted: [`TreeMsg::Graft`] to an announcer, which pushes it and, like
//!   the grafting node, makes the link eager. The tree is mended on the
//!   spot; each further expiry (`graft_timeout_2`) asks the next announcer.
//!
//! Each origin's ops follow a tree of their own (the `trees` submodule):
//! one tree for all is a chain among three peers linked to each other, and
//! the far end's ops would take two hops; over a large overlay one tree is
//! deep for most origins. A new origin's tree starts with every link eager
//! and is pruned to the paths that delivered first, and a neighbour of the
//! origin takes the origin's ops straight from it ([`TreeMsg::Eager`],
//! [`TreeMsg::Lazy`]), so in a full mesh every origin's tree is a star.
//!
//! Ops that anti-entropy sends ([`Message::Repair`]) are delivered and
//! relayed but move no link: a repair that beats a late tree copy must not
//! prune the tree's link when that copy arrives (it did, and under load the
//! trees came apart: a third of the nodes of a 300-node overlay were
//! grafting every op).
//!
//! The other difference from the paper is the unit of bookkeeping. Ops of one
//! origin on one object are numbered 1, 2, 3, ..., so an announcement is a
//! *run* `[origin, first, last]` per object ([`ObjectRuns`]): a burst of a
//! thousand ops is announced in a few bytes. "Have I got it" is the
//! repeater's own per-object [`SeenSet`](super::version::SeenSet), not a
//! second memory of every id; missing ops are tracked as runs
//! (the `missing` submodule); the recent frames kept to answer grafts are the only
//! per-op state: a ring bounded by count. A node thus spends no hashing or
//! allocation per op beyond the frame it relays, which is what lets the
//! tree run at full op rate.
//!
//! Anti-entropy remains the safety net beneath: an op grafted after it left
//! every cache, or announced by nobody, is repaired there.
//!
//! Trust: peers are authenticated members, and the tree trusts them as the
//! rest of the repeater does. A member can make a node remember object keys
//! (one slot per key announced, as one route per key relayed), ask with one
//! small graft for up to the repair budget per object, and choose origins
//! that collide in the (fast, not DoS-resistant) hasher of the per-group
//! maps. Announced runs are capped per group (`max_missing_runs`) and never
//! walked seq by seq, so no announcement costs work in proportion to the
//! numbers it names.

mod missing;
mod relay;
mod trees;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::id::{NodeId, ObjectKey, OpId};
use super::message::{Message, OpFrame};
use super::time::Time;
use missing::Missing;
use smallvec::{smallvec, SmallVec};
use trees::Trees;

/// The links a message goes to: most go to one or two, kept inline.
pub(crate) type Targets<L> = SmallVec<[L; 2]>;

/// Seqs `first..=last` of one origin's ops. On the wire:
/// `[origin, first, last]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(NodeId, u64, u64)", into = "(NodeId, u64, u64)")]
pub struct SeqRun {
    /// The node that made the ops.
    pub origin: NodeId,
    /// The first seq of the run.
    pub first: u64,
    /// The last seq of the run (inclusive).
    pub last: u64,
}

impl SeqRun {
    /// How many seqs the run covers (0 if `first > last`; saturating).
    pub fn len(&self) -> u64 {
        if self.first > self.last {
            0
        } else {
            (self.last - self.first).saturating_add(1)
        }
    }

    /// Whether the run covers the op `id`.
    pub fn contains(&self, id: &OpId) -> bool {
        self.origin == id.origin && (self.first..=self.last).contains(&id.seq)
    }

    /// Whether the run covers no seq.
    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

impl From<(NodeId, u64, u64)> for SeqRun {
    fn from((origin, first, last): (NodeId, u64, u64)) -> Self {
        Self {
            origin,
            first,
            last,
        }
    }
}

impl From<SeqRun> for (NodeId, u64, u64) {
    fn from(run: SeqRun) -> Self {
        (run.origin, run.first, run.last)
    }
}

/// Runs of ops on one object. On the wire: `[[tag, name], [run, ...]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(ObjectKey, Vec<SeqRun>)", into = "(ObjectKey, Vec<SeqRun>)")]
pub struct ObjectRuns {
    /// The object.
    pub object: ObjectKey,
    /// Its runs.
    pub runs: Vec<SeqRun>,
}

impl From<(ObjectKey, Vec<SeqRun>)> for ObjectRuns {
    fn from((object, runs): (ObjectKey, Vec<SeqRun>)) -> Self {
        Self { object, runs }
    }
}

impl From<ObjectRuns> for (ObjectKey, Vec<SeqRun>) {
    fn from(o: ObjectRuns) -> Self {
        (o.object, o.runs)
    }
}

/// The broadcast tree's control messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeMsg {
    /// "I have these ops" (sent on lazy links, batched).
    IHave(Vec<ObjectRuns>),
    /// "Send me these ops, and make our link eager."
    Graft(Vec<ObjectRuns>),
    /// "I got ops of these origins from elsewhere first: only announce
    /// them to me." Both ends make the link lazy in those origins' trees
    /// and in the shared tree (see the `trees` module).
    Prune(Vec<NodeId>),
    /// "I am linked to these origins themselves and take their ops
    /// straight from them: push them to me." Sent to the origin; only its
    /// own tree changes.
    Eager(Vec<NodeId>),
    /// "I take these origins' ops over another link now: only announce
    /// them to me." Sent with [`TreeMsg::Eager`] to the link that was the
    /// tree's; only the origins' trees change.
    Lazy(Vec<NodeId>),
}

/// Settings of op dissemination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisseminationConfig {
    /// How long after an op is announced the node waits for its eager copy
    /// before grafting it. Default: 500 ms, not the paper's 100 ms: links
    /// are reliable QUIC streams, so an eager copy is late, not lost, unless
    /// its link dies (which the node hears of), and under load it can trail
    /// its announcement by well over 100 ms. A graft that proves early (the
    /// eager copy arrives after its answer) prunes the grafted link, not
    /// the tree's. (Longer is calmer under load, but repair on lossy links,
    /// where a lost eager copy waits for its graft, takes a round longer.)
    pub graft_timeout_1: Duration,
    /// How long after each graft the node waits before asking the next
    /// announcer. Default: 500 ms.
    pub graft_timeout_2: Duration,
    /// How many grafts a missing run gets before the node leaves it to
    /// anti-entropy. Default: 10.
    pub max_graft_attempts: u32,
    /// How long announcements wait to share one `IHave`. Default: 25 ms.
    pub ihave_interval: Duration,
    /// The most runs one `IHave` carries; a full batch goes at once.
    /// Default: 256.
    pub ihave_batch: usize,
    /// How many recent op frames are kept to answer grafts. Default:
    /// 65,536. An op grafted after it left is repaired by anti-entropy.
    pub max_cached_ops: usize,
    /// The most missing runs tracked per object and origin; announcements
    /// past it are left to anti-entropy. Default: 4,096.
    pub max_missing_runs: usize,
    /// How many origins get a broadcast tree of their own (about 100 bytes
    /// each); the least recently heard go when there are more, and their
    /// ops follow the shared tree until they get one again. Zero keeps the
    /// paper's single tree. Default: 4,096.
    pub max_trees: usize,
    /// How many links a new origin's tree starts eager on. Zero (the
    /// default): every link, so an origin's first op floods, each node gets
    /// about as many copies as it has links, and the duplicates prune the
    /// tree to the fastest paths. A fanout `f` floods a random subgraph of
    /// that degree instead (chosen per origin): about `f` copies per node,
    /// but nodes it misses wait for a graft and the trees come out deeper.
    /// In a 500-node overlay of active view 5 where every node shouts
    /// once, `f = 3` cut duplicates per delivery from 3.05 to 1.56 and
    /// raised latency to all from 165 to 820 ms; for origins that shout
    /// again and again the full flood is better on every count. Set it for
    /// workloads of many one-shot senders.
    pub first_fanout: usize,
}

impl Default for DisseminationConfig {
    fn default() -> Self {
        Self {
            graft_timeout_1: Duration::from_millis(500),
            graft_timeout_2: Duration::from_millis(250),
            max_graft_attempts: 10,
            ihave_interval: Duration::from_millis(25),
            ihave_batch: 256,
            max_cached_ops: 1 << 16,
            max_missing_runs: 4096,
            max_trees: 4096,
            first_fanout: 0,
        }
    }
}

/// Counters of the broadcast tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Op copies pushed (one per link).
    pub pushed: u64,
    /// Ops that arrived again (each prunes its link).
    pub duplicates: u64,
    /// `Prune`s sent.
    pub prunes_sent: u64,
    /// `IHave` messages sent.
    pub ihaves_sent: u64,
    /// Ops announced in them.
    pub ops_announced: u64,
    /// `Graft` messages sent.
    pub grafts_sent: u64,
    /// Ops asked for in them.
    pub ops_grafted: u64,
    /// Times a neighbour of an op's origin took the origin's ops straight
    /// from it instead of over another link ([`TreeMsg::Eager`] sent).
    pub shortcuts: u64,
    /// Origins with a broadcast tree of their own now (not a counter).
    pub trees: u64,
}

/// How long duplicates from a link pruned already go on before it is told
/// again.
const PRUNE_REPEAT: Duration = Duration::from_millis(100);

/// The most prune records kept before those past [`PRUNE_REPEAT`] are
/// swept.
const PRUNED_MAX: usize = 4096;

/// The most origins one [`TreeMsg::Prune`], [`TreeMsg::Eager`] or
/// [`TreeMsg::Lazy`] is acted on for.
pub const MAX_TREE_ORIGINS: usize = 64;

/// A node-local number for an object key (so per-op maps hash a word, not
/// two strings).
pub(crate) type Slot = u32;

/// One group of ops: one object, one origin.
type Group = (Slot, NodeId);

/// The broadcast tree of one node and the frames it may push.
#[derive(Debug)]
pub(crate) struct Dissemination<L> {
    config: DisseminationConfig,
    trees: Trees<L>,
    keys: Vec<ObjectKey>,
    slots: HashMap<ObjectKey, Slot>,
    /// Whether each slot's object is hosted here (see [`Self::serve`]).
    served: Vec<bool>,
    /// Recent frames of objects not hosted here, oldest first. A graft
    /// scans them: grafts are rare, ops are not, and a ring costs an op
    /// nothing but a push.
    frames: VecDeque<(Group, OpFrame)>,
    /// Announced, not received.
    missing: FxHashMap<Group, Missing<L>>,
    graft_due: BTreeSet<(Time, Group)>,
    /// Announcements waiting per lazy link: runs, merged at the flush.
    pending: BTreeMap<L, Vec<(Group, u64, u64)>>,
    pending_runs: usize,
    flush_at: Option<Time>,
    /// When each link was last told to prune ops of each origin.
    pruned: FxHashMap<(L, NodeId), Time>,
    /// When each link last delivered an op of each origin that this node
    /// had grafted.
    grafted: BTreeMap<(NodeId, L), Time>,
    /// When anti-entropy last brought a new op of each origin.
    repairs: FxHashMap<NodeId, Time>,
    out: VecDeque<(Targets<L>, Message, u64)>,
    stats: TreeStats,
}

impl<L: Copy + Ord + Hash + std::fmt::Debug> Dissemination<L> {
    pub(crate) fn new(config: &DisseminationConfig) -> Self {
        Self {
            config: config.clone(),
            trees: Trees::new(config.max_trees, config.first_fanout),
            keys: Vec::new(),
            slots: HashMap::new(),
            served: Vec::new(),
            frames: VecDeque::new(),
            missing: FxHashMap::default(),
            graft_due: BTreeSet::new(),
            pending: BTreeMap::new(),
            pending_runs: 0,
            flush_at: None,
            pruned: FxHashMap::default(),
            grafted: BTreeMap::new(),
            repairs: FxHashMap::default(),
            out: VecDeque::new(),
            stats: TreeStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> TreeStats {
        TreeStats {
            trees: self.trees.len() as u64,
            ..self.stats
        }
    }

    /// The slot of `object`, made on first sight.
    pub(crate) fn slot(&mut self, object: &ObjectKey) -> Slot {
        if let Some(slot) = self.slots.get(object) {
            return *slot;
        }
        let slot = Slot::try_from(self.keys.len()).unwrap_or(Slot::MAX);
        self.keys.push(object.clone());
        self.served.push(false);
        self.slots.insert(object.clone(), slot);
        slot
    }

    /// The object of `slot` is hosted here from now on: its replica answers
    /// grafts from its log, which holds every op not yet stable, so its
    /// frames are no longer cached (a cached frame costs a copy, and keeps
    /// the whole receive buffer it was cut from alive).
    pub(crate) fn serve(&mut self, slot: Slot) {
        if let Some(served) = self.served.get_mut(slot as usize) {
            *served = true;
        }
        self.frames.retain(|((s, _), _)| *s != slot);
    }

    /// The slot of `object`, if it has one.
    pub(crate) fn slot_of(&self, object: &ObjectKey) -> Option<Slot> {
        self.slots.get(object).copied()
    }

    pub(crate) fn is_neighbor(&self, link: &L) -> bool {
        self.trees.is_neighbor(link)
    }

    /// A link to `peer` joined: it starts eager in every tree.
    pub(crate) fn handle_link_up(&mut self, link: L, peer: NodeId) {
        self.trees.link_up(link, peer);
    }

    /// A link went away: it leaves both sets, and runs it announced are
    /// asked of the other announcers from the next graft on.
    pub(crate) fn handle_link_down(&mut self, link: L) {
        self.trees.link_down(link);
        self.pruned.retain(|(l, _), _| *l != link);
        self.grafted.retain(|(_, l), _| *l != link);
        if let Some(batch) = self.pending.remove(&link) {
            self.pending_runs -= batch.len();
        }
        for missing in self.missing.values_mut() {
            missing.forget(link);
        }
    }

    /// Whether `link` was not told to stop pushing ops of `origin` within
    /// the last [`PRUNE_REPEAT`].
    fn quiet(&self, now: Time, link: L, origin: NodeId) -> bool {
        self.pruned
            .get(&(link, origin))
            .is_none_or(|at| now >= *at + PRUNE_REPEAT)
    }

    /// Anti-entropy brought an op from `from`; `first` is whether it is
    /// new here. It is relayed down the origin's tree like a pushed op,
    /// but moves no link: the sender is not a tree link, and the tree's own
    /// copy, if it was only late, arrives as a duplicate that prunes
    /// nothing (for `graft_timeout_1` twice).
    pub(crate) fn repaired(&mut self, now: Time, from: L, slot: Slot, frame: OpFrame, first: bool) {
        let origin = frame.id.origin;
        if !first {
            self.stats.duplicates += 1;
            return;
        }
        self.no_longer_missing((slot, origin), frame.id.seq);
        self.repairs.insert(origin, now);
        if self.repairs.len() > PRUNED_MAX {
            let window = self.config.graft_timeout_1.saturating_mul(2);
            self.repairs.retain(|_, at| now.since(*at) <= window);
        }
        let (eager, lazy) = self.trees.split(now, origin, Some(from));
        self.relay_one(now, slot, frame, &eager, &lazy);
    }

    /// Op `seq` of `group` is here: stop waiting for it. Returns how many
    /// grafts had been sent for it (`None`: it was not missing).
    fn no_longer_missing(&mut self, group: Group, seq: u64) -> Option<u32> {
        let missing = self.missing.get_mut(&group)?;
        let before = missing.due();
        let grafts = missing.remove(seq);
        let after = missing.due();
        if missing.is_empty() {
            self.missing.remove(&group);
        }
        self.reschedule(group, before, after);
        grafts
    }

    /// A copy of an op of `origin` arrived again, over `from`.
    fn duplicate(&mut self, now: Time, from: L, origin: NodeId, neighbor: bool) {
        self.stats.duplicates += 1;
        // A duplicate soon after another link answered a graft: the eager
        // path was slow, not broken (a load spike). Undo the graft's link,
        // not the tree's, or the tree flips to the grafted link and every
        // op still queued on the old path arrives twice.
        let window = self.config.graft_timeout_1.saturating_mul(2);
        if self
            .repairs
            .get(&origin)
            .is_some_and(|at| now.since(*at) <= window)
        {
            // Anti-entropy was first: the tree's copy was late, not
            // redundant.
            return;
        }
        let grafted = self
            .grafted
            .iter()
            .find(|((o, l), at)| *o == origin && *l != from && now.since(**at) <= window)
            .map(|(k, _)| *k);
        let target = match grafted {
            Some(key) => {
                self.grafted.remove(&key);
                key.1
            }
            // The link to the origin itself is one hop: never pruned for
            // the origin's own ops (the other path is, on its duplicates).
            None if self.trees.is_direct(&origin, &from) => return,
            None if neighbor => from,
            None => return,
        };
        // The ops already queued behind a prune arrive as duplicates too:
        // one prune a link, repeated only if they go on (in case it was
        // lost).
        let again = self
            .pruned
            .get(&(target, origin))
            .is_none_or(|at| now >= *at + PRUNE_REPEAT);
        if self.trees.prune(now, origin, target) || again {
            self.note_pruned(now, target, origin);
            self.stats.prunes_sent += 1;
            let prune = Message::Tree(TreeMsg::Prune(vec![origin]));
            self.out.push_back((smallvec![target], prune, 0));
        }
    }

    fn note_pruned(&mut self, now: Time, link: L, origin: NodeId) {
        if self.pruned.len() >= PRUNED_MAX {
            self.pruned.retain(|_, at| now < *at + PRUNE_REPEAT);
        }
        self.pruned.insert((link, origin), now);
    }

    /// `from` announced `runs` of `object` that this node lacks (the
    /// caller has taken out what it holds).
    pub(crate) fn announced(&mut self, now: Time, from: L, slot: Slot, runs: Vec<SeqRun>) {
        if !self.is_neighbor(&from) {
            return;
        }
        let due = now + self.config.graft_timeout_1;
        let cap = self.config.max_missing_runs.max(1);
        for run in runs {
            let group = (slot, run.origin);
            let missing = self.missing.entry(group).or_insert_with(Missing::new);
            let before = missing.due();
            missing.add(from, run.first, run.last, due, cap);
            let after = missing.due();
            self.reschedule(group, before, after);
        }
    }

    /// A group's earliest graft moved from `before` to `after`.
    fn reschedule(&mut self, group: Group, before: Option<Time>, after: Option<Time>) {
        if before != after {
            if let Some(t) = before {
                self.graft_due.remove(&(t, group));
            }
            if let Some(t) = after {
                self.graft_due.insert((t, group));
            }
        }
    }

    /// `from` asks for `runs` of `object`: push `held` (the ops the replica
    /// still has, when the object is hosted here) or else what is cached,
    /// and make the link eager.
    pub(crate) fn handle_graft(
        &mut self,
        now: Time,
        from: L,
        slot: Option<Slot>,
        runs: &[SeqRun],
        held: Option<Vec<OpFrame>>,
    ) {
        let mut origins: Targets<NodeId> = Targets::new();
        for run in runs {
            if !origins.contains(&run.origin) {
                origins.push(run.origin);
            }
        }
        for origin in origins {
            self.trees.graft(now, origin, from);
        }
        if let Some(frames) = held {
            for frame in frames {
                self.stats.pushed += 1;
                self.out.push_back((smallvec![from], Message::Op(frame), 1));
            }
            return;
        }
        let Some(slot) = slot else { return };
        if runs.iter().all(SeqRun::is_empty) {
            return;
        }
        for ((s, _), frame) in &self.frames {
            if *s == slot && runs.iter().any(|r| r.contains(&frame.id)) {
                self.stats.pushed += 1;
                self.out
                    .push_back((smallvec![from], Message::Op(frame.clone()), 1));
            }
        }
    }

    /// `from` sent a [`TreeMsg::Prune`], [`TreeMsg::Eager`] or
    /// [`TreeMsg::Lazy`] for `origins`. Each message names at most
    /// [`MAX_TREE_ORIGINS`] origins; the rest are ignored (a peer's message
    /// never makes trees by the thousand).
    pub(crate) fn handle_tree_change(&mut self, now: Time, from: L, msg: &TreeMsg) {
        let (origins, change) = match msg {
            TreeMsg::Prune(o) => (o, None),
            TreeMsg::Eager(o) => (o, Some(true)),
            TreeMsg::Lazy(o) => (o, Some(false)),
            TreeMsg::IHave(_) | TreeMsg::Graft(_) => return,
        };
        for origin in origins.iter().take(MAX_TREE_ORIGINS) {
            match change {
                None => {
                    self.trees.prune(now, *origin, from);
                }
                Some(eager) => self.trees.set_root_only(now, *origin, from, eager),
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush();
        }
        let retry = now + self.config.graft_timeout_2;
        let mut grafts: BTreeMap<L, Vec<ObjectRuns>> = BTreeMap::new();
        while self.graft_due.first().is_some_and(|(t, _)| *t <= now) {
            let Some((_, group)) = self.graft_due.pop_first() else {
                break;
            };
            let Some(missing) = self.missing.get_mut(&group) else {
                continue;
            };
            let taken = missing.take_due(now, retry, self.config.max_graft_attempts);
            match missing.due() {
                Some(t) if !missing.announcers.is_empty() => {
                    self.graft_due.insert((t, group));
                }
                _ => {
                    self.missing.remove(&group);
                }
            }
            let Some((peer, runs)) = taken else { continue };
            let (slot, origin) = group;
            let runs = runs.into_iter().map(|(first, last)| SeqRun {
                origin,
                first,
                last,
            });
            let batch = grafts.entry(peer).or_default();
            match batch.last_mut() {
                Some(o) if self.slots.get(&o.object) == Some(&slot) => o.runs.extend(runs),
                _ => batch.push(ObjectRuns {
                    object: self.keys[slot as usize].clone(),
                    runs: runs.collect(),
                }),
            }
        }
        for (peer, objects) in grafts {
            for o in &objects {
                for run in &o.runs {
                    self.trees.graft(now, run.origin, peer);
                }
            }
            self.stats.grafts_sent += 1;
            self.stats.ops_grafted = objects
                .iter()
                .flat_map(|o| &o.runs)
                .fold(self.stats.ops_grafted, |n, r| n.saturating_add(r.len()));
            self.out
                .push_back((smallvec![peer], Message::Tree(TreeMsg::Graft(objects)), 0));
        }
    }

    /// Whether nothing is under way (no missing op, no announcement
    /// waiting).
    pub(crate) fn is_idle(&self) -> bool {
        self.missing.is_empty() && self.pending.is_empty()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        let graft = self.graft_due.first().map(|(t, _)| *t);
        self.flush_at.into_iter().chain(graft).min()
    }

    /// The next message to send: `(links, message, ops in it)`.
    pub(crate) fn poll_send(&mut self) -> Option<(Targets<L>, Message, u64)> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests;
