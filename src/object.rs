//! A node's local copy of one object: the replica, its observers, and the
//! lock that lets application threads read it without a round trip.

use std::cell::Cell;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::proto::dissemination::SeqRun;
use crate::proto::host::{
    deliver_frame, digest_hash_of, digest_of, export_all_frame, export_frame, ops_in,
    provisional_payloads, rebase_onto, repair_of, restamped_frames, Host, HostError, Repair,
};
use crate::proto::message::{ObjectDigest, OpFrame, Span, StateFrame};
use crate::proto::replica::{Applied, Replica};
use crate::proto::stability::AckTable;
use crate::proto::version::VersionVector;
use crate::proto::{Delivery, NodeId, ObjectKey, OpId, Replicated};
use crate::store::records::StateRecord;
use crate::store::{Item, Logged, Store, StoreError};

/// Identifies an observer bound with `observe`, to unbind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

type Observers<T> = Vec<(ObserverId, Box<<T as Replicated>::Observer>)>;

/// One object held by a node, shared by its leaves and the repeater.
pub(crate) struct ObjectCell<T: Replicated> {
    pub(crate) key: ObjectKey,
    /// The replica; application threads read it, appliers write it.
    pub(crate) state: RwLock<Replica<T>>,
    /// Always locked after `state` (when both are held).
    observers: Mutex<Observers<T>>,
    next_observer: AtomicU64,
    /// Changes when ops are applied while a leaf waits on it.
    applied: watch::Sender<u64>,
    /// Where its ops are logged, with a store.
    pub(crate) log: Option<CellLog>,
}

/// An object's place in the node's store.
pub(crate) struct CellLog {
    store: Store,
    object: u64,
    /// The last log position used (advanced under the replica's lock).
    pos: AtomicU64,
    /// Ops logged since the last whole state.
    since: AtomicU64,
}

impl CellLog {
    /// The log of object number `object`, whose last position used is
    /// `pos`.
    pub(crate) fn new(store: Store, object: u64, pos: u64) -> Self {
        Self {
            store,
            object,
            pos: AtomicU64::new(pos),
            since: AtomicU64::new(0),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Queue an op just applied (call under the replica's write lock).
    pub(crate) fn op(
        &self,
        frame: OpFrame,
        relay: bool,
        waiter: Option<crate::store::Waiter>,
    ) -> Result<(), StoreError> {
        let pos = self.pos.fetch_add(1, Ordering::Relaxed) + 1;
        self.since.fetch_add(1, Ordering::Relaxed);
        self.store.push(Item::Op {
            object: self.object,
            pos,
            frame,
            relay,
            waiter,
        })
    }
}

impl<T: Replicated> fmt::Debug for ObjectCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectCell")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<T: Replicated> ObjectCell<T> {
    pub(crate) fn new(key: ObjectKey, replica: Replica<T>) -> Arc<Self> {
        Self::with_log(key, replica, None)
    }

    /// A cell whose ops are logged in `log`. A fresh object (`fresh`) has
    /// its whole state written first; a restored one holds only what the
    /// store has.
    pub(crate) fn with_log(
        key: ObjectKey,
        mut replica: Replica<T>,
        log: Option<CellLog>,
    ) -> Arc<Self> {
        if log.is_some() {
            replica.hold_until_durable();
        }
        Arc::new(Self {
            key,
            state: RwLock::new(replica),
            observers: Mutex::new(Vec::new()),
            next_observer: AtomicU64::new(1),
            applied: watch::channel(0).0,
            log,
        })
    }

    /// Start logging: register with the writer, and write the whole state
    /// first when `fresh` (not restored from the store).
    pub(crate) fn attach_log(self: &Arc<Self>, fresh: bool) -> Result<(), StoreError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let cell: Arc<dyn Logged> = self.clone();
        log.store.push(Item::Register {
            object: log.object,
            cell: Arc::downgrade(&cell),
        })?;
        if fresh {
            let mut replica = self.state.write();
            self.write_state(&mut replica)?;
        }
        Ok(())
    }

    /// Queue the whole state (call under the replica's write lock).
    fn write_state(&self, replica: &mut Replica<T>) -> Result<(), StoreError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let corrupt = |what: String| StoreError::Write {
            path: log.store.path().to_path_buf(),
            reason: what,
        };
        let frame = export_all_frame(&self.key, replica).map_err(|e| corrupt(e.to_string()))?;
        // Ops made while this node's origin awaits admission are not in
        // the frame; the record keeps them, or a compaction would drop them.
        let provisional =
            provisional_payloads(&self.key, replica).map_err(|e| corrupt(e.to_string()))?;
        let pos = log.pos.load(Ordering::Relaxed);
        let bytes = StateRecord::encode(pos, &frame, provisional.as_deref()).map_err(corrupt)?;
        log.store.push(Item::State {
            object: log.object,
            key: self.key.clone(),
            pos,
            bytes,
        })?;
        log.since.store(0, Ordering::Relaxed);
        replica.note_snapshot();
        Ok(())
    }

    /// Log the whole state now, if the cell has a store (after a change
    /// the op log cannot replay: a rebase, an eviction, a new epoch).
    fn relog_state(&self, replica: &mut Replica<T>) {
        match self.write_state(replica) {
            Ok(()) => {}
            // Shutting down: the ops logged so far are committed anyway.
            Err(StoreError::Closed) => {}
            Err(error) => {
                tracing::error!(object = %self.key, %error, "could not log the object's state");
            }
        }
    }

    /// Log ops from peers just applied (call under the replica's lock).
    fn log_delivered(&self, frame: &OpFrame) {
        if let Some(log) = &self.log {
            if let Err(error) = log.op(frame.clone(), false, None) {
                tracing::debug!(object = %self.key, %error, "op not logged");
            }
        }
    }

    pub(crate) fn observe(&self, observer: Box<T::Observer>) -> ObserverId {
        let id = ObserverId(self.next_observer.fetch_add(1, Ordering::Relaxed));
        self.observers.lock().push((id, observer));
        id
    }

    pub(crate) fn unobserve(&self, id: ObserverId) -> bool {
        let mut observers = self.observers.lock();
        let before = observers.len();
        observers.retain(|(i, _)| *i != id);
        observers.len() != before
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Make a local op, apply it, notify observers; `then` runs under the
    /// lock with the new id and whether the op may be relayed now (the
    /// caller hands the op to the repeater there, so one origin's ops leave
    /// in seq order). An op made while the replica's new origin awaits
    /// admission stays here until it is re-stamped.
    pub(crate) fn shout<R>(&self, op: T::Op, then: impl FnOnce(OpId, bool) -> R) -> R {
        let mut replica = self.state.write();
        let me = replica.me();
        let id = replica.shout(op, |state, op, id| self.notify(state, op, id, me));
        let out = then(id, replica.is_admitted());
        drop(replica);
        self.bump();
        out
    }

    /// Wake the leaves waiting for a change. Skipped (an atomic load) when
    /// none waits: waiters subscribe before they first look at the state.
    fn bump(&self) {
        if self.applied.receiver_count() > 0 {
            self.applied.send_modify(|n| *n += 1);
        }
    }
}

thread_local! {
    /// The address of the cell whose observers run on this thread, if any.
    static NOTIFYING: Cell<usize> = const { Cell::new(0) };
}

impl<T: Replicated> Logged for ObjectCell<T> {
    fn committed(&self, n: usize) {
        let mut replica = self.state.write();
        replica.committed(n);
        // What the commit made durable may now be stable (at once for a
        // lone replica; otherwise once peers acknowledged it): fold it, so
        // the log the next state carries stays short.
        let me = replica.me();
        self.telling(|cell, observers| {
            replica.refresh(|state, op, id| {
                cell.tell_locked(observers, state, op, Delivery::new(id, me, true))
            })
        });
        // A whole state carries the tentative log: written while that is
        // long (stability lags, or folding waits for the next refresh) it
        // would cost more than the ops it replaces. The ops table then
        // holds at most about twice the tentative log.
        let due = self.log.as_ref().is_some_and(|log| {
            let since = log.since.load(Ordering::Relaxed);
            since >= log.store.config().snapshot_every
                && replica.tentative_len() as u64 <= since / 2
        });
        if due {
            self.relog_state(&mut replica);
        }
    }
}

impl<T: Replicated> ObjectCell<T> {
    /// Tell every observer of this cell that `op` was applied.
    fn notify(&self, state: &T, op: &T::Op, id: OpId, me: NodeId) {
        self.tell(state, op, Delivery::new(id, me, false));
    }

    fn tell(&self, state: &T, op: &T::Op, delivery: Delivery) {
        self.telling(|cell, observers| cell.tell_locked(observers, state, op, delivery));
    }

    /// Run `f` with the observers locked, marked as this cell's observers'
    /// thread (see [`assert_not_in_observer`](Self::assert_not_in_observer)).
    fn telling<R>(&self, f: impl FnOnce(&Self, &mut Observers<T>) -> R) -> R {
        let outer = NOTIFYING.with(|n| n.replace(self as *const Self as usize));
        let out = f(self, &mut self.observers.lock());
        NOTIFYING.with(|n| n.set(outer));
        out
    }

    fn tell_locked(&self, observers: &mut Observers<T>, state: &T, op: &T::Op, delivery: Delivery) {
        let id = delivery.op;
        for (_, observer) in observers.iter_mut() {
            // A faulty observer must not stop replication: the op is already
            // applied, and the repeater must go on relaying.
            let call = AssertUnwindSafe(|| {
                if delivery.stable {
                    T::notify_stable(observer, state, op, &delivery);
                } else {
                    T::notify(observer, state, op, &delivery);
                }
            });
            if let Err(panic) = std::panic::catch_unwind(call) {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                tracing::error!(object = %self.key, op = %id, "an observer panicked: {why}");
            }
        }
    }

    /// Panic with an explanation, rather than deadlock, when an observer of
    /// this object calls back into it (its copy is locked while it runs).
    pub(crate) fn assert_not_in_observer(&self, what: &str) {
        if NOTIFYING.with(|n| n.get()) == self as *const Self as usize {
            panic!(
                "{what} called from an observer of the same object ({}): the copy is locked \
                 while observers run; use the `state` argument, or spawn a task to shout",
                self.key
            );
        }
    }
}

/// The repeater's view of a cell.
pub(crate) struct CellHost<T: Replicated>(pub(crate) Arc<ObjectCell<T>>);

impl<T: Replicated> Host for CellHost<T> {
    fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError> {
        let cell = &*self.0;
        let mut replica = cell.state.write();
        let me = replica.me();
        // Logged before observers hear of it: what a peer shows, its store
        // has queued.
        let applied = deliver_frame(&mut replica, frame, |state, op, id| {
            cell.log_delivered(frame);
            cell.notify(state, op, id, me)
        })?;
        drop(replica);
        if applied != Applied::Duplicate {
            cell.bump();
        }
        Ok(applied)
    }

    fn deliver_run(&mut self, frames: &[OpFrame], results: &mut Vec<Result<Applied, HostError>>) {
        let cell = &*self.0;
        let mut replica = cell.state.write();
        let me = replica.me();
        // The observers are locked once for the run, as the replica is.
        let changed = cell.telling(|cell, observers| {
            let mut changed = false;
            for frame in frames {
                let applied = deliver_frame(&mut replica, frame, |state, op, id| {
                    cell.log_delivered(frame);
                    cell.tell_locked(observers, state, op, Delivery::new(id, me, false))
                });
                changed |= applied.as_ref().is_ok_and(|a| *a != Applied::Duplicate);
                results.push(applied);
            }
            changed
        });
        drop(replica);
        if changed {
            cell.bump();
        }
    }

    fn export(&mut self) -> Result<StateFrame, HostError> {
        export_frame(&self.0.key, &self.0.state.read())
    }

    fn admit(&mut self, node: NodeId) -> Result<Option<(NodeId, u64)>, HostError> {
        let cell = &*self.0;
        let store_err = |e: StoreError| HostError::Store {
            object: cell.key.clone(),
            reason: e.to_string(),
        };
        let admission = {
            let mut replica = cell.state.write();
            let Some(admission) = replica.admit(node) else {
                return Ok(None);
            };
            // The write-ahead rule for admission: were the new member
            // forgotten in a crash, the restarted replica would fold ops
            // on a table without it, passing ops it makes.
            cell.write_state(&mut replica).map_err(store_err)?;
            admission
        };
        if let Some(log) = &cell.log {
            // Admissions are rare: the repeater waits for this one commit,
            // with the replica unlocked so the writer can report it.
            log.store().flush_blocking().map_err(store_err)?;
        }
        Ok(Some(admission))
    }

    fn wants_admission(&self) -> bool {
        self.0.state.read().wants_admission()
    }

    fn may_evict(&self) -> bool {
        self.0.state.read().may_evict()
    }

    fn admitted_as(&mut self, origin: NodeId, clock: u64) -> bool {
        let mut replica = self.0.state.write();
        if !replica.admitted_as(origin, clock) {
            return false;
        }
        // As for an admission learned from a table (`merge_acks`): the op
        // log cannot replay re-stamped ops; the whole state goes to the
        // store, and they leave once it is committed.
        self.0.relog_state(&mut replica);
        drop(replica);
        self.0.bump();
        true
    }

    fn refresh(&mut self) -> u64 {
        let cell = &*self.0;
        let mut replica = cell.state.write();
        let me = replica.me();
        // The observers are locked once for every op folded, not per op.
        cell.telling(|cell, observers| {
            replica.refresh(|state, op, id| {
                cell.tell_locked(observers, state, op, Delivery::new(id, me, true))
            })
        });
        replica.revision()
    }

    fn digest(&self, object: &ObjectKey) -> ObjectDigest {
        digest_of(object, &self.0.state.read())
    }

    fn digest_hash(&self, _: &ObjectKey) -> u64 {
        digest_hash_of(&self.0.state.read())
    }

    fn merge_acks(&mut self, acks: &AckTable) {
        let cell = &*self.0;
        let mut replica = cell.state.write();
        let me = replica.me();
        let restamped = replica.has_restamped();
        cell.telling(|cell, observers| {
            replica.merge_acks(acks, |state, op, id| {
                cell.tell_locked(observers, state, op, Delivery::new(id, me, true))
            })
        });
        if replica.me() != me || (!restamped && replica.has_restamped()) {
            // A new restart epoch, or ops re-stamped on admission: the op
            // log cannot replay that; the whole state goes to the store
            // (re-stamped ops leave once it is committed).
            cell.relog_state(&mut replica);
            drop(replica);
            // Waiters on the admission (`Leaf::wait_until_admitted`).
            cell.bump();
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
        repair_of(
            &self.0.key,
            &self.0.state.read(),
            held,
            above,
            upto,
            span,
            budget,
        )
    }

    fn ops_in(&self, runs: &[SeqRun], budget: usize) -> Result<Vec<OpFrame>, HostError> {
        ops_in(&self.0.key, &self.0.state.read(), runs, budget)
    }

    fn rebase(&mut self, state: &StateFrame) -> Result<bool, HostError> {
        let mut replica = self.0.state.write();
        let moved = rebase_onto(&mut replica, state)?;
        if moved {
            self.0.relog_state(&mut replica);
            drop(replica);
            self.0.bump();
        }
        Ok(moved)
    }

    fn awaits_admission(&self) -> bool {
        self.0.state.read().awaits_readmission()
    }

    fn origins_of(&self, node: NodeId) -> Vec<NodeId> {
        self.0.state.read().origins_of(node)
    }

    fn evict_gone(&mut self, gone: &dyn Fn(NodeId) -> bool) -> usize {
        let mut replica = self.0.state.write();
        let evicted = replica.evict_gone(gone);
        if evicted > 0 {
            self.0.relog_state(&mut replica);
            drop(replica);
            self.0.bump();
        }
        evicted
    }

    fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError> {
        restamped_frames(&self.0.key, &mut self.0.state.write())
    }
}
