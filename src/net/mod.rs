//! The driver: the repeater actor and the transports under it.
//!
//! The driver is thin: it turns transport input into calls on the sans-IO
//! [`RepeaterNode`](crate::proto::node::RepeaterNode) and its output events
//! into frames, timers and replies. It decides no protocol behaviour.

pub(crate) mod actor;
pub(crate) mod connection;
pub mod faults;
pub(crate) mod frames;
pub(crate) mod memory;
pub(crate) mod quic;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{LinkError, StartError};
use crate::proto::message::Message;
use crate::proto::NodeId;
use frames::{Inbound, Input, Outbox};
use memory::{MemoryAddr, MemoryConnection, MemoryHub};
pub use quic::QuicConfig;
use quic::QuicEndpoint;

/// How a node reaches its peers.
///
/// * [`Transport::quic`]: QUIC with mutual TLS, for real peers.
/// * [`Transport::memory`]: nodes in one process (tests, examples).
#[derive(Clone, Debug)]
pub struct Transport {
    kind: TransportKind,
}

#[derive(Clone, Debug)]
enum TransportKind {
    Memory(MemoryHub),
    Quic(Box<QuicConfig>),
}

impl Transport {
    /// The in-memory transport over `hub`.
    pub fn memory(hub: &MemoryHub) -> Self {
        Self {
            kind: TransportKind::Memory(hub.clone()),
        }
    }

    /// QUIC with mutual TLS (see [`QuicConfig`]).
    pub fn quic(config: QuicConfig) -> Self {
        Self {
            kind: TransportKind::Quic(Box::new(config)),
        }
    }

    /// The identity this transport authenticates as, if it has one.
    pub(crate) fn node_id(&self) -> Option<NodeId> {
        match &self.kind {
            TransportKind::Memory(_) => None,
            TransportKind::Quic(c) => Some(c.identity.node_id()),
        }
    }

    pub(crate) fn bind(&self, max_frame: usize) -> Result<Bound, StartError> {
        match &self.kind {
            TransportKind::Memory(hub) => {
                let (addr, rx) = hub.bind();
                Ok(Bound {
                    addr: PeerAddr::Memory(addr),
                    listener: Listener::Memory(rx, max_frame),
                    link: Linker::Memory(hub.clone(), max_frame),
                })
            }
            TransportKind::Quic(config) => {
                let endpoint = QuicEndpoint::bind(config, max_frame)?;
                let addr = PeerAddr::Socket(endpoint.local_addr()?);
                Ok(Bound {
                    addr,
                    listener: Listener::Quic(endpoint.clone()),
                    link: Linker::Quic(endpoint),
                })
            }
        }
    }

    /// The reconnection backoff of this transport: `(initial, max)`, or
    /// `None` when links are not re-established (in-memory links cannot
    /// drop by themselves).
    pub(crate) fn backoff(&self) -> Option<(Duration, Duration)> {
        match &self.kind {
            TransportKind::Memory(_) => None,
            TransportKind::Quic(c) => Some((c.reconnect_initial, c.reconnect_max)),
        }
    }
}

/// A transport bound to its local address.
pub(crate) struct Bound {
    pub(crate) addr: PeerAddr,
    pub(crate) listener: Listener,
    pub(crate) link: Linker,
}

/// Makes outbound connections.
#[derive(Clone, Debug)]
pub(crate) enum Linker {
    Memory(MemoryHub, usize),
    Quic(QuicEndpoint),
}

impl Linker {
    pub(crate) async fn connect(&self, addr: &PeerAddr) -> Result<Connection, LinkError> {
        match (self, addr) {
            (Linker::Memory(hub, max_frame), PeerAddr::Memory(a)) => hub
                .connect(*a)
                .map(|c| Connection::memory(c, true, *max_frame))
                .ok_or_else(|| LinkError::Unreachable(addr.to_string())),
            (Linker::Quic(endpoint), PeerAddr::Socket(a)) => endpoint.connect(*a).await,
            _ => Err(LinkError::Unreachable(format!(
                "{addr}: not an address of this transport"
            ))),
        }
    }

    /// Stop accepting and close every connection.
    pub(crate) fn close(&self, addr: &PeerAddr) {
        match (self, addr) {
            (Linker::Memory(hub, _), PeerAddr::Memory(a)) => hub.unbind(*a),
            (Linker::Quic(endpoint), _) => endpoint.close(),
            _ => {}
        }
    }
}

/// The address of a node, as given to [`Node::link`](crate::Node::link).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A node on a [`MemoryHub`].
    Memory(MemoryAddr),
    /// A node reached over QUIC.
    Socket(SocketAddr),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Memory(a) => a.fmt(f),
            PeerAddr::Socket(a) => a.fmt(f),
        }
    }
}

impl std::str::FromStr for PeerAddr {
    type Err = crate::error::LinkError;

    /// Parses what [`Display`](fmt::Display) writes: `mem:<n>` for a node
    /// on a [`MemoryHub`], a socket address (`127.0.0.1:4000`) otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(n) = s.strip_prefix("mem:") {
            return n
                .parse()
                .map(|n| PeerAddr::Memory(MemoryAddr(n)))
                .map_err(|_| crate::error::LinkError::Unreachable(format!("{s}: not an address")));
        }
        s.parse()
            .map(PeerAddr::Socket)
            .map_err(|_| crate::error::LinkError::Unreachable(format!("{s}: not an address")))
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Socket(a)
    }
}

impl From<MemoryAddr> for PeerAddr {
    fn from(a: MemoryAddr) -> Self {
        PeerAddr::Memory(a)
    }
}

/// Accepts inbound connections.
pub(crate) enum Listener {
    Memory(mpsc::UnboundedReceiver<MemoryConnection>, usize),
    Quic(QuicEndpoint),
}

impl Listener {
    pub(crate) async fn accept(&mut self) -> Option<Connection> {
        match self {
            Listener::Memory(rx, max_frame) => rx
                .recv()
                .await
                .map(|c| Connection::memory(c, false, *max_frame)),
            Listener::Quic(endpoint) => endpoint.accept().await,
        }
    }
}

/// An established connection: frames out, frames in, and who the transport
/// authenticated at the other end (if it authenticates).
#[derive(Debug)]
pub(crate) struct Connection {
    /// Frames queued here are written to the peer.
    pub(crate) out: Arc<Outbox>,
    /// Frames from the peer.
    pub(crate) inbound: Inbound,
    pub(crate) authenticated: Option<NodeId>,
    /// Whether this node dialed the connection.
    pub(crate) outbound: bool,
    pub(crate) close: CloseHandle,
}

impl Connection {
    fn memory(c: MemoryConnection, outbound: bool, max_frame: usize) -> Self {
        Self {
            out: c.out,
            inbound: Inbound::new(Input::Memory(c.input), max_frame),
            authenticated: None,
            outbound,
            close: CloseHandle::Memory,
        }
    }
}

/// Closes a connection with a reason the peer sees.
#[derive(Debug, Clone)]
pub(crate) enum CloseHandle {
    /// In-memory links close when their channels drop.
    Memory,
    Quic(quinn::Connection),
}

impl CloseHandle {
    pub(crate) fn close(&self, reason: &str) {
        if let CloseHandle::Quic(c) = self {
            c.close(quinn::VarInt::from_u32(1), reason.as_bytes());
        }
    }

    /// Resolves when the connection is closed (never, for in-memory links:
    /// their readers see the channel end instead).
    pub(crate) async fn closed(&self) {
        match self {
            CloseHandle::Memory => std::future::pending().await,
            CloseHandle::Quic(c) => {
                c.closed().await;
            }
        }
    }
}

/// What a peer said in its hello.
#[derive(Debug)]
pub(crate) struct PeerHello {
    pub(crate) id: NodeId,
    pub(crate) addr: Option<String>,
    pub(crate) nonce: u64,
    /// Whether the peer's application made this link.
    pub(crate) pinned: bool,
}

/// Exchange hellos: send ours (with the address we listen on and this
/// connection's nonce), wait for theirs.
pub(crate) async fn handshake(
    conn: &mut Connection,
    me: NodeId,
    addr: Option<String>,
    nonce: u64,
    pinned: bool,
    max_frame: usize,
    timeout: Duration,
) -> Result<PeerHello, LinkError> {
    let hello = Message::Hello {
        node: me,
        addr,
        nonce,
        pinned,
    }
    .encode(max_frame)
    .map_err(|e| LinkError::Handshake(e.to_string()))?;
    if !conn.out.push(&hello) {
        return Err(LinkError::Handshake("connection closed".into()));
    }
    let first = tokio::time::timeout(timeout, conn.inbound.next())
        .await
        .map_err(|_| LinkError::HandshakeTimeout(timeout))?
        .map_err(|e| LinkError::Handshake(e.to_string()))?
        .ok_or_else(|| LinkError::Handshake("connection closed before hello".into()))?;
    match first {
        Message::Hello { node, .. } if node == me => Err(LinkError::SelfLink),
        Message::Hello {
            node,
            addr,
            nonce,
            pinned,
        } => {
            quic::check_hello(conn.authenticated, node)?;
            Ok(PeerHello {
                id: node,
                addr,
                nonce,
                pinned,
            })
        }
        other => Err(LinkError::Handshake(format!(
            "expected hello, got {other:?}"
        ))),
    }
}
