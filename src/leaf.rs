//! [`Leaf`]: a handle on this node's copy of a replicated object.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::RwLockReadGuard;

use crate::error::ShoutError;
use crate::node::Node;
use crate::object::{ObjectCell, ObserverId};
use crate::proto::message::{encode_into, EncodeError, OpFrame};
use crate::proto::replica::{Replica, ReplicaStats};
use crate::proto::{ObjectKey, OpId, Replicated};

/// This node's copy of a replicated object (the thread's *leaf*).
///
/// Local methods run on the local copy through [`read`](Leaf::read), with no
/// round trip. Shouts (`shout_<method>(..)`, from the type's generated
/// `<Type>LeafExt` trait) are applied here and relayed to every other copy.
/// Cloning a leaf is cheap; all clones share one copy.
pub struct Leaf<T: Replicated> {
    node: Node,
    cell: Arc<ObjectCell<T>>,
}

impl<T: Replicated> Clone for Leaf<T> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            cell: self.cell.clone(),
        }
    }
}

impl<T: Replicated> fmt::Debug for Leaf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("object", &self.cell.key)
            .finish_non_exhaustive()
    }
}

impl<T: Replicated> Leaf<T> {
    pub(crate) fn new(node: Node, cell: Arc<ObjectCell<T>>) -> Self {
        Self { node, cell }
    }

    /// The object's key (type tag and name).
    pub fn key(&self) -> &ObjectKey {
        &self.cell.key
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.cell.key.name
    }

    /// The node this leaf lives on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Read the local copy: every op this node has seen, applied in order.
    ///
    /// The copy is locked while `f` runs, and while observers run: do not
    /// shout on the same object from inside `f`. Observers receive the state
    /// as an argument; calling `read` (or shouting on the object) from inside
    /// one panics with an explanation instead of deadlocking.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(self.replica("Leaf::read").state())
    }

    /// Read the stable snapshot: only ops that can never be rolled back.
    pub fn read_stable<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(self.replica("Leaf::read_stable").stable_state())
    }

    /// The replica's counters (ops applied, rollbacks, replays, ...).
    pub fn stats(&self) -> ReplicaStats {
        self.replica("Leaf::stats").stats()
    }

    /// How many ops are in the tentative log (not yet stable).
    pub fn tentative_len(&self) -> usize {
        self.replica("Leaf::tentative_len").tentative_len()
    }

    /// Whether ops made here wait for a member of the object's replica set
    /// to admit this node: a node's first ops on an object it did not
    /// create are applied here at once but sent only once admitted (one
    /// round trip), re-stamped with a later Lamport time. Until then this
    /// copy may order them differently from the others.
    pub fn awaits_admission(&self) -> bool {
        self.replica("Leaf::awaits_admission").wants_admission()
    }

    fn replica(&self, what: &str) -> RwLockReadGuard<'_, Replica<T>> {
        self.cell.assert_not_in_observer(what);
        self.cell.state.read()
    }

    /// Shout `op`: apply it here, then relay it to every other copy.
    ///
    /// The generated `shout_<method>(..)` methods call this. The future
    /// resolves with the op's id once the op is accepted locally: applied
    /// here, and on a node with a store (see
    /// [`NodeBuilder::data_dir`](crate::NodeBuilder::data_dir)) written to
    /// its log as [`StoreConfig::durability`](crate::StoreConfig) says (by
    /// default: on disk). It fails, and nothing is applied anywhere, if the
    /// op does not fit in a frame, the node was shut down, or its store
    /// cannot be written.
    pub fn shout(
        &self,
        op: T::Op,
    ) -> impl Future<Output = Result<OpId, ShoutError>> + Send + 'static {
        let result = self.shout_now(op);
        async move {
            let (id, commit) = result?;
            if let Some(commit) = commit {
                commit.await.map_err(|_| ShoutError::Stopped)??;
            }
            Ok(id)
        }
    }

    #[allow(clippy::type_complexity)]
    fn shout_now(&self, op: T::Op) -> Result<(OpId, Option<Commit>), ShoutError> {
        self.cell.assert_not_in_observer("Leaf::shout");
        let payload = encode_payload(&op)?;
        let key = &self.cell.key;
        let len = payload.len() + key.tag.len() + key.name.len() + OpFrame::MAX_OVERHEAD;
        let max = self.node.config().max_frame;
        if len > max {
            return Err(ShoutError::TooLarge { len, max });
        }
        if self.node.is_stopped() {
            return Err(ShoutError::Stopped);
        }
        if let Some(log) = &self.cell.log {
            log.store().check()?;
        }
        self.cell.shout(op, |id, relay| {
            let frame = OpFrame {
                object: key.clone(),
                id,
                payload,
            };
            if !relay {
                // Provisional until a member admits this node (it only
                // read the object so far, or its origin was evicted).
                self.node.request_admission(key.clone());
            }
            match &self.cell.log {
                None => {
                    if relay {
                        self.node.relay_local(frame);
                    }
                    Ok((id, None))
                }
                Some(log) => {
                    // Relayed by the store's writer once on disk.
                    let (waiter, commit) = if log.store().must_wait() {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        (Some(tx), Some(rx))
                    } else {
                        (None, None)
                    };
                    log.op(frame, relay, waiter)?;
                    Ok((id, commit))
                }
            }
        })
    }

    /// Bind a boxed observer to this object on this node: it hears of every
    /// op applied here from now on, once per op. The generated
    /// `<Type>LeafExt::observe` boxes for you.
    pub fn observe_boxed(&self, observer: Box<T::Observer>) -> ObserverId {
        self.cell.observe(observer)
    }

    /// Unbind an observer; `false` if it was not bound.
    pub fn unobserve(&self, id: ObserverId) -> bool {
        self.cell.unobserve(id)
    }

    /// Wait until `pred` holds for the local copy; it is checked now and
    /// after every op applied here.
    pub async fn wait_until(&self, mut pred: impl FnMut(&T) -> bool) {
        let mut changes = self.cell.subscribe();
        loop {
            if self.read(&mut pred) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Wait until `pred` holds for the local copy and no op made here
    /// awaits admission (see [`awaits_admission`](Self::awaits_admission)):
    /// the copy then orders every op it holds as every other copy holding
    /// the same ops does.
    pub async fn wait_until_admitted(&self, mut pred: impl FnMut(&T) -> bool) {
        let mut changes = self.cell.subscribe();
        loop {
            if !self.awaits_admission() && self.read(&mut pred) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A shout's wait for its op's commit.
type Commit = tokio::sync::oneshot::Receiver<Result<(), crate::StoreError>>;

/// How much room a fresh payload block has; a payload that does not fit
/// in what is left of the block starts a new one.
const PAYLOAD_BLOCK: usize = 64 * 1024;

thread_local! {
    /// Per shouting thread: a scratch buffer to encode into, and the block
    /// that encoded payloads are cut from.
    static PAYLOADS: RefCell<(Vec<u8>, BytesMut)> = RefCell::new((Vec::new(), BytesMut::new()));
}

/// Encode an op's payload. Payloads are cut from a shared block, so a shout
/// costs no allocation of its own (a `Bytes` made from a `Vec` allocates its
/// shared header on the first clone, and the frame is cloned on its way);
/// a block is freed when the last frame cut from it is.
fn encode_payload<O: serde::Serialize>(op: &O) -> Result<Bytes, EncodeError> {
    PAYLOADS.with_borrow_mut(|(scratch, block)| {
        scratch.clear();
        encode_into(op, scratch, "op")?;
        if block.capacity() - block.len() < scratch.len() {
            *block = BytesMut::with_capacity(PAYLOAD_BLOCK.max(scratch.len()));
        }
        block.extend_from_slice(scratch);
        if scratch.capacity() > PAYLOAD_BLOCK {
            // One huge op does not pin its size on the thread.
            *scratch = Vec::new();
        }
        Ok(block.split().freeze())
    })
}
