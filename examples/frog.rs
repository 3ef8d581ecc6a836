//! The thread's scene: Alec, Amy and Angus each hold a copy of Kermit.
//!
//! Amy's copy "plays" a croak, Angus's prints a line, Alec's counts. All
//! three croak at once; every copy applies every croak, in one order, and
//! the three end identical — or the example exits non-zero.
//!
//! ```text
//! cargo run --example frog                 # 5 croaks each
//! cargo run --example frog -- --croaks 50  # more
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use plexus::{replicated, Delivery, Leaf, MemoryHub, Node, Replicated, Transport};
use serde::{Deserialize, Serialize};

/// The replicated frog.
#[derive(Replicated, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[plexus(tag = "demo.Frog")]
pub struct Frog {
    /// How many times it croaked.
    pub croaks: u32,
    /// Who made it croak last (in the agreed order).
    pub last: Option<String>,
    /// Everyone who made it croak, in the agreed order.
    pub chorus: Vec<String>,
}

#[replicated]
impl Frog {
    /// Croak: runs on every copy.
    #[shout]
    pub fn croak(&mut self, by: String) {
        self.croaks += 1;
        self.chorus.push(by.clone());
        self.last = Some(by);
    }

    /// A local method: never leaves this peer.
    pub fn summary(&self) -> String {
        format!(
            "{} croaks, last by {}",
            self.croaks,
            self.last.as_deref().unwrap_or("nobody")
        )
    }
}

/// Amy's frog plays a sound.
struct AudioFrog;

impl FrogObserver for AudioFrog {
    fn croak(&mut self, _frog: &Frog, by: &String, _delivery: &Delivery) {
        println!("[amy]   ♪ RIBBIT (thanks to {by})");
    }
}

/// Angus's frog prints a line.
struct PrintingFrog;

impl FrogObserver for PrintingFrog {
    fn croak(&mut self, frog: &Frog, by: &String, delivery: &Delivery) {
        let whose = if delivery.local { "my" } else { "a remote" };
        println!(
            "[angus] kermit: *croak* ({whose} croak by {by}, #{})",
            frog.croaks
        );
    }
}

/// Alec's frog counts.
struct CountingFrog(Arc<AtomicU32>);

impl FrogObserver for CountingFrog {
    fn croak(&mut self, _frog: &Frog, _by: &String, _delivery: &Delivery) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn croaks_from_args() -> anyhow::Result<u32> {
    let mut args = std::env::args().skip(1);
    let mut croaks = 5;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--croaks" => {
                croaks = args.next().context("--croaks needs a number")?.parse()?;
            }
            "--help" | "-h" => {
                println!("usage: frog [--croaks N]   (croaks per peer, default 5)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(croaks)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let croaks = croaks_from_args()?;
    let hub = MemoryHub::new();
    let start = || Node::builder().transport(Transport::memory(&hub)).start();
    let (alec, amy, angus) = (start().await?, start().await?, start().await?);
    // Alec repeats for both: Amy - Alec - Angus.
    alec.link(amy.local_addr()).await?;
    alec.link(angus.local_addr()).await?;

    let amys: Leaf<Frog> = amy.create("kermit", Frog::default()).await?;
    let alecs: Leaf<Frog> = alec.open("kermit").await?;
    let anguss: Leaf<Frog> = angus.open("kermit").await?;

    amys.observe(AudioFrog);
    anguss.observe(PrintingFrog);
    let counted = Arc::new(AtomicU32::new(0));
    alecs.observe(CountingFrog(counted.clone()));

    // Everyone croaks at once.
    let peers = [
        ("alec", alecs.clone()),
        ("amy", amys.clone()),
        ("angus", anguss.clone()),
    ];
    let mut tasks = Vec::new();
    for (name, leaf) in peers.clone() {
        tasks.push(tokio::spawn(async move {
            for _ in 0..croaks {
                leaf.shout_croak(name.to_owned()).await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }

    let total = croaks * 3;
    for (name, leaf) in &peers {
        tokio::time::timeout(
            Duration::from_secs(10),
            leaf.wait_until_admitted(|f| f.croaks == total),
        )
        .await
        .with_context(|| format!("{name}'s kermit did not hear all {total} croaks"))?;
    }

    println!();
    let states: Vec<Frog> = peers
        .iter()
        .map(|(_, leaf)| leaf.read(Frog::clone))
        .collect();
    for ((name, leaf), state) in peers.iter().zip(&states) {
        println!(
            "{name:>5}: {} | order: {}",
            leaf.read(Frog::summary),
            state.chorus.join(" ")
        );
    }
    println!(
        "alec's counter heard {} croaks",
        counted.load(Ordering::Relaxed)
    );
    if states.windows(2).any(|w| w[0] != w[1]) {
        bail!("the three copies of kermit differ");
    }
    println!("all three copies of kermit are identical");
    Ok(())
}
