//! Links: the ones the application makes ([`Node::link`]), kept with
//! backoff; and, with an overlay, the ones HyParView asks for (dialed on
//! demand, closed when no longer needed) and the join through seeds.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ractor::Actor;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Node, NodeInner};
use crate::error::LinkError;
use crate::net::actor::{DialKey, LinkId, RepeaterMsg};
use crate::net::connection::{ConnectionActor, ConnectionArgs};
use crate::net::{handshake, Connection, PeerAddr, PeerHello};
use crate::proto::membership::{MembershipEvent, NodeState};
use crate::proto::NodeId;

impl Node {
    /// Link this node's repeater to the node at `addr`: from now on ops flow
    /// both ways over the link. Links can form any graph; each op still
    /// reaches each node once.
    ///
    /// Over QUIC the link is kept: when its connection drops, this node
    /// reconnects with exponential backoff and jitter until it succeeds or
    /// the node shuts down. The first attempt's outcome is returned.
    pub async fn link(&self, addr: impl Into<PeerAddr>) -> Result<NodeId, LinkError> {
        if self.is_stopped() {
            return Err(LinkError::Stopped);
        }
        let addr = addr.into();
        if addr == self.inner.addr {
            return Err(LinkError::SelfLink);
        }
        let conn = self.connect(&addr).await?;
        let (peer, closed) = self.attach(conn, true).await?;
        if let Some(backoff) = self.inner.backoff {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(keep_link(weak, addr, Some(peer), closed, backoff));
        }
        Ok(peer)
    }

    /// Keep trying to link to `addr` in the background (with the
    /// transport's backoff) until it succeeds, then keep the link as
    /// [`link`](Self::link) does. For a peer that may not be up yet. Does
    /// nothing on a transport whose links cannot drop (in-memory).
    pub fn keep_linking(&self, addr: impl Into<PeerAddr>) {
        let Some(backoff) = self.inner.backoff else {
            return;
        };
        let (gone, closed) = oneshot::channel();
        drop(gone);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(keep_link(weak, addr.into(), None, closed, backoff));
    }

    /// Open a connection to `addr`, giving up after the handshake timeout
    /// (a dead address would otherwise cost the transport's idle timeout).
    async fn connect(&self, addr: &PeerAddr) -> Result<Connection, LinkError> {
        let limit = self.inner.config.handshake_timeout;
        tokio::time::timeout(limit, self.inner.linker.connect(addr))
            .await
            .map_err(|_| LinkError::HandshakeTimeout(limit))?
    }

    /// Dial `addr` once for the overlay (the link is not kept: the overlay
    /// decides when it goes).
    async fn dial_once(
        &self,
        addr: &PeerAddr,
    ) -> Result<(NodeId, oneshot::Receiver<()>), LinkError> {
        if self.is_stopped() {
            return Err(LinkError::Stopped);
        }
        if *addr == self.inner.addr {
            return Err(LinkError::SelfLink);
        }
        let conn = self.connect(addr).await?;
        self.attach(conn, false).await
    }

    /// Handshake on `conn`, register the link with the repeater, and pump
    /// its inbound frames until it closes (the returned receiver fires then).
    pub(super) async fn attach(
        &self,
        mut conn: Connection,
        pinned: bool,
    ) -> Result<(NodeId, oneshot::Receiver<()>), LinkError> {
        let max_frame = self.inner.config.max_frame;
        let handshake_timeout = self.inner.config.handshake_timeout;
        let advertised = Some(self.inner.addr.to_string());
        // The high half names this run of the node (see `DialKey`).
        let nonce = (u64::from(self.inner.boot) << 32) | u64::from(rand::random::<u32>());
        let hello = handshake(
            &mut conn,
            self.inner.id,
            advertised,
            nonce,
            pinned,
            max_frame,
            handshake_timeout,
        );
        let PeerHello {
            id: peer,
            addr,
            nonce: peer_nonce,
            pinned: peer_pinned,
        } = match hello.await {
            Ok(hello) => hello,
            Err(e) => {
                conn.close.close(&e.to_string());
                return Err(e);
            }
        };
        let dial = if conn.outbound {
            DialKey {
                dialer: self.inner.id,
                nonce,
            }
        } else {
            DialKey {
                dialer: peer,
                nonce: peer_nonce,
            }
        };
        let link = LinkId(self.inner.next_link.fetch_add(1, Ordering::Relaxed));
        let actor = self.inner.actor.clone();
        let Connection {
            out,
            mut inbound,
            close,
            ..
        } = conn;
        let writer = out.clone();
        let received = inbound.received();
        let (kept_tx, kept_rx) = oneshot::channel();
        actor
            .cast(RepeaterMsg::LinkUp {
                link,
                peer,
                addr,
                dial,
                out,
                received,
                // Made by either end's application: a neighbour at both.
                pinned: pinned || peer_pinned,
                kept: kept_tx,
            })
            .map_err(|_| LinkError::Stopped)?;
        if !kept_rx.await.map_err(|_| LinkError::Stopped)? {
            // The pair already has the connection both ends prefer: this
            // one goes, and the caller is linked through that one.
            // The peer drops it too, once it has read our hello: closing
            // at once could cut the hello off and fail the peer's link
            // call. Close when the peer does, or after the handshake
            // timeout.
            inbound.close();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(handshake_timeout, close.closed()).await;
                writer.close();
                close.close("duplicate connection: keeping the other one");
            });
            let (gone, closed) = oneshot::channel();
            drop(gone);
            return Ok((peer, closed));
        }
        let (closed_tx, closed_rx) = oneshot::channel();
        let args = ConnectionArgs {
            link,
            peer,
            inbound,
            close,
            repeater: actor.clone(),
            closed: closed_tx,
        };
        // The repeater supervises the connection: stopping the node stops it.
        if let Err(e) = Actor::spawn_linked(None, ConnectionActor, args, actor.get_cell()).await {
            let _ = actor.cast(RepeaterMsg::LinkDown { link });
            return Err(LinkError::Handshake(format!(
                "could not start the connection actor: {e}"
            )));
        }
        Ok((peer, closed_rx))
    }
}

/// Re-establish a link whenever it drops, with exponential backoff and
/// ±50 % jitter, until the node is gone or stopped. While the node is
/// linked to the same peer by another connection (the pair kept the one the
/// other side dialed), it waits for that peer to go down instead of dialing.
async fn keep_link(
    node: Weak<NodeInner>,
    addr: PeerAddr,
    mut peer: Option<NodeId>,
    mut closed: oneshot::Receiver<()>,
    (initial, max): (Duration, Duration),
) {
    loop {
        let _ = (&mut closed).await;
        if let Some(peer) = peer {
            let Some(inner) = node.upgrade() else { return };
            let handle = Node { inner };
            let mut events = handle.events();
            if handle.links().await.iter().any(|l| l.peer == peer) {
                drop(handle);
                loop {
                    match events.recv().await {
                        Ok(MembershipEvent::PeerDown(p)) if p == peer => break,
                        Ok(MembershipEvent::State(NodeState::Destroyed)) => return,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
        let mut delay = initial;
        loop {
            let jitter = rand::random_range(0.5..1.5);
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            let Some(inner) = node.upgrade() else { return };
            let node = Node { inner };
            if node.is_stopped() {
                return;
            }
            let attempt = match node.connect(&addr).await {
                Ok(conn) => node.attach(conn, true).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok((linked, next)) => {
                    tracing::info!(%addr, peer = %linked, "link re-established");
                    peer = Some(linked);
                    closed = next;
                    break;
                }
                Err(error) => {
                    tracing::debug!(%addr, %error, ?delay, "reconnect failed");
                    delay = (delay * 2).min(max);
                }
            }
        }
    }
}

/// Carry out the overlay's dials: each request `(peer, addr)` is dialed in
/// its own task; a failure, or a different node answering at `addr`, is
/// reported to the repeater so HyParView replaces the peer.
pub(super) async fn run_dials(
    node: Weak<NodeInner>,
    mut requests: mpsc::UnboundedReceiver<(NodeId, String)>,
) {
    while let Some((peer, addr)) = requests.recv().await {
        let Some(inner) = node.upgrade() else { return };
        let node = Node { inner };
        tokio::spawn(async move {
            let outcome = match addr.parse::<PeerAddr>() {
                Ok(at) => node.dial_once(&at).await.map(|(linked, _)| linked),
                Err(e) => Err(e),
            };
            let failed = match outcome {
                Ok(linked) if linked == peer => false,
                Ok(linked) => {
                    tracing::warn!(%peer, %addr, %linked, "another node answered at the peer's address");
                    true
                }
                Err(error) => {
                    tracing::debug!(%peer, %addr, %error, "overlay dial failed");
                    true
                }
            };
            if failed {
                let _ = node.inner.actor.cast(RepeaterMsg::DialFailed { peer });
            }
        });
    }
}

/// With an overlay: dial every seed at once and join through each that
/// answers (any single live seed is enough); retry with backoff until one
/// does, and again whenever the node has lost every link. On a transport
/// whose links cannot drop, one pass.
pub(super) async fn join_through_seeds(
    node: Weak<NodeInner>,
    seeds: Vec<PeerAddr>,
    backoff: Option<(Duration, Duration)>,
) {
    let (initial, max) = backoff.unwrap_or((Duration::ZERO, Duration::ZERO));
    loop {
        let mut delay = initial;
        loop {
            let mut attempts = tokio::task::JoinSet::new();
            for seed in &seeds {
                let Some(inner) = node.upgrade() else { return };
                let handle = Node { inner };
                if handle.is_stopped() {
                    return;
                }
                let seed = seed.clone();
                attempts.spawn(async move {
                    match handle.dial_once(&seed).await {
                        Ok((peer, _closed)) => {
                            tracing::info!(%seed, %peer, "joining the overlay");
                            let join = RepeaterMsg::Join {
                                peer,
                                addr: seed.to_string(),
                            };
                            handle.inner.actor.cast(join).is_ok()
                        }
                        Err(error) => {
                            tracing::info!(%seed, %error, "seed not reachable");
                            false
                        }
                    }
                });
            }
            let mut joined = false;
            while let Some(done) = attempts.join_next().await {
                joined |= done.unwrap_or(false);
            }
            if joined || backoff.is_none() {
                break;
            }
            tokio::time::sleep(delay.mul_f64(rand::random_range(0.5..1.5))).await;
            delay = (delay * 2).min(max);
        }
        if backoff.is_none() {
            return;
        }
        // Joined: wait until every link is gone, then join again.
        let mut state = {
            let Some(inner) = node.upgrade() else { return };
            inner.membership.state.subscribe()
        };
        let lost = state
            .wait_for(|s| matches!(s, NodeState::Disconnected | NodeState::Destroyed))
            .await
            .is_ok_and(|s| *s == NodeState::Disconnected);
        if !lost {
            return;
        }
    }
}
