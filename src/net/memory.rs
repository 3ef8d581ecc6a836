//! The in-memory transport: nodes in one process, connected by outboxes.
//!
//! Frames cross it encoded and length-prefixed, exactly as they would cross
//! the network, so tests over it exercise the codec and the framing too.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::frames::Outbox;

/// The address of a node on a [`MemoryHub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryAddr(pub u64);

impl fmt::Display for MemoryAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mem:{}", self.0)
    }
}

/// A switchboard for in-process nodes: every node started with
/// [`Transport::memory(&hub)`](crate::Transport::memory) listens on it and
/// can link to the others.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    next: AtomicU64,
    listeners: DashMap<MemoryAddr, mpsc::UnboundedSender<MemoryConnection>>,
}

impl fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryHub")
            .field("listeners", &self.inner.listeners.len())
            .finish()
    }
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start listening at a fresh address.
    pub(crate) fn bind(&self) -> (MemoryAddr, mpsc::UnboundedReceiver<MemoryConnection>) {
        let addr = MemoryAddr(self.inner.next.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.listeners.insert(addr, tx);
        (addr, rx)
    }

    /// Stop listening at `addr`.
    pub(crate) fn unbind(&self, addr: MemoryAddr) {
        self.inner.listeners.remove(&addr);
    }

    /// Connect to the node listening at `addr`.
    pub(crate) fn connect(&self, addr: MemoryAddr) -> Option<MemoryConnection> {
        let listener = self.inner.listeners.get(&addr)?;
        let (a, b) = (Outbox::new(), Outbox::new());
        listener
            .send(MemoryConnection {
                out: b.clone(),
                input: a.clone(),
            })
            .ok()?;
        Some(MemoryConnection { out: a, input: b })
    }
}

/// One end of an in-memory connection: our outbox, and the peer's, which
/// we read.
#[derive(Debug)]
pub(crate) struct MemoryConnection {
    pub(crate) out: Arc<Outbox>,
    pub(crate) input: Arc<Outbox>,
}
