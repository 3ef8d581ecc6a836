//! The raw quinn baseline: the same TLS setup as Plexus (mutual TLS with the
//! cluster CA, ALPN `plexus/1`), the same 4-byte length prefix, no Plexus.
//!
//! Every peer runs a raw endpoint beside its node. On it, a bi stream is an
//! echo service (one frame in, the same frame out) and a uni stream is a
//! fan-out sink that counts the frames it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use plexus::tls::{self, Identity, Trust};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

/// The largest frame the echo service accepts.
const MAX_ECHO_FRAME: usize = 64 * 1024;

/// What a fan-out sink counted on one uni stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FanCount {
    /// Complete frames received.
    pub(crate) frames: u64,
    /// Bytes received, prefixes included.
    pub(crate) bytes: u64,
    /// From the first byte to the end of the stream.
    pub(crate) elapsed: Duration,
}

/// A quinn endpoint on 127.0.0.1 that serves and connects with `identity`.
pub(crate) fn endpoint(identity: &Identity, trust: &Trust) -> anyhow::Result<Endpoint> {
    let server_tls = QuicServerConfig::try_from(tls::server_config(identity, trust)?)?;
    let client_tls = QuicClientConfig::try_from(tls::client_config(identity, trust)?)?;
    let server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
    let mut endpoint = Endpoint::server(server, crate::LOOPBACK.parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(client_tls)));
    Ok(endpoint)
}

/// Serve echo (bi) and fan-out sink (uni) streams on `endpoint`; every
/// finished uni stream's count arrives on the returned channel.
pub(crate) fn serve(endpoint: Endpoint) -> mpsc::UnboundedReceiver<FanCount> {
    let (counts, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                loop {
                    tokio::select! {
                        bi = conn.accept_bi() => match bi {
                            Ok((send, recv)) => { tokio::spawn(echo(send, recv)); }
                            Err(_) => return,
                        },
                        uni = conn.accept_uni() => match uni {
                            Ok(recv) => { tokio::spawn(count_frames(recv, counts.clone())); }
                            Err(_) => return,
                        },
                    }
                }
            });
        }
    });
    rx
}

/// Echo length-prefixed frames back, read the way Plexus reads them
/// (`read_exact` of the prefix, then of the body), written in one call.
async fn echo(mut send: SendStream, mut recv: RecvStream) {
    let mut frame = Vec::with_capacity(4 + 64);
    loop {
        let mut len = [0u8; 4];
        if recv.read_exact(&mut len).await.is_err() {
            return;
        }
        let body = u32::from_be_bytes(len) as usize;
        if body > MAX_ECHO_FRAME {
            return;
        }
        frame.clear();
        frame.extend_from_slice(&len);
        frame.resize(4 + body, 0);
        if recv.read_exact(&mut frame[4..]).await.is_err() {
            return;
        }
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// Count the length-prefixed frames of one uni stream, chunk by chunk
/// (no copy, no allocation per frame), until the sender finishes it.
async fn count_frames(mut recv: RecvStream, counts: mpsc::UnboundedSender<FanCount>) {
    let mut count = FanCount {
        frames: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut header = [0u8; 4];
    let mut have = 0;
    let mut body_left = 0usize;
    let mut first = None;
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
        first.get_or_insert_with(Instant::now);
        let data = &chunk.bytes[..];
        count.bytes += data.len() as u64;
        let mut i = 0;
        while i < data.len() {
            if body_left > 0 {
                let take = body_left.min(data.len() - i);
                i += take;
                body_left -= take;
                if body_left == 0 {
                    count.frames += 1;
                }
                continue;
            }
            header[have] = data[i];
            have += 1;
            i += 1;
            if have == 4 {
                have = 0;
                body_left = u32::from_be_bytes(header) as usize;
                if body_left == 0 {
                    count.frames += 1;
                }
            }
        }
    }
    count.elapsed = first.map(|t| t.elapsed()).unwrap_or_default();
    let _ = counts.send(count);
}

/// One 64-byte message with its length prefix.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a benchmark payload is small");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// Closed-loop round trips: send one frame to every server, wait for every
/// echo, repeat. Returns the `n` samples after `warmup`, in nanoseconds.
pub(crate) async fn round_trips(
    endpoint: &Endpoint,
    servers: &[SocketAddr],
    payload: &[u8],
    warmup: usize,
    n: usize,
) -> anyhow::Result<Vec<u64>> {
    let mut streams = Vec::new();
    for server in servers {
        let conn = endpoint
            .connect(*server, tls::SERVER_NAME)?
            .await
            .with_context(|| format!("raw connect to {server}"))?;
        let (send, recv) = conn.open_bi().await?;
        streams.push((conn, send, recv));
    }
    let out = frame(payload);
    let mut back = vec![0u8; out.len()];
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let start = Instant::now();
        for (_, send, _) in &mut streams {
            send.write_all(&out).await?;
        }
        for (_, _, recv) in &mut streams {
            recv.read_exact(&mut back).await?;
        }
        let took = start.elapsed();
        if i >= warmup {
            samples.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    for (conn, _, _) in streams {
        conn.close(VarInt::from_u32(0), b"done");
    }
    Ok(samples)
}

/// The sender's side of a fan-out run: its connections stay open until the
/// sinks have reported, so no data is cut off by a close.
#[derive(Debug)]
pub(crate) struct FanOut {
    connections: Vec<quinn::Connection>,
    /// Frames written to each receiver's stream.
    pub(crate) written: Vec<u64>,
    /// When the first write started (the connections were up).
    pub(crate) started: Instant,
}

impl FanOut {
    /// Close the connections.
    pub(crate) fn close(self) {
        for conn in self.connections {
            conn.close(VarInt::from_u32(0), b"done");
        }
    }
}

/// Fan out for `duration`: one uni stream per receiver, each written by
/// its own task with `batch` frames per `write_all` (1: one write per
/// frame). The streams are finished at the end.
pub(crate) async fn fan_out(
    endpoint: &Endpoint,
    receivers: &[SocketAddr],
    payload: &[u8],
    batch: usize,
    duration: Duration,
) -> anyhow::Result<FanOut> {
    let mut connections = Vec::new();
    let mut streams = Vec::new();
    for receiver in receivers {
        let conn = endpoint
            .connect(*receiver, tls::SERVER_NAME)?
            .await
            .with_context(|| format!("raw connect to {receiver}"))?;
        streams.push(conn.open_uni().await?);
        connections.push(conn);
    }
    let one = frame(payload);
    let buffer: Arc<[u8]> = one.repeat(batch).into();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut send in streams {
        let (buffer, stop) = (buffer.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                send.write_all(&buffer).await?;
                written += batch as u64;
            }
            send.finish()?;
            anyhow::Ok(written)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await??);
    }
    Ok(FanOut {
        connections,
        written,
        started,
    })
}
