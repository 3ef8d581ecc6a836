//! Which links carry whose ops eagerly: one tree per origin.
//!
//! The paper builds one tree and sends every broadcast down it. A tree
//! shaped by one origin's ops is a poor path for another's: among three
//! nodes linked to each other, one shared tree is a chain, and ops of an
//! end node reach the far end in two hops where one would do. So each
//! origin (the tree's *root*) gets its own eager set here, as in Riak's
//! plumtree:
//!
//! * a new root's tree starts with every link eager, as the paper's single
//!   tree does: its first ops flood, and the duplicates prune the tree down
//!   to the paths that delivered first, the fastest. (Starting from a tree
//!   shaped by other roots was tried: with no duplicate to learn from, a
//!   root kept a tree that was short for others and deep for it, 28 hops
//!   in a 300-node overlay where its own tree has 9, and the slow paths
//!   were grafted over and over.) A new sender costs one flood;
//! * a node linked to the root itself takes the root's ops straight from it
//!   (the paper's tree optimisation, section 3.8, with the one hop count a
//!   node knows without carrying hops on every op: a direct link is one
//!   hop, any other path at least two). When an op of the root arrives
//!   over another link first, the node sends [`TreeMsg::Eager`] to the
//!   root and [`TreeMsg::Lazy`] to the sender. A duplicate arriving over
//!   the direct link never prunes it.
//!
//! Trees are bounded by `max_trees`: the least recently used quarter goes
//! when the map is full, and an evicted root starts again with a flood.
//! With `max_trees` zero every root shares one tree, the paper's. Each
//! tree holds only its eager links (a tree's eager links are few however
//! many links a node has); its lazy links are the node's other links.
//!
//! [`TreeMsg::Eager`]: super::TreeMsg::Eager
//! [`TreeMsg::Lazy`]: super::TreeMsg::Lazy

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::super::id::NodeId;
use super::super::time::Time;
use super::Targets;

/// The lazy links of one op: a few, kept inline.
pub(super) type Lazy<L> = SmallVec<[L; 8]>;

/// The tree of one root.
#[derive(Debug)]
struct Root<L> {
    /// The links ops of this root are pushed to, sorted.
    eager: SmallVec<[L; 4]>,
    /// A link to the root itself, if it is a neighbour.
    direct: Option<L>,
    /// When an op of this root last passed, for eviction.
    used: Time,
}

impl<L: Copy + Ord> Root<L> {
    fn is_eager(&self, link: &L) -> bool {
        self.eager.binary_search(link).is_ok()
    }

    /// Whether the link was lazy.
    fn make_eager(&mut self, link: L) -> bool {
        match self.eager.binary_search(&link) {
            Ok(_) => false,
            Err(at) => {
                self.eager.insert(at, link);
                true
            }
        }
    }

    /// Whether the link was eager.
    fn make_lazy(&mut self, link: &L) -> bool {
        match self.eager.binary_search(link) {
            Ok(at) => {
                self.eager.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

/// What a first copy over another link than the root's own asks of the
/// tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shortcut<L> {
    /// The root's direct link is taken instead of the sender's: `direct`
    /// is told [`super::TreeMsg::Eager`], `from` [`super::TreeMsg::Lazy`].
    Take {
        /// The link to the root.
        direct: L,
        /// The link the copy came over.
        from: L,
    },
    /// The direct link is the tree's already, but `from` was faster: it is
    /// told [`super::TreeMsg::Lazy`] (the direct link's copy, a duplicate,
    /// prunes nothing).
    Leave(L),
}

/// The shared tree and the per-root trees of one node.
#[derive(Debug)]
pub(super) struct Trees<L> {
    /// The mesh links, and the node at the other end of each.
    links: BTreeMap<L, NodeId>,
    /// With `max_trees` zero, the one tree of every root: its eager links
    /// (the others are lazy).
    shared: BTreeSet<L>,
    roots: FxHashMap<NodeId, Root<L>>,
    max_trees: usize,
    /// How many links a new root's tree starts eager on (0: all).
    fanout: usize,
}

impl<L: Copy + Ord + Hash + std::fmt::Debug> Trees<L> {
    /// Trees for at most `max_trees` roots, each starting eager on
    /// `fanout` links (0: every link).
    pub(super) fn new(max_trees: usize, fanout: usize) -> Self {
        Self {
            links: BTreeMap::new(),
            shared: BTreeSet::new(),
            roots: FxHashMap::default(),
            max_trees,
            fanout,
        }
    }

    pub(super) fn is_neighbor(&self, link: &L) -> bool {
        self.links.contains_key(link)
    }

    /// How many roots have a tree of their own.
    pub(super) fn len(&self) -> usize {
        self.roots.len()
    }

    /// A link to `peer` joined the mesh: it starts eager in every tree, as
    /// a new neighbour does in the paper. A link already known keeps its
    /// place.
    pub(super) fn link_up(&mut self, link: L, peer: NodeId) {
        if self.links.insert(link, peer).is_some() {
            return;
        }
        self.shared.insert(link);
        for root in self.roots.values_mut() {
            root.make_eager(link);
        }
        if let Some(root) = self.roots.get_mut(&peer) {
            root.direct.get_or_insert(link);
        }
    }

    /// A link left the mesh: it leaves every tree.
    pub(super) fn link_down(&mut self, link: L) {
        let Some(peer) = self.links.remove(&link) else {
            return;
        };
        self.shared.remove(&link);
        for root in self.roots.values_mut() {
            root.make_lazy(&link);
        }
        let other = self.link_to(peer);
        if let Some(root) = self.roots.get_mut(&peer) {
            if root.direct == Some(link) {
                root.direct = other;
            }
        }
    }

    /// The links to push an op of `origin` to, and those to announce it to
    /// (both without `from`, and without links to the origin, which has
    /// it).
    pub(super) fn split(
        &mut self,
        now: Time,
        origin: NodeId,
        from: Option<L>,
    ) -> (Targets<L>, Lazy<L>) {
        let mut eager = Targets::new();
        let mut lazy = Lazy::new();
        let Self {
            links,
            shared,
            roots,
            max_trees,
            fanout,
        } = self;
        let others = links
            .iter()
            .filter(|(l, p)| Some(**l) != from && **p != origin)
            .map(|(l, _)| l);
        match root_in(roots, links, (*max_trees, *fanout), now, origin) {
            Some(root) => {
                for link in others {
                    if root.is_eager(link) {
                        eager.push(*link);
                    } else {
                        lazy.push(*link);
                    }
                }
            }
            None => {
                for link in others {
                    if shared.contains(link) {
                        eager.push(*link);
                    } else {
                        lazy.push(*link);
                    }
                }
            }
        }
        (eager, lazy)
    }

    /// The first copy of an op of `origin` came over `from` (a neighbour):
    /// the sender joins the root's tree, unless the root is a neighbour
    /// itself, whose direct link is the root's tree.
    pub(super) fn first_copy(&mut self, now: Time, origin: NodeId, from: L) -> Option<Shortcut<L>> {
        let Some(root) = self.root(now, origin) else {
            self.shared.insert(from);
            return None;
        };
        match root.direct {
            Some(direct) if direct != from => {
                let moved = root.make_eager(direct);
                root.make_lazy(&from);
                Some(if moved {
                    Shortcut::Take { direct, from }
                } else {
                    Shortcut::Leave(from)
                })
            }
            _ => {
                root.make_eager(from);
                None
            }
        }
    }

    /// Whether `link` is the link to `origin` itself.
    pub(super) fn is_direct(&self, origin: &NodeId, link: &L) -> bool {
        self.links.get(link) == Some(origin)
    }

    /// Ops of `origin` go to `link` eagerly from now on (a graft, either
    /// way).
    pub(super) fn graft(&mut self, now: Time, origin: NodeId, link: L) {
        self.set(now, origin, link, true);
    }

    /// Ops of `origin` are only announced to `link` from now on (a prune).
    /// Whether the link was eager for `origin`.
    pub(super) fn prune(&mut self, now: Time, origin: NodeId, link: L) -> bool {
        self.set(now, origin, link, false)
    }

    /// The root's tree only: `link` becomes eager (`true`) or lazy (an
    /// [`Eager`](super::TreeMsg::Eager) or [`Lazy`](super::TreeMsg::Lazy)
    /// message; with one shared tree these change nothing).
    pub(super) fn set_root_only(&mut self, now: Time, origin: NodeId, link: L, eager: bool) {
        if self.max_trees > 0 {
            self.set(now, origin, link, eager);
        }
    }

    /// `link` becomes eager or lazy in the tree of `origin`; whether it
    /// changed.
    fn set(&mut self, now: Time, origin: NodeId, link: L, eager: bool) -> bool {
        if !self.is_neighbor(&link) {
            return false;
        }
        match self.root(now, origin) {
            Some(root) if eager => root.make_eager(link),
            Some(root) => root.make_lazy(&link),
            None if eager => self.shared.insert(link),
            None => self.shared.remove(&link),
        }
    }

    /// The tree of `origin`, made on first use with every link eager;
    /// `None` if `max_trees` is zero (every root uses the shared tree).
    fn root(&mut self, now: Time, origin: NodeId) -> Option<&mut Root<L>> {
        let Self {
            links,
            roots,
            max_trees,
            fanout,
            ..
        } = self;
        root_in(roots, links, (*max_trees, *fanout), now, origin)
    }

    fn link_to(&self, peer: NodeId) -> Option<L> {
        link_to(&self.links, peer)
    }
}

/// [`Trees::root`] on the fields, so that a caller can hold the links.
fn root_in<'a, L: Copy + Ord>(
    roots: &'a mut FxHashMap<NodeId, Root<L>>,
    links: &BTreeMap<L, NodeId>,
    (max_trees, fanout): (usize, usize),
    now: Time,
    origin: NodeId,
) -> Option<&'a mut Root<L>> {
    if !roots.contains_key(&origin) {
        if max_trees == 0 {
            return None;
        }
        if roots.len() >= max_trees {
            evict(roots);
        }
        roots.insert(
            origin,
            Root {
                eager: first_eager(links, origin, fanout),
                direct: link_to(links, origin),
                used: now,
            },
        );
    }
    let root = roots.get_mut(&origin)?;
    root.used = root.used.max(now);
    Some(root)
}

/// The links a new tree of `origin` starts eager on, sorted: `fanout` of
/// them (every link if 0 or fewer links), chosen by a hash of the origin
/// and each peer, so that each root floods its own sparse random subgraph;
/// a link to the origin itself is always among them.
fn first_eager<L: Copy + Ord>(
    links: &BTreeMap<L, NodeId>,
    origin: NodeId,
    fanout: usize,
) -> SmallVec<[L; 4]> {
    if fanout == 0 || links.len() <= fanout {
        return links.keys().copied().collect();
    }
    let score = |peer: &NodeId| {
        let mut h = rustc_hash::FxHasher::default();
        origin.hash(&mut h);
        peer.hash(&mut h);
        // FxHash alone mixes similar ids poorly: finish as SplitMix64.
        let mut z = h.finish();
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (*peer != origin, z ^ (z >> 31))
    };
    let mut ranked: Vec<((bool, u64), L)> = links.iter().map(|(l, p)| (score(p), *l)).collect();
    ranked.sort_unstable();
    let mut eager: SmallVec<[L; 4]> = ranked.into_iter().take(fanout).map(|(_, l)| l).collect();
    eager.sort_unstable();
    eager
}

/// Drop the least recently used quarter of the trees (at least one).
fn evict<L>(roots: &mut FxHashMap<NodeId, Root<L>>) {
    let mut used: Vec<Time> = roots.values().map(|r| r.used).collect();
    if used.is_empty() {
        return;
    }
    let k = (used.len() / 4).max(1) - 1;
    let (_, cutoff, _) = used.select_nth_unstable(k);
    let cutoff = *cutoff;
    roots.retain(|_, r| r.used > cutoff);
}

fn link_to<L: Copy>(links: &BTreeMap<L, NodeId>, peer: NodeId) -> Option<L> {
    links.iter().find(|(_, p)| **p == peer).map(|(l, _)| *l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> NodeId {
        NodeId::from_u64(n)
    }

    fn t(ms: u64) -> Time {
        Time::from_micros(ms * 1000)
    }

    /// Links 1, 2, 3 to nodes 101, 102, 103.
    fn trees(max: usize) -> Trees<u32> {
        let mut trees = Trees::new(max, 0);
        for l in 1..=3 {
            trees.link_up(l, node(100 + u64::from(l)));
        }
        trees
    }

    #[test]
    fn each_root_has_its_own_tree_and_starts_with_every_link_eager() {
        let mut trees = trees(16);
        assert!(trees.prune(t(0), node(7), 2));
        assert!(!trees.prune(t(0), node(7), 2), "lazy already");
        let (eager, lazy) = trees.split(t(1), node(8), None);
        assert_eq!((eager.to_vec(), lazy.to_vec()), (vec![1, 2, 3], vec![]));
        let (eager, lazy) = trees.split(t(1), node(7), Some(1));
        assert_eq!((eager.to_vec(), lazy.to_vec()), (vec![3], vec![2]));
        trees.graft(t(2), node(7), 2);
        assert_eq!(trees.split(t(3), node(7), Some(1)).0.to_vec(), vec![2, 3]);
    }

    #[test]
    fn a_neighbour_of_the_root_takes_its_ops_straight_from_it() {
        let mut trees = trees(16);
        let root = node(102);
        trees.set_root_only(t(0), root, 2, false);
        // A copy of 102's op over link 1: link 2 leads to 102 itself.
        assert_eq!(
            trees.first_copy(t(1), root, 1),
            Some(Shortcut::Take { direct: 2, from: 1 })
        );
        // Never pushed back to the root, nor announced to it.
        let (eager, lazy) = trees.split(t(2), root, None);
        assert_eq!((eager.to_vec(), lazy.to_vec()), (vec![3], vec![1]));
        assert_eq!(
            trees.first_copy(t(3), root, 1),
            Some(Shortcut::Leave(1)),
            "taken once; a faster other link is only told to leave"
        );
        assert!(trees.is_direct(&root, &2));
    }

    #[test]
    fn the_direct_link_follows_links_up_and_down() {
        let mut trees = trees(16);
        let root = node(104);
        trees.first_copy(t(0), root, 1);
        trees.link_up(4, root);
        trees.set_root_only(t(1), root, 4, false);
        assert_eq!(
            trees.first_copy(t(2), root, 1),
            Some(Shortcut::Take { direct: 4, from: 1 })
        );
        trees.link_down(4);
        assert_eq!(trees.first_copy(t(3), root, 1), None);
        assert_eq!(trees.split(t(4), root, None).0.to_vec(), vec![1, 2, 3]);
    }

    #[test]
    fn trees_are_bounded_and_the_oldest_go_first() {
        let mut trees = trees(8);
        for n in 0..8 {
            trees.prune(t(n), node(n), 1);
        }
        assert_eq!(trees.len(), 8);
        trees.split(t(100), node(50), None);
        assert_eq!(trees.len(), 7, "two evicted, one made");
        // Root 0 was evicted, root 7 was not: root 0 starts again.
        assert_eq!(trees.split(t(101), node(0), None).0.to_vec(), vec![1, 2, 3]);
        assert_eq!(trees.split(t(101), node(7), None).0.to_vec(), vec![2, 3]);
        // No trees of their own: one shared tree, which only prunes and
        // grafts move.
        let mut one = Trees::new(0, 0);
        one.link_up(1u32, node(1));
        one.link_up(2u32, node(2));
        assert!(one.prune(t(0), node(5), 1));
        one.set_root_only(t(0), node(6), 2, false);
        assert_eq!(one.len(), 0);
        let (eager, lazy) = one.split(t(0), node(6), None);
        assert_eq!((eager.to_vec(), lazy.to_vec()), (vec![2], vec![1]));
    }

    #[test]
    fn a_sparse_first_fanout_picks_a_few_links_per_root_and_the_direct_one() {
        let mut trees = Trees::new(16, 2);
        for l in 1..=8u32 {
            trees.link_up(l, node(100 + u64::from(l)));
        }
        let mut picks = std::collections::BTreeSet::new();
        for r in 0..20 {
            let (eager, lazy) = trees.split(t(0), node(r), None);
            assert_eq!(eager.len(), 2, "root {r}");
            assert_eq!(lazy.len(), 6);
            assert!(eager.windows(2).all(|w| w[0] < w[1]), "sorted");
            picks.insert(eager.to_vec());
        }
        assert!(
            picks.len() > 5,
            "roots flood different subgraphs: {picks:?}"
        );
        // The same root picks the same links on every node of the run.
        let mut again = Trees::new(16, 2);
        for l in 1..=8u32 {
            again.link_up(l, node(100 + u64::from(l)));
        }
        assert_eq!(
            again.split(t(0), node(3), None).0,
            trees.split(t(0), node(3), None).0
        );
        // A neighbour that is the root always takes its ops directly: its
        // link is eager in its own tree here (and never pushed to).
        let root = node(105);
        assert!(trees
            .first_copy(t(1), root, 1)
            .is_some_and(|s| s == Shortcut::Leave(1)));
    }

    #[test]
    fn links_outside_the_mesh_change_nothing() {
        let mut trees = trees(16);
        assert!(!trees.prune(t(0), node(7), 9));
        trees.graft(t(0), node(7), 9);
        trees.set_root_only(t(0), node(7), 9, true);
        trees.link_down(9);
        let (eager, lazy) = trees.split(t(1), node(7), None);
        assert_eq!((eager.to_vec(), lazy.is_empty()), (vec![1, 2, 3], true));
    }
}
