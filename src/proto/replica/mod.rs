//! One replica of one object: the op log, the total order, rollback and
//! replay, the stable snapshot.
//!
//! The replica keeps two states: `stable`, the state after every op up to
//! the stable frontier, and `current`, `stable` plus the tentative log
//! applied in [`OpId`] order. An op that sorts after everything applied takes
//! the fast path (apply it to `current`). An op that sorts earlier is *late*:
//! `current` is reset to the nearest earlier checkpoint (or `stable`) and the
//! tentative log replayed from there with the op in its place — unless the op is commutative, in which case it is applied on
//! arrival. Advancing the stable frontier folds ops into `stable` and drops
//! them from the log.
//!
//! Checkpoints bound the cost of a replay: every `checkpoint_every` ops the
//! replica keeps a copy of `current`, so a late op rolls back to the
//! nearest checkpoint before it rather than to `stable`, and replays only
//! what follows (see [`ReplicaConfig`]).

use std::collections::{BTreeMap, VecDeque};

use smallvec::SmallVec;

use super::id::{LamportClock, NodeId, OpId};
use super::replicated::{Operation, Replicated};
use super::stability::{Ack, AckTable};
use super::version::{SeenSet, VersionVector};

mod checkpoints;
mod durable;
mod eviction;
mod log;

use checkpoints::push_checkpoint;
use log::OpLog;

/// What [`Replica::apply`] did with an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied in order: the fast path.
    InOrder,
    /// Late and commutative: applied on arrival, no replay.
    Commuted,
    /// Late: the state was rolled back to the stable snapshot and
    /// `replayed` tentative ops (the new one included) were applied again.
    Replayed {
        /// How many ops were applied in the replay.
        replayed: usize,
    },
    /// Already seen: ignored; nothing changed.
    Duplicate,
}

/// Why [`Replica::apply`] refused an op. The replica's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Sequence numbers start at 1; an op with seq 0 is malformed.
    #[error("op {0} has sequence number 0")]
    ZeroSeq(OpId),
    /// The op sorts at or before the stable frontier, which promised that no
    /// such op could still arrive (the origin was evicted, or is faulty).
    #[error("op {op} sorts before the stable frontier {frontier}")]
    BelowStable {
        /// The refused op.
        op: OpId,
        /// The frontier it violates.
        frontier: OpId,
    },
    /// The op's origin was evicted from the replica set, and the op comes
    /// after its cut: it is void everywhere.
    #[error("op {op} comes after the cut {cut} of its evicted origin")]
    Evicted {
        /// The refused op.
        op: OpId,
        /// The last seq of the origin that counts.
        cut: u64,
    },
}

/// Tuning of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Keep a checkpoint of the state every this many tentative ops.
    /// Default: 128.
    pub checkpoint_every: usize,
    /// Keep at most this many checkpoints: `checkpoint_every` ops apart
    /// near the end of the tentative log, geometrically further apart
    /// further back, over the whole log. 0 disables them and every
    /// rollback goes to the stable snapshot. Default: 16, so a late op
    /// among the last ~1,000 tentative ops replays at most about
    /// `checkpoint_every` ops more than follow it, and one further back
    /// about as many again as follow it.
    pub max_checkpoints: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 128,
            max_checkpoints: 16,
        }
    }
}

/// Counters a replica keeps about its own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Ops applied for the first time.
    pub applied: u64,
    /// Duplicates ignored.
    pub duplicates: u64,
    /// Rollbacks performed.
    pub rollbacks: u64,
    /// Op applications done during replays.
    pub replayed_ops: u64,
    /// Ops folded into the stable snapshot.
    pub folded: u64,
}

/// Everything a late joiner needs to build a replica: the stable snapshot,
/// what it covers, and the tentative log.
#[derive(Clone, Debug)]
pub struct ReplicaState<T: Replicated> {
    /// The state after every op up to `frontier`.
    pub stable: T,
    /// The stable frontier (`None`: nothing is stable yet).
    pub frontier: Option<OpId>,
    /// Per origin, the highest seq folded into `stable`.
    pub folded: VersionVector,
    /// The tentative ops, in order.
    pub tentative: Vec<(OpId, T::Op)>,
    /// The Lamport clock of the exporting replica.
    pub lamport: u64,
    /// The replica set's acknowledgements, as the exporter knew them.
    pub acks: AckTable,
}

/// One replica of one object.
#[derive(Clone, Debug)]
pub struct Replica<T: Replicated> {
    /// The node holding it.
    node: NodeId,
    /// The origin its ops carry: the node's, in its current restart epoch.
    me: NodeId,
    /// Whether `me` is a member of the replica set (a peer's table showed
    /// it): until then, ops made here stay provisional (applied here, never
    /// sent, not in `seen`). See [`stability`](super::stability).
    admitted: bool,
    /// Whether provisional ops wait for admission: the node asks a member
    /// to admit `me` (see [`wants_admission`](Self::wants_admission)).
    awaiting: bool,
    /// The clock `me` was admitted with: frontiers computed before this
    /// replica was a member may reach it, so it evicts only once its own
    /// `complete` does (see [`may_evict`](Self::may_evict)).
    admitted_at: u64,
    /// Per evicted origin, the cut already enforced here.
    enforced: BTreeMap<NodeId, u64>,
    /// Ops re-stamped on admission, still to be relayed.
    restamped: Vec<OpId>,
    config: ReplicaConfig,
    /// `(id, state after every op up to and including id)`, ascending; every
    /// id is in the log.
    checkpoints: VecDeque<(OpId, T)>,
    /// Ops applied on the fast path since the newest checkpoint.
    since_checkpoint: usize,
    stable: T,
    frontier: Option<OpId>,
    folded: VersionVector,
    current: T,
    /// The tentative ops, sorted by id (see [`OpLog`]).
    log: OpLog<T::Op>,
    seen: SeenSet,
    clock: LamportClock,
    next_seq: u64,
    /// What each member of the replica set acknowledged.
    acks: AckTable,
    /// Counts changes (ops, acks, folds): digests are cached by it.
    revision: u64,
    /// `revision` when this replica's own ack was last brought up to date.
    refreshed: Option<u64>,
    stats: ReplicaStats,
    /// What is logged but not durable yet, with a store (see
    /// [`hold_until_durable`](Self::hold_until_durable)).
    gate: Option<durable::Gate>,
}

impl<T: Replicated> Replica<T> {
    /// A new object with `initial` as its state, held by node `me`.
    pub fn new(me: NodeId, initial: T) -> Self {
        Self::with_config(me, initial, ReplicaConfig::default())
    }

    /// A new object, with tuning.
    pub fn with_config(me: NodeId, initial: T, config: ReplicaConfig) -> Self {
        Self {
            node: me,
            me,
            admitted: true,
            awaiting: false,
            admitted_at: 0,
            enforced: BTreeMap::new(),
            restamped: Vec::new(),
            config,
            checkpoints: VecDeque::new(),
            since_checkpoint: 0,
            current: initial.clone(),
            stable: initial,
            frontier: None,
            folded: VersionVector::default(),
            log: OpLog::default(),
            seen: SeenSet::default(),
            clock: LamportClock::default(),
            next_seq: 1,
            acks: AckTable::from_acks([(me, Ack::default())]),
            revision: 0,
            refreshed: None,
            stats: ReplicaStats::default(),
            gate: None,
        }
    }

    /// A replica built from another replica's exported state (a late join).
    ///
    /// Tentative ops are replayed without notifying anyone: this replica's
    /// observers were not bound yet. The replica is a member of the replica
    /// set only if the state's table shows its origin (it wrote before);
    /// otherwise its first op asks for admission (see
    /// [`wants_admission`](Self::wants_admission)).
    pub fn from_state(me: NodeId, state: ReplicaState<T>) -> Self {
        Self::from_state_with_config(me, state, ReplicaConfig::default())
    }

    /// [`from_state`](Self::from_state), with tuning.
    pub fn from_state_with_config(
        me: NodeId,
        state: ReplicaState<T>,
        config: ReplicaConfig,
    ) -> Self {
        Self::build(me, None, state, config)
    }

    /// A replica of `node` from `state`, with the origin `origin` (by
    /// default, the first of the node's epochs not evicted).
    fn build(
        node: NodeId,
        origin: Option<NodeId>,
        mut state: ReplicaState<T>,
        config: ReplicaConfig,
    ) -> Self {
        let me = origin.unwrap_or_else(|| state.acks.origin_for(node));
        let mut seen = SeenSet::default();
        // Every folded op sorts at or before the frontier, and every op after
        // a folded one sorts after it: the frontier's Lamport time bounds the
        // top of each folded prefix from below, as stability needs.
        let folded_lamport = state.frontier.map_or(0, |f| f.lamport);
        for (origin, upto) in &state.folded.0 {
            seen.insert_prefix(*origin, *upto, folded_lamport);
        }
        let mut clock = LamportClock::default();
        clock.witness(state.lamport);
        let mut log = OpLog::default();
        for (id, op) in state.tentative {
            let void = state
                .acks
                .eviction(&id.origin)
                .is_some_and(|e| id.seq > e.cut);
            if id.seq == 0 || void || state.frontier.is_some_and(|f| id <= f) {
                continue;
            }
            if seen.insert_op(&id) {
                clock.witness(id.lamport);
                log.insert(id, op);
            }
        }
        let next_seq = seen.max_seq(&me) + 1;
        let mut acks = state.acks;
        let admitted = acks.get(&me).is_some();
        // When it was admitted is not in the state: its entry's clock is
        // at least that (conservative).
        let admitted_at = acks.get(&me).map_or(0, |a| a.clock);
        for origin in seen.origins() {
            acks.ensure(*origin);
        }
        let mut replica = Self {
            node,
            me,
            admitted,
            awaiting: false,
            admitted_at,
            enforced: BTreeMap::new(),
            restamped: Vec::new(),
            config,
            checkpoints: VecDeque::new(),
            since_checkpoint: 0,
            current: state.stable.clone(),
            stable: state.stable,
            frontier: state.frontier,
            folded: state.folded,
            log,
            seen,
            clock,
            next_seq,
            acks,
            revision: 0,
            refreshed: None,
            stats: ReplicaStats::default(),
            gate: None,
        };
        replica.replay_after(None, |_, _, _| {});
        replica.enforce_evictions();
        replica
    }

    /// The node holding this replica.
    pub const fn me(&self) -> NodeId {
        self.me
    }

    /// The current state: every op seen, applied in order.
    pub const fn state(&self) -> &T {
        &self.current
    }

    /// The stable snapshot.
    pub const fn stable_state(&self) -> &T {
        &self.stable
    }

    /// The stable frontier.
    pub const fn frontier(&self) -> Option<OpId> {
        self.frontier
    }

    /// The number of tentative ops in the log.
    pub fn tentative_len(&self) -> usize {
        self.log.len()
    }

    /// The replica's counters.
    pub const fn stats(&self) -> ReplicaStats {
        self.stats
    }

    /// The object's Lamport clock at this replica.
    pub const fn lamport(&self) -> u64 {
        self.clock.now()
    }

    /// The contiguous version vector of every op held (stable or tentative).
    pub fn version_vector(&self) -> VersionVector {
        self.seen.version_vector()
    }

    /// Runs `(origin, first, last)` held above the contiguous prefix, at
    /// most `max` (those of the lowest origins first).
    pub fn held_above(&self, max: usize) -> Vec<(NodeId, u64, u64)> {
        self.seen.held_above(max)
    }

    /// The top seq of `origin`'s ops folded into the stable snapshot (they
    /// fold in seq order): 0 if none.
    pub fn folded_upto(&self, origin: &NodeId) -> u64 {
        self.folded.get(origin)
    }

    /// Whether the op `(origin, seq)` was seen.
    pub fn has_seen(&self, origin: &NodeId, seq: u64) -> bool {
        self.seen.contains(origin, seq)
    }

    /// Make a local op: give it the next id, apply it, and return the id.
    ///
    /// A local op sorts after everything this replica has seen, so it always
    /// takes the fast path. `on_applied` is called once, with the new state.
    pub fn shout(&mut self, op: T::Op, on_applied: impl FnOnce(&T, &T::Op, OpId)) -> OpId {
        let id = OpId {
            lamport: self.clock.tick(),
            origin: self.me,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if self.admitted {
            self.seen.insert_op(&id);
        } else {
            self.awaiting = true;
        }
        self.revision += 1;
        self.current.apply(&op);
        on_applied(&self.current, &op, id);
        self.push_in_order(id, op);
        self.stats.applied += 1;
        self.note_op(id);
        id
    }

    /// Apply an op from anywhere (usually a peer), in its place in the order.
    ///
    /// `on_applied` is called exactly once if the op is new, with the state
    /// right after the op was applied in its place, and never for a
    /// duplicate or an error.
    pub fn apply(
        &mut self,
        id: OpId,
        op: T::Op,
        on_applied: impl FnOnce(&T, &T::Op, OpId),
    ) -> Result<Applied, ApplyError> {
        if id.seq == 0 {
            return Err(ApplyError::ZeroSeq(id));
        }
        if self.seen.contains(&id.origin, id.seq) {
            self.stats.duplicates += 1;
            return Ok(Applied::Duplicate);
        }
        if let Some(e) = self.acks.eviction(&id.origin).filter(|e| id.seq > e.cut) {
            return Err(ApplyError::Evicted { op: id, cut: e.cut });
        }
        if let Some(frontier) = self.frontier.filter(|f| id <= *f) {
            return Err(ApplyError::BelowStable { op: id, frontier });
        }
        self.seen.insert_op(&id);
        self.note_op(id);
        self.acks.ensure(id.origin);
        self.revision += 1;
        self.clock.witness(id.lamport);
        if id.origin == self.me && id.seq >= self.next_seq {
            // Our own op from before a restart: never reuse its seq.
            self.next_seq = id.seq + 1;
        }
        self.stats.applied += 1;
        let last = self.log.last_id().or(self.frontier);
        if last.is_none_or(|last| id > last) {
            self.current.apply(&op);
            on_applied(&self.current, &op, id);
            self.push_in_order(id, op);
            return Ok(Applied::InOrder);
        }
        if op.is_commutative() {
            // It commutes with everything: later checkpoints just gain it.
            self.current.apply(&op);
            for (_, state) in self.checkpoints.iter_mut().filter(|(cp, _)| *cp > id) {
                state.apply(&op);
            }
            on_applied(&self.current, &op, id);
            self.log.insert_late(id, op);
            return Ok(Applied::Commuted);
        }
        self.log.insert(id, op);
        let after = self.rewind_before(id);
        let mut on_applied = Some(on_applied);
        let replayed = self.replay_after(after, |state, entry_op, entry_id| {
            if entry_id == id {
                if let Some(f) = on_applied.take() {
                    f(state, entry_op, entry_id);
                }
            }
        });
        self.stats.rollbacks += 1;
        self.stats.replayed_ops += replayed as u64;
        Ok(Applied::Replayed { replayed })
    }

    /// Checkpoints at or after `id` are wrong now: drop them and reset
    /// `current` to the last one before it (or to the stable snapshot);
    /// returns where to replay from.
    fn rewind_before(&mut self, id: OpId) -> Option<OpId> {
        let keep = self.checkpoints.partition_point(|(cp, _)| *cp < id);
        self.checkpoints.truncate(keep);
        match self.checkpoints.back() {
            Some((cp, state)) => {
                self.current.clone_from(state);
                Some(*cp)
            }
            None => {
                self.current.clone_from(&self.stable);
                None
            }
        }
    }

    /// Append an op already applied to `current`; checkpoint when due.
    fn push_in_order(&mut self, id: OpId, op: T::Op) {
        self.log.insert(id, op);
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.config.checkpoint_every {
            self.since_checkpoint = 0;
            push_checkpoint(&mut self.checkpoints, self.config, id, &self.current);
        }
    }

    /// Apply the log after `after` (all of it for `None`) to `current`,
    /// which holds the state at `after`, checkpointing on the way; returns
    /// how many ops ran.
    fn replay_after(
        &mut self,
        after: Option<OpId>,
        mut each: impl FnMut(&T, &T::Op, OpId),
    ) -> usize {
        let Self {
            log,
            current,
            checkpoints,
            config,
            since_checkpoint,
            ..
        } = self;
        *since_checkpoint = 0;
        let mut replayed = 0;
        log.for_each_after(after, |&id, op| {
            current.apply(op);
            each(current, op, id);
            replayed += 1;
            *since_checkpoint += 1;
            if *since_checkpoint >= config.checkpoint_every {
                *since_checkpoint = 0;
                push_checkpoint(checkpoints, *config, id, current);
            }
        });
        replayed
    }

    /// Advance the stable frontier to `frontier`: fold every tentative op at
    /// or before it into the stable snapshot and drop it from the log.
    ///
    /// The caller promises that no op at or before `frontier` can still
    /// arrive (every live member of the replica set acknowledged it); later
    /// such ops are refused with [`ApplyError::BelowStable`]. A frontier at or
    /// before the current one changes nothing. `on_stable` is called once per
    /// folded op, in order, with the stable state right after it.
    pub fn advance_stable(
        &mut self,
        frontier: OpId,
        mut on_stable: impl FnMut(&T, &T::Op, OpId),
    ) -> usize {
        if self.frontier.is_some_and(|f| frontier <= f) {
            return 0;
        }
        self.clock.witness(frontier.lamport);
        let mut upto = 0;
        // The highest seq folded per origin, gathered in a few slots (the
        // ops of a handful of writers interleave) and noted once each.
        let mut tops: SmallVec<[(NodeId, u64); 8]> = SmallVec::new();
        let (stable, folded) = (&mut self.stable, &mut self.folded);
        self.log.drain_upto(frontier, |id, op| {
            upto += 1;
            stable.apply(&op);
            on_stable(stable, &op, id);
            if let Some((_, seq)) = tops.iter_mut().find(|(origin, _)| *origin == id.origin) {
                *seq = (*seq).max(id.seq);
            } else if tops.len() < tops.inline_size() {
                tops.push((id.origin, id.seq));
            } else {
                note_folded(folded, id.origin, id.seq);
            }
        });
        for (origin, seq) in tops {
            note_folded(&mut self.folded, origin, seq);
        }
        let stale = self.checkpoints.partition_point(|(cp, _)| *cp <= frontier);
        self.checkpoints.drain(..stale);
        self.frontier = Some(frontier);
        self.stats.folded += upto as u64;
        self.revision += 1;
        upto
    }

    /// The replica set's acknowledgements (this replica's own entry as of
    /// the last [`refresh`](Self::refresh)).
    pub const fn acks(&self) -> &AckTable {
        &self.acks
    }

    /// A number that changes whenever the replica does (ops, acks, folds).
    pub const fn revision(&self) -> u64 {
        self.revision
    }

    /// Bring this replica's own ack up to date and fold every op that became
    /// stable (see [`stability`](super::stability)); `on_stable` as in
    /// [`advance_stable`](Self::advance_stable). Cheap when nothing changed
    /// since the last call. Returns how many ops were folded.
    pub fn refresh(&mut self, on_stable: impl FnMut(&T, &T::Op, OpId)) -> usize {
        if self.refreshed == Some(self.revision) {
            return 0;
        }
        let (clock, seq) = self.durable_ack_bounds(self.clock.now(), self.next_seq - 1);
        let complete = self.acks.complete_at(self.me, clock, &self.seen);
        let mine = Ack {
            clock,
            seq,
            complete,
        };
        // Only members are in the table; a replica that never wrote folds
        // what every member holds and it holds too.
        let grew = self.admitted && self.acks.report(self.me, mine);
        let frontier = match self.acks.frontier() {
            Some(f) if !self.admitted => Some(f.min(complete)),
            f => f,
        };
        let folded = match frontier {
            // Nothing folds while provisional ops wait for admission: they
            // are in the log, and no peer counts them yet.
            Some(_) if self.awaiting => 0,
            Some(stable) if self.frontier.is_none_or(|f| stable > f.lamport) && stable > 0 => {
                // Every op with a Lamport time up to `stable` is here and
                // held by every member: fold them all.
                let frontier = OpId {
                    lamport: stable,
                    origin: NodeId::MAX,
                    seq: u64::MAX,
                };
                self.advance_stable(frontier, on_stable)
            }
            _ => 0,
        };
        if grew && folded == 0 {
            self.revision += 1;
        }
        self.refreshed = Some(self.revision);
        folded
    }

    /// Merge the acks a peer reported, then [`refresh`](Self::refresh).
    pub fn merge_acks(
        &mut self,
        acks: &AckTable,
        on_stable: impl FnMut(&T, &T::Op, OpId),
    ) -> usize {
        if self.acks.merge(acks) {
            self.revision += 1;
        }
        self.enforce_evictions();
        if !self.admitted && acks.get(&self.me).is_some() {
            // A peer merged our new origin: its clock, and every frontier
            // that passed without us, is behind the table's clocks.
            self.admit_self(acks.max_clock());
        }
        self.refresh(on_stable)
    }

    /// Whether a replica that holds `held` (contiguously) lacks ops this one
    /// has already folded: it needs the snapshot, not ops.
    pub fn needs_snapshot(&self, held: &VersionVector) -> bool {
        self.needs_snapshot_of(held, |_| true)
    }

    /// [`needs_snapshot`](Self::needs_snapshot), looking only at the
    /// origins `of` keeps.
    pub fn needs_snapshot_of(&self, held: &VersionVector, of: impl Fn(&NodeId) -> bool) -> bool {
        self.folded.0.iter().any(|(o, n)| of(o) && held.get(o) < *n)
    }

    /// The tentative ops that a replica holding `held` (contiguously) may
    /// lack, in order.
    pub fn ops_missing<'a>(
        &'a self,
        held: &'a VersionVector,
    ) -> impl Iterator<Item = (OpId, &'a T::Op)> + 'a {
        // Nothing past `held` seen here: skip the walk of the log.
        let ahead = self.origins_ahead_of(held).next().is_some();
        self.log
            .iter()
            .take_while(move |_| ahead)
            .filter(move |(id, _)| self.is_shareable(id) && self.is_durable(id))
            .filter(move |(id, _)| id.seq > held.get(&id.origin))
    }

    /// The origins of which this replica has seen ops past `held`.
    pub fn origins_ahead_of<'a>(
        &'a self,
        held: &'a VersionVector,
    ) -> impl Iterator<Item = NodeId> + 'a {
        self.seen
            .origins()
            .filter(move |o| self.seen.max_seq(o) > held.get(o))
            .copied()
    }

    /// Replace this replica's base with a peer's newer snapshot (the
    /// anti-entropy repair for a replica that lacks ops the peer already
    /// folded). Ops this replica holds past the new frontier are kept and
    /// replayed; ops at or before it that the snapshot does not cover are
    /// dropped (their origin was evicted). Ops learned from the snapshot do
    /// not reach observers (as for a late join). Returns `false`, changing
    /// nothing, when the snapshot is not ahead of this replica.
    pub fn rebase(&mut self, state: ReplicaState<T>) -> bool {
        let ahead = match (state.frontier, self.frontier) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(theirs), Some(ours)) => theirs > ours,
        };
        if !ahead {
            return false;
        }
        // Evictions the snapshot knows of first: this replica's own void
        // ops must become provisional, not be dropped by the new base.
        if self.acks.merge(&state.acks) {
            self.enforce_evictions();
        }
        let frontier = state.frontier;
        let mut rebased = Self::build(self.node, Some(self.me), state, self.config);
        let mut provisional = Vec::new();
        for (id, op) in std::mem::take(&mut self.log) {
            if !self.is_shareable(&id) {
                provisional.push(op);
                continue;
            }
            if frontier.is_some_and(|f| id <= f) || rebased.has_seen(&id.origin, id.seq) {
                continue;
            }
            let _ = rebased.apply(id, op, |_, _, _| {});
        }
        rebased.acks.merge(&self.acks);
        rebased.next_seq = rebased.next_seq.max(self.next_seq);
        rebased.clock.witness(self.clock.now());
        rebased.admitted = self.admitted;
        rebased.awaiting = self.awaiting;
        rebased.admitted_at = self.admitted_at;
        rebased.enforced = std::mem::take(&mut self.enforced);
        rebased.restamped = std::mem::take(&mut self.restamped);
        rebased.enforce_evictions();
        if !provisional.is_empty() {
            rebased.next_seq = 1;
            rebased.push_provisional(provisional);
        }
        rebased.stats = self.stats;
        rebased.gate = self.take_gate();
        rebased.revision = self.revision + 1;
        *self = rebased;
        true
    }

    /// Export what a late joiner needs (only what may leave the node: see
    /// [`hold_until_durable`](Self::hold_until_durable)).
    pub fn export(&self) -> ReplicaState<T> {
        self.export_with(|r, id| r.is_shareable(id) && r.is_durable(id))
    }

    /// Export everything held, durable or not, for this node's own store
    /// (provisional ops aside, as in [`export`](Self::export)).
    pub fn export_all(&self) -> ReplicaState<T> {
        self.export_with(|r, id| r.is_shareable(id))
    }

    fn export_with(&self, keep: impl Fn(&Self, &OpId) -> bool) -> ReplicaState<T> {
        ReplicaState {
            stable: self.stable.clone(),
            frontier: self.frontier,
            folded: self.folded.clone(),
            tentative: self
                .log
                .iter()
                .filter(|(id, _)| keep(self, id))
                .map(|(id, op)| (id, op.clone()))
                .collect(),
            lamport: self.clock.now(),
            acks: self.acks.clone(),
        }
    }

    /// The tentative ops that may leave the node, in order.
    /// Provisional ops (made before this replica's new origin was
    /// admitted) are left out: they never leave the node as they are; so
    /// are its own ops not durable yet (see
    /// [`hold_until_durable`](Self::hold_until_durable)).
    pub fn tentative_ops(&self) -> impl Iterator<Item = (OpId, &T::Op)> + '_ {
        self.log
            .iter()
            .filter(|(id, _)| self.is_shareable(id) && self.is_durable(id))
    }

    /// The ids of the tentative ops, in order.
    pub fn tentative_ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.log.ids()
    }
}

/// Note that `origin`'s ops up to `seq` are folded.
fn note_folded(folded: &mut VersionVector, origin: NodeId, seq: u64) {
    let top = folded.0.entry(origin).or_insert(0);
    *top = (*top).max(seq);
}
