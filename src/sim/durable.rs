//! Durable nodes: a simulated store under a node's replicas.
//!
//! A node made durable ([`Harness::make_durable`]) models the driver's
//! store (see `proto::replica`'s `hold_until_durable`): per object, a
//! *disk* holding the last whole state committed and the ops committed
//! after it, and a queue of items written but not committed yet: every op
//! the replica applies, in apply order (its own shouts and its peers'
//! ops), and the whole state whenever the driver would write it (when the
//! object is created or opened, after a rebase, an eviction or a new
//! restart epoch, and now and then at a commit).
//!
//! Commits come at random steps, drawn from the harness's seeded RNG
//! ([`DurableConfig::commit_chance`]), or when a test calls
//! [`Harness::commit`]. A commit takes a prefix of the queue to the disk,
//! tells the replica ([`Replica::committed`]) and only then hands the
//! node's own committed ops to its routing state, as the driver relays
//! them. A [`crash`](Harness::crash) loses the queue and the replica in
//! memory: a [`restart`](Harness::restart) rebuilds each replica from its
//! disk as the driver does (the state, then the ops after it, in order,
//! through [`deliver_frame`]) and holds it until durable again.
//!
//! Without the gate ([`DurableConfig::gate`] `false`) the node still logs
//! and loses what was not committed, but shares and acknowledges at once,
//! as a store without the write-ahead rule would: what the gate prevents
//! can then be watched happen.
//!
//! The harness keeps a [`DurableBook`] as a test oracle (it survives
//! crashes): the fate of every shout of a durable node, two different ops
//! seen under one `(origin, seq)`, ops lost in a crash that another node
//! held, and every op a replica refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::Rng;

use super::{Harness, SharedHost, SimHost};
use crate::proto::dissemination::SeqRun;
use crate::proto::host::{
    deliver_frame, export_all_frame, provisional_payloads, restore_replica, Host, HostError, Repair,
};
use crate::proto::message::{encode_value, ObjectDigest, OpFrame, Span, StateFrame};
use crate::proto::replica::{Applied, ApplyError, Replica};
use crate::proto::stability::AckTable;
use crate::proto::version::VersionVector;
use crate::proto::{NodeId, ObjectKey, OpId, Replicated};

/// How a durable node's store behaves (see [`Harness::make_durable`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurableConfig {
    /// Hold back what is not committed ([`Replica::hold_until_durable`]),
    /// handing own ops to the routing state only once committed. `false`:
    /// own ops leave at once and the replica shares and acknowledges
    /// everything, the failure the gate exists to prevent. Default: `true`.
    pub gate: bool,
    /// The chance, at each harness step, that the store commits a random
    /// prefix of what it has pending (of each object). Default: 0.05.
    pub commit_chance: f64,
    /// The chance, at each commit, that the whole state is written after
    /// it (as the driver does every so many ops). Default: 0.1.
    pub snapshot_chance: f64,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            gate: true,
            commit_chance: 0.05,
            snapshot_chance: 0.1,
        }
    }
}

/// What became of a durable node's shout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShoutFate {
    /// Written, not committed yet.
    Pending,
    /// Committed: a restart keeps it.
    Committed,
    /// Lost in a crash before it was committed.
    Lost,
}

/// A shout of a durable node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableShout {
    /// The node.
    pub node: usize,
    /// The op.
    pub id: OpId,
    /// What became of it.
    pub fate: ShoutFate,
}

/// Two different ops under one `(origin, seq)`: replicas that hold one
/// take the other for a duplicate, and never agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqConflict {
    /// The node that applied `second`.
    pub node: usize,
    /// The op seen first under the `(origin, seq)`.
    pub first: OpId,
    /// The other.
    pub second: OpId,
}

/// The oracle a harness with durable nodes keeps (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct DurableBook {
    /// Every shout of a durable node, in order. An op lost before it left
    /// its node may share its id with the next op shouted there after the
    /// restart (same seq, same clock): they are two entries.
    pub shouts: Vec<DurableShout>,
    /// Two different ops under one `(origin, seq)`.
    pub conflicts: Vec<SeqConflict>,
    /// Own ops a node lost in a crash that other nodes held (left the node
    /// before they were committed), with those nodes.
    pub leaked: Vec<(OpId, BTreeSet<usize>)>,
    /// Ops a durable node's replica refused (from a peer or on a restart),
    /// with the node.
    pub refused: Vec<(usize, ApplyError)>,
    /// Per `(origin, seq)`: the op first seen under it, its payload, and
    /// the nodes known to hold it.
    ops: BTreeMap<(NodeId, u64), (OpId, Bytes, BTreeSet<usize>)>,
}

impl DurableBook {
    /// Node `node` applied `frame`'s op.
    fn held(&mut self, node: usize, frame: &OpFrame) {
        let id = frame.id;
        let entry = self
            .ops
            .entry((id.origin, id.seq))
            .or_insert_with(|| (id, frame.payload.clone(), BTreeSet::new()));
        if entry.0 != id || entry.1 != frame.payload {
            self.conflicts.push(SeqConflict {
                node,
                first: entry.0,
                second: id,
            });
        }
        entry.2.insert(node);
    }

    /// The pending shout `id` (one at most: an id is given again only
    /// after its op was lost) is committed or lost.
    fn decide(&mut self, id: OpId, fate: ShoutFate) {
        let pending = |s: &&mut DurableShout| s.id == id && s.fate == ShoutFate::Pending;
        if let Some(shout) = self.shouts.iter_mut().rev().find(pending) {
            shout.fate = fate;
        }
    }

    /// Node `node` lost the op `frame` in a crash (`own`: its own).
    fn lost(&mut self, node: usize, frame: &OpFrame, own: bool) {
        let id = frame.id;
        if own {
            self.decide(id, ShoutFate::Lost);
        }
        let key = (id.origin, id.seq);
        let Some(entry) = self.ops.get_mut(&key) else {
            return;
        };
        if entry.0 != id {
            // Already a conflict: leave the first op's record alone.
            return;
        }
        entry.2.remove(&node);
        if own {
            if entry.2.is_empty() {
                // It never left: its seq may be given again.
                self.ops.remove(&key);
            } else {
                self.leaked.push((id, entry.2.clone()));
            }
        }
    }
}

/// An item written to a durable node's log.
#[derive(Debug)]
enum Item {
    /// An op as applied; `relay`: the node's own, to relay once committed.
    Op { frame: OpFrame, relay: bool },
    /// The whole state.
    State(WholeState),
}

/// A whole state as the driver's store keeps it: the frame, and the ops
/// made while the replica's origin awaits admission, which the frame
/// leaves out.
#[derive(Debug)]
struct WholeState {
    frame: StateFrame,
    provisional: Option<Vec<Vec<u8>>>,
}

impl WholeState {
    fn of<T: Replicated>(key: &ObjectKey, replica: &Replica<T>) -> Result<Self, HostError> {
        Ok(Self {
            frame: export_all_frame(key, replica)?,
            provisional: provisional_payloads(key, replica)?,
        })
    }
}

/// One object's store on one node.
#[derive(Debug, Default)]
struct Disk {
    /// The last whole state committed.
    state: Option<WholeState>,
    /// The ops committed after it, in order.
    ops: Vec<OpFrame>,
    /// Written, not committed, in order.
    pending: VecDeque<Item>,
    /// Own ops committed inside a host call (a join's commit), to relay
    /// at the harness's next step.
    deferred: Vec<OpFrame>,
}

impl Disk {
    /// Commit the first `n` pending items (fewer if fewer wait); the ids
    /// of `me`'s ops among them go to `own`, the ones to relay to
    /// `relays`. Returns how many were committed.
    fn commit(
        &mut self,
        n: usize,
        me: NodeId,
        own: &mut Vec<OpId>,
        relays: &mut Vec<OpFrame>,
    ) -> usize {
        let n = n.min(self.pending.len());
        for item in self.pending.drain(..n) {
            match item {
                Item::Op { frame, relay } => {
                    if frame.id.origin == me {
                        own.push(frame.id);
                    }
                    if relay {
                        relays.push(frame.clone());
                    }
                    self.ops.push(frame);
                }
                Item::State(state) => {
                    self.state = Some(state);
                    self.ops.clear();
                }
            }
        }
        n
    }
}

/// The harness's durable nodes and their stores.
#[derive(Debug, Default)]
pub(super) struct Durable {
    nodes: BTreeMap<usize, DurableConfig>,
    disks: BTreeMap<(usize, String), Arc<Mutex<Disk>>>,
    book: Arc<Mutex<DurableBook>>,
}

/// A durable node's host: the harness's, logging what it applies.
struct DurableHost<T: Replicated> {
    inner: SharedHost<T>,
    node: usize,
    disk: Arc<Mutex<Disk>>,
    book: Arc<Mutex<DurableBook>>,
    /// Whether the node keeps the write-ahead rule.
    gate: bool,
}

impl<T: Replicated> DurableHost<T> {
    /// Write the whole state (as the driver does after a change its op log
    /// cannot replay).
    fn relog(&self, replica: &mut Replica<T>) -> Result<(), HostError> {
        let state = WholeState::of(&self.inner.0, replica)?;
        self.disk.lock().pending.push_back(Item::State(state));
        replica.note_snapshot();
        Ok(())
    }

    /// Commit everything pending at once; own ops wait in `deferred` for
    /// the harness to relay.
    fn commit_now(&self, replica: &mut Replica<T>, stable: &mut Vec<OpId>) {
        let me = replica.me();
        let mut own = Vec::new();
        let n = {
            let mut disk = self.disk.lock();
            let mut relays = Vec::new();
            let n = disk.commit(usize::MAX, me, &mut own, &mut relays);
            disk.deferred.extend(relays);
            n
        };
        replica.committed(n);
        replica.refresh(|_, _, id| stable.push(id));
        let mut book = self.book.lock();
        for id in own {
            book.decide(id, ShoutFate::Committed);
        }
    }

    fn refused(&self, result: &Result<Applied, HostError>) {
        if let Err(HostError::Apply { source, .. }) = result {
            self.book.lock().refused.push((self.node, **source));
        }
    }
}

impl<T: Replicated> Host for DurableHost<T> {
    fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError> {
        let mut host = self.inner.1.lock();
        let SimHost { replica, fired, .. } = &mut *host;
        let result = deliver_frame(replica, frame, |_, _, id| fired.push(id));
        if result.as_ref().is_ok_and(|a| *a != Applied::Duplicate) {
            self.disk.lock().pending.push_back(Item::Op {
                frame: frame.clone(),
                relay: false,
            });
            self.book.lock().held(self.node, frame);
        }
        self.refused(&result);
        result
    }

    fn export(&mut self) -> Result<StateFrame, HostError> {
        self.inner.export()
    }

    fn admit(&mut self, node: NodeId) -> Result<Option<(NodeId, u64)>, HostError> {
        if !self.gate {
            return self.inner.admit(node);
        }
        // As the driver does: the admission is written and committed
        // before the answer leaves (a restart must not forget the member).
        let mut host = self.inner.1.lock();
        let Some(admission) = host.replica.admit(node) else {
            return Ok(None);
        };
        self.relog(&mut host.replica)?;
        let SimHost {
            replica, stable, ..
        } = &mut *host;
        self.commit_now(replica, stable);
        Ok(Some(admission))
    }

    fn wants_admission(&self) -> bool {
        self.inner.wants_admission()
    }

    fn may_evict(&self) -> bool {
        self.inner.may_evict()
    }

    fn admitted_as(&mut self, origin: NodeId, clock: u64) -> bool {
        if !self.inner.admitted_as(origin, clock) {
            return false;
        }
        // As the driver does: re-stamped ops go to the store as a whole
        // state.
        let _ = self.relog(&mut self.inner.1.lock().replica);
        true
    }

    fn refresh(&mut self) -> u64 {
        self.inner.refresh()
    }

    fn digest(&self, object: &ObjectKey) -> ObjectDigest {
        self.inner.digest(object)
    }

    fn digest_hash(&self, object: &ObjectKey) -> u64 {
        self.inner.digest_hash(object)
    }

    fn merge_acks(&mut self, acks: &AckTable) {
        let (before, restamped) = {
            let host = self.inner.1.lock();
            (host.replica.me(), host.replica.has_restamped())
        };
        self.inner.merge_acks(acks);
        let mut host = self.inner.1.lock();
        if host.replica.me() != before || (!restamped && host.replica.has_restamped()) {
            // As the driver does: a new restart epoch, or ops re-stamped on
            // admission, go to the store as a whole state.
            let _ = self.relog(&mut host.replica);
        }
    }

    fn repair(
        &self,
        held: &VersionVector,
        above: &[SeqRun],
        upto: Option<&VersionVector>,
        span: Option<&Span>,
        budget: usize,
    ) -> Result<Repair, HostError> {
        self.inner.repair(held, above, upto, span, budget)
    }

    fn ops_in(&self, runs: &[SeqRun], budget: usize) -> Result<Vec<OpFrame>, HostError> {
        self.inner.ops_in(runs, budget)
    }

    fn rebase(&mut self, state: &StateFrame) -> Result<bool, HostError> {
        let moved = self.inner.rebase(state)?;
        if moved {
            self.relog(&mut self.inner.1.lock().replica)?;
        }
        Ok(moved)
    }

    fn awaits_admission(&self) -> bool {
        self.inner.awaits_admission()
    }

    fn origins_of(&self, node: NodeId) -> Vec<NodeId> {
        self.inner.origins_of(node)
    }

    fn evict_gone(&mut self, gone: &dyn Fn(NodeId) -> bool) -> usize {
        let evicted = self.inner.evict_gone(gone);
        if evicted > 0 {
            let _ = self.relog(&mut self.inner.1.lock().replica);
        }
        evicted
    }

    fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError> {
        self.inner.take_restamped()
    }
}

/// The host the routing state of node `node` gets for `shared`: logging to
/// its store if the node is durable.
pub(super) fn host_box<T: Replicated>(
    durable: Option<&Durable>,
    node: usize,
    key: ObjectKey,
    shared: Arc<Mutex<SimHost<T>>>,
) -> Box<dyn Host> {
    let disk = durable.and_then(|d| {
        let gate = d.nodes.get(&node).is_some_and(|c| c.gate);
        d.disks
            .get(&(node, key.name.to_string()))
            .map(|disk| (disk.clone(), d.book.clone(), gate))
    });
    let inner = SharedHost(key, shared);
    match disk {
        Some((disk, book, gate)) => Box::new(DurableHost {
            inner,
            node,
            disk,
            book,
            gate,
        }),
        None => Box::new(inner),
    }
}

impl<T: Replicated> Harness<T> {
    /// Make node `node` durable, with a store behaving as `config` says
    /// (see the module doc). Call it before the node creates or opens an
    /// object.
    pub fn make_durable(&mut self, node: usize, config: DurableConfig) {
        assert!(
            self.nodes[node].objects.is_empty(),
            "make node {node} durable before it holds objects"
        );
        self.durable
            .get_or_insert_with(Durable::default)
            .nodes
            .insert(node, config);
    }

    /// Whether node `node` is durable.
    pub fn is_durable(&self, node: usize) -> bool {
        self.durable_config(node).is_some()
    }

    fn durable_config(&self, node: usize) -> Option<DurableConfig> {
        self.durable.as_ref()?.nodes.get(&node).copied()
    }

    fn disk(&self, node: usize, name: &str) -> Option<Arc<Mutex<Disk>>> {
        self.durable
            .as_ref()?
            .disks
            .get(&(node, name.to_owned()))
            .cloned()
    }

    /// The durable nodes' oracle (see [`DurableBook`]).
    pub fn durable_book(&self) -> DurableBook {
        self.durable
            .as_ref()
            .map(|d| d.book.lock().clone())
            .unwrap_or_default()
    }

    /// How many items node `node`'s store of `name` has not committed.
    pub fn pending(&self, node: usize, name: &str) -> usize {
        self.disk(node, name).map_or(0, |d| d.lock().pending.len())
    }

    /// The ops node `node`'s store of `name` committed: those in the last
    /// whole state committed (stable or tentative) aside.
    pub fn committed_ops(&self, node: usize, name: &str) -> Vec<OpId> {
        self.disk(node, name)
            .map(|d| d.lock().ops.iter().map(|f| f.id).collect())
            .unwrap_or_default()
    }

    /// Commit everything node `node`'s store has pending, of every object;
    /// returns how many items. Nothing if the node is down.
    pub fn commit(&mut self, node: usize) -> usize {
        let names: Vec<String> = self.nodes[node].objects.keys().cloned().collect();
        names
            .iter()
            .map(|name| self.commit_some(node, name, usize::MAX))
            .sum()
    }

    /// [`commit`](Self::commit) on every durable node that is up.
    pub fn commit_all(&mut self) -> usize {
        let nodes: Vec<usize> = self
            .durable
            .iter()
            .flat_map(|d| d.nodes.keys().copied())
            .collect();
        nodes.into_iter().map(|n| self.commit(n)).sum()
    }

    /// Commit the first `n` items node `node`'s store of `name` has pending
    /// (fewer if it has fewer), then relay the node's own ops among them;
    /// returns how many were committed. Nothing if the node is down.
    pub fn commit_some(&mut self, node: usize, name: &str, n: usize) -> usize {
        let (Some(config), Some(disk), Some(shared)) = (
            self.durable_config(node),
            self.disk(node, name),
            self.nodes[node].objects.get(name).cloned(),
        ) else {
            return 0;
        };
        if !self.nodes[node].alive {
            return 0;
        }
        let snapshot =
            config.snapshot_chance > 0.0 && self.rng.random_bool(config.snapshot_chance.min(1.0));
        let mut relays = Vec::new();
        let mut own = Vec::new();
        let n = {
            let mut host = shared.lock();
            let mut disk = disk.lock();
            if config.gate {
                assert_eq!(
                    disk.pending.len(),
                    host.replica.pending_durable(),
                    "node {node}'s store of {name} and its replica's gate disagree on what is \
                     pending (seed {})",
                    self.seed
                );
            }
            let n = disk.commit(n, host.replica.me(), &mut own, &mut relays);
            host.replica.committed(n);
            // As the driver does: fold what the commit made stable at once.
            let SimHost {
                replica, stable, ..
            } = &mut *host;
            replica.refresh(|_, _, id| stable.push(id));
            if snapshot {
                let key = ObjectKey::new(T::TYPE_TAG, name);
                let state = WholeState::of(&key, &host.replica).expect("test states encode");
                disk.pending.push_back(Item::State(state));
                host.replica.note_snapshot();
            }
            n
        };
        if let Some(d) = &self.durable {
            let mut book = d.book.lock();
            for id in own {
                book.decide(id, ShoutFate::Committed);
            }
        }
        if !relays.is_empty() {
            let now = self.now;
            for frame in relays {
                self.nodes[node].proto.handle_local_op(now, frame);
            }
            self.flush(node);
        }
        n
    }

    /// Write node `node`'s whole state of `name` to its store (pending
    /// until committed), as the driver does now and then.
    pub fn write_state(&mut self, node: usize, name: &str) {
        let (Some(disk), Some(shared)) = (
            self.disk(node, name),
            self.nodes[node].objects.get(name).cloned(),
        ) else {
            return;
        };
        let mut host = shared.lock();
        let key = ObjectKey::new(T::TYPE_TAG, name);
        let state = WholeState::of(&key, &host.replica).expect("test states encode");
        disk.lock().pending.push_back(Item::State(state));
        host.replica.note_snapshot();
    }

    /// A harness step's chance of commits (see
    /// [`DurableConfig::commit_chance`]).
    pub(super) fn maybe_commit(&mut self) {
        let Some(d) = &self.durable else {
            return;
        };
        // Own ops a join's commit made durable go out now.
        let deferred: Vec<(usize, Vec<OpFrame>)> = d
            .disks
            .iter()
            .map(|((node, _), disk)| (*node, std::mem::take(&mut disk.lock().deferred)))
            .filter(|(_, frames)| !frames.is_empty())
            .collect();
        for (node, frames) in deferred {
            if !self.nodes[node].alive {
                continue;
            }
            let now = self.now;
            for frame in frames {
                self.nodes[node].proto.handle_local_op(now, frame);
            }
            self.flush(node);
        }
        let Some(d) = &self.durable else {
            return;
        };
        let nodes: Vec<(usize, f64)> = d
            .nodes
            .iter()
            .map(|(n, c)| (*n, c.commit_chance.min(1.0)))
            .collect();
        for (node, chance) in nodes {
            if !self.nodes[node].alive || chance <= 0.0 || !self.rng.random_bool(chance) {
                continue;
            }
            let names: Vec<String> = self.nodes[node].objects.keys().cloned().collect();
            for name in names {
                let pending = self.pending(node, &name);
                if pending > 0 {
                    let n = self.rng.random_range(1..=pending);
                    self.commit_some(node, &name, n);
                }
            }
        }
    }

    /// A durable node starts holding `replica` as `name`: hold it until
    /// durable and write its whole state first, as the driver does for an
    /// object created or opened.
    pub(super) fn log_fresh(&mut self, node: usize, name: &str, replica: &mut Replica<T>) {
        let Some(config) = self.durable_config(node) else {
            return;
        };
        if config.gate {
            replica.hold_until_durable();
        }
        let key = ObjectKey::new(T::TYPE_TAG, name);
        let state = WholeState::of(&key, replica).expect("test states encode");
        let disk = Disk {
            pending: VecDeque::from([Item::State(state)]),
            ..Disk::default()
        };
        replica.note_snapshot();
        if let Some(d) = &mut self.durable {
            d.disks
                .insert((node, name.to_owned()), Arc::new(Mutex::new(disk)));
        }
    }

    /// Shout on a durable node: applied and written at once, relayed when
    /// committed (at once without the gate).
    pub(super) fn shout_durable(&mut self, node: usize, name: &str, op: T::Op) -> OpId {
        let config = self.durable_config(node).expect("a durable node");
        let (Some(shared), Some(disk)) = (
            self.nodes[node].objects.get(name).cloned(),
            self.disk(node, name),
        ) else {
            panic!("node {node} does not hold {name}");
        };
        let payload = encode_value(&op, "op").expect("test ops encode");
        let (id, admitted) = {
            let mut host = shared.lock();
            let SimHost { replica, fired, .. } = &mut *host;
            let id = replica.shout(op, |_, _, id| fired.push(id));
            (id, replica.is_admitted())
        };
        let frame = OpFrame {
            object: ObjectKey::new(T::TYPE_TAG, name),
            id,
            payload: payload.into(),
        };
        disk.lock().pending.push_back(Item::Op {
            frame: frame.clone(),
            relay: admitted && config.gate,
        });
        if let Some(d) = &self.durable {
            let mut book = d.book.lock();
            if admitted {
                // A provisional op never leaves under this id: the book
                // learns it under the one it is re-stamped with, from the
                // first peer that gets it.
                book.held(node, &frame);
            }
            book.shouts.push(DurableShout {
                node,
                id,
                fate: ShoutFate::Pending,
            });
        }
        if let Some(trace) = &mut self.trace {
            trace.shouted(id, node, self.nodes.len(), self.now);
        }
        let now = self.now;
        if !admitted {
            // Relayed once a member admits this node (see `Replica`).
            self.nodes[node].proto.request_admission(now, &frame.object);
            self.flush(node);
        } else if !config.gate {
            self.nodes[node].proto.handle_local_op(now, frame);
            self.flush(node);
        }
        id
    }

    /// Before a durable node restarts: drop what its stores had pending,
    /// and rebuild each replica from its disk (an object whose first
    /// state was never committed is gone).
    pub(super) fn reload_from_disk(&mut self, node: usize) {
        let Some(config) = self.durable_config(node) else {
            return;
        };
        let me = self.id(node);
        let names: Vec<String> = self.nodes[node].objects.keys().cloned().collect();
        for name in names {
            let Some(disk) = self.disk(node, &name) else {
                continue;
            };
            let mut disk = disk.lock();
            let book = self.durable.as_ref().map(|d| d.book.clone());
            let mut book = book.as_ref().map(|b| b.lock());
            let shared = self.nodes[node].objects[&name].clone();
            let origin = shared.lock().replica.me();
            for item in disk.pending.drain(..) {
                if let (Item::Op { frame, .. }, Some(book)) = (item, book.as_mut()) {
                    book.lost(node, &frame, frame.id.origin == origin);
                }
            }
            let Some(state) = &disk.state else {
                self.nodes[node].objects.remove(&name);
                continue;
            };
            let mut refused = Vec::new();
            let mut replica = restore_replica::<T>(
                me,
                &state.frame,
                state.provisional.as_deref(),
                &disk.ops,
                |e| {
                    if let HostError::Apply { source, .. } = e {
                        refused.push(*source);
                    }
                },
            )
            .expect("a committed state and its ops decode");
            if let Some(book) = book.as_mut() {
                book.refused.extend(refused.into_iter().map(|e| (node, e)));
            }
            if config.gate {
                replica.hold_until_durable();
            }
            let mut host = shared.lock();
            // A re-stamp the store lost is void: the op is provisional
            // again (or lost), and gets a new stamp.
            host.restamps
                .retain(|id| replica.has_seen(&id.origin, id.seq));
            host.replica = replica;
        }
    }
}
