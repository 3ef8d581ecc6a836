//! The QUIC transport: quinn endpoints, mutual TLS, length-prefixed frames.
//!
//! Each connection carries one unidirectional stream per direction, framed
//! as in [`frames`](super::frames). The writer batches: every frame queued
//! while a write is in flight goes out in the next write. A frame over the
//! configured maximum closes the connection with a reason; so does a peer
//! that stops mid-frame or sends a frame that does not decode.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, SendStream, VarInt};

use crate::error::{LinkError, StartError};
use crate::proto::NodeId;
use crate::tls::{self, Identity, Trust};

use super::faults::{self, Faults};
use super::frames::{Inbound, Input, Outbox};
use super::{CloseHandle, Connection};

/// The application error code sent when Plexus closes a connection on
/// purpose (bad frame, shutdown).
const CLOSE_CODE: u32 = 1;

/// Settings of the QUIC transport. Build with [`QuicConfig::new`].
#[derive(Clone)]
pub struct QuicConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// This node's key and certificate chain.
    pub identity: Identity,
    /// Which peers to accept.
    pub trust: Trust,
    /// How often to send QUIC keep-alives on an idle connection.
    /// Default: 5 s.
    pub keep_alive: Duration,
    /// How long a silent connection lives. Default: 30 s.
    pub idle_timeout: Duration,
    /// The first delay before reconnecting a dropped link; it doubles up to
    /// `reconnect_max`, with ±50 % jitter. Default: 100 ms.
    pub reconnect_initial: Duration,
    /// The longest delay between reconnection attempts. Default: 10 s.
    pub reconnect_max: Duration,
    /// Fault injection: when set, the endpoint's UDP socket loses, delays
    /// and partitions datagrams as this handle says (see
    /// [`faults`](crate::faults)). For tests of the application under bad
    /// networks. Default: none.
    pub faults: Option<Faults>,
    /// The kernel receive and send buffer sizes asked for the UDP socket,
    /// in bytes (`None`: the system's defaults). A burst larger than the
    /// receive buffer is dropped by the kernel before QUIC sees it, and
    /// QUIC takes the drop for congestion. Linux caps the request at
    /// `net.core.rmem_max` / `wmem_max` (and then doubles it for its own
    /// bookkeeping); raise those to let it take. Default: 4 MiB.
    pub socket_buffer: Option<usize>,
}

impl fmt::Debug for QuicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicConfig")
            .field("listen", &self.listen)
            .field("node", &self.identity.node_id())
            .field("keep_alive", &self.keep_alive)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl QuicConfig {
    /// Listen on `listen` as `identity`, accepting the peers `trust` allows.
    pub fn new(listen: SocketAddr, identity: Identity, trust: Trust) -> Self {
        Self {
            listen,
            identity,
            trust,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            faults: None,
            socket_buffer: Some(4 << 20),
        }
    }

    fn transport_config(&self) -> Result<quinn::TransportConfig, StartError> {
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| StartError::Config("idle_timeout is too long".into()))?;
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(idle));
        Ok(t)
    }
}

/// A UDP socket bound to `addr`, its kernel buffers asked to be `buffer`
/// bytes each (the kernel may grant less: see
/// [`QuicConfig::socket_buffer`]).
fn udp_socket(addr: SocketAddr, buffer: Option<usize>) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(size) = buffer {
        socket.set_recv_buffer_size(size)?;
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A bound QUIC endpoint (server and client).
#[derive(Debug, Clone)]
pub(crate) struct QuicEndpoint {
    endpoint: Endpoint,
    max_frame: usize,
}

impl QuicEndpoint {
    pub(crate) fn bind(config: &QuicConfig, max_frame: usize) -> Result<Self, StartError> {
        if config.keep_alive >= config.idle_timeout {
            return Err(StartError::Config(
                "keep_alive must be shorter than idle_timeout".into(),
            ));
        }
        let tls_err = |e: tls::TlsError| StartError::Config(format!("TLS: {e}"));
        let server_tls = tls::server_config(&config.identity, &config.trust).map_err(tls_err)?;
        let client_tls = tls::client_config(&config.identity, &config.trust).map_err(tls_err)?;
        let server_crypto = QuicServerConfig::try_from(server_tls)
            .map_err(|e| StartError::Config(format!("TLS config unfit for QUIC: {e}")))?;
        let client_crypto = QuicClientConfig::try_from(client_tls)
            .map_err(|e| StartError::Config(format!("TLS config unfit for QUIC: {e}")))?;
        let transport = Arc::new(config.transport_config()?);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);
        let bind_err = |e: std::io::Error| StartError::Bind {
            addr: config.listen,
            reason: e.to_string(),
        };
        let socket = udp_socket(config.listen, config.socket_buffer).map_err(bind_err)?;
        let mut endpoint = match &config.faults {
            None => {
                let runtime = quinn::default_runtime()
                    .ok_or_else(|| StartError::Config("no async runtime for QUIC".into()))?;
                Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(server),
                    socket,
                    runtime,
                )
                .map_err(bind_err)?
            }
            Some(faults) => faults::endpoint(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                faults.clone(),
            )
            .map_err(bind_err)?,
        };
        endpoint.set_default_client_config(client);
        Ok(Self {
            endpoint,
            max_frame,
        })
    }

    pub(crate) fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.endpoint.local_addr().map_err(|e| StartError::Bind {
            addr: ([0, 0, 0, 0], 0).into(),
            reason: e.to_string(),
        })
    }

    /// Accept the next inbound connection that completes the TLS handshake.
    /// Refused handshakes are logged and skipped. `None` once closed.
    pub(crate) async fn accept(&self) -> Option<Connection> {
        loop {
            let incoming = self.endpoint.accept().await?;
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "inbound QUIC handshake refused");
                    continue;
                }
            };
            match establish(connection, false, self.max_frame).await {
                Ok(conn) => return Some(conn),
                Err(e) => tracing::warn!(%remote, error = %e, "inbound connection dropped"),
            }
        }
    }

    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<Connection, LinkError> {
        let connecting = self
            .endpoint
            .connect(addr, tls::SERVER_NAME)
            .map_err(|e| LinkError::Unreachable(format!("{addr}: {e}")))?;
        let connection = connecting.await.map_err(|e| {
            tracing::warn!(%addr, error = %e, "outbound QUIC handshake failed");
            LinkError::Handshake(format!("{addr}: {e}"))
        })?;
        establish(connection, true, self.max_frame).await
    }

    pub(crate) fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(CLOSE_CODE), b"node shut down");
    }
}

/// Open our stream, accept theirs, start the pumps.
async fn establish(
    connection: quinn::Connection,
    outbound: bool,
    max_frame: usize,
) -> Result<Connection, LinkError> {
    let peer = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| LinkError::Handshake("the peer presented no certificate".into()))
        .and_then(|chain| {
            tls::peer_node_id(&chain).map_err(|e| LinkError::Handshake(e.to_string()))
        })?;
    let send = connection
        .open_uni()
        .await
        .map_err(|e| LinkError::Handshake(format!("could not open a stream: {e}")))?;
    let out = Outbox::new();
    tokio::spawn(write_frames(connection.clone(), send, out.clone()));
    tracing::debug!(remote = %connection.remote_address(), %peer, outbound, "QUIC connection up");
    Ok(Connection {
        out,
        inbound: Inbound::new(
            Input::Quic(QuicInput::Pending(connection.clone())),
            max_frame,
        ),
        authenticated: Some(peer),
        outbound,
        close: CloseHandle::Quic(connection),
    })
}

/// The peer's stream: accepted when first read (the peer's stream appears
/// only once it has written to it, and it writes after our hello).
#[derive(Debug)]
pub(crate) enum QuicInput {
    Pending(quinn::Connection),
    Open(quinn::RecvStream),
}

impl QuicInput {
    /// Append what has arrived to `buf`, at most `max` bytes; `Ok(0)` at
    /// the end of the stream.
    pub(crate) async fn read_into(
        &mut self,
        buf: &mut bytes::BytesMut,
        max: usize,
    ) -> Result<usize, String> {
        if let QuicInput::Pending(connection) = self {
            let recv = connection.accept_uni().await.map_err(|e| e.to_string())?;
            *self = QuicInput::Open(recv);
        }
        let QuicInput::Open(recv) = self else {
            return Ok(0);
        };
        let mut n = match recv.read_chunk(max, true).await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk.bytes);
                chunk.bytes.len()
            }
            Ok(None) => return Ok(0),
            Err(e) => return Err(e.to_string()),
        };
        // Take whatever else has arrived without waiting: quinn hands out a
        // chunk per packet, and a reader that took one chunk per wake-up
        // would send the repeater a batch of a few ops each time. The end
        // of the stream, or an error, is left for the next call.
        let mut cx = Context::from_waker(Waker::noop());
        while n < max {
            let mut next = std::pin::pin!(recv.read_chunk(max - n, true));
            match next.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(Some(chunk))) => {
                    buf.extend_from_slice(&chunk.bytes);
                    n += chunk.bytes.len();
                }
                Poll::Ready(_) | Poll::Pending => break,
            }
        }
        Ok(n)
    }
}

/// Write whatever the outbox holds, one write per batch, until it closes.
async fn write_frames(connection: quinn::Connection, mut send: SendStream, out: Arc<Outbox>) {
    while let Some(batch) = out.take().await {
        if let Err(e) = send.write_all(&batch).await {
            tracing::debug!(error = %e, "write failed; connection closing");
            out.close();
            return;
        }
        out.recycle(batch);
    }
    // The node dropped the link: finish the stream and close politely.
    let _ = send.finish();
    connection.close(VarInt::from_u32(CLOSE_CODE), b"link closed");
}

/// The peer id a QUIC connection authenticated, for the hello check.
pub(crate) fn check_hello(authenticated: Option<NodeId>, claimed: NodeId) -> Result<(), LinkError> {
    match authenticated {
        Some(id) if id != claimed => Err(LinkError::Handshake(format!(
            "the peer says it is {claimed} but its certificate is {id}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux grants at most without privileges: `net.core.rmem_max`.
    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn the_socket_gets_the_receive_buffer_asked_for_up_to_the_system_cap() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let default = udp_socket(addr, None).expect("bind with default buffers");
        let default = socket2::SockRef::from(&default)
            .recv_buffer_size()
            .expect("read SO_RCVBUF");
        let asked = 4 << 20;
        let socket = udp_socket(addr, Some(asked)).expect("bind with 4 MiB buffers");
        let granted = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("read SO_RCVBUF");
        // Linux doubles what it grants, which is capped at rmem_max; never
        // less than the default.
        assert!(
            granted >= asked.min(rmem_max()).max(default),
            "granted {granted}, default {default}, rmem_max {}",
            rmem_max()
        );
    }
}
