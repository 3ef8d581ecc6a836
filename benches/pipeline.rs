//! The whole op path of a node without the network: three nodes in one
//! process on the in-memory transport, linked in a triangle, every one
//! shouting a commutative op with a 64-byte argument, on one thread.
//!
//! ```text
//! cargo bench --bench pipeline            # 3 × 200,000 ops, three rounds
//! cargo bench --bench pipeline -- --quick # 3 × 20,000 ops, one round (CI)
//! ```
//!
//! The in-memory transport reads a peer's outbox directly, so an op takes
//! every step it takes over QUIC (shout, the repeater actor, the outbox
//! and its short frames, the link's reader and decoder, delivery, the
//! tree's relay and announcements, anti-entropy digests, the stable fold)
//! except quinn and the kernel. On one thread, the figure is the CPU time
//! of Plexus's own code per op applied on all three, with no scheduling
//! across cores or processes in it: the number to watch when the per-op
//! path changes (quicbench's figures move by ±10% between runs on a
//! shared machine; this one by a few percent). It prints figures and
//! asserts nothing about time.

// A bench target's `main` needs no docs of its helpers.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus::{replicated, Delivery, Leaf, MemoryHub, Node, PeerAddr, Replicated, Transport};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::Notify;

/// Ops shouted ahead of the average of what the others' ops arrived here,
/// as quicbench's window.
const WINDOW: u64 = 1024;

/// How long to wait for the nodes to apply everything (a hang guard).
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "bench.PipelineSink")]
struct Sink {
    ops: u64,
    bytes: u64,
}

#[replicated]
impl Sink {
    /// The op: commutative, applied on arrival.
    #[shout(commutative)]
    fn blast(&mut self, data: ByteBuf) {
        self.ops += 1;
        self.bytes += data.len() as u64;
    }
}

/// Ops applied at one node, and a wake-up for whoever waits on the count.
#[derive(Default)]
struct Gauge {
    applied: AtomicU64,
    changed: Notify,
}

impl Gauge {
    async fn reach(&self, target: u64) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let changed = self.changed.notified();
            if self.applied.load(Ordering::Relaxed) >= target {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!(
                    "stuck at {} of {target} ops",
                    self.applied.load(Ordering::Relaxed)
                ));
            }
        }
    }
}

struct Counter(Arc<Gauge>);

impl SinkObserver for Counter {
    fn blast(&mut self, _sink: &Sink, _data: &ByteBuf, _delivery: &Delivery) {
        self.0.applied.fetch_add(1, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }
}

/// CPU time of this process (every thread).
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or_default(),
        u32::try_from(t.tv_nsec).unwrap_or_default(),
    )
}

/// Shout `ops` blasts from `leaf`, never more than [`WINDOW`] ahead of the
/// average of the other two nodes' ops seen here.
async fn shout(leaf: Leaf<Sink>, gauge: Arc<Gauge>, ops: u64) -> Result<(), String> {
    let payload = ByteBuf::from((0..64u8).collect::<Vec<u8>>());
    let mut shouted = 0;
    while shouted < ops {
        for _ in 0..256.min(ops - shouted) {
            leaf.shout_blast(payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            shouted += 1;
        }
        if shouted > WINDOW {
            // Local ops count too: wait for 2 × (shouted − window) remote ones.
            gauge.reach(shouted + 2 * (shouted - WINDOW)).await?;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

struct Round {
    wall: Duration,
    cpu: Duration,
    ops: u64,
}

async fn round(per_node: u64) -> Result<Round, String> {
    let hub = MemoryHub::new();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let mut config = plexus::NodeConfig::default();
        if let Some(ms) = std::env::var("AE_MS").ok().and_then(|v| v.parse().ok()) {
            config.anti_entropy.interval = Duration::from_millis(ms);
        }
        let node = Node::builder()
            .config(config)
            .transport(Transport::memory(&hub))
            .start()
            .await
            .map_err(|e| e.to_string())?;
        nodes.push(node);
    }
    let addr = |n: &Node| -> PeerAddr { n.local_addr() };
    for (from, to) in [(1, 0), (2, 0), (2, 1)] {
        nodes[from]
            .link(addr(&nodes[to]))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut leaves = vec![nodes[0]
        .create("sink", Sink::default())
        .await
        .map_err(|e| e.to_string())?];
    for node in &nodes[1..] {
        leaves.push(node.open::<Sink>("sink").await.map_err(|e| e.to_string())?);
    }
    let gauges: Vec<Arc<Gauge>> = (0..3).map(|_| Arc::new(Gauge::default())).collect();
    for (leaf, gauge) in leaves.iter().zip(&gauges) {
        leaf.observe(Counter(gauge.clone()));
    }
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let mut shouters = tokio::task::JoinSet::new();
    for (leaf, gauge) in leaves.iter().zip(&gauges) {
        shouters.spawn_local(shout(leaf.clone(), gauge.clone(), per_node));
    }
    while let Some(done) = shouters.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    for gauge in &gauges {
        gauge.reach(3 * per_node).await?;
    }
    let round = Round {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu_start,
        ops: 3 * per_node,
    };
    for node in &nodes {
        node.shutdown();
    }
    Ok(round)
}

fn main() -> Result<(), String> {
    // `cargo bench` passes `--bench`; `--quick` is ours.
    let quick = std::env::args().any(|a| a == "--quick");
    let (per_node, rounds) = if quick { (20_000, 1) } else { (200_000, 3) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    println!(
        "pipeline: 3 nodes in one process (in-memory transport, triangle), one thread, \
         {per_node} commutative shouts of 64 bytes from each"
    );
    for _ in 0..rounds {
        let r = local.block_on(&runtime, round(per_node))?;
        let ops = r.ops as f64;
        println!(
            "  {:.0} k ops/s applied on all 3, CPU {:.2} µs per op ({:.2} s wall, {:.2} s CPU)",
            ops / r.wall.as_secs_f64() / 1e3,
            r.cpu.as_secs_f64() * 1e6 / ops,
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64()
        );
    }
    Ok(())
}
