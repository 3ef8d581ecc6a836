//! The node's side of its store: opening it at start, resuming objects
//! from it, handing committed local ops to the repeater, and saving the
//! peers it knows.

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::{Node, NodeInner};
use crate::object::{CellLog, ObjectCell};
use crate::proto::host::restore_replica;
use crate::proto::membership::PeerInfo;
use crate::proto::replica::Replica;
use crate::proto::{NodeId, ObjectKey, Replicated};
use crate::store::{Item, Store, StoreError};

/// A cell for `key`: resumed from the store when it holds the object
/// (`fresh` is then false), else from `make`.
pub(super) fn cell_for<T: Replicated>(
    store: Option<&Store>,
    me: NodeId,
    key: &ObjectKey,
    make: impl FnOnce() -> Replica<T>,
) -> Result<(Arc<ObjectCell<T>>, bool), StoreError> {
    let Some(store) = store else {
        return Ok((ObjectCell::new(key.clone(), make()), true));
    };
    match restore::<T>(store, me, key)? {
        Some((replica, log)) => Ok((ObjectCell::with_log(key.clone(), replica, Some(log)), false)),
        None => {
            let log = CellLog::new(store.clone(), store.allocate(), 0);
            Ok((ObjectCell::with_log(key.clone(), make(), Some(log)), true))
        }
    }
}

/// The cell of `key` resumed from the store, which must hold it.
pub(super) fn resumed<T: Replicated>(
    store: Option<&Store>,
    me: NodeId,
    key: &ObjectKey,
) -> Result<Arc<ObjectCell<T>>, StoreError> {
    let Some(store) = store else {
        return Err(StoreError::Closed);
    };
    match restore::<T>(store, me, key)? {
        Some((replica, log)) => Ok(ObjectCell::with_log(key.clone(), replica, Some(log))),
        None => Err(StoreError::Corrupt {
            path: store.path().to_path_buf(),
            what: format!("object {key} went missing while it was being resumed"),
        }),
    }
}

/// Whether the store holds `key`.
pub(super) fn stored(store: Option<&Store>, key: &ObjectKey) -> Result<bool, StoreError> {
    match store {
        Some(store) => store.has(key),
        None => Ok(false),
    }
}

/// Rebuild `key`'s replica from the store: its last whole state, then
/// every op logged after it, applied in the order they were logged.
fn restore<T: Replicated>(
    store: &Store,
    me: NodeId,
    key: &ObjectKey,
) -> Result<Option<(Replica<T>, CellLog)>, StoreError> {
    let Some(stored) = store.load(key)? else {
        return Ok(None);
    };
    let corrupt = |what: String| StoreError::Corrupt {
        path: store.path().to_path_buf(),
        what,
    };
    let started = std::time::Instant::now();
    let mut skipped = 0;
    // An op refused now is refused as it would be from a peer: one the
    // state's evictions or frontier made void since it was logged.
    let replica = restore_replica::<T>(
        me,
        &stored.state.frame,
        stored.state.provisional.as_deref(),
        &stored.ops,
        |_| skipped += 1,
    )
    .map_err(|e| {
        corrupt(format!(
            "{key} does not decode as {}: {e}",
            std::any::type_name::<T>()
        ))
    })?;
    tracing::info!(
        object = %key,
        ops = stored.ops.len(),
        skipped,
        tentative = replica.tentative_len(),
        took = ?started.elapsed(),
        "resumed from the store"
    );
    let log = CellLog::new(store.clone(), stored.object, stored.last_pos);
    Ok(Some((replica, log)))
}

/// Hand the ops the store committed to the repeater, in order.
pub(super) fn relay_committed(store: &Store, node: Weak<NodeInner>) {
    store.set_relay(Box::new(move |frames| {
        let Some(inner) = node.upgrade() else {
            return;
        };
        let node = Node { inner };
        for frame in frames {
            node.relay_local(frame);
        }
    }));
}

/// The known peers with an address, sorted.
fn with_addrs(view: &[PeerInfo]) -> Vec<(String, NodeId)> {
    let mut peers: Vec<(String, NodeId)> = view
        .iter()
        .filter_map(|p| p.addr.clone().map(|a| (a, p.id)))
        .collect();
    peers.sort();
    peers
}

/// Queue the peers known now (at shutdown), unless there are none.
pub(super) fn save_peers_now(store: &Store, view: &[PeerInfo]) {
    let peers = with_addrs(view);
    if !peers.is_empty() {
        let _ = store.push(Item::Peers(peers));
    }
}

/// Save the known peers whenever they change (their addresses, for a
/// restart without seeds).
pub(super) async fn save_peers(store: Store, mut view: watch::Receiver<Vec<PeerInfo>>) {
    let mut last: Vec<(String, NodeId)> = Vec::new();
    while view.changed().await.is_ok() {
        let peers = with_addrs(&view.borrow_and_update());
        if peers != last && !peers.is_empty() {
            if store.push(Item::Peers(peers.clone())).is_err() {
                return;
            }
            last = peers;
        }
    }
}
