//! quicbench: Plexus over QUIC on loopback, three OS processes, beside a raw
//! quinn baseline measured in the same run on the same machine.
//!
//! ```text
//! cargo run --release --example quicbench             # full run (~40 s)
//! cargo run --release --example quicbench -- --short  # a few seconds, for CI
//! ```
//!
//! One binary plays every role. The parent makes a throwaway cluster CA in
//! a temporary directory, issues three identities, and spawns itself three
//! times (`--role peer --index i --dir ...`). Each child runs a Plexus node
//! and a raw quinn endpoint with the same mutual-TLS setup, on 127.0.0.1,
//! and takes one command a line on stdin. The nodes link into a
//! **triangle** (1→0, 2→0, 2→1), so every op reaches every node in one hop
//! (and each receiver also relays it to the third, which drops the
//! duplicate); `--chain` links them 0–1–2 instead (peer 1 relays between
//! the ends: one more hop, no duplicates). Every process runs tokio's
//! multi-thread runtime with its default worker count (2 on the 2-core
//! machine); `--flavour current` runs every process, and so the raw
//! baseline too, on the current-thread runtime instead.
//!
//! What is measured, all with 64-byte arguments (`serde_bytes::ByteBuf`):
//!
//! * **Latency.** Peer 0 shouts `ping` one at a time, its 64-byte argument
//!   stamped with the shout instant read from `CLOCK_MONOTONIC` (one kernel
//!   clock, the same in every process on the machine). Peers 1 and 2, in
//!   their observer, read the same clock when the ping is applied and
//!   acknowledge it by shouting `ack(seq, one_way_ns)` on a second object;
//!   the next ping goes when peer 0's observer has seen both acks.
//!   **Shout → applied on all** is the later of the two one-way figures:
//!   the metric the goal names, compared with a raw quinn round trip (a
//!   64-byte length-prefixed frame on an open bi stream, echoed by the
//!   server), peer 0 → peer 1. The full Plexus round trip (shout → applied
//!   on all → ack shouted → ack applied back, timed on peer 0's clock
//!   alone) is printed beside the same raw round trip too, a comparison
//!   of like with like that does not trust the shared clock, as is the
//!   raw round trip to both receivers at once.
//! * **Sustained throughput.** All three peers shout a commutative op as
//!   fast as they can for a fixed time, each at most `window` ops (1,024;
//!   `--window`) ahead of the average of what it has received from the
//!   other two (so queues stay bounded and the rate is one all three
//!   sustain);
//!   every node counts the ops its observer sees; the figure is the total
//!   shouted / the parent's wall time until all three nodes have applied
//!   all of them. The same with a non-commutative (ordered) op, which rolls
//!   back and replays whenever an op arrives late, is printed for reference
//!   (window 256, so late ops stay within the replica's checkpoints).
//! * **Raw fan-out.** The parent (a fourth process, same runtime) sends
//!   64-byte length-prefixed frames on one uni stream to each of the three
//!   peers for the same time, 1,024 frames per `write_all` (and one frame
//!   per write for reference); the figure is the frames every receiver got
//!   / wall time until all three streams ended.
//! * **The op frame**: its encoded size and codec cost, in-process.
//!
//! The children exit when their stdin closes, so they never outlive the
//! parent; the parent also kills them if it unwinds. Nothing here asserts
//! on time: the benchmark prints figures.

mod peer;
mod raw;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use plexus::tls::{ClusterCa, Identity, Trust};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

use report::{Rate, Results, Summary};

/// Where every endpoint listens.
pub(crate) const LOOPBACK: &str = "127.0.0.1:0";

/// The argument size of every shout and raw frame.
pub(crate) const PAYLOAD: usize = 64;

/// Frames per `write_all` in the batched raw fan-out.
const BATCH: usize = 1024;

/// How long the parent waits for any one reply (a hang guard, not a
/// measurement).
const REPLY_PATIENCE: Duration = Duration::from_secs(180);

/// The 64-byte argument.
pub(crate) fn payload() -> Vec<u8> {
    (0..PAYLOAD as u8).collect()
}

/// How much of everything to run.
#[derive(Clone, Copy, Debug)]
struct Plan {
    warmup: usize,
    pings: usize,
    throughput: Duration,
    ordered: Duration,
    window: u64,
    ordered_window: u64,
    codec_iterations: u32,
    chain: bool,
}

impl Plan {
    const FULL: Plan = Plan {
        warmup: 1_000,
        pings: 10_000,
        throughput: Duration::from_secs(5),
        ordered: Duration::from_secs(2),
        window: 1_024,
        ordered_window: 256,
        codec_iterations: 200_000,
        chain: false,
    };

    const SHORT: Plan = Plan {
        warmup: 100,
        pings: 500,
        throughput: Duration::from_millis(300),
        ordered: Duration::from_millis(200),
        window: 1_024,
        ordered_window: 256,
        codec_iterations: 20_000,
        chain: false,
    };
}

enum Role {
    Parent(Plan),
    Peer { index: usize, dir: PathBuf },
}

fn parse_args() -> anyhow::Result<Role> {
    let (mut short, mut window, mut chain) = (false, None, false);
    let (mut role, mut index, mut dir) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--short" => short = true,
            "--window" => window = Some(value()?.parse()?),
            "--chain" => chain = true,
            // Read by `main` before the runtime starts.
            "--flavour" => drop(value()?),
            "--role" => role = Some(value()?),
            "--index" => index = Some(value()?.parse()?),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!(
                    "usage: quicbench [--short] [--chain] [--window OPS] [--flavour multi|current]   \
                     (see the source's header)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let mut plan = if short { Plan::SHORT } else { Plan::FULL };
    plan.window = window.unwrap_or(plan.window);
    plan.chain = chain;
    match role.as_deref() {
        None => Ok(Role::Parent(plan)),
        Some("peer") => Ok(Role::Peer {
            index: index.context("--role peer needs --index")?,
            dir: dir.context("--role peer needs --dir")?,
        }),
        Some(other) => bail!("unknown role {other:?}"),
    }
}

/// The tokio runtime flavour every process of the run uses: `multi` (the
/// multi-thread scheduler, one worker per core; the default) or `current`
/// (one thread per process). Children inherit it through the environment.
const FLAVOUR_ENV: &str = "QUICBENCH_FLAVOUR";

fn flavour() -> anyhow::Result<String> {
    let mut args = std::env::args().skip_while(|a| a != "--flavour").skip(1);
    let flavour = args
        .next()
        .or_else(|| std::env::var(FLAVOUR_ENV).ok())
        .unwrap_or_else(|| "multi".to_owned());
    match flavour.as_str() {
        "multi" | "current" => Ok(flavour),
        other => bail!("unknown runtime flavour {other:?} (multi or current)"),
    }
}

fn main() -> anyhow::Result<()> {
    let flavour = flavour()?;
    let runtime = match flavour.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    // Children run on the same flavour.
    CHILD_FLAVOUR.get_or_init(|| flavour);
    runtime.block_on(run())
}

static CHILD_FLAVOUR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match parse_args()? {
        Role::Peer { index, dir } => {
            let outcome = peer::run(index, &dir).await;
            if let Err(error) = &outcome {
                eprintln!("peer {index}: {error:#}");
            }
            // Do not wait for the runtime's blocking stdin reader.
            std::process::exit(i32::from(outcome.is_err()));
        }
        Role::Parent(plan) => bench(plan).await,
    }
}

/// A child process and its command channel.
struct Child {
    name: String,
    process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Child {
    fn spawn(index: usize, dir: &Path) -> anyhow::Result<Self> {
        let mut process = Command::new(std::env::current_exe()?)
            .args(["--role", "peer", "--index", &index.to_string(), "--dir"])
            .arg(dir)
            .env(
                FLAVOUR_ENV,
                CHILD_FLAVOUR.get().map_or("multi", String::as_str),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning a peer")?;
        let stdin = process.stdin.take().context("piped stdin")?;
        let stdout = process.stdout.take().context("piped stdout")?;
        Ok(Self {
            name: format!("peer {index}"),
            process,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        tokio::time::timeout(REPLY_PATIENCE, self.lines.next_line())
            .await
            .with_context(|| format!("{} did not answer", self.name))??
            .with_context(|| format!("{} exited", self.name))
    }

    async fn reply(&mut self) -> anyhow::Result<String> {
        let line = self.line().await?;
        match line.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("{}: {line}", self.name),
        }
    }

    async fn call(&mut self, command: &str) -> anyhow::Result<String> {
        self.send(command).await?;
        self.reply().await
    }

    /// Close stdin (the child exits) and reap it; kill it if it lingers.
    async fn stop(mut self) {
        drop(self.stdin.take());
        let waited = tokio::time::timeout(Duration::from_secs(10), self.process.wait()).await;
        if !matches!(waited, Ok(Ok(status)) if status.success()) {
            eprintln!("{} did not exit cleanly ({waited:?})", self.name);
            let _ = self.process.kill().await;
        }
    }
}

fn first_word<T: std::str::FromStr>(line: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(line
        .split_whitespace()
        .next()
        .context("empty reply")?
        .parse()?)
}

async fn bench(plan: Plan) -> anyhow::Result<()> {
    println!(
        "quicbench: 3 peer processes on 127.0.0.1, {}, {PAYLOAD}-byte arguments, \
         tokio {} runtime ({} cores), shout window {} (ordered {})",
        if plan.chain {
            "chained links 0–1–2"
        } else {
            "triangle links"
        },
        match CHILD_FLAVOUR.get().map(String::as_str) {
            Some("current") => "current-thread",
            _ => "multi-thread",
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        plan.window,
        plan.ordered_window
    );
    let codec = report::codec(plan.codec_iterations)?;

    let dir = tempfile::tempdir()?;
    let ca = ClusterCa::generate("quicbench")?;
    ca.save(dir.path())?;
    for i in 0..3 {
        let identity = ca.issue(Identity::generate()?, &format!("peer{i}"))?;
        identity.save(&dir.path().join(format!("peer{i}")))?;
    }
    let sender = ca.issue(Identity::generate()?, "sender")?;
    let trust = Trust::ca(ca.certificate());

    let mut children = (0..3)
        .map(|i| Child::spawn(i, dir.path()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut nodes, mut raws) = (Vec::new(), Vec::new());
    for child in &mut children {
        let line = child.line().await?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["ready", node, raw] = words[..] else {
            bail!("{}: {line}", child.name);
        };
        nodes.push(node.parse::<SocketAddr>()?);
        raws.push(raw.parse::<SocketAddr>()?);
    }
    children[1].call(&format!("link {}", nodes[0])).await?;
    if !plan.chain {
        children[2].call(&format!("link {}", nodes[0])).await?;
    }
    children[2].call(&format!("link {}", nodes[1])).await?;
    children[0].call("create").await?;
    children[1].call("open").await?;
    children[2].call("open").await?;

    let (warmup, n) = (plan.warmup, plan.pings);
    eprintln!("· raw quinn round trips ({n} after {warmup} warm-up)");
    let line = format!("rawrtt {warmup} {n} {}", raws[1]);
    let raw_rtt = Summary::parse(&children[0].call(&line).await?)?;
    let line = format!("rawrtt {warmup} {n} {} {}", raws[1], raws[2]);
    let raw_rtt_both = Summary::parse(&children[0].call(&line).await?)?;
    eprintln!("· plexus ping → applied on all → acks round trips");
    let line = children[0].call(&format!("ping {warmup} {n}")).await?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let (one_way, round_trip) = words.split_at(words.len() / 2);
    let shout_to_all = Summary::parse(&one_way.join(" "))?;
    let ping = Summary::parse(&round_trip.join(" "))?;

    let endpoint = raw::endpoint(&sender, &trust)?;
    eprintln!("· raw fan-out, {BATCH} frames per write");
    let fan_batched = fan_out(&mut children, &endpoint, &raws, BATCH, plan.throughput).await?;
    eprintln!("· raw fan-out, one write per frame");
    let fan_single = fan_out(&mut children, &endpoint, &raws, 1, plan.throughput).await?;
    endpoint.close(quinn::VarInt::from_u32(0), b"done");

    eprintln!("· plexus commutative shouts from all three");
    let relayed_before = relayed(&mut children).await?;
    let blast = shout_phase(&mut children, "blast", plan.throughput, plan.window).await?;
    let relayed_after = relayed(&mut children).await?;
    let blast_relay: [u64; 4] = std::array::from_fn(|i| relayed_after[i] - relayed_before[i]);
    let before = replays(&mut children).await?;
    eprintln!("· plexus ordered shouts from all three");
    let ordered = shout_phase(&mut children, "ordered", plan.ordered, plan.ordered_window).await?;
    let after = replays(&mut children).await?;

    for child in children {
        child.stop().await;
    }
    report::print(&Results {
        raw_rtt,
        raw_rtt_both,
        shout_to_all,
        ping,
        fan_batched,
        fan_single,
        blast,
        blast_relay,
        ordered,
        ordered_replays: (after.0 - before.0, after.1 - before.1),
        codec,
    });
    Ok(())
}

/// The parent fans out to the three peers' raw endpoints; each reports
/// what its stream carried.
async fn fan_out(
    children: &mut [Child],
    endpoint: &quinn::Endpoint,
    receivers: &[SocketAddr],
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    for child in children.iter_mut() {
        child.send("fanwait").await?;
    }
    let pids = pids(children);
    let cpu_before = cpu_time(&pids)?;
    let sent = raw::fan_out(endpoint, receivers, &payload(), batch, duration).await?;
    let mut all = u64::MAX;
    for (child, written) in children.iter_mut().zip(&sent.written) {
        let frames: u64 = first_word(&child.reply().await?)?;
        if frames != *written {
            bail!("{}: received {frames} frames of {written}", child.name);
        }
        all = all.min(frames);
    }
    let wall = sent.started.elapsed();
    let cpu = cpu_time(&pids)? - cpu_before;
    sent.close();
    Ok(Rate {
        messages: all,
        wall,
        cpu,
    })
}

/// All three peers shout `kind` for `duration`; then every node waits
/// until it has applied every op shouted.
async fn shout_phase(
    children: &mut [Child],
    kind: &str,
    duration: Duration,
    window: u64,
) -> anyhow::Result<Rate> {
    let pids: Vec<u32> = pids(children).into_iter().skip(1).collect();
    let cpu_before = cpu_time(&pids)?;
    let start = Instant::now();
    for child in children.iter_mut() {
        child
            .send(&format!("{kind} {} {window}", duration.as_millis()))
            .await?;
    }
    let mut total = 0u64;
    for child in children.iter_mut() {
        total += first_word::<u64>(&child.reply().await?)?;
    }
    for child in children.iter_mut() {
        child.send(&format!("await {kind} {total}")).await?;
    }
    for child in children.iter_mut() {
        child.reply().await?;
    }
    let wall = start.elapsed();
    Ok(Rate {
        messages: total,
        wall,
        cpu: cpu_time(&pids)? - cpu_before,
    })
}

/// This process (the raw fan-out's sender; pid 0 stands for it) and the
/// children's pids.
fn pids(children: &[Child]) -> Vec<u32> {
    std::iter::once(0)
        .chain(children.iter().filter_map(|c| c.process.id()))
        .collect()
}

/// CPU time (user + system, all threads) the processes spent so far, from
/// `/proc/<pid>/stat` (pid 0: this process).
fn cpu_time(pids: &[u32]) -> anyhow::Result<Duration> {
    // Clock ticks per second: 100 on every Linux configuration in use.
    const TICK: Duration = Duration::from_millis(10);
    let mut ticks = 0u64;
    for pid in pids {
        let path = match pid {
            0 => "/proc/self/stat".to_owned(),
            pid => format!("/proc/{pid}/stat"),
        };
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The fields after the command name (which may hold spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .with_context(|| format!("{path}: too few fields"))?
                .parse::<u64>()?;
        }
    }
    Ok(TICK * u32::try_from(ticks).unwrap_or(u32::MAX))
}

/// Op copies sent, duplicates received, ops grafted and ops repaired,
/// summed over the peers.
async fn relayed(children: &mut [Child]) -> anyhow::Result<[u64; 4]> {
    let mut sum = [0; 4];
    for child in children.iter_mut() {
        let line = child.call("relay").await?;
        let counts: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if counts.len() != 4 {
            bail!("{}: expected four relay counters, got {line:?}", child.name);
        }
        for (total, n) in sum.iter_mut().zip(counts) {
            *total += n;
        }
    }
    Ok(sum)
}

/// Rollbacks and replayed ops, summed over the peers.
async fn replays(children: &mut [Child]) -> anyhow::Result<(u64, u64)> {
    let mut sum = (0, 0);
    for child in children.iter_mut() {
        let stats: Vec<u64> = child
            .call("stats")
            .await?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        sum.0 += stats.get(1).copied().unwrap_or_default();
        sum.1 += stats.get(2).copied().unwrap_or_default();
    }
    Ok(sum)
}
