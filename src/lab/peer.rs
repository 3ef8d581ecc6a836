//! One peer process of a lab run (`lab-peer`, started by the lab, never by
//! hand): a QUIC node on 127.0.0.1 running one experiment's code.
//!
//! It stops when the lab says the experiment ended, and also, at once, when
//! its standard input closes or its control connection drops: the lab is
//! gone, so nothing is left running.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::context::{LabContext, Setup};
use super::wire::{self, LinkStats, PeerStats, ToLab, ToPeer, CONTROL_ENV, MAX_LINE};
use super::{Experiments, LabError};
use crate::faults::Faults;
use crate::tls::{self, Identity, Trust, CA_CERT_FILE};
use crate::{MembershipEvent, Node, NodeConfig};

/// The arguments the lab gives a peer process.
#[derive(Clone, Debug, clap::Args)]
pub struct PeerArgs {
    /// The experiment to run.
    #[arg(long)]
    pub experiment: String,
    /// This peer's number, from 1.
    #[arg(long)]
    pub peer: u32,
    /// Every peer's message budget, comma-separated, peer 1 first.
    #[arg(long, value_delimiter = ',')]
    pub budgets: Vec<u64>,
    /// Milliseconds between two messages of one peer.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// The node's directory: node.key and node.crt, issued by the lab's CA;
    /// the store goes there too.
    #[arg(long)]
    pub dir: PathBuf,
    /// The directory holding the cluster CA's ca.crt.
    #[arg(long)]
    pub ca: PathBuf,
    /// A seed for the fault injector's random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// How long one attempt to open an object waits for an answer.
const OPEN_ATTEMPT: Duration = Duration::from_secs(1);

/// How long an experiment's code has to return once the run ended.
const GRACE: Duration = Duration::from_secs(3);

/// How often a peer sends its measurements.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Runs one peer: called by [`main`](super::main) for `lab-peer`.
pub async fn run_peer(args: PeerArgs, experiments: &Experiments) -> Result<(), LabError> {
    let run = experiments
        .get(&args.experiment)
        .ok_or_else(|| LabError::UnknownExperiment {
            name: args.experiment.clone(),
            known: experiments.names().join(", "),
        })?;
    let control: SocketAddr = std::env::var(CONTROL_ENV)
        .ok()
        .and_then(|a| a.parse().ok())
        .ok_or(LabError::NotUnderLab)?;
    // A terminal's Ctrl-C reaches the whole process group: the lab decides
    // how peers stop, so the signal is taken here and ignored.
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let (lab_gone_tx, lab_gone) = watch::channel(false);
    let lifeline = lab_gone_tx.clone();
    tokio::spawn(async move {
        drain(tokio::io::stdin()).await;
        let _ = lifeline.send(true);
    });

    let stream = TcpStream::connect(control)
        .await
        .map_err(LabError::Control)?;
    stream.set_nodelay(true).map_err(LabError::Control)?;
    let (read, mut write) = stream.into_split();
    let (to_lab, mut outbox) = mpsc::unbounded_channel::<ToLab>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outbox.recv().await {
            if write.write_all(&wire::line(&msg)).await.is_err() {
                break;
            }
        }
    });

    let identity = Identity::load(&args.dir).map_err(|e| LabError::Setup(e.to_string()))?;
    let ca = tls::load_ca_certificate(&args.ca.join(CA_CERT_FILE))
        .map_err(|e| LabError::Setup(e.to_string()))?;
    let faults = Faults::with_seed(args.seed ^ u64::from(args.peer));
    // Peers open the shared object while peer 1 may still be making it: a
    // short open timeout retries soon (see `LabContext::object`).
    let config = NodeConfig {
        open_timeout: OPEN_ATTEMPT,
        ..NodeConfig::default()
    };
    let node = Node::builder()
        .config(config)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .identity(identity)
        .trust(Trust::ca(ca))
        .data_dir(&args.dir)
        .faults(faults.clone())
        .start()
        .await
        .map_err(|e| LabError::Setup(format!("starting the node: {e}")))?;
    let addr = match node.local_addr() {
        crate::PeerAddr::Socket(a) => a,
        other => return Err(LabError::Setup(format!("unexpected address {other}"))),
    };
    let hello = ToLab::Hello {
        peer: args.peer,
        id: tls::node_id_hex(&node.id()),
        addr,
    };
    let _ = to_lab.send(hello);

    let (ended_tx, ended) = watch::channel(false);
    let (start_tx, start) = tokio::sync::oneshot::channel();
    let gone = lab_gone_tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(read);
        let mut start_tx = Some(start_tx);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_line(&mut lines, &mut buf).await {
                Some(line) => match serde_json::from_slice::<ToPeer>(line) {
                    Ok(ToPeer::Start { roster, seeds }) => {
                        if let Some(tx) = start_tx.take() {
                            let _ = tx.send((roster, seeds));
                        }
                    }
                    Ok(ToPeer::End) => {
                        let _ = ended_tx.send(true);
                    }
                    Err(e) => tracing::warn!(error = %e, "bad line from the lab"),
                },
                None => break,
            }
        }
        let _ = gone.send(true);
    });

    let result = async {
        let (roster, seeds) = tokio::select! {
            s = start => s.map_err(|_| LabError::LabGone)?,
            _ = wait_true(lab_gone.clone()) => return Err(LabError::LabGone),
        };
        for seed in seeds {
            if node.link(seed).await.is_err() {
                node.keep_linking(seed);
            }
        }
        let marks = watch_membership(&node);
        let stats = tokio::spawn(report_stats(node.clone(), marks.clone(), to_lab.clone()));
        let ctx = LabContext::new(Setup {
            peer: args.peer,
            budgets: args.budgets.clone(),
            interval: Duration::from_millis(args.interval_ms),
            node: node.clone(),
            faults,
            roster,
            to_lab: to_lab.clone(),
            ended: ended.clone(),
        });
        let mut experiment = tokio::spawn(run(ctx));
        let outcome = tokio::select! {
            r = &mut experiment => r,
            _ = wait_true(lab_gone.clone()) => {
                stats.abort();
                return Err(LabError::LabGone);
            }
            // The run ended (a timeout, another peer's failure) while this
            // code had not returned: it gets a moment to, then it is cut.
            _ = async {
                wait_true(ended.clone()).await;
                tokio::time::sleep(GRACE).await;
            } => {
                experiment.abort();
                Ok(Err("still running when the experiment ended".into()))
            }
        };
        // The last picture before the code's end, for the timeline.
        send_stats(&node, &marks, &to_lab).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the experiment's task panicked: {e}")),
        };
        let _ = to_lab.send(ToLab::Finished { error });
        // Keep the node up, relaying for the others, until the run ends.
        tokio::select! {
            _ = wait_true(ended.clone()) => {}
            _ = wait_true(lab_gone.clone()) => {
                stats.abort();
                return Err(LabError::LabGone);
            }
        }
        stats.abort();
        send_stats(&node, &marks, &to_lab).await;
        Ok(())
    }
    .await;
    if result.is_ok() {
        // A clean end: what the store holds is on disk before it closes.
        node.flush().await.ok();
    }
    node.shutdown();
    if result.is_ok() {
        let (cpu_ms, max_rss_kib) = own_usage();
        let _ = to_lab.send(ToLab::Bye {
            cpu_ms,
            max_rss_kib,
        });
    }
    drop(to_lab);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    result
}

/// Suspected and down peers, as the node's failure detector says.
type Marks = Arc<Mutex<(BTreeSet<crate::NodeId>, BTreeSet<crate::NodeId>)>>;

/// Follows the node's membership events into [`Marks`].
fn watch_membership(node: &Node) -> Marks {
    let marks = Marks::default();
    let mut events = node.events();
    let seen = marks.clone();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            // The peer's log keeps what its failure detector said.
            println!("membership: {event:?}");
            let mut marks = seen.lock();
            let (suspected, down) = &mut *marks;
            match event {
                MembershipEvent::Suspected(p) => {
                    suspected.insert(p);
                }
                MembershipEvent::Down(p) => {
                    suspected.remove(&p);
                    down.insert(p);
                }
                MembershipEvent::Back(p) | MembershipEvent::PeerUp(p) => {
                    suspected.remove(&p);
                    down.remove(&p);
                }
                // No link, no probes: the detector forgets the peer, and a
                // suspicion it held will never be refuted here.
                MembershipEvent::PeerDown(p) => {
                    suspected.remove(&p);
                }
                _ => {}
            }
        }
    });
    marks
}

/// Sends the node's measurements every [`STATS_EVERY`].
async fn report_stats(node: Node, marks: Marks, to_lab: mpsc::UnboundedSender<ToLab>) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        tick.tick().await;
        if !send_stats(&node, &marks, &to_lab).await {
            break;
        }
    }
}

/// Sends the node's measurements once; `false` when the lab is gone.
async fn send_stats(node: &Node, marks: &Marks, to_lab: &mpsc::UnboundedSender<ToLab>) -> bool {
    let links = node.links().await;
    let ops = node.stats().await.ops_seen;
    let (suspected, down) = {
        let marks = marks.lock();
        let hex = |s: &BTreeSet<crate::NodeId>| s.iter().map(tls::node_id_hex).collect();
        (hex(&marks.0), hex(&marks.1))
    };
    let stats = PeerStats {
        ops,
        links: links
            .iter()
            .map(|l| LinkStats {
                peer: tls::node_id_hex(&l.peer),
                sent_messages: l.sent.messages,
                sent_bytes: l.sent.bytes,
            })
            .collect(),
        suspected,
        down,
    };
    to_lab.send(ToLab::Stats(stats)).is_ok()
}

/// Reads and drops everything until end of input (or an error).
async fn drain(mut input: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 256];
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut input, &mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn wait_true(mut flag: watch::Receiver<bool>) {
    // An error means the sender is gone: treat it as set.
    let _ = flag.wait_for(|v| *v).await;
}

/// Reads one line (without its newline) into `buf`; `None` at end of input,
/// on an error, or past [`MAX_LINE`].
pub(crate) async fn read_line<'a, R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &'a mut Vec<u8>,
) -> Option<&'a [u8]> {
    let mut limited = tokio::io::AsyncReadExt::take(reader, MAX_LINE as u64);
    match limited.read_until(b'\n', buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) if buf.last() != Some(&b'\n') => None,
        Ok(_) => Some(&buf[..buf.len() - 1]),
    }
}

/// CPU time (user and system, all threads) and peak resident memory of
/// this process, where `/proc` tells them (Linux). `/proc/self/stat`
/// counts CPU time in clock ticks of 1/100 s: Linux fixes `USER_HZ` at 100
/// on every architecture it exposes to user space.
pub(crate) fn own_usage() -> (Option<u64>, Option<u64>) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may
            // hold spaces: state is field 3, utime 14 and stime 15.
            let rest = &s[s.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((ticks(11)? + ticks(12)?) * 10)
        });
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        });
    (cpu, rss)
}
