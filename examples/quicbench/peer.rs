//! The child role: one Plexus node plus one raw quinn endpoint, driven by
//! the parent over stdin/stdout, one command a line, one reply a line
//! (`ok ...` or `err ...`). The child exits when its stdin closes, so it
//! never outlives the parent.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use plexus::tls::{load_ca_certificate, Identity, Trust, CA_CERT_FILE};
use plexus::{replicated, Delivery, Leaf, Node, PeerAddr, Replicated};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, Notify};

use crate::raw::{self, FanCount};
use crate::report::Summary;

/// How long a child waits for an op or an ack before giving up on a phase.
const PATIENCE: Duration = Duration::from_secs(60);

/// The benchmark object: every shout carries a 64-byte byte string.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "bench.Sink")]
pub(crate) struct Sink {
    /// Ops applied.
    pub(crate) ops: u64,
    /// Payload bytes applied.
    pub(crate) bytes: u64,
}

#[replicated]
impl Sink {
    /// The latency probe (ordered; one shouter, so always in order).
    #[shout]
    pub(crate) fn ping(&mut self, data: ByteBuf) {
        self.take(&data);
    }

    /// The throughput op: commutative, applied on arrival.
    #[shout(commutative)]
    pub(crate) fn blast(&mut self, data: ByteBuf) {
        self.take(&data);
    }

    /// The same op without the commutativity promise: totally ordered, so
    /// a late arrival rolls back and replays.
    #[shout]
    pub(crate) fn ordered(&mut self, data: ByteBuf) {
        self.take(&data);
    }

    fn take(&mut self, data: &[u8]) {
        self.ops += 1;
        self.bytes += data.len() as u64;
    }
}

/// The receivers' acknowledgements of pings, shouted back to everyone.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "bench.Acks")]
pub(crate) struct Acks {
    /// Acks applied.
    pub(crate) acks: u64,
}

#[replicated]
impl Acks {
    /// "I applied your ping with this seq, `one_way_ns` after it was
    /// shouted" (both instants read from the machine's monotonic clock,
    /// which every process on it shares).
    #[shout(commutative)]
    pub(crate) fn ack(&mut self, seq: u64, one_way_ns: u64) {
        let _ = (seq, one_way_ns);
        self.acks += 1;
    }
}

/// A counter an observer bumps and a task can wait on.
#[derive(Debug)]
struct Gauge {
    count: AtomicU64,
    wake_at: AtomicU64,
    notify: Notify,
}

impl Gauge {
    fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        }
    }

    fn bump(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.wake_at.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Wait until the count reaches `target`.
    async fn reach(&self, target: u64) -> anyhow::Result<()> {
        while self.get() < target {
            self.wake_at.store(target, Ordering::Relaxed);
            if self.get() >= target {
                break;
            }
            tokio::time::timeout(PATIENCE, self.notify.notified())
                .await
                .with_context(|| format!("stuck at {} of {target} ops", self.get()))?;
        }
        self.wake_at.store(u64::MAX, Ordering::Relaxed);
        Ok(())
    }
}

/// Every peer's observer of the sink: counts throughput ops; on the
/// receivers it acknowledges each ping by shouting an ack.
struct SinkCounter {
    blast: Arc<Gauge>,
    ordered: Arc<Gauge>,
    acks: Option<Leaf<Acks>>,
}

impl SinkObserver for SinkCounter {
    fn ping(&mut self, _sink: &Sink, data: &ByteBuf, delivery: &Delivery) {
        if let (false, Some(acks)) = (delivery.local, &self.acks) {
            // The ping was applied here just now: read the clock first.
            let one_way = monotonic_ns().saturating_sub(sent_at(data));
            // Shouting on *another* object from an observer is allowed; the
            // shout is done when the call returns (its future is ready).
            match now_or_never(acks.shout_ack(delivery.op.seq, one_way)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::error!(%error, "ack refused"),
                None => tracing::error!("ack shout did not complete at once"),
            }
        }
    }

    fn blast(&mut self, _sink: &Sink, _data: &ByteBuf, _delivery: &Delivery) {
        self.blast.bump();
    }

    fn ordered(&mut self, _sink: &Sink, _data: &ByteBuf, _delivery: &Delivery) {
        self.ordered.bump();
    }
}

/// The shouter's observer of the acks: hands each remote ack (the ping's
/// seq, its one-way latency to that peer) to the pinger.
struct AckListener(mpsc::UnboundedSender<(u64, u64)>);

impl AcksObserver for AckListener {
    fn ack(&mut self, _acks: &Acks, seq: &u64, one_way_ns: &u64, delivery: &Delivery) {
        if !delivery.local {
            let _ = self.0.send((*seq, *one_way_ns));
        }
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`. Unlike `Instant`, the value means the
/// same in every process on this machine (one kernel clock), so a
/// timestamp written by the shouter can be read against by a receiver.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The shout instant a ping's payload carries in its first 8 bytes.
fn sent_at(data: &[u8]) -> u64 {
    data.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The two latency figures of the ping phase.
pub(crate) struct PingSamples {
    /// Shout → applied on both receivers, one way (the later of the two).
    pub(crate) one_way: Vec<u64>,
    /// Shout → both receivers' acks applied back here.
    pub(crate) round_trip: Vec<u64>,
}

/// Poll a future once with a no-op waker.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

struct Peer {
    index: usize,
    node: Node,
    raw: quinn::Endpoint,
    fan: mpsc::UnboundedReceiver<FanCount>,
    sink: Option<Leaf<Sink>>,
    acks_rx: Option<mpsc::UnboundedReceiver<(u64, u64)>>,
    blast: Arc<Gauge>,
    ordered: Arc<Gauge>,
    payload: ByteBuf,
}

/// Run peer `index` with the identity and CA certificate the parent left
/// in `dir`, until stdin closes.
pub(crate) async fn run(index: usize, dir: &Path) -> anyhow::Result<()> {
    let identity = Identity::load(&dir.join(format!("peer{index}")))?;
    let trust = Trust::ca(load_ca_certificate(&dir.join(CA_CERT_FILE))?);
    let node = Node::builder()
        .listen(crate::LOOPBACK.parse()?)
        .identity(identity.clone())
        .trust(trust.clone())
        .start()
        .await?;
    let PeerAddr::Socket(node_addr) = node.local_addr() else {
        bail!("a QUIC node has a socket address");
    };
    let raw = raw::endpoint(&identity, &trust)?;
    let raw_addr = raw.local_addr()?;
    let fan = raw::serve(raw.clone());
    println!("ready {node_addr} {raw_addr}");
    let mut peer = Peer {
        index,
        node,
        raw,
        fan,
        sink: None,
        acks_rx: None,
        blast: Arc::new(Gauge::new()),
        ordered: Arc::new(Gauge::new()),
        payload: ByteBuf::from(crate::payload()),
    };
    let mut commands = commands();
    while let Some(line) = commands.recv().await {
        let reply = match peer.handle(line.trim()).await {
            Ok(out) => format!("ok {out}"),
            Err(error) => format!("err {error:#}"),
        };
        println!("{reply}");
    }
    peer.node.shutdown();
    peer.raw.close(quinn::VarInt::from_u32(0), b"bye");
    Ok(())
}

/// Read stdin lines on their own task; when stdin closes (the parent is
/// done, or died) exit at once, even in the middle of a command.
fn commands() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
        std::process::exit(0);
    });
    rx
}

fn arg<T: std::str::FromStr>(words: &mut std::str::SplitWhitespace<'_>) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(words.next().context("missing argument")?.parse()?)
}

impl Peer {
    async fn handle(&mut self, line: &str) -> anyhow::Result<String> {
        let mut words = line.split_whitespace();
        match words.next().unwrap_or_default() {
            "link" => {
                let addr: SocketAddr = arg(&mut words)?;
                let peer = self.node.link(addr).await?;
                Ok(peer.to_string())
            }
            "create" => {
                let sink = self.node.create("sink", Sink::default()).await?;
                let acks = self.node.create("acks", Acks::default()).await?;
                self.bind(sink, acks);
                Ok(String::new())
            }
            "open" => {
                let sink = self.node.open::<Sink>("sink").await?;
                let acks = self.node.open::<Acks>("acks").await?;
                self.bind(sink, acks);
                Ok(String::new())
            }
            "rawrtt" => {
                let warmup = arg(&mut words)?;
                let n = arg(&mut words)?;
                let servers = words
                    .map(str::parse)
                    .collect::<Result<Vec<SocketAddr>, _>>()?;
                let samples =
                    raw::round_trips(&self.raw, &servers, &self.payload, warmup, n).await?;
                Ok(Summary::of(samples).to_line())
            }
            "ping" => {
                let warmup = arg(&mut words)?;
                let n = arg(&mut words)?;
                let samples = self.ping(warmup, n).await?;
                Ok(format!(
                    "{} {}",
                    Summary::of(samples.one_way).to_line(),
                    Summary::of(samples.round_trip).to_line()
                ))
            }
            "fanwait" => {
                let count = tokio::time::timeout(PATIENCE, self.fan.recv())
                    .await
                    .context("no fan-out stream ended")?
                    .context("the raw endpoint stopped")?;
                Ok(format!(
                    "{} {} {}",
                    count.frames,
                    count.bytes,
                    count.elapsed.as_nanos()
                ))
            }
            command @ ("blast" | "ordered") => {
                let ordered = command == "ordered";
                let millis = arg(&mut words)?;
                let window = arg(&mut words)?;
                let (shouted, took) = self
                    .shout_for(ordered, Duration::from_millis(millis), window)
                    .await?;
                Ok(format!("{shouted} {}", took.as_nanos()))
            }
            "await" => {
                let gauge = match arg::<String>(&mut words)?.as_str() {
                    "blast" => &self.blast,
                    "ordered" => &self.ordered,
                    other => bail!("no gauge {other:?}"),
                };
                let total = arg(&mut words)?;
                let start = Instant::now();
                gauge.reach(total).await?;
                Ok(format!("{}", start.elapsed().as_nanos()))
            }
            "relay" => {
                let s = self.node.gossip_stats().await;
                Ok(format!(
                    "{} {} {} {}",
                    s.relay.ops_sent,
                    s.relay.duplicates,
                    s.tree.ops_grafted,
                    s.anti_entropy.ops_repaired
                ))
            }
            "stats" => {
                let stats = self.sink()?.stats();
                let sink = self.sink()?.read(Sink::clone);
                Ok(format!(
                    "{} {} {} {} {}",
                    stats.applied, stats.rollbacks, stats.replayed_ops, sink.ops, sink.bytes
                ))
            }
            other => bail!("unknown command {other:?}"),
        }
    }

    fn sink(&self) -> anyhow::Result<&Leaf<Sink>> {
        self.sink.as_ref().context("create or open the sink first")
    }

    /// Bind the observers: everyone counts; the receivers (all but peer 0)
    /// acknowledge pings; peer 0 listens to the acks.
    fn bind(&mut self, sink: Leaf<Sink>, acks: Leaf<Acks>) {
        sink.observe(SinkCounter {
            blast: self.blast.clone(),
            ordered: self.ordered.clone(),
            acks: (self.index != 0).then(|| acks.clone()),
        });
        if self.index == 0 {
            let (tx, rx) = mpsc::unbounded_channel();
            acks.observe(AckListener(tx));
            self.acks_rx = Some(rx);
        }
        self.sink = Some(sink);
    }

    /// Closed-loop pings: shout one (its payload stamped with the shout
    /// instant), wait for both receivers' acks, repeat.
    async fn ping(&mut self, warmup: usize, n: usize) -> anyhow::Result<PingSamples> {
        let sink = self.sink()?.clone();
        let acks = self.acks_rx.as_mut().context("only peer 0 pings")?;
        let mut samples = PingSamples {
            one_way: Vec::with_capacity(n),
            round_trip: Vec::with_capacity(n),
        };
        let mut payload = self.payload.clone();
        for i in 0..warmup + n {
            let start = Instant::now();
            payload[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            let id = sink.shout_ping(payload.clone()).await?;
            let (mut acked, mut one_way) = (0, 0);
            while acked < 2 {
                let (seq, to_peer) = tokio::time::timeout(PATIENCE, acks.recv())
                    .await
                    .with_context(|| format!("no ack for ping {i}"))?
                    .context("ack channel closed")?;
                if seq == id.seq {
                    acked += 1;
                    one_way = one_way.max(to_peer);
                }
            }
            let took = start.elapsed();
            if i >= warmup {
                samples.one_way.push(one_way);
                samples
                    .round_trip
                    .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            }
        }
        Ok(samples)
    }

    /// Shout as fast as possible for `duration`, never more than `window`
    /// ops ahead of the average of the other two peers as seen here (so
    /// queues stay bounded and the rate is one all three sustain).
    async fn shout_for(
        &mut self,
        ordered: bool,
        duration: Duration,
        window: u64,
    ) -> anyhow::Result<(u64, Duration)> {
        let sink = self.sink()?.clone();
        let gauge = if ordered { &self.ordered } else { &self.blast };
        let start = Instant::now();
        let mut shouted = 0u64;
        while start.elapsed() < duration {
            for _ in 0..256 {
                let data = self.payload.clone();
                if ordered {
                    sink.shout_ordered(data).await?;
                } else {
                    sink.shout_blast(data).await?;
                }
                shouted += 1;
            }
            if shouted > window {
                // Local ops count too: wait for 2 × (shouted − window) remote
                // ones, or for the end (the others may have stopped).
                let target = shouted + 2 * (shouted - window);
                let left = duration.saturating_sub(start.elapsed());
                match tokio::time::timeout(left, gauge.reach(target)).await {
                    Ok(reached) => reached?,
                    Err(_) => break,
                }
            }
            tokio::task::yield_now().await;
        }
        Ok((shouted, start.elapsed()))
    }
}
