//! The store's benchmark: shouts/s at each durability level beside a
//! memory-only node measured in the same run, disk use over a long run
//! with compaction, and restart times.
//!
//! ```text
//! cargo run --release --example storebench            # the README's figures
//! cargo run --release --example storebench -- --short # a quick pass (CI)
//! ```
//!
//! Every shout carries a 64-byte argument. Shouters are concurrent tasks
//! (`--shouters`), so group commit has something to group; a single
//! shouter awaiting each shout gets one op per commit at any level.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use plexus::{
    replicated, Durability, Leaf, MemoryHub, Node, NodeConfig, Replicated, StoreConfig, Transport,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A counter of notes: the state stays small however many ops it takes.
#[derive(Replicated, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[plexus(tag = "bench.Notes")]
pub struct Notes {
    /// Notes added.
    pub count: u64,
    /// The sum of their first bytes.
    pub sum: u64,
}

#[replicated]
impl Notes {
    /// Add a note.
    #[shout]
    pub fn add(&mut self, note: ByteBuf) {
        self.count += 1;
        self.sum += u64::from(note.first().copied().unwrap_or(0));
    }
}

#[derive(Parser, Debug)]
#[command(about = "Plexus store benchmark")]
struct Args {
    /// A quick pass with small counts (CI).
    #[arg(long)]
    short: bool,
    /// Shouts per durability level.
    #[arg(long, default_value_t = 200_000)]
    shouts: u64,
    /// Shouts under `Durability::Sync` (one sync to disk each).
    #[arg(long, default_value_t = 2_000)]
    sync_shouts: u64,
    /// Concurrent shouting tasks.
    #[arg(long, default_value_t = 64)]
    shouters: u64,
    /// Shouts of the long run (disk use, restart with everything folded).
    #[arg(long, default_value_t = 1_000_000)]
    long: u64,
    /// Shouter counts for the group-commit scaling line.
    #[arg(long, value_delimiter = ',', default_value = "1,64,512,2048")]
    scaling: Vec<u64>,
    /// Tentative ops for the second restart figure.
    #[arg(long, default_value_t = 10_000)]
    tentative: u64,
}

fn config(durability: Durability, snapshot_every: u64) -> NodeConfig {
    NodeConfig {
        store: StoreConfig {
            durability,
            snapshot_every,
            ..StoreConfig::default()
        },
        ..NodeConfig::default()
    }
}

async fn start(hub: &MemoryHub, dir: Option<&Path>, config: NodeConfig) -> anyhow::Result<Node> {
    let mut builder = Node::builder()
        .transport(Transport::memory(hub))
        .config(config);
    if let Some(dir) = dir {
        builder = builder.data_dir(dir);
    }
    Ok(builder.start().await?)
}

/// Shout `total` notes from `shouters` tasks; returns shouts/s.
async fn shout_all(leaf: &Leaf<Notes>, total: u64, shouters: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = total / shouters;
    for s in 0..shouters {
        let leaf = leaf.clone();
        let n = per + u64::from(s < total % shouters);
        tasks.spawn(async move {
            let note = ByteBuf::from(vec![(s % 251) as u8; 64]);
            for _ in 0..n {
                leaf.shout_add(note.clone()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.short {
        args.shouts = 5_000;
        args.sync_shouts = 200;
        args.long = 20_000;
        args.tentative = 1_000;
        args.scaling = vec![1, 256];
    }
    let hub = MemoryHub::new();
    let root = tempfile::tempdir().context("a temp dir")?;

    println!("shouts/s, 64-byte argument, {} shouters:", args.shouters);
    let memory = {
        let node = start(&hub, None, NodeConfig::default()).await?;
        let leaf: Leaf<Notes> = node.create("notes", Notes::default()).await?;
        let rate = shout_all(&leaf, args.shouts, args.shouters).await?;
        node.shutdown();
        rate
    };
    println!("  memory only (no data dir)      {memory:>12.0}/s  1.00x");
    for (name, durability, total) in [
        ("Durability::None", Durability::None, args.shouts),
        (
            "Durability::Group (default)",
            Durability::Group,
            args.shouts,
        ),
        ("Durability::Sync", Durability::Sync, args.sync_shouts),
    ] {
        let dir = root.path().join(name);
        let node = start(&hub, Some(&dir), config(durability, 10_000)).await?;
        let leaf: Leaf<Notes> = node.create("notes", Notes::default()).await?;
        let rate = shout_all(&leaf, total, args.shouters).await?;
        node.flush().await?;
        ensure!(leaf.read(|n| n.count) == total, "{name}: shouts missing");
        node.shutdown();
        println!(
            "  {name:<30} {rate:>12.0}/s  {:.2}x of memory",
            rate / memory
        );
    }

    // Group commit takes what waits: the more shouters in flight, the more
    // ops share one sync to disk.
    println!("group commit, shouts/s by shouters in flight:");
    for &shouters in &args.scaling {
        let dir = root.path().join(format!("scaling-{shouters}"));
        let node = start(&hub, Some(&dir), config(Durability::Group, 10_000)).await?;
        let leaf: Leaf<Notes> = node.create("notes", Notes::default()).await?;
        let total = if shouters == 1 {
            args.sync_shouts
        } else {
            args.shouts
        };
        let rate = shout_all(&leaf, total, shouters).await?;
        node.shutdown();
        println!(
            "  {shouters:>5} shouters {rate:>12.0}/s  {:.2}x of memory",
            rate / memory
        );
    }

    // The long run: everything folds (a lone replica), compaction every
    // 10,000 ops keeps the file to the state and the latest ops.
    println!(
        "long run: {} shouts, Group, compaction every 10,000 ops",
        args.long
    );
    let dir = root.path().join("long");
    let node = start(&hub, Some(&dir), config(Durability::Group, 10_000)).await?;
    let leaf: Leaf<Notes> = node.create("notes", Notes::default()).await?;
    let step = (args.long / 5).max(1);
    let mut done = 0;
    let mut largest = 0;
    let started = Instant::now();
    while done < args.long {
        let n = step.min(args.long - done);
        shout_all(&leaf, n, args.shouters).await?;
        done += n;
        node.flush().await?;
        let size = node.store_size();
        largest = largest.max(size);
        println!("  after {done:>9} shouts: store {}", mib(size));
    }
    println!(
        "  {:.0} shouts/s over the run; largest file {}",
        args.long as f64 / started.elapsed().as_secs_f64(),
        mib(largest)
    );
    node.shutdown();
    drop((leaf, node));
    let (node, _, took) = restart(&hub, &dir, 10_000, args.long).await?;
    println!(
        "restart with {} ops folded: {:.1} ms (start + resume)",
        args.long,
        ms(took)
    );
    node.shutdown();

    // Tentative ops: a second member that never acknowledges holds every
    // op in the log.
    let dir = root.path().join("tentative");
    let amy = start(&hub, Some(&dir), config(Durability::Group, u64::MAX)).await?;
    let bob = start(&hub, None, NodeConfig::default()).await?;
    amy.link(bob.local_addr()).await?;
    let leaf: Leaf<Notes> = amy.create("notes", Notes::default()).await?;
    let _bobs: Leaf<Notes> = bob.open("notes").await?;
    bob.shutdown();
    shout_all(&leaf, args.tentative, args.shouters).await?;
    amy.flush().await?;
    let tentative = leaf.tentative_len();
    amy.shutdown();
    drop((leaf, amy));
    let (amy, leaf, took) = restart(&hub, &dir, u64::MAX, args.tentative).await?;
    println!(
        "restart with {} tentative ops (replayed from the log): {:.1} ms (start + resume)",
        tentative.max(leaf.tentative_len()),
        ms(took)
    );
    amy.shutdown();
    Ok(())
}

/// Start a node on `dir` and resume its notes, timed; they must hold
/// `count` notes.
async fn restart(
    hub: &MemoryHub,
    dir: &Path,
    snapshot_every: u64,
    count: u64,
) -> anyhow::Result<(Node, Leaf<Notes>, Duration)> {
    let started = Instant::now();
    let node = start(hub, Some(dir), config(Durability::Group, snapshot_every)).await?;
    let leaf: Leaf<Notes> = node.create("notes", Notes::default()).await?;
    let took = started.elapsed();
    ensure!(leaf.read(|n| n.count) == count, "the restart lost shouts");
    Ok((node, leaf, took))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
