//! The store's writer thread: group commit.
//!
//! Items arrive in the order objects applied them. The writer takes every
//! item waiting (at most [`StoreConfig::max_batch`](super::StoreConfig),
//! one op under [`Durability::Sync`]) into one write transaction and
//! commits it with a sync to disk; items queued meanwhile make the next
//! batch. After a commit it tells each object how many of its items are
//! now durable, hands the local ops to the repeater, and wakes the
//! shouters.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::records::{encode_op, NAMES, OPS, PEERS, STATES};
use super::{Durability, Shared, StoreError};
use crate::proto::message::OpFrame;
use crate::proto::{NodeId, ObjectKey};

/// An object whose items the writer commits.
pub(crate) trait Logged: Send + Sync {
    /// The first `n` of this object's ops and states not yet reported are
    /// committed.
    fn committed(&self, n: usize);
}

/// A shouter waiting for its op's commit.
pub(crate) type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// What the writer is asked to do.
pub(crate) enum Item {
    /// Report commits of `object` to `cell`.
    Register { object: u64, cell: Weak<dyn Logged> },
    /// Log an op applied to `object`, at log position `pos`.
    Op {
        object: u64,
        pos: u64,
        frame: OpFrame,
        /// A local op, to relay once committed.
        relay: bool,
        waiter: Option<Waiter>,
    },
    /// The whole state of `object` after every op logged up to `pos`:
    /// replaces the ops it covers.
    State {
        object: u64,
        key: ObjectKey,
        pos: u64,
        bytes: Vec<u8>,
    },
    /// The peers known now, replacing those saved.
    Peers(Vec<(String, NodeId)>),
    /// Answer once everything before is committed.
    Flush(Waiter),
    /// The same, for a thread that blocks.
    FlushBlocking(std::sync::mpsc::Sender<Result<(), StoreError>>),
}

impl Item {
    fn is_logged(&self) -> bool {
        matches!(self, Item::Op { .. } | Item::State { .. })
    }
}

/// The writer's loop; returns once every sender is gone and the queue is
/// drained.
pub(super) fn run(shared: Arc<Shared>, queue: Receiver<Item>) {
    let mut cells: HashMap<u64, Weak<dyn Logged>> = HashMap::new();
    let mut buf = Vec::new();
    let max = shared.config.max_batch.max(1);
    let sync = shared.config.durability == Durability::Sync;
    let mut pending: Option<Item> = None;
    loop {
        let first = match pending.take() {
            Some(item) => item,
            None => match queue.recv() {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        let mut ops = usize::from(first.is_logged());
        let mut batch = vec![first];
        while batch.len() < max {
            let Ok(item) = queue.try_recv() else {
                break;
            };
            if sync && ops >= 1 && item.is_logged() {
                // Sync: one op or state per commit.
                pending = Some(item);
                break;
            }
            ops += usize::from(item.is_logged());
            batch.push(item);
        }
        let result = if shared.failed.get().is_some() {
            Err(shared.failed.get().cloned().unwrap_or(StoreError::Closed))
        } else {
            commit(&shared, &batch, &mut buf)
        };
        shared.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        if let Err(error) = &result {
            if shared.failed.set(error.clone()).is_ok() {
                tracing::error!(%error, "the store cannot be written; no more ops are acknowledged");
            }
        }
        finish(&shared, batch, &result, &mut cells);
    }
}

/// After a commit (or its failure): report to the objects, relay, wake.
fn finish(
    shared: &Shared,
    batch: Vec<Item>,
    result: &Result<(), StoreError>,
    cells: &mut HashMap<u64, Weak<dyn Logged>>,
) {
    let mut counts: Vec<(u64, usize)> = Vec::new();
    let mut relays = Vec::new();
    let mut waiters = Vec::new();
    let mut blocked = Vec::new();
    for item in batch {
        match item {
            Item::Register { object, cell } => {
                cells.insert(object, cell);
            }
            Item::Op {
                object,
                frame,
                relay,
                waiter,
                ..
            } => {
                count(&mut counts, object);
                if relay {
                    relays.push(frame);
                }
                waiters.extend(waiter);
            }
            Item::State { object, .. } => count(&mut counts, object),
            Item::Peers(_) => {}
            Item::Flush(waiter) => waiters.push(waiter),
            Item::FlushBlocking(waiter) => blocked.push(waiter),
        }
    }
    if result.is_ok() {
        for (object, n) in counts {
            match cells.get(&object).map(Weak::upgrade) {
                Some(Some(cell)) => cell.committed(n),
                Some(None) => {
                    cells.remove(&object);
                }
                None => {}
            }
        }
        if !relays.is_empty() {
            if let Some(relay) = shared.relay.get() {
                relay(relays);
            }
        }
    }
    for waiter in waiters {
        let _ = waiter.send(result.clone());
    }
    for waiter in blocked {
        let _ = waiter.send(result.clone());
    }
}

fn count(counts: &mut Vec<(u64, usize)>, object: u64) {
    match counts.iter_mut().find(|(o, _)| *o == object) {
        Some((_, n)) => *n += 1,
        None => counts.push((object, 1)),
    }
}

/// Write `batch` in one transaction and commit it, synced to disk.
fn commit(shared: &Shared, batch: &[Item], buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let failed = |e: redb::Error| StoreError::Write {
        path: shared.path.clone(),
        reason: e.to_string(),
    };
    let txn = shared.db()?.begin_write().map_err(|e| failed(e.into()))?;
    write_items(&txn, batch, buf).map_err(failed)?;
    txn.commit().map_err(|e| failed(e.into()))
}

fn write_items(
    txn: &redb::WriteTransaction,
    batch: &[Item],
    buf: &mut Vec<u8>,
) -> Result<(), redb::Error> {
    let mut ops = txn.open_table(OPS)?;
    for item in batch {
        match item {
            Item::Op {
                object, pos, frame, ..
            } => {
                encode_op(&frame.id, &frame.payload, buf);
                ops.insert((*object, *pos), buf.as_slice())?;
            }
            Item::State {
                object,
                key,
                pos,
                bytes,
            } => {
                txn.open_table(NAMES)?
                    .insert((&*key.tag, &*key.name), *object)?;
                txn.open_table(STATES)?.insert(*object, bytes.as_slice())?;
                ops.retain_in((*object, 0)..=(*object, *pos), |_, _| false)?;
            }
            Item::Peers(peers) => {
                let mut table = txn.open_table(PEERS)?;
                table.retain(|_, _| false)?;
                for (addr, id) in peers {
                    table.insert(addr.as_str(), id.as_bytes().as_slice())?;
                }
            }
            Item::Register { .. } | Item::Flush(_) | Item::FlushBlocking(_) => {}
        }
    }
    Ok(())
}
