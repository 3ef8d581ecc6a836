//! The experiments `plexus lab` ships: each is ordinary application code
//! on the public API, the way a user writes one.

use std::time::Duration;

use plexus::lab::{ExperimentResult, Experiments, LabContext};
use plexus::{replicated, Delivery, Leaf, Replicated};
use serde::{Deserialize, Serialize};

/// The experiments, by name.
pub(crate) fn all() -> Experiments {
    Experiments::new()
        .add(
            "frog",
            "every peer croaks at one shared frog; each hears every croak",
            frog,
        )
        .add(
            "shoutbox",
            "every peer shouts lines into one shared box; each reads them all",
            shoutbox,
        )
        .add(
            "counter-race",
            "every peer adds to one counter at once; the sum, then its stable fold, agree",
            counter_race,
        )
        .add(
            "partition-drill",
            "the peers split in two halves that shout apart, then heal and converge",
            partition_drill,
        )
}

/// Reports `count` of the leaf against `goal` each time it changes, until
/// it reaches the goal.
async fn track<T: Replicated>(
    ctx: &LabContext,
    leaf: &Leaf<T>,
    name: &str,
    goal: u64,
    count: impl Fn(&T) -> u64,
) {
    loop {
        let now = leaf.read(&count);
        ctx.report_target(name, now, goal);
        if now >= goal {
            return;
        }
        leaf.wait_until(|t| count(t) != now).await;
    }
}

// ---------------------------------------------------------------- frog

/// The lab's frog.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "lab.Frog")]
pub(crate) struct Frog {
    /// Croaks so far.
    pub(crate) croaks: u64,
    /// Who croaked last, in the agreed order.
    pub(crate) last: Option<u32>,
}

#[replicated]
impl Frog {
    /// Croak: runs on every copy.
    #[shout]
    pub(crate) fn croak(&mut self, by: u32) {
        self.croaks += 1;
        self.last = Some(by);
    }
}

/// Each peer's own reaction: a line in its log.
struct Ribbit(u32);

impl FrogObserver for Ribbit {
    fn croak(&mut self, frog: &Frog, by: &u32, delivery: &Delivery) {
        let whose = if delivery.local { "my own" } else { "a" };
        println!(
            "peer {}: RIBBIT ({whose} croak by peer {by}, #{})",
            self.0, frog.croaks
        );
    }
}

async fn frog(ctx: LabContext) -> ExperimentResult {
    let kermit: Leaf<Frog> = ctx.object("kermit", Frog::default).await?;
    kermit.observe(Ribbit(ctx.peer()));
    let croak = async {
        for _ in 0..ctx.messages() {
            ctx.pace().await;
            kermit.shout_croak(ctx.peer()).await?;
        }
        Ok::<_, plexus::ShoutError>(())
    };
    let heard = track(&ctx, &kermit, "croaks heard", ctx.total_messages(), |f| {
        f.croaks
    });
    let (croaked, ()) = tokio::join!(croak, heard);
    croaked?;
    ctx.wait_for_experiment_end().await;
    Ok(())
}

// ---------------------------------------------------------------- shoutbox

/// A box of shouted lines.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "lab.ShoutBox")]
pub(crate) struct ShoutBox {
    /// Lines shouted so far.
    pub(crate) count: u64,
    /// The last ten: (peer, text).
    pub(crate) recent: Vec<(u32, String)>,
}

#[replicated]
impl ShoutBox {
    /// Shout a line.
    #[shout]
    pub(crate) fn say(&mut self, by: u32, text: String) {
        self.count += 1;
        self.recent.push((by, text));
        if self.recent.len() > 10 {
            self.recent.remove(0);
        }
    }
}

async fn shoutbox(ctx: LabContext) -> ExperimentResult {
    let shouts: Leaf<ShoutBox> = ctx.object("lobby", ShoutBox::default).await?;
    let say = async {
        for i in 1..=ctx.messages() {
            ctx.pace().await;
            let text = format!("hello #{i} from peer {}", ctx.peer());
            shouts.shout_say(ctx.peer(), text).await?;
        }
        Ok::<_, plexus::ShoutError>(())
    };
    let read = track(&ctx, &shouts, "lines read", ctx.total_messages(), |b| {
        b.count
    });
    let (said, ()) = tokio::join!(say, read);
    said?;
    for (by, text) in shouts.read(|b| b.recent.clone()) {
        println!("peer {}: last lines: [{by}] {text}", ctx.peer());
    }
    ctx.wait_for_experiment_end().await;
    Ok(())
}

// ---------------------------------------------------------------- counter race

/// A shared counter.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "lab.Counter")]
pub(crate) struct Counter {
    /// The sum of every add.
    pub(crate) value: u64,
}

#[replicated]
impl Counter {
    /// Add `n`.
    #[shout]
    pub(crate) fn add(&mut self, n: u64) {
        self.value += n;
    }
}

/// Wakes the race when ops become stable.
struct Folded(tokio::sync::watch::Sender<()>);

impl CounterObserver for Folded {
    fn on_stable(&mut self, _state: &Counter, _op: &CounterOp, _delivery: &Delivery) {
        self.0.send_replace(());
    }
}

async fn counter_race(ctx: LabContext) -> ExperimentResult {
    let counter: Leaf<Counter> = ctx.object("race", Counter::default).await?;
    let (stable, _) = tokio::sync::watch::channel(());
    counter.observe(Folded(stable.clone()));
    let total = ctx.total_messages();
    let race = async {
        for _ in 0..ctx.messages() {
            ctx.pace().await;
            counter.shout_add(1).await?;
        }
        Ok::<_, plexus::ShoutError>(())
    };
    let seen = track(&ctx, &counter, "sum", total, |c| c.value);
    let (raced, ()) = tokio::join!(race, seen);
    raced?;
    // Every add is in; now wait until all of them are folded into the
    // stable snapshot: every peer acknowledged them.
    let mut stable = stable.subscribe();
    loop {
        let now = counter.read_stable(|c| c.value);
        ctx.report_target("stable sum", now, total);
        if now >= total {
            break;
        }
        stable.changed().await?;
    }
    ctx.wait_for_experiment_end().await;
    Ok(())
}

// ---------------------------------------------------------------- partition drill

/// The drill's shared state.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "lab.Drill")]
pub(crate) struct Drill {
    /// Peers that hold the object and are ready to split.
    pub(crate) ready: u64,
    /// Adds made, on either side.
    pub(crate) value: u64,
}

#[replicated]
impl Drill {
    /// This peer holds the object.
    #[shout]
    pub(crate) fn ready(&mut self) {
        self.ready += 1;
    }

    /// Add `n`.
    #[shout]
    pub(crate) fn add(&mut self, n: u64) {
        self.value += n;
    }
}

/// How long the halves stay apart after a peer's last shout.
const APART: Duration = Duration::from_secs(4);

async fn partition_drill(ctx: LabContext) -> ExperimentResult {
    let half = ctx.peers().div_ceil(2);
    let side = |peer: u32| peer <= half;
    let mine = side(ctx.peer());
    let others: Vec<_> = ctx
        .roster()
        .iter()
        .filter(|e| side(e.peer) != mine)
        .map(|e| e.addr)
        .collect();
    let own_side: u64 = (1..=ctx.peers())
        .filter(|p| side(*p) == mine)
        .map(|p| ctx.messages_of(p))
        .sum();
    let drill: Leaf<Drill> = ctx.object("drill", Drill::default).await?;
    // Every peer joins the object's replica set first (its first op waits
    // a round trip for a member to admit it), so that the ready round
    // below spreads as fast as any op: peers that saw every ready split
    // at once, and one still waiting for a slow ready could be cut off
    // from it.
    drill.shout_add(0).await?;
    drill.wait_until_admitted(|_| true).await;
    // Split only once every peer holds the object: a peer cut off before
    // it opened it could never get it.
    drill.shout_ready().await?;
    let peers = u64::from(ctx.peers());
    track(&ctx, &drill, "holding the object", peers, |d| d.ready).await;
    ctx.faults().partition(others);
    println!("peer {}: cut off from the other half", ctx.peer());
    let apart = async {
        for _ in 0..ctx.messages() {
            ctx.pace().await;
            drill.shout_add(1).await?;
        }
        // The drill's point: the halves stay apart a while, shouting done.
        tokio::time::sleep(APART).await;
        ctx.faults().heal();
        println!("peer {}: healed", ctx.peer());
        Ok::<_, plexus::ShoutError>(())
    };
    // A half need not be connected inside (the links are random), so its
    // own ops may only all arrive after the heal: followed meanwhile, but
    // never waited for before healing.
    let own = track(&ctx, &drill, "own half", own_side, |d| d.value);
    let (shouted, ()) = tokio::join!(apart, own);
    shouted?;
    track(&ctx, &drill, "everyone", ctx.total_messages(), |d| d.value).await;
    ctx.wait_for_experiment_end().await;
    Ok(())
}
