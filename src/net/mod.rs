//! The driver: the repeater actor and the transports under it.
//!
//! The driver is thin: it turns transport input into calls on the sans-IO
//! [`RepeaterNode`](crate::proto::node::RepeaterNode) and its output events
//! into frames, timers and replies. It decides no protocol behaviour.

pub(crate) mod actor;
pub(crate) mod memory;

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::LinkError;
use crate::proto::message::Message;
use crate::proto::NodeId;
use memory::{MemoryAddr, MemoryConnection, MemoryHub};

/// How a node reaches its peers.
///
/// `Transport::memory(&hub)` connects nodes in one process (tests,
/// examples, simulations of a deployment). The QUIC transport arrives in a
/// later release behind this same seam.
#[derive(Clone, Debug)]
pub struct Transport {
    kind: TransportKind,
}

#[derive(Clone, Debug)]
enum TransportKind {
    Memory(MemoryHub),
}

impl Transport {
    /// The in-memory transport over `hub`.
    pub fn memory(hub: &MemoryHub) -> Self {
        Self {
            kind: TransportKind::Memory(hub.clone()),
        }
    }

    pub(crate) fn bind(&self) -> (PeerAddr, Listener) {
        match &self.kind {
            TransportKind::Memory(hub) => {
                let (addr, rx) = hub.bind();
                (PeerAddr::Memory(addr), Listener::Memory(rx))
            }
        }
    }

    pub(crate) fn unbind(&self, addr: &PeerAddr) {
        match (&self.kind, addr) {
            (TransportKind::Memory(hub), PeerAddr::Memory(a)) => hub.unbind(*a),
        }
    }

    pub(crate) fn connect(&self, addr: &PeerAddr) -> Result<Connection, LinkError> {
        match (&self.kind, addr) {
            (TransportKind::Memory(hub), PeerAddr::Memory(a)) => hub
                .connect(*a)
                .ok_or_else(|| LinkError::Unreachable(addr.to_string())),
        }
    }
}

/// The address of a node, as given to [`Node::link`](crate::Node::link).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A node on a [`MemoryHub`].
    Memory(MemoryAddr),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Memory(a) => a.fmt(f),
        }
    }
}

impl From<MemoryAddr> for PeerAddr {
    fn from(a: MemoryAddr) -> Self {
        PeerAddr::Memory(a)
    }
}

/// Accepts inbound connections.
pub(crate) enum Listener {
    Memory(mpsc::UnboundedReceiver<MemoryConnection>),
}

impl Listener {
    pub(crate) async fn accept(&mut self) -> Option<Connection> {
        match self {
            Listener::Memory(rx) => rx.recv().await,
        }
    }
}

/// An established connection (before or after the handshake).
pub(crate) type Connection = MemoryConnection;

/// Exchange hellos: send ours, wait for theirs. Returns the peer's id.
pub(crate) async fn handshake(
    conn: &mut Connection,
    me: NodeId,
    max_frame: usize,
    timeout: Duration,
) -> Result<NodeId, LinkError> {
    let hello = Message::Hello { node: me }
        .encode(max_frame)
        .map_err(|e| LinkError::Handshake(e.to_string()))?;
    conn.tx
        .send(hello)
        .map_err(|_| LinkError::Handshake("connection closed".into()))?;
    let frame = tokio::time::timeout(timeout, conn.rx.recv())
        .await
        .map_err(|_| LinkError::HandshakeTimeout(timeout))?
        .ok_or_else(|| LinkError::Handshake("connection closed before hello".into()))?;
    match Message::decode(&frame, max_frame) {
        Ok(Message::Hello { node }) if node == me => Err(LinkError::SelfLink),
        Ok(Message::Hello { node }) => Ok(node),
        Ok(other) => Err(LinkError::Handshake(format!(
            "expected hello, got {other:?}"
        ))),
        Err(e) => Err(LinkError::Handshake(e.to_string())),
    }
}
